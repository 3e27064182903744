"""The discovered model as a `.ode` file, printed from the SymPy form in the language's own syntax.

Printing from the checked model rather than editing its text is what makes the
replacement exact wherever a net is used (through ``let``s, in several
equations, in observables), at the price of the original file's comments and
``let`` names: the equations come out with every ``let`` substituted, as
``odedsl show`` prints them. The printer covers every construct the language
lowers to, and ``write_model`` compiles what it printed before handing it back,
so a file that would not check is never written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sympy
from sympy.printing.str import StrPrinter

from odedsl.lang.parser import KEYWORDS
from odedsl.model import Model, Net


class OdePrinter(StrPrinter):
    """SymPy to `.ode` expression syntax: ``abs``, ``min``/``max``, ``if ... then ... else``, ``and``/``or``/``not``.

    Examples
    --------
    >>> x = sympy.Symbol("x")
    >>> print(to_ode(sympy.Piecewise((x, x > 1), (sympy.Abs(x), True)) + sympy.Max(x, 2)))
    (if x > 1 then x else abs(x)) + max(2, x)
    """

    def __init__(self) -> None:
        super().__init__({"full_prec": False})

    def _print_Abs(self, expr) -> str:
        return f"abs({self._print(expr.args[0])})"

    def _print_Min(self, expr) -> str:
        return f"min({', '.join(self._print(a) for a in expr.args)})"

    def _print_Max(self, expr) -> str:
        return f"max({', '.join(self._print(a) for a in expr.args)})"

    def _print_Exp1(self, expr) -> str:
        return "exp(1)"

    def _print_Piecewise(self, expr) -> str:
        pieces = list(expr.args)
        if pieces[-1].cond != sympy.true:  # no default: SymPy's NaN elsewhere; the language needs an else
            raise ValueError("a conditional without an 'else' cannot be written")
        out = self._print(pieces[-1].expr)
        for value, cond in reversed(pieces[:-1]):
            out = f"(if {self._print(cond)} then {self._print(value)} else {out})"
        return out

    def _print_Relational(self, expr) -> str:
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[expr.rel_op]
        return f"{self._print(expr.lhs)} {op} {self._print(expr.rhs)}"

    def _print_And(self, expr) -> str:
        return " and ".join(self._bool(a) for a in expr.args)

    def _print_Or(self, expr) -> str:
        return " or ".join(self._bool(a) for a in expr.args)

    def _print_Not(self, expr) -> str:
        return f"not {self._bool(expr.args[0])}"

    def _print_ITE(self, expr) -> str:
        a, b, c = expr.args
        return self._print(sympy.Or(sympy.And(a, b), sympy.And(sympy.Not(a), c)))

    def _print_BooleanTrue(self, expr) -> str:
        return "1 == 1"

    def _print_BooleanFalse(self, expr) -> str:
        return "1 != 1"

    def _bool(self, expr) -> str:
        text = self._print(expr)
        return text if isinstance(expr, sympy.core.relational.Relational) or expr.is_Atom else f"({text})"


def to_ode(expr: sympy.Basic) -> str:
    """One expression in `.ode` syntax."""
    return OdePrinter().doprint(expr)


def number(value: float) -> str:
    """A float as the shortest text that reads back to the same double."""
    if not math.isfinite(value):
        return "inf" if value > 0 else "-inf"
    return repr(float(value))


@dataclass(frozen=True)
class NewParam:
    name: str
    value: float
    comment: str


def model_text(model: Model, params: dict[str, float], replace: dict[sympy.Expr, sympy.Expr],
               new_params: list[NewParam], kept_nets: dict[str, str], header: list[str], name: str) -> str:
    """The text of ``model`` with the net outputs in ``replace`` substituted.

    ``params`` gives the existing parameters' values (the fit's); ``new_params`` are the
    coefficients; ``kept_nets`` maps a net still used to the comment saying why; ``header``
    lines become the leading comment.
    """
    out = [f"# {line}" if line else "#" for line in header] + [""]
    desc = f' "{model.description}"' if model.description and '"' not in model.description else ""
    out.append(f"model {name}{desc}")
    if model.time.name != "t":
        out.append(f"time {model.time.name}")
    out.append("")
    for p in model.params:
        bounds = f" in [{number(p.lower)}, {number(p.upper)}]" if p.bounded else ""
        out.append(f"param {p.name} = {number(params.get(p.name, p.value))}{bounds}{' fixed' if p.fixed else ''}")
    for q in new_params:
        out.append(f"param {q.name} = {number(q.value)}" + (f"  # {q.comment}" if q.comment else ""))
    for c in model.consts:
        out.append(f"const {c.name} = {to_ode(c.value)}")
    for u in model.inputs:
        out.append(f"input {u.name}")
    out.append("")
    for s in model.states:
        out.append(f"state {s.name} = {to_ode(s.initial)}")
    for net in model.nets:
        if net.name in kept_nets:
            out += ["", f"# {kept_nets[net.name]}", _net_line(net)]
    out.append("")
    for s, rhs in zip(model.states, model.rhs):
        out.append(f"der({s.name}) = {to_ode(rhs.xreplace(replace))}")
    if model.observables:
        out.append("")
    for o in model.observables:
        noise = f" ~ {o.noise.kind}({', '.join(to_ode(a) for a in o.noise.args)})" if o.noise else ""
        out.append(f"observe {o.column} = {to_ode(o.expr.xreplace(replace))}{noise}")
    return "\n".join(out) + "\n"


def _net_line(net: Net) -> str:
    return (f"nn {net.name}: {net.n_in} -> {net.n_out}, hidden = [{', '.join(map(str, net.hidden))}], "
            f"activation = {net.activation}, init_scale = {number(net.init_scale)}")


def unique_name(wanted: str, taken: set[str]) -> str:
    """``wanted`` made a legal, unused name of the language (suffixed ``_2``, ``_3``... on a clash)."""
    base = "".join(c if c.isalnum() or c == "_" else "_" for c in wanted) or "c"
    if base[0].isdigit():
        base = "c_" + base
    name, k = base, 2
    while name in taken or name in KEYWORDS:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name
