"""Exact gradients of a compiled (Numba) solve: the discrete adjoint of solvers/adjoint_rk.py.

``solve_gradient`` runs the forward solve, keeping its accepted steps, and goes
back through them in one more compiled call, returning the outputs and the
gradient of ``Σ g_out · out`` with respect to the initial values, every
parameter and every net weight. ``CompiledSolve`` holds the two halves for
callers (the compiled fit objective) that compute ``g_out`` from the outputs in
between. Gradients equal autograd through the Torch backend's same steps.
"""

from __future__ import annotations

import math

import numpy as np

from odedsl.errors import UsageError
from odedsl.model import Model


class CompiledSolve:
    """One model's taped forward solve and discrete adjoint, for one method and its settings."""

    def __init__(self, model: Model, method: str = "dopri5", rtol: float = 1e-6, atol: float = 1e-8,
                 dt: float | None = None, max_steps: int = 1_000_000) -> None:
        from odedsl.simulate import check_tolerances
        from odedsl.solvers.methods import get_method, kernel_arrays

        m = get_method(method)
        k = kernel_arrays(m.name) if m.kind in ("fixed", "adaptive") else None
        if k is None or k.xc.size and m.kind == "adaptive":
            raise UsageError(f"compiled gradients support euler, midpoint, rk4, bosh3, dopri5 and tsit5, not {m.name}")
        check_tolerances(rtol, atol)
        self.model, self.method, self.k = model, m, k
        self.rtol, self.atol, self.dt, self.max_steps = rtol, atol, dt, max_steps
        self.module = model.compile().module

    def forward(self, t: np.ndarray, y0: np.ndarray, margs: tuple) -> tuple[np.ndarray, np.ndarray]:
        """The outputs at ``t`` (T, n) and the tape of accepted steps ``(t, h, t_new)``."""
        from odedsl.simulate import STAT_NAMES, failure
        from odedsl.solvers.explicit import STATUS_OK

        m, k = self.method, self.k
        out = np.empty((t.size, y0.size))
        if m.kind == "fixed":
            return out, _fixed_tape(t, self.dt)  # the replay in ``backward`` writes the outputs
        tape = np.empty((256, 3))
        while True:
            stats = np.zeros(len(STAT_NAMES), dtype=np.int64)
            status, t_reached = self.module._rk_adaptive(
                t, y0, margs, k.a, k.b, k.c, k.e, k.e3, k.dense, k.xa, k.xc, k.fsal, k.expo1, m.beta, m.safety,
                m.facmin, m.facmax, k.order, self.rtol, self.atol, 0.0, math.inf, self.max_steps, out, stats, tape)
            if status != STATUS_OK:
                raise failure(self.model, m.name, status, t_reached, self.max_steps)
            accepted = int(stats[STAT_NAMES.index("n_accepted")])
            if accepted <= tape.shape[0]:
                return out, np.ascontiguousarray(tape[:accepted])
            tape = np.empty((accepted, 3))  # more steps than room: again, with room for all

    def backward(self, t: np.ndarray, y0: np.ndarray, margs: tuple, tape: np.ndarray, g_out: np.ndarray,
                 out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """d(Σ g_out·out)/d(y0, params at fixed y0, weights); replays the steps, writing ``out`` again."""
        k = self.k
        gy0, gp, gw = np.empty(y0.size), np.empty(margs[0].size), np.zeros(margs[1].size)
        self.module._rk_adjoint(t, y0, margs, k.a, k.b, k.c, k.dense, k.fsal, tape, tape.shape[0], g_out, out, gy0,
                                gp, gw)
        return gy0, gp, gw

    def through_initial_values(self, p: np.ndarray, gy0: np.ndarray, given: np.ndarray) -> np.ndarray:
        """d/dparams through the file's initial values of the states not ``given`` (a mask)."""
        J0 = np.empty((gy0.size, p.size))
        self.module.init_jac(p, J0)
        return J0[~given].T @ gy0[~given]


def solve_gradient(model: Model, t_eval, g_out, params: dict | None = None, y0: dict | None = None,
                   weights=None, method: str = "dopri5", rtol: float = 1e-6, atol: float = 1e-8,
                   dt: float | None = None, max_steps: int = 1_000_000, inputs: dict | None = None):
    """``(out (T, n), d/dy0 (n,), d/dparams (n_params,), d/dweights (n_weights,))`` of ``Σ g_out·out``.

    ``d/dparams`` includes the parameters' effect through the file's initial values
    (for states not given in ``y0``). Methods: the fixed-step ones (with ``dt``; one
    step per output gap without) and the adaptive ones whose dense output needs no
    extra stages (bosh3, dopri5, tsit5).
    """
    from odedsl.simulate import as_times, initial_vector, input_arrays, param_vector, weight_vector

    solver = CompiledSolve(model, method, rtol, atol, dt, max_steps)
    t = as_times(t_eval, solver.module)
    g = np.ascontiguousarray(np.asarray(g_out, dtype=float).reshape(t.size, len(model.states)))
    p = param_vector(model, params)
    margs = (p, weight_vector(model, weights), *input_arrays(model, inputs))
    y = initial_vector(model, solver.module, p, y0)
    out, tape = solver.forward(t, y, margs)
    gy0, gp, gw = solver.backward(t, y, margs, tape, g, out)
    given = np.array([s.name in (y0 or {}) for s in model.states])
    return out, gy0, gp + solver.through_initial_values(p, gy0, given), gw


def _fixed_tape(t: np.ndarray, dt: float | None) -> np.ndarray:
    """The steps ``_rk_fixed`` takes: ``ceil(gap/dt)`` equal steps per output gap, each gap ending exactly."""
    rows = []
    for k in range(1, t.size):
        t0, gap = t[k - 1], t[k] - t[k - 1]
        m = 1 if not dt else max(1, math.ceil(gap / dt - 1e-9))
        h = gap / m
        rows += [(t0 + j * h, h, t[k] if j == m - 1 else t0 + (j + 1) * h) for j in range(m)]
    return np.array(rows, dtype=float).reshape(-1, 3)
