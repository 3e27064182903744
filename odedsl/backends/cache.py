"""Generated modules as real files in a cache directory, imported like any module.

Being files, they get Numba's on-disk cache and readable tracebacks through the
generated code. Their names carry a hash of everything that shaped them, so a
second process that loads the same model reuses them.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import types
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """``$ODEDSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/odedsl``, else ``~/.cache/odedsl``."""
    root = os.environ.get("ODEDSL_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "odedsl"


def import_generated(name: str, make_source: Callable[[], str]) -> types.ModuleType:
    """Import module ``name`` from the cache directory, writing ``make_source()`` there first if absent."""
    if name in sys.modules:
        return sys.modules[name]
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    if not path.exists():
        log.debug("generating %s", path)
        source = make_source()
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(source)
        os.replace(tmp, path)  # atomic: concurrent processes never see half a file
    if str(directory) not in sys.path:
        sys.path.append(str(directory))
    return importlib.import_module(name)
