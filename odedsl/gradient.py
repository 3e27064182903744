"""Exact gradients of a compiled (Numba) solve: the discrete adjoint of solvers/adjoint_rk.py.

``solve_gradient`` runs the forward solve, keeping its accepted steps, and goes
back through them in one more compiled call, returning the outputs and the
gradient of ``Σ g_out · out`` with respect to the initial values, every
parameter and every net weight. This is the building block of compiled CPU
training (issue #6): its gradients equal autograd through the Torch backend's
same steps.
"""

from __future__ import annotations

import math

import numpy as np

from odedsl.errors import UsageError
from odedsl.model import Model


def solve_gradient(model: Model, t_eval, g_out, params: dict | None = None, y0: dict | None = None,
                   weights=None, method: str = "dopri5", rtol: float = 1e-6, atol: float = 1e-8,
                   dt: float | None = None, max_steps: int = 1_000_000, inputs: dict | None = None):
    """``(out (T, n), d/dy0 (n,), d/dparams (n_params,), d/dweights (n_weights,))`` of ``Σ g_out·out``.

    ``d/dparams`` includes the parameters' effect through the file's initial values
    (for states not given in ``y0``).

    Methods: the fixed-step ones (with ``dt``; one step per output gap without) and
    the adaptive ones whose dense output needs no extra stages (bosh3, dopri5, tsit5).
    """
    from odedsl.simulate import (STAT_NAMES, as_times, check_tolerances, failure, initial_vector, input_arrays,
                                 param_vector, weight_vector)
    from odedsl.solvers.explicit import STATUS_OK
    from odedsl.solvers.methods import get_method, kernel_arrays

    m = get_method(method)
    k = kernel_arrays(m.name) if m.kind in ("fixed", "adaptive") else None
    if k is None or k.xc.size and m.kind == "adaptive":
        raise UsageError(f"compiled gradients support euler, midpoint, rk4, bosh3, dopri5 and tsit5, not {m.name}")
    check_tolerances(rtol, atol)
    module = model.compile().module
    t = as_times(t_eval, module)
    g = np.ascontiguousarray(np.asarray(g_out, dtype=float).reshape(t.size, len(model.states)))
    p = param_vector(model, params)
    w = weight_vector(model, weights)
    ut, uv = input_arrays(model, inputs)
    margs = (p, w, ut, uv)
    y = initial_vector(model, module, p, y0)
    out = np.empty((t.size, y.size))
    if m.kind == "fixed":
        tape = _fixed_tape(t, dt)
    else:
        tape = np.empty((256, 3))
        while True:
            stats = np.zeros(len(STAT_NAMES), dtype=np.int64)
            status, t_reached = module._rk_adaptive(t, y, margs, k.a, k.b, k.c, k.e, k.e3, k.dense, k.xa, k.xc, k.fsal,
                                                    k.expo1, m.beta, m.safety, m.facmin, m.facmax, k.order, rtol, atol,
                                                    0.0, math.inf, max_steps, out, stats, tape)
            if status != STATUS_OK:
                raise failure(model, method, status, t_reached, max_steps)
            accepted = int(stats[STAT_NAMES.index("n_accepted")])
            if accepted <= tape.shape[0]:
                tape = tape[:accepted]
                break
            tape = np.empty((accepted, 3))  # more steps than room: again, with room for all
    gy0, gp, gw = np.empty(y.size), np.empty(p.size), np.zeros(w.size)
    module._rk_adjoint(t, y, margs, k.a, k.b, k.c, k.dense, k.fsal, np.ascontiguousarray(tape), tape.shape[0], g, out,
                       gy0, gp, gw)
    J0 = np.empty((y.size, p.size))  # the file's initial values move with the parameters they use
    module.init_jac(p, J0)
    free = np.array([s.name not in (y0 or {}) for s in model.states])
    gp += J0[free].T @ gy0[free]
    return out, gy0, gp, gw


def _fixed_tape(t: np.ndarray, dt: float | None) -> np.ndarray:
    """The steps ``_rk_fixed`` takes: ``ceil(gap/dt)`` equal steps per output gap, each gap ending exactly."""
    rows = []
    for k in range(1, t.size):
        t0, gap = t[k - 1], t[k] - t[k - 1]
        m = 1 if not dt else max(1, math.ceil(gap / dt - 1e-9))
        h = gap / m
        rows += [(t0 + j * h, h, t[k] if j == m - 1 else t0 + (j + 1) * h) for j in range(m)]
    return np.array(rows, dtype=float).reshape(-1, 3)
