"""odedsl's own SymPy objects: smooth activations and opaque neural terms."""

from __future__ import annotations

import math

import pytest
import sympy
from sympy.core.function import ArgumentIndexError

from odedsl.symbolic import NeuralFamily, NeuralTerm, neural_terms, relu, sigmoid, softplus

x, y = sympy.symbols("x y", real=True)
z = sympy.Symbol("z")  # no assumptions


def numeric_derivative(f, at: float, h: float = 1e-6) -> float:
    return (float(f(sympy.Float(at + h))) - float(f(sympy.Float(at - h)))) / (2 * h)


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("v", [-30.0, -2.5, -1.0, 0.0, 0.5, 3.0, 30.0])
def test_activation_values(v):
    assert float(sigmoid(sympy.Float(v))) == pytest.approx(1 / (1 + math.exp(-v)), rel=1e-14)
    assert float(softplus(sympy.Float(v))) == pytest.approx(math.log1p(math.exp(v)), rel=1e-14)
    assert float(relu(sympy.Float(v))) == max(0.0, v)


def test_exact_values_at_exact_numbers():
    assert sigmoid(0) == sympy.Rational(1, 2)
    assert sigmoid(2) == 1 / (1 + sympy.exp(-2))
    assert softplus(0) == sympy.log(2)
    assert (relu(3), relu(-3), relu(0), relu(sympy.Rational(1, 2))) == (3, 0, 0, sympy.Rational(1, 2))


def test_symbols_stay_unevaluated():
    assert isinstance(sigmoid(x), sigmoid) and sigmoid(x).args == (x,)
    assert isinstance(softplus(x), softplus)
    assert isinstance(relu(x), relu)
    assert str(sigmoid(x) + softplus(y) + relu(x)) == "relu(x) + sigmoid(x) + softplus(y)"


def test_symbolic_derivatives():
    s = sigmoid(x)
    assert sympy.diff(s, x) == s * (1 - s)
    assert sympy.diff(softplus(x), x) == sigmoid(x)
    assert sympy.diff(relu(x), x) == sympy.Heaviside(x, 0)
    assert sympy.Heaviside(0, 0) == 0  # relu'(0) is taken as 0
    # the chain rule through them
    assert sympy.diff(softplus(x * y), y) == x * sigmoid(x * y)
    assert sympy.diff(sigmoid(2 * x), x) == 2 * sigmoid(2 * x) * (1 - sigmoid(2 * x))
    assert sympy.expand(sympy.diff(softplus(x), x, 2) - sigmoid(x) * (1 - sigmoid(x))) == 0


@pytest.mark.parametrize("v", [-3.0, -0.5, 0.7, 2.0])
def test_derivatives_match_finite_differences(v):
    for f in (sigmoid, softplus, relu):
        d = sympy.diff(f(x), x).subs(x, v)
        assert float(d) == pytest.approx(numeric_derivative(f, v), rel=1e-7, abs=1e-9)


def test_fdiff_rejects_a_second_argument():
    for f in (sigmoid, softplus, relu):
        with pytest.raises(ArgumentIndexError):
            f(x).fdiff(2)


def test_rewrite_as_exp():
    assert sigmoid(x).rewrite(sympy.exp) == 1 / (1 + sympy.exp(-x))
    assert softplus(x).rewrite(sympy.exp) == sympy.log(1 + sympy.exp(x))


def test_realness_follows_the_argument():
    assert sigmoid(x).is_real and softplus(x).is_real and relu(x).is_real
    assert sigmoid(z).is_real is None and relu(z).is_real is None


def test_activations_print_by_name():
    assert sympy.sstr(sigmoid(x)) == "sigmoid(x)"
    assert sympy.latex(softplus(x)) == r"\operatorname{softplus}{\left(x \right)}"


# ---------------------------------------------------------------------------
# neural terms
# ---------------------------------------------------------------------------


def family(n_in: int = 2, n_out: int = 3, net: str = "U") -> NeuralFamily:
    return NeuralFamily(net, n_in=n_in, n_out=n_out)


def test_classes_are_cached():
    U = family()
    assert U.function(0) is U.function(0)
    assert U.function(2, (1,)) is U.function(2, (1,))
    assert U.function(0) is not U.function(1)
    assert U.function(0, (0,)) is not U.function(0, (1,))
    assert U.function(0)(x, y) == U.function(0)(x, y)
    assert U.function(0)(x, y) != U.function(1)(x, y)


def test_class_attributes():
    U = family()
    f = U.function(1)
    assert issubclass(f, NeuralTerm) and issubclass(f, sympy.Function)
    assert (f.net, f.output, f.wrt, f.family) == ("U", 1, (), U)
    assert f.__name__ == "U_1"
    d = U.function(2, (0, 1))
    assert (d.output, d.wrt, d.__name__) == (2, (0, 1), "U_2_d0_d1")


def test_arity_is_the_number_of_inputs():
    f = family(n_in=2).function(0)
    with pytest.raises(TypeError):
        f(x)
    with pytest.raises(TypeError):
        f(x, y, x)


def test_never_evaluates_is_real_and_is_not_a_number():
    f = family().function(0)
    e = f(1, 2)
    assert isinstance(e, NeuralTerm) and e.args == (1, 2)
    assert e.is_real is True
    assert e.is_number is False  # its value depends on the weights
    assert sympy.Min(e, 2).has(e)  # so SymPy keeps it symbolic instead of failing to compare
    assert (e + 1).is_number is False


def test_derivative_order_and_wrt():
    U = family()
    e = U.function(1)(x, y)
    d_x = sympy.diff(e, x)
    assert d_x == U.function(1, (0,))(x, y)
    assert (d_x.output, d_x.wrt) == (1, (0,))
    d_xy = sympy.diff(e, x, y)
    d_yx = sympy.diff(e, y, x)
    assert d_xy == d_yx == U.function(1, (0, 1))(x, y)  # mixed partials are one function
    assert sympy.diff(e, x, 2) == U.function(1, (0, 0))(x, y)
    third = sympy.diff(e, y, x, y)
    assert (third.wrt, len(third.wrt)) == ((0, 1, 1), 3)
    assert third.family is U


def test_chain_rule_through_a_net():
    U = family()
    e = U.function(0)(x, x * y)
    assert sympy.diff(e, y) == x * U.function(0, (1,))(x, x * y)
    assert sympy.diff(e, x) == U.function(0, (0,))(x, x * y) + y * U.function(0, (1,))(x, x * y)
    assert sympy.diff(sympy.sin(U.function(2)(x, y)), x) == sympy.cos(U.function(2)(x, y)) * U.function(2, (0,))(x, y)


def test_fdiff_rejects_a_missing_argument():
    e = family().function(0)(x, y)
    with pytest.raises(ArgumentIndexError):
        e.fdiff(3)
    with pytest.raises(ArgumentIndexError):
        e.fdiff(0)


def test_str_printing():
    U = family()
    assert str(U.function(0)(x, y)) == "U(x, y)[0]"
    assert str(U.function(2)(x + 1, 2 * y)) == "U(x + 1, 2*y)[2]"
    assert str(U.function(1, (1,))(x, y)) == "dU[1]/d1(x, y)"
    assert str(U.function(0, (0, 1))(x, y)) == "d2U[0]/d0/d1(x, y)"
    assert str(U.function(0)(x, y) ** 2 + 1) == "U(x, y)[0]**2 + 1"


def test_latex_printing():
    U = family()
    assert sympy.latex(U.function(0)(x, y)) == r"U_{0}\left(x, y\right)"
    assert sympy.latex(U.function(1, (1,))(x, y)) == r"\frac{\partial U_{1}}{\partial u_{1}}\left(x, y\right)"
    assert sympy.latex(U.function(0, (0, 1))(x, y)) == (
        r"\frac{\partial^2 U_{0}}{\partial u_{0} \partial u_{1}}\left(x, y\right)"
    )
    assert sympy.latex(U.function(0)(x, y) ** 2) == r"U_{0}\left(x, y\right)^{2}"
    # a Greek net name is typeset as a letter
    assert sympy.latex(family(net="phi").function(0)(x, y)) == r"\phi_{0}\left(x, y\right)"


def test_neural_terms():
    U, V = family(), family(n_in=1, n_out=1, net="V")
    u0, u1_dx, v = U.function(0)(x, y), U.function(1, (0,))(x, y), V.function(0)(sympy.sin(x))
    e = x * u0 + sympy.exp(u1_dx) + v**2 + sigmoid(y)
    assert neural_terms(e) == {u0, u1_dx, v}
    assert neural_terms(x + sigmoid(y)) == set()
    assert neural_terms(sympy.Matrix([u0, 1])) == {u0}
    # a net output inside another net's arguments is found too
    nested = V.function(0)(u0)
    assert neural_terms(nested) == {nested, u0}


def test_docstring_example():
    U = NeuralFamily("U", n_in=2, n_out=2)
    assert str(sympy.diff(U.function(0)(x, x * y), y)) == "x*dU[0]/d1(x, x*y)"
