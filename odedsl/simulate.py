"""Simulation on the CPU through the Numba backend: ``Model.simulate`` and ``Model.simulate_ensemble``.

This module turns user-level arguments (names, dicts, sequences) into the flat
arrays the compiled loops take, checks them with clear messages, and turns a
failed solve into a ``NumericalError`` saying where it stopped and what to try.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from odedsl.errors import NumericalError, UsageError
from odedsl.model import Model
from odedsl.solvers.explicit import STATUS_MAX_STEPS, STATUS_OK, STATUS_STEP_TOO_SMALL
from odedsl.solvers.methods import get_method, kernel_arrays, stiff_kernel_args

STAT_NAMES = ("n_rhs", "n_jac", "n_accepted", "n_rejected", "n_lu", "n_switches")

#: The compiled loop of each stiff (or switching) method kind: ``auto`` is the Rosenbrock loop given an
#: explicit partner, so it shares its compiled code with rodas5p.
STIFF_KERNELS = {"rosenbrock": "rosenbrock", "bdf": "bdf", "auto": "rosenbrock"}


@dataclass
class Solution:
    """A simulated trajectory: ``t`` (T,), ``y`` (T, n_states) and the column ``names``.

    Examples
    --------
    >>> import odedsl
    >>> m = odedsl.loads("param k = 1\\nstate x = 1\\nder(x) = -k*x\\n")
    >>> sol = m.simulate([0, 1, 2])
    >>> round(float(sol["x"][2]), 6)
    0.135335
    """

    t: np.ndarray
    y: np.ndarray
    names: list[str]
    stats: dict[str, int]
    method: str
    model: Model = field(repr=False)
    params: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    inputs: tuple[np.ndarray, np.ndarray] = field(repr=False)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.y[:, self.names.index(name)]
        except ValueError:
            raise KeyError(f"no state named {name!r}; states: {', '.join(self.names)}") from None

    def observables(self) -> dict[str, np.ndarray]:
        """Each ``observe`` expression evaluated along the trajectory, by column name."""
        compiled = self.model.compile()
        n_obs = len(self.model.observables)
        out = np.empty((self.t.size, n_obs))
        margs = (self.params, self.weights, *self.inputs)
        row = np.empty(n_obs)
        for k in range(self.t.size):
            compiled.module.observe(self.t[k], self.y[k], margs, row)
            out[k] = row
        return {o.column: out[:, j] for j, o in enumerate(self.model.observables)}

    def to_pandas(self, observables: bool = False):
        """A DataFrame with the time column and one column per state (and observable).

        pandas is optional: odedsl does not depend on it.
        """
        try:
            import pandas as pd
        except ImportError:
            raise UsageError("Solution.to_pandas needs pandas, which is not installed: pip install pandas") from None

        data = {self.model.time.name: self.t, **{n: self.y[:, j] for j, n in enumerate(self.names)}}
        if observables:
            data.update(self.observables())
        return pd.DataFrame(data)


def as_times(t_eval: Any, module) -> np.ndarray:
    """Output times as a contiguous float64 array, checked by the compiled ``_check_times``."""
    if isinstance(t_eval, np.ndarray) and t_eval.dtype == np.float64 and t_eval.ndim == 1 and t_eval.flags.c_contiguous:
        t = t_eval
    else:
        t = np.ascontiguousarray(np.asarray(t_eval, dtype=float).ravel())
    if t.size < 1:
        raise UsageError("t_eval is empty: give at least one output time")
    bad = module._check_times(t)
    if bad == -2:
        raise UsageError("t_eval contains NaN or infinite times")
    if bad >= 0:
        raise UsageError(f"output times must be increasing, but t[{bad}] = {t[bad]:g} is followed by "
                         f"t[{bad + 1}] = {t[bad + 1]:g}")
    return t


def _defaults(model: Model) -> dict[str, Any]:
    """Per-model values that every simulate() call would otherwise rebuild."""
    cache = model._backends.get("defaults")
    if cache is None:
        from odedsl.nets import init_weights

        cache = {
            "p": np.array([q.value for q in model.params], dtype=float),
            "index": {q.name: j for j, q in enumerate(model.params)},
            "w": init_weights(model),
            "no_inputs": (np.zeros(1), np.zeros((1, 0))),
        }
        model._backends["defaults"] = cache
    return cache


def param_vector(model: Model, params: Mapping[str, float] | None) -> np.ndarray:
    """The file's parameter values with ``params`` (by name) overriding them."""
    d = _defaults(model)
    p = d["p"].copy()
    index = d["index"]
    for name, value in (params or {}).items():
        if name not in index:
            valid = ", ".join(index) or "none"
            raise UsageError(f"unknown parameter '{name}'; the model's parameters are: {valid}")
        p[index[name]] = float(value)
    return p


def weight_vector(model: Model, weights: Any) -> np.ndarray:
    from odedsl.nets import n_weights

    if weights is None:
        return _defaults(model)["w"]
    w = np.ascontiguousarray(np.asarray(weights, dtype=float).ravel())
    if w.size != n_weights(model):
        raise UsageError(f"weights has {w.size} values, but the model's nets have {n_weights(model)} weights")
    return w


def input_arrays(model: Model, inputs: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """Input samples as (times (m,), values (m, n_inputs)) on one shared, increasing time grid."""
    if not model.inputs:
        return _defaults(model)["no_inputs"]
    inputs = dict(inputs or {})
    missing = [u.name for u in model.inputs if u.name not in inputs]
    if missing:
        raise UsageError(f"the model needs values for its input(s) {', '.join(missing)}: "
                         "pass inputs={name: (times, values)}")
    extra = set(inputs) - {u.name for u in model.inputs}
    if extra:
        raise UsageError(f"unknown input(s) {', '.join(sorted(extra))}; the model's inputs are: "
                         f"{', '.join(u.name for u in model.inputs)}")
    series = []
    for u in model.inputs:
        try:
            times, values = inputs[u.name]
        except (TypeError, ValueError):
            raise UsageError(f"input '{u.name}' must be a pair (times, values)") from None
        times = np.asarray(times, dtype=float).ravel()
        values = np.asarray(values, dtype=float).ravel()
        if times.size != values.size or times.size == 0:
            raise UsageError(f"input '{u.name}': times and values must be non-empty and of equal length")
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(values))):
            raise UsageError(f"input '{u.name}' contains NaN or infinite samples")
        if np.any(np.diff(times) <= 0):
            raise UsageError(f"input '{u.name}': sample times must be strictly increasing")
        series.append((times, values))
    grid = np.unique(np.concatenate([s[0] for s in series]))
    values = np.column_stack([np.interp(grid, s[0], s[1]) for s in series])
    return np.ascontiguousarray(grid), np.ascontiguousarray(values)


_NO_OVERRIDES = (np.zeros(0, dtype=np.int64), np.zeros(0))


def initial_overrides(model: Model, y0: Mapping[str, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """``y0`` by name as (state indices, values) for the compiled drivers."""
    if not y0:
        return _NO_OVERRIDES
    index = {s.name: i for i, s in enumerate(model.states)}
    for name in y0:
        if name not in index:
            raise UsageError(f"unknown state '{name}' in y0; the model's states are: {', '.join(index)}")
    return (np.array([index[n] for n in y0], dtype=np.int64), np.array([float(v) for v in y0.values()]))


def not_finite_initial(model: Model, y: np.ndarray) -> NumericalError:
    bad = [s.name for s, v in zip(model.states, y) if not math.isfinite(v)]
    return NumericalError(f"the initial value of {', '.join(bad)} is not finite; check the parameters it uses")


def initial_vector(model: Model, module, p: np.ndarray, y0: Mapping[str, float] | None) -> np.ndarray:
    y = np.empty(len(model.states))
    module.init(p, y)
    idx, val = initial_overrides(model, y0)
    y[idx] = val
    if not module._all_finite(y):
        raise not_finite_initial(model, y)
    return y


def check_tolerances(rtol: float, atol: float) -> None:
    if not (rtol > 0 and math.isfinite(rtol)) or not (atol >= 0 and math.isfinite(atol)):
        raise UsageError(f"tolerances must be positive and finite (got rtol={rtol}, atol={atol})")
    if rtol < 1e-14:
        raise UsageError(f"rtol={rtol:g} is below what double precision can deliver; use rtol >= 1e-14")


def failure(model: Model, method: str, status: int, t: float, max_steps: int) -> NumericalError:
    where = f"the solve of '{model.name}' with {method} stopped at {model.time.name} = {t:.6g}"
    if status == STATUS_MAX_STEPS:
        return NumericalError(f"{where}: it took more than max_steps={max_steps} steps; the problem may be stiff "
                              "(try a stiff method) or need a larger max_steps")
    if status == STATUS_STEP_TOO_SMALL:
        return NumericalError(f"{where}: the step size became too small for double precision; the solution may "
                              "blow up there, or the problem is stiff (try a stiff method) or discontinuous")
    return NumericalError(f"{where}: the solution became NaN or infinite; check the parameters and initial "
                          "values, or the model may blow up in finite time")


def simulate(model: Model, t_eval: Sequence[float], params: Mapping[str, float] | None = None,
             y0: Mapping[str, float] | None = None, method: str = "dopri5", rtol: float = 1e-6,
             atol: float = 1e-8, dt: float | None = None, max_steps: int = 1_000_000,
             inputs: Mapping[str, Any] | None = None, weights: Any = None, h0: float = 0.0) -> Solution:
    """Integrate ``model`` and return its states at the times ``t_eval``; see ``Model.simulate``."""
    m = get_method(method)
    check_tolerances(rtol, atol)
    if dt is not None and not (dt > 0 and math.isfinite(dt)):
        raise UsageError(f"dt must be a positive number (got {dt})")
    compiled = model.compile()
    t = as_times(t_eval, compiled.module)
    p = param_vector(model, params)
    w = weight_vector(model, weights)
    ut, uv = input_arrays(model, inputs)
    if m.kind == "adaptive":  # the common case: one compiled call does it all
        idx, val = initial_overrides(model, y0)
        driver = getattr(compiled.module, f"_simulate_{m.name}")
        status, t_reached, out, stats, y = driver(t, p, w, ut, uv, idx, val, rtol, atol, h0, max_steps)
        if status < 0:
            raise not_finite_initial(model, y)
    else:
        y = initial_vector(model, compiled.module, p, y0)
        out = np.empty((t.size, y.size))
        stats = np.zeros(len(STAT_NAMES), dtype=np.int64)
        margs = (p, w, ut, uv)
        if m.kind in STIFF_KERNELS:
            kernel = getattr(compiled.module, "_" + STIFF_KERNELS[m.kind])
            status, t_reached = kernel(t, y, margs, *stiff_kernel_args(m.name), rtol, atol, h0, math.inf,
                                       max_steps, out, stats)
        else:
            k = kernel_arrays(m.name)
            status, t_reached = compiled.module._rk_fixed(t, y, margs, k.a, k.b, k.c, dt or 0.0, max_steps, out,
                                                          stats, np.zeros((0, 3)))
    if status != STATUS_OK:
        raise failure(model, method, status, t_reached, max_steps)
    return Solution(t, out, [s.name for s in model.states], dict(zip(STAT_NAMES, stats.tolist())), method,
                    model, p, w, (ut, uv))


@dataclass
class Ensemble:
    """Many trajectories: ``y`` is (N, T, n_states); ``status`` 0 where a solve succeeded."""

    t: np.ndarray
    y: np.ndarray
    names: list[str]
    params: np.ndarray
    status: np.ndarray
    t_reached: np.ndarray
    stats: np.ndarray
    method: str

    @property
    def ok(self) -> np.ndarray:
        return self.status == STATUS_OK


def _batch(model: Model, values: Mapping[str, Any] | None, names: list[str], what: str) -> dict[str, np.ndarray]:
    out = {}
    for name, v in (values or {}).items():
        if name not in names:
            raise UsageError(f"unknown {what} '{name}'; the model's {what}s are: {', '.join(names) or 'none'}")
        out[name] = np.atleast_1d(np.asarray(v, dtype=float)).ravel()
    return out


def simulate_ensemble(model: Model, t_eval: Sequence[float], params: Mapping[str, Any] | None = None,
                      y0: Mapping[str, Any] | None = None, method: str = "dopri5", rtol: float = 1e-6,
                      atol: float = 1e-8, dt: float | None = None, max_steps: int = 1_000_000,
                      inputs: Mapping[str, Any] | None = None, weights: Any = None, h0: float = 0.0,
                      on_failure: str = "raise", client: Any = None, workers: int | None = None,
                      scheduler: str | None = None, chunk_size: int | None = None) -> Ensemble:
    """Integrate N parameter sets and/or initial conditions in parallel; see ``Model.simulate_ensemble``.

    With ``client`` (a ``dask.distributed.Client``), ``scheduler`` (an address) or
    ``workers`` (the size of a local cluster) the rows are cut into chunks of
    ``chunk_size`` (default: about four chunks per worker, at least
    ``MIN_CHUNK`` rows) and run on Dask workers; each chunk runs the same
    compiled loop on the same rows, so the result equals the local one bit for bit.
    """
    if on_failure not in ("raise", "nan"):
        raise UsageError(f"on_failure must be 'raise' or 'nan', not {on_failure!r}")
    if chunk_size is not None and chunk_size < 1:
        raise UsageError(f"chunk_size must be a positive whole number (got {chunk_size})")
    setup = EnsembleSetup.build(model, t_eval, params, y0, method, rtol, atol, dt, max_steps, inputs, weights, h0)
    if client is None and workers is None and scheduler is None:
        out, status, t_reached, stats = setup.run(setup.P, setup.Y0)
    else:
        from odedsl.distributed.sweep import run_distributed

        out, status, t_reached, stats = run_distributed(setup, chunk_size, client, workers, scheduler)
    n = setup.P.shape[0]
    failed = np.nonzero(status != STATUS_OK)[0]
    if failed.size:
        if on_failure == "raise":
            first = int(failed[0])
            err = failure(model, method, int(status[first]), float(t_reached[first]), max_steps)
            raise NumericalError(f"{failed.size} of {n} trajectories failed; the first, number {first}: {err} "
                                 "(pass on_failure='nan' to keep the others)")
        out[failed] = np.nan
    return Ensemble(setup.t, out, [s.name for s in model.states], setup.P, status, t_reached, stats, method)


#: The fewest rows in one distributed ensemble chunk unless asked otherwise: a task of milliseconds, not microseconds.
MIN_CHUNK = 512


@dataclass
class EnsembleSetup:
    """An ensemble ready to run: the rows (parameters ``P``, initial values ``Y0``) and what every row shares."""

    model: Model
    t: np.ndarray
    P: np.ndarray  # (N, n_params)
    Y0: np.ndarray  # (N, n_states)
    w: np.ndarray
    ut: np.ndarray
    uv: np.ndarray
    method: str
    rtol: float
    atol: float
    dt: float | None
    max_steps: int
    h0: float

    @classmethod
    def build(cls, model: Model, t_eval, params=None, y0=None, method: str = "dopri5", rtol: float = 1e-6,
              atol: float = 1e-8, dt: float | None = None, max_steps: int = 1_000_000, inputs=None, weights=None,
              h0: float = 0.0) -> "EnsembleSetup":
        """Check the arguments of ``simulate_ensemble`` and make its rows."""
        get_method(method)
        check_tolerances(rtol, atol)
        mod = model.compile().module
        t = as_times(t_eval, mod)
        pb = _batch(model, params, [q.name for q in model.params], "parameter")
        yb = _batch(model, y0, [s.name for s in model.states], "state")
        sizes = {len(v) for v in [*pb.values(), *yb.values()] if len(v) != 1}
        if len(sizes) > 1:
            raise UsageError(f"ensemble arrays have different lengths {sorted(sizes)}; give N values (or 1) for each")
        n = sizes.pop() if sizes else 1
        P = np.tile(param_vector(model, None), (n, 1))
        for j, q in enumerate(model.params):
            if q.name in pb:
                P[:, j] = pb[q.name]
        P = np.ascontiguousarray(P)
        Y0 = np.empty((n, len(model.states)))
        mod.init_many(P, Y0)
        for i, s in enumerate(model.states):
            if s.name in yb:
                Y0[:, i] = yb[s.name]
        ut, uv = input_arrays(model, inputs)
        return cls(model, t, P, Y0, weight_vector(model, weights), ut, uv, method, rtol, atol, dt, max_steps, h0)

    def run(self, P: np.ndarray, Y0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Solve the rows ``P``, ``Y0`` (in parallel on this machine's cores): states, status, t reached, stats."""
        return run_rows(self.model.compile().module, self.t, P, Y0, self.w, self.ut, self.uv, self.method,
                        self.rtol, self.atol, self.dt, self.max_steps, self.h0)


def run_rows(mod, t: np.ndarray, P: np.ndarray, Y0: np.ndarray, w: np.ndarray, ut: np.ndarray, uv: np.ndarray,
             method: str, rtol: float, atol: float, dt: float | None, max_steps: int,
             h0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One call of the compiled ensemble loop of ``method`` over the rows ``P``, ``Y0`` of module ``mod``."""
    m = get_method(method)
    n = P.shape[0]
    P, Y0 = np.ascontiguousarray(P), np.array(Y0, dtype=float, order="C")  # the loops write into Y0
    out = np.empty((n, t.size, Y0.shape[1]))
    status = np.zeros(n, dtype=np.int64)
    t_reached = np.zeros(n)
    stats = np.zeros((n, len(STAT_NAMES)), dtype=np.int64)
    if m.kind in STIFF_KERNELS:
        kernel = getattr(mod, "ensemble_" + STIFF_KERNELS[m.kind])
        kernel(t, Y0, P, w, ut, uv, *stiff_kernel_args(m.name), rtol, atol, h0, math.inf, max_steps, out, status,
               t_reached, stats)
    elif m.kind == "fixed":
        k = kernel_arrays(m.name)
        mod.ensemble_fixed(t, Y0, P, w, ut, uv, k.a, k.b, k.c, dt or 0.0, max_steps, out, status, t_reached, stats)
    else:
        k = kernel_arrays(m.name)
        mod.ensemble_adaptive(t, Y0, P, w, ut, uv, k.a, k.b, k.c, k.e, k.e3, k.dense, k.xa, k.xc, k.fsal, k.expo1,
                              m.beta, m.safety, m.facmin, m.facmax, k.order, rtol, atol, h0, math.inf, max_steps,
                              out, status, t_reached, stats)
    return out, status, t_reached, stats
