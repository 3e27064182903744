"""The engine: independent work items as Dask tasks, their results streamed back as they finish.

``Engine`` owns the connection to a Dask cluster (an embedded ``LocalCluster``
unless an address or a client is given) and two operations: ``share`` (ship an
object to every worker once: the model's text, the data, the settings) and
``map`` (one task per work item; results yielded in completion order). A task
whose worker dies is rerun elsewhere by Dask; a task that raises is retried,
then reported as a ``TaskError`` naming the item. The loop that waits for
results wakes at least once a second, so a lost scheduler or a cluster left
without workers ends the run with ``ClusterLost`` instead of hanging.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from odedsl.errors import NumericalError, UsageError

log = logging.getLogger(__name__)

#: The environment variable naming a scheduler to use when none is given.
SCHEDULER_ENV = "ODEDSL_SCHEDULER"
#: Seconds ``map`` waits after a result for others to fetch with it (one request to the cluster instead of many).
BATCH_WAIT = 0.05


class TaskError(NumericalError):
    """A work item raised instead of returning its record (after Dask's retries), or its workers kept dying."""

    def __init__(self, index: int, cause: str) -> None:
        self.index, self.cause = index, cause
        super().__init__(f"work item {index} failed: {cause}")


class ClusterLost(NumericalError):
    """The scheduler went away, or no worker was left, while work was under way."""


class Engine:
    """A Dask cluster to run independent work items on; a context manager.

    ``client``: an existing ``distributed.Client`` (used as is, never closed here).
    Else ``scheduler`` (or, unless ``workers`` is given, the ``ODEDSL_SCHEDULER`` environment variable): the
    address of a running scheduler, ``tcp://HOST:PORT``; an address that cannot be
    reached is a ``UsageError`` within ``connect_timeout`` seconds. Else a
    ``LocalCluster`` of ``workers`` (default: one per core) single-threaded worker
    processes on 127.0.0.1, started on entry and closed on exit. ``idle_timeout``:
    how long ``map`` waits for a cluster without any worker before giving up.

    Examples
    --------
    >>> from odedsl.distributed.engine import Engine
    >>> with Engine(workers=1) as engine:
    ...     sorted(engine.map(abs, [-1, 2, -3]))
    [(0, 1), (1, 2), (2, 3)]
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None, client=None,
                 connect_timeout: float = 10.0, idle_timeout: float = 60.0) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise UsageError(f"workers must be a positive whole number, not {workers!r}")
        if not connect_timeout > 0:
            raise UsageError(f"connect_timeout must be positive, not {connect_timeout!r}")
        # the environment's scheduler unless a local cluster's size was asked for
        self.scheduler = scheduler or (os.environ.get(SCHEDULER_ENV) if workers is None else None) or None
        self.workers = workers
        self.connect_timeout = float(connect_timeout)
        self.idle_timeout = float(idle_timeout)
        self.dashboard: str | None = None
        self._client = client
        self._own_client = False
        self._cluster = None
        self._started = False
        self._seen_workers = -math.inf
        self._shared: list = []
        self._keyed: dict = {}

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> Engine:
        """Connect (or start the local cluster); a no-op when already started."""
        if self._started:
            return self
        quiet_dask()
        if self._client is None and self.scheduler:
            self._client = _connect(self.scheduler, self.connect_timeout)
            self._own_client = True
        elif self._client is None:
            self._cluster, self._client = _local_cluster(self.workers or os.cpu_count() or 1)
            self._own_client = True
        self._started = True
        self.dashboard = _dashboard(self._client)
        return self

    def close(self) -> None:
        """Close what this engine started (the client it opened, the local cluster); never a given client.
        What it shared with the workers is released first."""
        shared, self._shared, self._keyed = self._shared, [], {}
        if shared and self._client is not None and self._client.status == "running":
            try:
                self._client.cancel(shared)
            except Exception as exc:
                log.debug("releasing shared data: %s", exc)
        if self._own_client and self._client is not None:
            try:
                self._client.close(timeout=5)
            except Exception as exc:  # a client whose scheduler is gone: nothing left to close cleanly
                log.debug("closing the Dask client: %s", exc)
            self._client = None
            self._own_client = False
        if self._cluster is not None:
            try:
                self._cluster.close(timeout=10)
            except Exception as exc:
                log.debug("closing the local cluster: %s", exc)
            self._cluster = None
        self._started = False

    @property
    def client(self):
        """The ``distributed.Client`` (starting the engine if needed)."""
        self.start()
        return self._client

    @property
    def n_workers(self) -> int:
        """Workers connected now."""
        return int(self.client.scheduler_info(n_workers=0).get("n_workers", 0))

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return self.client.scheduler.address

    # -- work ------------------------------------------------------------------

    def share(self, obj, key: str | None = None):
        """Ship ``obj`` to every worker once (``Client.scatter(broadcast=True)``); the handle to pass to ``map``.

        With ``key``, an object already shared under that key is not shipped again: the earlier handle is
        returned (for repeated runs of the same problem on one engine)."""
        if key is not None and key in self._keyed:
            handle = self._keyed[key]
            if handle.status == "finished":
                return handle
            del self._keyed[key]
        self._wait_for_a_worker()
        handle = self.client.scatter([obj], broadcast=True, hash=False)[0]
        self._shared.append(handle)
        if key is not None:
            self._keyed[key] = handle
        return handle

    def unshare(self, handle) -> None:
        """Release what ``share`` shipped (the workers drop it); ``close`` does this for everything shared."""
        if handle in self._shared:
            self._shared.remove(handle)
        self._keyed = {k: h for k, h in self._keyed.items() if h is not handle}
        if self._client is not None and self._client.status == "running":
            self._client.cancel([handle])

    def map(self, fn: Callable, items: Iterable, *shared, retries: int = 3, on_error: str = "raise",
            follow: Callable[[Any], Iterable] | None = None) -> Iterator[tuple[int, Any]]:
        """``fn(item, *shared)`` for every item, as Dask tasks; yields ``(index, result)`` as each finishes.

        ``fn`` must be importable by the workers (a module-level function) and should
        return a record even when the numerics fail; an exception escaping it (after
        ``retries`` reruns) ends the iteration with ``TaskError``, or with
        ``on_error="yield"`` is yielded as ``(index, TaskError)`` and the others go on. A lost scheduler,
        or ``idle_timeout`` seconds without any worker, ends it with ``ClusterLost``.
        ``follow(result)``, when given, returns more items to run, submitted at once (a chain of
        work items, each starting from its predecessor's result); they are numbered after the
        ones before them. Closing the generator early cancels the tasks not yet finished.
        """
        if on_error not in ("raise", "yield"):
            raise UsageError(f"on_error must be 'raise' or 'yield', not {on_error!r}")
        items = list(items)
        if not items:
            return
        client = self.client
        self._wait_for_a_worker()
        futures: dict = {}  # key -> future, every one submitted
        index: dict = {}  # key -> the item's number
        done: queue.SimpleQueue = queue.SimpleQueue()
        pending: set = set()

        def submit(batch: list) -> None:
            for f in client.map(fn, batch, *[[h] * len(batch) for h in shared], pure=False, retries=retries):
                index[f.key] = len(index)
                futures[f.key] = f
                pending.add(f.key)
                f.add_done_callback(done.put)

        submit(items)
        idle_since = None
        try:
            while pending:
                try:
                    batch = [done.get(timeout=1.0)]
                except queue.Empty:
                    idle_since = self._check(idle_since, len(pending))
                    continue
                until = time.monotonic() + BATCH_WAIT
                while len(batch) < len(pending):  # what else finishes within BATCH_WAIT: fetched in one round trip
                    try:
                        batch.append(done.get(timeout=max(until - time.monotonic(), 0.0)))
                    except queue.Empty:
                        break
                batch = [f for f in batch if f.key in pending]
                for f in batch:
                    if f.status not in ("finished", "error"):  # cancelled unasked: the scheduler connection was lost
                        raise ClusterLost(_lost(self))
                for f in [f for f in batch if f.status == "error"]:
                    error = TaskError(index[f.key], _describe(f.exception()))
                    if on_error == "raise":
                        raise error
                    pending.discard(f.key)
                    yield index[f.key], error
                batch = [f for f in batch if f.status == "finished"]
                if not batch:
                    continue
                while True:
                    try:
                        results = client.sync(client._gather, batch, callback_timeout=5.0)
                        break
                    except TimeoutError:  # a result being computed again (its worker died): wait, not forever
                        idle_since = self._check(idle_since, len(pending))
                    except Exception as exc:  # a result could not be fetched
                        if client.status not in ("running", "connecting") or isinstance(exc, OSError):
                            raise ClusterLost(f"{_lost(self)} ({type(exc).__name__})") from None
                        raise TaskError(index[batch[0].key], f"its result could not be fetched: "
                                                             f"{type(exc).__name__}: {exc}") from None
                self._seen_workers = time.monotonic()  # a result: the cluster has workers, no need to ask
                for f, result in zip(batch, results):
                    pending.discard(f.key)
                    more = list(follow(result)) if follow is not None else []
                    if more:
                        submit(more)
                    yield index[f.key], result
        finally:
            left = [futures[k] for k in pending]
            if left and self._client is not None and self._client.status == "running":
                try:
                    self._client.cancel(left)
                except Exception as exc:
                    log.debug("cancelling %d tasks: %s", len(left), exc)

    def run_on_workers(self, fn: Callable) -> dict[str, Any]:
        """``fn()`` on every worker now (``Client.run``): ``{worker address: result}``."""
        return self.client.run(fn)

    def _wait_for_a_worker(self) -> None:
        if time.monotonic() - self._seen_workers < 2.0:
            return  # checked a moment ago: spare the scheduler a round trip per call
        deadline = time.monotonic() + self.idle_timeout
        while self.n_workers == 0:
            if time.monotonic() > deadline:
                raise ClusterLost(f"the Dask scheduler at {self.address} has had no worker for "
                                  f"{self.idle_timeout:g} s; start workers with: dask worker {self.address}")
            time.sleep(0.2)
        self._seen_workers = time.monotonic()

    def _check(self, idle_since: float | None, n_pending: int) -> float | None:
        """Between results: the cluster is still there and has a worker (else raise); when it had none."""
        if self._client.status not in ("running", "connecting"):
            raise ClusterLost(_lost(self))
        try:
            workers = self.n_workers
        except Exception:  # the scheduler stopped answering
            raise ClusterLost(_lost(self)) from None
        if workers > 0:
            self._seen_workers = time.monotonic()
            return None
        now = time.monotonic()
        if idle_since is None:
            log.warning("no Dask worker left; waiting up to %g s for one (%d tasks left)", self.idle_timeout,
                        n_pending)
            return now
        if now - idle_since > self.idle_timeout:
            raise ClusterLost(f"no Dask worker left for {self.idle_timeout:g} s with {n_pending} tasks unfinished")
        return idle_since


def quiet_dask() -> None:
    """Keep Dask's informational logging (cluster start and stop, closed connections) off the terminal:
    what matters is reported by odedsl. Importing ``distributed`` sets its loggers' levels from Dask's
    configuration, so this comes after it."""
    import distributed  # noqa: F401

    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "it failed without an exception"
    if type(exc).__name__ == "KilledWorker":
        return ("every worker that ran it died (KilledWorker): the task may use too much memory, or crash its "
                "process")
    return f"{type(exc).__name__}: {exc}"


def _lost(engine: Engine) -> str:
    if engine.scheduler:
        where = f"at {engine.scheduler}"
    elif engine._cluster is not None:
        where = "of the local cluster"
    else:
        where = "of the given client"
    return f"lost the connection to the Dask scheduler {where}"


def _connect(address: str, timeout: float):
    """A client of the scheduler at ``address``; ``UsageError`` within ``timeout`` s when it cannot be reached."""
    from distributed import Client
    from distributed.comm import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location) if scheme == "tcp" else (None, None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--scheduler {address}: not a scheduler address ({exc}); expected tcp://HOST:PORT") from None
    if scheme == "tcp":  # a refused connection fails now, not after Dask's retries
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            raise UsageError(f"cannot reach the Dask scheduler at {address}: {exc.strerror or exc}") from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def _local_cluster(n: int):
    from distributed import Client, LocalCluster

    with _interrupt_deferred() as interrupted:  # a Ctrl-C half-way through Dask's start-up breaks its clean-up
        # NUMBA_NUM_THREADS: a worker is one core; Dask already pins OMP/MKL/OpenBLAS to one thread.
        try:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=":0", silence_logs=logging.ERROR,
                                   env={"NUMBA_NUM_THREADS": "1"},
                                   preload=["odedsl.distributed.worker"])  # its dask_setup: workers ignore Ctrl-C
        except RuntimeError as exc:  # typically: a script without a main guard, imported again by each worker
            raise UsageError(f"the local Dask cluster could not start its worker processes ({exc}); in a script, "
                             "put the code that fits under `if __name__ == \"__main__\":`, since every worker "
                             "process imports the script again") from None
        try:
            client = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
    if interrupted():  # Ctrl-C came while starting: stop now, with the cluster closed properly
        client.close()
        cluster.close()
        raise KeyboardInterrupt
    return cluster, client


@contextlib.contextmanager
def _interrupt_deferred() -> Iterator[Callable[[], bool]]:
    """Within the block, Ctrl-C is noted instead of raised (main thread only); the callable says whether it came."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield lambda: False  # not ours to change (another thread, or SIGINT ignored or handled elsewhere)
        return
    signal.signal(signal.SIGINT, lambda *_: came.append(1))
    try:
        yield lambda: bool(came)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _dashboard(client) -> str | None:
    try:
        if "dashboard" not in client.scheduler_info(n_workers=0).get("services", {}):
            return None  # no bokeh: Dask serves no dashboard
        return client.dashboard_link
    except Exception:
        return None


def per_task_overhead(engine: Engine, n: int = 200) -> float:
    """Seconds of Dask overhead per task: the mean round trip of ``n`` empty work items run one after another.

    Examples
    --------
    >>> from odedsl.distributed.engine import Engine, per_task_overhead
    >>> with Engine(workers=1) as engine:
    ...     per_task_overhead(engine, n=5) < 1.0
    True
    """
    from odedsl.distributed.worker import empty

    list(engine.map(empty, [0]))  # warm: the worker has imported odedsl
    start = time.perf_counter()
    for k in range(n):
        list(engine.map(empty, [k]))
    return (time.perf_counter() - start) / n
