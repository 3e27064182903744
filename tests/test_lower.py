"""Lowering: numbers, constants, bounds and the arithmetic errors only evaluation reveals."""

from __future__ import annotations

import math
import time

import pytest
import sympy

import odedsl


def real(names: str):
    return sympy.symbols(names, real=True)


X = real("x")


def rhs(expr: str, decls: str = "") -> sympy.Expr:
    """The right-hand side of ``der(x) = expr``."""
    return odedsl.loads(f"{decls}state x = 1\nder(x) = {expr}\n").rhs[0]


def error(text: str):
    """The single diagnostic ``text`` raises."""
    with pytest.raises(odedsl.ModelError) as info:
        odedsl.loads(text)
    (d,) = info.value.diagnostics
    return d


# ---------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------


def test_integer_literals_are_exact_integers():
    m = odedsl.loads("const c = 12345678901234567890123\nstate x = 3\nder(x) = 2*x + c\n")
    assert m.initial_values == [3] and isinstance(m.initial_values[0], sympy.Integer)
    assert m.consts[0].value == sympy.Integer(12345678901234567890123)
    assert isinstance(m.consts[0].value, sympy.Integer)
    assert m.rhs == [2 * X + real("c")]
    assert isinstance(m.rhs[0].coeff(X), sympy.Integer)


def test_division_of_integers_is_an_exact_rational():
    assert rhs("1/3*x") == sympy.Rational(1, 3) * X
    assert rhs("x/3") == X / 3
    m = odedsl.loads("const a = 2\nconst b = a/3\nstate x = b\nder(x) = -x\n")
    assert m.consts[1].value == sympy.Rational(2, 3) and isinstance(m.consts[1].value, sympy.Rational)
    assert rhs("1/3 + 1/6") == sympy.Rational(1, 2)


@pytest.mark.parametrize("text, value", [
    ("2.5", 2.5), ("1e-3", 1e-3), ("1E3", 1000.0), (".5", 0.5), ("1.", 1.0), ("0.0", 0.0), ("2.5e+2", 250.0),
])
def test_decimals_are_floats(text, value):
    m = odedsl.loads(f"state x = {text}\nder(x) = {text}*x\n")
    (x0,) = m.initial_values
    assert isinstance(x0, sympy.Float) and float(x0) == value
    if value:
        coeff = m.rhs[0].as_coeff_Mul()[0]
        assert isinstance(coeff, sympy.Float) and float(coeff) == value
    else:
        assert m.rhs == [0]


def test_a_float_keeps_its_decimal_value():
    # parsed from the text, so 0.1 is the double nearest to 0.1, not 0.1000000000000000055...
    m = odedsl.loads("param k = 0.1\nconst c = 0.1\nstate x = 1\nder(x) = -k*c*x\n")
    assert m.param("k").value == 0.1
    assert float(m.consts[0].value) == 0.1


def test_powers_keep_integer_exponents():
    e = rhs("x^2")
    assert e == sympy.Pow(X, 2) and isinstance(e.exp, sympy.Integer)
    assert rhs("x**2") == e
    assert rhs("x^-1") == 1 / X
    assert rhs("x^0.5").exp == sympy.Float(0.5) and isinstance(rhs("x^0.5").exp, sympy.Float)
    assert rhs("x^(1/2)") == sympy.sqrt(X)
    assert rhs("2^-1") == sympy.Rational(1, 2)
    assert rhs("2^3^2") == 512  # right-associative
    assert rhs("-x^2") == -(X**2)  # binds tighter than unary minus
    assert rhs("(-x)^2") == X**2
    assert rhs("0^0") == 1


def test_builtin_pi():
    e = rhs("pi*x")
    assert e == sympy.pi * X and e.has(sympy.pi)
    m = odedsl.loads("const half = pi/2\nparam w = 2*pi\nstate x = pi\nder(x) = -w*x + half\n")
    assert m.initial_values == [sympy.pi]
    assert m.consts[0].value == sympy.pi / 2
    assert m.param("w").value == pytest.approx(2 * math.pi, rel=1e-15)


def test_inf_in_bounds_gives_float_infinities():
    m = odedsl.loads(
        "param a = 1 in [0, inf]\nparam b = -1 in [-inf, 0]\nparam c = 0 in [-inf, inf]\n"
        "param d = 2 in [1, 2*inf]\nstate x = 1\nder(x) = a + b + c + d\n"
    )
    assert [(p.lower, p.upper) for p in m.params] == [(0.0, math.inf), (-math.inf, 0.0), (-math.inf, math.inf),
                                                      (1.0, math.inf)]
    assert all(type(p.lower) is float and type(p.upper) is float for p in m.params)
    assert [p.bounded for p in m.params] == [True, True, False, True]


def test_param_values_and_bounds_from_constant_expressions():
    m = odedsl.loads(
        "const c = 1.5\nconst n = 4\n"
        "param k = 2*c in [c - 1, n*c]\nparam r = sqrt(n) + c^2 fixed\nparam e = exp(-1)\n"
        "state x = k\nder(x) = -k*r*e*x\n"
    )
    k = m.param("k")
    assert (k.value, k.lower, k.upper, k.fixed) == (3.0, 0.5, 6.0, False)
    assert type(k.value) is float
    assert m.param("r").value == 4.25 and m.param("r").fixed
    assert m.param("e").value == pytest.approx(math.exp(-1), rel=1e-15)
    # in equations and initial values, consts and params stay symbols
    c, kk = real("c k")
    assert m.initial_values == [kk]
    assert not m.rhs[0].has(c)


def test_consts_in_dependency_order_and_exact():
    m = odedsl.loads("const c = b*2\nconst b = a + 1/2\nconst a = 1\nstate x = c\nder(x) = -x\n")
    assert [(c.name, c.value) for c in m.consts] == [("a", 1), ("b", sympy.Rational(3, 2)), ("c", 3)]
    a, b, c = real("a b c")
    assert m.const_values == {a: 1, b: sympy.Rational(3, 2), c: 3}


def test_initial_values_may_use_params_and_consts():
    m = odedsl.loads("const n = 10\nparam f = 0.1 in [0, 1]\n"
                     "state x = f*n\nstate y = n - f*n\nder(x) = -x\nder(y) = x\n")
    f, n = real("f n")
    assert m.initial_values == [f * n, n - f * n]


def test_unary_plus_and_functions():
    assert rhs("+x") == X
    assert rhs("atan2(x, 1) + log10(x) + log2(x)") == sympy.atan2(X, 1) + sympy.log(X, 10) + sympy.log(X, 2)
    assert rhs("sqrt(4)") == 2
    assert rhs("abs(-3) + sign(-2)") == 2


# ---------------------------------------------------------------------------
# what only arithmetic reveals
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, where, message", [
    ("state x = 1\nder(x) = x/(1 - 1)\n", (2, 12), "division by zero"),
    ("state x = 1\nder(x) = x/0.0\n", (2, 12), "division by zero"),
    ("state x = 1\nder(x) = 0.0^-1\n", (2, 10), "this power divides by zero (0 to a negative power)"),
    ("state x = 1\nder(x) = log(0)*x\n", (2, 10), "this expression divides by zero"),
    ("state x = 1\nder(x) = atan2(0, 0) + x\n", (2, 10), "this expression divides by zero"),
    ("state x = 1\nder(x) = sqrt(-1)*x\n", (2, 10), "this expression evaluates to a complex number"),
    ("state x = 1\nder(x) = acos(2)*x\n", (2, 10), "this expression evaluates to a complex number"),
    ("state x = 1\nder(x) = (-1)^0.5*x\n", (2, 10), "this expression evaluates to a complex number"),
    ("state x = 1\nder(x) = atanh(1) + x\n", (2, 10), "this expression is infinite"),
    ("state x = 1\nder(x) = 1e308*10*x\n", (2, 10), "this constant is too large for double precision"),
    ("state x = 1\nder(x) = exp(1000)*x\n", (2, 10), "this constant is too large for double precision"),
    ("state x = 1\nder(x) = x + 1e300*1e300\n", (2, 14), "this constant is too large for double precision"),
    ("state x = 1\nder(x) = x/(1e-300*1e-300)\n", (2, 10), "this constant is too large for double precision"),
    ("state x = 1\nder(x) = 2^-2000*x\n", (2, 10),
     "this constant is too small for double precision (it would be rounded to zero)"),
    ("param k = sqrt(-2)\nstate x = 1\nder(x) = -k*x\n", (1, 11), "this expression evaluates to a complex number"),
    ("const c = acos(2)\nstate x = c\nder(x) = -x\n", (1, 11), "this expression evaluates to a complex number"),
    ("param k = 1 in [0*inf, 2]\nstate x = 1\nder(x) = -k*x\n", (1, 17), "this expression divides by zero"),
])
def test_arithmetic_errors(text, where, message):
    d = error(text)
    assert ((d.line, d.column), d.message) == (where, message)


def test_bounds_errors():
    d = error("param k = 1 in [2, 1]\nstate x = 1\nder(x) = -k*x\n")
    assert d.message == "the lower bound 2 is not below the upper bound 1"
    d = error("param k = 5 in [0, 1]\nstate x = 1\nder(x) = -k*x\n")
    assert d.message == "the value 5 of 'k' is outside its bounds [0, 1]" and (d.line, d.column) == (1, 11)


# Regressions: each of these used to escape as a Python exception or hang.

@pytest.mark.parametrize("expr, message", [
    # SymPy raised TypeError ("Invalid comparison of non-real zoo") / ValueError ("not comparable")
    ("if x < log(0) then 1 else 2", "this expression divides by zero"),
    ("if x < sqrt(-1) then 1 else 2", "this expression evaluates to a complex number"),
    ("if x < acos(2) then 1 else 2", "this expression evaluates to a complex number"),
    ("if log(0) < 1 then 1 else 2", "this expression divides by zero"),
    ("min(x, sqrt(-1))", "this expression evaluates to a complex number"),
    ("max(x, log(0))", "this expression divides by zero"),
    # math.log10(0.0): ValueError, because Float(0.0) != 0 in SymPy
    ("0.0^-2", "this power divides by zero (0 to a negative power)"),
    # SymPy computed these exactly, practically forever
    ("2^(-10^10)", "this constant is too small for double precision (it would be rounded to zero)"),
    ("(1/3)^(10^100)", "this constant is too small for double precision (it would be rounded to zero)"),
    ("sqrt(2)^(10^300)", "this constant is too large for double precision"),
    ("(2*x)^(10^10)", "this constant is too large for double precision"),
    ("(sqrt(3)*x)^(-10^10)", "this constant is too small for double precision (it would be rounded to zero)"),
    ("exp(exp(exp(10)))*x", "this constant is too large for double precision"),
])
def test_constants_sympy_cannot_compare_or_evaluate_are_reported(expr, message):
    start = time.perf_counter()
    d = error(f"state x = 1\nder(x) = {expr}\n")
    assert d.message == message
    assert time.perf_counter() - start < 5


def test_huge_constant_in_a_parameter_value_is_reported_not_evaluated():
    start = time.perf_counter()
    d = error("param k = exp(exp(exp(100)))\nstate x = 1\nder(x) = -k*x\n")
    assert (d.line, d.column, d.message) == (1, 15, "this constant is too large for double precision")
    assert time.perf_counter() - start < 5


def test_net_outputs_at_numeric_arguments_are_not_numbers():
    m = odedsl.loads("nn U: 1 -> 1, hidden = []\nstate x = 1\nder(x) = min(U(1.0), x) + (if U(2) > 0 then 1 else 0)\n")
    U = m.net("U").output(0)
    assert m.rhs[0] == sympy.Min(U(sympy.Float(1.0)), X) + sympy.Piecewise((1, U(2) > 0), (0, True))


def test_large_symbolic_powers_are_fine():
    assert rhs("x^(10^100)") == X ** (10**100)
    assert rhs("(x + 1)^(10^10)") == (X + 1) ** (10**10)
    assert rhs("(0.5*x)^2") == 0.25 * X**2


def test_underflow_within_range_is_allowed():
    assert rhs("2^-1000*x") == sympy.Rational(1, 2**1000) * X
    assert rhs("2^-1074*x") == sympy.Rational(1, 2**1074) * X  # the smallest double
    assert rhs("1e-300*1e-300*x") == sympy.Float("1e-600") * X  # a Float: no cost, and it is what the file says
    assert rhs("exp(-700)*x") == sympy.exp(-700) * X


def test_an_if_inside_a_condition_is_folded_out():
    assert rhs("if 0 < (if x > 1 then 0 else 1) then x else 0") == sympy.Piecewise((X, X <= 1), (0, True))
    # a net at constant inputs makes a condition without symbols, which SymPy's own folding failed on (KeyError)
    m = odedsl.loads(
        "nn V: 1 -> 1, hidden = []\nstate x = 1\nlet l = if 0 < V(0) then 0 else 1\n"
        "der(x) = (if 0 < l then x else 0)"
        " + (if (if V(0) > 0 then 0 else 1) == (if V(1) > 0 then 0 else 1) then 1 else 2)\n"
    )
    V = m.net("V").output(0)
    first, second = sorted(m.rhs[0].args, key=sympy.default_sort_key)
    pieces = {first, second}
    assert sympy.Piecewise((X, V(0) <= 0), (0, True)) in pieces
    (other,) = pieces - {sympy.Piecewise((X, V(0) <= 0), (0, True))}
    cond = other.args[0].cond
    for v0 in (-1, 1):
        for v1 in (-1, 1):
            values = {V(0): v0, V(1): v1}
            assert bool(cond.subs(values)) == ((v0 > 0) == (v1 > 0))


@pytest.mark.parametrize("text, where, message", [
    # the broken let or const stood for NaN, which SymPy's min and < then raised on
    ("state x = 1\nlet l = sqrt(-1)\nder(x) = min(x, l)\n", (2, 9), "this expression evaluates to a complex number"),
    ("state x = 1\nlet l = log(0)\nlet m = l + 1\nder(x) = if x < m then 1 else 2\n", (2, 9),
     "this expression divides by zero"),
    ("const c = log(0)\nconst d = min(c, 1)\nstate x = d\nder(x) = x\n", (1, 11), "this expression divides by zero"),
    ("const c = log(0)\nparam k = c in [c, 2]\nstate x = c\nder(x) = c*k*x\n", (1, 11),
     "this expression divides by zero"),
    ("nn U: 2 -> 2, hidden = []\nstate x = 1\nlet l = acosh(0)\nlet w = U(x, l)\nder(x) = atan2(x, w[0])\n", (3, 9),
     "this expression evaluates to a complex number"),
])
def test_a_broken_let_or_const_is_reported_once(text, where, message):
    d = error(text)  # one diagnostic: its uses are not reported again
    assert ((d.line, d.column), d.message) == (where, message)


@pytest.mark.parametrize("sigma, shown", [("-1", "-1"), ("0", "0"), ("0.0", "0"), ("c - 3", "0"), ("x - x - 0.5", "-0.5")])
def test_a_constant_noise_scale_must_be_positive(sigma, shown):
    d = error(f"const c = 3\nstate x = 1\nder(x) = -x\nobserve o = x ~ normal({sigma})\n")
    assert ((d.line, d.column), d.message) == ((4, 24), f"the SIGMA of 'normal' must be positive, not {shown}")


def test_a_noise_scale_may_be_a_parameter_or_any_expression():
    m = odedsl.loads(
        "const c = 3\nparam s = 0.1 in [0, 1]\nstate x = 1\nder(x) = -x\n"
        "observe a = x ~ normal(s)\nobserve b = x ~ lognormal(c/2)\nobserve d = x ~ normal(0.1*x)\n"
    )
    s, c = real("s c")
    assert [o.noise.args for o in m.observables] == [(s,), (c / 2,), (sympy.Float(0.1) * X,)]


def test_a_complex_noise_scale_from_constants_is_reported():
    d = error("const c = 3\nstate x = 1\nder(x) = -x\nobserve o = x ~ normal(sqrt(-c))\n")
    assert ((d.line, d.column), d.message) == ((4, 24), "this expression evaluates to a complex number")
