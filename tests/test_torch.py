"""The PyTorch backend (``model.to_torch()``): generated batched functions against the Numba
backend and autograd, the per-row RK solver, the three gradient modes against finite
differences and each other, bounds, per-row step control, memory, errors, dtypes and weights."""

from __future__ import annotations

import math
import re

import numba
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import MODELS, ROOT

import odedsl
from odedsl.backends.torch_nets import MLP
from odedsl.errors import NumericalError, UsageError
from odedsl.nets import ACTIVATION_CODES, init_weights
from odedsl.simulate import input_arrays
from odedsl.solvers.torch_rk import Options, integrate

EXAMPLES = sorted(MODELS.glob("*.ode")) + sorted((ROOT / "tests" / "models").glob("*.ode"))
F64 = torch.float64

# Small models written inline for what the examples do not cover.
IF_MODEL = """
param k = 0.7 in [0, 5]
param c = 0.3 in [-2, 2]
state x = 0.5
state y = -0.2
nn U: 2 -> 2, hidden = [5], activation = tanh
der(x) = if x > 0 then k*sqrt(x) + U(x, y)[0] else -k*x^2 + c*U(x, y)[1]
der(y) = if x > 0 and y < 0 then c*y*exp(-x) else max(x, y) - y^2*k
"""

NESTED_MODEL = """
param a = 1.2 in [0, 10]
param b = 0.4 in [0, inf]
state x = 1.0
state y = 0.5
state z = -0.3
nn U: 2 -> 3, hidden = [6, 4], activation = softplus
nn V: 2 -> 2, hidden = [5], activation = silu
let h = U(x, y*b)
let g = V(h[0], y)
der(x) = -a*x + g[0]*h[1]
der(y) = g[1] - b*y + U(y, x)[2] - U(y, x)[0]*U(y, x)[1]
der(z) = sin(a*t)*h[2] - z + V(z, t*z)[0]*V(z, t*z)[1]
"""

MULTI_MODEL = """
param w = 1.5 in [0.1, 4]
param r = 0.2 in [0, 1]
input drive
state p = 0.3
state q = 0.1
nn F: 3 -> 4, hidden = [7], activation = gelu
let o = F(p, q, drive)
der(p) = q + o[0] - r*o[1]*p
der(q) = -w^2*p + o[2]*o[3] + drive*sigmoid(q)
observe energy = p^2 + q^2/w^2
"""

BUILTINS_MODEL = """
param k = 0.8 in [0.1, 3]
param s = 0.5 in [0, 1]
state x = 0.4
state y = 0.6
let m = min(x, y, s)
der(x) = -k*x + log(1 + y^2) + softplus(x - y) + relu(y - s)*tanh(x) + atan2(y, x + 2) + erf(x)*m
der(y) = s*x + sigmoid(k*y) - cosh(x)/(2 + sinh(y)^2) + log10(2 + x^2) + exp(-x^2) - y^3
observe total = x + y
"""

INLINE = {"if": IF_MODEL, "nested": NESTED_MODEL, "multi": MULTI_MODEL, "builtins": BUILTINS_MODEL}

_LOADED: dict = {}


def nets_of(tm):
    """The nets as the generated functions take them (prepared once per solve where the model does so)."""
    return tm.prepared_nets() if hasattr(tm, "prepared_nets") else tm.nets


def net_math(mlp):
    """The object holding forward_cached / vjp / jacobian for an MLP."""
    return mlp.prepared() if hasattr(mlp, "prepared") else mlp


def load(key):
    """An example (a path) or an inline model (a key of INLINE), loaded once per session."""
    if key not in _LOADED:
        _LOADED[key] = odedsl.loads(INLINE[key], name=f"{key}.ode") if key in INLINE else odedsl.load(key)
    return _LOADED[key]


def example_id(path):
    return path.stem


def random_inputs(model, rng):
    """Input samples for every input: irregular times over [-1, 6], random values."""
    if not model.inputs:
        return None
    out = {}
    for u in model.inputs:
        times = np.sort(rng.uniform(-1, 6, 9))
        out[u.name] = (times, rng.normal(size=9))
    return out


def random_params(model, rng) -> dict[str, float]:
    """A value for every parameter inside its bounds (near the file's value for wide bounds)."""
    values = {}
    for q in model.params:
        lo = q.lower if math.isfinite(q.lower) else q.value - 1 - abs(q.value)
        hi = q.upper if math.isfinite(q.upper) else q.value + 1 + abs(q.value)
        hi = min(hi, lo + 4 * max(1.0, abs(q.value)))
        values[q.name] = float(rng.uniform(lo, hi))
    return values


def prepare(key, seed=0):
    """(model, TorchModel with random params, weights and inputs, numba margs (p, w, ut, uv))."""
    rng = np.random.default_rng(seed)
    model = load(key)
    tm = model.to_torch()
    tm.set_params(random_params(model, rng))
    w = rng.normal(scale=0.5, size=tm.weights().numel())
    tm.set_weights(w)
    inputs = random_inputs(model, rng)
    tm.set_inputs(inputs)
    p = tm.param_values().detach().numpy().copy()
    ut, uv = input_arrays(model, inputs)
    return model, tm, (p, tm.weights().numpy().copy(), ut, uv)


def random_states(model, rng, batch):
    y = rng.uniform(0.05, 2.0, size=(batch, len(model.states)))
    if model.name in ("if", "nested", "multi", "builtins", "van_der_pol", "harmonic_oscillator"):
        y *= rng.choice([-1.0, 1.0], size=y.shape)  # both branches of every if, both signs
    return y


def numba_each(fn, ts, ys, margs, shape):
    out = np.empty((len(ys), *shape))
    for i, (t, y) in enumerate(zip(ts, ys)):
        fn(float(t), np.ascontiguousarray(y), margs, out[i])
    return out


def assert_close(actual, expected, rtol, what=""):
    """|actual - expected| <= rtol * (|expected| + max|expected| * 1e-3): relative, with a floor for
    entries near zero that come out of cancellation."""
    actual = actual.detach().cpu().numpy() if torch.is_tensor(actual) else np.asarray(actual)
    expected = expected.detach().cpu().numpy() if torch.is_tensor(expected) else np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    floor = 1e-3 * (np.abs(expected).max() if expected.size else 0.0) + 1e-300
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * floor, err_msg=what)


ALL_KEYS = [*EXAMPLES, *INLINE]
ALL_IDS = [example_id(p) for p in EXAMPLES] + [f"inline-{k}" for k in INLINE]


# -- 1. generated functions against the Numba backend ------------------------------------------------


@pytest.mark.parametrize("key", ALL_KEYS, ids=ALL_IDS)
def test_rhs_observe_init_jac_match_numba(key):
    model, tm, margs = prepare(key, seed=1)
    mod = model.compile().module
    rng = np.random.default_rng(2)
    n = len(model.states)
    ys = random_states(model, rng, 16)
    ts = rng.uniform(-2, 8, 16)  # for inputs: inside, between and beyond the samples
    y = torch.tensor(ys, dtype=F64)
    t = torch.tensor(ts, dtype=F64)
    ps = tuple(tm.param_values().detach().unbind())
    u = tm.input_values(t)
    with torch.no_grad():
        f = tm.fn.rhs(t, y, ps, nets_of(tm), u)
        assert_close(f, numba_each(mod.rhs, ts, ys, margs, (n,)), 1e-12, "rhs")
        # forward() at one time for the whole batch
        f0 = tm(t[0], y)
        assert_close(f0, numba_each(mod.rhs, [ts[0]] * 16, ys, margs, (n,)), 1e-12, "forward")
        jac = tm.fn.jac(t, y, ps, nets_of(tm), u)
        assert_close(jac, numba_each(mod.jac, ts, ys, margs, (n, n)), 1e-12, "jac")
        n_obs = len(model.observables)
        obs = tm.observe(t[3], y)
        assert obs.shape == (16, n_obs)
        if n_obs:
            assert_close(obs, numba_each(mod.observe, [ts[3]] * 16, ys, margs, (n_obs,)), 1e-12, "observe")
        y0 = np.empty(n)
        mod.init(margs[0], y0)
        assert_close(tm.initial_values(), y0, 1e-12, "init")


@pytest.mark.parametrize("key", ALL_KEYS, ids=ALL_IDS)
def test_rhs_batch_shape(key):
    model, tm, _ = prepare(key, seed=3)
    rng = np.random.default_rng(4)
    n = len(model.states)
    y = torch.tensor(random_states(model, rng, 12).reshape(3, 4, n), dtype=F64)
    with torch.no_grad():
        f = tm(0.7, y)
        assert f.shape == (3, 4, n)
        for i in range(3):
            for j in range(4):
                assert_close(f[i, j], tm(0.7, y[i, j : j + 1])[0], 1e-12, f"row {i},{j}")
        J = tm.fn.jac(torch.tensor(0.7, dtype=F64), y, tuple(tm.param_values().unbind()), nets_of(tm),
                      tm.input_values(torch.full((12,), 0.7, dtype=F64)).reshape(3, 4, -1) if model.inputs else None)
        assert J.shape == (3, 4, n, n)


# -- 2. the generated VJP and the MLP's derivatives against autograd ---------------------------------


def autograd_vjp(tm, t, y, p, u, a):
    """Per row: a·df/dy, a·df/dp; and a·df/dw summed over rows, all by autograd."""
    weights = list(tm.parameters())
    weights = [w for net in tm.nets for w in net.parameters()]
    gy, gp = [], []
    gw = [torch.zeros_like(w) for w in weights]
    for b in range(y.shape[0]):
        yb = y[b : b + 1].clone().requires_grad_()
        pb = p.clone().requires_grad_()
        ub = None if u is None else u[b : b + 1]
        f = tm.fn.rhs(t[b : b + 1], yb, tuple(pb.unbind()), nets_of(tm), ub)
        grads = torch.autograd.grad((a[b : b + 1] * f).sum(), [yb, pb, *weights], allow_unused=True)
        gy.append(grads[0][0])
        gp.append(torch.zeros_like(p) if grads[1] is None else grads[1])
        for acc, g in zip(gw, grads[2:]):
            if g is not None:
                acc += g
    return torch.stack(gy), torch.stack(gp), gw


VJP_KEYS = [MODELS / "lotka_volterra_ude.ode", MODELS / "spiral_neural_ode.ode", MODELS / "van_der_pol.ode",
            MODELS / "forced_oscillator.ode", *INLINE]


@pytest.mark.parametrize("key", VJP_KEYS, ids=[k.stem if hasattr(k, "stem") else f"inline-{k}" for k in VJP_KEYS])
def test_generated_vjp_matches_autograd(key):
    model, tm, _ = prepare(key, seed=5)
    rng = np.random.default_rng(6)
    n, B = len(model.states), 7
    y = torch.tensor(random_states(model, rng, B), dtype=F64)
    t = torch.tensor(rng.uniform(-1, 6, B), dtype=F64)
    a = torch.tensor(rng.normal(size=(B, n)), dtype=F64)
    p = tm.param_values().detach()
    u = tm.input_values(t)
    f, gy, gp, gw = tm.fn.vjp(t, y, tuple(p.unbind()), nets_of(tm), u, a)
    with torch.no_grad():
        assert_close(f, tm.fn.rhs(t, y, tuple(p.unbind()), nets_of(tm), u), 1e-14, "f")
    ref_y, ref_p, ref_w = autograd_vjp(tm, t, y, p, u, a)
    assert_close(gy, ref_y, 1e-10, "a·df/dy")
    if p.numel():
        assert gp.shape == (B, p.numel())
        assert_close(gp, ref_p, 1e-10, "a·df/dp")
    else:
        assert gp is None
    assert len(gw) == len(tm.nets)
    pos = 0
    for k, net in enumerate(tm.nets):
        params = list(net.parameters())
        ref = ref_w[pos : pos + len(params)]
        pos += len(params)
        if gw[k] is None:
            assert all(float(r.abs().max()) == 0 for r in ref)
            continue
        assert len(gw[k]) == len(params)
        for j, (g, r) in enumerate(zip(gw[k], ref)):
            assert_close(g, r, 1e-10, f"net {net.name} weight {j}")
    assert pos == len(ref_w)


@pytest.mark.parametrize("key", VJP_KEYS, ids=[k.stem if hasattr(k, "stem") else f"inline-{k}" for k in VJP_KEYS])
def test_numba_vjp_matches_autograd(key):
    """The Numba backend's generated vjp (issue #6's compiled gradients build on it) against autograd."""
    model, tm, margs = prepare(key, seed=5)
    rng = np.random.default_rng(7)
    n, n_p, B = len(model.states), len(model.params), 5
    y = torch.tensor(random_states(model, rng, B), dtype=F64)
    t = torch.tensor(rng.uniform(-1, 6, B), dtype=F64)
    a = torch.tensor(rng.normal(size=(B, n)), dtype=F64)
    ref_y, ref_p, ref_w = autograd_vjp(tm, t, y, tm.param_values().detach(), tm.input_values(t), a)
    module = model.compile().module
    w_total = np.zeros(margs[1].size)
    for b in range(B):
        gy, gp, gw = np.empty(n), np.empty(n_p), np.zeros(margs[1].size)
        module.vjp(float(t[b]), y[b].numpy().copy(), margs, a[b].numpy().copy(), gy, gp, gw)
        assert_close(torch.tensor(gy), ref_y[b], 1e-10, "a·df/dy")
        if n_p:
            assert_close(torch.tensor(gp), ref_p[b], 1e-10, "a·df/dp")
        w_total += gw
    ref = torch.cat([r.reshape(-1) for r in ref_w]) if ref_w else torch.zeros(0, dtype=F64)
    assert_close(torch.tensor(w_total), ref, 1e-10, "a·df/dweights, summed over the batch")


ACTIVATIONS = ("tanh", "relu", "softplus", "sigmoid", "gelu", "elu", "silu", "identity")


def test_numba_tanh_is_within_3_ulp_of_libm():
    """The nets' branch-free tanh (numba_kernels._tanh) against NumPy's, over every scale, with the specials."""
    module = odedsl.loads("state x = 1\nder(x) = -x\n", name="tanh.ode").compile().module
    tanh = module._tanh

    @numba.njit
    def kernel(z, out):
        for i in range(z.size):
            out[i] = tanh(z[i])

    rng = np.random.default_rng(5)
    z = np.concatenate([rng.normal(scale=3.0, size=20_000), rng.normal(scale=1e-3, size=5_000),
                        np.logspace(-320, 1.5, 3_000), -np.logspace(-320, 1.5, 3_000), [19.0, 19.4, 19.6, 40.0, 1e300]])
    out = np.empty_like(z)
    kernel(z, out)
    ref = np.tanh(z)
    ulps = np.abs(out - ref) / np.spacing(np.maximum(np.abs(ref), np.finfo(float).tiny))
    assert ulps.max() <= 3.0 and ulps.mean() < 0.5
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan])
    out = np.empty(5)
    kernel(special, out)
    assert out[0] == 0.0 and np.signbit(out[1]) and out[2] == 1.0 and out[3] == -1.0 and np.isnan(out[4])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_numba_mlp_vjp_matches_autograd(activation):
    """``_mlp_vjp`` (input and weight cotangents, odedsl.nets layout) against torch autograd, 1e-12."""
    model = odedsl.loads(f"state x = 1\nnn U: 3 -> 2, hidden = [6, 5], activation = {activation}, init_scale = 1\n"
                         "der(x) = U(x, x, x)[0]\n", name="mlp.ode")
    module = model.compile().module
    mlp = MLP(model.nets[0], dtype=F64)
    rng = np.random.default_rng(3)
    flat = rng.normal(size=model.nets[0].n_weights)
    mlp.load_flat(torch.tensor(flat))
    for _ in range(5):
        x = rng.normal(size=3) * 2
        g = rng.normal(size=2)
        g_in, g_w = np.empty(3), np.zeros(flat.size)
        module._mlp_vjp(flat, 0, module._SIZES_0, ACTIVATION_CODES[activation], x, g, g_in, g_w)
        xr = torch.tensor(x, requires_grad=True)
        ref = torch.autograd.grad((mlp(xr) * torch.tensor(g)).sum(), [xr, *mlp.parameters()])
        assert_close(torch.tensor(g_in), ref[0], 1e-12, "input cotangent")
        assert_close(torch.tensor(g_w), torch.cat([r.reshape(-1) for r in ref[1:]]), 1e-12, "weight cotangents")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_vjp_and_jacobian_match_autograd(activation):
    model = odedsl.loads(f"state x = 1\nnn U: 3 -> 2, hidden = [6, 5], activation = {activation}, init_scale = 1\n"
                         "der(x) = U(x, x, x)[0]\n", name="mlp.ode")
    mlp = MLP(model.nets[0], dtype=F64)
    torch.manual_seed(0)
    with torch.no_grad():
        for w in mlp.parameters():
            w.copy_(torch.randn_like(w))
    x = torch.randn(4, 5, 3, dtype=F64) * 2  # two batch axes
    g = torch.randn(4, 5, 2, dtype=F64)
    ops = net_math(mlp)
    out, cache = ops.forward_cached(x)
    assert_close(out, mlp(x), 1e-15, "forward_cached")
    gx, gws = ops.vjp(cache, g)
    xr = x.clone().requires_grad_()
    ref = torch.autograd.grad((mlp(xr) * g).sum(), [xr, *mlp.parameters()])
    assert_close(gx, ref[0], 1e-12, "input cotangent")
    assert len(gws) == len(ref) - 1
    for j, (a, b) in enumerate(zip(gws, ref[1:])):
        assert_close(a, b, 1e-12, f"weight {j}")
    o2, J = ops.jacobian(x)
    assert_close(o2, mlp(x), 1e-15, "jacobian's output")
    Jref = torch.autograd.functional.jacobian(lambda v: mlp(v), x[1, 2])
    assert J.shape == (4, 5, 2, 3)
    assert_close(J[1, 2], Jref, 1e-12, "jacobian")
    for i in range(4):
        for k in range(5):
            assert_close(J[i, k], torch.autograd.functional.jacobian(mlp, x[i, k]), 1e-12, "jacobian rows")


def test_sign_and_abs_on_tensors():
    model = odedsl.loads("param k = 0.5 in [0, 2]\nstate x = 1\nstate y = -1\n"
                         "der(x) = k*sign(y) - x\nder(y) = -k*abs(x)*y\n", name="sign.ode")
    tm = model.to_torch()
    mod = model.compile().module
    ys = np.array([[1.0, -2.0], [-0.5, 0.0], [0.3, 2.0]])
    margs = (tm.param_values().detach().numpy(), np.zeros(0), np.zeros(1), np.zeros((1, 0)))
    y = torch.tensor(ys, dtype=F64)
    t = torch.zeros(3, dtype=F64)
    ps = tuple(tm.param_values().detach().unbind())
    with torch.no_grad():
        assert_close(tm(0.0, y), numba_each(mod.rhs, t, ys, margs, (2,)), 1e-12, "rhs")
        assert_close(tm.fn.jac(t, y, ps, nets_of(tm), None), numba_each(mod.jac, t, ys, margs, (2, 2)), 1e-12, "jac")


def test_net_argument_without_state_is_broadcast():
    model = odedsl.loads("param k = 0.5 in [0, 2]\nstate x = 1\nnn U: 3 -> 1, hidden = [4]\n"
                         "der(x) = U(x, k, t) - x\n", name="netarg.ode")
    tm = model.to_torch()
    mod = model.compile().module
    ys = np.array([[1.0], [-0.5], [0.3]])
    margs = (tm.param_values().detach().numpy(), tm.weights().numpy(), np.zeros(1), np.zeros((1, 0)))
    with torch.no_grad():
        f = tm(0.25, torch.tensor(ys, dtype=F64))
    assert_close(f, numba_each(mod.rhs, [0.25] * 3, ys, margs, (1,)), 1e-12, "rhs")
    out = tm.solve(torch.tensor([0.0, 1.0]), rtol=1e-10, atol=1e-12)
    ref = model.simulate([0.0, 1.0], rtol=1e-10, atol=1e-12).y
    assert_close(out, ref, 1e-8, "solve")


def test_vjp_with_an_unused_net_output():
    model = odedsl.loads("state x = 1\nnn U: 1 -> 2, hidden = [3], init_scale = 1\nder(x) = U(x)[0]\n",
                         name="unused.ode")
    tm = model.to_torch()
    y = torch.tensor([[0.3], [-0.7]], dtype=F64)
    t = torch.zeros(2, dtype=F64)
    a = torch.tensor([[1.0], [2.0]], dtype=F64)
    _, gy, _, gw = tm.fn.vjp(t, y, (), nets_of(tm), None, a)
    ref_y, _, ref_w = autograd_vjp(tm, t, y, torch.zeros(0, dtype=F64), None, a)
    assert_close(gy, ref_y, 1e-10, "a·df/dy")
    for g, r in zip(gw[0], ref_w):
        assert_close(g, r, 1e-10, "weights")


# -- 3. gradients of a solve against finite differences ----------------------------------------------

UDE = """
param alpha = 1.3 in [0, 10]
param beta = 0.6 in [0, inf]
param delta = 1.8 fixed
param x0 = 0.44 in [0, 2]
state prey = x0
state pred = 1.2
nn U: 2 -> 2, hidden = [8], activation = tanh, init_scale = 1
der(prey) = alpha*prey - beta*prey*pred + U(prey, pred)[0]
der(pred) = -delta*pred + beta*prey*pred + U(prey, pred)[1]
"""


def ude(seed=0):
    if "ude" not in _LOADED:
        _LOADED["ude"] = odedsl.loads(UDE, name="ude.ode")
    return _LOADED["ude"].to_torch(seed=seed)


WEIGHT_ENTRIES = [(0, "weight", (3, 1)), (0, "bias", (5,)), (1, "weight", (1, 6)), (1, "bias", (0,))]
T_EVAL = torch.tensor([0.0, 0.4, 1.1, 1.5, 2.0], dtype=F64)
TARGET = torch.tensor([[0.5, 1.0]], dtype=F64)


def loss_of(out):
    w = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    return ((out - TARGET.to(out.device)) ** 2 * w).sum() + out[..., 0].sum()


def entry(tm, k):
    layer, which, idx = WEIGHT_ENTRIES[k]
    return getattr(tm.nets[0].layers[layer], which), idx


def gradients(tm, t, y0, **kw):
    """(loss, d/d raw, d/d y0 (or None), d/d the WEIGHT_ENTRIES) by backward()."""
    tm.zero_grad()
    if y0 is not None:
        y0 = y0.clone().requires_grad_()
    loss = loss_of(tm.solve(t, y0=y0, **kw))
    loss.backward()
    gw = torch.stack([entry(tm, k)[0].grad[entry(tm, k)[1]] for k in range(len(WEIGHT_ENTRIES))])
    return loss.detach(), tm.raw.grad.clone(), None if y0 is None else y0.grad.clone(), gw


@torch.no_grad()
def finite_differences(tm, t, y0, eps, **kw):
    """Central differences of the same loss: w.r.t. raw, y0 (if given) and the WEIGHT_ENTRIES."""
    def loss():
        return float(loss_of(tm.solve(t, y0=y0, **kw)))

    def central(tensor, idx):
        old = float(tensor[idx])
        tensor[idx] = old + eps
        up = loss()
        tensor[idx] = old - eps
        down = loss()
        tensor[idx] = old
        return (up - down) / (2 * eps)

    g_raw = torch.tensor([central(tm.raw.data, (i,)) for i in range(tm.raw.numel())], dtype=F64)
    g_y0 = None
    if y0 is not None:
        y0 = y0.clone()
        g_y0 = torch.tensor([central(y0, idx) for idx in np.ndindex(*y0.shape)], dtype=F64).reshape(y0.shape)
    g_w = torch.tensor([central(entry(tm, k)[0].data, entry(tm, k)[1]) for k in range(len(WEIGHT_ENTRIES))],
                       dtype=F64)
    return g_raw, g_y0, g_w


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


FD_CASES = {
    # discrete gradients of fixed rk4 steps: finite differences of the same discrete map
    "backprop": ({"method": "rk4", "dt": 0.02}, {"method": "rk4", "dt": 0.02}, 1e-6, 1e-5),
    "checkpoint": ({"method": "rk4", "dt": 0.02, "checkpoint_every": 7}, {"method": "rk4", "dt": 0.02}, 1e-6, 1e-5),
    # the continuous adjoint against differences of an (almost) exact solution
    "adjoint": ({"rtol": 1e-10, "atol": 1e-10}, {"rtol": 1e-11, "atol": 1e-11}, 1e-4, 1e-4),
}


@pytest.mark.parametrize("gradient", list(FD_CASES))
@pytest.mark.parametrize("explicit_y0", [True, False], ids=["y0", "file-y0"])
def test_gradient_matches_finite_differences(gradient, explicit_y0):
    kw, fd_kw, eps, tol = FD_CASES[gradient]
    tm = ude()
    tm.set_params({"alpha": 0.9, "beta": 0.4, "x0": 0.7})
    y0 = torch.tensor([0.44, 1.2], dtype=F64) if explicit_y0 else None  # None: y0 from x0, through init
    _, g_raw, g_y0, g_w = gradients(tm, T_EVAL, y0, gradient=gradient, **kw)
    f_raw, f_y0, f_w = finite_differences(tm, T_EVAL, y0, eps, **fd_kw)
    if explicit_y0:
        assert abs(float(f_raw[2])) == 0 and float(g_raw[2]) == 0  # x0 only sets the file's y0
        assert rel_err(g_y0, f_y0) < tol, (g_y0, f_y0)
    else:
        assert abs(float(f_raw[2])) > 0.1  # x0 matters here
    assert rel_err(g_raw, f_raw) < tol, (g_raw, f_raw)
    assert rel_err(g_w, f_w) < tol, (g_w, f_w)
    for g, f in zip(g_raw.tolist() + g_w.tolist(), f_raw.tolist() + f_w.tolist()):
        assert abs(g - f) <= tol * max(abs(f), 1e-2 * float(f_raw.abs().max())), (g, f)


# -- 4. the three gradient modes agree ---------------------------------------------------------------


def all_gradients(tm, t, y0, **kw):
    """d loss / d (raw, y0, every net weight) as one vector, and the solution."""
    tm.zero_grad()
    y0 = y0.clone().requires_grad_()
    out = tm.solve(t, y0=y0, **kw)
    loss_of(out).backward()
    parts = [tm.raw.grad, y0.grad] + [w.grad for net in tm.nets for w in net.parameters()]
    return out.detach(), torch.cat([g.reshape(-1) for g in parts])


def test_modes_agree_single_trajectory():
    tm = ude()
    y0 = torch.tensor([0.44, 1.2], dtype=F64)
    kw = {"rtol": 1e-10, "atol": 1e-10}
    out_b, g_b = all_gradients(tm, T_EVAL, y0, gradient="backprop", **kw)
    out_c, g_c = all_gradients(tm, T_EVAL, y0, gradient="checkpoint", checkpoint_every=3, **kw)
    out_a, g_a = all_gradients(tm, T_EVAL, y0, gradient="adjoint", **kw)
    _, g_full = all_gradients(tm, T_EVAL, y0, gradient="adjoint", seminorm=False, **kw)
    assert torch.equal(out_b, out_c) and torch.equal(out_b, out_a)  # the same forward solve
    assert rel_err(g_c, g_b) < 1e-10
    assert rel_err(g_a, g_b) < 1e-5
    assert rel_err(g_full, g_b) < 1e-5  # error control on the parameter channels too


def test_modes_agree_batched_per_row_times_with_compaction(monkeypatch):
    """Per-row output times (different starts and ends): three rows finish long before the others, so the
    batch is compacted mid-solve; checkpoint_every=3 gives many checkpoints, some across a compaction."""
    import odedsl.solvers.torch_rk as rk

    compactions = []
    select = rk.Rows.select
    monkeypatch.setattr(rk.Rows, "select", lambda st, keep: compactions.append(int(keep.sum())) or select(st, keep))
    tm = ude(seed=3)
    t = torch.tensor([[0.0, 0.1, 0.2, 0.3],
                      [0.2, 0.25, 0.4, 0.5],
                      [-0.3, 0.5, 1.5, 2.5],
                      [0.1, 0.1, 1.0, 3.0],  # a repeated output time
                      [0.5, 0.9, 1.0, 1.1]], dtype=F64)
    y0 = torch.tensor([[0.44, 1.2], [0.8, 0.3], [0.2, 2.0], [1.0, 1.0], [0.5, 0.6]], dtype=F64)
    kw = {"rtol": 1e-10, "atol": 1e-10}
    out_b, g_b = all_gradients(tm, t, y0, gradient="backprop", **kw)
    assert compactions[:1] == [2]  # 5 rows -> the 2 still running
    out_c, g_c = all_gradients(tm, t, y0, gradient="checkpoint", checkpoint_every=3, **kw)
    out_a, g_a = all_gradients(tm, t, y0, gradient="adjoint", **kw)
    assert out_b.shape == (4, 5, 2)
    assert torch.equal(out_b, out_c) and torch.equal(out_b, out_a)
    assert torch.equal(out_b[0], y0) and torch.equal(out_b[1, 3], y0[3])  # outputs at the start are y0
    assert rel_err(g_c, g_b) < 1e-10, rel_err(g_c, g_b)
    assert rel_err(g_a, g_b) < 1e-5, rel_err(g_a, g_b)
    # each row equals the row solved alone, and so does its y0 gradient
    for b in range(5):
        alone = tm.solve(t[b], y0=y0[b], **kw).detach()
        assert_close(out_b[:, b], alone, 1e-10, f"row {b}")


def test_checkpoint_every_does_not_change_the_gradient():
    tm = ude(seed=4)
    t = torch.tensor([[0.0, 0.3, 2.0], [0.5, 0.6, 0.7], [0.0, 1.0, 1.5]], dtype=F64)
    y0 = torch.tensor([[0.44, 1.2], [0.8, 0.3], [0.2, 2.0]], dtype=F64)
    grads = [all_gradients(tm, t, y0, gradient="checkpoint", checkpoint_every=k, rtol=1e-8, atol=1e-8)[1]
             for k in (1, 3, 32, 10_000)]
    for g in grads[1:]:
        assert rel_err(g, grads[0]) < 1e-12


# -- 5. gradients with respect to the output times -----------------------------------------------------


@pytest.mark.parametrize("gradient", ["adjoint", "checkpoint"])
@pytest.mark.parametrize("batched", [False, True], ids=["1d", "2d"])
def test_time_gradients_match_finite_differences(gradient, batched):
    tm = ude(seed=5)
    if batched:
        t = torch.tensor([[0.0, 0.7, 1.5], [0.3, 0.5, 1.2]], dtype=F64)
        y0 = torch.tensor([[0.44, 1.2], [0.9, 0.5]], dtype=F64)
    else:
        t = torch.tensor([0.2, 0.7, 1.5, 1.9], dtype=F64)
        y0 = torch.tensor([0.44, 1.2], dtype=F64)
    tt = t.clone().requires_grad_()
    loss_of(tm.solve(tt, y0=y0, gradient=gradient, rtol=1e-10, atol=1e-10)).backward()
    eps = 1e-5
    fd = torch.zeros_like(t)
    with torch.no_grad():
        for idx in np.ndindex(*t.shape):
            vals = []
            for sign in (1, -1):
                tp = t.clone()
                tp[idx] += sign * eps
                vals.append(float(loss_of(tm.solve(tp, y0=y0, rtol=1e-12, atol=1e-12))))
            fd[idx] = (vals[0] - vals[1]) / (2 * eps)
    assert tt.grad.shape == t.shape
    start = fd[..., 0]
    assert float(start.abs().min()) > 1e-2  # the start time matters
    assert_close(tt.grad, fd, 1e-4, "d loss / d t_eval")


def test_time_gradients_need_adjoint_or_checkpoint():
    tm = ude()
    t = T_EVAL.clone().requires_grad_()
    with pytest.raises(UsageError, match="adjoint.*checkpoint"):
        tm.solve(t, gradient="backprop")


# -- 6. parameter bounds -------------------------------------------------------------------------------

BOUNDED = """
param k = 0.5 in [0, 1]
param r = 2.0 in [1, inf]
param c = 0.3 in [-inf, 2]
param s = 0.2
state x = 1
state y = 1
state z = 1
der(x) = -k*x
der(y) = -r*y
der(z) = -c*z + s
"""


def test_adam_with_a_large_learning_rate_stays_within_bounds():
    tm = odedsl.loads(BOUNDED, name="bounded.ode").to_torch()
    t = torch.linspace(0, 2, 9, dtype=F64)
    target = torch.stack([torch.exp(-3 * t), torch.exp(-0.2 * t), torch.exp(-4 * t)], -1)  # k=3, r=0.2, c=4
    opt = torch.optim.Adam(tm.parameters(), lr=1.0)
    for _ in range(60):
        opt.zero_grad()
        loss = ((tm.solve(t, method="rk4", dt=0.25) - target) ** 2).sum()
        loss.backward()
        assert bool(torch.isfinite(tm.raw.grad).all())
        opt.step()
        v = tm.params()
        assert 0 <= v["k"] <= 1 and v["r"] >= 1 and v["c"] <= 2, v
    v = tm.params()
    assert v["k"] > 0.98 and v["r"] < 1.02 and v["c"] > 1.98, v
    assert abs(v["s"]) < 10  # the unbounded one moved, freely


def test_param_map_round_trip_and_finite_gradients():
    tm = odedsl.loads(BOUNDED, name="bounded.ode").to_torch()
    assert tm.params() == pytest.approx({"k": 0.5, "r": 2.0, "c": 0.3, "s": 0.2}, rel=1e-14)
    tm.set_params({"k": 0.9, "r": 1.5, "c": -10.0, "s": -3e6})
    assert tm.params() == pytest.approx({"k": 0.9, "r": 1.5, "c": -10.0, "s": -3e6}, rel=1e-12)
    # on a bound: just inside it, with a usable gradient
    tm.set_params({"k": 1.0, "r": 1.0, "c": 2.0})
    v = tm.params()
    assert 1 - 1e-12 < v["k"] <= 1 and 1 <= v["r"] < 1 + 1e-12 and 2 - 1e-12 < v["c"] <= 2
    # d value / d raw: sigmoid, softplus, identity; finite everywhere (torch.where's NaN trap)
    with torch.no_grad():
        tm.raw.copy_(torch.tensor([3.0, -2.0, 1.5, 1e8], dtype=F64))
    values = tm.param_values()
    J = torch.stack([torch.autograd.grad(values[i], tm.raw, retain_graph=True)[0] for i in range(4)])
    sig = torch.sigmoid(torch.tensor([3.0, -2.0, 1.5], dtype=F64))
    expected = torch.diag(torch.stack([sig[0] * (1 - sig[0]), sig[1], -sig[2], torch.tensor(1.0, dtype=F64)]))
    assert_close(J, expected, 1e-12, "d values / d raw")
    loss = tm.solve(torch.tensor([0.0, 1.0], dtype=F64), rtol=1e-6)[-1].sum()
    loss.backward()
    assert bool(torch.isfinite(tm.raw.grad).all()) and float(tm.raw.grad[3]) != 0


def test_set_params_outside_bounds_is_a_usage_error():
    tm = odedsl.loads(BOUNDED, name="bounded.ode").to_torch()
    for bad in ({"k": 1.5}, {"k": -0.1}, {"r": 0.5}, {"c": 2.1}):
        with pytest.raises(UsageError, match=f"'{next(iter(bad))}'.*outside its bounds"):
            tm.set_params(bad)
    assert tm.params() == pytest.approx({"k": 0.5, "r": 2.0, "c": 0.3, "s": 0.2}, rel=1e-14)


def test_one_sided_bound_far_from_the_value():
    tm = odedsl.loads("param k = 100 in [0, inf]\nparam c = -50 in [-inf, 2]\nstate x = 1\nder(x) = -k*x + c\n",
                      name="far.ode").to_torch()
    assert tm.params() == pytest.approx({"k": 100.0, "c": -50.0}, rel=1e-12)
    tm.set_params({"k": 1e4})
    assert tm.params()["k"] == pytest.approx(1e4, rel=1e-12)


def test_set_params_unknown_name_is_a_usage_error():
    tm = odedsl.loads(BOUNDED, name="bounded.ode").to_torch()
    with pytest.raises(UsageError, match="nope"):
        tm.set_params({"nope": 1.0})


# -- 7. per-trajectory step control --------------------------------------------------------------------


def test_each_trajectory_takes_its_own_steps():
    tm = load(MODELS / "harmonic_oscillator.ode").to_torch()
    f = tm.rhs_closure(tm.param_values().detach())
    easy = torch.linspace(0, 1, 6, dtype=F64)
    hard = torch.linspace(0, 50, 6, dtype=F64)
    y0 = torch.tensor([[1.0, 0.0], [0.5, -1.0]], dtype=F64)
    opts = Options(rtol=1e-8, atol=1e-10)
    with torch.no_grad():
        out, stats, _ = integrate(f, torch.stack([easy, hard]), y0, "dopri5", opts)
        out_e, stats_e, _ = integrate(f, easy.unsqueeze(0), y0[:1], "dopri5", opts)
        out_h, stats_h, _ = integrate(f, hard.unsqueeze(0), y0[1:], "dopri5", opts)
        _, stats_shared, _ = integrate(f, torch.stack([hard, hard]), y0, "dopri5", opts)
    assert stats_h.rhs > 10 * stats_e.rhs  # the spans really differ in difficulty
    assert stats.rhs <= stats_e.rhs + stats_h.rhs + 4  # the batch costs what its rows cost alone
    assert stats.rhs < 0.6 * 2 * stats_h.rhs  # one shared step size would make both rows take the hard steps
    assert stats_shared.rhs >= 1.9 * stats_h.rhs
    assert_close(out[:, 0], out_e[:, 0], 1e-10, "easy row")
    assert_close(out[:, 1], out_h[:, 0], 1e-10, "hard row")
    w = 2.0  # against the exact solution too
    exact = torch.stack([0.5 * torch.cos(w * hard) - torch.sin(w * hard) / w,
                         -0.5 * w * torch.sin(w * hard) - torch.cos(w * hard)], -1)
    assert_close(out[:, 1], exact, 1e-5, "hard row, exact")


# -- 8. memory -------------------------------------------------------------------------------------------


def saved_bytes(tm, t, gradient, **kw):
    """Bytes saved for backward during the forward solve (every pack counted), and the solution."""
    total = [0]

    def pack(x):
        total[0] += x.nbytes
        return x

    y0 = torch.tensor([1.0, 0.0], dtype=F64, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = tm.solve(t, y0=y0, gradient=gradient, **kw)
    out.sum().backward()  # and the gradient still works
    assert y0.grad is not None and bool(torch.isfinite(y0.grad).all())
    return total[0]


def test_adjoint_memory_does_not_grow_with_the_number_of_steps():
    tm = load(MODELS / "harmonic_oscillator.ode").to_torch()
    short = torch.linspace(0, 5, 5, dtype=F64)
    long = torch.linspace(0, 50, 5, dtype=F64)  # the same outputs, 10x the steps
    f = tm.rhs_closure(tm.param_values().detach())
    with torch.no_grad():
        s_short = integrate(f, short.unsqueeze(0), torch.tensor([[1.0, 0.0]], dtype=F64), "dopri5", Options())[1]
        s_long = integrate(f, long.unsqueeze(0), torch.tensor([[1.0, 0.0]], dtype=F64), "dopri5", Options())[1]
    assert s_long.accepted > 8 * s_short.accepted
    a_short, a_long = saved_bytes(tm, short, "adjoint"), saved_bytes(tm, long, "adjoint")
    b_short, b_long = saved_bytes(tm, short, "backprop"), saved_bytes(tm, long, "backprop")
    assert a_long < 1.5 * a_short
    assert b_long > 5 * b_short
    assert a_long < b_short  # and it is small


def _cuda_peak(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


@pytest.mark.cuda
def test_adjoint_memory_on_cuda():
    tm = odedsl.loads(UDE, name="ude.ode").to_torch(device="cuda")
    y0 = torch.tensor([[0.44, 1.2]] * 64, dtype=F64, device="cuda")

    def run(span, gradient):
        def go():
            tm.zero_grad()
            t = torch.linspace(0, span, 5, dtype=F64, device="cuda")
            loss_of(tm.solve(t, y0=y0, gradient=gradient, rtol=1e-8, atol=1e-8)).backward()
        return _cuda_peak(go)

    run(1.0, "adjoint")  # warm up (allocator, kernels)
    a_short, a_long = run(1.0, "adjoint"), run(10.0, "adjoint")
    b_short, b_long = run(1.0, "backprop"), run(10.0, "backprop")
    assert a_long < 1.5 * a_short
    assert b_long > 3 * b_short


# -- 9. errors -------------------------------------------------------------------------------------------


def test_usage_errors():
    tm = load(MODELS / "harmonic_oscillator.ode").to_torch()
    t = torch.linspace(0, 1, 3, dtype=F64)
    with pytest.raises(UsageError, match=r"unknown method 'rk45'.*dopri5.*tsit5"):
        tm.solve(t, method="rk45")
    with pytest.raises(UsageError, match=r"unknown gradient mode 'reverse'.*backprop.*adjoint.*checkpoint"):
        tm.solve(t, gradient="reverse")
    for method in ("bdf", "auto"):
        with pytest.raises(UsageError, match=f"'{method}'.*not available on the Torch backend"):
            tm.solve(t, method=method)
    with pytest.raises(UsageError, match="non-decreasing"):
        tm.solve(torch.tensor([0.0, 2.0, 1.0], dtype=F64))
    with pytest.raises(UsageError, match="non-decreasing"):
        tm.solve(torch.tensor([[0.0, 1.0], [1.0, 0.5]], dtype=F64))
    with pytest.raises(UsageError, match="NaN or infinite"):
        tm.solve(torch.tensor([0.0, math.inf], dtype=F64))
    with pytest.raises(UsageError, match=r"y0 must end in the number of states \(2\); got shape \(3,\)"):
        tm.solve(t, y0=torch.zeros(3, dtype=F64))
    with pytest.raises(UsageError, match="t_eval must have shape"):
        tm.solve(torch.zeros(2, 3, dtype=F64), y0=torch.zeros(4, 2, dtype=F64))
    with pytest.raises(UsageError, match="rtol"):
        tm.solve(t, rtol=0.0)
    with pytest.raises(UsageError, match="checkpoint_every"):
        tm.solve(t, gradient="checkpoint", checkpoint_every=0)


def test_inputs_missing_or_unknown():
    tm = load(MODELS / "forced_oscillator.ode").to_torch()
    t = torch.linspace(0, 1, 3, dtype=F64)
    with pytest.raises(UsageError, match="set_inputs"):
        tm.solve(t)
    with pytest.raises(UsageError, match="no samples given for input force"):
        tm.set_inputs({})
    with pytest.raises(UsageError, match="unknown input wind"):
        tm.set_inputs({"force": ([0.0, 1.0], [0.0, 1.0]), "wind": ([0.0], [1.0])})
    with pytest.raises(UsageError, match="increasing"):
        tm.set_inputs({"force": ([0.0, 1.0, 1.0], [0.0, 1.0, 2.0])})


def test_diverging_solve_names_the_trajectory_and_the_time():
    tm = odedsl.loads("state x = 1\nder(x) = x^2\n", name="blowup.ode").to_torch()
    t = torch.linspace(0, 2, 5, dtype=F64)
    y0 = torch.tensor([[0.1], [0.2], [1.0], [0.3]], dtype=F64)  # x = 1/(1/x0 - t): row 2 blows up at t = 1
    with pytest.raises(NumericalError, match=r"trajectory 2\b") as err:
        tm.solve(t, y0=y0)
    when = float(re.search(r"t = ([-0-9.e+]+)", str(err.value)).group(1))
    assert abs(when - 1.0) < 1e-3
    with pytest.raises(NumericalError, match=r"trajectory 0\b") as err:  # fixed steps: checked per output interval
        tm.solve(t, method="rk4", dt=0.01)
    when = float(re.search(r"t = ([-0-9.e+]+)", str(err.value)).group(1))
    assert 1.0 <= when <= 1.5


# -- 10. float32, weights, and the Numba backend's solution ------------------------------------------------


def test_float32_close_to_float64():
    model = odedsl.loads(UDE, name="ude.ode")
    t = T_EVAL
    results = {}
    for dtype in (torch.float32, F64):
        tm = model.to_torch(dtype=dtype)
        assert tm.raw.dtype == dtype and all(w.dtype == dtype for w in tm.parameters())
        grads = {}
        for gradient in ("backprop", "checkpoint", "adjoint"):
            tm.zero_grad()
            out = tm.solve(t, gradient=gradient, rtol=1e-5, atol=1e-7)
            assert out.dtype == dtype
            loss_of(out).backward()
            grads[gradient] = torch.cat([tm.raw.grad.reshape(-1)] + [w.grad.reshape(-1) for w in tm.nets.parameters()])
        results[dtype] = (out.detach().double(), {k: g.double() for k, g in grads.items()})
    out32, g32 = results[torch.float32]
    out64, g64 = results[F64]
    assert_close(out32, out64, 1e-4, "float32 solution")
    for k in g64:
        assert rel_err(g32[k], g64[k]) < 1e-3, k


@pytest.mark.parametrize("seed", [0, 7])
def test_weights_round_trip(seed):
    model = load(MODELS / "lotka_volterra_ude.ode")
    tm = model.to_torch(seed=seed) if seed else model.to_torch()
    w = init_weights(model, seed) if seed else init_weights(model)
    np.testing.assert_array_equal(tm.weights().numpy(), w)
    # the layout: first layer's weight (out x in, row-major), then its bias
    first = tm.nets[0].layers[0]
    np.testing.assert_array_equal(first.weight.detach().numpy().ravel(), w[: first.weight.numel()])
    new = np.random.default_rng(seed).normal(size=w.size)
    tm.set_weights(new)
    np.testing.assert_array_equal(tm.weights().numpy(), new)
    tm.set_weights(torch.tensor(new * 2))
    np.testing.assert_array_equal(tm.weights().numpy(), new * 2)
    with pytest.raises(UsageError, match=f"expected a vector of {w.size} net weights, got shape \\({w.size + 1},\\)"):
        tm.set_weights(np.zeros(w.size + 1))


def test_set_weights_wrong_count_is_a_usage_error_and_changes_nothing():
    tm = load(MODELS / "lotka_volterra_ude.ode").to_torch()
    before = tm.weights().clone()
    for n in (before.numel() - 1, before.numel() + 1):
        with pytest.raises(UsageError, match=f"expected a vector of {before.numel()} net weights, got shape \\({n},\\)"):
            tm.set_weights(np.ones(n))
        assert torch.equal(tm.weights(), before)


# each case compiles a Numba driver (seconds, cold): one with nets, one with inputs
SOLVE_CASES = [MODELS / "lotka_volterra_ude.ode", MODELS / "forced_oscillator.ode"]


@pytest.mark.parametrize("key", SOLVE_CASES, ids=[getattr(k, "stem", k) for k in SOLVE_CASES])
def test_solve_matches_numba_simulate(key):
    model, tm, (p, w, _, _) = prepare(key, seed=8)
    rng = np.random.default_rng(9)
    inputs = random_inputs(model, rng)
    t = np.linspace(0, 3, 7)
    params = dict(zip((q.name for q in model.params), p.tolist()))
    ref = model.simulate(t, params=params, weights=w, inputs=inputs, rtol=1e-11, atol=1e-12)
    with torch.no_grad():
        out = tm.solve(torch.tensor(t), inputs=inputs, rtol=1e-11, atol=1e-12)
    assert_close(out, ref.y, 1e-8, "solution")
    with torch.no_grad():
        obs = tm.observe(torch.tensor(t[3]), out[3])
    if model.observables:
        assert_close(obs, np.array([v[3] for v in ref.observables().values()]), 1e-8, "observables")


def test_per_trajectory_inputs():
    """Input samples per trajectory ``(B, M)``: each row follows its own forcing."""
    model = load(MODELS / "forced_oscillator.ode")
    tm = model.to_torch()
    times = np.linspace(0, 4, 9)
    forces = np.stack([np.sin(times), np.cos(2 * times), np.zeros_like(times)])
    t = np.linspace(0, 4, 5)
    with torch.no_grad():
        out = tm.solve(torch.tensor(t), y0=torch.zeros(3, 2, dtype=F64),
                       inputs={"force": (np.tile(times, (3, 1)), forces)}, rtol=1e-11, atol=1e-12)
    for b in range(3):
        ref = model.simulate(t, inputs={"force": (times, forces[b])}, rtol=1e-11, atol=1e-12)
        assert_close(out[:, b], ref.y, 1e-8, f"row {b}")


# -- 11. CUDA ------------------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
def test_cuda_matches_cpu(gradient):
    model = odedsl.loads(UDE, name="ude.ode")
    t = torch.tensor([[0.0, 0.5, 1.0, 2.0], [0.2, 0.4, 0.6, 0.8], [-0.5, 0.0, 1.5, 2.5]], dtype=F64)
    y0 = torch.tensor([[0.44, 1.2], [0.8, 0.3], [0.2, 2.0]], dtype=F64)
    results = []
    for device in ("cpu", "cuda"):
        tm = model.to_torch(device=device)
        tm.set_params({"alpha": 0.9, "beta": 0.4})
        yy = y0.to(device).requires_grad_()
        tt = t.to(device).requires_grad_() if gradient != "backprop" else t.to(device)
        out = tm.solve(tt, y0=yy, gradient=gradient, rtol=1e-10, atol=1e-10, checkpoint_every=4)
        assert out.device.type == device
        loss_of(out).backward()
        grads = [tm.raw.grad, yy.grad] + [w.grad for w in tm.nets.parameters()]
        if gradient != "backprop":
            grads.append(tt.grad)
        results.append((out.detach().cpu(), torch.cat([g.reshape(-1) for g in grads]).cpu()))
    (out_cpu, g_cpu), (out_gpu, g_gpu) = results
    assert_close(out_gpu, out_cpu, 1e-10, "solution")
    assert rel_err(g_gpu, g_cpu) < 1e-10
