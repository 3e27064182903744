"""Scalar helpers, input interpolation and MLP kernels used by generated model code.

These are plain Python functions: ``numba_module`` copies their source into each
model's generated module and compiles them there with ``numba.njit``, next to the
model's own functions, so Numba can inline everything and cache the module on
disk. Activation codes are ``odedsl.nets.ACTIVATION_CODES``.
"""

import math

import numpy as np

#: 2**k for k = 0..63, for ``_tanh``'s scaling (a table: no libm call, so loops of it vectorise).
POW2 = 2.0 ** np.arange(64)


def _tanh(x):
    """tanh within 3 ulp of libm's, branch-free so that LLVM vectorises a loop of it (2-3x faster than
    ``math.tanh``; it runs for every hidden unit of every net call). ``expm1(2|x|) / (expm1(2|x|) + 2)``,
    ``expm1`` by Cody–Waite reduction ``2|x| = k ln 2 + r`` (|r| <= ln2/2; fdlibm's split of ln 2) and the
    Taylor series of ``expm1(r)`` to r^13 (truncation < 1e-18 relative). |x| >= 19.5 gives ±1, as in double
    precision; NaN stays NaN."""
    ax = abs(x)
    u = 2.0 * (ax if ax < 19.5 else 19.5)
    k = math.floor(u * 1.44269504088896338700 + 0.5)
    r = (u - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    scale = POW2[int(k)]
    em = scale * (r + r * r * p) + (scale - 1.0)  # expm1(2|x|)
    t = math.copysign(em / (em + 2.0), x)
    return t if x == x else x


def _sigmoid(x):
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _relu(x):
    return x if x > 0.0 else 0.0


def _heaviside(x, at_zero):
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return 0.0
    return at_zero


def _sign(x):
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    return 0.0


def _act(code, z):
    if code == 1:
        return _tanh(z)
    if code == 2:
        return z if z > 0.0 else 0.0
    if code == 3:
        return _softplus(z)
    if code == 4:
        return _sigmoid(z)
    if code == 5:
        return 0.5 * z * (1.0 + math.erf(z / math.sqrt(2.0)))
    if code == 6:
        return z if z > 0.0 else math.expm1(z)
    if code == 7:
        return z * _sigmoid(z)
    return z


def _act_deriv(code, z):
    if code == 1:
        th = _tanh(z)
        return 1.0 - th * th
    if code == 2:
        return 1.0 if z > 0.0 else 0.0
    if code == 3:
        return _sigmoid(z)
    if code == 4:
        s = _sigmoid(z)
        return s * (1.0 - s)
    if code == 5:
        return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))) + z * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    if code == 6:
        return 1.0 if z > 0.0 else math.exp(z)
    if code == 7:
        s = _sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    return 1.0


def _act_deriv_at(code, z, a):
    """d act / dz at ``z`` where ``a = act(z)`` is known: tanh and sigmoid need no new exponential."""
    if code == 1:
        return 1.0 - a * a
    if code == 4:
        return a * (1.0 - a)
    return _act_deriv(code, z)


def _affine(w, pos, fi, fo, h, z):
    """z[:fo] = W h[:fi] + b for the layer whose weights start at w[pos] (W row-major, fo x fi, then b)."""
    for r in range(fo):
        s = w[pos + fo * fi + r]
        row = w[pos + r * fi:pos + r * fi + fi]
        for c in range(fi):
            s += row[c] * h[c]
        z[r] = s


def _mlp_forward(w, off, sizes, act, x, out):
    """out = net(x) for the net whose weights start at w[off] (layout: odedsl.nets)."""
    width = 0
    for k in range(sizes.size):
        width = max(width, sizes[k])
    h = np.empty(width)
    g = np.empty(width)
    for i in range(sizes[0]):
        h[i] = x[i]
    pos = off
    n_layers = sizes.size - 1
    for layer in range(n_layers):
        fi = sizes[layer]
        fo = sizes[layer + 1]
        last = layer == n_layers - 1
        _affine(w, pos, fi, fo, h, g)
        if not last:  # its own loop: vectorised
            for r in range(fo):
                g[r] = _act(act, g[r])
        pos += fo * fi + fo
        h, g = g, h
    for i in range(sizes[n_layers]):
        out[i] = h[i]


def _mlp_jacobian(w, off, sizes, act, x, out, jac):
    """out = net(x) and jac = d net / d x (n_out x n_in), by forward-mode propagation."""
    width = 0
    for k in range(sizes.size):
        width = max(width, sizes[k])
    n_in = sizes[0]
    h = np.empty(width)
    g = np.empty(width)
    jh = np.zeros((width, n_in))
    jg = np.empty((width, n_in))
    for i in range(n_in):
        h[i] = x[i]
        jh[i, i] = 1.0
    pos = off
    n_layers = sizes.size - 1
    for layer in range(n_layers):
        fi = sizes[layer]
        fo = sizes[layer + 1]
        last = layer == n_layers - 1
        for r in range(fo):
            s = w[pos + fo * fi + r]
            base = pos + r * fi
            for c in range(fi):
                s += w[base + c] * h[c]
            d = 1.0 if last else _act_deriv(act, s)
            g[r] = s if last else _act(act, s)
            for j in range(n_in):
                acc = 0.0
                for c in range(fi):
                    acc += w[base + c] * jh[c, j]
                jg[r, j] = d * acc
        pos += fo * fi + fo
        h, g = g, h
        jh, jg = jg, jh
    n_out = sizes[n_layers]
    for i in range(n_out):
        out[i] = h[i]
        for j in range(n_in):
            jac[i, j] = jh[i, j]


def _mlp_vjp(w, off, sizes, act, x, g_out, g_in, g_w):
    """g_in = (d net / d x)^T g_out, and g_w[off:] += (d net / d weights)^T g_out (layout: odedsl.nets).

    The forward pass keeps every layer's input and pre-activation; the backward pass
    goes through the layers in reverse: bias += g, weight += g h^T, g <- (W^T g) * act'(z).
    Each of those is its own loop over contiguous slices, which LLVM vectorises.
    """
    n_layers = sizes.size - 1
    offsets = np.zeros(2 * n_layers + 2, dtype=np.int64)  # two allocations per call, not six: it runs per stage
    starts = offsets[:n_layers + 2]  # where layer l's input sits in ``hs``
    woff = offsets[n_layers + 2:]  # where layer l's weights start in ``w``
    for layer in range(n_layers + 1):
        starts[layer + 1] = starts[layer] + sizes[layer]
    total = starts[n_layers + 1]
    width = 0
    for k in range(sizes.size):
        width = max(width, sizes[k])
    work = np.empty(2 * total + 2 * width)
    hs = work[:total]  # every layer's input, then the output
    zs = work[total:2 * total]  # pre-activations, at their layer's output position
    g = work[2 * total:2 * total + width]
    gi = work[2 * total + width:]
    for i in range(sizes[0]):
        hs[i] = x[i]
    pos = off
    for layer in range(n_layers):
        fi = sizes[layer]
        fo = sizes[layer + 1]
        woff[layer] = pos
        last = layer == n_layers - 1
        h = hs[starts[layer]:starts[layer] + fi]
        z = zs[starts[layer + 1]:starts[layer + 1] + fo]
        a = hs[starts[layer + 1]:starts[layer + 1] + fo]
        _affine(w, pos, fi, fo, h, z)
        for r in range(fo):  # its own loop: vectorised
            a[r] = z[r] if last else _act(act, z[r])
        pos += fo * fi + fo
    for r in range(sizes[n_layers]):
        g[r] = g_out[r]
    for layer in range(n_layers - 1, -1, -1):
        fi = sizes[layer]
        fo = sizes[layer + 1]
        pos = woff[layer]
        h = hs[starts[layer]:starts[layer] + fi]
        for r in range(fo):
            g_w[pos + fo * fi + r] += g[r]
        for r in range(fo):
            gr = g[r]
            grow = g_w[pos + r * fi:pos + r * fi + fi]
            for c in range(fi):
                grow[c] += gr * h[c]
        for c in range(fi):
            gi[c] = 0.0
        for r in range(fo):
            gr = g[r]
            row = w[pos + r * fi:pos + r * fi + fi]
            for c in range(fi):
                gi[c] += row[c] * gr
        if layer > 0:
            for c in range(fi):
                g[c] = gi[c] * _act_deriv_at(act, zs[starts[layer] + c], h[c])
        else:
            for c in range(fi):
                g_in[c] = gi[c]


def _interp(t, ut, uv, k):
    """Input k at time t: linear between samples, constant beyond the ends."""
    n = ut.size
    if t <= ut[0]:
        return uv[0, k]
    if t >= ut[n - 1]:
        return uv[n - 1, k]
    i = np.searchsorted(ut, t, side="right") - 1
    theta = (t - ut[i]) / (ut[i + 1] - ut[i])
    return uv[i, k] + theta * (uv[i + 1, k] - uv[i, k])


def _interp_slope(t, ut, uv, k):
    """d input k / dt at time t (zero beyond the ends)."""
    n = ut.size
    if t < ut[0] or t >= ut[n - 1] or n < 2:
        return 0.0
    i = np.searchsorted(ut, t, side="right") - 1
    return (uv[i + 1, k] - uv[i, k]) / (ut[i + 1] - ut[i])


def _check_times(t):
    """-1 when ``t`` is finite and non-decreasing; -2 when not finite; else the first i with t[i+1] < t[i]."""
    for i in range(t.size):
        if not math.isfinite(t[i]):
            return -2
    for i in range(t.size - 1):
        if t[i + 1] < t[i]:
            return i
    return -1
