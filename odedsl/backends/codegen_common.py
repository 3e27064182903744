"""What every code generator shares: the model's names in generated code, and its net calls.

Generated code never contains a user's name: time becomes ``t``, states
``y_0, y_1, ...``, parameters ``p_0, ...``, inputs ``u_0, ...`` and constants their
values. A neural term ``U(x, y)[k]`` becomes a placeholder symbol ``_n{call}_{k}``
(its partial ``d/d arg j`` becomes ``_d{call}_{k}_{j}``), where ``call`` numbers the
distinct evaluations of a net; a call whose arguments hold another call's output sits
one ``level`` above it, so the generators evaluate nets level by level.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy
from sympy.printing.pycode import PythonCodePrinter

from odedsl.errors import OdedslError
from odedsl.model import Model
from odedsl.symbolic import NeuralTerm, neural_terms


class CodegenError(OdedslError):
    """The model uses a construct a backend cannot compile."""

    exit_code = 1


@dataclass
class NetCall:
    """One distinct evaluation of a net in generated code."""

    index: int
    net: str
    args: tuple
    level: int


def code_symbols(model: Model) -> dict[sympy.Symbol, sympy.Expr]:
    """The substitution from the model's symbols to generated-code symbols (constants to their values)."""
    code: dict[sympy.Symbol, sympy.Expr] = {model.time: sympy.Symbol("t", real=True)}
    for i, s in enumerate(model.states):
        code[s.symbol] = sympy.Symbol(f"y_{i}", real=True)
    for j, p in enumerate(model.params):
        code[p.symbol] = sympy.Symbol(f"p_{j}", real=True)
    for k, u in enumerate(model.inputs):
        code[u.symbol] = sympy.Symbol(f"u_{k}", real=True)
    consts = model.const_values
    for _ in range(len(consts) + 1):  # consts may refer to consts
        consts = {k: v.xreplace(consts) for k, v in consts.items()}
    code.update(consts)
    return code


def find_net_calls(exprs: list[sympy.Expr]) -> tuple[list[NetCall], dict[NeuralTerm, sympy.Symbol]]:
    """The distinct net calls in ``exprs`` (with levels) and each neural term's placeholder symbol."""
    terms: set[NeuralTerm] = set()
    for e in exprs:
        terms |= neural_terms(e)
    keyed: dict[tuple, NetCall] = {}
    for term in sorted(terms, key=sympy.default_sort_key):
        key = (term.net, term.args)
        if key not in keyed:
            keyed[key] = NetCall(len(keyed), term.net, term.args, 0)
    calls = list(keyed.values())
    for _ in range(len(calls)):  # nested calls: a call's level is one above its arguments' calls
        for c in calls:
            inner = set().union(*(neural_terms(a) for a in c.args)) if c.args else set()
            c.level = max([keyed[(t.net, t.args)].level + 1 for t in inner], default=0)
    placeholder = {}
    for term in terms:
        c = keyed[(term.net, term.args)]
        if not term.wrt:
            placeholder[term] = sympy.Symbol(f"_n{c.index}_{term.output}", real=True)
        elif len(term.wrt) == 1:
            placeholder[term] = sympy.Symbol(f"_d{c.index}_{term.output}_{term.wrt[0]}", real=True)
        else:
            raise CodegenError(f"second derivatives of neural network '{term.net}' are not supported")
    return calls, placeholder


def input_rates(model: Model, exprs: list[sympy.Expr]) -> list[sympy.Expr]:
    """Total d/dt of each expression at fixed states: its explicit time dependence plus the inputs'
    rates of change, written with symbols ``v_k`` (the rate of input ``k``)."""
    rate_syms = {u.symbol: sympy.Symbol(f"v_{k}", real=True) for k, u in enumerate(model.inputs)}
    out = []
    for e in exprs:
        total = e.diff(model.time) if model.time in e.free_symbols else sympy.S.Zero
        for u, v in rate_syms.items():
            if u in e.free_symbols:
                total += e.diff(u) * v
        out.append(total)
    return out


class BasePrinter(PythonCodePrinter):
    """SymPy's Python printer as both backends need it: strict (an unknown construct fails at
    generation, not at run time), numbers as Python floats, small integer powers as repeated
    products; ``SQRT`` names the backend's square root."""

    SQRT = "math.sqrt"

    def __init__(self) -> None:
        super().__init__({"strict": True, "fully_qualified_modules": True})

    def _print_Float(self, e):
        return repr(float(e))

    def _print_Rational(self, e):
        return repr(float(e))

    def _print_Integer(self, e):
        return f"{int(e)}.0"

    def _print_Pow(self, e, rational=False):
        base, exp = e.args
        prec = sympy.printing.precedence.PRECEDENCE["Pow"]
        if exp.is_Integer and 0 < abs(int(exp)) <= 64:
            n = int(exp)
            text = f"{self.parenthesize(base, prec)}**{abs(n)}"
            return text if n > 0 else f"1.0/({text})"
        if exp == sympy.S.Half:
            return f"{self.SQRT}({self._print(base)})"
        if exp == -sympy.S.Half:
            return f"1.0/{self.SQRT}({self._print(base)})"
        return self._print_other_Pow(e, rational)

    def _print_other_Pow(self, e, rational):
        return super()._print_Pow(e, rational=rational)

    def _print_NeuralTerm(self, e):
        raise CodegenError(f"internal: unreplaced neural term {e}")


def no_delta(e: sympy.Expr) -> sympy.Expr:
    """Drop the almost-everywhere-zero ``DiracDelta`` that ``sign`` and ``abs`` differentiate to."""
    return e.replace(sympy.DiracDelta, lambda *a: sympy.S.Zero) if e.has(sympy.DiracDelta) else e


@dataclass
class ReverseMode:
    """The vector-Jacobian product ``a·∂f/∂(y, p)`` of a right-hand side with nets, symbolically.

    Differentiates ``S = Σ a_i f_i + Σ_calls Σ_i ḡ_{c,i} h_{c,i}`` with the nets' outputs as
    symbols, where ``h_{c,i}`` are call ``c``'s argument expressions and ``ḡ_{c,i}`` (symbols
    ``_g{c}_{i}``) their cotangents, which each net's own VJP supplies. Generated code
    evaluates, for the calls from the outermost level in: ``cout[c]`` (the cotangent of the
    call's outputs), then the net's VJP giving ``_g{c}_*``; and finally ``grads``.
    """

    a: list[sympy.Symbol]  # a_0 .. a_{n-1}
    cout: dict[int, list[sympy.Expr]]  # per call index: d S / d output_k
    grads: list[sympy.Expr]  # d S / d y_i, then d S / d p_j

    @classmethod
    def build(cls, exprs: list[sympy.Expr], calls: list[NetCall], placeholder: dict, n_states: int,
              n_params: int, n_outputs: dict[int, int]) -> ReverseMode:
        """``exprs`` in code symbols; ``n_outputs``: per call index, its net's output count."""
        a = [sympy.Symbol(f"a_{i}", real=True) for i in range(n_states)]
        total = sum((ai * e.xreplace(placeholder) for ai, e in zip(a, exprs)), sympy.S.Zero)
        for c in calls:
            cin = [sympy.Symbol(f"_g{c.index}_{i}", real=True) for i in range(len(c.args))]
            total += sum((g * arg.xreplace(placeholder) for g, arg in zip(cin, c.args)), sympy.S.Zero)
        cout = {c.index: [no_delta(total.diff(sympy.Symbol(f"_n{c.index}_{k}", real=True)))
                          for k in range(n_outputs[c.index])] for c in calls}
        syms = [sympy.Symbol(f"y_{i}", real=True) for i in range(n_states)] + [
            sympy.Symbol(f"p_{j}", real=True) for j in range(n_params)]
        grads = [no_delta(total.diff(s)) if s in total.free_symbols else sympy.S.Zero for s in syms]
        return cls(a, cout, grads)
