"""Small tensor helpers the generated torch code calls (``odedsl.backends.torch_codegen``).

Generated code mixes batched tensors with 0-d parameters and plain numbers (a
constant right-hand side, an ``if`` whose branch is a number); these helpers turn
those into tensors of the right dtype, device and shape at the few places where
torch needs it, and leave the common all-batched case at one ``torch.stack``.
"""

from __future__ import annotations

import torch


def _t(v, ref: torch.Tensor | None) -> torch.Tensor:
    """``v`` as a tensor like ``ref`` (numbers become 0-d tensors)."""
    if isinstance(v, torch.Tensor):
        return v
    if ref is None:
        return torch.tensor(float(v), dtype=torch.get_default_dtype())
    return torch.tensor(float(v), dtype=ref.dtype, device=ref.device)


def _stack(items: list, ref: torch.Tensor | None) -> torch.Tensor:
    """``items`` stacked on a new last axis, each broadcast to the batch shape of ``ref``."""
    shape = () if ref is None else ref.shape
    if items and all(isinstance(v, torch.Tensor) and v.shape == shape for v in items):
        return torch.stack(items, -1)
    ts = [_t(v, ref) for v in items]
    shape = torch.broadcast_shapes(shape, *(v.shape for v in ts))
    if not ts:
        return torch.zeros((*shape, 0), dtype=ref.dtype, device=ref.device)
    return torch.stack([v.expand(shape) for v in ts], -1)


def _gmask(active: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x`` itself, but its gradient flows only where ``active``: see torch_codegen on ``if``."""
    if not isinstance(x, torch.Tensor) or not x.requires_grad:
        return x
    return torch.where(active, x, x.detach())


def _heaviside(x: torch.Tensor, at_zero: float) -> torch.Tensor:
    """The unit step (derivative of relu, max, min); its gradient is zero."""
    return (x > 0).to(x.dtype) + at_zero * (x == 0).to(x.dtype)


def _softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(x)) without overflow, exactly as the Numba kernels compute it."""
    return torch.clamp_min(x, 0.0) + torch.log1p(torch.exp(-torch.abs(x)))


def _sum_grads(per_call: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Weight cotangents of several calls of one net, added layer by layer."""
    if len(per_call) == 1:
        return per_call[0]
    return [sum(parts) for parts in zip(*per_call)]
