"""Simulation through the Numba backend: accuracy against exact solutions and scipy,
convergence orders, ensembles, inputs, hybrid models, and failure behaviour."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import scipy.linalg
from scipy.integrate import solve_ivp

import odedsl
from odedsl.errors import NumericalError, UsageError
from odedsl.simulate import STAT_NAMES
from odedsl.solvers.methods import METHODS, kernel_arrays

from conftest import MODELS

ADAPTIVE = [name for name, m in METHODS.items() if m.kind == "adaptive"]
FIXED = [name for name, m in METHODS.items() if m.kind == "fixed"]
ORDERS = {"euler": 1, "midpoint": 2, "rk4": 4, "bosh3": 3, "dopri5": 5, "tsit5": 5, "dop853": 8}


@pytest.fixture(scope="module")
def decay():
    return odedsl.load(MODELS / "exponential_decay.ode")


@pytest.fixture(scope="module")
def oscillator():
    return odedsl.load(MODELS / "harmonic_oscillator.ode")


@pytest.fixture(scope="module")
def lotka():
    return odedsl.load(MODELS / "lotka_volterra.ode")


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_methods_meet_tolerance_on_exact_solutions(method, decay, oscillator):
    t = np.linspace(0, 10, 57)
    sol = decay.simulate(t, method=method, rtol=1e-9, atol=1e-12)
    exact = 2.0 * np.exp(-0.5 * t)
    np.testing.assert_allclose(sol["x"], exact, rtol=2e-7, atol=1e-11)
    sol = oscillator.simulate(t, method=method, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sol["x"], np.cos(2 * t), rtol=0, atol=5e-7)
    np.testing.assert_allclose(sol["v"], -2 * np.sin(2 * t), rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_methods_on_exact_solution(method, decay):
    t = np.linspace(0, 2, 5)
    sol = decay.simulate(t, method=method, dt=1e-3)
    err = np.max(np.abs(sol["x"] - 2.0 * np.exp(-0.5 * t)))
    assert err < {"euler": 1e-3, "midpoint": 1e-6, "rk4": 1e-12}[method]
    assert sol.stats["n_accepted"] == 2000


@pytest.mark.parametrize("method", list(ORDERS))
def test_observed_convergence_order(method, oscillator):
    """Fixed steps with each method's propagated weights: the error slope is the method's order."""
    mod = oscillator.compile().module
    k = kernel_arrays(method)
    p = np.array([2.0])
    margs = (p, np.zeros(0), np.zeros(1), np.zeros((1, 0)))
    t = np.array([0.0, 1.0])
    order = ORDERS[method]
    steps = {1: [50, 100, 200, 400], 2: [20, 40, 80, 160], 3: [10, 20, 40, 80], 4: [10, 20, 40, 80],
             5: [8, 16, 32, 64], 8: [4, 6, 8, 12]}[order]
    errs = []
    for m in steps:
        out = np.empty((2, 2))
        stats = np.zeros(5, dtype=np.int64)
        mod._rk_fixed(t, np.array([1.0, 0.0]), margs, k.a, k.b, k.c, 1.0 / m, 10**6, out, stats, np.zeros((0, 3)))
        errs.append(abs(out[1, 0] - math.cos(2.0)) + abs(out[1, 1] + 2 * math.sin(2.0)))
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.35, (method, slope, errs)


def test_linear_system_matches_matrix_exponential():
    text = """
    param a = -0.3
    param b = 2.0
    state u = 1
    state v = 0
    state w = 0.5
    der(u) = a*u + b*v
    der(v) = -b*u + a*v + 0.1*w
    der(w) = -0.05*w
    """
    m = odedsl.loads(text)
    A = np.array([[-0.3, 2.0, 0.0], [-2.0, -0.3, 0.1], [0.0, 0.0, -0.05]])
    t = np.linspace(0, 5, 11)
    for method in ADAPTIVE:
        sol = m.simulate(t, method=method, rtol=1e-10, atol=1e-12)
        exact = np.array([scipy.linalg.expm(A * ti) @ np.array([1.0, 0.0, 0.5]) for ti in t])
        np.testing.assert_allclose(sol.y, exact, rtol=0, atol=2e-8)


def test_logistic_growth_exact():
    m = odedsl.loads("param r = 1.5\nconst K = 10\nstate N = 0.1\nder(N) = r*N*(1 - N/K)\n")
    t = np.linspace(0, 8, 33)
    exact = 10 / (1 + (10 / 0.1 - 1) * np.exp(-1.5 * t))
    for method in ADAPTIVE:
        sol = m.simulate(t, method=method, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(sol["N"], exact, rtol=1e-7)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_agrees_with_scipy(method, lotka):
    t = np.linspace(0, 10, 101)
    sol = lotka.simulate(t, method=method, rtol=1e-10, atol=1e-12)
    ref = solve_ivp(lambda _, y: [1.5 * y[0] - y[0] * y[1], y[0] * y[1] - 3 * y[1]], (0, 10), [1.0, 1.0],
                    t_eval=t, method="DOP853", rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(sol.y, ref.y.T, rtol=0, atol=5e-7)


def test_tolerance_controls_error(lotka):
    t = np.linspace(0, 10, 11)
    ref = lotka.simulate(t, method="dop853", rtol=1e-13, atol=1e-14).y
    errors = [np.max(np.abs(lotka.simulate(t, rtol=r, atol=r * 1e-2).y - ref)) for r in (1e-4, 1e-6, 1e-8)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-5


def test_kepler_orbit_conserves_energy_and_angular_momentum():
    text = """
    param mu = 1
    state qx = 0.5
    state qy = 0
    state px = 0
    state py = 1.7320508075688772
    let r3 = (qx^2 + qy^2)^(3/2)
    der(qx) = px
    der(qy) = py
    der(px) = -mu*qx/r3
    der(py) = -mu*qy/r3
    """
    m = odedsl.loads(text)
    # eccentricity 0.5 orbit (a = 1, period 2*pi), 50 periods
    t = np.linspace(0, 50 * 2 * math.pi, 2001)
    sol = m.simulate(t, method="dop853", rtol=1e-12, atol=1e-12)
    qx, qy, px, py = sol.y.T
    energy = 0.5 * (px**2 + py**2) - 1 / np.sqrt(qx**2 + qy**2)
    momentum = qx * py - qy * px
    assert np.max(np.abs(energy - energy[0])) < 1e-8
    assert np.max(np.abs(momentum - momentum[0])) < 1e-8
    # back at the start after whole periods
    np.testing.assert_allclose(sol.y[-1], sol.y[0], atol=1e-6)


def test_dense_output_does_not_add_steps(lotka):
    few = lotka.simulate([0, 10])
    many = lotka.simulate(np.linspace(0, 10, 1001))
    assert few.stats["n_accepted"] == many.stats["n_accepted"]
    assert few.stats["n_rejected"] == many.stats["n_rejected"]
    np.testing.assert_allclose(few.y[-1], many.y[-1], rtol=1e-12)


def test_params_and_y0_override(decay):
    sol = decay.simulate([0, 1], params={"k": 1.0}, y0={"x": 3.0}, rtol=1e-10, atol=1e-12)
    assert sol.y[0, 0] == 3.0
    assert sol.y[1, 0] == pytest.approx(3.0 * math.exp(-1.0), rel=1e-8)
    # the initial value is an expression of a parameter: x0 drives it
    sol = decay.simulate([0], params={"x0": 5.0})
    assert sol.y[0, 0] == 5.0


def test_solution_api(decay):
    sol = decay.simulate([0, 1, 2])
    assert sol.names == ["x"] and sol.t.shape == (3,) and sol.y.shape == (3, 1)
    assert set(sol.stats) == set(STAT_NAMES) and sol.stats["n_rhs"] > 0
    with pytest.raises(KeyError, match="no state named 'nope'"):
        sol["nope"]


def test_observables_evaluated():
    m = odedsl.load(MODELS / "sir.ode")
    sol = m.simulate(np.arange(0, 15.0))
    obs = sol.observables()
    np.testing.assert_array_equal(obs["in_bed"], sol["I"])
    # S + I + R = N is conserved
    np.testing.assert_allclose(sol.y.sum(axis=1), 763, rtol=1e-9)


def test_inputs_are_interpolated():
    m = odedsl.loads("input u\nstate x = 0\nder(x) = u\n")
    # u = t on [0, 2] (linear, so interpolation is exact): x = t^2/2; constant beyond the last sample
    sol = m.simulate([0, 1, 2, 3], inputs={"u": ([0, 2], [0, 2])}, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sol["x"], [0, 0.5, 2.0, 4.0], atol=1e-8)
    with pytest.raises(UsageError, match="needs values for its input"):
        m.simulate([0, 1])
    with pytest.raises(UsageError, match="strictly increasing"):
        m.simulate([0, 1], inputs={"u": ([1, 0], [0, 1])})


def test_hybrid_rhs_matches_numpy_mlp():
    from odedsl.nets import forward, init_weights

    m = odedsl.load(MODELS / "lotka_volterra_ude.ode")
    rng = np.random.default_rng(1)
    w = init_weights(m, seed=3) + 0.1 * rng.standard_normal(m.nets[0].n_weights)
    mod = m.compile().module
    p = np.array([1.3, 1.8])
    for y in rng.uniform(0, 5, size=(5, 2)):
        out = np.empty(2)
        mod.rhs(0.0, y, (p, w, np.zeros(1), np.zeros((1, 0))), out)
        net = forward(m.nets[0], w, 0, y)
        np.testing.assert_allclose(out, [1.3 * y[0] + net[0], -1.8 * y[1] + net[1]], rtol=1e-13, atol=1e-13)
        # the compiled Jacobian uses the MLP's input Jacobian: compare with central differences
        J = np.empty((2, 2))
        mod.jac(0.0, y, (p, w, np.zeros(1), np.zeros((1, 0))), J)
        eps = 1e-6
        for j in range(2):
            d = np.zeros(2)
            d[j] = eps
            fp, fm = np.empty(2), np.empty(2)
            mod.rhs(0.0, y + d, (p, w, np.zeros(1), np.zeros((1, 0))), fp)
            mod.rhs(0.0, y - d, (p, w, np.zeros(1), np.zeros((1, 0))), fm)
            np.testing.assert_allclose(J[:, j], (fp - fm) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_untrained_hybrid_is_close_to_physics():
    m = odedsl.load(MODELS / "lotka_volterra_ude.ode")
    sol = m.simulate(np.linspace(0, 1, 11))
    physics = odedsl.loads("param alpha = 1.3\nparam delta = 1.8\nstate prey = 0.44249296\nstate pred = 4.6280594\n"
                           "der(prey) = alpha*prey\nder(pred) = -delta*pred\n").simulate(np.linspace(0, 1, 11))
    np.testing.assert_allclose(sol.y, physics.y, rtol=0.05)


def test_jacobians_match_finite_differences(lotka):
    mod = lotka.compile().module
    p = np.array([1.5, 1.0, 1.0, 3.0])
    margs = (p, np.zeros(0), np.zeros(1), np.zeros((1, 0)))
    y = np.array([0.7, 1.3])
    J = np.empty((2, 2))
    mod.jac(0.0, y, margs, J)
    np.testing.assert_allclose(J, [[1.5 - 1.3, -0.7], [1.3, 0.7 - 3.0]], rtol=1e-14)
    Jp = np.empty((2, 4))
    mod.jac_p(0.0, y, margs, Jp)
    np.testing.assert_allclose(Jp, [[0.7, -0.91, 0, 0], [0, 0, 0.91, -1.3]], rtol=1e-14)


def test_ensemble_matches_single_solves(lotka):
    t = np.linspace(0, 5, 21)
    alphas = np.array([1.2, 1.5, 1.8, 2.0])
    ens = lotka.simulate_ensemble(t, params={"alpha": alphas}, y0={"pred": [1.0, 0.5, 1.5, 2.0]})
    assert ens.y.shape == (4, 21, 2) and ens.ok.all()
    for k, a in enumerate(alphas):
        single = lotka.simulate(t, params={"alpha": a}, y0={"pred": [1.0, 0.5, 1.5, 2.0][k]})
        np.testing.assert_array_equal(ens.y[k], single.y)


def test_ensemble_failures(lotka):
    with pytest.raises(UsageError, match="different lengths"):
        lotka.simulate_ensemble([0, 1], params={"alpha": [1, 2]}, y0={"prey": [1, 2, 3]})
    blow = odedsl.loads("param k = 1\nstate x = 1\nder(x) = k*x^2\n")
    with pytest.raises(NumericalError, match="1 of 2 trajectories failed"):
        blow.simulate_ensemble([0, 0.5, 2], params={"k": [0.1, 1.0]})
    ens = blow.simulate_ensemble([0, 0.5, 2], params={"k": [0.1, 1.0]}, on_failure="nan")
    assert ens.ok.tolist() == [True, False] and np.isnan(ens.y[1]).all()
    assert ens.t_reached[1] == pytest.approx(1.0, abs=1e-3)


def test_blow_up_reports_time_and_method():
    m = odedsl.loads("state x = 1\nder(x) = x^2\n")  # x = 1/(1 - t): blows up at t = 1
    with pytest.raises(NumericalError) as info:
        m.simulate([0, 2])
    msg = str(info.value)
    assert re.search(r"with dopri5 stopped at t = (0\.99\d*|1):", msg), msg
    assert "blow up" in msg
    assert info.value.exit_code == 3


def test_nan_rhs_reports_not_finite():
    m = odedsl.loads("state x = 1\nder(x) = -log(x - 2)\n")
    with pytest.raises(NumericalError, match="NaN or infinite"):
        m.simulate([0, 1])


def test_max_steps_reported(lotka):
    with pytest.raises(NumericalError, match="max_steps=5"):
        lotka.simulate([0, 10], max_steps=5)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"method": "rk45"}, "unknown method 'rk45'; valid methods: euler"),
        ({"params": {"alpah": 1}}, "unknown parameter 'alpah'; the model's parameters are: alpha, beta"),
        ({"y0": {"wolf": 1}}, "unknown state 'wolf'"),
        ({"rtol": -1}, "tolerances must be positive"),
        ({"rtol": 1e-20}, "below what double precision"),
        ({"weights": [1.0]}, "weights has 1 values"),
    ],
)
def test_bad_arguments(kwargs, fragment, lotka):
    with pytest.raises(UsageError, match=fragment.replace("(", r"\(")):
        lotka.simulate([0, 1], **kwargs)


def test_decreasing_times_rejected(lotka):
    with pytest.raises(UsageError, match=r"increasing, but t\[1\] = 2 is followed by t\[2\] = 1"):
        lotka.simulate([0, 2, 1])


def test_compiled_module_is_cached_on_disk(lotka, tmp_path):
    import subprocess
    import sys

    from odedsl.backends.cache import cache_dir

    mod = lotka.compile().module
    assert mod.__file__.startswith(str(cache_dir()))
    assert "def rhs(t, y, margs, out):" in open(mod.__file__).read()
    code = ("import time, odedsl; m = odedsl.load(%r); s = time.perf_counter(); m.simulate([0, 10]); "
            "print(time.perf_counter() - s)" % str(MODELS / "lotka_volterra.ode"))
    warm = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert warm < 3.0  # loads machine code from the cache instead of compiling (cold: several seconds)


def test_to_pandas(decay):
    sol = decay.simulate([0.0, 1.0])
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="needs pandas"):
            sol.to_pandas()
        return
    df = sol.to_pandas()
    assert list(df.columns) == ["t", "x"] and df["x"].iloc[0] == 2.0
