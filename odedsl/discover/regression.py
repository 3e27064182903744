"""Sparse regression of sampled net outputs on a library: a sweep, its front, and the chosen support.

The optimisers are PySINDy's STLSQ (sequentially thresholded least squares,
Brunton, Proctor & Kutz 2016) and scikit-learn's LASSO path, by default both
(their proposals pooled: on a library of strongly correlated columns, as
polynomials along one trajectory are, STLSQ drops small but essential terms
early and jumps between large supports, while the LASSO path enters terms one
at a time; each finds supports the other misses). They run on columns
scaled to unit RMS and targets scaled likewise, so one threshold grid serves
every library and output. A sweep only proposes supports (which terms); every
distinct support is then refitted by ordinary least squares and scored, so the
coefficients are unbiased and the front (number of terms against error) is
comparable between optimisers.

The score that picks a support is, by default, the error on held-out samples in
contiguous blocks of time (``cv``), with the one-standard-error rule (Hastie,
Tibshirani & Friedman, *The Elements of Statistical Learning*, 7.10): the
sparsest support whose held-out error is within one standard error (over the
blocks) of the least, or within 10 % of it when that is larger. Samples of a trained net along a trajectory are smooth
and strongly correlated, so an information criterion that treats them as
independent (``aic``) rewards every extra term that follows the net's own
wiggles; holding out whole stretches of the trajectory does not, and the
one-standard-error rule does not pay for a term that helps less than the
blocks disagree.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from odedsl.errors import UsageError

N_THRESHOLDS = 40
MIN_THRESHOLD = 1e-3
#: The sparsest support within one standard error of the least held-out error, or within this fraction of it
#: (whichever is larger), is chosen: with few, similar blocks the standard error alone can be tiny.
PARSIMONY = 0.10
#: Ridge weight of STLSQ's inner least squares: only there to keep collinear columns solvable.
RIDGE = 1e-10


@dataclass(frozen=True)
class Candidate:
    """One support of the front, refitted by least squares on all samples."""

    support: tuple[int, ...]
    coef: np.ndarray  # (n_features,) in the library's own units; zero off the support
    error: float  # RMS residual / RMS target, on all samples
    cv_error: float  # the same on held-out blocks, each predicted from the others
    aic: float  # corrected Akaike information criterion, samples taken as independent
    threshold: float  # the smallest threshold (or LASSO weight) of the sweep that gave this support
    cv_se: float = 0.0  # standard error of the held-out mean squared error (relative), over the folds

    @property
    def size(self) -> int:
        return len(self.support)


@dataclass
class Front:
    """Every distinct support a sweep produced for one output, and the one chosen."""

    candidates: list[Candidate]  # sorted by size, then error
    chosen: Candidate
    how: str  # how it was chosen, in words


def import_optimizers():
    """PySINDy and scikit-learn, imported late (and named in a clear error when missing)."""
    try:
        from pysindy.optimizers import STLSQ
        from sklearn.linear_model import Lasso, lasso_path
    except ImportError as exc:
        raise UsageError(f"odedsl discover needs PySINDy and scikit-learn ({exc.name} is not installed): "
                         "pip install 'odedsl[discover]'") from None
    return STLSQ, Lasso, lasso_path


def regress(theta: np.ndarray, targets: np.ndarray, folds: np.ndarray, optimizer: str = "both",
            select: str = "cv", threshold: float | None = None) -> list[Front]:
    """The front and the chosen support of each column of ``targets`` (N, m) on the library ``theta`` (N, p).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(0, 1, (200, 2))
    >>> theta = np.column_stack([np.ones(200), x[:, 0], x[:, 1], x[:, 0] * x[:, 1]])
    >>> front = regress(theta, (-0.9 * x[:, 0] * x[:, 1])[:, None], np.arange(200) % 5)[0]
    >>> front.chosen.support, round(float(front.chosen.coef[3]), 6)
    ((3,), -0.9)
    """
    n, p = theta.shape
    scale = np.sqrt(np.mean(theta ** 2, axis=0))
    scale[scale == 0] = 1.0
    x = theta / scale
    y_scale = np.sqrt(np.mean(targets ** 2, axis=0))
    y_scale[y_scale == 0] = 1.0
    y = targets / y_scale
    found: list[dict[tuple[int, ...], float]] = [{(): math.inf} for _ in range(y.shape[1])]
    fixed: list[tuple[int, ...]] = []
    if optimizer in ("stlsq", "both"):
        _stlsq_sweep(x, y, found)
    if optimizer in ("lasso", "both"):
        _lasso_sweep(x, y, found)
    if threshold is not None:  # "both" at a fixed threshold: STLSQ's, the threshold being its
        fixed = _lasso_supports(x, y, threshold) if optimizer == "lasso" else _stlsq_supports(x, y, threshold)
    for k, support in enumerate(fixed):
        found[k].setdefault(support, threshold)
    fronts = []
    for k in range(y.shape[1]):
        cands = [score(x, y[:, k], folds, s, lam) for s, lam in found[k].items()]
        cands = [unscale(c, scale, y_scale[k]) for c in cands]
        cands.sort(key=lambda c: (c.size, c.error))
        if threshold is not None:
            chosen = next(c for c in cands if c.support == fixed[k])
            how = f"{'LASSO' if optimizer == 'lasso' else 'STLSQ'} at threshold {threshold:g}"
        elif select == "aic":
            chosen = min(cands, key=lambda c: (c.aic, c.size))
            how = "least AICc"
        else:
            best = min(cands, key=lambda c: (c.cv_error, c.size))
            bound = max(best.cv_error ** 2 + best.cv_se, (best.cv_error * (1 + PARSIMONY)) ** 2)
            chosen = min((c for c in cands if c.cv_error ** 2 <= bound), key=lambda c: (c.size, c.cv_error))
            how = f"held-out error on {len(np.unique(folds))} blocks of time (sparsest within 1 s.e. or 10 %)"
        fronts.append(Front(cands, chosen, how))
    return fronts


def thresholds(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A geometric grid from ``MIN_THRESHOLD`` to beyond the largest least-squares coefficient (all terms gone)."""
    c = np.linalg.lstsq(x, y, rcond=None)[0]
    top = max(1.0, float(np.abs(c).max()) * 1.01)
    return np.geomspace(MIN_THRESHOLD, top, N_THRESHOLDS)


def _stlsq_sweep(x, y, found) -> None:
    """STLSQ over the threshold grid, all outputs in one fit per threshold.

    STLSQ has no warm-started path (each threshold starts from the full least-squares
    solution), so this is one PySINDy fit per threshold; each is a few small solves.
    """
    for lam in thresholds(x, y):
        for k, support in enumerate(_stlsq_supports(x, y, lam)):
            found[k].setdefault(support, float(lam))


def _stlsq_supports(x, y, lam: float) -> list[tuple[int, ...]]:
    stlsq, _, _ = import_optimizers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparsity parameter is too big": an empty support, which is allowed
        coef = stlsq(threshold=float(lam), alpha=RIDGE, max_iter=50).fit(x, y).coef_
    return [tuple(int(j) for j in np.flatnonzero(row)) for row in np.atleast_2d(coef)]


def _lasso_sweep(x, y, found) -> None:
    """scikit-learn's LASSO path: coordinate descent warm-started from one weight to the next, per output."""
    _, _, lasso_path = import_optimizers()
    for k in range(y.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings at the smallest weights
            alphas, coefs, _ = lasso_path(x, y[:, k], n_alphas=N_THRESHOLDS * 2, eps=1e-4)
        for lam, c in zip(alphas[::-1], coefs.T[::-1]):  # smallest weight first: record the smallest that gave each
            found[k].setdefault(tuple(int(j) for j in np.flatnonzero(c)), float(lam))


def _lasso_supports(x, y, lam: float) -> list[tuple[int, ...]]:
    _, lasso, _ = import_optimizers()
    out = []
    for k in range(y.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = lasso(alpha=float(lam), fit_intercept=False, max_iter=10_000).fit(x, y[:, k]).coef_
        out.append(tuple(int(j) for j in np.flatnonzero(c)))
    return out


def score(x: np.ndarray, y: np.ndarray, folds: np.ndarray, support: tuple[int, ...], lam: float) -> Candidate:
    """One support refitted by least squares on scaled columns, with its in-sample and held-out errors."""
    n = y.size
    total = float(y @ y) or 1.0
    coef = np.zeros(x.shape[1])
    cols = list(support)
    if cols:
        coef[cols] = np.linalg.lstsq(x[:, cols], y, rcond=None)[0]
    rss = float(np.sum((y - x @ coef) ** 2))
    held = []
    for f in np.unique(folds):
        test = folds == f
        if cols and (~test).sum() > len(cols):
            c = np.linalg.lstsq(x[~test][:, cols], y[~test], rcond=None)[0]
            r = y[test] - x[test][:, cols] @ c
        else:
            r = y[test]
        held.append(float(r @ r))
    per_fold = np.array(held) * len(held) / total  # each fold's share, so their mean is the relative held-out MSE
    se = float(np.std(per_fold, ddof=1) / math.sqrt(len(held))) if len(held) > 1 else 0.0
    k = len(cols)
    aic = n * math.log(max(rss, total * 1e-30) / n) + 2 * k + (2 * k * (k + 1) / (n - k - 1) if n > k + 1 else math.inf)
    return Candidate(support, coef, math.sqrt(rss / total), math.sqrt(sum(held) / total), aic, lam, se)


def unscale(c: Candidate, scale: np.ndarray, y_scale: float) -> Candidate:
    """``c`` with its coefficients in the library's own units."""
    return Candidate(c.support, c.coef * y_scale / scale, c.error, c.cv_error, c.aic, c.threshold, c.cv_se)


def rescore(theta: np.ndarray, target: np.ndarray, folds: np.ndarray, support: tuple[int, ...],
            threshold: float) -> Candidate:
    """A support outside the sweep (one pruned on the data), scored as the sweep's are."""
    scale = np.sqrt(np.mean(theta ** 2, axis=0))
    scale[scale == 0] = 1.0
    y_scale = float(np.sqrt(np.mean(target ** 2))) or 1.0
    return unscale(score(theta / scale, target / y_scale, folds, support, threshold), scale, y_scale)
