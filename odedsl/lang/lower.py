"""Lowering: checked declarations to the SymPy ``Model``.

The checker has resolved every name, so this stage only builds expressions. It
still reports what only arithmetic reveals: a division by zero, a constant too
large (or too small) for double precision, an infinite or complex value, bounds in
the wrong order, an initial value outside its bounds.

Every constant subexpression is checked as soon as it is built, so SymPy only ever
compares or evaluates ordinary real doubles: a complex or infinite operand would
make ``min`` or ``<`` raise, and a constant such as ``exp(exp(exp(10)))`` or
``2^(-10^10)`` would take SymPy practically forever to evaluate.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import PurePath

import sympy

from odedsl.lang import ast
from odedsl.lang.builtins import CONSTANTS, FUNCTIONS, INFINITY, NET_OPTIONS, NOISE_MODELS
from odedsl.lang.check import Checked
from odedsl.lang.report import Reporter
from odedsl.model import Const, Input, Let, Model, Net, Noise, Observable, Param, State
from odedsl.symbolic import NeuralFamily

_COMPARE = {"<": sympy.Lt, "<=": sympy.Le, ">": sympy.Gt, ">=": sympy.Ge, "==": sympy.Eq, "!=": sympy.Ne}
_MAX_EXPONENT10 = 300.0  # beyond ~1e308 a constant is not a double any more
_MIN_EXPONENT10 = -324.0  # below ~4.9e-324, the smallest double, a constant rounds to zero


class _Invalid(Exception):
    """Raised after reporting, to abandon one expression."""


#: What a constant or let whose own expression was reported wrong stands for: an expression
#: that uses it is abandoned without a second message, and SymPy never sees a stand-in value.
_FAILED = sympy.Dummy("failed")


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
        if value.has(sympy.zoo, sympy.nan, sympy.I):  # one pass over the tree; which one only on failure
            if value.has(sympy.zoo, sympy.nan):
                self.rep.error(e.span, "this expression divides by zero")
            else:
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
                if env[e.name] is _FAILED:
                    raise _Invalid
                return env[e.name]
            if bounds and e.name == INFINITY:
                return sympy.oo
            return CONSTANTS[e.name]
        if isinstance(e, ast.Call):
            return self._call(e, [b(a) for a in e.args], bounds)
        if isinstance(e, ast.Index):
            k = int(e.index.text)
            if isinstance(e.target, ast.Call) and e.target.func.name in self.families:  # build only output k
                return self.families[e.target.func.name].function(k)(*(b(a) for a in e.target.args))
            target = b(e.target)
            return target[k] if isinstance(target, sympy.Tuple) else target
        if isinstance(e, ast.Unary):
            x = b(e.operand)
            return sympy.Not(x) if e.op == "not" else (-x if e.op == "-" else x)
        if isinstance(e, ast.Chain):
            value = self._chain(e, [b(x) for x in e.operands])
            return value if e.kind in ("and", "or") else self._constant(e, value, bounds)
        if isinstance(e, ast.Power):
            base, exponent = b(e.base), b(e.exponent)
            self._check_power(e, base, exponent)
            return self._constant(e, sympy.Pow(base, exponent), bounds)
        if isinstance(e, ast.Compare):
            return _COMPARE[e.op](b(e.left), b(e.right))
        if isinstance(e, ast.IfElse):
            cond = _condition(b(e.cond))
            # a symbolic condition leaves nothing for SymPy's (costly) canonicalisation to fold
            fold = isinstance(cond, sympy.logic.boolalg.BooleanAtom)
            return sympy.Piecewise((b(e.then), cond), (b(e.orelse), True), evaluate=fold)
        raise TypeError(f"unknown expression node {type(e).__name__}")  # pragma: no cover

    def _check_power(self, e: ast.Power, base: sympy.Expr, exponent: sympy.Expr) -> None:
        """Refuse a constant power that a double cannot hold, before SymPy computes it exactly.

        SymPy expands an integer power of a product, so ``(2*x)^n`` computes ``2^n``:
        the constant factors of a product base count too.
        """
        if not exponent.is_number:
            return
        if base.is_number:
            number = base
        elif base.is_Mul:
            number = sympy.Mul(*(f for f in base.args if f.is_number))
        else:
            return
        size = abs(float(number))
        if size == 0:
            if exponent.is_extended_negative:
                self._fail(e, "this power divides by zero (0 to a negative power)")
            return
        magnitude = math.log10(size) * float(exponent)
        if magnitude > _MAX_EXPONENT10:
            self._fail(e, "this constant is too large for double precision")
        if magnitude < _MIN_EXPONENT10:
            self._fail(e, "this constant is too small for double precision (it would be rounded to zero)")

    def _constant(self, e: ast.Expr, value: sympy.Expr, bounds: bool) -> sympy.Expr:
        """``value``, unless it is a constant that is not a finite real double (``inf`` is allowed in bounds).

        Of a sum or product with symbols, the one number SymPy collects is checked (``1e308*10*x``).
        """
        if not value.is_number:
            number = value.as_coeff_Add()[0] if value.is_Add else value.as_coeff_Mul()[0] if value.is_Mul else None
            if number is not None:
                self._constant(e, number, bounds)
            return value
        if value.has(sympy.zoo, sympy.nan):
            self._fail(e, "this expression divides by zero")
        if value.is_infinite:
            if bounds:
                return value
            self._fail(e, "this expression is infinite")
        try:
            x = float(value)
        except TypeError:
            self._fail(e, "this expression evaluates to a complex number")
        if math.isinf(x):
            self._fail(e, "this constant is too large for double precision")
        return value

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
                if x.is_Number and x.is_zero:
                    self._fail(node, "division by zero")
                x = 1 / x
            factors.append(x)
        return sympy.Mul(*factors)

    def _call(self, call: ast.Call, args: list[sympy.Expr], bounds: bool) -> sympy.Expr:
        """A function's value; a net's single output, or a Tuple of all its outputs."""
        name = call.func.name
        family = self.families.get(name)
        if family is None:
            build = FUNCTIONS[name].build
            if isinstance(build, type) and issubclass(build, sympy.Function) and not any(a.is_number for a in args):
                # nothing to evaluate at a symbolic argument; skipping SymPy's eval saves much of lowering
                return build(*args, evaluate=False)
            return self._constant(call, build(*args), bounds)
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
            if value is not None and not value.is_finite:
                self.rep.error(c.value.span, "a constant must be a finite number")
                value = None
            self.numeric[c.name.name] = _FAILED if value is None else value
            out.append(Const(c.name.name, self.symbol(c.name.name), sympy.nan if value is None else value, c.span.line))
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
            self.symbolic[lt.name.name] = _FAILED if value is None else value
            out.append(Let(lt.name.name, sympy.Symbol(lt.name.name, real=True), sympy.nan if value is None else value,
                           lt.span.line))
        return out

    def noise_scale(self, e: ast.Expr, kind: str) -> sympy.Expr | None:
        """A noise model's scale: any expression (a parameter to fit it), but a constant must be positive."""
        value = self.expr(e, self.symbolic)
        if value is None or not value.free_symbols <= {self.symbols[c] for c in self.numeric}:
            return value
        number = self.expr(e, {**self.symbolic, **self.numeric})  # with the constants' values, checked as theirs are
        if number is not None and number.is_number and not number > 0:
            self.rep.error(e.span, f"the {NOISE_MODELS[kind].args_text} of '{kind}' must be positive, not {float(number):g}")
        return value

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
        initials = [self.expr(node.initial, initial_env) for node in c.states]  # None where reported
        states = [replace(st, initial=sympy.S.Zero if x0 is None else x0) for st, x0 in zip(states, initials)]
        rhs = []
        for st in c.states:
            eq = c.equations.get(st.name.name)
            rhs.append(self.expr(eq.rhs, self.symbolic) if eq is not None else None)
        observables = []
        for o in c.observes:
            noise = None
            if o.noise is not None:
                noise = Noise(o.noise.kind.name, tuple(self.noise_scale(a, o.noise.kind.name) for a in o.noise.args))
            observables.append(Observable(o.column.name, self.expr(o.value, self.symbolic), noise, o.span.line))
        self.rep.raise_if_errors()
        name = c.model.name.name if c.model else _stem(c.source.filename)
        return Model(
            name=name, description=c.model.description if c.model else None, filename=c.source.filename,
            source=c.source.text, time=time, states=states, params=params, consts=consts, inputs=inputs,
            nets=nets, lets=lets, observables=observables, rhs=rhs, warnings=self.rep.warnings,
        )


def _condition(cond: sympy.Basic) -> sympy.Basic:
    """``cond`` with any ``if`` inside it folded out, as nested ``ITE``s.

    SymPy folds a Piecewise inside a condition itself, but its rewrite fails (KeyError)
    when a condition has no symbols, as ``U(0) > 0`` (a net at constant inputs) has not.
    """
    if not cond.has(sympy.Piecewise):
        return cond
    folded = sympy.piecewise_fold(cond)
    if not isinstance(folded, sympy.Piecewise):
        return folded
    pairs = list(folded.args)
    result = pairs.pop().expr if pairs[-1].cond == True else sympy.false  # noqa: E712 - SymPy's true
    for value, when in reversed(pairs):
        result = sympy.ITE(when, value, result)
    return result


def _stem(filename: str) -> str:
    stem = PurePath(filename).stem
    return stem if stem and not stem.startswith("<") else "model"


def lower(checked: Checked, rep: Reporter) -> Model:
    """Build the Model; raises ``ModelError`` with everything wrong that arithmetic reveals."""
    return _Lowerer(checked, rep).run()
