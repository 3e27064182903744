"""Multi-start fits: the same fit from many starting points, in parallel, keeping the best.

Start 0 is the model file's values; starts 1..N-1 are a Latin hypercube over the
fitted parameters (``draw_starts``): uniform within finite bounds, log-uniform
for a positive parameter whose bounds span more than a decade, and around the
file's value for a parameter without both bounds. The draw depends only on the
model, ``N`` and the seed, never on the number of workers; each start is a full
local fit with the usual optimiser (``odedsl.fit.run.fit``) run as one Dask task
(``engine.Engine``), so the best start, and every record, is the same with 1 or
100 workers. A model with neural terms also varies the nets' initial weights:
start ``k`` draws them from seed ``seed + k``.

The output folder (``out``) never loses work: ``starts/plan.json`` holds the
starting points before any fit runs, and each start's record is written to
``starts/<k>.json`` (atomically) the moment it arrives. Ctrl-C, a lost
scheduler or a crash leaves every finished start on disk, and ``resume=True``
runs only the missing ones. At the end (and on any stop) ``starts.csv`` (one row
per start: its initial and final values, loss, iterations, status, seconds and
worker) and ``waterfall.png`` (the final losses sorted) are written; the CLI
adds the best start's usual fit outputs. A start whose fit fails is recorded
``failed`` with its reason and the others go on; when every start fails the run
raises ``NumericalError`` with the reasons summarised.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from odedsl.errors import NumericalError, OdedslError, UsageError
from odedsl.fit.result import FitResult
from odedsl.model import Model

log = logging.getLogger(__name__)

RECORDS, PLAN, TABLE, WATERFALL = "starts", "plan.json", "starts.csv", "waterfall.png"
#: A start "reached the best loss" when within this much of it (relative, or absolute below 1).
SAME = 1e-4
#: Log-uniform draws for a positive parameter whose bounds' ratio exceeds this.
DECADE = 10.0


# -- the starting points ----------------------------------------------------------------------------------------


def draw_starts(model: Model, n: int, seed: int = 0) -> np.ndarray:
    """``n`` starting points for the fitted parameters, shape ``(n, len(model.fitted_params))``.

    Row 0 is the file's values; rows 1..n-1 a Latin hypercube (each parameter's
    range cut into n-1 equal-probability strata, one draw in each, strata paired
    at random) mapped per parameter: uniform within finite bounds; log-uniform when
    the lower bound is positive and the bounds span more than a decade; without both
    bounds, log-uniform over a decade either side of a positive value (when the
    lower bound is not negative), else uniform over ``value ± max(|value|, 1)``,
    clipped to whichever bound there is. Reproducible from ``seed``.

    Examples
    --------
    >>> import odedsl
    >>> from odedsl.distributed.starts import draw_starts
    >>> m = odedsl.loads("param a = 1 in [0, 2]\\nparam b = 5 in [1, 1000]\\nstate x = 1\\nder(x) = -a*b*x\\n")
    >>> x = draw_starts(m, 5, seed=1)
    >>> x.shape, x[0].tolist()
    ((5, 2), [1.0, 5.0])
    >>> bool(((x[1:] >= [0, 1]) & (x[1:] <= [2, 1000])).all())
    True
    >>> sorted((x[1:, 0] // 0.5).astype(int).tolist())  # one draw per quarter of [0, 2]
    [0, 1, 2, 3]
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UsageError(f"the number of starts must be a positive whole number, not {n!r}")
    fitted = model.fitted_params
    out = np.empty((n, len(fitted)))
    out[0] = [p.value for p in fitted]
    if n == 1 or not fitted:
        return out
    rng = np.random.default_rng(seed)
    m = n - 1
    u = (np.stack([rng.permutation(m) for _ in fitted], 1) + rng.random((m, len(fitted)))) / m
    u = np.clip(u, 1e-12, 1 - 1e-12)
    for j, p in enumerate(fitted):
        out[1:, j] = _inverse_cdf(p.value, p.lower, p.upper, u[:, j])
    return out


def _inverse_cdf(value: float, lo: float, hi: float, u: np.ndarray) -> np.ndarray:
    if math.isfinite(lo) and math.isfinite(hi):
        if lo > 0 and hi / lo > DECADE:
            return np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))
        return lo + u * (hi - lo)
    if value > 0 and not lo < 0:
        a, b = math.log(value / DECADE), math.log(value * DECADE)
        x = np.exp(a + u * (b - a))
    else:
        w = max(abs(value), 1.0)
        x = value - w + 2 * w * u
    return np.clip(x, lo, hi)


def with_values(model: Model, values: dict[str, float]) -> Model:
    """A copy of ``model`` whose parameters start at ``values`` (by name); it shares the compiled code.

    Examples
    --------
    >>> import odedsl
    >>> from odedsl.distributed.starts import with_values
    >>> m = odedsl.loads("param k = 1 in [0, 5]\\nstate x = 1\\nder(x) = -k*x\\n")
    >>> with_values(m, {"k": 2.5}).param("k").value, m.param("k").value
    (2.5, 1.0)
    """
    params = [dataclasses.replace(p, value=float(values[p.name])) if p.name in values else p for p in model.params]
    # everything cached per model except "defaults" (the file's values, which these replace)
    backends = {k: v for k, v in model._backends.items() if k != "defaults"}
    return dataclasses.replace(model, params=params, _backends=backends)


# -- what a worker runs ---------------------------------------------------------------------------------------------


def pack_dataset(data) -> dict:
    """A ``Dataset`` as plain arrays and names, for shipping (its SymPy expressions are rebuilt from the model)."""
    return {"path": data.path, "time_column": data.time_column, "columns": list(data.columns),
            "experiments": data.experiments, "warnings": []}


def unpack_dataset(model: Model, packed: dict):
    """The ``Dataset`` of ``pack_dataset``, its observed columns' expressions and noise taken from ``model``."""
    from odedsl.fit.data import Dataset, observed_columns

    columns, exprs, noise = observed_columns(model)
    where = {c: (e, nz) for c, e, nz in zip(columns, exprs, noise)}
    cols = packed["columns"]
    return Dataset(packed["path"], packed["time_column"], cols, [where[c][0] for c in cols],
                   [where[c][1] for c in cols], packed["experiments"], list(packed["warnings"]))


def _prepare(problem: dict):
    """Once per worker process and run: the model (compiled), the data, and the optimiser's one-time setup."""
    from odedsl.distributed.worker import model_from_text
    from odedsl.fit.loss import scaling
    from odedsl.fit.run import Settings, choose, choose_backend

    model = model_from_text(problem["text"], problem["name"])
    data = unpack_dataset(model, problem["data"])
    settings = Settings(**problem["settings"])
    kind = choose(model, data, settings)[0]
    import scipy.optimize  # noqa: F401  (the optimisers' import, paid here rather than by the first start)

    from odedsl.fit import optimise  # noqa: F401

    try:  # one evaluation at the file's values loads every compiled function (numba loads them on first call)
        if kind == "least-squares":  # its sensitivity system: derived and loaded once, kept in model._backends
            from odedsl.fit.least_squares import Residuals

            res = Residuals(model, data, scaling(data), settings.method, settings.rtol, settings.atol)
            res(np.array([p.value for p in model.fitted_params]))
        elif choose_backend(model, settings)[0] == "numba":
            from odedsl.fit.numba_objective import NumbaObjective

            objective = NumbaObjective(model, data, scaling(data), settings.method, settings.rtol, settings.atol)
            objective.value_and_grad(objective.get_x())
    except NumericalError:
        pass  # the file's values do not solve: the starts will say so
    return model, data


def run_start(item: tuple, problem: dict) -> dict:
    """One Dask task: the fit from start ``item = (k, {name: value}, seed)``; its record, also when it fails."""
    from odedsl.distributed.worker import count_task, prepared, worker_address
    from odedsl.fit.run import Settings, fit

    k, values, seed = item
    count_task()
    t0 = time.perf_counter()
    rec = {"start": int(k), "status": "failed", "initial": dict(values), "params": None, "loss": None,
           "iterations": 0, "seconds": 0.0, "worker": worker_address(), "message": "", "history": [],
           "stderr": None, "corr": None, "weights": [], "settings": {}, "setup_seconds": 0.0}
    start = t0
    try:
        base, data = prepared(("multistart", problem["key"]), lambda: _prepare(problem))
        start = time.perf_counter()  # the first start on a worker also compiled: counted apart
        rec["setup_seconds"] = start - t0
        model = with_values(base, values)
        settings = Settings(**{**problem["settings"], "seed": int(seed)})
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # a far start's overflow is this start's business, not the log's
            r = fit(model, data, settings)
        for key, value in model._backends.items():  # e.g. a sensitivity system built here: for the next start
            if key != "defaults":
                base._backends.setdefault(key, value)
        rec.update(status="stopped" if r.failed else "ok", params={n: float(v) for n, v in r.params.items()},
                   loss=_json_float(r.loss), iterations=int(r.history[-1][0]) if r.history else 0,
                   message=r.message, history=[[float(v) for v in row] for row in r.history],
                   stderr=None if r.stderr is None else {n: _json_float(v) for n, v in r.stderr.items()},
                   corr=None if r.corr is None else [[_json_float(v) for v in row] for row in r.corr.tolist()],
                   weights=[float(w) for w in r.weights], settings=r.settings)
        if rec["loss"] is None:
            rec.update(status="failed", message=f"the loss is not finite ({r.message})")
    except (OdedslError, ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
        rec["message"] = _reason(exc)
    rec["seconds"] = time.perf_counter() - start
    return rec


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, OdedslError) else f"{type(exc).__name__}: {text}"


def _json_float(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


# -- the result --------------------------------------------------------------------------------------------------


@dataclass
class MultiStartResult(FitResult):
    """The best start's ``FitResult``, plus every start's record (``starts``, by start index).

    A record: ``start``, ``status`` (``"ok"``, ``"stopped"``: the fit gave up early
    but has a best point, ``"failed"``: no result, ``message`` says why),
    ``initial`` and ``params`` (final values by name), ``loss``, ``iterations``,
    ``seconds``, ``worker``. ``computed``: the starts this call ran (not resumed).
    """

    starts: list[dict] = field(default_factory=list)
    best_start: int = 0
    computed: list[int] = field(default_factory=list)

    def reached_best(self, tol: float = SAME) -> int:
        """How many starts ended within ``tol`` (relative, absolute below 1) of the best loss."""
        return sum(1 for r in self.starts if _near(r, self.loss, tol))

    def summary(self) -> str:
        """One line: how many starts reached the best loss, ended elsewhere, failed."""
        return _summary(self.starts, self.loss, self.best_start)


def _near(rec: dict, best: float, tol: float = SAME) -> bool:
    return rec["status"] != "failed" and rec["loss"] is not None and abs(rec["loss"] - best) <= tol * max(1, abs(best))


def _summary(records: list[dict], best: float, k: int) -> str:
    failed = sum(1 for r in records if r["status"] == "failed")
    near = sum(1 for r in records if _near(r, best))
    other = len(records) - failed - near
    return (f"{len(records)} starts: {near} reached the best loss {best:.6g} (start {k}), {other} ended higher, "
            f"{failed} failed")


class StartsStopped(Exception):
    """A multi-start run ended early (Ctrl-C, a lost cluster, a task that kept crashing).

    Every finished start is on disk (when there is an output folder) and in
    ``result`` (the best so far, or ``None``); ``exit_code``: 130 for Ctrl-C, else
    the cause's.
    """

    def __init__(self, message: str, result: MultiStartResult | None, done: int, total: int,
                 exit_code: int) -> None:
        super().__init__(message)
        self.result, self.done, self.total, self.exit_code = result, done, total, exit_code


# -- the driver --------------------------------------------------------------------------------------------------


def multistart(model: Model, data, settings=None, starts: int | None = 8, out: str | Path | None = None,
               resume: bool = False, progress: Callable | None = None, report: Callable | None = None,
               engine=None, client=None, workers: int | None = None,
               scheduler: str | None = None) -> MultiStartResult:
    """Fit ``model`` to ``data`` from ``starts`` starting points on a Dask cluster; the best fit, and every start.

    ``settings``: an ``odedsl.fit.run.Settings`` (its ``seed`` also seeds the draw).
    The cluster: ``engine`` (an ``engine.Engine``), else ``client``, ``scheduler``
    (an address) or a local cluster of ``workers`` processes, started and closed
    here. ``out``: the folder the records go to as they arrive (see the module
    docstring); ``resume``: run only the starts missing from it (``starts=None``:
    as many as that run had). ``progress(done, failed, total, best_loss)`` after
    each start; ``report(info)`` once before the first task, ``info`` holding
    ``optimizer``, ``why``, ``warnings``, ``starts``, ``to_run`` and ``engine``.

    Raises ``NumericalError`` when every start failed, ``StartsStopped`` when the
    run ended early (Ctrl-C included), ``UsageError`` for a ``resume`` whose folder
    holds another run.

    Examples
    --------
    >>> import odedsl
    >>> m = odedsl.load("models/hare_lynx.ode")
    >>> r = m.fit("models/data/hare_lynx.csv", starts=4, workers=1)  # doctest: +SKIP
    >>> r.summary()  # doctest: +SKIP
    '4 starts: 3 reached the best loss -2.00358 (start 0), 1 ended higher, 0 failed'
    """
    from odedsl.fit.run import Settings, _dataset, choose, choose_backend

    settings = settings or Settings()
    if not model.fitted_params and not model.nets:
        raise UsageError(f"model '{model.name}' has nothing to fit: every parameter is fixed and it has no nets")
    dataset = _dataset(model, data, settings)
    from odedsl.fit.loss import scaling

    scaling(dataset)  # a lognormal column with a value <= 0: InputError here, not once per start
    kind, why = choose(model, dataset, settings)
    if kind == "adam":
        backend, reason = choose_backend(model, settings)
        why = f"{why}; on {backend}: {reason}"
    names = [p.name for p in model.fitted_params]
    config = {k: v for k, v in vars(settings).items()}
    out_dir = Path(out) if out is not None else None
    saved = None
    if out_dir is not None and resume and (out_dir / RECORDS / PLAN).exists():
        saved = _read_plan(out_dir)
        starts = saved.get("starts") if starts is None else starts
    if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts < 1:
        raise UsageError(f"the number of starts must be a positive whole number, not {starts!r}")
    plan = {"starts": int(starts), "seed": int(settings.seed), "names": names, "model": model.source_hash,
            "data": _data_hash(dataset), "settings": _plan_settings(config)}
    records: dict[int, dict] = {}
    if saved is not None:
        _check_plan(out_dir, saved, plan)
        values = np.array(saved["values"], dtype=float).reshape(plan["starts"], len(names))
        records = read_records(out_dir, plan["starts"])
    else:
        if out_dir is not None and resume:
            raise UsageError(f"--resume {out_dir}: no multi-start run there (no {RECORDS}/{PLAN})")
        values = draw_starts(model, starts, settings.seed)
        if out_dir is not None:
            _fresh(out_dir)
            _atomic_json(out_dir / RECORDS / PLAN, {**plan, "values": values.tolist()})
    todo = [k for k in range(plan["starts"]) if k not in records]
    seeds = [settings.seed + k if model.nets else settings.seed for k in range(plan["starts"])]
    items = [(k, dict(zip(names, values[k].tolist())), seeds[k]) for k in todo]
    # the key under which each worker keeps its prepared problem: the same model, data and options reuse it
    key = hashlib.sha256(json.dumps([plan["model"], plan["data"], config], sort_keys=True, default=str).encode())
    problem = {"text": model.source, "name": model.filename, "data": pack_dataset(dataset), "settings": config,
               "key": key.hexdigest()}

    def best_loss() -> float:
        losses = [r["loss"] for r in records.values() if r["status"] != "failed" and r["loss"] is not None]
        return min(losses) if losses else math.nan

    def tick() -> None:
        if progress is not None:
            failed = sum(1 for r in records.values() if r["status"] == "failed")
            progress(len(records), failed, plan["starts"], best_loss())

    computed: list[int] = []
    stopped: tuple[str, int] | None = None
    cause = None
    own = engine is None
    try:
        tick()
        if todo:
            from odedsl.distributed.engine import Engine

            if engine is None:
                engine = Engine(scheduler=scheduler, workers=workers, client=client)
            engine.start()
            if report is not None:
                report({"optimizer": kind, "why": why, "warnings": list(dataset.warnings), "starts": plan["starts"],
                        "to_run": len(todo), "engine": engine})
            handle = engine.share(problem, key=problem["key"])  # shipped once per engine and problem
            results = engine.map(run_start, items, handle, on_error="yield")
            try:
                for i, rec in results:
                    if isinstance(rec, BaseException):  # the task itself kept failing: this start failed
                        rec = _failed_record(items[i], rec)
                    records[rec["start"]] = rec
                    computed.append(rec["start"])
                    if out_dir is not None:
                        _atomic_json(out_dir / RECORDS / f"{rec['start']:04d}.json", rec)
                    tick()
            finally:
                results.close()  # cancels what has not finished
        elif report is not None:
            report({"optimizer": kind, "why": why, "warnings": list(dataset.warnings), "starts": plan["starts"],
                    "to_run": 0, "engine": None})
    except KeyboardInterrupt:
        stopped = ("interrupted", 130)
    except OdedslError as exc:
        if isinstance(exc, UsageError) and not records:
            raise  # e.g. an unreachable scheduler: nothing ran
        stopped, cause = (str(exc), exc.exit_code), exc
    finally:
        if own and engine is not None:
            engine.close()
    ordered = [records[k] for k in sorted(records)]
    if out_dir is not None:
        write_table(out_dir / TABLE, ordered, names)
        if ordered:
            plot_waterfall(ordered, out_dir / WATERFALL, f"{model.name}: {plan['starts']} starts")
    result = _best(model, dataset, ordered, plan["starts"], computed)
    if stopped is not None:
        message, code = stopped
        where = f"; the finished ones are in {out_dir}/{RECORDS}/, continue with --resume {out_dir}" if out_dir else ""
        raise StartsStopped(f"{message}: {len(ordered)} of {plan['starts']} starts finished{where}", result,
                            len(ordered), plan["starts"], code) from cause
    if result is None:
        reasons = Counter(r["message"] for r in ordered)
        listed = "; ".join(f"{n}x {why!r}" for why, n in reasons.most_common(5))
        raise NumericalError(f"every one of the {len(ordered)} starts failed: {listed}")
    return result


def _failed_record(item: tuple, exc: BaseException) -> dict:
    k, values, _ = item
    return {"start": int(k), "status": "failed", "initial": dict(values), "params": None, "loss": None,
            "iterations": 0, "seconds": 0.0, "worker": "", "message": getattr(exc, "cause", None) or str(exc),
            "history": [], "stderr": None, "corr": None, "weights": [], "settings": {}}


def _best(model: Model, dataset, records: list[dict], n: int, computed: list[int]) -> MultiStartResult | None:
    ok = [r for r in records if r["status"] != "failed" and r["loss"] is not None]
    if not ok:
        return None
    low = min(r["loss"] for r in ok)  # ties (to rounding) go to the first start, whatever the order of arrival
    b = min((r for r in ok if r["loss"] - low <= 1e-9 * max(1.0, abs(low))), key=lambda r: r["start"])
    nan = math.nan
    corr = None if b["corr"] is None else np.array([[nan if v is None else v for v in row] for row in b["corr"]])
    stderr = None if b["stderr"] is None else {k: nan if v is None else v for k, v in b["stderr"].items()}
    return MultiStartResult(
        model, dict(b["params"]), np.asarray(b["weights"], dtype=float), float(b["loss"]),
        [(int(i), float(loss), float(s)) for i, loss, s in b["history"]],
        {**{p.name: p.value for p in model.params}, **b["initial"]}, stderr, corr,
        {**b["settings"], "starts": n, "start": b["start"]},
        b["message"], dataset, b["status"] == "stopped", starts=records, best_start=b["start"], computed=computed)


# -- the folder ----------------------------------------------------------------------------------------------------


def _plan_settings(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "checkpoint_every"}


def _data_hash(dataset) -> str:
    h = hashlib.sha256(json.dumps([dataset.columns, dataset.time_column]).encode())
    for e in dataset.experiments:
        h.update(e.name.encode())
        for a in (e.times, e.observed):
            h.update(np.ascontiguousarray(a, dtype=float).tobytes())
        for name in sorted(e.inputs):
            h.update(name.encode())
            for a in e.inputs[name]:
                h.update(np.ascontiguousarray(a, dtype=float).tobytes())
        h.update(json.dumps(e.y0, sort_keys=True).encode())
    return h.hexdigest()


def _read_plan(out_dir: Path) -> dict:
    path = out_dir / RECORDS / PLAN
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--resume {out_dir}: {path} is not readable ({exc})") from None


def _check_plan(out_dir: Path, saved: dict, plan: dict) -> None:
    diffs = []
    if saved.get("model") != plan["model"]:
        diffs.append("the model file")
    if saved.get("data") != plan["data"]:
        diffs.append("the data")
    for key in ("starts", "seed", "names"):
        if saved.get(key) != plan[key]:
            diffs.append(f"{key} ({saved.get(key)} there, {plan[key]} now)")
    old, new = saved.get("settings", {}), plan["settings"]
    for key in sorted(set(old) | set(new)):
        if key != "seed" and old.get(key) != new.get(key):
            diffs.append(f"{key} ({old.get(key)} there, {new.get(key)} now)")
    if diffs:
        raise UsageError(f"--resume {out_dir}: that run was made with other inputs: {'; '.join(diffs)}; resume with "
                         "the same model, data and options, or start a new --out folder")


def read_records(out_dir: str | Path, n: int | None = None) -> dict[int, dict]:
    """The finished starts' records in ``out_dir/starts/`` (unreadable ones skipped: they run again)."""
    records = {}
    for path in sorted((Path(out_dir) / RECORDS).glob("[0-9]*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            k = int(rec["start"])
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("%s: not a readable start record; that start runs again", path)
            continue
        if n is None or 0 <= k < n:
            records[k] = rec
    return records


def _fresh(out_dir: Path) -> None:
    """A new run in ``out_dir``: its earlier start records (only those) removed."""
    d = out_dir / RECORDS
    try:
        d.mkdir(parents=True, exist_ok=True)
        for path in d.glob("[0-9]*.json"):
            path.unlink()
    except OSError as exc:
        raise UsageError(f"cannot prepare the output folder {out_dir}: {exc.strerror}") from None


def _tmp(path: Path) -> Path:
    """A temporary name beside ``path`` (same folder, so the final rename is atomic)."""
    return path.parent / f".{path.name}.{os.getpid()}.tmp"


def _atomic_json(path: Path, doc: dict) -> None:
    tmp = _tmp(path)
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def write_table(path: str | Path, records: list[dict], names: list[str]) -> None:
    """``starts.csv``: one row per start (start, status, loss, iterations, seconds, worker, initial and final
    values, message)."""
    path = Path(path)
    header = ["start", "status", "loss", "iterations", "seconds", "worker", *(f"initial_{n}" for n in names),
              *(f"fitted_{n}" for n in names), "message"]
    tmp = _tmp(path)
    try:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for r in records:
                final = r["params"] or {}
                w.writerow([r["start"], r["status"], _cell(r["loss"]), r["iterations"], f"{r['seconds']:.3f}",
                            r["worker"], *(_cell(r["initial"].get(n)) for n in names),
                            *(_cell(final.get(n)) for n in names), " ".join(str(r["message"]).split())])
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def _cell(v) -> str:
    return "" if v is None else repr(float(v))


def plot_waterfall(records: list[dict], path: str | Path, title: str) -> None:
    """The final losses sorted, best first: the plateau at the bottom is the starts that found the best optimum."""
    from odedsl.io.plots import figure

    ok = sorted(r["loss"] for r in records if r["status"] != "failed" and r["loss"] is not None)
    failed = len(records) - len(ok)

    def draw(plt):
        fig, ax = plt.subplots(figsize=(6.4, 4), dpi=110)
        if ok:
            best = ok[0]
            gap = np.array(ok) - best
            near = int(np.sum(gap <= SAME * max(1, abs(best))))
            rank = np.arange(1, len(ok) + 1)
            ax.plot(rank, gap, "-", color="0.7", lw=1, zorder=1)
            ax.scatter(rank[near:], gap[near:], color="C0", s=22, zorder=2, label="ended in another optimum")
            ax.scatter(rank[:near], gap[:near], color="C3", s=28, zorder=3,
                       label=f"reached the best loss ({best:.6g}): {near} of {len(records)} starts")
            ax.set_yscale("symlog", linthresh=1.0)  # linear below 1, logarithmic above
            ax.set_ylim(-0.2, max(2.0, gap.max() * 3))
            ax.legend(loc="upper left", fontsize=8)
        ax.set_xlabel("starts, sorted by final loss")
        ax.set_ylabel("final loss − best loss")
        ax.set_title(title + (f" ({failed} failed, not shown)" if failed else ""), fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    figure(path, draw)
