"""Is the discovered model any good? Refit it to the data, then set it against the hybrid in and beyond them.

A sparse expression that matches the net's samples can still fit the data worse
(the net's errors are smooth, and the regression sees none of the data), so the
discovered model is refitted to the same data with the physics-only least-squares
path, which also gives standard errors. Its loss is compared with the hybrid's
on the same loss, and both models are run past the last data time, where the
network has never been trained and the two usually part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from odedsl.errors import NumericalError

#: A new coefficient whose refitted value is within this many standard errors of zero is dropped.
SIGNIFICANCE = 2.0
#: Mean squared scaled residual of the discovered model over the hybrid's: up to the first "about as well",
#: up to the second "somewhat worse", beyond it "clearly worse".
AS_WELL, SOMEWHAT = 1.25, 2.0


@dataclass
class Judgement:
    """The discovered model against the hybrid: losses, the verdict, and both run past the data."""

    hybrid_loss: float
    discovered_loss: float
    hybrid_misfit: float | None  # mean squared scaled residual (the loss less its constant noise terms)
    discovered_misfit: float | None
    verdict: str
    window: tuple[float, float]  # the data's time span
    horizon: float  # how far both were run
    divergence: float  # RMS difference of the two beyond the data, in data spreads
    curves: list[dict] = field(default_factory=list)  # per experiment and column: data, hybrid, discovered
    notes: list[str] = field(default_factory=list)

    @property
    def clearly_worse(self) -> bool:
        return self.verdict.startswith("clearly worse")


def judge(found) -> None:
    """Refit ``found.model`` (a ``Discovery``) when it has no nets left, then compare; sets ``refit`` and
    ``judgement``."""
    result = found.source
    data = result.dataset()
    notes = []
    model, params, weights = found.model, None, found.weights
    if not model.nets:
        data_file = result.data_file or data.path
        s = result.settings
        settings = {k: s[k] for k in ("method", "rtol", "atol", "time_col", "experiment_col", "y0_from_data")
                    if s.get(k) is not None}
        refit_and_prune(found, data_file, settings)
        model, params, loss = found.refit.model, found.refit.params, found.refit.loss
        if found.pruned:
            notes.append("dropped after the refit (not significant on the data, |value| < "
                         f"{SIGNIFICANCE:g} std. errors): " + ", ".join(n for n, _, _ in found.pruned))
    else:
        notes.append(f"not refitted: the discovered model still has the net{'s' if len(model.nets) > 1 else ''} "
                     f"{', '.join(n.name for n in model.nets)} (refit it with odedsl fit)")
        params = {p.name: p.value for p in model.params}
        loss = _loss(model, data, params, weights, result.settings)
    hybrid_misfit = _misfit(result.model, data, result.loss)
    found_misfit = _misfit(model, data, loss)
    t0 = min(float(e.times[0]) for e in data.experiments)
    t1 = max(float(e.times[-1]) for e in data.experiments)
    horizon = t0 + found.options.extrapolate * (t1 - t0)
    curves, divergence = _extrapolate(result, model, params, weights, data, horizon, notes)
    found.judgement = Judgement(result.loss, loss, hybrid_misfit, found_misfit,
                                _verdict(result.loss, loss, hybrid_misfit, found_misfit), (t0, t1), horizon,
                                divergence, curves, notes)


def refit_and_prune(found, data_file, settings: dict) -> None:
    """Refit by least squares; drop the least significant new coefficient and refit, until all are significant.

    The regression saw only the net's samples; the data decide which of its terms they support
    (backward elimination by the Wald statistic |value| / std. error). A coefficient that is not
    identifiable (no standard error) is the first to go. The model ends with the refit's values.
    """
    from odedsl.discover.regression import Candidate, rescore

    while True:
        fit = found.model.fit(data_file, optimizer="least-squares", **settings)
        stderr = fit.stderr or {}
        weakest, where = None, None
        for o in found.outputs:
            for j, name in zip(o.chosen.support, o.params):
                se = stderr.get(name)
                z = abs(fit.params[name]) / se if se is not None and math.isfinite(se) and se > 0 else \
                    (math.inf if se is not None and se == 0 else 0.0)
                if z < SIGNIFICANCE and (weakest is None or z < weakest[0]):
                    weakest, where = (z, name, se), (o, j)
        if weakest is None or fit.stderr is None:
            break
        o, j = where
        support = tuple(i for i in o.chosen.support if i != j)
        theta, target, folds = o.samples
        known = [c for c in o.front.candidates if c.support == support]
        if known:  # the sweep had proposed it too
            o.front.chosen = known[0]
        else:
            o.front.chosen = rescore(theta, target, folds, support, math.nan) if theta is not None else \
                Candidate(support, o.chosen.coef, o.chosen.error, o.chosen.cv_error, o.chosen.aic, math.nan)
            o.front.candidates.append(o.front.chosen)
        found.pruned.append((weakest[1], fit.params[weakest[1]], weakest[2]))
        found.rewrite({k: v for k, v in fit.params.items() if k != weakest[1]})
    found.refit = fit
    found.rewrite(fit.params)


def _misfit(model, data, loss: float) -> float | None:
    """The loss less its constant ``2 log sigma`` terms (None when a noise scale is fitted)."""
    from odedsl.fit.least_squares import NotLeastSquares, noise_values

    if not math.isfinite(loss):
        return None
    try:
        sigma = noise_values(model, data)
    except NotLeastSquares:
        return None
    counts = sum(np.isfinite(e.observed).sum(0) for e in data.experiments)
    has = np.array([n is not None for n in data.noise])
    return loss - float((2 * np.log(sigma) * has * counts).sum()) / data.n_points


def _verdict(h_loss: float, d_loss: float, h_mis: float | None, d_mis: float | None) -> str:
    if not math.isfinite(d_loss):
        return "clearly worse than the hybrid: the discovered model could not be solved on the data"
    if h_mis is not None and d_mis is not None and h_mis > 0:
        ratio = d_mis / h_mis
        words = f"mean squared scaled residual {d_mis:.4g} against the hybrid's {h_mis:.4g} ({ratio:.2f}x)"
        if ratio <= AS_WELL:
            return f"fits the data about as well as the hybrid: {words}"
        if ratio <= SOMEWHAT:
            return f"fits the data somewhat worse than the hybrid: {words}"
        return (f"clearly worse than the hybrid on the data: {words}; the library may lack the right terms "
                "(try --library, --term or another --degree)")
    if d_loss <= h_loss + 0.1:
        return f"fits the data about as well as the hybrid (loss {d_loss:.6g} against {h_loss:.6g})"
    return f"clearly worse than the hybrid on the data (loss {d_loss:.6g} against {h_loss:.6g})"


def _loss(model, data, params, weights, settings) -> float:
    """The fit's loss of ``model`` at ``params`` (for a discovered model that keeps a net, so is not refitted)."""
    from odedsl.fit.loss import loss_terms, residuals, scaling

    sc = scaling(data)
    total, count = 0.0, 0
    for e, values in _observed(model, data, params, weights, settings, e_times=True):
        if values is None:
            return math.nan
        sigma = np.array([_sigma(model, n, params) for n in data.noise])
        r = residuals(np, values, e.observed, sigma, sc)
        terms = loss_terms(np, r, sigma, sc)
        ok = np.isfinite(e.observed)
        total += float(np.sum(np.where(ok, terms, 0.0)))
        count += int(ok.sum())
    return total / max(count, 1)


def _sigma(model, noise, params) -> float:
    if noise is None:
        return 1.0
    from odedsl.discover.library import evaluate
    from odedsl.discover.sampling import model_constants

    return float(evaluate([noise.args[0]], [], np.zeros((1, 0)), model_constants(model, params))[0, 0])


def _observed(model, data, params, weights, settings, e_times=False, t_end=None):
    """Per experiment: the model's observed columns at the data times (or on a grid to ``t_end``)."""
    for e in data.experiments:
        t = e.times if e_times else np.linspace(float(e.times[0]), t_end, 400)
        try:
            sol = model.simulate(t, params=params, y0=e.y0 or None, inputs=e.inputs or None,
                                 weights=weights if weights is not None and weights.size else None,
                                 method=settings.get("method", "dopri5"), rtol=1e-8, atol=1e-10)
        except NumericalError:
            yield e, None
            continue
        obs = sol.observables() if model.observables else {s: sol[s] for s in sol.names}
        yield e, np.column_stack([obs[c] for c in data.columns])


def _extrapolate(result, model, params, weights, data, horizon, notes) -> tuple[list[dict], float]:
    hybrid = list(_observed(result.model, data, result.params, result.weights, result.settings, t_end=horizon))
    found = list(_observed(model, data, params, weights, result.settings, t_end=horizon))
    spread = data.spread()
    curves, diffs = [], []
    for (e, h), (_, d) in zip(hybrid, found):
        t = np.linspace(float(e.times[0]), horizon, 400)
        if h is None:
            notes.append(f"the hybrid could not be solved to t = {horizon:g}" + _which(data, e))
        if d is None:
            notes.append(f"the discovered model could not be solved to t = {horizon:g}" + _which(data, e))
        beyond = t > float(e.times[-1])
        if h is not None and d is not None and beyond.any():
            diffs.append(((h[beyond] - d[beyond]) / spread) ** 2)
        for k, column in enumerate(data.columns):
            curves.append({"experiment": e.name, "column": column, "t_data": e.times, "data": e.observed[:, k],
                           "t": t, "hybrid": None if h is None else h[:, k], "discovered": None if d is None else d[:, k],
                           "t_last": float(e.times[-1])})
    if model.inputs:
        notes.append("beyond the data, each input is held at its last value")
    divergence = float(np.sqrt(np.mean(np.concatenate([x.ravel() for x in diffs])))) if diffs else math.nan
    return curves, divergence


def _which(data, e) -> str:
    return f" (experiment {e.name})" if len(data.experiments) > 1 else ""
