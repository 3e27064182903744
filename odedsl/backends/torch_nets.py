"""A model's ``nn`` declarations as torch modules, with the derivatives the solvers need.

``MLP`` is a stack of ``nn.Linear`` layers, so its parameters are laid out exactly
as ``odedsl.nets`` lays out the flat weight vector (weight out×in row-major, then
bias, layer by layer): ``flat()`` and ``load_flat()`` move weights between the
backends without conversion.

Besides ``forward`` it has the two products the solver core uses, written out
for an MLP rather than left to autograd, because they run inside every step:
``jacobian`` (the input Jacobian, forward mode, for stiff methods) and ``vjp``
(the cotangents of inputs and of every weight, reverse mode, for the continuous
adjoint), both checked against autograd in tests/test_torch.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from odedsl.model import Net


def _act(name: str, z: torch.Tensor) -> torch.Tensor:
    if name == "tanh":
        return torch.tanh(z)
    if name == "relu":
        return torch.relu(z)
    if name == "softplus":
        return torch.clamp_min(z, 0.0) + torch.log1p(torch.exp(-torch.abs(z)))
    if name == "sigmoid":
        return torch.sigmoid(z)
    if name == "gelu":
        return F.gelu(z)
    if name == "elu":
        return F.elu(z)
    if name == "silu":
        return F.silu(z)
    return z


def _act_deriv(name: str, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """d act / dz at ``z`` (``a = act(z)`` already computed)."""
    if name == "tanh":
        return 1.0 - a * a
    if name == "relu":
        return (z > 0).to(z.dtype)
    if name == "softplus":
        return torch.sigmoid(z)
    if name == "sigmoid":
        return a * (1.0 - a)
    if name == "gelu":
        return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0))) + z * torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    if name == "elu":
        return torch.where(z > 0, torch.ones_like(z), a + 1.0)
    if name == "silu":
        s = torch.sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    return torch.ones_like(z)


class MLP(nn.Module):
    """One ``nn`` declaration: ``n_in -> hidden... -> n_out``, the activation between layers."""

    def __init__(self, net: Net, dtype: torch.dtype = torch.float64, device=None) -> None:
        super().__init__()
        sizes = net.layer_sizes
        self.name = net.name
        self.activation = net.activation
        self.layers = nn.ModuleList(nn.Linear(a, b, dtype=dtype, device=device) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prepared().forward(x)

    def prepared(self) -> Prepared:
        """The net with its weights transposed once, for the many calls of one solve."""
        return Prepared([(layer.weight.t(), layer.bias) for layer in self.layers], self.activation)

    def flat(self) -> torch.Tensor:
        """The weights as one vector in ``odedsl.nets`` layout."""
        return torch.cat([p.reshape(-1) for p in self.parameters()])

    @torch.no_grad()
    def load_flat(self, flat: torch.Tensor) -> None:
        pos = 0
        for p in self.parameters():
            p.copy_(flat[pos:pos + p.numel()].reshape(p.shape))
            pos += p.numel()


class Prepared:
    """An MLP's arithmetic on transposed weights ``(in x out)``: one ``addmm`` per layer on a batch of
    rows, half the cost of ``F.linear`` for the small layers of a hybrid model (measured: 23 -> 13 µs
    for 2->32->32->2), and one autograd node fewer per layer."""

    def __init__(self, weights: list[tuple[torch.Tensor, torch.Tensor]], activation: str) -> None:
        self.weights = weights
        self.activation = activation

    def _layer(self, k: int, x: torch.Tensor) -> torch.Tensor:
        wt, b = self.weights[k]
        return torch.addmm(b, x, wt) if x.dim() == 2 else torch.matmul(x, wt) + b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for k in range(last):
            x = _act(self.activation, self._layer(k, x))
        return self._layer(last, x)

    __call__ = forward

    def forward_cached(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output, and what ``vjp`` needs: each layer's input and pre-activation."""
        cache = []
        last = len(self.weights) - 1
        for k in range(last):
            z = self._layer(k, x)
            cache += [x, z]
            x = _act(self.activation, z)
        cache.append(x)
        return self._layer(last, x), cache

    def vjp(self, cache: list[torch.Tensor], g: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Cotangent ``g`` of the output -> (cotangent of the input, of each weight and bias summed over the batch).

        Weight cotangents come in ``parameters()`` order (layer by layer, weight then bias).
        """
        grads: list[torch.Tensor] = []
        x = cache[-1]
        for k in range(len(self.weights) - 1, -1, -1):
            g2 = g.reshape(-1, g.shape[-1])
            grads.append(g2.sum(0))
            grads.append(g2.T @ x.reshape(-1, x.shape[-1]))
            g = g @ self.weights[k][0].T
            if k > 0:
                g = g * _act_deriv(self.activation, cache[2 * k - 1], x)  # x is act(z) of the layer below
                x = cache[2 * k - 2]
        grads.reverse()
        return g, grads

    def jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output and d output / d input, ``(..., n_out, n_in)``, by forward-mode propagation."""
        n_in = x.shape[-1]
        jac = torch.eye(n_in, dtype=x.dtype, device=x.device).expand(*x.shape[:-1], n_in, n_in)
        last = len(self.weights) - 1
        for k in range(last):
            z = self._layer(k, x)
            x = _act(self.activation, z)
            jac = _act_deriv(self.activation, z, x).unsqueeze(-1) * (self.weights[k][0].T @ jac)
        return self._layer(last, x), self.weights[last][0].T @ jac
