"""What a benchmark report states about where it ran: versions and the commit measured."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def versions(modules: list[str]) -> dict[str, str]:
    """Python's version, each of ``modules``' (or "not installed"), and the checkout's commit."""
    out = {"python": platform.python_version()}
    for name in modules:
        try:
            out[name] = getattr(__import__(name), "__version__", "?")
        except ImportError:
            out[name] = "not installed"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=False, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, check=False,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["commit"] = (rev + (" (modified)" if dirty else "")) if rev else "?"
    except (OSError, subprocess.SubprocessError):
        out["commit"] = "?"
    return out


def load_average() -> str:
    """The machine's load average, which tells how far wall-clock times can be trusted."""
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average ?"


def command_line() -> str:
    """How this benchmark was run, as a reader would retype it."""
    exe = os.path.relpath(sys.executable) if Path(sys.executable).is_relative_to(Path.cwd()) else sys.executable
    return " ".join(shlex.quote(a) for a in [exe, *sys.argv])
