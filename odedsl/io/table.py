"""CSV tables in and out, with errors that name the file, row and column."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from odedsl.errors import InputError, UsageError


def read_table(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank rows (with their 1-based line numbers, the header being 1) of a CSV.

    Raises ``InputError`` for a missing, non-UTF-8, empty or ragged file, or a
    header naming a column twice.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such data file")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(enumerate(csv.reader(fh), start=1))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    rows = [(i, r) for i, r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(f"{path}: the file is empty")
    header = [h.strip() for h in rows[0][1]]
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise InputError(f"{path}: column '{dup}' appears twice in the header")
    for i, row in rows[1:]:
        if len(row) != len(header):
            raise InputError(f"{path}:{i}: row has {len(row)} cells, the header has {len(header)}")
    return header, rows[1:]


def number(path, line: int, column: str, cell: str) -> float:
    """A cell as a float: empty or ``NaN`` is NaN (missing); anything else non-numeric is an ``InputError``."""
    cell = cell.strip()
    if cell == "" or cell.lower() == "nan":
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise InputError(f"{path}:{line}: column '{column}' has a non-numeric value {cell!r}") from None


def read_csv(path: str | Path, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """Numeric columns of a CSV with a header row, by name; empty cells and ``NaN`` become NaN.

    Only ``columns`` are parsed (all when None), so a file may carry other,
    non-numeric columns such as dates. Raises ``InputError`` as ``read_table``
    does, for a requested column that is absent (listing those present), and for
    a non-numeric cell (naming its row, 1-based with the header as row 1, and its
    column).
    """
    header, rows = read_table(path)
    wanted = header if columns is None else columns
    missing = [c for c in wanted if c not in header]
    if missing:
        raise InputError(f"{path}: no column named {', '.join(repr(c) for c in missing)}; "
                         f"the columns are: {', '.join(header)}")
    out = {}
    for name in wanted:
        j = header.index(name)
        out[name] = np.array([number(path, i, name, row[j]) for i, row in rows], dtype=float).reshape(len(rows))
    return out


def write_csv(path: str | Path, header: list[str], columns: np.ndarray) -> None:
    """Write columns (rows x len(header)) with full double precision.

    A path that cannot be written raises ``UsageError`` naming it (exit code 2).
    """
    try:
        with Path(path).open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for row in columns:
                w.writerow([repr(float(x)) for x in row])
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
