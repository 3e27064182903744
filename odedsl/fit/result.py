"""A finished fit: its values, how it got there, and its folder on disk.

The folder holds ``params.json`` (every parameter's fitted value under
``params``, with the starting values, the loss, the settings, the data file's
absolute path and the odedsl version), ``model.ode`` (a copy of the model text
fitted, so the folder stands on its own), ``weights.npz`` (the nets' flat
weight vector, ``odedsl.nets`` layout; NumPy's format, read without pickle),
``history.csv``, ``fit.png`` and
``loss.png``, and while the fit runs its ``checkpoint.npz``. ``load_fit`` reads
the first three back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from odedsl.errors import InputError, UsageError
from odedsl.model import Model

PARAMS, WEIGHTS, HISTORY, MODEL = "params.json", "weights.npz", "history.csv", "model.ode"


@dataclass
class FitResult:
    """What ``Model.fit`` returns and ``odedsl fit`` writes."""

    model: Model
    params: dict[str, float]
    weights: np.ndarray
    loss: float
    history: list[tuple[int, float, float]] = field(default_factory=list)
    initial: dict[str, float] = field(default_factory=dict)
    stderr: dict[str, float] | None = None
    corr: np.ndarray | None = None
    settings: dict = field(default_factory=dict)
    message: str = ""
    data: object = field(default=None, repr=False)  # the Dataset fitted, when known
    failed: bool = False  # the fit stopped early because the model kept failing to solve
    data_file: str | None = None  # the data file fitted (absolute), when known

    def dataset(self):
        """The ``Dataset`` fitted: the one in memory, else the recorded data file read again with the fit's
        settings; ``InputError`` when neither is available."""
        from odedsl.fit.data import read_dataset

        if self.data is not None:
            return self.data
        if not self.data_file:
            raise InputError("this fit records no data file (it was fitted from a DataFrame in memory, or saved by an "
                             "older odedsl); fit from a CSV file to profile or discover from its folder")
        s = self.settings
        self.data = read_dataset(self.model, self.data_file, s.get("time_col"), s.get("experiment_col"),
                                 bool(s.get("y0_from_data")))
        return self.data

    def simulate(self, t_eval, **options):
        """Simulate the fitted model (its parameters and weights) on the Numba backend."""
        return self.model.simulate(t_eval, params=self.params, weights=self.weights if self.weights.size else None,
                                   **options)

    def table(self) -> list[tuple[str, float, float, float | None]]:
        """(name, initial, fitted, standard error or None) for every fitted parameter."""
        return [(p.name, self.initial.get(p.name, p.value), self.params[p.name],
                 None if self.stderr is None else _nan(self.stderr.get(p.name))) for p in self.model.fitted_params]

    def save(self, directory: str | Path) -> Path:
        """Write ``params.json``, ``model.ode``, ``weights.npz`` and ``history.csv`` into ``directory`` (created)."""
        from odedsl import __version__
        from odedsl.io.table import write_csv

        d = Path(directory)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the output folder {d}: {exc.strerror}") from None
        data_file = self.data_file
        if data_file is None and self.data is not None and Path(self.data.path).is_file():  # not a DataFrame's
            data_file = str(Path(self.data.path).resolve())
        doc = {
            "model": self.model.name, "model_file": self.model.filename, "odedsl_version": __version__,
            "data_file": data_file,
            "params": self.params, "initial": self.initial, "loss": _finite(self.loss),
            "stderr": None if self.stderr is None else {k: _finite(v) for k, v in self.stderr.items()},
            "settings": self.settings, "message": self.message,
            "correlation": None if self.corr is None else [[_finite(v) for v in row] for row in self.corr.tolist()],
        }
        _atomic_text(d / PARAMS, json.dumps(doc, indent=2) + "\n")
        _atomic_text(d / MODEL, self.model.source)
        with (d / WEIGHTS).open("wb") as fh:
            np.savez(fh, weights=np.asarray(self.weights, dtype=float))
        write_csv(d / HISTORY, ["iteration", "loss", "seconds"], np.array(self.history, dtype=float).reshape(-1, 3))
        return d

    def discover(self, **options):
        """Replace the fit's neural terms by sparse expressions: a ``Discovery`` with ``.model``, ``.table``,
        ``.candidates`` and ``.save(path)`` (see ``odedsl.discover.discover`` and docs/discover.md)."""
        from odedsl.discover import discover

        return discover(self, **options)

    def profile(self, params: list[str] | None = None, points: int = 10, level: float = 0.95, out=None,
                resume: bool = False, client=None, workers: int | None = None, scheduler: str | None = None,
                max_iters: int | None = None, progress=None):
        """Profile likelihoods and likelihood-based confidence intervals of the fitted parameters.

        Each parameter in ``params`` (default: every fitted one) is fixed on a grid
        around the optimum while the others are re-optimised, each point warm-started
        from its neighbour; the two sides of every parameter run at the same time on
        Dask (``client``, or the cluster at ``scheduler``, or a local cluster of
        ``workers`` processes). ``points``: about how many points from the optimum to
        the threshold on each side. With ``out`` each point is appended to
        ``out/profiles.csv`` as it finishes, and ``profile_<name>.png`` are drawn at
        the end; ``resume=True`` keeps the points already there. Returns a
        ``Profiles`` (``.intervals()``, ``.table()``, ``.points``); see
        ``odedsl.distributed.profile`` for the likelihood scale and the grid.

        Examples
        --------
        >>> import odedsl
        >>> m = odedsl.load("models/hare_lynx.ode")
        >>> fit = m.fit("models/data/hare_lynx.csv")
        >>> prof = fit.profile(params=["alpha"], points=4, workers=1)
        >>> iv = prof.intervals()["alpha"]
        >>> round(iv.lower, 2), round(iv.upper, 2)
        (0.43, 0.68)
        """
        from odedsl.distributed.profile import profile

        return profile(self, params=params, points=points, level=level, out=out, resume=resume, client=client,
                       workers=workers, scheduler=scheduler, max_iters=max_iters, progress=progress)


def _nan(v: float | None) -> float:
    """A standard error read back from JSON, where 'not identifiable' (NaN) is null."""
    return math.nan if v is None else float(v)


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def load_fit(directory: str | Path, model: Model | None = None) -> FitResult:
    """A saved fit; ``model`` defaults to the folder's copy of the model fitted (else the file it recorded).

    Raises ``InputError`` for a folder without a readable ``params.json``, or whose
    parameters or weights do not match the model.
    """
    import odedsl

    d = Path(directory)
    path = d / PARAMS
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        params = {str(k): float(v) for k, v in doc["params"].items()}
    except FileNotFoundError:
        raise InputError(f"{d}: not a fit folder (no {PARAMS})") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: not a readable fit result ({exc})") from None
    if model is None and (d / MODEL).exists():
        model = odedsl.loads((d / MODEL).read_bytes(), name=str(doc.get("model_file") or d / MODEL))
    elif model is None:
        model = odedsl.load(doc.get("model_file", ""))
    names = {p.name for p in model.params}
    unknown = sorted(set(params) - names)
    if unknown:
        raise InputError(f"{path}: {'parameters' if len(unknown) > 1 else 'parameter'} {', '.join(unknown)} "
                         f"{'are' if len(unknown) > 1 else 'is'} not in model '{model.name}'; was the fit made with "
                         "another model?")
    weights = np.zeros(0)
    if (d / WEIGHTS).exists():
        try:
            with np.load(d / WEIGHTS, allow_pickle=False) as z:
                weights = np.asarray(z["weights"], dtype=float)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{d / WEIGHTS}: not a readable weights file ({exc})") from None
    n_w = sum(n.n_weights for n in model.nets)
    if weights.size != n_w:
        raise InputError(f"{d / WEIGHTS}: {weights.size} weights, but model '{model.name}' has {n_w}")
    return FitResult(model, {**{p.name: p.value for p in model.params}, **params}, weights,
                     doc.get("loss") if doc.get("loss") is not None else math.nan,
                     initial=doc.get("initial", {}), stderr=doc.get("stderr"), settings=doc.get("settings", {}),
                     message=doc.get("message", ""), data_file=doc.get("data_file"))
