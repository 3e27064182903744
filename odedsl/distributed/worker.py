"""What runs inside a Dask worker process: models compiled once per process, and what that cost.

Work items carry a model's text, never a compiled function (which does not
pickle, and would be compiled again per task if it did). ``model_from_text``
compiles a text the first time a process sees it (from the on-disk cache of
compiled code, so a warm machine only loads it) and hands back the same
``Model`` for every later item; ``prepared`` does the same for anything else
worth building once per process (a dataset, a sensitivity system).
``worker_stats`` reports how long this process spent on that, and how many
items it ran: the evidence that compiling is paid once per worker, not per task.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from odedsl.model import Model

_LOCK = threading.RLock()
_MODELS: dict[str, Model] = {}
_PREPARED: dict[Any, Any] = {}
_STATS = {"compile_seconds": 0.0, "models_compiled": 0, "prepare_seconds": 0.0, "prepared": 0, "tasks": 0}
#: Models and prepared objects kept per process; the oldest are dropped beyond this.
KEEP = 16


def model_from_text(text: str, name: str = "<string>") -> Model:
    """The model of ``text``, parsed and compiled once per process (cached by the text).

    Examples
    --------
    >>> from odedsl.distributed.worker import model_from_text
    >>> m = model_from_text("param k = 1 in [0, 2]\\nstate x = 1\\nder(x) = -k*x\\n", "decay.ode")
    >>> m is model_from_text("param k = 1 in [0, 2]\\nstate x = 1\\nder(x) = -k*x\\n", "decay.ode")
    True
    """
    import odedsl

    key = hashlib.sha256(text.encode("utf-8")).hexdigest()
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            start = time.perf_counter()
            model = odedsl.loads(text, name=name)
            model.compile()
            _STATS["compile_seconds"] += time.perf_counter() - start
            _STATS["models_compiled"] += 1
            _keep(_MODELS, key, model)
        return model


def prepared(key, make: Callable[[], Any]) -> Any:
    """``make()``, called once per process for ``key`` (hashable); its time is counted in ``worker_stats``.

    Examples
    --------
    >>> from odedsl.distributed.worker import prepared
    >>> prepared(("doc", 1), lambda: [1, 2]) is prepared(("doc", 1), lambda: [3])
    True
    """
    with _LOCK:
        if key in _PREPARED:
            return _PREPARED[key]
        start, compiling = time.perf_counter(), _STATS["compile_seconds"]
        value = make()  # a model compiled inside counts as compile time, not twice
        _STATS["prepare_seconds"] += time.perf_counter() - start - (_STATS["compile_seconds"] - compiling)
        _STATS["prepared"] += 1
        _keep(_PREPARED, key, value)
        return value


def count_task() -> None:
    """Count one work item run by this process (``worker_stats()["tasks"]``)."""
    with _LOCK:
        _STATS["tasks"] += 1


def _keep(cache: dict, key, value) -> None:
    cache[key] = value
    while len(cache) > KEEP:
        cache.pop(next(iter(cache)))


def worker_address() -> str:
    """This process's Dask worker address, or ``local:<pid>`` outside a worker.

    Examples
    --------
    >>> from odedsl.distributed.worker import worker_address
    >>> worker_address().startswith("local:")
    True
    """
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"local:{os.getpid()}"


def worker_stats() -> dict:
    """This process's compile and preparation time, models compiled, items run, and pid.

    Run it on every worker with ``Engine.run_on_workers(worker_stats)``.

    Examples
    --------
    >>> from odedsl.distributed.worker import worker_stats
    >>> sorted(worker_stats())
    ['compile_seconds', 'models_compiled', 'pid', 'prepare_seconds', 'prepared', 'tasks']
    """
    with _LOCK:
        return {**_STATS, "pid": os.getpid()}


def dask_setup(worker) -> None:
    """Dask preload hook (``LocalCluster(preload=["odedsl.distributed.worker"])``): a local worker process
    ignores Ctrl-C, which the terminal sends to the whole process group; the driver stops it cleanly instead."""
    import signal

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def empty(item):
    """The empty work item: returns ``item`` (used to measure Dask's own cost per task).

    Examples
    --------
    >>> from odedsl.distributed.worker import empty
    >>> empty(3)
    3
    """
    return item
