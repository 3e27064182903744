"""Automatic stiffness switching (method ``auto``): dopri5 while the problem is non-stiff, Rodas5P while it is stiff.

The switching loop is ``rosenbrock._rosenbrock`` given an explicit partner; this
module holds the partner's step and the rule, which is applied after every
accepted step:

* explicit → stiff: the stiffness detection of Hairer's ``dopri5`` (Hairer & Wanner,
  *Solving ODEs II*, IV.2, "automatic stiffness detection"). The last two stages
  are both evaluated at ``t + h``, so ``hλ ≈ h‖k_7 - k_6‖ / ‖g_7 - g_6‖`` estimates the
  dominant eigenvalue along the step. A step is a stiff verdict when ``hλ > 1.5``;
  15 stiff verdicts switch to Rodas5P, and 6 non-stiff verdicts in a row forget
  them (dopri5's ``IASTI``/``NONSTI``). Hairer's threshold is 3.25 (dopri5's
  stability interval on the negative real axis ends near -3.31), but at tight
  tolerances the step-size controller holds stability-limited steps well inside
  the interval, and the estimate sees less than the spectral radius: on ROBER
  the estimate settles at 2.4, 1.9 and 1.7 for rtol 1e-8, 1e-10, 1e-12, where 3.25
  would leave dopri5 crawling for thousands of steps. Accuracy-limited steps stay
  below 1.5 from rtol 1e-3 down (Lotka–Volterra, van der Pol with mu = 1, Kepler:
  90% of the steps below 1.55 at rtol 1e-3, all below 0.75 at 1e-6), and for small
  systems a false switch costs a small factor (a Rodas5P step is a few dopri5
  steps' worth), a missed one thousands of steps.
* stiff → explicit: ``ρ = ‖J‖∞``, which bounds the spectral radius of the Jacobian the
  Rosenbrock step has factored anyway. When ``h_next ρ ≤ 1.5``, dopri5 would run
  with the step Rodas5P proposes next well inside its stability interval and
  below the stiff threshold, so stiffness no longer limits the step; 15 such
  steps in a row switch back. The same bound on both sides gives hysteresis, since
  ``‖J‖∞`` over-estimates and ``hλ`` under-estimates ``ρ``: the loop does not switch
  back and forth on a problem at the border.

The number of switches is recorded in ``stats[STAT_SWITCHES]``. The explicit
partner must be FSAL with its two last stages at ``c = 1`` and a dense output
without extra stages (dopri5); ``methods.stiff_kernel_args("auto")`` passes it.
"""

import math

from odedsl.solvers.explicit import _dense_eval, _rk_stages, _rms_norm

#: Index in the stats array: how often ``auto`` switched between its methods.
STAT_SWITCHES = 5

#: Verdicts needed to switch (Hairer's dopri5 uses 15 to declare stiffness).
AUTO_VOTES = 15

#: Non-stiff verdicts in a row that forget the stiff ones (dopri5: 6).
AUTO_FORGET = 6


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
            _dense_eval(y, h, K, dense, (t_eval[idx] - t) / h, out, idx)
        idx += 1
    return idx


def _explicit_h_lambda(h, K, a):
    """dopri5's estimate of ``h|λ|`` from the last two stages (both at ``t + h``)."""
    s = a.shape[0]
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


def _pi_factor(err_norm, err_old, expo1, beta, safety, facmin, facmax):
    """The explicit methods' PI step-size factor after an accepted step (as in explicit.py)."""
    fac = facmax if err_norm == 0.0 else safety * err_norm ** (-expo1) * err_old ** beta
    return min(facmax, max(facmin, fac))


def _auto_verdict(stiff, votes, calm, h, h_next, K, a, J):
    """The module's switching rule after an accepted step: ``(stiff, votes, calm)`` for the next one."""
    threshold = 1.5  # on hλ: see the module docstring
    if stiff:
        calm = calm + 1 if h_next * _norm_inf(J) <= threshold else 0
        if calm >= AUTO_VOTES:
            return False, 0, 0
    elif _explicit_h_lambda(h, K, a) > threshold:
        votes += 1
        if votes >= AUTO_VOTES:
            return True, 0, 0
        calm = 0
    else:
        calm += 1
        if calm >= AUTO_FORGET:
            votes = 0
    return stiff, votes, calm
