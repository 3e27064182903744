"""Figures, drawn with matplotlib's non-interactive backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

from odedsl.errors import UsageError


def plot_solution(sol, path: str | Path) -> None:
    """Every state of a ``Solution`` against time, one line each, saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for j, name in enumerate(sol.names):
        ax.plot(sol.t, sol.y[:, j], label=name)
    ax.set_xlabel(sol.model.time.name)
    ax.set_title(f"{sol.model.name} ({sol.method})")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)
