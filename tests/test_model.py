"""The Model IR: every example model's SymPy form, its calculus, and its presentation.

Expected expressions are written by hand with SymPy, so a change in how the front end
builds them (or a wrong sign in a model file) shows up here and not as a wrong
simulation later.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import sympy

import odedsl
from odedsl.model import Model
from odedsl.symbolic import NeuralTerm, neural_terms, relu, sigmoid, softplus

MODELS = Path(__file__).resolve().parents[1] / "models"
MODEL_FILES = sorted(p.stem for p in MODELS.glob("*.ode"))


def real(names: str):
    """Real SymPy symbols, as the compiler makes them."""
    return sympy.symbols(names, real=True)


def same(a, b) -> bool:
    return sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0


def load(stem: str) -> Model:
    return odedsl.load(MODELS / f"{stem}.ode")


def declarations(m: Model) -> dict:
    """Everything declared, in plain Python values, for one-line comparisons."""
    return {
        "params": [(p.name, p.value, p.lower, p.upper, p.fixed) for p in m.params],
        "consts": [(c.name, c.value) for c in m.consts],
        "inputs": [u.name for u in m.inputs],
        "nets": [(n.name, n.n_in, n.n_out, n.hidden, n.activation, n.init_scale, n.n_weights) for n in m.nets],
        "lets": [l.name for l in m.lets],
        "observables": [(o.column, o.expr, None if o.noise is None else (o.noise.kind, o.noise.args))
                        for o in m.observables],
    }


INF = math.inf


# ---------------------------------------------------------------------------
# Every example model, by hand
# ---------------------------------------------------------------------------


def expect_exponential_decay(m: Model) -> None:
    k, x0, x, t = real("k x0 x t")
    assert (m.name, m.description) == ("exponential_decay", "first-order decay, the simplest ODE")
    assert m.time == t
    assert m.state_symbols == [x]
    assert m.initial_values == [x0]  # an initial value may be a (fitted) parameter
    assert m.rhs == [-k * x]
    assert declarations(m) == {
        "params": [("k", 0.5, 0.0, 100.0, False), ("x0", 2.0, 0.0, INF, False)],
        "consts": [], "inputs": [], "nets": [], "lets": [], "observables": [],
    }
    assert m.param("x0").bounded and m.param("k").bounded


def expect_forced_oscillator(m: Model) -> None:
    omega, zeta, mass, force, x, v = real("omega zeta m force x v")
    assert (m.name, m.description) == ("forced_oscillator", "damped spring driven by a measured force")
    assert m.state_symbols == [x, v]
    assert m.initial_values == [0, 0]
    assert all(isinstance(x0, sympy.Integer) for x0 in m.initial_values)
    assert m.rhs[0] == v
    assert same(m.rhs[1], force / mass - 2 * zeta * omega * v - omega**2 * x)
    assert m.input_symbols == [force]
    assert declarations(m) == {
        "params": [("omega", 1.5, 0.0, 20.0, False), ("zeta", 0.1, 0.0, 5.0, False), ("m", 1.0, -INF, INF, True)],
        "consts": [], "inputs": ["force"], "nets": [], "lets": [], "observables": [("position", x, None)],
    }
    assert not m.param("m").bounded
    assert [p.name for p in m.fitted_params] == ["omega", "zeta"]


def expect_harmonic_oscillator(m: Model) -> None:
    omega, x, v = real("omega x v")
    assert (m.name, m.description) == ("harmonic_oscillator", "mass on a spring")
    assert m.state_symbols == [x, v]
    # decimals stay Floats, 0.0 included
    assert m.initial_values == [sympy.Float(1.0), sympy.Float(0.0)]
    assert all(isinstance(x0, sympy.Float) for x0 in m.initial_values)
    assert m.rhs == [v, -omega**2 * x]
    assert declarations(m) == {
        "params": [("omega", 2.0, 0.0, 100.0, False)],
        "consts": [], "inputs": [], "nets": [], "lets": [], "observables": [],
    }


def expect_lotka_volterra(m: Model) -> None:
    alpha, beta, delta, gamma, prey, pred = real("alpha beta delta gamma prey pred")
    assert (m.name, m.description) == ("lotka_volterra", "classical predator–prey dynamics")
    assert m.state_symbols == [prey, pred]
    assert m.initial_values == [sympy.Float(1.0), sympy.Float(1.0)]
    assert m.rhs == [alpha * prey - beta * prey * pred, delta * prey * pred - gamma * pred]
    assert declarations(m) == {
        "params": [(n, v, 0.0, 10.0, False)
                   for n, v in [("alpha", 1.5), ("beta", 1.0), ("delta", 1.0), ("gamma", 3.0)]],
        "consts": [], "inputs": [], "nets": [], "lets": [], "observables": [],
    }
    # beta and gamma are the user's symbols, not SymPy's beta and gamma functions
    assert all(type(p.symbol) is sympy.Symbol for p in m.params)
    assert m.jacobian_states() == sympy.Matrix([[alpha - beta * pred, -beta * prey],
                                                [delta * pred, delta * prey - gamma]])
    assert m.jacobian_params() == sympy.Matrix([[prey, -prey * pred, 0, 0], [0, 0, prey * pred, -pred]])


def expect_lotka_volterra_ude(m: Model) -> None:
    alpha, delta, scale, prey, pred, t = real("alpha delta scale prey pred t")
    U = m.net("U").family
    u0, u1 = U.function(0)(prey, pred), U.function(1)(prey, pred)
    assert (m.name, m.description) == ("lotka_volterra_ude", "predator–prey with a neural interaction term")
    assert m.time == t
    assert m.state_symbols == [prey, pred]
    assert m.initial_values == [sympy.Float("0.44249296"), sympy.Float("4.6280594")]
    assert m.rhs == [alpha * prey + u0, -delta * pred + u1]
    # n_weights by hand: 2->32 (64 + 32), 32->32 (1024 + 32), 32->2 (64 + 2)
    assert declarations(m) == {
        "params": [("alpha", 1.3, 0.0, 10.0, False), ("delta", 1.8, -INF, INF, True)],
        "consts": [("scale", sympy.Float(1.0))],
        "inputs": [],
        "nets": [("U", 2, 2, (32, 32), "tanh", 0.01, 96 + 1056 + 66)],
        "lets": ["I"],
        "observables": [("prey_count", scale * prey, None), ("pred_count", pred, ("normal", (sympy.Float(0.1),)))],
    }
    assert m.const_values == {scale: sympy.Float(1.0)}
    net = m.net("U")
    assert net.layer_sizes == (2, 32, 32, 2)
    assert net.output(1) is U.function(1)
    # the let holds the whole vector output; it is substituted, never a symbol of the rhs
    (let,) = m.lets
    assert let.symbol == sympy.Symbol("I", real=True) and let.symbol != sympy.I
    assert let.expr == sympy.Tuple(u0, u1)
    assert not any(let.symbol in e.free_symbols for e in m.rhs)
    # the chain rule, explicitly: the net's partials are opaque functions at the same arguments
    d = lambda k, i: U.function(k, (i,))(prey, pred)  # noqa: E731
    assert m.jacobian_states() == sympy.Matrix([[alpha + d(0, 0), d(0, 1)], [d(1, 0), -delta + d(1, 1)]])
    assert m.jacobian_states()[0, 0] - alpha == m.net("U").family.function(0, (0,))(prey, pred)
    assert m.jacobian_params() == sympy.Matrix([[prey, 0], [0, -pred]])
    assert m.jacobian_params(fitted_only=True) == sympy.Matrix([[prey], [0]])
    assert m.net_calls() == [odedsl.model.NetCall("U", (prey, pred))]


def expect_robertson(m: Model) -> None:
    k1, k2, k3, y1, y2, y3 = real("k1 k2 k3 y1 y2 y3")
    assert (m.name, m.description) == ("robertson", "stiff chemical kinetics")
    assert m.state_symbols == [y1, y2, y3]
    assert m.initial_values == [1, 0, 0]
    assert m.rhs == [-k1 * y1 + k3 * y2 * y3, k1 * y1 - k3 * y2 * y3 - k2 * y2**2, k2 * y2**2]
    assert same(sum(m.rhs), 0)  # mass is conserved
    assert declarations(m) == {
        "params": [("k1", 0.04, -INF, INF, True), ("k2", 3e7, -INF, INF, True), ("k3", 1e4, -INF, INF, True)],
        "consts": [], "inputs": [], "nets": [], "lets": [], "observables": [],
    }
    assert m.fitted_params == []
    assert m.jacobian_params(fitted_only=True).shape == (3, 0)
    assert m.jacobian_states() == sympy.Matrix([
        [-k1, k3 * y3, k3 * y2],
        [k1, -k3 * y3 - 2 * k2 * y2, -k3 * y2],
        [0, 2 * k2 * y2, 0],
    ])


def expect_hare_lynx(m: Model) -> None:
    alpha, beta, delta, gamma, H0, L0, H, L = real("alpha beta delta gamma H0 L0 H L")
    assert m.name == "hare_lynx"
    assert m.state_symbols == [H, L]
    assert m.initial_values == [H0, L0]  # initial values are fitted parameters
    assert m.rhs == [alpha * H - beta * H * L, delta * H * L - gamma * L]
    assert [(o.column, o.expr, o.noise.kind, o.noise.args) for o in m.observables] == [
        ("hare", H, "lognormal", (sympy.Float(0.25),)), ("lynx", L, "lognormal", (sympy.Float(0.25),))]
    assert [p.name for p in m.fitted_params] == ["alpha", "beta", "delta", "gamma", "H0", "L0"]


def expect_sir(m: Model) -> None:
    # S, I and N are also SymPy objects (sympy.S, sympy.I, sympy.N): here they are plain symbols
    N, beta, gamma, S, I, R, day = real("N beta gamma S I R day")
    assert (m.name, m.description) == ("sir", "susceptible-infected-recovered epidemic")
    assert m.time == day
    assert m.state_symbols == [S, I, R]
    assert m.initial_values == [N - 1, 1, 0]
    infection = beta * S * I / N
    assert m.rhs == [-infection, infection - gamma * I, gamma * I]
    assert same(sum(m.rhs), 0)
    assert declarations(m) == {
        "params": [("beta", 2.0, 0.0, 10.0, False), ("gamma", 0.5, 0.0, 5.0, False)],
        "consts": [("N", sympy.Integer(763))], "inputs": [], "nets": [], "lets": ["infection"],
        "observables": [("in_bed", I, None)],
    }
    assert m.lets[0].expr == infection
    assert m.const_values == {N: 763}
    assert m.jacobian_params() == sympy.Matrix([[-S * I / N, 0], [S * I / N, -I], [0, I]])


def expect_spiral_neural_ode(m: Model) -> None:
    z1, z2 = real("z1 z2")
    f = m.net("f").family
    assert (m.name, m.description) == ("spiral_neural_ode", "neural ODE learning a 2-D spiral")
    assert m.state_symbols == [z1, z2]
    assert m.initial_values == [sympy.Float(2.0), sympy.Float(0.0)]
    assert m.rhs == [f.function(0)(z1, z2), f.function(1)(z1, z2)]
    # 2->50 (100 + 50), 50->2 (100 + 2)
    assert declarations(m) == {
        "params": [], "consts": [], "inputs": [], "nets": [("f", 2, 2, (50,), "tanh", 0.1, 252)],
        "lets": [], "observables": [],
    }
    assert m.jacobian_states() == sympy.Matrix(
        2, 2, lambda i, j: f.function(i, (j,))(z1, z2))
    assert m.jacobian_params().shape == (2, 0)
    # the two outputs at the same arguments are one evaluation of the net
    assert m.net_calls() == [odedsl.model.NetCall("f", (z1, z2))]


def expect_van_der_pol(m: Model) -> None:
    mu, x, y = real("mu x y")
    assert (m.name, m.description) == ("van_der_pol", "relaxation oscillator")
    assert m.state_symbols == [x, y]
    assert m.initial_values == [sympy.Float(2.0), sympy.Float(0.0)]
    assert m.rhs[0] == y
    assert same(m.rhs[1], mu * (1 - x**2) * y - x)
    assert declarations(m) == {
        "params": [("mu", 1.0, 0.0, 1e6, False)],
        "consts": [], "inputs": [], "nets": [], "lets": [], "observables": [],
    }
    J = m.jacobian_states()
    assert (J[0, 0], J[0, 1]) == (0, 1)
    assert same(J[1, 0], -2 * mu * x * y - 1)
    assert same(J[1, 1], mu * (1 - x**2))
    assert same(m.jacobian_params()[1, 0], (1 - x**2) * y)


EXPECTED = {name[len("expect_"):]: f for name, f in dict(globals()).items() if name.startswith("expect_")}


def test_every_example_model_has_expectations():
    assert sorted(EXPECTED) == MODEL_FILES


@pytest.mark.parametrize("stem", MODEL_FILES)
def test_example_model(stem):
    m = load(stem)
    EXPECTED[stem](m)
    assert m.warnings == []
    assert m.filename.endswith(f"{stem}.ode")
    assert m.source == (MODELS / f"{stem}.ode").read_text(encoding="utf-8")
    assert m.source_hash == hashlib.sha256(m.source.encode()).hexdigest()


@pytest.mark.parametrize("stem", MODEL_FILES)
def test_every_symbol_is_a_plain_real_symbol(stem):
    m = load(stem)
    symbols = [m.time, *m.state_symbols, *m.param_symbols, *m.input_symbols, *m.const_values]
    symbols += [l.symbol for l in m.lets]
    for s in symbols:
        assert type(s) is sympy.Symbol and s.is_real is True
    free = set().union(*(e.free_symbols for e in m.rhs))
    assert free <= set(symbols)
    assert not free & {l.symbol for l in m.lets}


# ---------------------------------------------------------------------------
# Calculus on every example model
# ---------------------------------------------------------------------------


def diff_matrix(exprs, wrt) -> sympy.Matrix:
    return sympy.Matrix(len(exprs), len(wrt), lambda i, j: sympy.diff(exprs[i], wrt[j]))


def assert_elementwise(J: sympy.Matrix, expected: sympy.Matrix) -> None:
    assert J.shape == expected.shape
    for i in range(J.rows):
        for j in range(J.cols):
            assert same(J[i, j], expected[i, j]), (i, j, J[i, j], expected[i, j])


@pytest.mark.parametrize("stem", MODEL_FILES)
def test_jacobians_match_sympy_diff(stem):
    m = load(stem)
    assert_elementwise(m.jacobian_states(), diff_matrix(m.rhs, m.state_symbols))
    assert_elementwise(m.jacobian_params(), diff_matrix(m.rhs, m.param_symbols))
    fitted = [p.symbol for p in m.fitted_params]
    assert_elementwise(m.jacobian_params(fitted_only=True), diff_matrix(m.rhs, fitted))
    # a Jacobian of chosen expressions (here the observables) with respect to chosen symbols
    obs = [o.expr for o in m.observables]
    assert_elementwise(m.jacobian(m.state_symbols, obs), diff_matrix(obs, m.state_symbols))


@pytest.mark.parametrize("stem", MODEL_FILES)
def test_jacobian_is_mutable_and_sized(stem):
    m = load(stem)
    J = m.jacobian_states()
    assert isinstance(J, sympy.MatrixBase) and not isinstance(J, sympy.ImmutableMatrix)
    assert J.shape == (len(m.states), len(m.states))
    assert m.jacobian_params().shape == (len(m.states), len(m.params))
    assert m.jacobian_params(fitted_only=True).shape == (len(m.states), len(m.fitted_params))


@pytest.mark.parametrize("stem", MODEL_FILES)
def test_example_models_are_autonomous(stem):
    m = load(stem)
    assert m.time_derivative() == [0] * len(m.states)


@pytest.mark.parametrize("stem", MODEL_FILES)
def test_cse_substituted_back_gives_the_rhs(stem):
    m = load(stem)
    replacements, reduced = m.cse()
    assert len(reduced) == len(m.rhs)
    for temp, _ in replacements:
        assert isinstance(temp, sympy.Dummy)
    assert [substitute_back(e, replacements) for e in reduced] == m.rhs


def substitute_back(e, replacements):
    for temp, value in reversed(replacements):
        e = e.subs(temp, value)
    return e


def test_cse_finds_the_shared_product():
    m = load("lotka_volterra")
    prey, pred = real("prey pred")
    replacements, reduced = m.cse()
    assert [v for _, v in replacements] == [prey * pred]
    assert [substitute_back(e, replacements) for e in reduced] == m.rhs


def test_cse_of_chosen_expressions():
    m = load("van_der_pol")
    exprs = list(m.jacobian_states())
    replacements, reduced = m.cse(exprs)
    assert [substitute_back(e, replacements) for e in reduced] == exprs


# ---------------------------------------------------------------------------
# Models written for one feature each
# ---------------------------------------------------------------------------


def test_time_derivative_of_explicitly_time_dependent_rhs():
    m = odedsl.loads("state x = 1\nstate y = 0\nder(x) = sin(t)*x\nder(y) = -y\n")
    t, x = real("t x")
    assert m.time_derivative() == [sympy.cos(t) * x, 0]


def test_time_derivative_with_a_renamed_time_treats_inputs_as_frozen():
    m = odedsl.loads("time s\ninput u\nparam w = 2\nstate x = 1\nder(x) = exp(-w*s)*x + u\n")
    s, w, x = real("s w x")
    assert m.time == s
    assert same(m.time_derivative()[0], -w * sympy.exp(-w * s) * x)


NETS = """
nn U: 2 -> 2, hidden = [4]
state x = 1
state y = 2
"""


def test_net_calls_same_arguments_are_one_call():
    m = odedsl.loads(NETS + "der(x) = U(x, y)[0]*U(x, y)[1]\nder(y) = U(x, y)[1] - y\nobserve o = U(x, y)[0]\n")
    x, y = real("x y")
    assert m.net_calls() == [odedsl.model.NetCall("U", (x, y))]


def test_net_calls_different_arguments_are_two_calls():
    m = odedsl.loads(NETS + "der(x) = U(x, y)[0]\nder(y) = U(y, x)[1] + U(x, 2*y)[0]\n")
    x, y = real("x y")
    calls = m.net_calls()
    assert len(calls) == 3
    assert {c.args for c in calls} == {(x, y), (y, x), (x, 2 * y)}
    assert calls[0] == odedsl.model.NetCall("U", (x, y))  # rhs order first
    assert m.net_calls([m.rhs[0]]) == [odedsl.model.NetCall("U", (x, y))]
    assert m.net_calls() == m.net_calls()  # stable


def test_net_calls_include_observables_and_partials_share_the_call():
    m = odedsl.loads(NETS + "der(x) = -x\nder(y) = -y\nobserve o = U(x, y)[1] + U(y, y)[0]\n")
    x, y = real("x y")
    assert {c.args for c in m.net_calls()} == {(x, y), (y, y)}
    assert m.net_calls(m.rhs) == []
    # a net output and its partials at the same arguments are one evaluation
    J = m.jacobian(m.state_symbols, [m.observables[0].expr])
    assert {c.args for c in m.net_calls(list(J))} == {(x, y), (y, y)}


def test_net_calls_through_a_let_are_the_same_call():
    m = odedsl.loads(NETS + "let v = U(x, y)\nder(x) = v[0]\nder(y) = U(x, y)[1]\n")
    x, y = real("x y")
    assert m.net_calls() == [odedsl.model.NetCall("U", (x, y))]


def test_single_output_net_needs_no_index():
    m = odedsl.loads("nn g: 1 -> 1, hidden = []\nstate x = 1\nder(x) = g(x) + g(x)[0]\n")
    x = real("x")
    g = m.net("g")
    assert m.rhs == [2 * g.output(0)(x)]
    assert g.n_weights == 2 and g.hidden == ()
    assert m.jacobian_states()[0, 0] == 2 * g.family.function(0, (0,))(x)


def test_net_options_and_defaults():
    m = odedsl.loads(
        "nn A: 3 -> 1\n"
        "nn B: 1 -> 2, hidden = [5, 6, 7], activation = softplus, init_scale = 0\n"
        "nn C: 2 -> 1, hidden = 8, activation = relu\n"
        "state x = 1\nder(x) = A(x, x, x) + B(x)[1] + C(x, x)\n"
    )
    assert declarations(m)["nets"] == [
        ("A", 3, 1, (32, 32), "tanh", 0.01, (3 * 32 + 32) + (32 * 32 + 32) + (32 + 1)),
        ("B", 1, 2, (5, 6, 7), "softplus", 0.0, (5 + 5) + (30 + 6) + (42 + 7) + (14 + 2)),
        ("C", 2, 1, (8,), "relu", 0.01, (16 + 8) + (8 + 1)),
    ]


def test_lets_refer_to_lets_in_any_declaration_order():
    m = odedsl.loads(
        "param k = 2\nstate x = 1\n"
        "let c = b + a\n"
        "let b = k*a\n"
        "let a = x^2\n"
        "der(x) = c - a\n"
    )
    k, x = real("k x")
    assert [l.name for l in m.lets] == ["a", "b", "c"]  # dependency order
    assert [l.expr for l in m.lets] == [x**2, k * x**2, k * x**2 + x**2]
    assert same(m.rhs[0], k * x**2)
    assert m.rhs[0].free_symbols == {k, x}


def test_lets_used_in_observables_and_noise():
    m = odedsl.loads(
        "param s = 0.2 in [0, 1]\nstate x = 1\nlet y = 3*x\nlet sd = s*y\nder(x) = -x\n"
        "observe total = y ~ lognormal(sd)\n"
    )
    s, x = real("s x")
    (o,) = m.observables
    assert (o.column, o.expr, o.noise.kind, o.noise.args) == ("total", 3 * x, "lognormal", (3 * s * x,))


def test_if_then_else_is_piecewise_with_and_or_not():
    m = odedsl.loads(
        "state x = 1\nstate y = 1\n"
        "der(x) = if x > 1 and x < 2 or not y == 3 then x else -y\n"
        "der(y) = if x <= 0 then 0 else if x >= 10 then 1 else x/10\n"
    )
    x, y = real("x y")
    cond = sympy.Or(sympy.And(x > 1, x < 2), sympy.Not(sympy.Eq(y, 3)))
    assert m.rhs[0] == sympy.Piecewise((x, cond), (-y, True))
    assert m.rhs[0].args[0].cond == sympy.Or(sympy.And(x > 1, x < 2), sympy.Ne(y, 3))
    assert m.rhs[1] == sympy.Piecewise((0, x <= 0), (sympy.Piecewise((1, x >= 10), (x / 10, True)), True))
    assert [m.rhs[1].subs(x, v) for v in (-1, 5, 20)] == [0, sympy.Rational(1, 2), 1]
    J = m.jacobian_states()
    assert J[0, 0] == sympy.Piecewise((1, cond), (0, True))
    assert J[0, 1] == sympy.Piecewise((0, cond), (-1, True))
    assert [J[1, 0].subs(x, v) for v in (-1, 5, 20)] == [0, sympy.Rational(1, 10), 0]


def test_comparisons():
    m = odedsl.loads(
        "state x = 1\n"
        "der(x) = (if x < 1 then 1 else 0) + (if x != 2 then 2 else 0) + (if x == 3 then 3 else 0)"
        " + (if x >= 4 then 4 else 0)\n"
    )
    x = real("x")
    pieces = [c for _, c in (p.args[0] for p in m.rhs[0].args)]
    assert set(pieces) == {sympy.Lt(x, 1), sympy.Ne(x, 2), sympy.Eq(x, 3), sympy.Ge(x, 4)}


def test_min_and_max():
    m = odedsl.loads("param c = 2\nstate x = 1\nstate y = 1\nder(x) = min(x, y)\nder(y) = max(x, c, y, 1)\n")
    c, x, y = real("c x y")
    assert m.rhs == [sympy.Min(x, y), sympy.Max(x, c, y, 1)]
    assert_elementwise(m.jacobian_states(), diff_matrix(m.rhs, [x, y]))
    assert m.jacobian_states()[0, 0] == sympy.Heaviside(y - x)


def test_activation_derivatives():
    m = odedsl.loads("param k = 2\nstate x = 1\nder(x) = sigmoid(k*x) + softplus(x) + relu(x - 1)\n")
    k, x = real("k x")
    s = sigmoid(k * x)
    assert m.rhs == [s + softplus(x) + relu(x - 1)]
    assert same(m.jacobian_states()[0, 0], k * s * (1 - s) + sigmoid(x) + sympy.Heaviside(x - 1, 0))
    assert same(m.jacobian_params()[0, 0], x * s * (1 - s))


def test_sign_and_abs_derivatives_drop_the_dirac_delta():
    m = odedsl.loads("state x = 1\nder(x) = sign(x)*x + abs(x)\n")
    x = real("x")
    assert sympy.diff(m.rhs[0], x).has(sympy.DiracDelta)
    assert m.jacobian_states()[0, 0] == 2 * sympy.sign(x)


def test_jacobian_skips_absent_symbols_and_zeros():
    m = odedsl.loads("param a = 1\nparam b = 2\nstate x = 1\nstate y = 1\nder(x) = a*x\nder(y) = x - x + b\n")
    a, b, x, y = real("a b x y")
    assert m.rhs == [a * x, b]
    assert m.jacobian_states() == sympy.Matrix([[a, 0], [0, 0]])
    assert m.jacobian_params() == sympy.Matrix([[x, 0], [0, 1]])


def test_lookups_by_name():
    m = load("lotka_volterra_ude")
    assert m.state("pred").initial == sympy.Float("4.6280594")
    assert m.param("delta").fixed
    assert m.net("U").n_out == 2
    with pytest.raises(KeyError, match="no parameter named 'beta'; the model's are: alpha, delta"):
        m.param("beta")
    with pytest.raises(KeyError, match="no state named 'x'"):
        m.state("x")
    with pytest.raises(KeyError, match="no neural network named 'V'"):
        m.net("V")


# ---------------------------------------------------------------------------
# Names that mean something to Python or SymPy
# ---------------------------------------------------------------------------

HOSTILE = """\
model hostile
time lambda
param import = 1.5
param self = 2
param print = 3 in [0, 10]
param class = 0.5 fixed
param def = 0.25
param S = 3
param I = 0.1
param N = 10
param E = 2.5
param O = 1
param Q = 4
param beta = 0.2
param gamma = 0.3
param pi = 3
param zeta = 0.7
param exp = 1.2
param oo = 5
param zoo = 6
param nan = 7
param Symbol = 8
param Float = 9
param None = 10
param True = 11
param __import__ = 12
param __class__ = 13
param _t0 = 14
const sum = 2
input len
state x = sum*S
state y = I
der(x) = import*x - self*y + print*lambda + class*def*S + I*N*E*O*Q + len
dy/dlambda = beta*x*y - gamma*y + pi*zeta*exp + oo + zoo + nan + Symbol*Float*None*True + __import__*__class__*_t0
observe print = x + pi
"""

HOSTILE_NAMES = ["lambda", "import", "self", "print", "class", "def", "S", "I", "N", "E", "O", "Q", "beta", "gamma",
                 "pi", "zeta", "exp", "oo", "zoo", "nan", "Symbol", "Float", "None", "True", "__import__", "__class__",
                 "_t0", "sum", "len", "x", "y"]


def test_python_and_sympy_names_are_plain_real_symbols():
    m = odedsl.loads(HOSTILE, name="hostile.ode")
    assert m.warnings == []
    sym = {n: sympy.Symbol(n, real=True) for n in HOSTILE_NAMES}
    g = sym.__getitem__
    assert m.time == g("lambda")
    expected = [
        g("import") * g("x") - g("self") * g("y") + g("print") * g("lambda") + g("class") * g("def") * g("S")
        + g("I") * g("N") * g("E") * g("O") * g("Q") + g("len"),
        g("beta") * g("x") * g("y") - g("gamma") * g("y") + g("pi") * g("zeta") * g("exp") + g("oo") + g("zoo")
        + g("nan") + g("Symbol") * g("Float") * g("None") * g("True") + g("__import__") * g("__class__") * g("_t0"),
    ]
    assert m.rhs == expected
    assert m.initial_values == [g("sum") * g("S"), g("I")]
    assert m.observables[0].expr == g("x") + g("pi")
    free = set().union(*(e.free_symbols for e in m.rhs))
    assert {s.name for s in free} == set(HOSTILE_NAMES) - {"sum"}
    for s in free | {m.time}:
        assert type(s) is sympy.Symbol and s.is_real is True
    for e in m.rhs:
        for special in (sympy.I, sympy.pi, sympy.E, sympy.oo, sympy.zoo, sympy.nan, sympy.S.Half):
            assert not e.has(special)
        assert not e.has(sympy.exp, sympy.beta, sympy.gamma, sympy.zeta)
    # the Jacobian and CSE treat them as ordinary symbols, and CSE's temporaries never collide with '_t0'
    assert m.jacobian_states()[1, 1] == g("beta") * g("x") - g("gamma")
    replacements, reduced = m.cse()
    assert [substitute_back(e, replacements) for e in reduced] == m.rhs
    assert not {t for t, _ in replacements} & free
    # and every presentation prints them by name
    text = str(m)
    assert "d(y)/dlambda" in text and "__class__*__import__*_t0" in text
    data = json.loads(json.dumps(m.to_dict()))
    assert [p["name"] for p in data["params"]][:3] == ["import", "self", "print"]
    assert data["inputs"] == ["len"]


def test_declared_pi_shadows_the_builtin_constant():
    m = odedsl.loads("param pi = 3\nstate x = pi\nder(x) = -pi*x\n")
    pi, x = real("pi x")
    assert m.rhs == [-pi * x] and m.initial_values == [pi]
    assert m.jacobian_params() == sympy.Matrix([[-x]])
    builtin = odedsl.loads("state x = pi\nder(x) = -pi*x\n")
    assert builtin.rhs == [-sympy.pi * x] and builtin.initial_values == [sympy.pi]
    assert builtin.params == []


def test_declared_name_of_a_function_cannot_also_be_called():
    m = odedsl.loads("param exp = 2\nstate x = 1\nder(x) = -exp*x\n")
    assert m.rhs == [-sympy.Symbol("exp", real=True) * sympy.Symbol("x", real=True)]
    with pytest.raises(odedsl.ModelError) as info:
        odedsl.loads("param exp = 2\nstate x = 1\nder(x) = exp(x)*exp\n")
    (d,) = info.value.diagnostics
    assert (d.line, d.column) == (3, 10)
    assert d.message == "'exp' is a parameter, not a function"


# ---------------------------------------------------------------------------
# Presentation
# ---------------------------------------------------------------------------


def test_str_of_a_hybrid_model():
    text = str(load("lotka_volterra_ude"))
    for piece in [
        'model lotka_volterra_ude  "predator–prey with a neural interaction term"',
        "equations",
        "  d(prey)/dt = alpha*prey + U(prey, pred)[0]",
        "  d(pred)/dt = -delta*pred + U(prey, pred)[1]",
        "initial values",
        "  prey(0) = 0.44249296",
        "  name   value  bounds   status",
        "parameters",
        "  alpha  1.3    [0, 10]  fitted",
        "  delta  1.8             fixed\n",
        "constants",
        "  scale = 1.0",
        "neural networks",
        "  U: 2 -> 2, hidden = [32, 32], activation = tanh, 1218 weights",
        "observables",
        "  prey_count = prey*scale",
        "  pred_count = pred  ~ normal(0.1",
    ]:
        assert piece in text, piece


def test_str_shows_inputs_and_renamed_time():
    assert "  force  (from the data column 'force')" in str(load("forced_oscillator"))
    assert "  d(S)/dday = -I*S*beta/N" in str(load("sir"))


def test_repr_is_the_summary():
    assert repr(load("lotka_volterra_ude")) == (
        "<Model lotka_volterra_ude: 2 states, 2 params (1 fitted), 1 net (1218 weights), 2 observables>"
    )
    assert repr(load("spiral_neural_ode")) == "<Model spiral_neural_ode: 2 states, 0 params, 1 net (252 weights)>"
    assert load("forced_oscillator").summary() == (
        "forced_oscillator: 2 states, 3 params (2 fitted), 1 input, 1 observable"
    )


def test_latex():
    latex = load("lotka_volterra_ude")._repr_latex_()
    assert latex.startswith("\\begin{align}\n") and latex.endswith("\n\\end{align}")
    assert "\\frac{d prey}{d t} &= \\alpha prey + U_{0}\\left(prey, pred\\right)" in latex
    assert "\\frac{d pred}{d t} &= - \\delta pred + U_{1}\\left(prey, pred\\right)" in latex
    assert " \\\\\n" in latex
    assert "\\frac{d S}{d day}" in load("sir")._repr_latex_()


@pytest.mark.parametrize("stem", MODEL_FILES)
def test_to_dict_is_json_and_complete(stem):
    m = load(stem)
    d = json.loads(json.dumps(m.to_dict()))
    assert d["name"] == m.name and d["description"] == m.description and d["time"] == m.time.name
    assert [s["name"] for s in d["states"]] == [s.name for s in m.states]
    assert [s["rhs"] for s in d["states"]] == [sympy.sstr(e) for e in m.rhs]
    assert [s["initial"] for s in d["states"]] == [sympy.sstr(e) for e in m.initial_values]
    assert [p["name"] for p in d["params"]] == [p.name for p in m.params]
    assert [c["name"] for c in d["consts"]] == [c.name for c in m.consts]
    assert d["inputs"] == [u.name for u in m.inputs]
    assert [n["n_weights"] for n in d["nets"]] == [n.n_weights for n in m.nets]
    assert [o["column"] for o in d["observables"]] == [o.column for o in m.observables]


def test_to_dict_values():
    d = json.loads(json.dumps(load("exponential_decay").to_dict()))
    assert d["states"] == [{"name": "x", "initial": "x0", "rhs": "-k*x"}]
    assert d["params"] == [
        {"name": "k", "value": 0.5, "lower": 0.0, "upper": 100.0, "fixed": False},
        {"name": "x0", "value": 2.0, "lower": 0.0, "upper": "inf", "fixed": False},
    ]
    d = json.loads(json.dumps(load("lotka_volterra_ude").to_dict()))
    assert d["params"][1] == {"name": "delta", "value": 1.8, "lower": "-inf", "upper": "inf", "fixed": True}
    assert d["nets"] == [{"name": "U", "n_in": 2, "n_out": 2, "hidden": [32, 32], "activation": "tanh",
                          "init_scale": 0.01, "n_weights": 1218}]
    assert d["lets"] == [{"name": "I", "value": "(U(prey, pred)[0], U(prey, pred)[1])"}]
    assert d["observables"][1]["noise"]["kind"] == "normal"
    assert float(d["observables"][1]["noise"]["args"][0]) == 0.1
    assert d["observables"][0] == {"column": "prey_count", "expr": "prey*scale", "noise": None}
    assert d["consts"] == [{"name": "scale", "value": "1.00000000000000"}]


def test_neural_terms_of_the_ude_rhs():
    m = load("lotka_volterra_ude")
    terms = set().union(*(neural_terms(e) for e in m.rhs))
    assert {(t.net, t.output, t.wrt) for t in terms} == {("U", 0, ()), ("U", 1, ())}
    assert all(isinstance(t, NeuralTerm) for t in terms)
    partials = set().union(*(neural_terms(e) for e in m.jacobian_states()))
    assert {(t.output, t.wrt) for t in partials} == {(k, (i,)) for k in (0, 1) for i in (0, 1)}
