"""Collects the diagnostics of one file, so every stage can report all it finds at once."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from odedsl.errors import Diagnostic, ModelError, Severity, Span


class Reporter:
    """Accumulates errors and warnings for one source text; ``raise_if_errors`` ends a stage."""

    def __init__(self, filename: str, lines: tuple[str, ...]) -> None:
        self.filename = filename
        self.lines = lines
        self.diagnostics: list[Diagnostic] = []

    def _line(self, span: Span) -> str | None:
        return self.lines[span.line - 1] if 1 <= span.line <= len(self.lines) else None

    def error(self, span: Span, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(self.filename, span, message, hint, Severity.ERROR, self._line(span)))

    def warning(self, span: Span, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(self.filename, span, message, hint, Severity.WARNING, self._line(span)))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.WARNING]

    def raise_if_errors(self) -> None:
        errors = sorted(self.errors, key=lambda d: (d.span.line, d.span.column))
        if errors:
            raise ModelError(errors)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest candidate to a misspelt ``name``, or None.

    Examples
    --------
    >>> did_you_mean("alpah", ["alpha", "beta"])
    "did you mean 'alpha'?"
    """
    pool = sorted(set(candidates))
    match = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not match:
        lowered = {c.lower(): c for c in pool}
        if name.lower() in lowered:
            match = [lowered[name.lower()]]
    return f"did you mean '{match[0]}'?" if match else None
