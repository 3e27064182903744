"""CSV tables in and out, with errors that name the file, row and column."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from odedsl.errors import InputError, UsageError


def read_csv(path: str | Path, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """Numeric columns of a CSV with a header row, by name; empty cells and ``NaN`` become NaN.

    Only ``columns`` are parsed (all when None), so a file may carry other,
    non-numeric columns such as dates. Raises ``InputError`` for a missing, empty
    or ragged file, a requested column that is absent (listing those present),
    and a non-numeric cell (naming its row, 1-based with the header as row 1,
    and its column).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such data file")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(f"{path}: the file is empty")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise InputError(f"{path}: column '{dup}' appears twice in the header")
    wanted = header if columns is None else columns
    missing = [c for c in wanted if c not in header]
    if missing:
        raise InputError(f"{path}: no column named {', '.join(repr(c) for c in missing)}; "
                         f"the columns are: {', '.join(header)}")
    out = {}
    for name in wanted:
        j = header.index(name)
        values = np.empty(len(rows) - 1)
        for i, row in enumerate(rows[1:], start=2):
            if len(row) != len(header):
                raise InputError(f"{path}:{i}: row has {len(row)} cells, the header has {len(header)}")
            cell = row[j].strip()
            if cell == "" or cell.lower() == "nan":
                values[i - 2] = math.nan
                continue
            try:
                values[i - 2] = float(cell)
            except ValueError:
                raise InputError(f"{path}:{i}: column '{name}' has a non-numeric value {cell!r}") from None
        out[name] = values
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
