"""The fit's loss and its gradient over a whole dataset in one compiled call.

Plain Python functions that ``odedsl.backends.numba_module`` copies into each
model's generated module (next to its ``rhs``, ``vjp``, ``observe``, ``noise``
and their Jacobians) and compiles with Numba; ``numba_objective.py`` packs the
dataset once and calls ``_fit_loss_grad`` once per optimiser iteration. Per
experiment: the initial values, a taped forward solve (explicit.py), the loss
of every observed value and its cotangent, and the discrete adjoint
(adjoint_rk.py); then the noise scales' share. Nothing returns to Python in
between.

The loss is loss.py's (that module's docstring defines it): per observed value
``r² + 2 log σ`` (the log term only where the column has a noise model), with
``r = (m - d) / (σ s)`` or, on a lognormal column, ``(log m - log d) / σ``;
``s`` the column's spread (1 with a noise model). The two are held equal by
tests/test_numba_fit.py.
"""

# ``init``, ``observe``, ``noise``, their Jacobians and the solver kernels are defined by the generated module.
# ruff: noqa: F821

import math

import numpy as np

KIND_NONE, KIND_NORMAL, KIND_LOGNORMAL = 0, 1, 2


def _fit_loss_grad(p, w, tab, ctrl, data, room, gp, gw):
    """The loss summed over every observed value, with its gradient in ``p`` (into ``gp``) and the weights
    (added to ``gw``); returns ``(sum, status, experiment, t_reached)``, status 0 when every solve succeeded.

    ``tab``: the method's tableau arrays; ``ctrl``: its controller settings and the tape's
    ``every`` (adjoint_rk.py); ``data``: the experiments concatenated (``numba_objective.pack``);
    ``room`` (1,): the tape rows tried first, raised to the largest step count seen.
    """
    a, b, c, e, e3, dense, xa, xc = tab
    fixed, fsal, expo1, beta, safety, facmin, facmax, order, rtol, atol, dt, max_steps, every = ctrl
    times, t_off, observed, given, y0v, ut, uv, u_off, cols, kinds, spread = data
    n = N_STATES
    n_p = p.size
    n_obs = N_OBSERVABLES
    n_col = cols.size
    width = 3 if every > 0 else 3 + (b.size + 1) * n
    rows = max(n_obs, 1)
    sigma_all = np.ones(rows)
    dsigma = np.zeros((rows, n_p))
    if n_obs:
        noise(p, sigma_all)
        noise_jac(p, dsigma)
    sigma = np.ones(n_col)
    for k in range(n_col):
        if n_obs:
            sigma[k] = sigma_all[cols[k]]
    g_sigma = np.zeros(n_col)
    J0 = np.empty((n, n_p))
    init_jac(p, J0)
    obs = np.empty(rows)
    J = np.empty((rows, n))
    Jp = np.empty((rows, n_p))
    y0 = np.empty(n)
    gy0 = np.empty(n)
    gpk = np.empty(n_p)
    stats = np.zeros(N_STATS, dtype=np.int64)
    gp[:] = 0.0
    total = 0.0
    for ex in range(t_off.size - 1):
        first = t_off[ex]
        t = times[first:t_off[ex + 1]].copy()
        T = t.size
        margs = (p, w, ut[u_off[ex]:u_off[ex + 1]].copy(), uv[u_off[ex]:u_off[ex + 1]].copy())
        init(p, y0)
        for i in range(n):
            if given[ex, i]:
                y0[i] = y0v[ex, i]
        out = np.empty((T, n))
        while True:
            tape = np.empty((room[0], width))
            stats[:] = 0
            if fixed:
                status, t_reached = _rk_fixed(t, y0, margs, a, b, c, dt, max_steps, out, stats, tape)
            else:
                status, t_reached = _rk_adaptive(t, y0, margs, a, b, c, e, e3, dense, xa, xc, fsal, expo1, beta,
                                                 safety, facmin, facmax, order, rtol, atol, 0.0, np.inf, max_steps,
                                                 out, stats, tape)
            if status != STATUS_OK:
                return total, status, ex, t_reached
            if stats[STAT_ACCEPTED] <= room[0]:
                break
            room[0] = stats[STAT_ACCEPTED]  # more steps than room: again, with room for all
        g_out = np.zeros((T, n))
        for i in range(T):
            if n_obs:
                observe(t[i], out[i], margs, obs)
                observe_jac(t[i], out[i], margs, J)
                observe_jac_p(t[i], out[i], margs, Jp)
            for k in range(n_col):
                d = observed[first + i, k]
                if not math.isfinite(d):
                    continue  # a missing value
                j = cols[k]
                m = obs[j] if n_obs else out[i, j]
                scale = sigma[k] * spread[k]
                if kinds[k] == KIND_LOGNORMAL:
                    r = (math.log(m) - math.log(d)) / scale
                    dm = 2.0 * r / (scale * m)
                else:
                    r = (m - d) / scale
                    dm = 2.0 * r / scale
                total += r * r
                g_sigma[k] -= 2.0 * r * r / sigma[k]
                if kinds[k] != KIND_NONE:
                    total += 2.0 * math.log(sigma[k])
                    g_sigma[k] += 2.0 / sigma[k]
                if n_obs:
                    for q in range(n):
                        g_out[i, q] += dm * J[j, q]
                    for q in range(n_p):
                        gp[q] += dm * Jp[j, q]
                else:
                    g_out[i, j] += dm
        _rk_adjoint(t, y0, margs, a, b, c, dense, fsal, tape, stats[STAT_ACCEPTED], every, g_out, gy0, gpk, gw)
        for q in range(n_p):
            acc = gpk[q]
            for i in range(n):
                if not given[ex, i]:  # the file's initial value, a function of the parameters
                    acc += J0[i, q] * gy0[i]
            gp[q] += acc
    if n_obs:
        for k in range(n_col):
            for q in range(n_p):
                gp[q] += g_sigma[k] * dsigma[cols[k], q]
    return total, STATUS_OK, -1, 0.0
