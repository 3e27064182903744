"""Many independent fits and solves on Dask: a local cluster by default, any Dask cluster by address.

``engine.Engine`` turns a list of independent work items (a fit from one start,
a chunk of an ensemble, a point of a profile) into Dask tasks and streams their
results back as they finish. With no address it starts a ``LocalCluster`` of
single-threaded worker processes, one per core, and closes it at the end; with
``scheduler="tcp://HOST:PORT"`` (or ``ODEDSL_SCHEDULER``, or ``client=``) it uses
an existing cluster. Work items carry the model's text and the data, never a
compiled function: each worker compiles a model once (``worker.model_from_text``,
from its on-disk cache) and reuses it for every later item.

``starts.multistart`` is the multi-start fit built on it (``odedsl fit --starts N``).

Dask is imported only here, lazily: ``import odedsl``, ``odedsl check`` and single
fits never import it.
"""
