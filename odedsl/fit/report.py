"""What a finished fit shows: its table, its plots, and its folder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from odedsl.errors import NumericalError
from odedsl.fit.result import FitResult


def curves(result: FitResult, n: int = 200) -> list[dict]:
    """For every experiment and observed column: the data and the fitted model on a fine grid."""
    data = result.data
    out = []
    for e in data.experiments:
        t = np.unique(np.concatenate([np.linspace(e.times[0], e.times[-1], n), e.times]))
        try:
            sol = result.model.simulate(t, params=result.params, y0=e.y0 or None, inputs=e.inputs or None,
                                        weights=result.weights if result.weights.size else None,
                                        method=result.settings.get("method", "dopri5"), rtol=1e-8, atol=1e-10)
        except NumericalError:
            continue  # a fit stopped by a failing solve: plot the experiments that do solve
        values = sol.observables() if result.model.observables else {s: sol[s] for s in sol.names}
        for k, column in enumerate(data.columns):
            label = column if len(data.experiments) == 1 else f"{column} (experiment {e.name})"
            out.append({"label": label, "t_data": e.times, "data": e.observed[:, k], "t_model": t,
                        "model": values[column]})
    return out


def write_outputs(result: FitResult, directory: str | Path) -> list[Path]:
    """The fit's folder: params.json, model.ode, weights.npz, history.csv, fit.png, loss.png; the paths written."""
    from odedsl.io.plots import plot_fit, plot_loss

    d = result.save(directory)
    written = [d / "params.json", d / "model.ode", d / "weights.npz", d / "history.csv"]
    if result.data is not None:
        plot_fit(curves(result), d / "fit.png", f"{result.model.name}: fitted model and data")
        written.append(d / "fit.png")
    if result.history:
        plot_loss(result.history, d / "loss.png", f"{result.model.name}: loss")
        written.append(d / "loss.png")
    return written


def table(result: FitResult) -> str:
    """The fitted parameters as aligned text: name, start, fitted value, standard error."""
    rows = [("parameter", "start", "fitted", "std. error")]
    for name, start, value, se in result.table():
        error = "" if se is None else (f"{se:.3g}" if math.isfinite(se) else "n/a (not identifiable)")
        rows.append((name, f"{start:.6g}", f"{value:.6g}", error))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows] if len(rows) > 1 else ["no physics parameters fitted"]
    if result.weights.size:
        lines.append(f"neural weights: {result.weights.size} (saved in weights.npz)")
    lines.append(f"final loss: {result.loss:.6g}")
    return "\n".join(lines)
