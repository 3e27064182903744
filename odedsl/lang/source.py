"""Turns raw file bytes into text the lexer can trust, or a clear message why not."""

from __future__ import annotations

from pathlib import Path

from odedsl.errors import Diagnostic, InputError, ModelError, Span

_BOM = "\ufeff"
_BOM_BYTES = _BOM.encode("utf-8")


def _locate(data: bytes, index: int) -> tuple[int, int]:
    """Line and column (in characters, both from 1) of byte ``index`` of ``data``; any line ending counts."""
    head = data[:index].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    line_start = head.rfind(b"\n") + 1
    return head.count(b"\n") + 1, len(head[line_start:].decode("utf-8", errors="replace")) + 1


def _error(filename: str, line: int, column: int, message: str, hint: str | None = None) -> ModelError:
    return ModelError([Diagnostic(filename, Span(line, column, line, column + 1), message, hint)])


def decode(data: bytes, filename: str) -> str:
    """Decode UTF-8 model text, normalising line endings and dropping a byte-order mark.

    Binary data and invalid UTF-8 raise ``ModelError`` located at the first bad byte.

    Examples
    --------
    >>> decode(b"state x = 1\\r\\nder(x) = -x\\r\\n", "m.ode")
    'state x = 1\\nder(x) = -x\\n'
    """
    if data.startswith(_BOM_BYTES):  # dropped first, so it does not shift the columns of line 1
        data = data[len(_BOM_BYTES):]
    nul = data.find(b"\0")
    if nul >= 0:
        line, column = _locate(data, nul)
        raise _error(
            filename, line, column, "this is a binary file, not a model file (it contains a NUL byte)",
            "a model file is plain UTF-8 text; see docs/language.md",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _locate(data, exc.start)
        raise _error(
            filename, line, column, f"the file is not valid UTF-8 text (byte 0x{data[exc.start]:02x})",
            "save the file as UTF-8",
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_model_file(path: str | Path) -> tuple[str, str]:
    """Read a model file; returns ``(text, name shown in messages)``.

    A missing or unreadable file raises ``InputError`` (the CLI's exit code 1).
    """
    p = Path(path)
    shown = str(path)
    if not p.exists():
        raise InputError(f"{shown}: no such model file")
    if p.is_dir():
        raise InputError(f"{shown}: is a directory, not a model file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{shown}: cannot read the model file: {exc.strerror}") from None
    return decode(data, shown), shown
