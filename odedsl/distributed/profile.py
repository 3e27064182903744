"""Profile likelihoods: each parameter fixed on a grid around the optimum, the others re-optimised.

For a parameter ``θ`` the profile is ``PL(θ) = max over the others of L``. A
point of it is a fit of a copy of the model in which ``θ`` is declared fixed
at the grid value (the compiled code is keyed by the model's text, so every
copy reuses it), warm-started from the optimum of its neighbour. Each side of
the optimum is therefore a *chain*: the points of one branch run one after
another, and the ``2 x n_params`` chains run at the same time on the Dask
workers (``engine.py``), a new point submitted as soon as its neighbour is
back.

The scale: the fit's loss is ``mean(r² + 2 log σ)`` over the ``n`` observed
values (``fit/loss.py``), so

- a column with a noise model (``~ normal(σ)``, ``~ lognormal(σ)``, σ given or
  fitted) contributes ``Σ (r² + 2 log σ)``: exactly ``-2 log L`` up to a
  constant, so its ``Δ(-2 log L) = n · Δloss``;
- a column without one has residuals scaled by the column's spread and an
  *unknown* σ: the likelihood with σ² estimated (``SSR / n_u``), i.e. profiled
  out, is ``-2 log L = n_u · log(SSR) + const``, so ``Δ = n_u · log(SSR / SSR_min)``
  (``n · Δloss`` would treat an arbitrary unit, the spread, as the known error).

``deviance`` computes ``D = Σ_noise (r² + 2 log σ) + n_u log(SSR_u)`` from the
residuals at a point; a profile's ``Δ`` is ``D`` minus the lowest ``D`` seen
(the fit's, unless a profile point found a better one). Where a model has both
kinds of column, the optimiser minimises the loss, not ``D``, so ``D`` at a
point is an upper bound of the exact profile (intervals slightly narrow there).

The likelihood-based confidence interval at ``level`` is where ``Δ`` stays
below the χ² quantile with one degree of freedom (3.84 for 95 %), the crossing
interpolated on the signed-root scale ``sqrt(Δ)`` (linear for a quadratic
profile). A side that never crosses it (the parameter's bound or the end of
the grid reached, or the fits stopped solving) is *unbounded*.

The grid: the first step is ``2 · se / points`` (the fit's standard error; else
``|θ| / points``); then each step grows or shrinks (by at most 2x) so that
``Δ`` rises by about ``1.5 · threshold / points`` per point, until a point
crosses the threshold by less than twice it, a bound is reached (a point is
placed on it), a fit fails, or ``3 · points`` points were made on that side
(``Chain`` says how a point far above the threshold is handled).

Every finished point is appended to ``profiles.csv`` as it arrives; ``resume``
reads it back and runs only the points still missing.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odedsl.errors import InputError, NumericalError, OdedslError, UsageError
from odedsl.model import Model

log = logging.getLogger(__name__)

CSV = "profiles.csv"
FIXED_COLUMNS = ["parameter", "branch", "step", "value", "delta", "deviance", "loss", "status", "iterations",
                 "seconds", "worker", "message"]
#: A side of a profile gets at most this many times ``points`` points.
MAX_POINTS_FACTOR = 3


def threshold(level: float = 0.95) -> float:
    """The ``Δ(-2 log L)`` of a ``level`` likelihood-based interval: the χ² quantile with one degree of freedom.

    Examples
    --------
    >>> round(threshold(0.95), 4)
    3.8415
    """
    from scipy.stats import chi2

    if not 0 < level < 1:
        raise UsageError(f"the confidence level must be between 0 and 1 (got {level})")
    return float(chi2.ppf(level, 1))


@dataclass
class Point:
    """One point of a profile: ``param`` fixed at ``value``, the others re-optimised (``params``)."""

    param: str
    branch: int  # -1 below the optimum, +1 above, 0 the optimum itself
    step: int  # 0 the optimum, then 1, 2, ... outwards
    value: float
    deviance: float  # -2 log L up to a constant (module docstring); NaN when the point failed
    loss: float
    params: dict[str, float]
    status: str  # "ok", "failed" or "optimum"
    message: str = ""
    iterations: int = 0
    seconds: float = 0.0
    worker: str = ""


@dataclass
class Interval:
    """A likelihood-based confidence interval; a side is ``None`` where the profile never crossed the threshold."""

    param: str
    value: float  # the fitted value
    lower: float | None
    upper: float | None
    # why a side is unbounded ("bound", "grid end", "failed", "not run"); on a bounded side, a warning when the
    # crossing is where other parameters hit their bounds ("a at its bound"): then it is not the data's doing
    lower_reason: str = ""
    upper_reason: str = ""
    stderr: float | None = None

    @property
    def identifiable(self) -> bool:
        return self.lower is not None and self.upper is not None


def crossing(values: list[float], deltas: list[float], limit: float) -> float | None:
    """Where a branch's ``Δ`` (its points outwards from the optimum) first reaches ``limit``, interpolated
    linearly in ``sqrt(Δ)``; ``None`` when it never does.

    Examples
    --------
    >>> crossing([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 4.0, 9.0], 4.0)  # a quadratic profile: exact
    2.0
    >>> crossing([0.0, 1.0, 2.0], [0.0, 0.1, 0.2], 3.84) is None
    True
    """
    for k in range(1, len(values)):
        if deltas[k] >= limit and deltas[k - 1] < limit:
            a, b = math.sqrt(max(deltas[k - 1], 0.0)), math.sqrt(deltas[k])
            frac = (math.sqrt(limit) - a) / (b - a) if b > a else 1.0
            return values[k - 1] + frac * (values[k] - values[k - 1])
    return None


# -- what a worker computes ------------------------------------------------------------------------------------


@dataclass
class Job:
    """What every point of a profile shares: the model as text, the data, the fit's settings."""

    text: str
    name: str
    data: Any  # the fitted Dataset
    settings: dict  # the fit's recorded settings
    weights: np.ndarray
    max_iters: int | None
    token: str = ""  # names this job's per-worker state (its residuals); unique per profile run


def fixed_copy(model: Model, name: str, value: float, start: dict[str, float]) -> Model:
    """``model`` with parameter ``name`` fixed at ``value`` and the others starting from ``start``.

    The copy has the same text, so it shares the compiled module.

    Examples
    --------
    >>> import odedsl
    >>> m = odedsl.loads("param a = 1 in [0, 5]\\nparam b = 2\\nstate x = 1\\nder(x) = -a*b*x\\n")
    >>> c = fixed_copy(m, "a", 3.0, {"b": 1.5})
    >>> [(p.name, p.value, p.fixed) for p in c.params]
    [('a', 3.0, True), ('b', 1.5, False)]
    """
    params = [dataclasses.replace(p, value=float(value), fixed=True) if p.name == name else
              dataclasses.replace(p, value=float(start.get(p.name, p.value))) for p in model.params]
    backends = {"numba": model._backends["numba"]} if "numba" in model._backends else {}
    return dataclasses.replace(model, params=params, _backends=backends)


def deviance(model: Model, data, params: dict[str, float], weights: np.ndarray | None = None,
             method: str = "dopri5", rtol: float = 1e-6, atol: float = 1e-8) -> float:
    """``-2 log L`` up to a constant at ``params``, σ profiled out for columns without a noise model.

    ``Σ (r² + 2 log σ)`` over the values of columns with a noise model, plus
    ``n_u · log(SSR_u)`` over the ``n_u`` values of the others (module docstring).
    ``NumericalError`` when the model cannot be solved there.
    """
    from odedsl.fit.least_squares import noise_at
    from odedsl.fit.loss import residuals, scaling

    sc = scaling(data)
    sigma = noise_at(model, data, params)
    unknown = np.array([k is None for k in sc.kinds])
    known_sum, ssr, n_u = 0.0, 0.0, 0
    for e in data.experiments:
        sol = model.simulate(e.times, params=params, y0=e.y0 or None, inputs=e.inputs or None,
                             weights=weights if weights is not None and weights.size else None, method=method,
                             rtol=rtol, atol=atol)
        obs = sol.observables() if model.observables else {s: sol[s] for s in sol.names}
        values = np.stack([obs[c] for c in data.columns], -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = residuals(np, values, e.observed, sigma, sc)
        mask = np.isfinite(e.observed)
        known = mask & ~unknown[None, :]
        free = mask & unknown[None, :]
        known_sum += float((r[known] ** 2).sum() + (2 * np.log(np.broadcast_to(sigma, r.shape)[known])).sum())
        ssr += float((r[free] ** 2).sum())
        n_u += int(free.sum())
    d = known_sum + (n_u * math.log(max(ssr, 1e-300)) if n_u else 0.0)
    if not math.isfinite(d):
        raise NumericalError("the likelihood is not finite there (a lognormal observable <= 0?)")
    return d


def _settings(record: dict, max_iters: int | None):
    from odedsl.fit.run import Settings

    valid = {f.name for f in dataclasses.fields(Settings)}
    s = Settings(**{k: v for k, v in record.items() if k in valid})
    if max_iters is not None:
        s.max_iters = max_iters
    return s


class FixedResiduals:
    """The fit's least-squares residuals with one parameter held at ``value``: the full sensitivity system
    (compiled once, for the fit) with that column dropped, so a profile compiles nothing new."""

    def __init__(self, full, name: str, value: float) -> None:
        self.full, self.value = full, float(value)
        self.j = [p.name for p in full.fitted].index(name)
        self.fitted = [p for i, p in enumerate(full.fitted) if i != self.j]
        self.n, self.offset, self.sc = full.n, full.offset, full.sc

    def _x(self, x: np.ndarray) -> np.ndarray:
        return np.insert(x, self.j, self.value)

    def params(self, x: np.ndarray) -> dict[str, float]:
        return self.full.params(self._x(x))

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r, J = self.full(self._x(x))
        return r, np.delete(J, self.j, axis=1)


def _least_squares(model: Model, job: Job, item: dict) -> tuple[dict[str, float], float, int, str]:
    """A point of a least-squares fit's profile: (parameters, loss, evaluations, message)."""
    from odedsl.fit.least_squares import Residuals, fit_least_squares
    from odedsl.fit.loss import scaling

    s = job.settings
    full = _cached(("profile-residuals", job.token), lambda: Residuals(
        model, job.data, scaling(job.data), s.get("method", "dopri5"), s.get("rtol", 1e-6), s.get("atol", 1e-8)))
    res = FixedResiduals(full, item["param"], item["value"])
    x0 = np.array([item["start"].get(p.name, p.value) for p in res.fitted], dtype=float)
    outcome = fit_least_squares(res, x0, job.max_iters or s.get("max_iters") or 200)
    if outcome.failed:
        raise NumericalError(f"the fit stopped early: {outcome.message}")
    return {**item["start"], **res.params(outcome.x)}, float(outcome.loss), outcome.iterations, outcome.message


def _cached(key, make):
    """``make()`` once per worker process (``worker.prepared``)."""
    from odedsl.distributed.worker import prepared

    return prepared(key, make)


def solve_point(model: Model, job: Job, item: dict) -> dict:
    """One work item: the optimum's deviance (``kind == "optimum"``), or a profile point's fit and deviance.

    A least-squares fit's point re-optimises with the fit's own sensitivity system
    (``FixedResiduals``); any other fit's, by fitting a copy of the model with the
    parameter fixed (``fixed_copy``), with the fit's settings.
    """
    from odedsl.fit.run import fit

    start = time.perf_counter()
    s = job.settings
    opts = {"method": s.get("method", "dopri5"), "rtol": s.get("rtol", 1e-6), "atol": s.get("atol", 1e-8)}
    record = {**item, "loss": math.nan, "iterations": 0, "message": ""}
    params = dict(item["start"])
    try:
        if item["kind"] == "optimum":
            record.update(status="optimum", deviance=deviance(model, job.data, params, job.weights, **opts))
        else:
            params[item["param"]] = item["value"]
            m = fixed_copy(model, item["param"], item["value"], item["start"])
            weights = job.weights
            if not m.fitted_params and not m.nets:  # nothing left to optimise: the point is the likelihood there
                pass
            elif s.get("optimizer") == "least-squares":
                params, loss, iters, message = _least_squares(model, job, item)
                record.update(loss=loss, iterations=iters, message=message)
            else:  # the nets start from the neighbour's weights (the fit's for the first point)
                start_weights = item.get("weights")
                r = fit(m, job.data, _settings(s, job.max_iters),
                        weights=start_weights if start_weights is not None else (weights if weights.size else None))
                params, weights = dict(r.params), r.weights
                if m.nets:
                    record["weights"] = weights
                record.update(loss=float(r.loss), iterations=len(r.history), message=r.message)
                if r.failed:
                    raise NumericalError(f"the fit stopped early: {r.message}")
            record.update(status="ok", deviance=deviance(m, job.data, params, weights, **opts))
    except OdedslError as exc:
        record.update(status="failed", deviance=math.nan, message=str(exc))
    record.update(params={k: float(v) for k, v in params.items()}, seconds=time.perf_counter() - start)
    return record


def _point_task(item: dict, job: Job) -> dict:
    """A Dask task: one point (the model compiled once per worker process)."""
    from odedsl.distributed.worker import count_task, model_from_text, worker_address

    count_task()
    try:
        model = model_from_text(job.text, job.name)
    except OdedslError as exc:
        return {**item, "status": "failed", "deviance": math.nan, "loss": math.nan, "iterations": 0,
                "message": str(exc), "params": dict(item["start"]), "seconds": 0.0, "worker": worker_address()}
    return {**solve_point(model, job, item), "worker": worker_address()}


# -- the driver --------------------------------------------------------------------------------------------------


@dataclass
class Chain:
    """One side of one parameter's profile: its points, and where the next one goes.

    Outwards from the optimum, each step grows or shrinks (at most 2x) so that ``Δ``
    rises by about ``1.5 · threshold / points`` per point. A point far above the
    threshold (``Δ`` over ``OVERSHOOT`` times it: a first step that was too long, or a
    wall after a flat stretch) does not end the side: the steps go on from the last
    point below it, rescaled when there is none, and never past three quarters of
    the way to it (else the crossing interpolated in ``sqrt(Δ)``, kept between a
    quarter and three quarters), until a point crosses the threshold close enough.
    """

    param: str
    branch: int
    fitted: float
    lower: float  # the parameter's bounds
    upper: float
    first_step: float
    points: int  # the ``points`` asked for
    done: list[Point] = field(default_factory=list)
    stop: str = ""  # why the chain ended: "crossed", "bound", "grid end", "failed"
    weights: np.ndarray | None = None  # hybrid models: the nets' weights at the last point, its successor's start

    OVERSHOOT = 2.0

    def outwards(self) -> list[Point]:
        """The points from the optimum outwards."""
        return sorted(self.done, key=lambda p: self.branch * (p.value - self.fitted))

    def next_value(self, reference: float, limit: float) -> float | None:
        """The next grid value, or ``None`` (with ``stop`` set) when this side is finished."""
        self.stop = ""
        if not self.done:
            return self._clip(self.fitted + self.branch * self.first_step)
        if max(self.done, key=lambda p: p.step).status == "failed":
            self.stop = "failed"
            return None
        pts = self.outwards()
        delta = [p.deviance - reference for p in pts]
        above = next((k for k in range(len(pts)) if delta[k] >= limit), None)
        inner = pts if above is None else pts[:above]
        x_in, d_in = (inner[-1].value, delta[len(inner) - 1]) if inner else (self.fitted, 0.0)
        if above is not None:
            x_out = pts[above].value
            if delta[above] <= self.OVERSHOOT * limit or abs(x_out - x_in) <= 1e-3 * abs(x_out - self.fitted):
                self.stop = "crossed"
                return None
        elif x_in in (self.lower, self.upper):
            self.stop = "bound"
            return None
        if len(pts) >= MAX_POINTS_FACTOR * self.points:
            self.stop = "grid end"
            return None
        if inner:
            prev_x, prev_d = (inner[-2].value, delta[len(inner) - 2]) if len(inner) > 1 else (self.fitted, 0.0)
            rise = d_in - prev_d
            factor = min(2.0, max(0.5, 1.5 * limit / self.points / rise if rise > 0 else 2.0))
            x = x_in + self.branch * abs(x_in - prev_x) * factor
        else:  # the first step overshot: rescale it to the crossing a parabola through the optimum puts there
            x = self.fitted + (crossing([self.fitted, x_out], [0.0, delta[above]], limit) - self.fitted) / self.points
        if above is not None and self.branch * (x - x_in) > 0.75 * abs(x_out - x_in):
            guess = crossing([x_in, x_out], [max(d_in, 0.0), delta[above]], limit)
            lo, hi = sorted((x_in, x_out))
            x = min(max(guess, lo + 0.25 * (hi - lo)), hi - 0.25 * (hi - lo))
        if not math.isfinite(x):
            self.stop = "grid end"
            return None
        return self._clip(x)

    def _clip(self, x: float) -> float:
        return min(max(x, self.lower), self.upper)

    def start_for(self, x: float, fitted: dict[str, float]) -> dict[str, float]:
        """The warm start of a point at ``x``: the optimum of its nearest neighbour towards the optimum."""
        inner = [p for p in self.done if p.status == "ok" and
                 self.branch * (p.value - self.fitted) < self.branch * (x - self.fitted)]
        if not inner:
            return fitted
        return max(inner, key=lambda p: self.branch * (p.value - self.fitted)).params

    @property
    def step(self) -> int:
        return len(self.done) + 1


@dataclass
class Profiles:
    """The profiles of a fit: every point, the intervals, and the files they are written to."""

    model: Model
    fitted: dict[str, float]
    stderr: dict[str, float | None]
    names: list[str]
    points: list[Point]
    level: float

    @property
    def threshold(self) -> float:
        return threshold(self.level)

    @property
    def reference(self) -> float:
        """The lowest deviance seen: the fit's, unless a profile point found a better optimum."""
        ds = [p.deviance for p in self.points if p.status in ("ok", "optimum") and math.isfinite(p.deviance)]
        return min(ds) if ds else math.nan

    def branch(self, name: str, side: int) -> list[Point]:
        """The optimum then the points of one side, outwards."""
        opt = [p for p in self.points if p.param == name and p.status == "optimum"][:1]
        x0 = self.fitted[name]
        return opt + sorted((p for p in self.points if p.param == name and p.branch == side),
                            key=lambda p: side * (p.value - x0))

    def intervals(self) -> dict[str, Interval]:
        """Each profiled parameter's likelihood-based interval at ``level``."""
        ref, limit = self.reference, self.threshold
        out = {}
        for name in self.names:
            sides = []
            for side in (-1, 1):
                pts = [p for p in self.branch(name, side) if p.status in ("ok", "optimum")]
                x = crossing([p.value for p in pts], [p.deviance - ref for p in pts], limit)
                sides.append((x, self._why_open(name, side, pts) if x is None else
                               self._held_by_bounds(name, next(p for p in pts if p.deviance - ref >= limit))))
            se = self.stderr.get(name)
            out[name] = Interval(name, self.fitted[name], sides[0][0], sides[1][0], sides[0][1], sides[1][1],
                                 se if se is not None and math.isfinite(se) else None)
        return out

    def _why_open(self, name: str, side: int, ok: list[Point]) -> str:
        """Why a side of a profile never crossed the threshold: "failed", "bound" or "grid end"."""
        if any(p.param == name and p.branch == side and p.status == "failed" for p in self.points):
            return "failed"
        q = self.model.param(name)
        if len(ok) > 1 and ok[-1].value == (q.lower if side < 0 else q.upper):
            return "bound"
        return "grid end" if len(ok) > 1 else "not run"

    def _held_by_bounds(self, name: str, beyond: Point) -> str:
        """At the first point past the threshold, the other parameters sitting on one of their bounds."""
        at = [q.name for q in self.model.fitted_params if q.name != name and
              any(math.isclose(beyond.params.get(q.name, math.nan), b, rel_tol=1e-9, abs_tol=1e-12)
                  for b in (q.lower, q.upper) if math.isfinite(b))]
        return f"{', '.join(at)} at {'their bounds' if len(at) > 1 else 'its bound'}" if at else ""

    def table(self) -> str:
        """The intervals as aligned text, with the Wald interval (±z·se) beside them where there is one."""
        from scipy.stats import norm

        z = float(norm.ppf(0.5 + self.level / 2))
        pct = f"{100 * self.level:g} %"
        rows = [("parameter", "fitted", f"lower ({pct})", f"upper ({pct})", f"Wald ±{z:.2f} se")]
        def side(x, why):
            if x is None:
                return f"unbounded ({why})"
            return f"{x:.6g}" + (f" ({why})" if why else "")

        for iv in self.intervals().values():
            wald = "" if iv.stderr is None else f"[{iv.value - z * iv.stderr:.4g}, {iv.value + z * iv.stderr:.4g}]"
            rows.append((iv.param, f"{iv.value:.6g}", side(iv.lower, iv.lower_reason), side(iv.upper, iv.upper_reason),
                         wald))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                 for r in rows]
        lines.append(f"likelihood-based: Δ(-2 log L) < {self.threshold:.4g} (χ² with 1 degree of freedom); "
                     f"{sum(p.status == 'ok' for p in self.points)} points, "
                     f"{sum(p.status == 'failed' for p in self.points)} failed")
        best = min((p for p in self.points if p.status == "ok" and math.isfinite(p.deviance)),
                   key=lambda p: p.deviance, default=None)
        opt = [p.deviance for p in self.points if p.status == "optimum"]
        if best is not None and opt and best.deviance < opt[0] - 1e-6 * max(1.0, abs(opt[0])):
            lines.append(f"warning: the profile of {best.param} found a better optimum (Δ(-2 log L) = "
                         f"{best.deviance - opt[0]:.4g} at {best.param} = {best.value:.6g}): the fit had not "
                         "converged; refit from there")
        return "\n".join(lines)

    def write(self, directory: str | Path, keep: list[Point] = ()) -> list[Path]:
        """``profiles.csv`` (every point, sorted, with its Δ; and the points ``keep`` of other parameters) and
        ``profile_<name>.png``; the paths written."""
        d = Path(directory)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the output folder {d}: {exc.strerror}") from None
        _write_csv(d / CSV, self.model, list(keep) + self.points, self.reference, sort=True)
        written = [d / CSV]
        for name in self.names:
            path = d / f"profile_{name}.png"
            plot_profile(self, name, path)
            written.append(path)
        return written


def _row(model: Model, p: Point, reference: float) -> list:
    delta = p.deviance - reference if math.isfinite(p.deviance) and math.isfinite(reference) else math.nan
    return [p.param, p.branch, p.step, repr(float(p.value)), _num(delta), _num(p.deviance), _num(p.loss), p.status,
            p.iterations, f"{p.seconds:.4g}", p.worker, p.message.replace("\n", " ")] + \
        [_num(p.params.get(q.name, math.nan)) for q in model.params]


def _num(x: float) -> str:
    return repr(float(x)) if math.isfinite(x) else ""


def _header(model: Model) -> list[str]:
    return FIXED_COLUMNS + [f"p_{q.name}" for q in model.params]


def _write_csv(path: Path, model: Model, points: list[Point], reference: float, sort: bool) -> None:
    if sort:  # by parameter (the model's order), then along the profile
        order = {q.name: i for i, q in enumerate(model.params)}
        points = sorted(points, key=lambda p: (order.get(p.param, -1), p.value))
    tmp = path.with_suffix(".csv.tmp")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(_header(model))
            for p in points:
                w.writerow(_row(model, p, reference))
        tmp.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


class Journal:
    """``profiles.csv`` while the profiles run: one row appended, and flushed, per finished point."""

    def __init__(self, path: Path, model: Model, fresh: bool) -> None:
        self.path, self.model = path, model
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            new = fresh or not path.exists()
            self.fh = path.open("w" if new else "a", newline="", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        self.writer = csv.writer(self.fh)
        if new:
            self.writer.writerow(_header(model))
            self.fh.flush()

    def add(self, p: Point, reference: float) -> None:
        self.writer.writerow(_row(self.model, p, reference))
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def read_points(path: Path, model: Model) -> list[Point]:
    """The points recorded in a ``profiles.csv`` (``InputError`` when it is not one)."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable profiles file ({exc})") from None
    out = []

    def num(text: str) -> float:
        return float(text) if text.strip() else math.nan

    for i, r in enumerate(rows, start=2):
        try:
            out.append(Point(r["parameter"], int(r["branch"]), int(r["step"]), float(r["value"]), num(r["deviance"]),
                             num(r["loss"]), {q.name: num(r[f"p_{q.name}"]) for q in model.params}, r["status"],
                             r["message"], int(r["iterations"]), num(r["seconds"]), r["worker"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{path}:{i}: not a profile point ({type(exc).__name__}: {exc}); start again without "
                             "--resume") from None
    return out


def _first_step(value: float, se: float | None, lower: float, upper: float, points: int) -> float:
    if se is not None and math.isfinite(se) and se > 0:
        h = 2.0 * se / points
    else:
        h = (abs(value) if value != 0 else 1.0) / points
    span = upper - lower
    if math.isfinite(span) and span > 0:
        h = min(h, span / 4)
    return h


def profile(result, params: list[str] | None = None, points: int = 10, level: float = 0.95, out=None,
            resume: bool = False, client=None, workers: int | None = None, scheduler: str | None = None,
            max_iters: int | None = None, progress: Callable[[int, int, Point | None], None] | None = None,
            on_start: Callable[[str | None, int], None] | None = None) -> Profiles:
    """Profile likelihoods of ``result`` (a ``FitResult``); see ``FitResult.profile`` and the module docstring."""
    model: Model = result.model
    fitted = [p.name for p in model.fitted_params]
    names = list(params) if params else fitted
    for name in names:
        if name not in fitted:
            kind = "a fixed parameter" if name in {p.name for p in model.params} else "not a parameter"
            raise UsageError(f"cannot profile '{name}': {kind} of model '{model.name}'; the fitted parameters are: "
                             f"{', '.join(fitted) or 'none'}")
    if not names:
        raise UsageError(f"model '{model.name}' has no fitted parameter to profile")
    if len(set(names)) != len(names):
        raise UsageError(f"a parameter is named twice: {', '.join(names)}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise UsageError(f"points must be a whole number >= 2 (got {points!r})")
    limit = threshold(level)
    data = result.dataset()
    stderr = {n: (None if result.stderr is None or result.stderr.get(n) is None else float(result.stderr[n]))
              for n in names}
    job = Job(model.source, model.filename, data, dict(result.settings), np.asarray(result.weights, dtype=float),
              max_iters, uuid.uuid4().hex)
    if model.nets:
        log.warning("model '%s' has neural terms: each profile point retrains them (from its neighbour's weights; "
                    "slow)", model.name)
    fit_params = {k: float(v) for k, v in result.params.items()}
    chains: dict[tuple[str, int], Chain] = {}
    for name in names:
        q = model.param(name)
        h = _first_step(fit_params[name], stderr[name], q.lower, q.upper, points)
        for side in (-1, 1):
            chains[(name, side)] = Chain(name, side, fit_params[name], q.lower, q.upper, h, points)

    out_dir = Path(out) if out is not None else None
    done: list[Point] = []
    others: list[Point] = []  # other parameters' profiles of this fit, already in the folder: kept
    if out_dir is not None and (out_dir / CSV).exists():
        try:
            recorded = read_points(out_dir / CSV, model)
        except InputError:
            if resume:
                raise
            recorded = []  # starting again: an unreadable file is replaced
        stale = {p.param for p in recorded if p.status == "optimum" and not _same_fit(p.params, fit_params, fitted)}
        if resume and stale & set(names):
            raise UsageError(f"{out_dir / CSV} was made from another fit (its optimum differs from this one's); "
                             "run without --resume to start again")
        others = [p for p in recorded if p.param not in names and p.param not in stale]
        if resume:
            done = [p for p in recorded if p.param in names]
    journal = Journal(out_dir / CSV, model, fresh=True) if out_dir is not None else None
    reference = next((p.deviance for p in done if p.status == "optimum"), None)
    if journal is not None:
        for p in others + done:
            journal.add(p, reference if reference is not None else math.nan)
    for p in done:
        if p.status != "optimum":
            chains[(p.param, p.branch)].done.append(p)
    total_hint = sum(2 * points for _ in names)

    def point(rec: dict) -> Point:
        return Point(rec["param"], rec["branch"], rec["step"], rec["value"], rec["deviance"], rec["loss"],
                     rec["params"], rec["status"], rec["message"], rec["iterations"], rec["seconds"],
                     rec.get("worker", ""))

    def items_for(chain: Chain) -> list[dict]:
        x = chain.next_value(reference, limit)
        if x is None:
            return []
        start = chain.start_for(x, fit_params)
        return [{"kind": "point", "param": chain.param, "branch": chain.branch, "step": chain.step, "value": x,
                 "start": {k: v for k, v in start.items() if math.isfinite(v)}, "weights": chain.weights}]

    first: list[dict] = []
    missing_optimum = [n for n in names if not any(p.param == n and p.status == "optimum" for p in done)]
    if reference is None:
        first.append({"kind": "optimum", "param": names[0], "branch": 0, "step": 0, "value": fit_params[names[0]],
                      "start": fit_params})
    else:
        for n in missing_optimum:  # a parameter added on resume: its optimum row from the recorded deviance
            p = Point(n, 0, 0, fit_params[n], reference, result.loss, fit_params, "optimum")
            done.append(p)
            if journal is not None:
                journal.add(p, reference)
        for chain in chains.values():
            first += items_for(chain)
    n_done = sum(p.status != "optimum" for p in done)

    def on_result(rec: dict) -> list[dict]:
        nonlocal reference, n_done
        p = point(rec)
        new: list[dict] = []
        if rec["kind"] == "optimum":
            if p.status == "failed":
                raise NumericalError(f"the fitted model cannot be solved at its own optimum: {p.message}")
            reference = p.deviance
            for n in names:
                opt = dataclasses.replace(p, param=n, value=fit_params[n], loss=float(result.loss))
                done.append(opt)
                if journal is not None:
                    journal.add(opt, reference)
            for chain in chains.values():
                new += items_for(chain)
            return new
        done.append(p)
        n_done += 1
        chain = chains[(p.param, p.branch)]
        chain.done.append(p)
        if p.status == "ok" and rec.get("weights") is not None:
            chain.weights = rec["weights"]
        if journal is not None:
            journal.add(p, reference)
        if progress is not None:
            progress(n_done, max(total_hint, n_done), p)
        return items_for(chain)

    try:
        if first:
            with _engine(client, workers, scheduler) as engine:
                if on_start is not None:
                    on_start(engine.dashboard, engine.n_workers)
                shared = engine.share(job)
                for _ in engine.map(_point_task, first, shared, follow=on_result):
                    pass  # each point's result went to on_result, which returned its neighbour to run next
    finally:
        if journal is not None:
            journal.close()
    prof = Profiles(model, fit_params, {n: stderr[n] for n in names}, names, done, level)
    if out_dir is not None:
        prof.write(out_dir, keep=others)
    return prof


def _same_fit(a: dict[str, float], b: dict[str, float], names: list[str]) -> bool:
    return all(math.isclose(a.get(n, math.nan), b[n], rel_tol=1e-12, abs_tol=1e-300) for n in names)


def _engine(client, workers, scheduler):
    from odedsl.distributed.engine import Engine

    return Engine(scheduler=scheduler, workers=workers, client=client)


def plot_profile(prof: Profiles, name: str, path: str | Path) -> None:
    """``Δ(-2 log L)`` against the parameter: the points, the threshold, the interval and the Wald parabola."""
    from odedsl.io.plots import figure

    ref, limit = prof.reference, prof.threshold
    iv = prof.intervals()[name]
    pts = sorted((p for p in prof.points if p.param == name and p.status in ("ok", "optimum")),
                 key=lambda p: p.value)
    failed = [p for p in prof.points if p.param == name and p.status == "failed"]

    def draw(plt):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
        x = np.array([p.value for p in pts])
        y = np.array([p.deviance - ref for p in pts])
        ax.plot(x, y, "o-", color="C0", ms=4, label="profile")
        if iv.stderr:
            xs = np.linspace(x.min(), x.max(), 200) if x.size else np.zeros(0)
            ax.plot(xs, ((xs - iv.value) / iv.stderr) ** 2, "--", color="C2", lw=1, label="Wald (quadratic)")
        ax.axhline(limit, color="C3", lw=1, label=f"{100 * prof.level:g} % threshold ({limit:.2f})")
        for bound in (iv.lower, iv.upper):
            if bound is not None:
                ax.axvline(bound, color="C3", lw=0.8, ls=":")
        ax.axvline(iv.value, color="0.5", lw=0.8)
        if failed:
            ax.plot([p.value for p in failed], [0.0] * len(failed), "x", color="C1", label="failed fit")
        top = min(max(1.5 * limit, 1.15 * float(np.nanmax(y)) if y.size else 0.0), 4 * limit)
        ax.set_ylim(min(-0.05 * limit, float(np.nanmin(y)) if y.size else 0.0), top)
        lo = "unbounded" if iv.lower is None else f"{iv.lower:.4g}"
        hi = "unbounded" if iv.upper is None else f"{iv.upper:.4g}"
        ax.set_title(f"{prof.model.name}: profile of {name}\n{100 * prof.level:g} % interval [{lo}, {hi}]",
                     fontsize=10)
        if x.size and x.min() > 0 and x.max() > 20 * x.min():  # a positive parameter over decades
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("Δ(−2 log L)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        return fig

    figure(path, draw)
