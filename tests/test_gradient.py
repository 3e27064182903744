"""Compiled discrete-adjoint gradients (odedsl.gradient, solvers/adjoint_rk.py) against autograd through the
Torch backend's same method: the same steps, so the same discrete solution and gradient to rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import odedsl
from conftest import MODELS
from odedsl.adjoint import solve
from odedsl.errors import UsageError
from odedsl.gradient import solve_gradient

CASES = [  # model, method, dt, params changed from the file's
    ("lotka_volterra_ude", "dopri5", None, {}),
    ("lotka_volterra_ude", "tsit5", None, {}),
    ("lotka_volterra_ude", "rk4", 0.05, {}),
    ("hare_lynx", "dopri5", None, {"H0": 20.0}),  # initial values are parameters
    ("hare_lynx", "bosh3", None, {}),
    ("forced_oscillator", "rk4", 0.02, {}),  # an input (fixed steps: its kinks could tip an adaptive decision)
]


def _reference(model, tm, t, g, method, dt, inputs):
    """Outputs and d(Σ g·out)/d(y0, params, weights) by autograd through the Torch solve."""
    if inputs:
        tm.set_inputs(inputs)
    p = tm.param_values().detach().clone().requires_grad_()
    y0 = tm.initial_values(p)
    ys = solve(tm, torch.tensor(t), y0[None], p, method, 1e-8, 1e-8, "backprop", dt, 100_000, None, True, 32)[:, 0]
    weights = [w for net in tm.nets for w in net.parameters()]
    y0_leaf = y0.detach().clone().requires_grad_()
    ys_y0 = solve(tm, torch.tensor(t), y0_leaf[None], p.detach(), method, 1e-8, 1e-8, "backprop", dt, 100_000, None,
                  True, 32)[:, 0]
    loss = (ys * torch.tensor(g)).sum()
    gp, *gw = torch.autograd.grad(loss, [p, *weights], allow_unused=True)
    (gy0,) = torch.autograd.grad((ys_y0 * torch.tensor(g)).sum(), [y0_leaf])
    flat = torch.cat([(q if q is not None else torch.zeros_like(w)).reshape(-1) for q, w in zip(gw, weights)]) \
        if weights else torch.zeros(0, dtype=torch.float64)
    return ys.detach().numpy(), gy0.numpy(), gp.numpy(), flat.numpy()


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)) if np.size(b) else 0.0


@pytest.mark.parametrize("name, method, dt, params", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_compiled_gradient_equals_autograd_through_the_same_steps(name, method, dt, params):
    model = odedsl.load(MODELS / f"{name}.ode")
    tm = model.to_torch()
    tm.set_params(params)
    rng = np.random.default_rng(1)
    if model.nets:
        tm.set_weights(rng.normal(scale=0.3, size=tm.weights().numel()))
    t = np.linspace(0.0, 4.0, 17)
    inputs = {"force": (np.linspace(-1, 6, 8), rng.normal(size=8))} if model.inputs else None
    g = rng.normal(size=(t.size, len(model.states)))
    out, gy0, gp, gw = solve_gradient(model, t, g, params={**{q.name: q.value for q in model.params}, **params},
                                      weights=tm.weights().numpy() if model.nets else None, method=method, rtol=1e-8,
                                      atol=1e-8, dt=dt, inputs=inputs)
    ref_out, ref_y0, ref_p, ref_w = _reference(model, tm, t, g, method, dt, inputs)
    assert _rel(out, ref_out) < 1e-12
    assert _rel(gy0, ref_y0) < 1e-9
    assert _rel(gp, ref_p) < 1e-9
    assert _rel(gw, ref_w) < 1e-9


def test_compiled_gradient_against_finite_differences():
    """Fixed rk4 steps: the discrete solution is smooth in the parameters, so central differences apply."""
    model = odedsl.load(MODELS / "hare_lynx.ode")
    t = np.linspace(0.0, 3.0, 7)
    g = np.random.default_rng(2).normal(size=(t.size, 2))
    base = {q.name: q.value for q in model.params}
    _, _, gp, _ = solve_gradient(model, t, g, params=base, method="rk4", dt=0.01)
    for j, q in enumerate(model.params):
        eps = 1e-6 * max(1.0, abs(q.value))
        up = solve_gradient(model, t, g, params={**base, q.name: q.value + eps}, method="rk4", dt=0.01)[0]
        down = solve_gradient(model, t, g, params={**base, q.name: q.value - eps}, method="rk4", dt=0.01)[0]
        fd = float(((up - down) * g).sum() / (2 * eps))
        assert abs(gp[j] - fd) <= 1e-6 * max(1.0, abs(fd)), (q.name, gp[j], fd)


def test_compiled_gradient_refuses_unsupported_methods():
    model = odedsl.load(MODELS / "lotka_volterra.ode")
    for method in ("dop853", "rodas5p", "bdf"):
        with pytest.raises(UsageError, match="compiled gradients support"):
            solve_gradient(model, [0.0, 1.0], np.zeros((2, 2)), method=method)


@pytest.mark.parametrize("method, dt", [("dopri5", None), ("tsit5", None), ("bosh3", None), ("rk4", 0.05)])
@pytest.mark.parametrize("every", [1, 3, 1000])
def test_checkpointed_gradient_equals_the_stored_stages_one(method, dt, every):
    """A narrow tape (stages recomputed from states every ``every`` steps) gives the wide tape's gradient."""
    model = odedsl.load(MODELS / "lotka_volterra_ude.ode")
    rng = np.random.default_rng(4)
    w = rng.normal(scale=0.3, size=sum(n.n_weights for n in model.nets))
    t = np.linspace(0.0, 4.0, 9)
    g = rng.normal(size=(t.size, 2))
    kw = dict(weights=w, method=method, rtol=1e-7, atol=1e-7, dt=dt)
    wide = solve_gradient(model, t, g, **kw)
    narrow = solve_gradient(model, t, g, checkpoint_every=every, **kw)
    for a, b in zip(narrow, wide):
        assert _rel(a, b) < 1e-13


def test_checkpoint_every_must_be_a_positive_integer():
    model = odedsl.load(MODELS / "lotka_volterra.ode")
    for bad in (0, -2, 1.5):
        with pytest.raises(UsageError, match="checkpoint_every"):
            solve_gradient(model, [0.0, 1.0], np.zeros((2, 2)), checkpoint_every=bad)
