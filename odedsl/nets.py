"""Neural terms' weights: one flat float64 vector for all nets, laid out like PyTorch.

Each net is an MLP ``n_in -> hidden... -> n_out``; each layer stores its weight
matrix (out x in, row-major, as ``torch.nn.Linear.weight``) followed by its bias.
Nets follow each other in declaration order. Every backend reads this layout, so
weights move between backends without conversion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from odedsl.model import Model, Net

#: Activation codes shared with the compiled kernels (odedsl/backends/numba_kernels.py).
ACTIVATION_CODES = {"identity": 0, "tanh": 1, "relu": 2, "softplus": 3, "sigmoid": 4, "gelu": 5, "elu": 6, "silu": 7}


@dataclass(frozen=True)
class NetLayout:
    """Where one net's weights sit in the flat vector."""

    name: str
    offset: int
    sizes: tuple[int, ...]
    activation: str

    @property
    def n_weights(self) -> int:
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))


def layouts(model: Model) -> list[NetLayout]:
    """The layout of every net of ``model``, in declaration order."""
    out, offset = [], 0
    for net in model.nets:
        lay = NetLayout(net.name, offset, net.layer_sizes, net.activation)
        out.append(lay)
        offset += lay.n_weights
    return out


def n_weights(model: Model) -> int:
    return sum(n.n_weights for n in model.nets)


def init_weights(model: Model, seed: int = 0) -> np.ndarray:
    """Initial weights: PyTorch's default ``nn.Linear`` ranges, last layer scaled down.

    Every weight and bias is uniform in +-1/sqrt(fan_in) (what ``nn.Linear`` draws);
    the last layer's weights are multiplied by the net's ``init_scale`` and its biases
    set to zero, so an untrained hybrid model starts close to its physics part.

    Examples
    --------
    >>> import odedsl
    >>> m = odedsl.loads("state x = 1\\nnn f: 1 -> 1, hidden = [3]\\nder(x) = f(x)\\n")
    >>> init_weights(m).shape
    (10,)
    """
    rng = np.random.default_rng(seed)
    parts = []
    for net in model.nets:
        sizes = net.layer_sizes
        for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = 1.0 / math.sqrt(fan_in)
            weight = rng.uniform(-bound, bound, size=(fan_out, fan_in))
            bias = rng.uniform(-bound, bound, size=fan_out)
            if layer == len(sizes) - 2:
                weight *= net.init_scale
                bias[:] = 0.0
            parts += [weight.ravel(), bias]
    return np.concatenate(parts) if parts else np.zeros(0)


def activation(name: str, z: np.ndarray) -> np.ndarray:
    """NumPy reference of each activation (the compiled kernels must agree with it)."""
    if name == "identity":
        return z
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "softplus":
        return np.logaddexp(0.0, z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "gelu":
        from scipy.special import erf

        return 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))
    if name == "silu":
        return z / (1.0 + np.exp(-z))
    raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATION_CODES)}")


def forward(net: Net, weights: np.ndarray, offset: int, x: np.ndarray) -> np.ndarray:
    """NumPy reference forward pass of one net (for tests and checks, not for speed)."""
    h = np.asarray(x, dtype=float)
    sizes = net.layer_sizes
    pos = offset
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        weight = weights[pos : pos + fan_in * fan_out].reshape(fan_out, fan_in)
        pos += fan_in * fan_out
        bias = weights[pos : pos + fan_out]
        pos += fan_out
        h = weight @ h + bias
        if layer < len(sizes) - 2:
            h = activation(net.activation, h)
    return h
