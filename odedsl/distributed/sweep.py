"""Parameter sweeps and distributed ensembles: many solves of one model, cut into chunks of rows.

A *sweep* is the grid of ``--sweep NAME=LO:HI:N`` axes (their Cartesian
product, the last axis varying fastest; ``--log NAME`` spaces an axis
geometrically) or ``--samples N`` Latin-hypercube draws within the axes'
ranges. Its runs are numbered ``0 .. n_runs-1`` and solved chunk by chunk:
each chunk is one call of the model's compiled ensemble loop (``simulate.py``),
in this process or as a Dask task, and is written to the output table as soon
as it is done, so the whole sweep never has to fit in memory.

The table is long: one row per run and output time, with the run number, the
swept values (a swept initial value is the column ``NAME(0)``), the time, the
states and, when asked, the observables. ``.parquet`` files get one row group
per chunk (pyarrow, the ``parquet`` extra); any other name is CSV.

A work item is a range of rows, never a compiled function: the worker rebuilds
the rows from the shared plan and the model from its text
(``odedsl.distributed.worker.model_from_text``, compiled once per worker).
Rows are computed by the same code in every process, so a distributed ensemble
equals the local one bit for bit.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

from odedsl.errors import OdedslError, UsageError
from odedsl.model import Model

log = logging.getLogger(__name__)

#: Float values written per chunk of a sweep, by default (about 8 MB): big enough that a chunk is milliseconds of
#: solving, small enough that many are in flight at once.
CHUNK_VALUES = 1 << 20
#: Chunks in flight per worker when a sweep runs on Dask: the results waiting to be written stay bounded.
IN_FLIGHT_PER_WORKER = 4

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SWEEP = re.compile(rf"^\s*([A-Za-z_]\w*)\s*=\s*({_NUMBER})\s*:\s*({_NUMBER})\s*(?::\s*(\S+)\s*)?$")


@dataclass(frozen=True)
class Axis:
    """One swept quantity: a parameter's value or a state's initial value, from ``lo`` to ``hi``."""

    name: str
    lo: float
    hi: float
    n: int | None  # grid points (None: the range of a Latin-hypercube draw)
    log: bool = False

    def grid(self) -> np.ndarray:
        if self.log:
            return np.geomspace(self.lo, self.hi, self.n)
        return np.linspace(self.lo, self.hi, self.n)


def parse_axis(text: str) -> Axis:
    """``NAME=LO:HI:N`` (or ``NAME=LO:HI`` for ``--samples``) as an ``Axis``; ``UsageError`` when malformed.

    Examples
    --------
    >>> parse_axis("alpha=0.5:1.5:11")
    Axis(name='alpha', lo=0.5, hi=1.5, n=11, log=False)
    """
    m = _SWEEP.match(text)
    if not m:
        raise UsageError(f"--sweep {text!r}: expected NAME=LO:HI:N, e.g. --sweep alpha=0.5:1.5:11")
    name, lo, hi, n = m.group(1), float(m.group(2)), float(m.group(3)), m.group(4)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise UsageError(f"--sweep {text!r}: LO and HI must be finite numbers")
    count = None
    if n is not None:
        if not n.isdigit() or int(n) < 1:
            raise UsageError(f"--sweep {text!r}: N must be a whole number >= 1, got {n!r}")
        count = int(n)
    return Axis(name, lo, hi, count)


@dataclass
class Sweep:
    """The runs of a sweep: ``n_runs`` parameter sets and/or initial values, made chunk by chunk.

    Examples
    --------
    >>> import odedsl
    >>> m = odedsl.loads("param k = 1\\nstate x = 1\\nder(x) = -k*x\\n")
    >>> s = Sweep.build(m, [parse_axis("k=1:3:3"), parse_axis("x=1:2:2")])
    >>> s.n_runs, s.values(0, 3)
    (6, {'k': array([1., 1., 2.]), 'x': array([1., 2., 1.])})
    """

    axes: list[Axis]
    params: list[str]  # the axes that are parameters ...
    states: list[str]  # ... and those that are initial values
    samples: np.ndarray | None = field(default=None, repr=False)  # (n, d) Latin-hypercube draws, when drawn

    @classmethod
    def build(cls, model: Model, axes: Sequence[Axis], log: Sequence[str] = (), samples: int | None = None,
              seed: int = 0) -> "Sweep":
        """Check ``axes`` against ``model`` and make the plan; ``UsageError`` for anything wrong."""
        if not axes:
            raise UsageError("give at least one --sweep NAME=LO:HI:N" + (" (the range of --samples)" if samples
                                                                           else ""))
        params, states = [p.name for p in model.params], [s.name for s in model.states]
        seen: set[str] = set()
        checked = []
        for a in axes:
            if a.name not in params and a.name not in states:
                raise UsageError(f"--sweep {a.name}=...: '{a.name}' is neither a parameter nor a state of model "
                                 f"'{model.name}'; valid names: {', '.join(params + states)}")
            if a.name in seen:
                raise UsageError(f"--sweep {a.name}=... is given twice")
            seen.add(a.name)
            if samples is None and a.n is None:
                raise UsageError(f"--sweep {a.name}={a.lo:g}:{a.hi:g}: give the number of grid points, "
                                 f"{a.name}=LO:HI:N (or draw --samples N within the range)")
            if samples is not None and a.n is not None:
                raise UsageError(f"--sweep {a.name}=...:{a.n}: with --samples the axes are ranges only, "
                                 f"write {a.name}={a.lo:g}:{a.hi:g}")
            checked.append(a)
        for name in log:
            if name not in seen:
                raise UsageError(f"--log {name}: no --sweep {name}=... to put on a log scale "
                                 f"(swept: {', '.join(a.name for a in axes)})")
        out = []
        for a in checked:
            if a.name in log:
                if not (a.lo > 0 and a.hi > 0):
                    raise UsageError(f"--log {a.name}: the range {a.lo:g}:{a.hi:g} is not positive; a log scale "
                                     "needs 0 < LO and 0 < HI")
                a = Axis(a.name, a.lo, a.hi, a.n, True)
            out.append(a)
        draws = None
        if samples is not None:
            if samples < 1:
                raise UsageError(f"--samples must be at least 1 (got {samples})")
            from scipy.stats import qmc

            u = qmc.LatinHypercube(d=len(out), seed=np.random.default_rng(seed)).random(samples)
            draws = np.empty_like(u)
            for j, a in enumerate(out):
                if a.log:
                    draws[:, j] = np.exp(np.log(a.lo) + u[:, j] * (np.log(a.hi) - np.log(a.lo)))
                else:
                    draws[:, j] = a.lo + u[:, j] * (a.hi - a.lo)
        return cls(out, [a.name for a in out if a.name in params], [a.name for a in out if a.name not in params],
                   draws)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.samples.shape[0],) if self.samples is not None else tuple(a.n for a in self.axes)

    @property
    def n_runs(self) -> int:
        return math.prod(self.shape)

    def values(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Each axis's values for the runs ``start .. stop-1``."""
        if self.samples is not None:
            return {a.name: self.samples[start:stop, j].copy() for j, a in enumerate(self.axes)}
        index = np.unravel_index(np.arange(start, stop), self.shape)
        return {a.name: a.grid()[i] for a, i in zip(self.axes, index)}

    def columns(self) -> list[str]:
        """The table's columns of swept values."""
        return [a.name if a.name in self.params else f"{a.name}(0)" for a in self.axes]


# -- solving rows: here or on a worker ------------------------------------------------------------------------


@dataclass
class Job:
    """What every chunk of a sweep shares: the model as text, the plan, the times and the solver's options."""

    text: str
    name: str
    sweep: Sweep
    t: np.ndarray
    options: dict  # simulate_ensemble's: method, rtol, atol, dt, max_steps, h0
    params: dict[str, float]  # the base values (--set, --params) of everything not swept
    y0: dict[str, float]
    weights: np.ndarray | None
    inputs: dict | None
    observables: bool


def solve_chunk(model: Model, job: Job, start: int, stop: int) -> dict:
    """Runs ``start .. stop-1`` of ``job``: their swept values, trajectories, status and observables."""
    from odedsl.simulate import EnsembleSetup, STATUS_OK

    values = job.sweep.values(start, stop)
    params = {**job.params, **{k: values[k] for k in job.sweep.params}}
    y0 = {**job.y0, **{k: values[k] for k in job.sweep.states}}
    setup = EnsembleSetup.build(model, job.t, params, y0, inputs=job.inputs, weights=job.weights, **job.options)
    if setup.P.shape[0] != stop - start:  # nothing swept varies: broadcast
        setup.P = np.repeat(setup.P[:1], stop - start, 0)
        setup.Y0 = np.repeat(setup.Y0[:1], stop - start, 0)
    out, status, _, _ = setup.run(setup.P, setup.Y0)
    failed = status != STATUS_OK
    out[failed] = np.nan
    obs = None
    if job.observables and model.observables:
        obs = observables(model, setup, out)
        obs[failed] = np.nan
    return {"start": start, "values": values, "y": out, "obs": obs, "failed": int(failed.sum())}


def observables(model: Model, setup, y: np.ndarray) -> np.ndarray:
    """The ``observe`` expressions of every row and time: (N, T, n_observables)."""
    mod = model.compile().module
    n, T = y.shape[:2]
    out = np.full((n, T, len(model.observables)), np.nan)
    row = np.empty(len(model.observables))
    for k in range(n):
        margs = (setup.P[k], setup.w, setup.ut, setup.uv)
        for i in range(T):
            mod.observe(setup.t[i], y[k, i], margs, row)
            out[k, i] = row
    return out


def _sweep_task(item: tuple[int, int], job: Job) -> dict:
    """A Dask task: one chunk of a sweep, on a worker (the model compiled once per worker process)."""
    from odedsl.distributed.worker import model_from_text

    try:
        return solve_chunk(model_from_text(job.text, job.name), job, *item)
    except OdedslError as exc:
        return {"start": item[0], "error": exc}


def _rows_task(item: tuple[int, np.ndarray, np.ndarray], shared: dict) -> dict:
    """A Dask task: rows of ``simulate_ensemble``, given as their parameter and initial-value vectors."""
    from odedsl.distributed.worker import model_from_text
    from odedsl.simulate import run_rows

    start, P, Y0 = item
    try:
        mod = model_from_text(shared["text"], shared["name"]).compile().module
        out, status, t_reached, stats = run_rows(mod, shared["t"], P, Y0, shared["w"], shared["ut"], shared["uv"],
                                                 **shared["options"])
    except OdedslError as exc:
        return {"start": start, "error": exc}
    return {"start": start, "out": out, "status": status, "t_reached": t_reached, "stats": stats}


def _engine(client, workers, scheduler):
    from odedsl.distributed.engine import Engine

    return Engine(scheduler=scheduler, workers=workers, client=client)


def run_distributed(setup, chunk_size: int | None, client=None, workers: int | None = None,
                    scheduler: str | None = None):
    """``simulate_ensemble``'s rows solved on Dask, chunk by chunk: (states, status, t reached, stats)."""
    n = setup.P.shape[0]
    out = np.empty((n, setup.t.size, setup.Y0.shape[1]))
    status = np.zeros(n, dtype=np.int64)
    t_reached = np.zeros(n)
    stats = None
    with _engine(client, workers, scheduler) as engine:
        from odedsl.simulate import MIN_CHUNK

        size = chunk_size or max(MIN_CHUNK, math.ceil(n / (4 * max(engine.n_workers, 1))))
        shared = engine.share({
            "text": setup.model.source, "name": setup.model.filename, "t": setup.t, "w": setup.w, "ut": setup.ut,
            "uv": setup.uv, "options": {"method": setup.method, "rtol": setup.rtol, "atol": setup.atol,
                                        "dt": setup.dt, "max_steps": setup.max_steps, "h0": setup.h0}})
        items = [(s, setup.P[s:s + size], setup.Y0[s:s + size]) for s in range(0, n, size)]
        for _, rec in engine.map(_rows_task, items, shared):
            if "error" in rec:
                raise _task_error(rec["error"])
            s = rec["start"]
            e = s + rec["out"].shape[0]
            out[s:e], status[s:e], t_reached[s:e] = rec["out"], rec["status"], rec["t_reached"]
            if stats is None:
                stats = np.zeros((n, rec["stats"].shape[1]), dtype=np.int64)
            stats[s:e] = rec["stats"]
    return out, status, t_reached, stats


def _task_error(exc: OdedslError) -> OdedslError:
    """A worker's error, raised here as the same kind (so the exit code is the same), saying where it came from."""
    try:
        return type(exc)(f"a worker could not solve its chunk: {exc}")
    except TypeError:  # an error type with structured fields: as it is
        return exc


# -- the sweep, streamed to a table -----------------------------------------------------------------------------


def chunk_runs(n_times: int, n_columns: int, n_runs: int, n_workers: int = 1) -> int:
    """Runs per chunk: about ``CHUNK_VALUES`` values, and at least a few chunks per worker when distributed."""
    size = max(1, CHUNK_VALUES // max(1, n_times * n_columns))
    if n_workers > 1:
        size = min(size, max(1, math.ceil(n_runs / (IN_FLIGHT_PER_WORKER * n_workers))))
    return min(size, n_runs)


class TableWriter:
    """A long table written chunk by chunk: Parquet (one row group per chunk) for ``.parquet``, else CSV."""

    def __init__(self, path: str | Path, columns: list[str]) -> None:
        self.path = Path(path)
        self.columns = columns
        self.rows = self.chunks = 0
        self.parquet = self.path.suffix.lower() == ".parquet"
        self._pq = None
        if self.parquet:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise UsageError(f"--out {path}: writing Parquet needs pyarrow, which is not installed: "
                                 "pip install 'odedsl[parquet]' (or write a .csv)") from None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = None if self.parquet else self.path.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        if self._fh is not None:
            self._fh.write(",".join(columns) + "\n")

    def write(self, columns: list[np.ndarray]) -> None:
        """Append rows given as one 1-D array per column (integers stay integers)."""
        try:
            if self.parquet:
                self._write_parquet(columns)
            else:  # repr: the shortest text that reads back as the same double
                cells = [map(repr, c.tolist()) for c in columns]
                self._fh.write("".join(",".join(row) + "\n" for row in zip(*cells)))
                self._fh.flush()
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {exc.strerror}") from None
        self.rows += len(columns[0])
        self.chunks += 1

    def _write_parquet(self, columns: list[np.ndarray]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        batch = pa.table([pa.array(c) for c in columns], names=self.columns)
        if self._pq is None:
            self._pq = pq.ParquetWriter(self.path, batch.schema)
        self._pq.write_table(batch)

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.close()

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class SweepReport:
    """What a finished sweep wrote."""

    path: Path
    runs: int
    rows: int
    chunks: int
    failed: int
    dashboard: str | None = None


def long_table(chunk: dict, t: np.ndarray) -> list[np.ndarray]:
    """A chunk as the long table's columns: run, the swept values, time, the states [, the observables]."""
    y = chunk["y"]
    n, T, _ = y.shape
    cols = [np.repeat(np.arange(chunk["start"], chunk["start"] + n, dtype=np.int64), T)]
    cols += [np.repeat(v, T) for v in chunk["values"].values()]
    cols.append(np.tile(t, n))
    flat = y.reshape(n * T, -1)
    cols += [flat[:, j] for j in range(flat.shape[1])]
    if chunk.get("obs") is not None:
        obs = chunk["obs"].reshape(n * T, -1)
        cols += [obs[:, j] for j in range(obs.shape[1])]
    return cols


def run_sweep(model: Model, job: Job, out: str | Path, chunk_size: int | None = None, client=None,
              workers: int | None = None, scheduler: str | None = None,
              progress: Callable[[int, int, int], None] | None = None,
              on_start: Callable[[str | None, int], None] | None = None) -> SweepReport:
    """Solve every run of ``job.sweep`` and write the long table to ``out``, one chunk at a time.

    Locally (no ``client``, ``workers`` or ``scheduler``) each chunk is one
    parallel ensemble call on this machine's cores; otherwise chunks are Dask
    tasks, a bounded number in flight, written in run order as they complete.
    ``progress(runs done, runs, failed)`` is called after each chunk;
    ``on_start(dashboard, n_workers)`` once the cluster is up.

    Examples
    --------
    >>> import odedsl, tempfile, os
    >>> m = odedsl.loads("param k = 1\\nstate x = 1\\nder(x) = -k*x\\n")
    >>> s = Sweep.build(m, [parse_axis("k=1:2:3")])
    >>> job = Job(m.source, m.filename, s, np.array([0.0, 1.0]), {}, {}, {}, None, None, False)
    >>> path = os.path.join(tempfile.mkdtemp(), "sweep.csv")
    >>> run_sweep(m, job, path).rows
    6
    """
    n = job.sweep.n_runs
    n_obs = len(model.observables) if job.observables else 0
    columns = ["run", *job.sweep.columns(), model.time.name, *(s.name for s in model.states),
               *([o.column for o in model.observables] if n_obs else [])]
    failed = done = 0
    with TableWriter(out, columns) as writer:
        if client is None and workers is None and scheduler is None:
            size = chunk_size or chunk_runs(job.t.size, len(columns), n)
            for start in range(0, n, size):
                chunk = solve_chunk(model, job, start, min(start + size, n))
                writer.write(long_table(chunk, job.t))
                failed += chunk["failed"]
                done += chunk["y"].shape[0]
                if progress is not None:
                    progress(done, n, failed)
            return SweepReport(writer.path, n, writer.rows, writer.chunks, failed)
        solve_chunk(model, job, 0, 1)  # a bad option fails here, before a cluster starts, as it would locally
        with _engine(client, workers, scheduler) as engine:
            if on_start is not None:
                on_start(engine.dashboard, engine.n_workers)
            size = chunk_size or chunk_runs(job.t.size, len(columns), n, engine.n_workers)
            shared = engine.share(job)
            window = IN_FLIGHT_PER_WORKER * max(engine.n_workers, 1)
            starts = list(range(0, n, size))
            for first in range(0, len(starts), window):  # a bounded batch at a time: results never pile up
                batch = [(s, min(s + size, n)) for s in starts[first:first + window]]
                pending: dict[int, dict] = {}
                written = 0
                for i, chunk in engine.map(_sweep_task, batch, shared):
                    if "error" in chunk:
                        raise _task_error(chunk["error"])
                    pending[i] = chunk
                    while written in pending:  # in run order, each chunk as soon as those before it are written
                        c = pending.pop(written)
                        writer.write(long_table(c, job.t))
                        failed += c["failed"]
                        done += c["y"].shape[0]
                        written += 1
                        if progress is not None:
                            progress(done, n, failed)
            return SweepReport(writer.path, n, writer.rows, writer.chunks, failed, engine.dashboard)


def print_progress(stream=sys.stderr) -> Callable[[int, int, int], None]:
    """A one-line progress report on ``stream`` when it is a terminal (else nothing)."""
    if not stream.isatty():
        return lambda done, total, failed: None

    def show(done: int, total: int, failed: int) -> None:
        end = "\n" if done >= total else ""
        extra = f", {failed} failed" if failed else ""
        print(f"\rsweep: {done}/{total} runs{extra}", end=end, file=stream, flush=True)

    return show

