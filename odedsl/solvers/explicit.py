"""Explicit Runge–Kutta integration, one loop for every tableau (odedsl.solvers.tableaux).

These are plain Python functions that ``odedsl.backends.numba_module`` copies into
each model's generated module and compiles with Numba, where ``rhs`` is the
model's right-hand side. The whole integration runs compiled: no Python per step.

Adaptive stepping follows Hairer, Nørsett & Wanner, *Solving ODEs I* (2nd ed.),
II.4: RMS error norm scaled by ``atol + rtol*max(|y|, |y_new|)``, the initial step
of their ``hinit``, and the PI step-size controller of their ``dopri5``
(``fac = err^-expo1 * err_old^beta``). Output times never shorten a step: values
there come from the tableau's dense output.

Status codes returned: 0 success, 1 too many steps, 2 step size too small,
3 non-finite values (NaN or inf) in the solution.
"""

# ``rhs`` is defined by the generated module these functions are compiled into.
# ruff: noqa: F821

import math

import numpy as np

STATUS_OK, STATUS_MAX_STEPS, STATUS_STEP_TOO_SMALL, STATUS_NOT_FINITE = 0, 1, 2, 3
STAT_RHS, STAT_JAC, STAT_ACCEPTED, STAT_REJECTED, STAT_LU = 0, 1, 2, 3, 4


def _outputs_before(t_eval, t, y, out):
    """Copy ``y`` into the rows of ``out`` whose times are not after ``t``; the index of the first later one."""
    idx = 0
    while idx < t_eval.size and t_eval[idx] <= t:
        for i in range(y.size):
            out[idx, i] = y[i]
        idx += 1
    return idx


def _all_finite(v):
    """No NaN or inf in ``v``."""
    for i in range(v.size):
        if not math.isfinite(v[i]):
            return False
    return True


def _step_guard(steps, max_steps, h, t, nan_rejects):
    """The status that must end the loop before the next step, or -1 to go on."""
    if steps >= max_steps:
        return STATUS_MAX_STEPS
    if not h >= 10.0 * 2.220446049250313e-16 * max(abs(t), 1.0):  # also catches a NaN step
        return STATUS_NOT_FINITE if nan_rejects > 0 else STATUS_STEP_TOO_SMALL
    return -1


def _rms_norm(err, y, ynew, rtol, atol):
    acc = 0.0
    for i in range(err.size):
        sc = atol + rtol * max(abs(y[i]), abs(ynew[i]))
        v = err[i] / sc
        acc += v * v
    return math.sqrt(acc / max(err.size, 1))


def _initial_step(t, y, f0, margs, order, rtol, atol, h_max, stats):
    """Hairer's ``hinit``: a first step whose local error is about the tolerance."""
    n = y.size
    d0 = 0.0
    d1 = 0.0
    for i in range(n):
        sc = atol + rtol * abs(y[i])
        d0 += (y[i] / sc) ** 2
        d1 += (f0[i] / sc) ** 2
    d0 = math.sqrt(d0 / max(n, 1))
    d1 = math.sqrt(d1 / max(n, 1))
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, h_max)
    y1 = np.empty(n)
    for i in range(n):
        y1[i] = y[i] + h0 * f0[i]
    f1 = np.empty(n)
    rhs(t + h0, y1, margs, f1)
    stats[STAT_RHS] += 1
    d2 = 0.0
    for i in range(n):
        sc = atol + rtol * abs(y[i])
        d2 += ((f1[i] - f0[i]) / sc) ** 2
    d2 = math.sqrt(d2 / max(n, 1)) / h0
    dm = max(d1, d2)
    if not math.isfinite(dm):
        return h0
    h1 = max(1e-6, h0 * 1e-3) if dm <= 1e-15 else (0.01 / dm) ** (1.0 / (order + 1))
    return min(100.0 * h0, h1, h_max)


def _start(t_eval, y, margs, f0, order, rtol, atol, h_init, h_max, out, stats):
    """The opening every adaptive loop shares: outputs at t0, f0 = f(t0, y0), the first step size.

    Returns ``(status, idx, h, h_max)``; ``status`` is -1 when the loop should run,
    else the status to return at once.
    """
    t = t_eval[0]
    idx = _outputs_before(t_eval, t, y, out)
    if idx >= t_eval.size:
        return STATUS_OK, idx, 0.0, h_max
    rhs(t, y, margs, f0)
    stats[STAT_RHS] += 1
    if not _all_finite(f0):
        return STATUS_NOT_FINITE, idx, 0.0, h_max
    h_max = min(h_max, t_eval[t_eval.size - 1] - t)
    h = min(h_init, h_max) if h_init > 0.0 else _initial_step(t, y, f0, margs, order, rtol, atol, h_max, stats)
    return -1, idx, h, h_max


def _rk_stages(t, y, h, margs, a, c, first, last, K, ytmp, stats):
    """Stages ``first .. last-1`` into K; row j of ``a`` weighs the earlier stages."""
    n = y.size
    for j in range(first, last):
        for i in range(n):
            acc = 0.0
            for m in range(j):
                acc += a[j, m] * K[m, i]
            ytmp[i] = y[i] + h * acc
        rhs(t + c[j] * h, ytmp, margs, K[j])
        stats[STAT_RHS] += 1


def _record(tape, row, t, h, t_new, y, K, s):
    """Row ``row`` of a discrete-adjoint tape (adjoint_rk.py): the step's ``(t, h, t_new)``, then, when the
    tape is ``3 + (s+1) n`` wide, its start ``y`` and its ``s`` stages. Rows past the tape's end are dropped
    (the caller sees the accepted-step count and tries again with room)."""
    if row >= tape.shape[0]:
        return
    tape[row, 0] = t
    tape[row, 1] = h
    tape[row, 2] = t_new
    if tape.shape[1] == 3:
        return
    n = y.size
    for i in range(n):
        tape[row, 3 + i] = y[i]
    for j in range(s):
        for i in range(n):
            tape[row, 3 + (j + 1) * n + i] = K[j, i]


def _dense_eval(y, h, K, dense, theta, out, row):
    """out[row] = y(t + theta*h) from the step's stages and the dense-output polynomials."""
    n = y.size
    deg = dense.shape[1]
    for i in range(n):
        out[row, i] = y[i]
    for j in range(dense.shape[0]):
        w = 0.0
        for m in range(deg - 1, -1, -1):  # Horner: sum_m dense[j, m] theta^(m+1)
            w = (w + dense[j, m]) * theta
        if w != 0.0:
            hw = h * w
            for i in range(n):
                out[row, i] += hw * K[j, i]


def _rk_fixed(t_eval, y0, margs, a, b, c, dt, max_steps, out, stats, tape):
    """Fixed steps between consecutive output times: ``ceil(gap/dt)`` equal steps per gap (``tape``: ``_record``)."""
    n = y0.size
    s = b.size
    K = np.empty((s, n))
    y = y0.copy()
    ytmp = np.empty(n)
    for i in range(n):
        out[0, i] = y[i]
    steps = 0
    for k in range(1, t_eval.size):
        t0 = t_eval[k - 1]
        gap = t_eval[k] - t0
        m = 1 if dt <= 0.0 else max(1, int(math.ceil(gap / dt - 1e-9)))
        h = gap / m
        for step in range(m):
            t = t0 + step * h
            if steps >= max_steps:
                return STATUS_MAX_STEPS, t
            rhs(t, y, margs, K[0])
            stats[STAT_RHS] += 1
            _rk_stages(t, y, h, margs, a, c, 1, s, K, ytmp, stats)
            _record(tape, steps, t, h, t_eval[k] if step == m - 1 else t0 + (step + 1) * h, y, K, s)
            for i in range(n):
                acc = 0.0
                for j in range(s):
                    acc += b[j] * K[j, i]
                y[i] += h * acc
                if not math.isfinite(y[i]):
                    return STATUS_NOT_FINITE, t
            steps += 1
            stats[STAT_ACCEPTED] += 1
        for i in range(n):
            out[k, i] = y[i]
    return STATUS_OK, t_eval[t_eval.size - 1]


def _rk_adaptive(t_eval, y0, margs, a, b, c, e, e3, dense, xa, xc, fsal, expo1, beta, safety, facmin, facmax,
                 order, rtol, atol, h_init, h_max, max_steps, out, stats, tape):
    """Adaptive embedded RK with PI control and dense output at ``t_eval``.

    ``xa``/``xc`` are the extra stages some tableaux need for dense output only
    (computed once per step, and only when an output time falls in the step).
    ``e3`` is dop853's second error estimator (empty for other methods).
    ``tape`` receives the first accepted steps for the discrete adjoint (``_record``);
    pass an empty one otherwise.
    """
    n = y0.size
    s = b.size
    sd = dense.shape[0]
    K = np.empty((max(sd, s), n))
    y = y0.copy()
    ynew = np.empty(n)
    ytmp = np.empty(n)
    err = np.empty(n)
    err3 = np.empty(n)
    use_e3 = e3.size == s
    t = t_eval[0]
    t_end = t_eval[t_eval.size - 1]
    status, idx, h, h_max = _start(t_eval, y, margs, K[0], order, rtol, atol, h_init, h_max, out, stats)
    if status >= 0:
        return status, t
    err_old = 1e-4
    rejected = False
    nan_rejects = 0
    steps = 0
    while idx < t_eval.size:
        status = _step_guard(steps, max_steps, h, t, nan_rejects)
        if status >= 0:
            return status, t
        last = t + 1.01 * h >= t_end
        if last:
            h = t_end - t
        _rk_stages(t, y, h, margs, a, c, 1, s, K, ytmp, stats)
        steps += 1
        if fsal:  # the last stage was evaluated at y_new itself (its row of ``a`` is ``b``)
            for i in range(n):
                ynew[i] = ytmp[i]
        else:
            for i in range(n):
                acc = 0.0
                for j in range(s):
                    acc += b[j] * K[j, i]
                ynew[i] = y[i] + h * acc
        finite = _all_finite(ynew)
        for i in range(n):
            ea = 0.0
            for j in range(s):
                ea += e[j] * K[j, i]
            err[i] = h * ea
        if use_e3:
            for i in range(n):
                ea = 0.0
                for j in range(s):
                    ea += e3[j] * K[j, i]
                err3[i] = h * ea
        err_norm = math.inf
        if finite and use_e3:
            e5 = 0.0
            e3s = 0.0
            for i in range(n):
                sc = atol + rtol * max(abs(y[i]), abs(ynew[i]))
                e5 += (err[i] / sc) ** 2
                e3s += (err3[i] / sc) ** 2
            den = e5 + 0.01 * e3s
            err_norm = 0.0 if den <= 0.0 else e5 / math.sqrt(den * n)
        elif finite:
            err_norm = _rms_norm(err, y, ynew, rtol, atol)
        if not math.isfinite(err_norm):
            nan_rejects += 1
            stats[STAT_REJECTED] += 1
            h *= 0.25
            rejected = True
            continue
        nan_rejects = 0
        if err_norm > 1.0:
            stats[STAT_REJECTED] += 1
            h *= max(facmin, safety * err_norm ** (-expo1))
            rejected = True
            continue
        stats[STAT_ACCEPTED] += 1
        t_new = t_end if last else t + h
        _record(tape, stats[STAT_ACCEPTED] - 1, t, h, t_new, y, K, s)
        if t_eval[idx] <= t_new:
            for j in range(s, sd):
                for i in range(n):
                    acc = 0.0
                    for m in range(j):
                        acc += xa[j - s, m] * K[m, i]
                    ytmp[i] = y[i] + h * acc
                rhs(t + xc[j - s] * h, ytmp, margs, K[j])
                stats[STAT_RHS] += 1
            while idx < t_eval.size and t_eval[idx] <= t_new:
                if t_eval[idx] == t_new:
                    for i in range(n):
                        out[idx, i] = ynew[i]
                else:
                    _dense_eval(y, h, K, dense, (t_eval[idx] - t) / h, out, idx)
                idx += 1
        fac = facmax if err_norm == 0.0 else safety * err_norm ** (-expo1) * err_old ** beta
        fac = min(facmax, max(facmin, fac))
        if rejected:
            fac = min(fac, 1.0)
        err_old = max(err_norm, 1e-4)
        rejected = False
        t = t_new
        for i in range(n):
            y[i] = ynew[i]
        if fsal:
            for i in range(n):
                K[0, i] = K[s - 1, i]
        else:
            rhs(t, y, margs, K[0])
            stats[STAT_RHS] += 1
        h = min(h * fac, h_max)
    return STATUS_OK, t
