"""User candidate terms (``--term``), read by the model language's own front end.

A term is checked exactly as an equation's right-hand side would be, inside the
fitted model (so it may use its states, inputs, parameters, constants and
``let``s), and any problem is reported like a model error, located in the term's
own text. Nothing a user types is ever ``eval``ed.
"""

from __future__ import annotations

import dataclasses

import sympy

from odedsl.errors import Diagnostic, ModelError, Span, UsageError
from odedsl.model import Model
from odedsl.symbolic import neural_terms

#: Name of the temporary ``let`` each term is checked as; a leading underscore is legal in the language
#: and never clashes with the generated names of odedsl itself.
_TEMP = "__odedsl_term_"


def parse_terms(model: Model, terms: tuple[str, ...] | list[str]) -> list[sympy.Expr]:
    """Each term as SymPy in the model's symbols; ``ModelError`` located in the term's text when one is wrong.

    Examples
    --------
    >>> import odedsl
    >>> m = odedsl.loads("state x = 1\\nstate y = 2\\nder(x) = -x\\nder(y) = x\\n")
    >>> parse_terms(m, ["x/(1 + y)"])
    [x/(y + 1)]
    """
    if not terms:
        return []
    from odedsl.lang import compile_model

    for term in terms:
        if "\n" in term or "\r" in term or "\\" in term:
            raise UsageError(f"--term {term!r}: a term is one expression on one line")
        if not term.strip():
            raise UsageError("--term: the term is empty")
    source = model.source if model.source.endswith("\n") else model.source + "\n"
    first = source.count("\n") + 1  # the line of the first appended term
    prefixes = [f"let {_TEMP}{j} = " for j in range(len(terms))]
    text = source + "".join(p + t + "\n" for p, t in zip(prefixes, terms))
    try:
        checked = compile_model(text, model.filename)
    except ModelError as exc:
        mine = [_relocate(d, d.line - first, terms, prefixes) for d in exc.diagnostics if d.line >= first]
        if not mine:  # the model itself no longer compiles: not the terms' fault
            raise
        raise ModelError(mine) from None
    values = {lt.name: lt.expr for lt in checked.lets}
    out = []
    for j, term in enumerate(terms):
        expr = values[f"{_TEMP}{j}"]
        if neural_terms(expr):
            raise ModelError([_diagnostic(j, term, 1, len(term) + 1,
                                          "a candidate term cannot use a neural network: it is what replaces one")])
        if isinstance(expr, (sympy.Tuple, sympy.logic.boolalg.BooleanFunction, sympy.logic.boolalg.BooleanAtom,
                             sympy.core.relational.Relational)):
            raise ModelError([_diagnostic(j, term, 1, len(term) + 1, "a candidate term must be a number, "
                                          "not a condition or a network's output vector")])
        out.append(_as_model_symbols(expr, model))
    return out


def _as_model_symbols(expr: sympy.Expr, model: Model) -> sympy.Expr:
    """The term in the symbols of ``model`` itself (a recompiled copy makes equal symbols, but be explicit)."""
    names = {s.name: s for s in expr.free_symbols}
    mine = {s.name: s for s in [model.time, *model.state_symbols, *model.param_symbols, *model.input_symbols,
                                *(c.symbol for c in model.consts)]}
    return expr.xreplace({s: mine[n] for n, s in names.items() if n in mine})


def _relocate(d: Diagnostic, index: int, terms, prefixes) -> Diagnostic:
    """A diagnostic of the appended ``let`` line, moved into the term's own text."""
    shift = len(prefixes[index])
    term = terms[index]
    column = max(1, d.span.column - shift)
    end = max(column + 1, d.span.end_column - shift) if d.span.end_line == d.span.line else len(term) + 1
    message = d.message.replace(f"{_TEMP}{index}", "the term")
    return dataclasses.replace(d, file=f"--term {index + 1}", span=Span(1, column, 1, end), message=message,
                               source_line=term)


def _diagnostic(index: int, term: str, column: int, end: int, message: str) -> Diagnostic:
    return Diagnostic(f"--term {index + 1}", Span(1, column, 1, end), message, source_line=term)
