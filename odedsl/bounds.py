"""Bounded parameters in an unconstrained coordinate, the same for every backend and optimiser.

A parameter with both bounds is ``lo + (hi - lo) sigmoid(z)``, one with a lower
bound ``lo + softplus(z)``, an upper bound ``hi - softplus(z)``; an unbounded one
is ``z`` itself. No optimiser step can then leave the bounds. A value exactly on
a bound starts ``Z_MAX`` inside (sigmoid(-30) ~ 1e-13 of the span).
"""

from __future__ import annotations

import math

import numpy as np

UNBOUNDED, LOWER, UPPER, BOTH = 0, 1, 2, 3
Z_MAX = 30.0


def kind(lo: float, hi: float) -> int:
    return (LOWER if math.isfinite(lo) else 0) | (UPPER if math.isfinite(hi) else 0)


def to_raw(value: float, lo: float, hi: float) -> float:
    """The unconstrained coordinate of ``value``."""
    k = kind(lo, hi)
    if k == BOTH:
        u = (value - lo) / (hi - lo)
        z = math.log(u / (1 - u)) if 0 < u < 1 else math.copysign(Z_MAX, u - 0.5)
        return max(-Z_MAX, min(Z_MAX, z))
    if k in (LOWER, UPPER):
        x = value - lo if k == LOWER else hi - value
        return x + math.log(-math.expm1(-x)) if x > 0 else -Z_MAX  # inverse softplus
    return value


def from_raw(z: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values and d value / d z, elementwise (NumPy; the Torch module computes the same map)."""
    value, slope = np.array(z, dtype=float), np.ones(len(z))
    for i, (zi, a, b) in enumerate(zip(z, lo, hi)):
        k = kind(a, b)
        if k == BOTH:
            s = 1.0 / (1.0 + math.exp(-zi)) if zi >= 0 else math.exp(zi) / (1.0 + math.exp(zi))
            value[i], slope[i] = a + (b - a) * s, (b - a) * s * (1 - s)
        elif k in (LOWER, UPPER):
            soft = max(zi, 0.0) + math.log1p(math.exp(-abs(zi)))
            sig = 1.0 / (1.0 + math.exp(-zi)) if zi >= 0 else math.exp(zi) / (1.0 + math.exp(zi))
            value[i], slope[i] = (a + soft, sig) if k == LOWER else (b - soft, -sig)
    return value, slope
