"""How a Model presents itself: plain text, LaTeX and a JSON-ready dict (``odedsl show``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import sympy

if TYPE_CHECKING:
    from odedsl.model import Model


def _num(x: float) -> str | float:
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def _bounds(p) -> str:
    if not p.bounded:
        return ""
    return f"[{p.lower:g}, {p.upper:g}]"


def render_text(model: "Model") -> str:
    """Equations after ``let`` substitution, then tables of the declarations.

    Examples
    --------
    >>> import odedsl
    >>> print(render_text(odedsl.loads("param k = 2\\nstate x = 1\\nder(x) = -k*x\\n", name="decay")))
    model decay
    <BLANKLINE>
    equations
      d(x)/dt = -k*x
    <BLANKLINE>
    initial values
      x(0) = 1
    <BLANKLINE>
    parameters
      name  value  bounds  status
      k     2              fitted
    """
    t = model.time.name
    out = [f"model {model.name}" + (f'  "{model.description}"' if model.description else ""), "", "equations"]
    out += [f"  d({s.name})/d{t} = {sympy.sstr(e)}" for s, e in zip(model.states, model.rhs)]
    out += ["", "initial values"] + [f"  {s.name}(0) = {sympy.sstr(s.initial)}" for s in model.states]
    if model.params:
        rows = [("name", "value", "bounds", "status")] + [
            (p.name, f"{p.value:g}", _bounds(p), "fixed" if p.fixed else "fitted") for p in model.params
        ]
        out += ["", "parameters"] + _table(rows)
    if model.consts:
        out += ["", "constants"] + [f"  {c.name} = {sympy.sstr(c.value)}" for c in model.consts]
    if model.inputs:
        out += ["", "inputs"] + [f"  {u.name}  (from the data column '{u.name}')" for u in model.inputs]
    if model.nets:
        out += ["", "neural networks"] + [
            f"  {n.name}: {n.n_in} -> {n.n_out}, hidden = {list(n.hidden)}, activation = {n.activation}, "
            f"{n.n_weights} weights" for n in model.nets
        ]
    if model.observables:
        out += ["", "observables"]
        for o in model.observables:
            noise = f"  ~ {o.noise.kind}({', '.join(sympy.sstr(a) for a in o.noise.args)})" if o.noise else ""
            out.append(f"  {o.column} = {sympy.sstr(o.expr)}{noise}")
    return "\n".join(out)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def render_latex(model: "Model") -> str:
    """An ``align`` environment of the equations, for notebooks and papers."""
    t = sympy.latex(model.time)
    lines = [
        rf"\frac{{d {sympy.latex(s.symbol)}}}{{d {t}}} &= {sympy.latex(e)}" for s, e in zip(model.states, model.rhs)
    ]
    return "\\begin{align}\n" + " \\\\\n".join(lines) + "\n\\end{align}"


def render_dict(model: "Model") -> dict:
    """Everything ``show`` knows, as plain JSON types (expressions as SymPy strings)."""
    s = sympy.sstr
    return {
        "name": model.name,
        "description": model.description,
        "file": model.filename,
        "time": model.time.name,
        "states": [{"name": x.name, "initial": s(x.initial), "rhs": s(e)} for x, e in zip(model.states, model.rhs)],
        "params": [
            {"name": p.name, "value": p.value, "lower": _num(p.lower), "upper": _num(p.upper), "fixed": p.fixed}
            for p in model.params
        ],
        "consts": [{"name": c.name, "value": s(c.value)} for c in model.consts],
        "inputs": [u.name for u in model.inputs],
        "nets": [
            {"name": n.name, "n_in": n.n_in, "n_out": n.n_out, "hidden": list(n.hidden), "activation": n.activation,
             "init_scale": n.init_scale, "n_weights": n.n_weights}
            for n in model.nets
        ],
        "lets": [{"name": x.name, "value": s(x.expr)} for x in model.lets],
        "observables": [
            {"column": o.column, "expr": s(o.expr),
             "noise": None if o.noise is None else {"kind": o.noise.kind, "args": [s(a) for a in o.noise.args]}}
            for o in model.observables
        ],
    }
