"""The discrete adjoint of an explicit Runge–Kutta solve, compiled: the exact gradient of the computed
solution with respect to the initial values, the parameters and the net weights.

Plain Python functions that ``odedsl.backends.numba_module`` copies into each
model's generated module, next to its ``rhs`` and ``vjp``. The forward solve
(``_rk_adaptive`` or ``_rk_fixed``) writes a *tape*, a row per accepted step
(``explicit._record``): ``(t, h, t_new)``, and, on a wide tape, the step's start
``y`` and its stages, so the backward pass needs no right-hand side evaluation
at all. On a narrow tape (memory bounded: three numbers a step) the backward
pass replays the steps from the initial values, keeping the state every
``every`` steps, then replays one stretch of ``every`` steps at a time with its
stages, newest first (``every <= 0``: one stretch).

For a step ``y' = y + h Σ b_i k_i``, ``k_i = f(t + c_i h, Y_i)``,
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


def _rk_adjoint(t_eval, y0, margs, a, b, c, dense, fsal, tape, n_steps, every, g_out, gy0, gp, gw):
    """Back-propagate ``g_out`` (T, n) through the ``n_steps`` taped steps of a solve from ``y0``:
    ``gy0`` and ``gp`` receive d(Σ g_out·out) / d(y0, params), and ``gw`` has d/d(weights) added."""
    n = y0.size
    s = b.size
    width = 3 + (s + 1) * n
    T = t_eval.size
    step_of = np.full(T, -1, dtype=np.int64)  # the step whose end or dense output gave each output
    theta = np.zeros(T)
    idx = 0
    while idx < T and n_steps > 0 and t_eval[idx] <= tape[0, 0]:
        idx += 1
    for k in range(n_steps):
        while idx < T and t_eval[idx] <= tape[k, 2]:
            step_of[idx] = k
            theta[idx] = -1.0 if t_eval[idx] == tape[k, 2] else (t_eval[idx] - tape[k, 0]) / tape[k, 1]
            idx += 1
    lam = np.zeros(n)  # cotangent of the state after the current step
    kap = np.zeros(n)  # cotangent of the next step's first stage
    work = np.empty((2 * s + 3, n))  # stage cotangents, stage inputs, and three vectors for _rk_back_step
    for i in range(gp.size):
        gp[i] = 0.0
    if tape.shape[1] == width:
        for k in range(n_steps - 1, -1, -1):
            _rk_back_step(k, tape[k], n_steps, margs, a, b, c, dense, fsal, g_out, step_of, theta, lam, kap, work,
                          gp, gw)
    elif n_steps > 0:
        seg = n_steps if every <= 0 else min(every, n_steps)
        n_seg = (n_steps + seg - 1) // seg
        starts = np.empty((n_seg, n))
        buf = np.empty((seg, width))
        f0 = np.empty(n)
        y = y0.copy()
        rhs(tape[0, 0], y, margs, f0)
        for k in range(seg * (n_seg - 1) + 1):  # the states where the stretches start
            if k % seg == 0:
                _copy(starts[k // seg], y)
            if k < seg * (n_seg - 1):
                _rk_replay_step(tape[k], y, margs, a, c, b, fsal, f0, buf[0])
        for q in range(n_seg - 1, -1, -1):
            first = q * seg
            last = min(n_steps, first + seg)
            _copy(y, starts[q])
            rhs(tape[first, 0], y, margs, f0)
            for k in range(first, last):
                _rk_replay_step(tape[k], y, margs, a, c, b, fsal, f0, buf[k - first])
            for k in range(last - 1, first - 1, -1):
                _rk_back_step(k, buf[k - first], n_steps, margs, a, b, c, dense, fsal, g_out, step_of, theta, lam,
                              kap, work, gp, gw)
    gy = work[2 * s]
    gpk = np.empty(gp.size)
    vjp(t_eval[0], y0, margs, kap, gy, gpk, gw)  # the first stage, f(t0, y0)
    _add(gp, gpk, 1.0)
    for i in range(n):
        gy0[i] = lam[i] + gy[i]
    for j in range(T):
        if step_of[j] < 0:  # outputs at the start are y0 itself
            _add(gy0, g_out[j], 1.0)


def _rk_replay_step(row, y, margs, a, c, b, fsal, f0, out_row):
    """Recompute the taped step ``row`` (t, h, ...) from ``y`` and ``f0 = f(t, y)``: its start and stages into
    ``out_row`` (the wide tape's layout), then ``y`` and ``f0`` advanced to the step's end, as the forward did."""
    n = y.size
    s = b.size
    t, h = row[0], row[1]
    for i in range(3):
        out_row[i] = row[i]
    for i in range(n):
        out_row[3 + i] = y[i]
        out_row[3 + n + i] = f0[i]
    ytmp = np.empty(n)
    for j in range(1, s):
        for i in range(n):
            acc = 0.0
            for m in range(j):
                acc += a[j, m] * out_row[3 + (m + 1) * n + i]
            ytmp[i] = y[i] + h * acc
        rhs(t + c[j] * h, ytmp, margs, out_row[3 + (j + 1) * n:3 + (j + 2) * n])
    if fsal:
        for i in range(n):
            y[i] = ytmp[i]
            f0[i] = out_row[3 + s * n + i]
    else:
        for i in range(n):
            acc = 0.0
            for m in range(s):
                acc += b[m] * out_row[3 + (m + 1) * n + i]
            y[i] += h * acc
        rhs(row[2], y, margs, f0)


def _rk_back_step(k, row, n_steps, margs, a, b, c, dense, fsal, g_out, step_of, theta, lam, kap, work, gp, gw):
    """One step of the reverse sweep (see the module docstring): ``lam`` from the step's end to its start,
    ``kap`` to this step's first stage, ``gp``/``gw`` accumulated; ``row`` is the step's wide-tape row."""
    n = lam.size
    s = b.size
    deg = dense.shape[1]
    t, h, t_new = row[0], row[1], row[2]
    kbar = work[:s]
    Y = work[s:2 * s]  # stage inputs; Y[0] is the step's start
    gy = work[2 * s]
    lam_y = work[2 * s + 1]
    lam_new = work[2 * s + 2]
    gpk = np.empty(gp.size)
    for i in range(n):
        Y[0, i] = row[3 + i]
    for j in range(1, s):  # the stage inputs, summed in the forward's order
        for i in range(n):
            acc = 0.0
            for m in range(j):
                acc += a[j, m] * row[3 + (m + 1) * n + i]
            Y[j, i] = Y[0, i] + h * acc
    for j in range(s):
        for i in range(n):
            kbar[j, i] = 0.0
    if fsal:
        _copy(kbar[s - 1], kap)
    elif k + 1 < n_steps:  # the next step's first stage was f(t_new, y')
        for i in range(n):
            acc = 0.0
            for m in range(s):
                acc += b[m] * row[3 + (m + 1) * n + i]
            gy[i] = Y[0, i] + h * acc
        _copy(lam_y, gy)
        vjp(t_new, lam_y, margs, kap, gy, gpk, gw)
        _add(gp, gpk, 1.0)
        _add(lam, gy, 1.0)
    for i in range(n):
        lam_y[i] = 0.0
        lam_new[i] = lam[i]
    for j in range(step_of.size):
        if step_of[j] != k:
            continue
        if theta[j] < 0.0:  # an output at the step's end: y' itself
            _add(lam_new, g_out[j], 1.0)
            continue
        _add(lam_y, g_out[j], 1.0)
        for m in range(s):
            wm = 0.0
            for d in range(deg - 1, -1, -1):
                wm = (wm + dense[m, d]) * theta[j]
            for i in range(n):
                kbar[m, i] += h * wm * g_out[j, i]
    if not fsal:
        _add(lam_y, lam_new, 1.0)
        for m in range(s):
            for i in range(n):
                kbar[m, i] += h * b[m] * lam_new[i]
    for j in range(s - 1, 0, -1):
        vjp(t + c[j] * h, Y[j], margs, kbar[j], gy, gpk, gw)
        _add(gp, gpk, 1.0)
        if fsal and j == s - 1:
            _add(gy, lam_new, 1.0)  # y' is the last stage's input
        _add(lam_y, gy, 1.0)
        for m in range(j):
            for i in range(n):
                kbar[m, i] += h * a[j, m] * gy[i]
    _copy(kap, kbar[0])
    _copy(lam, lam_y)


def _add(x, y, f):
    """x += f y, as a loop: Numba compiles an array expression per statement, slowly."""
    for i in range(x.size):
        x[i] += f * y[i]


def _copy(x, y):
    for i in range(x.size):
        x[i] = y[i]
