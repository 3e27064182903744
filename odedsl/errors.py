"""Every failure a user can cause is one of these exceptions.

The command line maps the root type's ``exit_code`` to the process exit code
(see ``docs/cli.md``), so a new failure kind only has to pick its subclass; no
caller ever needs to parse a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file; lines and columns count from 1, ends are exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    def to(self, other: "Span") -> "Span":
        """The span from the start of ``self`` to the end of ``other``."""
        return Span(self.line, self.column, other.end_line, other.end_column)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One located problem in a model file, with an optional hint on how to fix it."""

    file: str
    span: Span
    message: str
    hint: str | None = None
    severity: Severity = Severity.ERROR
    source_line: str | None = None

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column

    def format(self) -> str:
        """``FILE:LINE:COL: error: message``, then the source line and a caret.

        Examples
        --------
        >>> d = Diagnostic("m.ode", Span(1, 5, 1, 8), "oops", source_line="der(x) = 1")
        >>> print(d.format())
        m.ode:1:5: error: oops
          der(x) = 1
              ^~~
        """
        head = f"{self.file}:{self.span.line}:{self.span.column}: {self.severity.value}: {self.message}"
        lines = [head]
        if self.source_line is not None:
            text = self.source_line.rstrip("\r\n")
            # Keep tabs in the caret line so the caret lines up under tabs too.
            prefix = "".join(c if c == "\t" else " " for c in text[: self.span.column - 1])
            width = 1
            if self.span.end_line == self.span.line:
                width = max(1, min(self.span.end_column, len(text) + 1) - self.span.column)
            lines.append("  " + text)
            lines.append("  " + prefix + "^" + "~" * (width - 1))
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class OdedslError(Exception):
    """Root of odedsl's exceptions; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ModelError(OdedslError):
    """A model file is wrong; carries every independent problem found in it.

    ``file``, ``line``, ``column`` and ``message`` describe the first problem, for
    callers that want one location; ``diagnostics`` holds them all.
    """

    exit_code = 1

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        if not diagnostics:
            raise ValueError("ModelError needs at least one diagnostic")
        self.diagnostics = list(diagnostics)
        first = self.diagnostics[0]
        self.file = first.file
        self.line = first.span.line
        self.column = first.span.column
        self.message = first.message
        super().__init__(self.format())

    def format(self) -> str:
        body = "\n".join(d.format() for d in self.diagnostics)
        n = len(self.diagnostics)
        if n > 1:
            body += f"\n{n} errors in {self.file}"
        return body


class UsageError(OdedslError):
    """A command-line flag or an API argument has a bad value."""

    exit_code = 2


class NumericalError(OdedslError):
    """A solve or a fit could not proceed; the message says where and what to try."""

    exit_code = 3


class InputError(OdedslError):
    """An input file cannot be used at all: missing, unreadable, or not text."""

    exit_code = 1
