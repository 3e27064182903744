"""Semantic checks: what every name means, and whether each statement makes sense.

Input is the syntax tree; output is a ``Checked`` table of declarations that the
lowering can trust (every name resolved, every state with exactly one equation,
no cycles, every expression well typed). All independent problems are reported,
each at its own location.
"""

from __future__ import annotations

import graphlib
import math
from dataclasses import dataclass, field
from enum import Enum

from odedsl.errors import Span
from odedsl.lang import ast
from odedsl.lang.builtins import (
    ACTIVATIONS, CONSTANTS, FUNCTIONS, INFINITY, MAX_NET_WIDTH, NET_OPTIONS, NOISE_MODELS,
)
from odedsl.lang.report import Reporter, did_you_mean


class Kind(str, Enum):
    TIME = "time variable"
    STATE = "state"
    PARAM = "parameter"
    CONST = "constant"
    INPUT = "input"
    NET = "neural network"
    LET = "intermediate (let)"

    @property
    def article(self) -> str:
        """The kind with its indefinite article: "a state", "an input"."""
        return ("an " if self.value[0] in "aeiou" else "a ") + self.value


class Context(Enum):
    """Where an expression sits, which decides the names it may use."""

    CONSTANT = ("a constant", frozenset({Kind.CONST}), "numbers and other constants")
    PARAM_VALUE = ("a parameter's value or bounds", frozenset({Kind.CONST}), "numbers and constants")
    INITIAL = ("an initial value", frozenset({Kind.CONST, Kind.PARAM}), "numbers, constants and parameters")
    NET_SIZE = ("a network size", frozenset({Kind.CONST}), "whole numbers")
    DYNAMICS = ("an equation", frozenset(Kind), "any declared name")

    def __init__(self, what: str, kinds: frozenset, allowed: str) -> None:
        self.what = what
        self.kinds = kinds
        self.allowed = allowed


class Type(Enum):
    REAL = "a number"
    BOOL = "a condition"
    VECTOR = "a network's output vector"


@dataclass
class Decl:
    kind: Kind
    name: ast.Ident
    node: ast.Statement | None  # None for the default time variable
    used: bool = False


@dataclass
class Checked:
    """The checked declarations, ready for lowering."""

    source: ast.SourceFile
    model: ast.ModelDecl | None
    time: str
    decls: dict[str, Decl]
    states: list[ast.StateDecl]
    params: list[ast.ParamDecl]
    consts: list[ast.ConstDecl]  # in dependency order
    inputs: list[ast.InputDecl]
    nets: list[ast.NetDecl]
    lets: list[ast.LetDecl]  # in dependency order
    equations: dict[str, ast.Derivative]
    observes: list[ast.ObserveDecl]
    deps: dict[str, set[str]] = field(default_factory=dict)


def _hint(*parts: str | None) -> str:
    """Hint sentences joined, skipping the missing ones (e.g. no "did you mean")."""
    return " ".join(p for p in parts if p)


def _is_int_literal(e: ast.Expr) -> bool:
    """A whole-number literal that fits a double, so ``int(e.text)`` is cheap and safe."""
    return isinstance(e, ast.Number) and e.text.isdigit() and math.isfinite(float(e.text))


class _Checker:
    def __init__(self, tree: ast.SourceFile, rep: Reporter) -> None:
        self.tree = tree
        self.rep = rep
        self.decls: dict[str, Decl] = {}
        self.equations: dict[str, ast.Derivative] = {}
        self.observes: list[ast.ObserveDecl] = []
        self.by_kind: dict[Kind, list] = {k: [] for k in Kind}
        self.model: ast.ModelDecl | None = None
        self.time = "t"
        self.deps: dict[str, set[str]] = {}
        self.vectors: dict[str, tuple[str, int]] = {}  # let name -> (net, number of outputs)
        self.duplicates: list[ast.Statement] = []  # rejected redeclarations, still checked inside

    # -- pass 1: declarations ----------------------------------------------------

    def declare(self, kind: Kind, name: ast.Ident, node: ast.Statement | None) -> None:
        previous = self.decls.get(name.name)
        if previous is not None:
            where = f" at line {previous.name.span.line}" if previous.node is not None else " (the default time variable)"
            hint = "the time variable is named 't' unless a 'time' statement says otherwise" if previous.node is None else None
            self.rep.error(name.span, f"'{name.name}' is already declared as {previous.kind.article}{where}", hint)
            self.duplicates.append(node)
            return
        self.decls[name.name] = Decl(kind, name, node)
        if node is not None:
            self.by_kind[kind].append(node)

    def collect(self) -> None:
        stmts = self.tree.statements
        time_decls = [s for s in stmts if isinstance(s, ast.TimeDecl)]
        for extra in time_decls[1:]:
            self.rep.error(extra.span, f"the time variable is already named at line {time_decls[0].span.line}")
        if time_decls:
            self.time = time_decls[0].name.name
            self.declare(Kind.TIME, time_decls[0].name, time_decls[0])
        else:
            self.decls["t"] = Decl(Kind.TIME, ast.Ident("t", Span(0, 0, 0, 0)), None)
        simple = {ast.StateDecl: Kind.STATE, ast.ParamDecl: Kind.PARAM, ast.ConstDecl: Kind.CONST,
                  ast.InputDecl: Kind.INPUT, ast.NetDecl: Kind.NET, ast.LetDecl: Kind.LET}
        for i, s in enumerate(stmts):
            if isinstance(s, ast.ModelDecl):
                if self.model is not None:
                    self.rep.error(s.span, f"a second 'model' statement (the first is at line {self.model.span.line})")
                elif i != 0:
                    self.rep.error(s.span, "'model' must be the first statement of the file")
                    self.model = s
                else:
                    self.model = s
            elif type(s) in simple:
                self.declare(simple[type(s)], s.name, s)
            elif isinstance(s, ast.ObserveDecl):
                first = next((o for o in self.observes if o.column.name == s.column.name), None)
                if first is not None:
                    self.rep.error(s.column.span, f"column '{s.column.name}' is already observed at line {first.span.line}")
                    self.duplicates.append(s)
                else:
                    self.observes.append(s)

    def find_vector_lets(self) -> None:
        """Lets that hold a whole multi-output net call (``let I = U(x, y)``), indexed later as ``I[0]``."""
        changed = True
        while changed:
            changed = False
            for lt in self.by_kind[Kind.LET]:
                if lt.name.name in self.vectors:
                    continue
                v = lt.value
                size = None
                if isinstance(v, ast.Call) and v.func.name in self.decls and self.decls[v.func.name].kind is Kind.NET:
                    n_out = self.decls[v.func.name].node.n_out
                    if _is_int_literal(n_out) and int(n_out.text) > 1:
                        size = (v.func.name, int(n_out.text))
                elif isinstance(v, ast.Name) and v.name in self.vectors:
                    size = self.vectors[v.name]
                if size is not None:
                    self.vectors[lt.name.name] = size
                    changed = True

    # -- pass 2: equations ------------------------------------------------------

    def equations_pass(self) -> None:
        for s in self.tree.statements:
            if isinstance(s, ast.Derivative):
                self.equation(s)
        for st in self.by_kind[Kind.STATE]:
            if st.name.name not in self.equations:
                self.rep.error(st.name.span, f"state '{st.name.name}' has no equation",
                               f"add one: der({st.name.name}) = ...")
        if not self.by_kind[Kind.STATE]:
            stmts = self.tree.statements
            span = stmts[0].span if stmts else Span(1, 1, 1, 1)
            self.rep.error(span, "the model declares no state" if stmts else "the file contains no statements",
                           "a model needs at least one 'state NAME = VALUE' and its equation 'der(NAME) = ...'")

    def equation(self, s: ast.Derivative) -> None:
        name = s.state
        if s.spelling == "ratio":
            expected_den = "d" + self.time
            if s.time.name != expected_den:
                # Still the equation of the state named above it: no extra "has no equation" error.
                self.rep.error(s.time.span, f"the derivative must be taken with respect to time: expected '{expected_den}'",
                               None if self.time == "t" else f"the time variable is '{self.time}'")
            if not name.name.startswith("d") or len(name.name) < 2:
                self.rep.error(name.span, f"'{name.name}/{s.time.name}' is not a derivative",
                               f"write the derivative of x as d{'x'}/{expected_den}, der(x) or x'")
                self.check_expr(s.rhs, Context.DYNAMICS)
                return
            name = ast.Ident(name.name[1:], Span(name.span.line, name.span.column + 1, name.span.end_line, name.span.end_column))
        decl = self.decls.get(name.name)
        if decl is None:
            states = [n for n, d in self.decls.items() if d.kind is Kind.STATE]
            self.rep.error(name.span, f"equation for '{name.name}', which is not declared",
                           did_you_mean(name.name, states) or f"declare it first: state {name.name} = INITIAL_VALUE")
        elif decl.kind is not Kind.STATE:
            self.rep.error(name.span, f"'{name.name}' is {decl.kind.article}, not a state; only states have equations",
                           f"to make it a state, declare 'state {name.name} = ...' instead")
        elif name.name in self.equations:
            first = self.equations[name.name]
            self.rep.error(s.span, f"state '{name.name}' already has an equation at line {first.span.line}")
        else:
            decl.used = True
            self.equations[name.name] = s
        self.check_expr(s.rhs, Context.DYNAMICS)

    # -- pass 3: everything else that holds expressions ------------------------------

    def declarations_pass(self) -> None:
        for kind in (Kind.STATE, Kind.PARAM, Kind.CONST, Kind.NET, Kind.LET):
            for s in self.by_kind[kind]:
                self.declaration(s)
        for o in self.observes:
            self.declaration(o)
        for s in self.duplicates:  # already reported; the errors inside them are independent ones
            self.declaration(s, duplicate=True)

    def declaration(self, s: ast.Statement, duplicate: bool = False) -> None:
        """Check the expressions of one declaration (of a duplicate, only for the errors inside them)."""
        if isinstance(s, ast.StateDecl):
            self.check_expr(s.initial, Context.INITIAL)
        elif isinstance(s, ast.ParamDecl):
            self.check_expr(s.value, Context.PARAM_VALUE)
            if s.bounds is not None:
                self.check_expr(s.bounds.lower, Context.PARAM_VALUE, bounds=True)
                self.check_expr(s.bounds.upper, Context.PARAM_VALUE, bounds=True)
        elif isinstance(s, ast.ConstDecl):
            self.check_expr(s.value, Context.CONSTANT, owner=None if duplicate else s.name.name)
        elif isinstance(s, ast.NetDecl):
            self.net(s)
        elif isinstance(s, ast.LetDecl):
            want = None if duplicate else Type.VECTOR if s.name.name in self.vectors else Type.REAL
            self.check_expr(s.value, Context.DYNAMICS, owner=None if duplicate else s.name.name, want=want)
        elif isinstance(s, ast.ObserveDecl):
            self.check_expr(s.value, Context.DYNAMICS)
            if s.noise is not None:
                self.noise(s.noise)

    def net_size(self, size: ast.Expr, message: str, hint: str) -> None:
        """A layer width: a positive whole number, at most ``MAX_NET_WIDTH``."""
        if self.too_large(size):
            return
        if not (_is_int_literal(size) and int(size.text) > 0):
            self.rep.error(size.span, message, hint)
        elif int(size.text) > MAX_NET_WIDTH:
            self.rep.error(size.span, f"{size.text} is too wide for a neural network layer (at most {MAX_NET_WIDTH})")

    def net(self, n: ast.NetDecl) -> None:
        for size, what in ((n.n_in, "number of inputs"), (n.n_out, "number of outputs")):
            self.net_size(size, f"the {what} of a neural network must be a positive whole number",
                          f"for example: nn {n.name.name}: 2 -> 1")
        seen: dict[str, ast.NetOption] = {}
        for opt in n.options:
            key = opt.name.name
            spec = NET_OPTIONS.get(key)
            if spec is None:
                self.rep.error(opt.name.span, f"unknown neural-network option '{key}'",
                               _hint(did_you_mean(key, NET_OPTIONS), f"valid options: {', '.join(NET_OPTIONS)}"))
                continue
            if key in seen:
                self.rep.error(opt.name.span, f"option '{key}' is given twice")
                continue
            seen[key] = opt
            self.net_option(key, spec.kind, opt)

    def net_option(self, key: str, kind: str, opt: ast.NetOption) -> None:
        v = opt.value
        if kind == "int_list":
            items = v if isinstance(v, tuple) else (v,)
            for item in items:
                self.net_size(item, f"'{key}' takes positive whole numbers, e.g. {key} = [32, 32]", None)
        elif kind == "name":
            if not isinstance(v, ast.Name):
                self.rep.error(_span_of(v, opt), f"'{key}' takes a name: one of {', '.join(ACTIVATIONS)}")
            elif v.name not in ACTIVATIONS:
                self.rep.error(v.span, f"unknown activation '{v.name}'",
                               _hint(did_you_mean(v.name, ACTIVATIONS), f"valid activations: {', '.join(ACTIVATIONS)}"))
        elif kind == "number":
            negative = isinstance(v, ast.Unary) and v.op == "-" and isinstance(v.operand, ast.Number)
            if negative or (isinstance(v, ast.Number) and not math.isfinite(float(v.text))):
                self.rep.error(v.span, f"'{key}' must be a finite number >= 0")
            elif not isinstance(v, ast.Number):
                self.rep.error(_span_of(v, opt), f"'{key}' takes a number, e.g. {key} = 0.01")

    def noise(self, noise: ast.Noise) -> None:
        kind = NOISE_MODELS.get(noise.kind.name)
        if kind is None:
            self.rep.error(noise.kind.span, f"unknown noise model '{noise.kind.name}'",
                           _hint(did_you_mean(noise.kind.name, NOISE_MODELS),
                                 f"valid noise models: {', '.join(f'{k}({v.args_text})' for k, v in NOISE_MODELS.items())}"))
            return
        if len(noise.args) != kind.n_args:
            self.rep.error(noise.span, f"'{noise.kind.name}' takes {kind.n_args} argument ({kind.args_text}), got {len(noise.args)}",
                           f"{noise.kind.name}({kind.args_text}): {kind.meaning}")
        for a in noise.args:
            self.check_expr(a, Context.DYNAMICS)

    # -- expressions ----------------------------------------------------------

    def check_expr(self, e: ast.Expr, ctx: Context, owner: str | None = None, bounds: bool = False,
                   want: Type | None = Type.REAL) -> None:
        """Check ``e`` and that it is a ``want`` (any type when None)."""
        try:
            got = self.expr_type(e, ctx, owner, bounds)
        except RecursionError:  # e.g. thousands of nested unary minuses or powers
            self.rep.error(e.span, "this expression is nested too deeply to compile")
            return
        self.expect(e, got, want)

    def expect(self, e: ast.Expr, got: Type | None, want: Type | None) -> None:
        if got is None or want is None or got is want:
            return
        if got is Type.VECTOR:
            net, n_out = self.vector_of(e)
            self.rep.error(e.span, f"this is the whole output of '{net}' ({n_out} values); pick one with [k], "
                           f"k from 0 to {n_out - 1}")
        elif want is Type.REAL:
            self.rep.error(e.span, "a condition is used where a number is expected",
                           "conditions belong inside 'if COND then A else B'")
        else:
            self.rep.error(e.span, "a number is used where a condition is expected",
                           "write a comparison such as x > 0")

    def vector_of(self, e: ast.Expr) -> tuple[str, int]:
        if isinstance(e, ast.Name):
            return self.vectors[e.name]
        return e.func.name, int(self.decls[e.func.name].node.n_out.text)

    def expr_type(self, e: ast.Expr, ctx: Context, owner: str | None, bounds: bool) -> Type | None:
        """The type of ``e``, or None when an error inside it was already reported."""
        rec = lambda sub, want=Type.REAL: self.expect(sub, self.expr_type(sub, ctx, owner, bounds), want)  # noqa: E731
        if isinstance(e, ast.Number):
            self.too_large(e)
            return Type.REAL
        if isinstance(e, ast.Name):
            return self.name(e, ctx, owner, bounds)
        if isinstance(e, ast.Call):
            return self.call(e, ctx, owner, bounds, indexed=False)
        if isinstance(e, ast.Index):
            return self.index(e, ctx, owner, bounds)
        if isinstance(e, ast.Unary):
            rec(e.operand, Type.BOOL if e.op == "not" else Type.REAL)
            return Type.BOOL if e.op == "not" else Type.REAL
        if isinstance(e, ast.Chain):
            boolean = e.kind in ("and", "or")
            for x in e.operands:
                rec(x, Type.BOOL if boolean else Type.REAL)
            return Type.BOOL if boolean else Type.REAL
        if isinstance(e, ast.Power):
            rec(e.base)
            rec(e.exponent)
            return Type.REAL
        if isinstance(e, ast.Compare):
            for side in (e.left, e.right):
                if isinstance(side, ast.Compare):  # (a < b) < c: one error, the chain, not also its type
                    self.expr_type(side, ctx, owner, bounds)
                else:
                    rec(side)
            if isinstance(e.left, ast.Compare) or isinstance(e.right, ast.Compare):
                self.rep.error(e.op_span, "comparisons do not chain", "write 'a < b and b < c'")
            return Type.BOOL
        if isinstance(e, ast.IfElse):
            rec(e.cond, Type.BOOL)
            rec(e.then)
            rec(e.orelse)
            return Type.REAL
        raise TypeError(f"unknown expression node {type(e).__name__}")  # pragma: no cover - grammar bug

    def too_large(self, e: ast.Expr) -> bool:
        """Report a number literal beyond double precision (1e999); True when ``e`` is one."""
        if isinstance(e, ast.Number) and not math.isfinite(float(e.text)):
            self.rep.error(e.span, f"the number {e.text} is too large for double precision")
            return True
        return False

    def name(self, e: ast.Name, ctx: Context, owner: str | None, bounds: bool) -> Type | None:
        decl = self.decls.get(e.name)
        if decl is None:
            if e.name in CONSTANTS or (bounds and e.name == INFINITY):
                return Type.REAL
            if e.name in FUNCTIONS:
                self.rep.error(e.span, f"'{e.name}' is a function; call it with arguments, e.g. {e.name}(x)")
                return None
            visible = [n for n, d in self.decls.items() if d.kind in ctx.kinds] + list(CONSTANTS)
            hint = did_you_mean(e.name, visible)
            if e.name == INFINITY:
                hint = "'inf' may only be used in parameter bounds"
            self.rep.error(e.span, f"'{e.name}' is not declared", hint)
            return None
        decl.used = True
        if decl.kind not in ctx.kinds:
            self.rep.error(e.span, f"{ctx.what} may only use {ctx.allowed}, but '{e.name}' is {decl.kind.article}")
            return None
        if decl.kind is Kind.NET:
            n = decl.node
            n_in = int(n.n_in.text) if _is_int_literal(n.n_in) else 0
            if n_in == 0:
                args = "..."
            elif n_in <= 4:
                args = ", ".join(f"x{i + 1}" for i in range(n_in))
            else:  # never spell out thousands of inputs
                args = f"x1, ..., x{n_in}"
            self.rep.error(e.span, f"'{e.name}' is a neural network; call it with its inputs, e.g. {e.name}({args})")
            return None
        if owner is not None and decl.kind in (Kind.LET, Kind.CONST):
            self.deps[owner].add(e.name)
        return Type.VECTOR if e.name in self.vectors else Type.REAL

    def call(self, e: ast.Call, ctx: Context, owner: str | None, bounds: bool, indexed: bool) -> Type | None:
        fname = e.func.name
        decl = self.decls.get(fname)
        for a in e.args:
            self.expect(a, self.expr_type(a, ctx, owner, bounds), Type.REAL)
        if decl is not None and decl.kind is Kind.NET:
            decl.used = True
            if Kind.NET not in ctx.kinds:
                self.rep.error(e.func.span, f"{ctx.what} may not use a neural network; nets belong in equations, lets and observations")
                return None
            n = decl.node
            if not (_is_int_literal(n.n_in) and _is_int_literal(n.n_out)):
                return None
            n_in, n_out = int(n.n_in.text), int(n.n_out.text)
            if len(e.args) != n_in:
                self.rep.error(e.span, f"'{fname}' takes {n_in} input{'s' if n_in != 1 else ''}, got {len(e.args)}",
                               f"declared at line {n.span.line}: nn {fname}: {n_in} -> {n_out}")
            return Type.VECTOR if n_out > 1 and not indexed else Type.REAL
        if decl is not None:
            self.rep.error(e.func.span, f"'{fname}' is {decl.kind.article}, not a function",
                           _hint(f"declared at line {decl.name.span.line};" if decl.node is not None else None,
                                 f"to multiply, write {fname}*(...)"))
            return None
        func = FUNCTIONS.get(fname)
        if func is None:
            nets = [n for n, d in self.decls.items() if d.kind is Kind.NET]
            self.rep.error(e.func.span, f"unknown function '{fname}'",
                           did_you_mean(fname, list(FUNCTIONS) + nets) or "see docs/language.md for the list of functions")
            return None
        n = len(e.args)
        if n < func.min_args or (func.max_args is not None and n > func.max_args):
            self.rep.error(e.span, f"'{fname}' takes {func.arity_text()}, got {n}")
        return Type.REAL

    def index(self, e: ast.Index, ctx: Context, owner: str | None, bounds: bool) -> Type | None:
        target = e.target
        if isinstance(target, ast.Name) and target.name in self.vectors:
            result = self.name(target, ctx, owner, bounds)
            net, n_out = self.vectors[target.name]
        else:
            decl = self.decls.get(target.func.name) if isinstance(target, ast.Call) else None
            if decl is None or decl.kind is not Kind.NET:
                self.expr_type(target, ctx, owner, bounds)
                self.rep.error(e.span, "only a neural network's output can be indexed, as in U(x, y)[0]")
                return None
            result = self.call(target, ctx, owner, bounds, indexed=True)
            if result is None or not _is_int_literal(decl.node.n_out):
                return result
            net, n_out = target.func.name, int(decl.node.n_out.text)
        if result is None:
            return None
        if self.too_large(e.index):
            pass
        elif not _is_int_literal(e.index):
            self.rep.error(e.index.span, "a network output index must be a whole number such as 0")
        elif int(e.index.text) >= n_out:
            self.rep.error(e.index.span, f"index {e.index.text} is out of range: '{net}' has {n_out} output"
                           f"{'s' if n_out != 1 else ''}, indexed 0 to {n_out - 1}")
        return Type.REAL

    # -- pass 4: order and unused names -----------------------------------------

    def order(self, kind: Kind) -> list:
        """The declarations of ``kind`` in dependency order; reports every independent cycle."""
        nodes = {n.name.name: n for n in self.by_kind[kind]}
        graph = {name: self.deps.get(name, set()) & nodes.keys() for name in nodes}
        while True:
            try:
                return [nodes[name] for name in graphlib.TopologicalSorter(graph).static_order()]
            except graphlib.CycleError as exc:
                self.cycle(kind, nodes, exc.args[1])
                for name in exc.args[1]:
                    graph[name] = set()  # break this cycle, then look for the next

    def cycle(self, kind: Kind, nodes: dict, found: list[str]) -> None:
        """Report one cycle as 'a -> b -> c -> a' (a uses b, ...), from its first declaration in the file."""
        ring = found[-2::-1]  # graphlib lists each name before the names that use it
        start = min(range(len(ring)), key=lambda i: (nodes[ring[i]].span.line, nodes[ring[i]].span.column))
        ring = ring[start:] + ring[:start]
        path = " -> ".join(ring + ring[:1])
        self.rep.error(nodes[ring[0]].name.span, f"'{ring[0]}' is defined in terms of itself: {path}",
                       f"a {'let' if kind is Kind.LET else 'const'} cannot depend on itself, directly or through others")

    def unused(self) -> None:
        for d in self.decls.values():
            if d.used or d.node is None or d.kind in (Kind.TIME, Kind.STATE):
                continue
            self.rep.warning(d.name.span, f"{d.kind.value} '{d.name.name}' is declared but never used")

    def run(self) -> Checked:
        self.collect()
        self.find_vector_lets()
        for node in self.by_kind[Kind.LET] + self.by_kind[Kind.CONST]:
            self.deps[node.name.name] = set()
        self.equations_pass()
        self.declarations_pass()
        consts = self.order(Kind.CONST)
        lets = self.order(Kind.LET)
        self.unused()
        return Checked(
            source=self.tree, model=self.model, time=self.time, decls=self.decls,
            states=self.by_kind[Kind.STATE], params=self.by_kind[Kind.PARAM], consts=consts,
            inputs=self.by_kind[Kind.INPUT], nets=self.by_kind[Kind.NET], lets=lets,
            equations=self.equations, observes=self.observes, deps=self.deps,
        )


def _span_of(v: ast.Expr | tuple, opt: ast.NetOption):
    return v.span if not isinstance(v, tuple) else opt.span


def check(tree: ast.SourceFile, rep: Reporter) -> Checked:
    """Resolve and check ``tree``; errors and warnings go to ``rep``."""
    return _Checker(tree, rep).run()

