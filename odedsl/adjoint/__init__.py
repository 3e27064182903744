"""Gradients of solves on the Torch backend: how ``backward()`` gets through the solver.

- ``backprop`` (this module): autograd records the solver's operations; the exact
  gradient of the computed solution, memory growing with the number of steps.
- ``checkpoint`` (checkpoint.py): the forward pass keeps only its step decisions and
  a state every few steps; the backward pass recomputes each stretch with autograd.
  The same exact gradient, memory of one stretch.
- ``adjoint`` (continuous.py): the continuous adjoint of Chen et al. 2018, solved
  backwards in time; memory independent of the number of steps.

All three take the same arguments and return ``(T, B, N)``; gradients flow to
``y0``, the parameter vector, every net weight and, in ``checkpoint`` and
``adjoint``, the output times.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from odedsl.errors import UsageError
from odedsl.solvers.methods import get_method
from odedsl.solvers.torch_rk import Options, grid, integrate, replay


@dataclass
class Problem:
    """What a gradient mode needs besides the tensors it differentiates."""

    tm: object  # odedsl.backends.torch_model.TorchModel
    method: str
    opts: Options
    seminorm: bool
    checkpoint_every: int

    def integrator(self):
        """``run(f, t_eval, y0, opts, tape=None, p=None)`` -> ``(out, stats, last steps)``; ``p``: the
        parameters ``f`` is bound to (stiff methods build their Jacobian from them)."""
        def run(f, t_eval, y0, opts, tape=None, p=None):
            return integrate(f, t_eval, y0, self.method, opts, tape, model=self.bound(p))

        return run

    def replay(self, f, start, steps: list, out: torch.Tensor, p: torch.Tensor):
        """Repeat recorded steps (see ``odedsl.solvers.torch_rk.replay``)."""
        return replay(f, self.method, start, steps, out, model=self.bound(p))

    def bound(self, p):
        return None if p is None else (self.tm, p)


def solve(tm, t, y0: torch.Tensor, p: torch.Tensor, method: str, rtol: float, atol: float, gradient: str,
          dt: float | None, max_steps: int, h0, seminorm: bool, checkpoint_every: int) -> torch.Tensor:
    m = get_method(method)
    if m.kind in ("bdf", "auto"):
        raise UsageError(f"method '{m.name}' is not available on the Torch backend; use rodas5p for stiff problems")
    try:
        t_eval = grid(t, y0.shape[0], y0.dtype, y0.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if gradient == "adjoint" and m.kind == "rosenbrock":
        raise UsageError(f"gradient='adjoint' is not available with the stiff method '{m.name}' (its backward pass "
                         "would need the Jacobian of the adjoint system); use gradient='checkpoint', which gives "
                         "exact gradients at low memory")
    if rtol <= 0 or atol < 0:
        raise UsageError("rtol must be positive and atol non-negative")
    if checkpoint_every < 1:
        raise UsageError("checkpoint_every must be at least 1")
    prob = Problem(tm, m.name, Options(rtol=rtol, atol=atol, h0=h0, dt=dt, max_steps=max_steps), seminorm,
                   checkpoint_every)
    if gradient == "backprop":
        if t_eval.requires_grad:
            raise UsageError("gradients with respect to the output times need gradient='adjoint' or 'checkpoint'")
        return prob.integrator()(tm.rhs_closure(p), t_eval, y0, prob.opts, p=p)[0]
    weights = [w for net in tm.nets for w in net.parameters()]
    if gradient == "checkpoint":
        from odedsl.adjoint.checkpoint import Checkpointed

        return Checkpointed.apply(prob, y0, t_eval, p, *weights)
    from odedsl.adjoint.continuous import ContinuousAdjoint

    return ContinuousAdjoint.apply(prob, y0, t_eval, p, *weights)


def time_gradients(tm, p: torch.Tensor, t_eval: torch.Tensor, out: torch.Tensor, grad_out: torch.Tensor,
                   a0: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    """dL/dt_eval: ``g·f(t, y)`` at each output time after the start; ``-a0·f(t0, y0)`` at the start.

    ``a0`` is dL/dy0 through the solve only (not through outputs at the start, which
    are ``y0`` itself and do not move with ``t0``).
    """
    B, T = t_eval.shape
    f = tm.rhs_closure(p)
    rows = torch.arange(B, device=t_eval.device).repeat(T)
    with torch.no_grad():
        ft = f(t_eval.T.reshape(-1), out.reshape(T * B, -1), rows).reshape(T, B, -1)
        g = (grad_out * ft).sum(-1).T  # (B, T)
        g = torch.where(t_eval > t_eval[:, :1], g, torch.zeros_like(g))
        g0 = -(a0 * f(t_eval[:, 0], y0, None)).sum(-1)
    return torch.cat([g[:, :1] + g0.unsqueeze(1), g[:, 1:]], 1)


def start_gradient(t_eval: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """dL/dy0 through the outputs whose time is the start itself."""
    at_start = (t_eval <= t_eval[:, :1]).T.unsqueeze(-1)  # (T, B, 1)
    return (grad_out * at_start).sum(0)


def flat_weight_grads(shapes: list[list[torch.Tensor]], per_net: list) -> list[torch.Tensor]:
    """Per weight tensor (``parameters()`` order), from the generated VJP's per-net lists (None: zeros).

    ``shapes``: per net, zero tensors shaped like its parameters (made once per solve: walking a
    module's parameters costs more than the products here).
    """
    out = []
    for zeros, grads in zip(shapes, per_net):
        out += zeros if grads is None else list(grads)
    return out
