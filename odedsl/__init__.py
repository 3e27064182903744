"""odedsl: hybrid mechanistic / neural ODE models from a small text language.

Load a model with :func:`load` (a file) or :func:`loads` (a string); the result is
a :class:`Model`, the checked SymPy form every backend is generated from.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from odedsl.errors import InputError, ModelError, NumericalError, OdedslError, UsageError

if TYPE_CHECKING:
    from odedsl.model import Model

__version__ = "0.1.0"

__all__ = ["InputError", "Model", "ModelError", "NumericalError", "OdedslError", "UsageError", "load", "load_fit", "loads",
           "__version__"]


def load(path: str | Path) -> Model:
    """Read and compile a ``.ode`` file.

    Raises ``InputError`` when the file cannot be read and ``ModelError`` (listing
    every problem, each with file, line and column) when it is not a valid model.

    Examples
    --------
    >>> import odedsl
    >>> m = odedsl.load("models/lotka_volterra.ode")  # doctest: +SKIP
    >>> [s.name for s in m.states]  # doctest: +SKIP
    ['prey', 'pred']
    """
    from odedsl.lang import compile_model
    from odedsl.lang.source import read_model_file

    text, shown = read_model_file(path)
    return compile_model(text, shown)


def loads(text: str | bytes, name: str = "<string>") -> Model:
    """Compile model text given as a string (or UTF-8 bytes); ``name`` is used in messages.

    Examples
    --------
    >>> import odedsl
    >>> odedsl.loads("state x = 1\\nder(x) = -2*x\\n").rhs
    [-2*x]
    """
    from odedsl.lang import compile_model
    from odedsl.lang.source import decode

    if isinstance(text, bytes):
        text = decode(text, name)
    else:
        text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return compile_model(text, name)


def load_fit(directory: str | Path, model: Model | None = None):
    """A fit saved by ``odedsl fit`` or ``FitResult.save``: a ``FitResult`` ready to ``simulate``.

    ``model`` defaults to the model file the fit recorded. Raises ``InputError`` for a
    folder that is not a fit of that model.
    """
    from odedsl.fit.result import load_fit as _load_fit

    return _load_fit(directory, model)


def __getattr__(name: str):
    """``odedsl.Model`` on first use: importing odedsl (the command line's first step) does not import SymPy,
    so a Ctrl-C in the first moments is handled by the command like any other."""
    if name == "Model":
        from odedsl.model import Model

        return Model
    raise AttributeError(f"module 'odedsl' has no attribute {name!r}")
