"""Variable-order (1–5), variable-step BDF integration in the quasi-constant-step NDF form.

The algorithm is that of scipy's ``BDF`` (``scipy/integrate/_ivp/bdf.py``), which
follows Shampine & Reichelt, "The MATLAB ODE Suite", SIAM J. Sci. Comput. 18
(1997): the numerical differentiation formulas (NDF, BDF with the ``κ`` corrections
of their Table 1, which improve the error constants at orders 1–4), the solution
history held as backward differences ``D`` on an equally spaced grid (rescaled by
the matrices ``R U`` whenever the step size changes), a simplified Newton iteration
reusing the LU of ``I - c J`` (``c = h/α_k``), the Jacobian re-evaluated only when
Newton fails to converge with the current one, and order selection from the error
estimates of orders ``k-1``, ``k``, ``k+1`` every ``k+1`` equal steps. This is our
own loop-level code for Numba, compiled into each model's module with its exact
``jac``; output times never shorten a step, their values come from the
interpolating polynomial of the backward differences.

Departures from scipy: the LU is refactored whenever ``c`` changes (scipy keeps the
old LU after an error-test failure, which slows Newton down), the output grid
uses dense output instead of stepping to each time, and a singular ``I - cJ`` or
a non-finite ``f`` counts as a non-finite step (status codes as in explicit.py).
"""

# ``rhs`` and ``jac`` are defined by the generated module these functions are compiled into.
# ruff: noqa: F821

import math

import numpy as np

from odedsl.solvers.explicit import (STAT_ACCEPTED, STAT_JAC, STAT_REJECTED, STAT_RHS, STATUS_OK,
                                     _all_finite, _rms_norm, _start, _step_guard)
from odedsl.solvers.linalg import _factor_shifted, _lu_solve

#: Shampine & Reichelt's NDF constants κ_k for orders k = 0..5 (Table 1; order 5 is plain BDF).
NDF_KAPPA = (0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0)

#: Newton iterations per attempt before the step counts as not converged (scipy's NEWTON_MAXITER).
BDF_NEWTON_MAXITER = 4


def _bdf_difference_matrix(order, factor, M):
    """scipy's ``compute_R``: ``M[i, j] = Π_{r=1..i} (r - 1 - factor*j)/r``, rows and columns 0..order."""
    for j in range(order + 1):
        M[0, j] = 1.0
    for i in range(1, order + 1):
        M[i, 0] = 0.0
        for j in range(1, order + 1):
            M[i, j] = M[i - 1, j] * (i - 1 - factor * j) / i


def _bdf_rescale(D, order, factor, work):
    """Rescale the differences ``D[:order+1]`` from step ``h`` to ``factor*h``: ``D ← (R U)ᵀ D``.

    ``R`` (for ``factor``) and ``U`` (for 1) give the differences on the new grid in
    terms of those on the old one; ``work`` is scratch of shape (3, k, k), k > order.
    """
    R, U, RU = work[0], work[1], work[2]
    _bdf_difference_matrix(order, factor, R)
    _bdf_difference_matrix(order, 1.0, U)
    for k in range(order + 1):
        for j in range(order + 1):
            acc = 0.0
            for m in range(order + 1):
                acc += R[k, m] * U[m, j]
            RU[k, j] = acc
    col = R[0]  # R is no longer needed: its first row holds one column of the new D at a time
    for i in range(D.shape[1]):
        for j in range(order + 1):
            acc = 0.0
            for k in range(order + 1):
                acc += RU[k, j] * D[k, i]
            col[j] = acc
        for j in range(order + 1):
            D[j, i] = col[j]


def _bdf_newton(t_new, y_pred, c, psi, LU, piv, margs, tol, rtol, atol, y, d, dy, stats):
    """Solve the NDF equations for ``y`` at ``t_new`` by simplified Newton from ``y_pred``.

    ``d`` receives ``y - y_pred``. Returns the number of iterations when converged, 0
    when not (the rate estimate says it will not within the iteration budget), -1
    when ``f`` is not finite (scipy's ``solve_bdf_system``).
    """
    n = y.size
    for i in range(n):
        y[i] = y_pred[i]
        d[i] = 0.0
    dy_norm_old = -1.0
    for k in range(BDF_NEWTON_MAXITER):
        rhs(t_new, y, margs, dy)
        stats[STAT_RHS] += 1
        if not _all_finite(dy):
            return -1
        for i in range(n):
            dy[i] = c * dy[i] - psi[i] - d[i]
        _lu_solve(LU, piv, dy)
        dy_norm = _rms_norm(dy, y_pred, y_pred, rtol, atol)
        rate = -1.0
        if dy_norm_old >= 0.0:
            rate = dy_norm / dy_norm_old
            if rate >= 1.0 or rate ** (BDF_NEWTON_MAXITER - k) / (1.0 - rate) * dy_norm > tol:
                return 0
        for i in range(n):
            y[i] += dy[i]
            d[i] += dy[i]
        if dy_norm == 0.0 or (rate >= 0.0 and rate / (1.0 - rate) * dy_norm < tol):
            return k + 1
        dy_norm_old = dy_norm
    return 0


def _bdf_outputs(t_eval, idx, t_new, h, order, D, out):
    """Fill the rows of ``out`` with times up to ``t_new`` from the backward-difference interpolant.

    Newton's form on the grid ``t_new, t_new - h, ...``: ``y(t) = Σ_k D[k] p_k`` with
    ``p_0 = 1``, ``p_k = Π_{j<k} (t - t_new + j h) / ((j + 1) h)`` (scipy's ``BdfDenseOutput``).
    """
    n = D.shape[1]
    while idx < t_eval.size and t_eval[idx] <= t_new:
        for i in range(n):
            out[idx, i] = D[0, i]
        p = 1.0
        for k in range(order):
            p *= (t_eval[idx] - t_new + k * h) / ((k + 1) * h)
            for i in range(n):
                out[idx, i] += D[k + 1, i] * p
        idx += 1
    return idx


def _bdf_select_order(order, D, d, error_const, y, rtol, atol, work):
    """The order among ``order-1 .. order+1`` whose error estimate allows the largest step, and that step factor.

    The estimates are ``C_{k-1} ∇^k y``, ``C_k d`` and ``C_{k+1} ∇^{k+2} y`` (scipy's
    ``error_m``, ``error``, ``error_p``); ties go to the lower order.
    """
    best = -1.0
    new_order = order
    for k in range(max(order - 1, 1), min(order + 1, error_const.size - 1) + 1):
        row = D[order] if k < order else (d if k == order else D[order + 2])
        for i in range(y.size):
            work[i] = error_const[k] * row[i]
        e = _rms_norm(work, y, y, rtol, atol)
        f = math.inf if e == 0.0 else e ** (-1.0 / (k + 1))
        if f > best:
            best = f
            new_order = k
    return new_order, best


def _bdf(t_eval, y0, margs, kappa, safety, facmin, facmax, rtol, atol, h_init, h_max, max_steps, out, stats):
    """Adaptive NDF/BDF integration with dense output at ``t_eval``; returns ``(status, t_reached)``."""
    n = y0.size
    max_order = kappa.size - 1
    gam, alpha, error_const = np.zeros(max_order + 1), np.zeros(max_order + 1), np.ones(max_order + 1)
    for k in range(1, max_order + 1):
        gam[k] = gam[k - 1] + 1.0 / k
        alpha[k] = (1.0 - kappa[k]) * gam[k]
        error_const[k] = kappa[k] * gam[k] + 1.0 / (k + 1)
    D = np.zeros((max_order + 3, n))
    scratch = np.empty((3, max_order + 1, max_order + 1))
    y_pred, psi, y, d, work = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    J, LU = np.empty((n, n)), np.empty((n, n))
    piv = np.empty(n, dtype=np.int64)
    newton_tol = max(10.0 * 2.220446049250313e-16 / rtol, min(0.03, math.sqrt(rtol)))
    t = t_eval[0]
    t_end = t_eval[t_eval.size - 1]
    # np.int64, not the literal 1: Numba would compile the helpers taking ``order`` for Literal[int](1) too
    order = np.int64(1)
    status, idx, h, h_max = _start(t_eval, y0, margs, work, order, rtol, atol, h_init, h_max, out, stats)
    if status >= 0:
        return status, t
    for i in range(n):
        D[0, i] = y0[i]
        D[1, i] = h * work[i]
    jac(t, y0, margs, J)
    stats[STAT_JAC] += 1
    fresh_jac = True  # J was evaluated during the current step
    lu_c = 0.0  # the c that LU was factored with; 0: none
    n_equal = 0
    nan_rejects = 0
    steps = 0
    while idx < t_eval.size:
        status = _step_guard(steps, max_steps, h, t, nan_rejects)
        if status >= 0:
            return status, t
        last = t + 1.01 * h >= t_end
        if last and h != t_end - t:
            _bdf_rescale(D, order, (t_end - t) / h, scratch)
            h = t_end - t
            n_equal = 0
        t_new = t_end if last else t + h
        steps += 1
        c = h / alpha[order]
        for i in range(n):
            acc = 0.0
            ps = 0.0
            for k in range(order + 1):
                acc += D[k, i]
                ps += gam[k] * D[k, i]
            y_pred[i] = acc
            psi[i] = ps / alpha[order]
        iters = -1
        if c == lu_c or _factor_shifted(J, 1.0, c, LU, piv, stats):
            lu_c = c
            iters = _bdf_newton(t_new, y_pred, c, psi, LU, piv, margs, newton_tol, rtol, atol, y, d, work, stats)
        if iters == 0 and not fresh_jac:
            jac(t_new, y_pred, margs, J)  # Newton may have failed on a stale Jacobian: retry with a fresh one
            stats[STAT_JAC] += 1
            fresh_jac = True
            lu_c = 0.0
            continue
        if iters <= 0:
            nan_rejects = nan_rejects + 1 if iters < 0 else 0
            stats[STAT_REJECTED] += 1
            factor = 0.25 if iters < 0 else 0.5
            _bdf_rescale(D, order, factor, scratch)
            h *= factor
            n_equal = 0
            continue
        nan_rejects = 0
        # scipy's safety: fewer Newton iterations, bolder steps
        step_safety = safety * (2 * BDF_NEWTON_MAXITER + 1) / (2 * BDF_NEWTON_MAXITER + iters)
        for i in range(n):
            work[i] = error_const[order] * d[i]
        err_norm = _rms_norm(work, y, y, rtol, atol)
        if err_norm > 1.0:
            stats[STAT_REJECTED] += 1
            factor = max(facmin, step_safety * err_norm ** (-1.0 / (order + 1)))
            _bdf_rescale(D, order, factor, scratch)
            h *= factor
            n_equal = 0
            continue
        stats[STAT_ACCEPTED] += 1
        n_equal += 1
        fresh_jac = False
        for i in range(n):  # D^{j+1} y_new = D^j y_new - D^j y_old, with D[order+1] = d
            D[order + 2, i] = d[i] - D[order + 1, i]
            D[order + 1, i] = d[i]
        for k in range(order, -1, -1):
            for i in range(n):
                D[k, i] += D[k + 1, i]
        idx = _bdf_outputs(t_eval, idx, t_new, h, order, D, out)
        t = t_new
        if n_equal < order + 1:
            continue
        order, best = _bdf_select_order(order, D, d, error_const, y, rtol, atol, work)
        factor = min(facmax, step_safety * best, h_max / h)
        _bdf_rescale(D, order, factor, scratch)
        h *= factor
        n_equal = 0
    return STATUS_OK, t
