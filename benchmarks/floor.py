"""The floor for explicit solves: a hand-written, fully @njit Dormand–Prince 5(4) loop.

Nothing but arithmetic: the Lotka–Volterra right-hand side inlined, PI step
control and dense output, as a skilled person would write it for one problem.
odedsl's generic compiled loop is measured against it (docs/performance.md).
The coefficients are the Dormand–Prince tableau as published in Hairer, Nørsett
& Wanner, *Solving ODEs I*, Table II.5.2, read here from odedsl's own tableau.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from odedsl.solvers.tableaux import get_tableau

_T = get_tableau("dopri5")
A = np.ascontiguousarray(_T.a)
B = np.ascontiguousarray(_T.b)
C = np.ascontiguousarray(_T.c)
E = np.ascontiguousarray(_T.b_err)
P = np.ascontiguousarray(_T.dense)


@njit(cache=True)
def _lv(y, p, out):
    out[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    out[1] = p[2] * y[0] * y[1] - p[3] * y[1]


@njit(cache=True)
def dopri5_lv(t_eval, y0, p, rtol, atol, out):
    K = np.empty((7, 2))
    y = y0.copy()
    yn = np.empty(2)
    yt = np.empty(2)
    t = t_eval[0]
    t_end = t_eval[-1]
    out[0] = y
    idx = 1
    _lv(y, p, K[0])
    h = 0.01
    err_old = 1e-4
    while idx < t_eval.size:
        if t + h > t_end:
            h = t_end - t
        for s in range(1, 7):
            for i in range(2):
                acc = 0.0
                for j in range(s):
                    acc += A[s, j] * K[j, i]
                yt[i] = y[i] + h * acc
            _lv(yt, p, K[s])
        err = 0.0
        for i in range(2):
            acc = 0.0
            ea = 0.0
            for j in range(7):
                acc += B[j] * K[j, i]
                ea += E[j] * K[j, i]
            yn[i] = y[i] + h * acc
            sc = atol + rtol * max(abs(y[i]), abs(yn[i]))
            err += (h * ea / sc) ** 2
        err = math.sqrt(err / 2)
        if err <= 1.0:
            tn = t + h
            while idx < t_eval.size and t_eval[idx] <= tn:
                th = (t_eval[idx] - t) / h
                for i in range(2):
                    acc = 0.0
                    for j in range(7):
                        w = th * (P[j, 0] + th * (P[j, 1] + th * (P[j, 2] + th * P[j, 3])))
                        acc += w * K[j, i]
                    out[idx, i] = y[i] + h * acc
                idx += 1
            t = tn
            y[:] = yn
            K[0] = K[6]
            fac = min(10.0, max(0.2, 0.9 * err ** -0.17 * err_old ** 0.04))
            err_old = max(err, 1e-4)
            h *= fac
        else:
            h *= max(0.2, 0.9 * err ** -0.2)
    return out


@njit(parallel=True, cache=True)
def dopri5_lv_ensemble(t_eval, y0, P_, rtol, atol, out):
    for k in prange(P_.shape[0]):
        dopri5_lv(t_eval, y0, P_[k], rtol, atol, out[k])
