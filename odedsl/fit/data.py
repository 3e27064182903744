"""A data file read against a model: the data contract of docs/data.md.

One CSV: a time column (named like the model's time variable unless told
otherwise), one column per ``observe`` declaration (or, without any, columns
named like states), one per ``input``, and optionally an experiment column that
splits the rows into trajectories sharing the parameters. Empty cells and NaN
are missing values. Every violation is an ``InputError`` naming the file, and
the row and column where there is one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sympy

from odedsl.errors import InputError
from odedsl.io.table import number, read_table
from odedsl.model import Model, Noise

EXPERIMENT_COLUMN = "experiment"


@dataclass
class Experiment:
    """One trajectory's rows: times (non-decreasing, replicates allowed) and what was measured then."""

    name: str
    times: np.ndarray  # (T,)
    observed: np.ndarray  # (T, n_observed), NaN where missing
    inputs: dict[str, tuple[np.ndarray, np.ndarray]]  # input name -> (sample times, values)
    y0: dict[str, float]  # state name -> initial value from the data (--y0-from-data)
    lines: np.ndarray  # (T,) the file's line numbers


@dataclass
class Dataset:
    """The experiments of a data file, and how each observed column relates to the model."""

    path: str
    time_column: str
    columns: list[str]  # observed columns, in the model's order
    exprs: list[sympy.Expr]  # what each column measures
    noise: list[Noise | None]
    experiments: list[Experiment]
    warnings: list[str] = field(default_factory=list)

    @property
    def n_points(self) -> int:
        """Observed (non-missing) values in all experiments."""
        return int(sum(np.isfinite(e.observed).sum() for e in self.experiments))

    def spread(self) -> np.ndarray:
        """Each observed column's standard deviation over all experiments (1 where it has none)."""
        values = np.concatenate([e.observed for e in self.experiments])
        out = np.ones(values.shape[1])
        for j in range(values.shape[1]):
            col = values[:, j][np.isfinite(values[:, j])]
            if col.size > 1 and np.std(col) > 0:
                out[j] = float(np.std(col))
        return out


def observed_columns(model: Model) -> tuple[list[str], list[sympy.Expr], list[Noise | None]]:
    """The columns a data file must have for ``model``: its observables, else its states."""
    if model.observables:
        return ([o.column for o in model.observables], [o.expr for o in model.observables],
                [o.noise for o in model.observables])
    return [s.name for s in model.states], [s.symbol for s in model.states], [None] * len(model.states)


def read_dataset(model: Model, path: str | Path, time_column: str | None = None,
                 experiment_column: str | None = None, y0_from_data: bool = False) -> Dataset:
    """Read and check ``path`` against ``model`` (see the module docstring and docs/data.md)."""
    header, rows = read_table(path)
    if not rows:
        raise InputError(f"{path}: the file has a header but no data rows")
    tcol = time_column or model.time.name
    if tcol not in header:
        hint = "" if time_column else " (the model's time variable; use --time-col to name another)"
        raise InputError(f"{path}: no time column '{tcol}'{hint}; the columns are: {', '.join(header)}")
    ecol = experiment_column
    if ecol is not None and ecol not in header:
        raise InputError(f"{path}: no experiment column '{ecol}'; the columns are: {', '.join(header)}")
    if ecol is None and EXPERIMENT_COLUMN in header:
        ecol = EXPERIMENT_COLUMN
    columns, exprs, noise = observed_columns(model)
    if model.observables:
        missing = [c for c in columns if c not in header]
        if missing:
            raise InputError(f"{path}: no column for observable {', '.join(repr(c) for c in missing)}; "
                             f"the columns are: {', '.join(header)}")
    else:  # states observed directly: the columns that exist
        present = [i for i, c in enumerate(columns) if c in header]
        if not present:
            raise InputError(f"{path}: the model declares no 'observe', so data columns must be named like its "
                             f"states ({', '.join(columns)}); the columns are: {', '.join(header)}")
        columns, exprs, noise = [columns[i] for i in present], [exprs[i] for i in present], [None] * len(present)
    inputs = [u.name for u in model.inputs]
    missing = [u for u in inputs if u not in header]
    if missing:
        raise InputError(f"{path}: no column for input {', '.join(repr(c) for c in missing)}; "
                         f"the columns are: {', '.join(header)}")
    states = [s.name for s in model.states]
    y0_cols = [s for s in states if s in header] if y0_from_data else []
    if y0_from_data and not y0_cols:
        raise InputError(f"{path}: --y0-from-data needs a column named like a state ({', '.join(states)})")
    known = {tcol, ecol, *columns, *inputs, *y0_cols}
    warnings = []
    for c in header:
        if c in known:
            continue
        if c in states:  # observables declared, and no --y0-from-data
            warnings.append(f"{path}: column '{c}' is named like a state but the model observes "
                            f"{', '.join(columns)}; it is ignored (with --y0-from-data it would set '{c}' "
                            "at each experiment's start)")
        else:
            warnings.append(f"{path}: column '{c}' matches no time, observable, input or state of the model; "
                            "it is ignored")

    col = {name: header.index(name) for name in header}
    groups: dict[str, list[tuple[int, list[str]]]] = {}
    for line, row in rows:
        label = row[col[ecol]].strip() if ecol else ""
        if ecol and not label:
            raise InputError(f"{path}:{line}: the experiment column '{ecol}' is empty")
        groups.setdefault(label, []).append((line, row))
    experiments = []
    for label, group in groups.items():
        lines = np.array([line for line, _ in group])
        times = np.array([number(path, line, tcol, row[col[tcol]]) for line, row in group])
        bad = np.flatnonzero(~np.isfinite(times))
        if bad.size:
            raise InputError(f"{path}:{lines[bad[0]]}: the time column '{tcol}' is missing or not finite")
        back = np.flatnonzero(np.diff(times) < 0)
        if back.size:
            where = f" in experiment '{label}'" if ecol else ""
            raise InputError(f"{path}:{lines[back[0] + 1]}: time {times[back[0] + 1]:g} comes after "
                             f"{times[back[0]]:g}{where}; times must not decrease within an experiment")
        observed = np.array([[number(path, line, c, row[col[c]]) for c in columns] for line, row in group],
                            dtype=float).reshape(len(group), len(columns))
        samples = {}
        for u in inputs:
            values = np.array([number(path, line, u, row[col[u]]) for line, row in group])
            ok = np.isfinite(values)
            t_u, v_u = times[ok], values[ok]
            if t_u.size == 0:
                raise InputError(f"{path}: input column '{u}' has no values" + (f" in experiment '{label}'" if ecol else ""))
            keep = np.concatenate([[True], np.diff(t_u) > 0])  # replicate rows: the first sample at a time
            samples[u] = (t_u[keep], v_u[keep])
        y0 = {}
        for s in y0_cols:
            value = number(path, lines[0], s, group[0][1][col[s]])
            if not math.isfinite(value):
                raise InputError(f"{path}:{lines[0]}: --y0-from-data: state column '{s}' is empty at the "
                                 "experiment's first time")
            y0[s] = value
        experiments.append(Experiment(label or "1", times, observed, samples, y0, lines))
    if not any(np.isfinite(e.observed).any() for e in experiments):
        raise InputError(f"{path}: no observed values: every cell of {', '.join(columns)} is empty")
    return Dataset(str(path), tcol, columns, exprs, noise, experiments, warnings)
