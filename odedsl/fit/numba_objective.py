"""The fit's loss and gradient over the same flat vector as torch_objective.py, computed with Numba.

``x`` is the fitted parameters' unconstrained coordinates (odedsl.bounds, as the
Torch module's ``raw``) then every net weight in ``odedsl.nets`` layout, and the
initial weights are the Torch module's (``init_weights`` with the same seed), so
a fit on either backend starts from the same point and follows the same
trajectory to rounding. The dataset is packed into arrays once; each
evaluation is then one compiled call (compiled_loss.py: every experiment's
taped solve, loss and discrete adjoint) and the bounds' chain rule. No
autograd, no per-operation overhead: the cost is the arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

from odedsl import bounds
from odedsl.errors import NumericalError, UsageError
from odedsl.fit.compiled_loss import KIND_LOGNORMAL, KIND_NONE, KIND_NORMAL
from odedsl.fit.data import Dataset
from odedsl.fit.loss import Scaling
from odedsl.model import Model
from odedsl.nets import init_weights


class NumbaObjective:
    """``value_and_grad`` of the fit's loss for ``model`` on ``data``, compiled (see the module docstring)."""

    def __init__(self, model: Model, data: Dataset, sc: Scaling, method: str = "dopri5", rtol: float = 1e-6,
                 atol: float = 1e-8, l2: float = 0.0, seed: int = 0, checkpoint_every: int | None = None) -> None:
        from odedsl.simulate import check_tolerances
        from odedsl.solvers.methods import get_method, kernel_arrays

        m = get_method(method)
        if m.kind not in ("fixed", "adaptive") or m.kind == "adaptive" and kernel_arrays(m.name).xc.size:
            raise UsageError(f"compiled gradients support euler, midpoint, rk4, bosh3, dopri5 and tsit5, not {m.name}")
        check_tolerances(rtol, atol)
        self.model, self.data, self.sc, self.l2, self.method = model, data, sc, l2, m.name
        self.module = model.compile().module
        self.fitted = np.array([i for i, p in enumerate(model.params) if not p.fixed], dtype=np.int64)
        self.lo = np.array([model.params[i].lower for i in self.fitted])
        self.hi = np.array([model.params[i].upper for i in self.fitted])
        self.p_file = np.array([p.value for p in model.params], dtype=float)
        self.n_w = sum(n.n_weights for n in model.nets)
        self.x0 = np.concatenate([[bounds.to_raw(self.p_file[i], a, b) for i, a, b in zip(self.fitted, self.lo, self.hi)],
                                  init_weights(model, seed)])
        self.n_points = data.n_points
        k = kernel_arrays(m.name)
        self.tab = (k.a, k.b, k.c, k.e, k.e3, k.dense, k.xa, k.xc)
        self.max_steps = 1_000_000
        self.ctrl = (m.kind == "fixed", k.fsal, k.expo1, m.beta, m.safety, m.facmin, m.facmax, k.order, rtol, atol,
                     0.0, self.max_steps, checkpoint_every or 0)
        self.packed = pack(model, data, sc)
        self.room = np.array([64], dtype=np.int64)

    def get_x(self) -> np.ndarray:
        return self.x0.copy()

    def solution(self, x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        """Every parameter's value by name, and the weights, at ``x``."""
        p = self.p_file.copy()
        p[self.fitted] = bounds.from_raw(x[:self.fitted.size], self.lo, self.hi)[0]
        return dict(zip((q.name for q in self.model.params), p.tolist())), np.array(x[self.fitted.size:])

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss and its gradient at ``x``; raises ``NumericalError`` when a solve fails."""
        p = self.p_file.copy()
        values, slope = bounds.from_raw(x[:self.fitted.size], self.lo, self.hi)
        p[self.fitted] = values
        w = np.ascontiguousarray(x[self.fitted.size:])
        gp, gw = np.empty(p.size), np.zeros(self.n_w)
        total, status, ex, t_reached = self.module._fit_loss_grad(p, w, self.tab, self.ctrl, self.packed, self.room,
                                                                  gp, gw)
        if status:
            from odedsl.simulate import failure

            err = failure(self.model, self.method, status, t_reached, self.max_steps)
            raise NumericalError(f"experiment '{self.data.experiments[ex].name}': {err}")
        loss = total / self.n_points
        grad_w = gw / self.n_points
        if self.l2 and self.n_w:
            loss += self.l2 * float(w @ w) / self.n_w
            grad_w += 2.0 * self.l2 * w / self.n_w
        return loss, np.concatenate([gp[self.fitted] / self.n_points * slope, grad_w])


def pack(model: Model, data: Dataset, sc: Scaling) -> tuple:
    """``data`` as compiled_loss.py's arrays: experiments concatenated, with offsets, in the model's order."""
    from odedsl.simulate import input_arrays

    names = [o.column for o in model.observables] or [s.name for s in model.states]
    cols = np.array([names.index(c) for c in data.columns], dtype=np.int64)
    kinds = np.array([{None: KIND_NONE, "normal": KIND_NORMAL, "lognormal": KIND_LOGNORMAL}[k] for k in sc.kinds],
                     dtype=np.int64)
    exps = data.experiments
    t_off = np.cumsum([0] + [e.times.size for e in exps]).astype(np.int64)
    given = np.array([[s.name in e.y0 for s in model.states] for e in exps], dtype=np.bool_)
    y0v = np.array([[e.y0.get(s.name, math.nan) for s in model.states] for e in exps], dtype=float)
    inputs = [input_arrays(model, e.inputs or None) for e in exps]
    u_off = np.cumsum([0] + [ut.size for ut, _ in inputs]).astype(np.int64)
    ut = np.ascontiguousarray(np.concatenate([ut for ut, _ in inputs]), dtype=float)
    uv = np.ascontiguousarray(np.concatenate([uv for _, uv in inputs]), dtype=float)
    return (np.concatenate([e.times for e in exps]).astype(float), t_off,
            np.ascontiguousarray(np.concatenate([e.observed for e in exps]), dtype=float), given.reshape(len(exps), -1),
            y0v.reshape(len(exps), -1), ut, uv, u_off, cols, kinds, np.asarray(sc.spread, dtype=float))
