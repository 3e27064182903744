"""Physics-only fits: bounded trust-region least squares with exact Jacobians from forward sensitivities.

The residuals are loss.py's, divided by ``sqrt(n)`` so that their sum of squares
is the loss; their Jacobian comes from the compiled sensitivity model
(sensitivity.py): one ``simulate`` per experiment gives both. scipy's ``trf``
keeps the parameters within their bounds. A trial point where the solve fails
gets a residual vector much larger than the best so far, so the trust region
shrinks and the step is retried smaller, instead of the fit crashing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import sympy

from odedsl.errors import NumericalError
from odedsl.fit.data import Dataset
from odedsl.fit.loss import Scaling, residuals
from odedsl.fit.sensitivity import sensitivity_model
from odedsl.model import Model


class NotLeastSquares(Exception):
    """The loss has a term least squares cannot express (a fitted noise scale)."""


@dataclass
class Outcome:
    """What an optimiser hands back: the best point, its loss, and how it got there."""

    x: np.ndarray
    loss: float
    history: list[tuple[int, float, float]]  # (iteration, loss, seconds since start)
    message: str
    iterations: int
    stderr: np.ndarray | None = None
    corr: np.ndarray | None = None
    failed: bool = False  # stopped because the model kept failing: x is the best point before that


def noise_values(model: Model, data: Dataset) -> np.ndarray:
    """The columns' noise scales as numbers; ``NotLeastSquares`` when one depends on a fitted parameter."""
    fitted = {p.symbol for p in model.fitted_params}
    for n in data.noise:
        if n is not None and sympy.sympify(n.args[0]).free_symbols & fitted:
            raise NotLeastSquares(f"the noise scale {n.args[0]} is fitted")
    return noise_at(model, data, {})


def noise_at(model: Model, data: Dataset, params: dict[str, float]) -> np.ndarray:
    """Each observed column's noise scale with ``params`` (by name; the file's values for the others),
    1 for a column without a noise model."""
    values = {p.symbol: sympy.Float(params.get(p.name, p.value)) for p in model.params} | model.const_values
    out = []
    for n in data.noise:
        if n is None:
            out.append(1.0)
            continue
        expr = sympy.sympify(n.args[0])
        for _ in range(len(values) + 1):  # constants and parameters may refer to each other
            expr = expr.xreplace(values)
        out.append(float(expr))
    return np.array(out)


class Residuals:
    """``x`` (fitted parameter values) -> scaled residuals and their Jacobian, over all experiments."""

    def __init__(self, model: Model, data: Dataset, sc: Scaling, method: str, rtol: float, atol: float) -> None:
        self.model, self.data, self.sc = model, data, sc
        self.fitted = model.fitted_params
        self.sigma = noise_values(model, data)
        key = ("sensitivities", tuple(p.name for p in self.fitted), tuple(data.exprs))
        if key not in model._backends:  # built once per model: repeated fits (multi-start) reuse it
            model._backends[key] = sensitivity_model(model, self.fitted, data.exprs)
        self.sens = model._backends[key]
        self.options = {"method": method, "rtol": rtol, "atol": atol}
        self.n = data.n_points
        # loss.py's 2 log(sigma) terms: constant here (least squares needs fixed sigmas), added to the cost
        counts = sum(np.isfinite(e.observed).sum(0) for e in data.experiments)
        has_noise = np.array([k is not None for k in sc.kinds])
        self.offset = float((2 * np.log(self.sigma) * has_noise * counts).sum()) / self.n
        q = len(self.fitted)
        self.y0 = []
        for e in data.experiments:
            y0 = dict(e.y0)
            for i, st in enumerate(model.states):
                if st.name in e.y0:  # an initial value from the data does not move with the parameters
                    y0.update({f"_sens_{i}_{j}": 0.0 for j in range(q)})
            self.y0.append(y0)

    def params(self, x: np.ndarray) -> dict[str, float]:
        return {p.name: float(v) for p, v in zip(self.fitted, x)}

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, n_obs = len(self.fitted), len(self.data.columns)
        rs, Js = [], []
        for e, y0 in zip(self.data.experiments, self.y0):
            sol = self.sens.simulate(e.times, params=self.params(x), y0=y0, inputs=e.inputs or None, **self.options)
            obs = sol.observables()
            values = np.stack([obs[f"_obs_{k}"] for k in range(n_obs)], -1)
            d = np.stack([np.stack([obs[f"_dobs_{k}_{j}"] for j in range(q)], -1) for k in range(n_obs)], 1)
            for k in self.sc.logged:  # d log m = dm / m
                d[:, k, :] /= values[:, k:k + 1]
            mask = np.isfinite(e.observed)
            r = residuals(np, values, e.observed, self.sigma, self.sc)
            J = d / (self.sigma * self.sc.spread)[None, :, None]
            rs.append(r[mask])
            Js.append(J[mask])
        r, J = np.concatenate(rs), np.concatenate(Js)
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(J))):
            raise NumericalError("the model's observables are not finite (a lognormal observable <= 0?)")
        return r, J


def fit_least_squares(res: Residuals, x0: np.ndarray, max_iters: int, progress=None) -> Outcome:
    """Minimise the loss from ``x0`` within the bounds; the standard errors and correlations at the optimum."""
    from scipy.optimize import least_squares

    lo = np.array([p.lower for p in res.fitted])
    hi = np.array([p.upper for p in res.fitted])
    span = np.where(np.isfinite(hi - lo), hi - lo, np.maximum(np.abs(x0), 1.0))
    x0 = np.clip(x0, lo + 1e-9 * span, hi - 1e-9 * span)  # trf starts strictly inside
    root_n = math.sqrt(res.n)
    start = time.perf_counter()
    history: list[tuple[int, float, float]] = []
    cache: dict = {}
    best = {"loss": math.inf, "x": x0.copy()}

    def evaluate(x):
        key = x.tobytes()
        if key not in cache:
            cache.clear()
            try:
                r, J = res(x)
                cache[key] = (r / root_n, J / root_n)
            except NumericalError:
                cache[key] = None
        return cache[key]

    def fun(x):
        got = evaluate(x)
        if got is None:  # a failed solve: far worse than anything seen, so the step is retried smaller
            return np.full(res.n, 1e3 * math.sqrt(max(best["loss"] - res.offset, 1.0) / res.n))
        loss = float(got[0] @ got[0]) + res.offset
        if loss < best["loss"]:
            best.update(loss=loss, x=x.copy())
        history.append((len(history) + 1, loss, time.perf_counter() - start))
        if progress is not None:
            progress(len(history), loss, best["loss"])
        return got[0]

    def jac(x):
        got = evaluate(x)
        return got[1] if got is not None else np.zeros((res.n, x.size))

    best["loss"] = math.inf
    if evaluate(x0) is None:
        raise NumericalError("the model cannot be solved at the starting parameter values; "
                             "check them and the initial values")
    try:
        sol = least_squares(fun, x0, jac=jac, bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=max_iters,
                            ftol=1e-12, xtol=1e-12, gtol=1e-10)
    except KeyboardInterrupt:
        from odedsl.fit.optimise import Interrupted

        raise Interrupted(Outcome(best["x"], best["loss"], history, "interrupted", len(history))) from None
    x = best["x"]
    got = evaluate(x)
    stderr = corr = None
    if got is not None:
        r, J = got[0] * root_n, got[1] * root_n
        dof = max(res.n - x.size, 1)
        s2 = float(r @ r) / dof if any(k is None for k in res.sc.kinds) else 1.0
        cov = s2 * np.linalg.pinv(J.T @ J)
        stderr = np.sqrt(np.clip(np.diag(cov), 0, None))
        # a parameter the data do not constrain (its Jacobian column ~ 0, or dependent on others): no error bar
        _, sv, vt = np.linalg.svd(J, full_matrices=False)
        null = vt[sv <= 1e-10 * max(sv.max(initial=0.0), 1e-300)]
        loose = (np.abs(null) > 1e-8).any(0) if null.size else np.zeros(x.size, dtype=bool)
        stderr[loose] = np.nan
        cov[loose, :] = np.nan
        cov[:, loose] = np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.outer(stderr, stderr)
    message = sol.message if sol.status > 0 else f"stopped after {max_iters} evaluations: {sol.message}"
    return Outcome(x, best["loss"], history, message, int(sol.nfev), stderr, corr)
