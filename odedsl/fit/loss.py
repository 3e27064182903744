"""The fit's loss, one definition for every optimiser and backend.

For each observed value (experiment, time, column) the scaled residual is

- ``(model - data) / sigma`` for a column with ``~ normal(sigma)``,
- ``(log model - log data) / sigma`` for ``~ lognormal(sigma)``,
- ``(model - data) / spread`` otherwise, ``spread`` being the column's standard
  deviation in the data, so that columns of different magnitude weigh alike;

and the loss is ``mean(r² + 2 log sigma)`` over the observed values (the second
term only for columns with a noise model). It is twice the Gaussian negative
log-likelihood per observation, up to a constant, so a fitted ``sigma`` is
estimated correctly; without noise models it is the spread-scaled mean squared
error. An optional ``l2`` adds ``l2 * mean(w²)`` over the neural weights.

Functions take the array module (``numpy`` or ``torch``) so the two backends
share the formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from odedsl.errors import InputError
from odedsl.fit.data import Dataset


@dataclass(frozen=True)
class Scaling:
    kinds: tuple[str | None, ...]  # per column: "normal", "lognormal" or None
    spread: np.ndarray  # per column; 1 for columns with a noise model

    @property
    def logged(self) -> list[int]:
        return [k for k, kind in enumerate(self.kinds) if kind == "lognormal"]


def scaling(data: Dataset) -> Scaling:
    """How ``data``'s columns are scaled; ``InputError`` for a lognormal column with a value <= 0."""
    kinds = tuple(n.kind if n is not None else None for n in data.noise)
    for k, kind in enumerate(kinds):
        if kind != "lognormal":
            continue
        for e in data.experiments:
            bad = np.flatnonzero(e.observed[:, k] <= 0)
            if bad.size:
                raise InputError(f"{data.path}:{e.lines[bad[0]]}: column '{data.columns[k]}' is observed with "
                                 f"lognormal noise, so its values must be positive; found {e.observed[bad[0], k]:g}")
    spread = data.spread()
    spread = np.where([kind is None for kind in kinds], spread, 1.0)
    return Scaling(kinds, spread)


def transform(xp, values, sc: Scaling):
    """``values (..., n_columns)`` with the lognormal columns on the log scale."""
    if not sc.logged:
        return values
    return xp.stack([xp.log(values[..., k]) if k in sc.logged else values[..., k]
                     for k in range(values.shape[-1])], -1)


def residuals(xp, model_values, data_values, sigma, sc: Scaling):
    """Scaled residuals, same shape as ``data_values``; ``sigma`` (n_columns,) the noise scales (1: none)."""
    scale = sigma * xp.asarray(sc.spread) if xp is np else sigma * _torch_like(sc.spread, sigma)
    return (transform(xp, model_values, sc) - transform(xp, data_values, sc)) / scale


def loss_terms(xp, r, sigma, sc: Scaling):
    """Per value: ``r² + 2 log sigma`` where the column has a noise model."""
    has_noise = np.array([k is not None for k in sc.kinds], dtype=float)
    noise = 2.0 * xp.log(sigma) * (has_noise if xp is np else _torch_like(has_noise, sigma))
    return r * r + noise


def _torch_like(values: np.ndarray, ref):
    import torch

    return torch.as_tensor(values, dtype=ref.dtype, device=ref.device)
