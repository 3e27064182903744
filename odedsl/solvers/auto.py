"""Automatic stiffness switching: dopri5 while the problem is non-stiff, Rodas5P while it is stiff.

One compiled loop holds both methods and decides after every accepted step:

* explicit → stiff: the stiffness detection of Hairer's ``dopri5`` (Hairer & Wanner,
  *Solving ODEs II*, IV.2, "automatic stiffness detection"). The last two stages
  are both evaluated at ``t + h``, so ``hλ ≈ h‖k_7 - k_6‖ / ‖g_7 - g_6‖`` estimates the
  dominant eigenvalue along the step; ``hλ > 3.25`` (dopri5's stability interval on
  the negative real axis ends near -3.3) is a stiff verdict. 15 stiff verdicts
  switch to Rodas5P; 6 non-stiff verdicts in a row forget them (dopri5's
  ``IASTI``/``NONSTI``).
* stiff → explicit: ``ρ = ‖J‖∞``, which bounds the spectral radius of the Jacobian the
  Rosenbrock step has factored anyway. When ``h_next ρ ≤ 3.25`` dopri5 would be
  stable with the step Rodas5P proposes next, so stiffness no longer limits the
  step; 15 such steps in a row switch back. ``‖J‖∞`` over-estimates ``|λ|``, which
  errs towards staying stiff: for the small systems odedsl targets a Rosenbrock
  step costs little more than an explicit one, and this keeps the loop from
  switching back and forth.

The number of switches is recorded in ``stats[STAT_SWITCHES]``. The explicit method
must be FSAL with two last stages at ``c = 1`` and a dense output without extra
stages (dopri5); ``methods.stiff_kernel_args("auto")`` passes its arrays.
"""

# ``rhs``, ``jac`` and ``dfdt`` are defined by the generated module these functions are compiled into.
# ruff: noqa: F821

import math

import numpy as np

from odedsl.solvers.explicit import (STAT_ACCEPTED, STAT_JAC, STAT_REJECTED, STAT_RHS, STATUS_MAX_STEPS,
                                     STATUS_NOT_FINITE, STATUS_OK, STATUS_STEP_TOO_SMALL, _dense_eval, _initial_step,
                                     _rk_stages, _rms_norm)
from odedsl.solvers.rosenbrock import _gustafsson, _outputs_before, _ros_outputs, _ros_step

#: Index in the stats array: how often ``_auto`` switched between its methods.
STAT_SWITCHES = 5

#: Verdicts needed to switch (Hairer's dopri5 uses 15 to declare stiffness).
AUTO_VOTES = 15


def _rk_step(t, y, f0, h, margs, a, b, c, e, K, ytmp, ynew, err, rtol, atol, stats):
    """One explicit RK step of size ``h``: stages into ``K``, ``ynew``; returns the error norm (inf if not finite)."""
    n = y.size
    s = b.size
    for i in range(n):
        K[0, i] = f0[i]
    _rk_stages(t, y, h, margs, a, c, 1, s, K, ytmp, stats)
    for i in range(n):
        acc = 0.0
        ea = 0.0
        for j in range(s):
            acc += b[j] * K[j, i]
            ea += e[j] * K[j, i]
        ynew[i] = y[i] + h * acc
        err[i] = h * ea
        if not math.isfinite(ynew[i]):
            return math.inf
    return _rms_norm(err, y, ynew, rtol, atol)


def _rk_outputs(t_eval, idx, t, h, t_new, y, ynew, K, dense, out):
    """Fill the rows of ``out`` with times in ``(t, t_new]`` from the explicit step's dense output."""
    while idx < t_eval.size and t_eval[idx] <= t_new:
        if t_eval[idx] == t_new:
            for i in range(y.size):
                out[idx, i] = ynew[i]
        else:
            _dense_eval(y, h, K, dense, (t_eval[idx] - t) / h, out[idx])
        idx += 1
    return idx


def _explicit_h_lambda(h, K, a, s):
    """dopri5's estimate of ``h|λ|`` from the last two stages (both at ``t + h``)."""
    num = 0.0
    den = 0.0
    for i in range(K.shape[1]):
        num += (K[s - 1, i] - K[s - 2, i]) ** 2
        dg = 0.0
        for m in range(s - 1):
            dg += (a[s - 1, m] - a[s - 2, m]) * K[m, i]
        den += (h * dg) ** 2
    return h * math.sqrt(num / den) if den > 0.0 else 0.0


def _norm_inf(J):
    """``max_i Σ_j |J_ij|``: an upper bound of the spectral radius of ``J``."""
    best = 0.0
    for i in range(J.shape[0]):
        acc = 0.0
        for j in range(J.shape[1]):
            acc += abs(J[i, j])
        best = max(best, acc)
    return best


def _auto(t_eval, y0, margs, a, b, c, e, dense, order, expo1, beta, esafety, efacmin, efacmax,
          ra, rC, gamma, rc, rd, rm, re, rH, error_order, safety, facmin, facmax,
          rtol, atol, h_init, h_max, max_steps, out, stats):
    """Integrate with dopri5 (``a`` .. ``efacmax``) or Rodas5P (``ra`` .. ``facmax``), switching as the module says."""
    n = y0.size
    s = b.size
    y = y0.copy()
    ynew, f0, ft, u, err = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    J, W = np.empty((n, n)), np.empty((n, n))
    piv = np.empty(n, dtype=np.int64)
    K = np.empty((max(s, rm.size), n))
    q = np.empty((rH.shape[0], n))
    expo = 1.0 / (error_order + 1)
    t = t_eval[0]
    t_end = t_eval[t_eval.size - 1]
    idx = _outputs_before(t_eval, t, y, out)
    if idx >= t_eval.size:
        return STATUS_OK, t
    rhs(t, y, margs, f0)
    stats[STAT_RHS] += 1
    h_max = min(h_max, t_end - t)
    h = min(h_init, h_max) if h_init > 0.0 else _initial_step(t, y, f0, margs, order, rtol, atol, h_max, stats)
    stiff = False
    votes = 0  # stiff verdicts while explicit
    calm = 0  # non-stiff verdicts in a row
    err_old = 1e-4  # the explicit PI controller's memory
    h_acc = 0.0  # the Rosenbrock controller's memory (0: none yet)
    err_acc = 0.0
    have_jac = False
    rejected = False
    nan_rejects = 0
    steps = 0
    while idx < t_eval.size:
        if steps >= max_steps:
            return STATUS_MAX_STEPS, t
        if h < 10.0 * 2.220446049250313e-16 * max(abs(t), 1.0):
            return (STATUS_NOT_FINITE if nan_rejects > 0 else STATUS_STEP_TOO_SMALL), t
        last = t + 1.01 * h >= t_end
        if last:
            h = t_end - t
        steps += 1
        if stiff:
            if not have_jac:
                jac(t, y, margs, J)
                dfdt(t, y, margs, ft)
                stats[STAT_JAC] += 1
                have_jac = True
            err_norm = _ros_step(t, y, f0, ft, J, h, margs, ra, rC, gamma, rc, rd, rm, re, W, piv, K, u, ynew, err,
                                 rtol, atol, stats)
        else:
            err_norm = _rk_step(t, y, f0, h, margs, a, b, c, e, K, u, ynew, err, rtol, atol, stats)
        if not math.isfinite(err_norm):
            nan_rejects += 1
            stats[STAT_REJECTED] += 1
            h *= 0.25
            rejected = True
            continue
        nan_rejects = 0
        if err_norm > 1.0:
            stats[STAT_REJECTED] += 1
            h *= max(facmin, safety * err_norm ** (-expo)) if stiff else max(efacmin, esafety * err_norm ** (-expo1))
            rejected = True
            continue
        stats[STAT_ACCEPTED] += 1
        t_new = t_end if last else t + h
        if stiff:
            idx = _ros_outputs(t_eval, idx, t, h, t_new, y, ynew, K, rH, q, out)
            fac = _gustafsson(err_norm, h, err_acc, h_acc, expo, safety, facmin, facmax)
            h_acc = h
            err_acc = max(err_norm, 1e-2)
        else:
            idx = _rk_outputs(t_eval, idx, t, h, t_new, y, ynew, K, dense, out)
            fac = efacmax if err_norm == 0.0 else esafety * err_norm ** (-expo1) * err_old ** beta
            fac = min(efacmax, max(efacmin, fac))
            err_old = max(err_norm, 1e-4)
        if rejected:
            fac = min(fac, 1.0)
        rejected = False
        h_next = min(h * fac, h_max)
        was_stiff = stiff
        if stiff:
            calm = calm + 1 if h_next * _norm_inf(J) <= 3.25 else 0
            if calm >= AUTO_VOTES:
                stiff = False
                calm = 0
                votes = 0
                err_old = 1e-4
                stats[STAT_SWITCHES] += 1
        elif _explicit_h_lambda(h, K, a, s) > 3.25:
            calm = 0
            votes += 1
            if votes >= AUTO_VOTES:
                stiff = True
                votes = 0
                h_acc = 0.0
                stats[STAT_SWITCHES] += 1
        else:
            calm += 1
            if calm >= 6:
                votes = 0
        have_jac = False
        t = t_new
        for i in range(n):
            y[i] = ynew[i]
        if idx < t_eval.size:
            if was_stiff:
                rhs(t, y, margs, f0)
                stats[STAT_RHS] += 1
            else:  # first same as last: the explicit step's last stage is f(t_new, y_new)
                for i in range(n):
                    f0[i] = K[s - 1, i]
        h = h_next
    return STATUS_OK, t
