"""The syntax tree of a model file: plain dataclasses that remember where they came from.

Nothing here knows what a name means; that is the checker's job. Every node has a
``span`` so each later stage can point at the exact text it is unhappy with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from odedsl.errors import Span


@dataclass(frozen=True, slots=True)
class Ident:
    name: str
    span: Span


# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Number:
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    func: Ident
    args: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Index:
    target: "Expr"
    index: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-", "+" or "not"
    operand: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Chain:
    """A left-to-right run of one precedence level: ``a - b + c``, ``a * b / c``, ``a and b``.

    Kept flat (not nested binary nodes) so long sums build in linear time.
    ``ops[i]`` joins ``operands[i]`` and ``operands[i + 1]``.
    """

    kind: str  # "sum", "product", "and", "or"
    operands: tuple["Expr", ...]
    ops: tuple[str, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Power:
    base: "Expr"
    exponent: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # "<", "<=", ">", ">=", "==", "!="
    left: "Expr"
    right: "Expr"
    op_span: Span
    span: Span


@dataclass(frozen=True, slots=True)
class IfElse:
    cond: "Expr"
    then: "Expr"
    orelse: "Expr"
    span: Span


Expr = Union[Number, Name, Call, Index, Unary, Chain, Power, Compare, IfElse]


# ----------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class ModelDecl:
    name: Ident
    description: str | None
    span: Span


@dataclass(frozen=True, slots=True)
class TimeDecl:
    name: Ident
    span: Span


@dataclass(frozen=True, slots=True)
class StateDecl:
    name: Ident
    initial: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Bounds:
    lower: Expr
    upper: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class ParamDecl:
    name: Ident
    value: Expr
    bounds: Bounds | None
    fixed: bool
    span: Span


@dataclass(frozen=True, slots=True)
class ConstDecl:
    name: Ident
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class InputDecl:
    name: Ident
    span: Span


@dataclass(frozen=True, slots=True)
class NetOption:
    name: Ident
    value: Expr | tuple[Expr, ...]  # a tuple for a bracketed list
    span: Span


@dataclass(frozen=True, slots=True)
class NetDecl:
    name: Ident
    n_in: Expr
    n_out: Expr
    options: tuple[NetOption, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class LetDecl:
    name: Ident
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Derivative:
    """``der(x) = ...``, ``x' = ...`` or ``dx/dt = ...``; ``state`` is the differentiated name."""

    state: Ident
    rhs: Expr
    spelling: str  # "der", "prime" or "ratio"
    span: Span
    time: Ident | None = None  # the denominator of dx/dt, checked against the time name


@dataclass(frozen=True, slots=True)
class Noise:
    kind: Ident
    args: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ObserveDecl:
    column: Ident
    value: Expr
    noise: Noise | None
    span: Span


Statement = Union[
    ModelDecl, TimeDecl, StateDecl, ParamDecl, ConstDecl, InputDecl, NetDecl, LetDecl, Derivative, ObserveDecl
]


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A parsed file: its name as shown in messages, its text, and its statements in order."""

    filename: str
    text: str
    lines: tuple[str, ...]
    statements: tuple[Statement, ...]

    def line_text(self, line: int) -> str | None:
        return self.lines[line - 1] if 1 <= line <= len(self.lines) else None
