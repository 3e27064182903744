"""What a discovery shows: the front as text and CSV, the discovered equations, and its two figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sympy

from odedsl.io.plots import figure

#: Rows of the front printed per output (the CSV has them all).
MAX_ROWS = 8


def front_text(found) -> str:
    """Per net output: the sparsest candidates of the front, the chosen one marked with ``*``."""
    out = []
    for o in found.outputs:
        where = _used_in(found.source.model, o.net, o.output)
        out.append(f"{o.net}[{o.output}]{where}: {len(o.library)} candidates, {len(o.front.candidates)} distinct "
                   f"supports; chosen by {o.front.how}")
        rows = [("", "terms", "error", "held-out", "expression")]
        cands = _shown(o)
        for c in cands:
            rows.append(("*" if c is o.chosen else "", str(c.size), f"{c.error:.1%}", f"{c.cv_error:.1%}",
                         o.describe(c) if c.support else "0"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        out += ["  " + "  ".join(x.rjust(w) if 0 < i < 4 else x.ljust(w) for i, (x, w) in
                                 enumerate(zip(r, widths + [0]))).rstrip() for r in rows]
        if not o.replaced:
            out.append(f"  kept the net: the chosen expression errs by {o.chosen.error:.1%}, more than --max-error "
                       f"{found.options.max_error:.0%}")
    return "\n".join(out)


def _shown(o) -> list:
    """The candidate of least held-out error of each size, the chosen one among them, at most ``MAX_ROWS``."""
    best: dict[int, object] = {}
    for c in o.front.candidates:
        if c.size not in best or c.cv_error < best[c.size].cv_error:
            best[c.size] = c
    best[o.chosen.size] = o.chosen
    rows = [best[k] for k in sorted(best)]
    if len(rows) > MAX_ROWS:
        rows = rows[:MAX_ROWS]
        if not any(c is o.chosen for c in rows):
            rows = rows[:-1] + [o.chosen]
    return rows


def _used_in(model, net: str, output: int) -> str:
    """`` (in d(prey)/dt)`` for an output used in one or more equations."""
    from odedsl.symbolic import neural_terms

    used = [s.name for s, e in zip(model.states, model.rhs)
            if any(t.net == net and t.output == output and not t.wrt for t in neural_terms(e))]
    return f" (in d({'), d('.join(used)})/d{model.time.name})" if used else ""


def equations_text(found) -> str:
    """The discovered model's equations and its new parameters, as ``odedsl show`` would print them."""
    m = found.model
    t = m.time.name
    lines = ["discovered equations"] + [f"  d({s.name})/d{t} = {sympy.sstr(e)}" for s, e in zip(m.states, m.rhs)]
    new = [p for o in found.outputs for p in o.params]
    if new:
        lines += ["new parameters"] + [f"  {p} = {m.param(p).value:.6g}" for p in new]
    return "\n".join(lines)


def judgement_text(found) -> str:
    """The refit's table, the two losses side by side, the extrapolation, and the verdict."""
    from odedsl.fit.report import table

    j = found.judgement
    lines = []
    if found.refit is not None:
        lines += ["refit of the discovered model (least squares)", table(found.refit), ""]
    rows = [("", "hybrid", "discovered"),
            ("loss on the data", f"{j.hybrid_loss:.6g}", f"{j.discovered_loss:.6g}"),
            ("fitted numbers", str(len(found.source.model.fitted_params) + found.source.weights.size),
             str(len(found.model.fitted_params) + found.weights.size))]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines += ["  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths))) for r in rows]
    t0, t1 = j.window
    lines += [f"beyond the data (t = {t1:g} to {j.horizon:g}), the largest value of each observed column:"]
    lines += _beyond(j.curves)
    lines += [f"note: {n}" for n in j.notes]
    lines.append(f"verdict: the discovered model {j.verdict}")
    return "\n".join(lines)


def _beyond(curves: list[dict]) -> list[str]:
    """Per column: the largest |value| in the data, and of each model past the data (a blow-up shows at once)."""
    rows = [("  column", "data", "hybrid", "discovered")]
    for column in dict.fromkeys(c["column"] for c in curves):
        mine = [c for c in curves if c["column"] == column]

        def top(key: str) -> str:
            values = [np.abs(c[key][c["t"] > c["t_last"]]) for c in mine if c[key] is not None]
            values = [v for v in values if v.size]
            if len(values) < len(mine):
                return "failed"
            return f"{max(float(np.nanmax(v)) for v in values):.3g}"

        data = max(float(np.nanmax(np.abs(c["data"]))) for c in mine)
        rows.append((f"  {column}", f"{data:.3g}", top("hybrid"), top("discovered")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths))) for r in rows]


def write_candidates(found, path: str | Path) -> Path:
    """Every support of every front as CSV: net, output, terms, errors, AICc, threshold, chosen, expression."""
    import csv

    p = Path(path)
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["net", "output", "n_terms", "error", "cv_error", "aicc", "threshold", "chosen", "expression"])
        for row in found.candidates:
            w.writerow([row["net"], row["output"], row["n_terms"], f"{row['error']:.6g}", f"{row['cv_error']:.6g}",
                        f"{row['aicc']:.6g}", f"{row['threshold']:.6g}", int(row["chosen"]),
                        row["expression"] or "0"])
    return p


def plot_front(found, path: str | Path) -> None:
    """discover.png: error against number of terms for every support, per output; the chosen one circled."""
    def draw(plt):
        n = len(found.outputs)
        fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), dpi=110, squeeze=False)
        for ax, o in zip(axes[0], found.outputs):
            sizes = np.array([c.size for c in o.front.candidates])
            err = np.array([max(c.error, 1e-6) for c in o.front.candidates])
            cv = np.array([max(c.cv_error, 1e-6) for c in o.front.candidates])
            ax.scatter(sizes, err, s=18, color="C0", label="error on all samples")
            ax.scatter(sizes + 0.12, cv, s=18, color="C1", marker="s", label="error on held-out blocks")
            ax.scatter([o.chosen.size], [max(o.chosen.error, 1e-6)], s=140, facecolors="none", edgecolors="k",
                       label="chosen")
            ax.set_yscale("log")
            ax.set(xlabel="number of terms", ylabel="relative RMS error", title=f"{o.net}[{o.output}]")
            ax.grid(alpha=0.3)
        axes[0][0].legend(loc="best", fontsize=8)
        fig.suptitle(f"{found.source.model.name}: the complexity / error front")
        fig.tight_layout()
        return fig

    figure(path, draw)


def plot_extrapolation(found, path: str | Path) -> None:
    """extrapolation.png: the data, the hybrid and the discovered model, past the last data time."""
    curves = found.judgement.curves
    experiments = list(dict.fromkeys(c["experiment"] for c in curves))[:4]
    columns = list(dict.fromkeys(c["column"] for c in curves))

    def draw(plt):
        fig, axes = plt.subplots(len(experiments), len(columns), figsize=(4.5 * len(columns), 3.2 * len(experiments)),
                                 dpi=110, squeeze=False)
        for c in curves:
            if c["experiment"] not in experiments:
                continue
            ax = axes[experiments.index(c["experiment"])][columns.index(c["column"])]
            ax.axvspan(c["t_data"][0], c["t_last"], color="0.92", label="data window")
            ax.plot(c["t_data"], c["data"], "k.", label="data")
            data_top = float(np.nanmax(np.abs(c["data"]))) if np.isfinite(c["data"]).any() else 1.0
            found_top = float(np.nanmax(np.abs(c["discovered"]))) if c["discovered"] is not None else 0.0
            top = min(max(1.5 * data_top, 1.1 * found_top), 10 * data_top)  # a blow-up leaves the frame
            if c["hybrid"] is not None:
                ax.plot(c["t"], c["hybrid"], "C0", label="hybrid (net)")
            if c["discovered"] is not None:
                ax.plot(c["t"], c["discovered"], "C3--", label="discovered")
            ax.set_ylim(-0.08 * top, top)
            title = c["column"] if len(experiments) == 1 else f"{c['column']} (experiment {c['experiment']})"
            ax.set(title=title, xlabel=found.source.model.time.name)
        axes[0][0].legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        return fig

    figure(path, draw)
