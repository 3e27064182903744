"""SymPy objects that odedsl adds: smooth activation functions and opaque neural terms.

A neural term is a SymPy function that never evaluates. It remembers which net and
which output it is, and its derivative with respect to an argument is another
opaque function (the net's partial derivative), so ``sympy.diff`` of a hybrid
right-hand side yields the exact chain rule with the net's Jacobian as a
placeholder that the backends fill in.
"""

from __future__ import annotations

from typing import ClassVar

import sympy
from sympy.core.function import ArgumentIndexError


class sigmoid(sympy.Function):  # noqa: N801 - named as users write it
    """The logistic function 1 / (1 + exp(-x))."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return 1 / (1 + sympy.exp(-x))
        return None

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sympy.exp(-x))

    def _eval_is_real(self):
        return self.args[0].is_real


class softplus(sympy.Function):  # noqa: N801
    """log(1 + exp(x)), a smooth ramp."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sympy.log(1 + sympy.exp(x))
        return None

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sympy.log(1 + sympy.exp(x))

    def _eval_is_real(self):
        return self.args[0].is_real


class relu(sympy.Function):  # noqa: N801
    """max(0, x); its derivative is the step Heaviside(x) (taken as 0 at x = 0)."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sympy.Max(0, x)
        return None

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return sympy.Heaviside(self.args[0], 0)

    def _eval_is_real(self):
        return self.args[0].is_real


class NeuralTerm(sympy.Function):
    """Base of the per-net function classes; never evaluates.

    ``wrt`` is empty for a net output and lists argument positions (0-based) for a
    partial derivative of that output: ``wrt == (1,)`` is d output / d argument 1.
    """

    net: ClassVar[str]
    output: ClassVar[int]
    wrt: ClassVar[tuple[int, ...]]
    family: ClassVar["NeuralFamily"]

    #: Not a number even at numeric arguments (its value depends on the weights), as for
    #: SymPy's own undefined functions; otherwise ``Min(U(1.0), 2)`` raises "not comparable".
    is_number = False

    @classmethod
    def eval(cls, *args):
        return None

    def fdiff(self, argindex=1):
        if not 1 <= argindex <= len(self.args):
            raise ArgumentIndexError(self, argindex)
        wrt = tuple(sorted(self.wrt + (argindex - 1,)))
        return self.family.function(self.output, wrt)(*self.args)

    def _eval_is_real(self):
        return True

    def _sympystr(self, printer):
        args = ", ".join(printer.doprint(a) for a in self.args)
        if not self.wrt:
            return f"{self.net}({args})[{self.output}]"
        d = "".join(f"/d{i}" for i in self.wrt)
        return f"d{len(self.wrt) if len(self.wrt) > 1 else ''}{self.net}[{self.output}]{d}({args})"

    def _latex(self, printer, exp=None):
        args = ", ".join(printer.doprint(a) for a in self.args)
        name = sympy.latex(sympy.Symbol(self.net))
        base = f"{name}_{{{self.output}}}"
        if self.wrt:
            order = len(self.wrt)
            den = " ".join(f"\\partial u_{{{i}}}" for i in self.wrt)
            base = f"\\frac{{\\partial{'^' + str(order) if order > 1 else ''} {base}}}{{{den}}}"
        out = f"{base}\\left({args}\\right)"
        return f"{out}^{{{exp}}}" if exp else out


class NeuralFamily:
    """The function classes of one declared net: its outputs and their partial derivatives.

    Examples
    --------
    >>> x, y = sympy.symbols("x y", real=True)
    >>> U = NeuralFamily("U", n_in=2, n_out=2)
    >>> e = U.function(0)(x, x * y)
    >>> print(sympy.diff(e, y))
    x*dU[0]/d1(x, x*y)
    """

    def __init__(self, net: str, n_in: int, n_out: int) -> None:
        self.net = net
        self.n_in = n_in
        self.n_out = n_out
        self._classes: dict[tuple[int, tuple[int, ...]], type[NeuralTerm]] = {}

    def function(self, output: int, wrt: tuple[int, ...] = ()) -> type[NeuralTerm]:
        key = (output, wrt)
        cls = self._classes.get(key)
        if cls is None:
            suffix = "".join(f"_d{i}" for i in wrt)
            cls = type(
                f"{self.net}_{output}{suffix}", (NeuralTerm,),
                {"net": self.net, "output": output, "wrt": wrt, "family": self, "nargs": self.n_in},
            )
            self._classes[key] = cls
        return cls


def neural_terms(expr: sympy.Basic) -> set[NeuralTerm]:
    """All neural outputs and partials occurring in ``expr``."""
    return {a for a in expr.atoms(sympy.Function) if isinstance(a, NeuralTerm)}
