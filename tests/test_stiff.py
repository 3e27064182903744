"""The stiff methods (rodas5p, bdf) and auto: published reference solutions, exact solutions,
scipy's Radau, the observed order of Rodas5P, statistics, switching, failures and aliases.

Reference values are those of the Bari test set (Mazzia & Magherini, "Test Set for IVP
Solvers", University of Bari, release 2.4): HIRES at t = 321.8122, ROBER at t = 1e11,
VDPOLM (van der Pol with mu = 1e3 in the unscaled form y1' = y2, y2' = 1e3 (1 - y1²) y2 - y1,
y(0) = (2, 0), their "van der Pol modified") at t = 2000, and OREGO at t = 360.

Every compiled loop costs seconds per model, so each model is loaded once per module and
the tests reuse it; rodas5p and auto share one loop.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from scipy.integrate import solve_ivp

import odedsl
from odedsl.errors import NumericalError, UsageError
from odedsl.simulate import STAT_NAMES
from odedsl.solvers.explicit import STAT_ACCEPTED, STAT_REJECTED
from odedsl.solvers.methods import get_method, method_names, stiff_kernel_args
from odedsl.solvers.rosenbrock import RODAS5P
from odedsl.solvers.tableaux import TableauError

from conftest import MODELS

TEST_MODELS = Path(__file__).parent / "models"
STIFF = ["rodas5p", "bdf", "auto"]

#: Published end values (Bari test set 2.4): model file, parameter overrides, end time, values.
REFERENCES = {
    "hires": (TEST_MODELS / "hires.ode", {}, 321.8122,
              [0.7371312573325668e-3, 0.1442485726316185e-3, 0.5888729740967575e-4, 0.1175651343283149e-2,
               0.2386356198831331e-2, 0.6238968252742796e-2, 0.2849998395185769e-2, 0.2850001604814231e-2]),
    "rober": (MODELS / "robertson.ode", {}, 1e11, [0.2083340149701255e-7, 0.8333360770334713e-13, 0.9999999791665050]),
    "vdpolm": (MODELS / "van_der_pol.ode", {"mu": 1e3}, 2e3, [0.1706167732170469e1, -0.8928097010248125e-3]),
    "orego": (TEST_MODELS / "orego.ode", {}, 360.0, [0.1000814870318523e1, 0.1228178521549917e4, 0.1320554942846706e3]),
}

#: Relative error allowed at the end, in units of rtol. Rodas5P stays below 1 rtol on all four
#: problems; BDF's global error grows with the number of steps like scipy's BDF's (on OREGO at
#: rtol 1e-8: 146 rtol here, 136 rtol with scipy), since local error control does not bound the
#: accumulated phase error of an oscillator.
ACCURACY = {"rodas5p": 10, "auto": 10, "bdf": 300}

#: Exact solutions in one model (one compile): decay x; a linear system u, v, w with a stiff
#: component r driven by u (vs the matrix exponential); Prothero–Robinson pr = sin(t), stiff for
#: large lam and non-autonomous (it exercises the Rosenbrock methods' ∂f/∂t); the nonlinear
#: limit cycle p1 + i p2 = ρ(t) e^{it}, ρ = (1 + 3 e^{-2t})^{-1/2}; and z = 1/(1 - blow*t),
#: constant unless a test sets ``blow``.
EXACT = """
param k = 0.5
param lam = 1e4
param fast = 500
param blow = 0
state x = 2
state u = 1
state v = 0
state w = 0.5
state r = 0
state pr = 0
state p1 = 0.5
state p2 = 0
state z = 1
der(x) = -k*x
der(u) = -0.3*u + 2*v
der(v) = -2*u - 0.3*v + 0.1*w
der(w) = -0.05*w
der(r) = -fast*r + u
der(pr) = -lam*(pr - sin(t)) + cos(t)
der(p1) = -p2 + p1*(1 - p1^2 - p2^2)
der(p2) = p1 + p2*(1 - p1^2 - p2^2)
der(z) = blow*z^2
"""


def exact_solution(t: np.ndarray, fast: float = 500.0) -> dict[str, np.ndarray]:
    A = np.array([[-0.3, 2, 0, 0], [-2, -0.3, 0.1, 0], [0, 0, -0.05, 0], [1, 0, 0, -fast]])
    lin = np.array([scipy.linalg.expm(A * ti) @ [1, 0, 0.5, 0] for ti in t])
    rho = 1 / np.sqrt(1 + 3 * np.exp(-2 * t))
    return {"x": 2 * np.exp(-0.5 * t), "u": lin[:, 0], "v": lin[:, 1], "w": lin[:, 2], "r": lin[:, 3],
            "pr": np.sin(t), "p1": rho * np.cos(t), "p2": rho * np.sin(t), "z": np.ones_like(t)}


@pytest.fixture(scope="module")
def models():
    loaded = {name: odedsl.load(path) for name, (path, *_) in REFERENCES.items()}
    loaded["exact"] = odedsl.loads(EXACT, name="exact.ode")
    return loaded


def test_rodas5p_tableau_checks_itself():
    assert (RODAS5P.order, RODAS5P.error_order, RODAS5P.dense_order, RODAS5P.stages) == (5, 4, 4, 8)
    C = np.array(RODAS5P.C)
    C[4, 1] += 1e-9
    with pytest.raises(TableauError, match="row sums of alpha equal c"):
        dataclasses.replace(RODAS5P, C=C)
    H = np.array(RODAS5P.H)
    H[2, 3] += 1e-6
    with pytest.raises(TableauError, match="dense output"):
        dataclasses.replace(RODAS5P, H=H)


@pytest.mark.parametrize("method", STIFF)
@pytest.mark.parametrize("problem", list(REFERENCES))
def test_reaches_published_reference(problem, method, models):
    _, params, t_end, ref = REFERENCES[problem]
    ref = np.array(ref)
    for rtol in (1e-6, 1e-8):
        atol = 1e-14 * rtol / 1e-6 if problem == "rober" else 1e-4 * rtol  # ROBER's y2 is 8e-14 at the end
        sol = models[problem].simulate([0, t_end], params=params, method=method, rtol=rtol, atol=atol)
        checked = np.abs(ref) > atol
        rel = np.abs(sol.y[-1] - ref)[checked] / np.abs(ref)[checked]
        assert rel.max() < ACCURACY[method] * rtol, (problem, method, rtol, rel)


@pytest.mark.parametrize("method", STIFF)
def test_exact_solutions(method, models):
    t = np.linspace(0, 5, 11)
    sol = models["exact"].simulate(t, method=method, rtol=1e-9, atol=1e-12)
    for name, values in exact_solution(t).items():
        np.testing.assert_allclose(sol[name], values, rtol=0, atol=1e-7, err_msg=name)


def test_rodas5p_observed_order(models):
    """Fixed steps (tolerances that accept every step, h_max = h_init = dt): the error slope is 5."""
    mod = models["exact"].compile().module
    margs = (np.array([0.5, 1.0, 1.0, 0.0]), np.zeros(0), np.zeros(1), np.zeros((1, 0)))
    y0 = np.array([2, 1, 0, 0.5, 0, 0, 0.5, 0, 1.0])
    t_end = 2.0
    exact = exact_solution(np.array([t_end]))
    steps = [16, 32, 64, 128]
    errors = []
    for m in steps:
        out = np.empty((2, 9))
        stats = np.zeros(len(STAT_NAMES), dtype=np.int64)
        status, _ = mod._rosenbrock(np.array([0.0, t_end]), y0, margs, *stiff_kernel_args("rodas5p"), 1.0, 1e10,
                                    t_end / m, t_end / m, 10**6, out, stats)
        assert status == 0 and stats[STAT_ACCEPTED] == m and stats[STAT_REJECTED] == 0
        errors.append(abs(out[1, 6] - exact["p1"][0]) + abs(out[1, 7] - exact["p2"][0]))  # the nonlinear pair
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - 5) < 0.35, (slope, errors)


@pytest.fixture(scope="module")
def van_der_pol_radau():
    """scipy's Radau on van der Pol with mu = 1e3 (VDPOLM) at tight tolerances, with the exact Jacobian."""
    mu = 1e3
    t = np.linspace(0, 2000, 41)
    ref = solve_ivp(lambda _, y: [y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]], (0, 2000), [2.0, 0.0], method="Radau",
                    jac=lambda _, y: [[0, 1], [-2 * mu * y[0] * y[1] - 1, mu * (1 - y[0] ** 2)]], t_eval=t,
                    rtol=1e-9, atol=1e-11)
    return t, ref.y.T


@pytest.mark.parametrize("method", STIFF)
def test_agrees_with_scipy_radau_on_van_der_pol(method, models, van_der_pol_radau):
    t, ref = van_der_pol_radau
    sol = models["vdpolm"].simulate(t, params={"mu": 1e3}, method=method, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(sol.y, ref, rtol=0, atol=2e-6)


@pytest.mark.parametrize("method", STIFF)
def test_dense_output_does_not_add_steps(method, models):
    few = models["rober"].simulate([0, 1e5], method=method, rtol=1e-6, atol=1e-10)
    many = models["rober"].simulate(np.r_[0, np.geomspace(1e-6, 1e5, 500)], method=method, rtol=1e-6, atol=1e-10)
    assert few.stats == many.stats
    np.testing.assert_allclose(many.y[-1], few.y[-1], rtol=1e-12)


def test_stats_are_consistent(models):
    rober = models["rober"]
    st = rober.simulate([0, 1e5], method="rodas5p", rtol=1e-6, atol=1e-10).stats
    # one Jacobian per accepted step (a rejected step retries at the same point), one LU per attempt
    assert st["n_jac"] == st["n_accepted"] > 0 and st["n_lu"] == st["n_accepted"] + st["n_rejected"]
    assert st["n_rhs"] >= 8 * st["n_accepted"] and st["n_switches"] == 0
    st = rober.simulate([0, 1e5], method="bdf", rtol=1e-6, atol=1e-10).stats
    # the Jacobian only when Newton converges slowly; the LU whenever h/alpha or J changes
    assert 0 < st["n_jac"] < st["n_lu"] < st["n_accepted"] + st["n_rejected"] + st["n_jac"]
    assert st["n_rhs"] > st["n_accepted"] and st["n_switches"] == 0


def test_auto_switches_on_stiff_problems_only(models):
    st = models["rober"].simulate([0, 1e5], method="auto", rtol=1e-6, atol=1e-10).stats
    assert st["n_switches"] >= 1 and st["n_jac"] > 0
    assert st["n_jac"] <= st["n_lu"] <= st["n_jac"] + st["n_rejected"]
    # with lam = fast = 1 the exact model is non-stiff like Lotka–Volterra (an oscillator, decays, a
    # limit cycle), and reusing it spares compiling one more model
    exact = models["exact"]
    t = np.linspace(0, 20, 41)
    calm = {"lam": 1.0, "fast": 1.0}
    sol = exact.simulate(t, params=calm, method="auto")
    assert sol.stats["n_switches"] == 0 and sol.stats["n_jac"] == 0 and sol.stats["n_lu"] == 0
    for name, values in exact_solution(t, fast=1.0).items():
        np.testing.assert_allclose(sol[name], values, rtol=0, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("method", STIFF)
def test_failures_report_like_explicit_methods(method, models):
    exact = models["exact"]
    with pytest.raises(NumericalError, match="max_steps=5"):
        exact.simulate([0, 2], method=method, max_steps=5)
    with pytest.raises(NumericalError, match=f"with {method} stopped at t = (0.99|1:).*blow up") as info:
        exact.simulate([0, 2], method=method, params={"blow": 1.0})  # z = 1/(1 - t)
    assert info.value.exit_code == 3
    with pytest.raises(NumericalError, match="stopped at t = 0: the solution became NaN or infinite"):
        exact.simulate([0, 2], method=method, params={"blow": math.nan})


def test_aliases(models):
    assert get_method("rosenbrock") is get_method("rodas5p")
    assert {"rodas5p", "bdf", "auto", "rosenbrock"} <= set(method_names())
    a = models["rober"].simulate([0, 1, 1e5], method="rosenbrock")
    b = models["rober"].simulate([0, 1, 1e5], method="rodas5p")
    np.testing.assert_array_equal(a.y, b.y)
    assert a.method == "rosenbrock"
    with pytest.raises(UsageError, match="unknown method 'rodas'; valid methods: euler.*rosenbrock"):
        get_method("rodas")
    from odedsl.cli import build_parser

    args = build_parser().parse_args(["simulate", "m.ode", "--t-end", "1", "--method", "rosenbrock"])
    assert args.method == "rosenbrock"


@pytest.mark.parametrize("method", ["auto", "bdf"])
def test_ensemble_matches_single_solves(method, models):
    rober = models["rober"]
    t = np.array([0, 1, 100, 1e4])
    k1 = np.array([0.02, 0.04, 0.08])
    ens = rober.simulate_ensemble(t, params={"k1": k1}, method=method)
    assert ens.ok.all()
    for i, value in enumerate(k1):
        np.testing.assert_array_equal(ens.y[i], rober.simulate(t, params={"k1": value}, method=method).y)
