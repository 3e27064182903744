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
    """One model's taped forward solve and discrete adjoint, for one method and its settings.

    ``checkpoint_every``: ``None`` keeps every accepted step's stages from the forward
    solve (fastest: the backward pass evaluates no right-hand side; memory
    ``(s+1)·n`` numbers a step); an integer ``K`` keeps three numbers a step and
    recomputes the stages from a state saved every ``K`` steps (memory bounded by
    ``K``, two more passes of right-hand sides).
    """

    def __init__(self, model: Model, method: str = "dopri5", rtol: float = 1e-6, atol: float = 1e-8,
                 dt: float | None = None, max_steps: int = 1_000_000, checkpoint_every: int | None = None) -> None:
        from odedsl.simulate import check_tolerances
        from odedsl.solvers.methods import get_method, kernel_arrays

        m = get_method(method)
        k = kernel_arrays(m.name) if m.kind in ("fixed", "adaptive") else None
        if k is None or k.xc.size and m.kind == "adaptive":
            raise UsageError(f"compiled gradients support euler, midpoint, rk4, bosh3, dopri5 and tsit5, not {m.name}")
        if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
            raise UsageError(f"checkpoint_every must be None or a positive integer, not {checkpoint_every!r}")
        check_tolerances(rtol, atol)
        self.model, self.method, self.k = model, m, k
        self.rtol, self.atol, self.dt, self.max_steps = rtol, atol, dt, max_steps
        self.every = checkpoint_every
        self.width = 3 if checkpoint_every else 3 + (k.b.size + 1) * len(model.states)
        self.module = model.compile().module
        self._room = 64  # tape rows tried first: the last solve's step count, so a fit allocates once

    def forward(self, t: np.ndarray, y0: np.ndarray, margs: tuple) -> tuple[np.ndarray, np.ndarray]:
        """The outputs at ``t`` (T, n) and the tape of the accepted steps (adjoint_rk.py)."""
        from odedsl.simulate import STAT_NAMES, failure
        from odedsl.solvers.explicit import STATUS_OK

        m, k = self.method, self.k
        out = np.empty((t.size, y0.size))
        while True:
            tape = np.empty((self._room, self.width))
            stats = np.zeros(len(STAT_NAMES), dtype=np.int64)
            if m.kind == "fixed":
                status, t_reached = self.module._rk_fixed(t, y0, margs, k.a, k.b, k.c, self.dt or 0.0,
                                                          self.max_steps, out, stats, tape)
            else:
                status, t_reached = self.module._rk_adaptive(
                    t, y0, margs, k.a, k.b, k.c, k.e, k.e3, k.dense, k.xa, k.xc, k.fsal, k.expo1, m.beta, m.safety,
                    m.facmin, m.facmax, k.order, self.rtol, self.atol, 0.0, math.inf, self.max_steps, out, stats,
                    tape)
            if status != STATUS_OK:
                raise failure(self.model, m.name, status, t_reached, self.max_steps)
            accepted = int(stats[STAT_NAMES.index("n_accepted")])
            if accepted <= self._room:
                return out, tape[:accepted]
            self._room = accepted  # more steps than room: again, with room for all

    def backward(self, t: np.ndarray, y0: np.ndarray, margs: tuple, tape: np.ndarray,
                 g_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """d(Σ g_out·out)/d(y0, params at fixed y0, weights) for the solve that wrote ``tape``."""
        k = self.k
        gy0, gp, gw = np.empty(y0.size), np.empty(margs[0].size), np.zeros(margs[1].size)
        self.module._rk_adjoint(t, y0, margs, k.a, k.b, k.c, k.dense, k.fsal, tape, tape.shape[0], self.every or 0,
                                np.ascontiguousarray(g_out, dtype=float), gy0, gp, gw)
        return gy0, gp, gw

    def through_initial_values(self, p: np.ndarray, gy0: np.ndarray, given: np.ndarray) -> np.ndarray:
        """d/dparams through the file's initial values of the states not ``given`` (a mask)."""
        J0 = np.empty((gy0.size, p.size))
        self.module.init_jac(p, J0)
        return J0[~given].T @ gy0[~given]


def solve_gradient(model: Model, t_eval, g_out, params: dict | None = None, y0: dict | None = None,
                   weights=None, method: str = "dopri5", rtol: float = 1e-6, atol: float = 1e-8,
                   dt: float | None = None, max_steps: int = 1_000_000, inputs: dict | None = None,
                   checkpoint_every: int | None = None):
    """``(out (T, n), d/dy0 (n,), d/dparams (n_params,), d/dweights (n_weights,))`` of ``Σ g_out·out``.

    ``d/dparams`` includes the parameters' effect through the file's initial values
    (for states not given in ``y0``). Methods: the fixed-step ones (with ``dt``; one
    step per output gap without) and the adaptive ones whose dense output needs no
    extra stages (bosh3, dopri5, tsit5). ``checkpoint_every``: see ``CompiledSolve``.
    """
    from odedsl.simulate import as_times, initial_vector, input_arrays, param_vector, weight_vector

    solver = CompiledSolve(model, method, rtol, atol, dt, max_steps, checkpoint_every)
    t = as_times(t_eval, solver.module)
    g = np.ascontiguousarray(np.asarray(g_out, dtype=float).reshape(t.size, len(model.states)))
    p = param_vector(model, params)
    margs = (p, weight_vector(model, weights), *input_arrays(model, inputs))
    y = initial_vector(model, solver.module, p, y0)
    out, tape = solver.forward(t, y, margs)
    gy0, gp, gw = solver.backward(t, y, margs, tape, g)
    given = np.array([s.name in (y0 or {}) for s in model.states])
    return out, gy0, gp + solver.through_initial_values(p, gy0, given), gw

