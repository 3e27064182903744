"""The candidate library: SymPy terms in a net's inputs, so every regression column maps back to a term.

The library is defined once per net on placeholder symbols, one per input
position; each call of the net substitutes its own argument expressions. That
keeps a net one function even where the model calls it at different arguments,
and lets the written model carry each term in the model's own names. Columns
are evaluated by lambdified SymPy over the sampled values, never from text.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import sympy

from odedsl.discover.options import Options
from odedsl.errors import UsageError
from odedsl.model import Model, Net


@dataclass(frozen=True)
class Feature:
    """One candidate column: its SymPy term and the name its coefficient gets in the written model.

    ``on_inputs`` is in the placeholder symbols ``inputs`` of the library (a
    polynomial or family term); a user term (``--term``) is in the model's own
    symbols and has ``on_inputs`` None.
    """

    label: str  # e.g. "prey_pred", "exp_pred", "1"
    on_inputs: sympy.Expr | None
    term: sympy.Expr | None  # a user term in the model's symbols
    family: str  # "poly", a family name, or "term"

    def at(self, inputs: tuple[sympy.Symbol, ...], args: tuple[sympy.Expr, ...]) -> sympy.Expr:
        """The term at one call of the net, in the model's symbols."""
        if self.on_inputs is not None:
            return self.on_inputs.xreplace(dict(zip(inputs, args)))
        return self.term


@dataclass(frozen=True)
class Library:
    """The candidates of one net, over placeholder input symbols, with a readable label per input."""

    net: Net
    inputs: tuple[sympy.Symbol, ...]
    input_labels: tuple[str, ...]
    features: tuple[Feature, ...]

    def __len__(self) -> int:
        return len(self.features)

    def exprs(self, args: tuple[sympy.Expr, ...]) -> list[sympy.Expr]:
        """Every candidate at one call of the net, in the model's symbols."""
        return [f.at(self.inputs, args) for f in self.features]

    def display(self, feature: Feature) -> sympy.Expr:
        """A feature in the input labels (for tables and plots)."""
        if feature.on_inputs is None:
            return feature.term
        return feature.on_inputs.xreplace({u: sympy.Symbol(lab) for u, lab in zip(self.inputs, self.input_labels)})


def build_library(model: Model, net: Net, args: tuple[sympy.Expr, ...], options: Options,
                  terms: list[sympy.Expr]) -> Library:
    """Polynomials up to the degree (all cross terms), the families, then the user terms, without duplicates.

    ``args`` are the net's arguments at its first call: a plain name labels its input (``prey``); an
    expression is labelled by position (``in0``).

    Examples
    --------
    >>> import odedsl
    >>> m = odedsl.loads("state x = 1\\nstate y = 1\\nnn U: 2 -> 1\\nder(x) = U(x, y)\\nder(y) = -y\\n")
    >>> lib = build_library(m, m.nets[0], (m.states[0].symbol, m.states[1].symbol), Options(degree=2), [])
    >>> [f.label for f in lib.features]
    ['1', 'x', 'y', 'x2', 'x_y', 'y2']
    """
    inputs = tuple(sympy.Dummy(f"u{i}", real=True) for i in range(net.n_in))
    labels = tuple(a.name if isinstance(a, sympy.Symbol) and _NAME.fullmatch(a.name) else f"in{i}"
                   for i, a in enumerate(args))
    if len(set(labels)) < len(labels):  # U(x, x): the same name twice
        labels = tuple(f"in{i}" for i in range(net.n_in))
    features: list[Feature] = []
    for degree in range(options.resolved_degree + 1):
        for combo in itertools.combinations_with_replacement(range(net.n_in), degree):
            powers = [combo.count(i) for i in range(net.n_in)]
            expr = sympy.Mul(*(inputs[i] ** p for i, p in enumerate(powers)))
            label = "_".join(labels[i] + (str(p) if p > 1 else "") for i, p in enumerate(powers) if p) or "1"
            features.append(Feature(label, expr, None, "poly"))
    for family in options.families:
        for i, u in enumerate(inputs):
            expr, label = FAMILY_TERMS[family](u, labels[i])
            features.append(Feature(label, expr, None, family))
    for j, term in enumerate(terms):
        features.append(Feature(_term_label(term, j), None, term, "term"))
    return Library(net, inputs, labels, tuple(_unique(features, inputs, args)))


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Each family's term of one input and its label.
FAMILY_TERMS = {
    "exp": lambda u, lab: (sympy.exp(u), f"exp_{lab}"),
    "sin": lambda u, lab: (sympy.sin(u), f"sin_{lab}"),
    "cos": lambda u, lab: (sympy.cos(u), f"cos_{lab}"),
    "log": lambda u, lab: (sympy.log(u), f"log_{lab}"),
    "rational": lambda u, lab: (u / (1 + u), f"{lab}_sat"),
}


def _term_label(term: sympy.Expr, index: int) -> str:
    """A name part from a user term's text: ``prey/(pred + 1)`` -> ``prey_pred_1``."""
    text = re.sub(r"[^A-Za-z0-9]+", "_", sympy.sstr(term)).strip("_")
    return text[:24].strip("_") if text and len(text) <= 24 else f"term{index + 1}"


def _unique(features: list[Feature], inputs, args) -> list[Feature]:
    """Drop a user term equal to an earlier candidate (at the first call's arguments)."""
    seen: dict[sympy.Expr, str] = {}
    out = []
    for f in features:
        key = sympy.expand(f.at(inputs, args))
        if key in seen:
            continue
        seen[key] = f.label
        out.append(f)
    return out


#: odedsl's own SymPy functions, for lambdify (NumPy has no such names).
_ACTIVATIONS = {
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "softplus": lambda z: np.logaddexp(0.0, z),
    "relu": lambda z: np.maximum(z, 0.0),
}


def evaluate(exprs: list[sympy.Expr], variables: list[sympy.Symbol], values: np.ndarray,
             constants: dict[sympy.Symbol, float]) -> np.ndarray:
    """Columns of ``exprs`` at the rows of ``values`` (one column per variable), constants substituted.

    Compiled by ``sympy.lambdify`` with dummified arguments, so any name a model may use is safe.

    Examples
    --------
    >>> x, k = sympy.symbols("x k")
    >>> evaluate([k * x, sympy.S.One], [x], np.array([[1.0], [2.0]]), {k: 3.0})
    array([[3., 1.],
           [6., 1.]])
    """
    exprs = [sympy.sympify(e).xreplace({s: sympy.Float(v) for s, v in constants.items()}) for e in exprs]
    free = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
    unknown = free - set(variables)
    if unknown:  # a parameter without a value: cannot happen for a checked model and a complete fit
        raise UsageError(f"no value for {', '.join(sorted(s.name for s in unknown))} in a candidate term")
    f = sympy.lambdify(variables, exprs, modules=[_ACTIVATIONS, "numpy", "scipy"], dummify=True, cse=True)
    with np.errstate(all="ignore"):
        cols = f(*values.T)
    n = values.shape[0]
    return np.column_stack([np.broadcast_to(np.asarray(c, dtype=float), (n,)) for c in cols]) if cols else \
        np.zeros((n, 0))
