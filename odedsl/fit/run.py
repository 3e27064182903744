"""``fit``: read the data, pick the optimiser, run it, and hand back a ``FitResult``.

The choice (printed by the CLI with its reason):

- a model without neural terms, whose noise scales are not fitted: bounded
  trust-region least squares with exact Jacobians from forward sensitivities
  (least_squares.py), then standard errors and correlations at the optimum;
- anything else: Adam, then an L-BFGS polish, on the Torch backend with the
  chosen gradient mode (optimise.py, torch_objective.py).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odedsl.errors import UsageError
from odedsl.fit.data import Dataset, read_dataset
from odedsl.fit.least_squares import NotLeastSquares, Outcome, Residuals, fit_least_squares
from odedsl.fit.loss import scaling
from odedsl.fit.result import FitResult
from odedsl.model import Model


@dataclass
class Settings:
    """Everything that shapes a fit (recorded in params.json)."""

    method: str = "dopri5"
    rtol: float = 1e-6
    atol: float = 1e-8
    max_iters: int | None = None  # least squares: evaluations (default 200); gradient: Adam steps (default 300)
    polish_iters: int | None = None  # L-BFGS iterations after Adam (default 100)
    lr: float = 1e-2
    gradient: str = "backprop"
    seed: int = 0
    device: str | None = None
    l2: float = 0.0
    shooting: int | None = None  # multiple shooting: segments per experiment (Adam path)
    shooting_weight: float = 1.0
    optimizer: str = "auto"  # "auto", "least-squares" or "adam"
    backend: str = "auto"  # for Adam: "auto", "numba" (compiled, CPU) or "torch"
    time_col: str | None = None
    experiment_col: str | None = None
    y0_from_data: bool = False
    checkpoint_every: int = 10


def choose(model: Model, data: Dataset, settings: Settings) -> tuple[str, str]:
    """The optimiser for this fit, and why."""
    from odedsl.fit.least_squares import noise_values

    if settings.optimizer == "least-squares" and model.nets:
        raise UsageError("--optimizer least-squares needs a model without neural terms")
    if settings.optimizer == "least-squares" and settings.shooting:
        raise UsageError("--shooting needs the gradient optimizer (--optimizer adam)")
    if settings.optimizer != "auto":
        return settings.optimizer, "as asked"
    if settings.shooting and settings.shooting > 1:
        return "adam", f"multiple shooting with {settings.shooting} segments per experiment"
    if model.nets:
        return "adam", f"the model has neural terms ({sum(n.n_weights for n in model.nets)} weights)"
    try:
        noise_values(model, data)
    except NotLeastSquares:
        return "adam", "a noise scale is fitted, which least squares cannot weigh"
    return "least-squares", "physics-only model: least squares with exact sensitivities"


def _dataset(model: Model, data, settings: Settings) -> Dataset:
    if isinstance(data, Dataset):  # already read and checked (a profile point, a start on a worker)
        return data
    if hasattr(data, "to_csv"):  # a pandas DataFrame: through the same reader and its checks
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "dataframe.csv"
            data.to_csv(path, index=False)
            return read_dataset(model, path, settings.time_col, settings.experiment_col, settings.y0_from_data)
    return read_dataset(model, data, settings.time_col, settings.experiment_col, settings.y0_from_data)


#: Nets up to this many weights train faster compiled on a CPU than on PyTorch (a 2->32->32->2 MLP: 1,218).
NUMBA_MAX_WEIGHTS = 20_000
#: ``--gradient checkpoint`` on Numba: the stages recomputed from a state kept every this many steps (as on Torch).
NUMBA_CHECKPOINT_EVERY = 32


def choose_backend(model: Model, settings: Settings) -> tuple[str, str]:
    """Where the Adam path computes its loss and gradient, and why."""
    from odedsl.solvers.methods import get_method, kernel_arrays

    m = get_method(settings.method)
    supported = m.kind in ("fixed", "adaptive") and not (m.kind == "adaptive" and kernel_arrays(m.name).xc.size)
    n_w = sum(net.n_weights for net in model.nets)
    blockers = [why for cond, why in (
        (settings.device == "cuda", "a GPU was asked for"),
        (bool(settings.shooting and settings.shooting > 1), "multiple shooting runs on Torch"),
        (not supported, f"method {m.name} has no compiled gradient"),
        (n_w > NUMBA_MAX_WEIGHTS, f"the nets are large ({n_w} weights)"),
        (settings.gradient == "adjoint", "gradient=adjoint (the continuous adjoint) is a Torch mode"),
    ) if cond]
    if settings.backend == "numba":
        if blockers:
            raise UsageError(f"--backend numba is not possible here: {'; '.join(blockers)}")
        return "numba", "as asked"
    if settings.backend == "torch":
        return "torch", "as asked"
    if blockers:
        return "torch", blockers[0]
    return "numba", f"CPU, small nets ({n_w} weights): the whole gradient compiled"


def fit(model: Model, data, settings: Settings | None = None, out: str | Path | None = None, resume: bool = False,
        progress=None, report=None, weights=None) -> FitResult:
    """Fit ``model`` to ``data`` (a CSV path or a DataFrame); see ``Model.fit``.

    ``out``: the folder for checkpoints (and where ``resume`` looks); ``progress``:
    called with ``(iteration, loss, best loss)``; ``report``: called once with the
    chosen optimiser and the reason; ``weights``: the nets' starting weights (flat,
    ``odedsl.nets`` layout; default: fresh ones from ``settings.seed``), to continue
    from an earlier fit.
    """
    settings = settings or Settings()
    if not model.fitted_params and not model.nets:
        raise UsageError(f"model '{model.name}' has nothing to fit: every parameter is fixed and it has no nets")
    data = _dataset(model, data, settings)
    sc = scaling(data)
    kind, why = choose(model, data, settings)
    backend = None
    if kind == "adam":
        backend, reason = choose_backend(model, settings)
        why = f"{why}; on {backend}: {reason}"
    if report is not None:  # the optimiser, why, the most iterations it may take, the data's warnings
        polish = 100 if settings.polish_iters is None else settings.polish_iters
        report(kind, why, (settings.max_iters or 200) if kind == "least-squares" else
               (settings.max_iters or 300) + polish, data.warnings)
    initial = {p.name: p.value for p in model.params}
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the output folder {out_dir}: {exc.strerror}") from None
    from odedsl.fit import optimise

    if kind == "least-squares":
        res = Residuals(model, data, sc, settings.method, settings.rtol, settings.atol)
        x0 = np.array([p.value for p in model.fitted_params])
        if resume and out_dir is not None and (out_dir / "params.json").exists():
            from odedsl.fit.result import load_fit

            saved = load_fit(out_dir, model)
            x0 = np.array([saved.params[p.name] for p in model.fitted_params])
        try:
            outcome = fit_least_squares(res, x0, settings.max_iters or 200, progress)
        except optimise.Interrupted as exc:
            exc.result = FitResult(model, {**initial, **res.params(exc.outcome.x)}, np.zeros(0), exc.outcome.loss,
                                   exc.outcome.history, initial, settings=_record(settings, kind),
                                   message=exc.outcome.message, data=data)
            raise
        params = {**initial, **res.params(outcome.x)}
        weights = np.zeros(0)
        stderr = None if outcome.stderr is None else dict(zip((p.name for p in model.fitted_params),
                                                              outcome.stderr.tolist()))
        return FitResult(model, params, weights, outcome.loss, outcome.history, initial, stderr, outcome.corr,
                         _record(settings, kind), outcome.message, data, outcome.failed)
    if backend == "numba":
        from odedsl.fit.numba_objective import NumbaObjective

        objective = NumbaObjective(model, data, sc, settings.method, settings.rtol, settings.atol, settings.l2,
                                   settings.seed, NUMBA_CHECKPOINT_EVERY if settings.gradient == "checkpoint" else None)
    else:
        from odedsl.fit.torch_objective import TorchObjective

        objective = TorchObjective(model, data, sc, settings.method, settings.rtol, settings.atol, settings.gradient,
                                   settings.l2, settings.seed, settings.device, shooting=settings.shooting,
                                   shooting_weight=settings.shooting_weight)
    record = {**_record(settings, kind), "backend": backend}

    def result(outcome: Outcome) -> FitResult:
        params, weights = objective.solution(outcome.x)
        return FitResult(model, params, weights, outcome.loss, outcome.history, initial, None, None, record,
                         outcome.message, data, outcome.failed)

    try:
        outcome = optimise.run(objective, _start(objective, model, weights), settings.max_iters or 300,
                               100 if settings.polish_iters is None else settings.polish_iters, settings.lr, out_dir,
                               resume, progress, settings.checkpoint_every, signature=model.source_hash)
    except optimise.Interrupted as exc:
        exc.result = result(exc.outcome)  # the best so far, for the caller to save
        raise
    return result(outcome)


def _record(settings: Settings, kind: str) -> dict:
    doc = {k: v for k, v in vars(settings).items() if v is not None}
    doc["optimizer"] = kind
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in doc.items()}


def _start(objective, model: Model, weights) -> np.ndarray:
    """The optimiser's starting vector: the file's parameters, then ``weights`` when given."""
    x = objective.get_x()
    if weights is None:
        return x
    n_w = sum(net.n_weights for net in model.nets)
    w = np.asarray(weights, dtype=float).ravel()
    if w.size != n_w or not np.all(np.isfinite(w)):
        raise UsageError(f"weights: model '{model.name}' has {n_w} net weights; got {w.size}"
                         + ("" if w.size != n_w else ", not all finite"))
    x[x.size - n_w:] = w
    return x
