"""Many trajectories of one model in parallel (Numba ``prange``), one per parameter set.

Compiled with ``parallel=True`` into each model's module (see ``numba_module``);
each trajectory runs the same single-trajectory loop as ``simulate``.
"""

# The single-trajectory loops (``_rk_adaptive``, ``_rosenbrock``, ...) are defined in the generated module too.
# ruff: noqa: F821

import numpy as np
from numba import prange


def ensemble_adaptive(t_eval, Y0, P, w, ut, uv, a, b, c, e, e3, dense, xa, xc, fsal, expo1, beta, safety, facmin,
                      facmax, order, rtol, atol, h_init, h_max, max_steps, out, status, t_reached, stats):
    for k in prange(Y0.shape[0]):
        margs = (P[k], w, ut, uv)
        st, tr = _rk_adaptive(t_eval, Y0[k], margs, a, b, c, e, e3, dense, xa, xc, fsal, expo1, beta, safety,
                              facmin, facmax, order, rtol, atol, h_init, h_max, max_steps, out[k], stats[k],
                              np.zeros((0, 3)))
        status[k] = st
        t_reached[k] = tr


def ensemble_fixed(t_eval, Y0, P, w, ut, uv, a, b, c, dt, max_steps, out, status, t_reached, stats):
    for k in prange(Y0.shape[0]):
        margs = (P[k], w, ut, uv)
        st, tr = _rk_fixed(t_eval, Y0[k], margs, a, b, c, dt, max_steps, out[k], stats[k],
                           np.zeros((0, 3)))
        status[k] = st
        t_reached[k] = tr


def ensemble_rosenbrock(t_eval, Y0, P, w, ut, uv, a, C, gamma, c, d, m, e, H, error_order, safety, facmin, facmax,
                        ea, eb, ec, ee, edense, eorder, eexpo1, ebeta, esafety, efacmin, efacmax,
                        rtol, atol, h_init, h_max, max_steps, out, status, t_reached, stats):
    for k in prange(Y0.shape[0]):
        margs = (P[k], w, ut, uv)
        st, tr = _rosenbrock(t_eval, Y0[k], margs, a, C, gamma, c, d, m, e, H, error_order, safety, facmin, facmax,
                             ea, eb, ec, ee, edense, eorder, eexpo1, ebeta, esafety, efacmin, efacmax,
                             rtol, atol, h_init, h_max, max_steps, out[k], stats[k])
        status[k] = st
        t_reached[k] = tr


def ensemble_bdf(t_eval, Y0, P, w, ut, uv, kappa, safety, facmin, facmax, rtol, atol, h_init, h_max, max_steps, out,
                 status, t_reached, stats):
    for k in prange(Y0.shape[0]):
        margs = (P[k], w, ut, uv)
        st, tr = _bdf(t_eval, Y0[k], margs, kappa, safety, facmin, facmax, rtol, atol, h_init, h_max, max_steps,
                      out[k], stats[k])
        status[k] = st
        t_reached[k] = tr


def init_many(P, out):
    for k in range(P.shape[0]):
        init(P[k], out[k])
