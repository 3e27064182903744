"""The front end: model text to a checked SymPy ``Model``.

parse (``parser``) -> check (``check``) -> lower (``lower``); each stage reports
every problem it finds before the next stage runs.
"""

from __future__ import annotations

from odedsl.errors import Span
from odedsl.lang.check import check
from odedsl.lang.lower import lower
from odedsl.lang.parser import parse
from odedsl.model import Model


def compile_model(text: str, filename: str = "<string>") -> Model:
    """Compile model text; raises ``odedsl.ModelError`` listing every problem found.

    Examples
    --------
    >>> compile_model("state x = 1\\nder(x) = -x\\n").rhs
    [-x]
    """
    tree, rep = parse(text, filename)
    rep.raise_if_errors()
    if not tree.statements:
        what = "the file is empty" if not text.strip() else "the file contains no statements, only comments"
        rep.error(Span(1, 1, 1, 1), what, "a model needs at least one 'state NAME = VALUE' and its equation 'der(NAME) = ...'")
        rep.raise_if_errors()
    checked = check(tree, rep)
    rep.raise_if_errors()
    return lower(checked, rep)
