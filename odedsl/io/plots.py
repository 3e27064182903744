"""Figures, drawn with matplotlib's non-interactive backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

from odedsl.errors import UsageError


def plot_solution(sol, path: str | Path) -> None:
    """Every state of a ``Solution`` against time, one line each, saved to ``path``."""
    def draw(plt):
        fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
        for j, name in enumerate(sol.names):
            ax.plot(sol.t, sol.y[:, j], label=name)
        ax.set_xlabel(sol.model.time.name)
        ax.set_title(f"{sol.model.name} ({sol.method})")
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    figure(path, draw)


def figure(path: str | Path, draw) -> None:
    """Draw with ``draw(plt) -> Figure`` on the Agg backend (no display needed) and save to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt)
    try:
        fig.savefig(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)


def plot_fit(curves: list[dict], path: str | Path, title: str) -> None:
    """One panel per (experiment, column): the data as points, the fitted model as a line.

    ``curves``: dicts with ``label``, ``t_data``, ``data``, ``t_model``, ``model``.
    """
    def draw(plt):
        n = len(curves)
        cols = min(n, 3)
        rows = (n + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=110, squeeze=False)
        for ax, c in zip(axes.ravel(), curves):
            ax.plot(c["t_model"], c["model"], color="C0", label="fitted model")
            ax.plot(c["t_data"], c["data"], "o", color="C1", ms=4, label="data")
            ax.set_title(c["label"], fontsize=10)
            ax.grid(alpha=0.3)
        for ax in axes.ravel()[n:]:
            ax.set_visible(False)
        axes.ravel()[0].legend(loc="best", fontsize=8)
        fig.suptitle(title)
        fig.tight_layout(rect=(0, 0, 1, 0.96))  # room for the title above the panels' own
        return fig

    figure(path, draw)


def plot_loss(history, path: str | Path, title: str) -> None:
    """The loss against the iteration (log scale when it is positive throughout)."""
    def draw(plt):
        import numpy as np

        h = np.asarray(history, dtype=float).reshape(-1, 3)
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
        ax.plot(h[:, 0], h[:, 1], color="C0")
        if h.size and np.all(h[:, 1] > 0):
            ax.set_yscale("log")
        elif h.size:  # a loss with log-sigma terms can be negative: linear, not stretched by a stray trial
            lo, hi = float(h[:, 1].min()), float(np.quantile(h[:, 1], 0.95))
            pad = 0.05 * max(hi - lo, 1e-12)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    figure(path, draw)
