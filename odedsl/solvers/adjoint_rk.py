"""The discrete adjoint of an explicit Runge–Kutta solve, compiled: the exact gradient of the computed
solution with respect to the initial values, the parameters and the net weights.

Plain Python functions that ``odedsl.backends.numba_module`` copies into each
model's generated module, next to its ``rhs`` and ``vjp``. The forward solve
(``_rk_adaptive`` with a tape, or fixed steps) records each accepted step's
``(t, h, t_new)``; ``_rk_adjoint`` replays those steps keeping every stage, then
goes back through them. For a step ``y' = y + h Σ b_i k_i``, ``k_i = f(t + c_i h, Y_i)``,
``Y_i = y + h Σ_{j<i} a_ij k_j``, and the outputs ``y + h Σ_i w_i(θ) k_i`` of its
dense output, with ``λ`` the cotangent of ``y'`` and ``ḡ`` an output's:

    k̄_i = h b_i λ + h w_i(θ) ḡ,     Ȳ_i = (∂f/∂y)ᵀ k̄_i   (p̄, w̄ += (∂f/∂p, ∂f/∂w)ᵀ k̄_i)
    λ ← λ + Σ_i Ȳ_i,  k̄_j += h a_ij Ȳ_i  (j < i), for i from the last stage down,

each product one call of the generated ``vjp``. FSAL methods hand a step's first
stage back to the previous step's last. Methods whose dense output needs extra
stages (dop853) are not supported here.
"""

# ``rhs`` and ``vjp`` are defined by the generated module these functions are compiled into.
# ruff: noqa: F821

import numpy as np


def _rk_adjoint(t_eval, y0, margs, a, b, c, dense, fsal, tape, n_steps, g_out, out, gy0, gp, gw):
    """Replay ``n_steps`` taped steps from ``y0`` (outputs into ``out``), then back-propagate ``g_out``
    (T, n): ``gy0``, ``gp`` and ``gw`` receive d(Σ g_out·out) / d(y0, params, weights) (``gw`` is added to)."""
    n = y0.size
    s = b.size
    T = t_eval.size
    deg = dense.shape[1]
    Ys = np.empty((n_steps + 1, s, n))
    Ks = np.empty((n_steps + 1, s, n))
    step_of = np.full(T, -1, dtype=np.int64)  # the step whose dense output wrote each output
    theta = np.zeros(T)
    exact = np.zeros(T, dtype=np.bool_)
    y = y0.copy()
    t = t_eval[0]
    k0 = np.empty(n)
    rhs(t, y, margs, k0)
    idx = 0
    while idx < T and t_eval[idx] <= t:
        out[idx] = y
        idx += 1
    for k in range(n_steps):
        t, h, t_new = tape[k, 0], tape[k, 1], tape[k, 2]
        Ys[k, 0] = y
        Ks[k, 0] = k0
        for j in range(1, s):
            for i in range(n):
                acc = 0.0
                for m in range(j):
                    acc += a[j, m] * Ks[k, m, i]
                Ys[k, j, i] = y[i] + h * acc
            rhs(t + c[j] * h, Ys[k, j], margs, Ks[k, j])
        if fsal:
            ynew = Ys[k, s - 1].copy()
        else:
            ynew = y.copy()
            for i in range(n):
                acc = 0.0
                for m in range(s):
                    acc += b[m] * Ks[k, m, i]
                ynew[i] += h * acc
        while idx < T and t_eval[idx] <= t_new:
            step_of[idx] = k
            exact[idx] = t_eval[idx] == t_new
            theta[idx] = (t_eval[idx] - t) / h
            if exact[idx]:
                out[idx] = ynew
            else:
                for i in range(n):
                    acc = 0.0
                    for m in range(s):
                        wm = 0.0
                        for d in range(deg - 1, -1, -1):
                            wm = (wm + dense[m, d]) * theta[idx]
                        acc += wm * Ks[k, m, i]
                    out[idx, i] = y[i] + h * acc
            idx += 1
        y = ynew
        if fsal:
            k0 = Ks[k, s - 1].copy()
        else:
            rhs(t_new, y, margs, k0)
    # back through the steps
    lam = np.zeros(n)
    kap = np.zeros(n)  # cotangent of the next step's first stage
    kbar = np.empty((s, n))
    gy = np.empty(n)
    gpk = np.empty(gp.size)
    gp[:] = 0.0
    for k in range(n_steps - 1, -1, -1):
        t, h, t_new = tape[k, 0], tape[k, 1], tape[k, 2]
        kbar[:, :] = 0.0
        if fsal:
            for i in range(n):
                kbar[s - 1, i] = kap[i]
        else:  # the next first stage was f(t_new, y')
            ypost = Ys[k + 1, 0] if k + 1 < n_steps else y
            vjp(t_new, ypost, margs, kap, gy, gpk, gw)
            gp += gpk
            lam += gy
        lam_y = np.zeros(n)
        lam_new = lam.copy()
        for j in range(T):
            if step_of[j] != k:
                continue
            if exact[j]:
                lam_new += g_out[j]
                continue
            lam_y += g_out[j]
            for m in range(s):
                wm = 0.0
                for d in range(deg - 1, -1, -1):
                    wm = (wm + dense[m, d]) * theta[j]
                for i in range(n):
                    kbar[m, i] += h * wm * g_out[j, i]
        if not fsal:
            lam_y += lam_new
            for m in range(s):
                for i in range(n):
                    kbar[m, i] += h * b[m] * lam_new[i]
        for j in range(s - 1, 0, -1):
            vjp(t + c[j] * h, Ys[k, j], margs, kbar[j], gy, gpk, gw)
            gp += gpk
            if fsal and j == s - 1:
                gy += lam_new  # y' is the last stage's input
            lam_y += gy
            for m in range(j):
                for i in range(n):
                    kbar[m, i] += h * a[j, m] * gy[i]
        kap = kbar[0].copy()
        lam = lam_y
    vjp(t_eval[0], y0, margs, kap, gy, gpk, gw)  # the first stage, f(t0, y0)
    gp += gpk
    for i in range(n):
        gy0[i] = lam[i] + gy[i]
    for j in range(T):
        if step_of[j] < 0:  # outputs at the start are y0 itself
            gy0 += g_out[j]
