"""Lowering: checked declarations to the SymPy ``Model``.

The checker has resolved every name, so this stage only builds expressions. It
still reports what only arithmetic reveals: a division by zero, a constant too
large for double precision, a complex value, bounds in the wrong order, an initial
value outside its bounds.
"""

from __future__ import annotations

import math
from pathlib import PurePath

import sympy

from odedsl.lang import ast
from odedsl.lang.builtins import CONSTANTS, FUNCTIONS, INFINITY, NET_OPTIONS
from odedsl.lang.check import Checked, Kind
from odedsl.lang.report import Reporter
from odedsl.model import Const, Input, Let, Model, Net, Noise, Observable, Param, State
from odedsl.symbolic import NeuralFamily

_COMPARE = {"<": sympy.Lt, "<=": sympy.Le, ">": sympy.Gt, ">=": sympy.Ge, "==": sympy.Eq, "!=": sympy.Ne}
_MAX_EXPONENT10 = 300.0  # beyond ~1e308 a constant is not a double any more


class _Invalid(Exception):
    """Raised after reporting, to abandon one expression."""


class _Lowerer:
    def __init__(self, checked: Checked, rep: Reporter) -> None:
        self.c = checked
        self.rep = rep
        self.symbols: dict[str, sympy.Symbol] = {}
        self.families: dict[str, NeuralFamily] = {}
        self.symbolic: dict[str, sympy.Expr] = {}  # name -> what it stands for in equations
        self.numeric: dict[str, sympy.Expr] = {}  # const name -> exact value
        self.numbers: dict[str, sympy.Number] = {}  # literal text -> SymPy number (literals repeat a lot)

    # -- expressions -------------------------------------------------------------

    def expr(self, e: ast.Expr, env: dict[str, sympy.Expr], bounds: bool = False) -> sympy.Expr | None:
        """Build ``e``; None when a problem was reported."""
        try:
            value = self._build(e, env, bounds)
        except _Invalid:
            return None
        except RecursionError:
            self.rep.error(e.span, "this expression is nested too deeply to compile")
            return None
        if value.has(sympy.zoo, sympy.nan):
            self.rep.error(e.span, "this expression divides by zero")
            return None
        if value.has(sympy.I):
            self.rep.error(e.span, "this expression evaluates to a complex number")
            return None
        return value

    def _fail(self, e: ast.Expr, message: str, hint: str | None = None) -> None:
        self.rep.error(e.span, message, hint)
        raise _Invalid

    def _build(self, e: ast.Expr, env: dict[str, sympy.Expr], bounds: bool) -> sympy.Expr:
        b = lambda sub: self._build(sub, env, bounds)  # noqa: E731
        if isinstance(e, ast.Number):
            value = self.numbers.get(e.text)
            if value is None:
                value = sympy.Integer(e.text) if e.text.isdigit() else sympy.Float(e.text)
                self.numbers[e.text] = value
            return value
        if isinstance(e, ast.Name):
            if e.name in env:
                return env[e.name]
            if bounds and e.name == INFINITY:
                return sympy.oo
            return CONSTANTS[e.name]
        if isinstance(e, ast.Call):
            return self._call(e, [b(a) for a in e.args])
        if isinstance(e, ast.Index):
            target = b(e.target)
            return target[int(e.index.text)] if isinstance(target, sympy.Tuple) else target
        if isinstance(e, ast.Unary):
            x = b(e.operand)
            return sympy.Not(x) if e.op == "not" else (-x if e.op == "-" else x)
        if isinstance(e, ast.Chain):
            return self._chain(e, [b(x) for x in e.operands])
        if isinstance(e, ast.Power):
            base, exponent = b(e.base), b(e.exponent)
            if base.is_Number and exponent.is_Number:
                self._check_power(e, base, exponent)
            return sympy.Pow(base, exponent)
        if isinstance(e, ast.Compare):
            return _COMPARE[e.op](b(e.left), b(e.right))
        if isinstance(e, ast.IfElse):
            return sympy.Piecewise((b(e.then), b(e.cond)), (b(e.orelse), True))
        raise TypeError(f"unknown expression node {type(e).__name__}")  # pragma: no cover

    def _check_power(self, e: ast.Power, base: sympy.Expr, exponent: sympy.Expr) -> None:
        if base == 0 and exponent < 0:
            self._fail(e, "this power divides by zero (0 to a negative power)")
        if base != 0:
            magnitude = math.log10(abs(float(base))) * float(exponent)
            if magnitude > _MAX_EXPONENT10:
                self._fail(e, "this constant is too large for double precision")

    def _chain(self, e: ast.Chain, xs: list[sympy.Expr]) -> sympy.Expr:
        if e.kind == "and":
            return sympy.And(*xs)
        if e.kind == "or":
            return sympy.Or(*xs)
        if e.kind == "sum":
            return sympy.Add(xs[0], *(x if op == "+" else -x for op, x in zip(e.ops, xs[1:])))
        factors = [xs[0]]
        for op, x, node in zip(e.ops, xs[1:], e.operands[1:]):
            if op == "/":
                if x == 0:
                    self._fail(node, "division by zero")
                x = 1 / x
            factors.append(x)
        return sympy.Mul(*factors)

    def _call(self, call: ast.Call, args: list[sympy.Expr]) -> sympy.Expr:
        """A function's value; a net's single output, or a Tuple of all its outputs."""
        name = call.func.name
        family = self.families.get(name)
        if family is None:
            return FUNCTIONS[name].build(*args)
        outputs = [family.function(k)(*args) for k in range(family.n_out)]
        return outputs[0] if family.n_out == 1 else sympy.Tuple(*outputs)

    # -- numbers ------------------------------------------------------------------

    def number(self, e: ast.Expr, what: str, bounds: bool = False) -> float | None:
        value = self.expr(e, self.numeric, bounds)
        if value is None:
            return None
        try:
            x = float(value)
        except TypeError:
            self.rep.error(e.span, f"{what} must evaluate to a real number")
            return None
        if math.isnan(x) or (math.isinf(x) and not bounds):
            self.rep.error(e.span, f"{what} is not a finite number")
            return None
        return x

    # -- declarations ---------------------------------------------------------------

    def symbol(self, name: str) -> sympy.Symbol:
        s = sympy.Symbol(name, real=True)
        self.symbols[name] = s
        self.symbolic[name] = s
        return s

    def consts(self) -> list[Const]:
        out = []
        for c in self.c.consts:
            value = self.expr(c.value, self.numeric)
            if value is None:
                value = sympy.nan  # reported; keeps later names resolvable
            elif not value.is_finite:
                self.rep.error(c.value.span, "a constant must be a finite number")
            self.numeric[c.name.name] = value
            out.append(Const(c.name.name, self.symbol(c.name.name), value, c.span.line))
        return out

    def params(self) -> list[Param]:
        out = []
        for p in self.c.params:
            value = self.number(p.value, f"the value of parameter '{p.name.name}'")
            lower, upper = -math.inf, math.inf
            if p.bounds is not None:
                lo = self.number(p.bounds.lower, "a lower bound", bounds=True)
                hi = self.number(p.bounds.upper, "an upper bound", bounds=True)
                if lo is not None and hi is not None:
                    if lo >= hi:
                        self.rep.error(p.bounds.span, f"the lower bound {lo:g} is not below the upper bound {hi:g}",
                                       "write bounds as in [LO, HI] with LO < HI")
                    elif value is not None and not lo <= value <= hi:
                        self.rep.error(p.value.span, f"the value {value:g} of '{p.name.name}' is outside its bounds [{lo:g}, {hi:g}]")
                    lower, upper = lo, hi
            out.append(Param(p.name.name, self.symbol(p.name.name), value if value is not None else math.nan,
                             lower, upper, p.fixed, p.span.line))
        return out

    def nets(self) -> list[Net]:
        out = []
        for n in self.c.nets:
            n_in, n_out = int(n.n_in.text), int(n.n_out.text)
            opts = {k: spec.default for k, spec in NET_OPTIONS.items()}
            for o in n.options:
                v = o.value
                if o.name.name == "hidden":
                    opts["hidden"] = tuple(int(x.text) for x in (v if isinstance(v, tuple) else (v,)))
                elif o.name.name == "activation":
                    opts["activation"] = v.name
                else:
                    opts[o.name.name] = float(v.text)
            family = NeuralFamily(n.name.name, n_in, n_out)
            self.families[n.name.name] = family
            out.append(Net(n.name.name, n_in, n_out, tuple(opts["hidden"]), opts["activation"],
                           float(opts["init_scale"]), family, n.span.line))
        return out

    def lets(self) -> list[Let]:
        out = []
        for lt in self.c.lets:
            value = self.expr(lt.value, self.symbolic)
            value = sympy.nan if value is None else value
            out.append(Let(lt.name.name, sympy.Symbol(lt.name.name, real=True), value, lt.span.line))
            self.symbolic[lt.name.name] = value
        return out

    def run(self) -> Model:
        c = self.c
        time = self.symbol(c.time)
        consts = self.consts()
        params = self.params()
        states = [State(s.name.name, self.symbol(s.name.name), sympy.S.Zero, s.span.line) for s in c.states]
        inputs = [Input(u.name.name, self.symbol(u.name.name), u.span.line) for u in c.inputs]
        nets = self.nets()
        lets = self.lets()
        initial_env = {**self.symbolic}
        states = [
            State(st.name, st.symbol, self.expr(node.initial, initial_env) or sympy.S.Zero, st.line)
            for st, node in zip(states, c.states)
        ]
        rhs = []
        for st in c.states:
            eq = c.equations.get(st.name.name)
            rhs.append(self.expr(eq.rhs, self.symbolic) if eq is not None else None)
        observables = []
        for o in c.observes:
            noise = None
            if o.noise is not None:
                noise = Noise(o.noise.kind.name, tuple(self.expr(a, self.symbolic) for a in o.noise.args))
            observables.append(Observable(o.column.name, self.expr(o.value, self.symbolic), noise, o.span.line))
        self.rep.raise_if_errors()
        name = c.model.name.name if c.model else _stem(c.source.filename)
        return Model(
            name=name, description=c.model.description if c.model else None, filename=c.source.filename,
            source=c.source.text, time=time, states=states, params=params, consts=consts, inputs=inputs,
            nets=nets, lets=lets, observables=observables, rhs=rhs, warnings=self.rep.warnings,
        )


def _stem(filename: str) -> str:
    stem = PurePath(filename).stem
    return stem if stem and not stem.startswith("<") else "model"


def lower(checked: Checked, rep: Reporter) -> Model:
    """Build the Model; raises ``ModelError`` with everything wrong that arithmetic reveals."""
    return _Lowerer(checked, rep).run()
