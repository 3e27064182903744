"""The fit's loss and gradient over the same flat vector as torch_objective.py, computed with Numba.

``x`` is the fitted parameters' unconstrained coordinates (odedsl.bounds, as the
Torch module's ``raw``) then every net weight in ``odedsl.nets`` layout, and the
initial weights are the Torch module's (``init_weights`` with the same seed), so
a fit on either backend starts from the same point and follows the same
trajectory to rounding. Per experiment: a taped compiled solve, the
observables and loss.py's loss in NumPy, then the compiled discrete adjoint
(odedsl.gradient) with the loss's cotangent. No autograd, no per-operation
overhead: the cost is the arithmetic.
"""

from __future__ import annotations

import numpy as np

from odedsl import bounds
from odedsl.fit.data import Dataset
from odedsl.fit.loss import Scaling, loss_terms, residuals
from odedsl.gradient import CompiledSolve
from odedsl.model import Model
from odedsl.nets import init_weights


class NumbaObjective:
    """``value_and_grad`` of the fit's loss for ``model`` on ``data``, compiled (see the module docstring)."""

    def __init__(self, model: Model, data: Dataset, sc: Scaling, method: str = "dopri5", rtol: float = 1e-6,
                 atol: float = 1e-8, l2: float = 0.0, seed: int = 0) -> None:
        from odedsl.simulate import input_arrays

        self.model, self.data, self.sc, self.l2 = model, data, sc, l2
        self.solver = CompiledSolve(model, method, rtol, atol)
        self.module = self.solver.module
        self.fitted = np.array([i for i, p in enumerate(model.params) if not p.fixed], dtype=np.int64)
        self.lo = np.array([model.params[i].lower for i in self.fitted])
        self.hi = np.array([model.params[i].upper for i in self.fitted])
        self.p_file = np.array([p.value for p in model.params], dtype=float)
        self.n_w = sum(n.n_weights for n in model.nets)
        self.x0 = np.concatenate([[bounds.to_raw(self.p_file[i], a, b) for i, a, b in zip(self.fitted, self.lo, self.hi)],
                                  init_weights(model, seed)])
        names = [o.column for o in model.observables] or [s.name for s in model.states]
        self.columns = np.array([names.index(c) for c in data.columns], dtype=np.int64)
        self.n_points = data.n_points
        self.inputs = [input_arrays(model, e.inputs or None) for e in data.experiments]
        self.given = [np.array([s.name in e.y0 for s in model.states]) for e in data.experiments]

    def get_x(self) -> np.ndarray:
        return self.x0.copy()

    def solution(self, x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        """Every parameter's value by name, and the weights, at ``x``."""
        p = self.p_file.copy()
        p[self.fitted] = bounds.from_raw(x[:self.fitted.size], self.lo, self.hi)[0]
        return dict(zip((q.name for q in self.model.params), p.tolist())), np.array(x[self.fitted.size:])

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss and its gradient at ``x``; raises ``NumericalError`` when a solve fails."""
        m, mod, sc = self.model, self.module, self.sc
        n, n_p, n_obs = len(m.states), len(m.params), len(m.observables)
        p = self.p_file.copy()
        values, slope = bounds.from_raw(x[:self.fitted.size], self.lo, self.hi)
        p[self.fitted] = values
        w = np.ascontiguousarray(x[self.fitted.size:])
        sigma_all = np.empty(n_obs)
        dsigma = np.empty((n_obs, n_p))
        mod.noise(p, sigma_all)
        mod.noise_jac(p, dsigma)
        cols = self.columns
        sigma = sigma_all[cols] if n_obs else np.ones(cols.size)
        gp, gw = np.zeros(n_p), np.zeros(self.n_w)
        g_sigma = np.zeros(cols.size)
        total = 0.0
        for e, (ut, uv), given in zip(self.data.experiments, self.inputs, self.given):
            margs = (p, w, ut, uv)
            y0 = np.empty(n)
            mod.init(p, y0)
            for i, st in enumerate(m.states):
                if st.name in e.y0:
                    y0[i] = e.y0[st.name]
            out, tape = self.solver.forward(e.times, y0, margs)
            obs, J, Jp = self._observe(e.times, out, margs)
            mask = np.isfinite(e.observed)
            data_values = np.where(mask, e.observed, 1.0)  # missing values: a harmless stand-in, masked out
            model_values = np.where(mask, obs[:, cols], data_values)
            r = residuals(np, model_values, data_values, sigma, sc)
            terms = np.where(mask, loss_terms(np, r, sigma, sc), 0.0)
            total += float(terms.sum())
            # d loss / d model value: 2 r / (sigma spread), times d log m / dm on lognormal columns
            dm = np.where(mask, 2.0 * r / (sigma * sc.spread), 0.0)
            for k in sc.logged:
                dm[:, k] /= model_values[:, k]
            g_sigma += np.where(mask, -2.0 * r * r / sigma + 2.0 * np.array([k is not None for k in sc.kinds]) / sigma,
                                0.0).sum(0)
            dobs = np.zeros((e.times.size, max(n_obs, n)))
            dobs[:, cols] = dm
            if n_obs:
                g_out = np.einsum("to,ton->tn", dobs[:, :n_obs], J)
                gp += np.einsum("to,top->p", dobs[:, :n_obs], Jp)
            else:
                g_out = np.ascontiguousarray(dobs[:, :n])
            gy0, gpk, gwk = self.solver.backward(e.times, y0, margs, tape, np.ascontiguousarray(g_out), out)
            gp += gpk + self.solver.through_initial_values(p, gy0, given)
            gw += gwk
        if n_obs:
            full = np.zeros(n_obs)
            np.add.at(full, cols, g_sigma)
            gp += full @ dsigma
        loss = total / self.n_points
        grad_p = gp / self.n_points
        grad_w = gw / self.n_points
        if self.l2 and self.n_w:
            loss += self.l2 * float(w @ w) / self.n_w
            grad_w = grad_w + 2.0 * self.l2 * w / self.n_w
        return loss, np.concatenate([grad_p[self.fitted] * slope, grad_w])

    def _observe(self, t: np.ndarray, out: np.ndarray, margs: tuple):
        """Observables along the solution, and their Jacobians in the states and the parameters."""
        mod = self.module
        n_obs, n, n_p = len(self.model.observables), out.shape[1], margs[0].size
        if not n_obs:
            return out, None, None
        obs, J, Jp = np.empty((t.size, n_obs)), np.empty((t.size, n_obs, n)), np.empty((t.size, n_obs, n_p))
        for i in range(t.size):
            mod.observe(t[i], out[i], margs, obs[i])
            mod.observe_jac(t[i], out[i], margs, J[i])
            mod.observe_jac_p(t[i], out[i], margs, Jp[i])
        return obs, J, Jp
