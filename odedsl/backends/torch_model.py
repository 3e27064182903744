"""A model as a ``torch.nn.Module``: batched right-hand side, parameters, nets, inputs, solves.

``model.to_torch()`` builds it. Fitted parameters live in one unconstrained vector
``raw`` (an ``nn.Parameter``); a parameter with bounds is mapped into them by a
sigmoid (both bounds) or a softplus (one bound), so no optimiser step can take
it outside. Fixed parameters are a buffer. Each ``nn`` declaration is an
``MLP`` submodule, initialised exactly as the Numba backend initialises it
(``odedsl.nets.init_weights``), so both backends start from the same model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from odedsl.backends.cache import import_generated
from odedsl import bounds
from odedsl.backends.torch_nets import MLP
from odedsl.errors import UsageError
from odedsl.model import Model
from odedsl.nets import init_weights

GRADIENT_MODES = ("backprop", "adjoint", "checkpoint")

class TorchModel(nn.Module):
    """The model's right-hand side and solver on PyTorch (see ``Model.to_torch``)."""

    def __init__(self, model: Model, dtype: torch.dtype = torch.float64, device=None, seed: int = 0) -> None:
        super().__init__()
        from odedsl.backends.torch_codegen import generate, module_name

        self.model = model
        self.fn = import_generated(module_name(model), lambda: generate(model))
        fitted = [i for i, p in enumerate(model.params) if not p.fixed]
        fixed = [i for i, p in enumerate(model.params) if p.fixed]
        self.fitted_names = [model.params[i].name for i in fitted]
        lo = [model.params[i].lower for i in fitted]
        hi = [model.params[i].upper for i in fitted]
        kinds = [bounds.kind(a, b) for a, b in zip(lo, hi)]

        def vec(values, dt=dtype):
            return torch.tensor(values, dtype=dt, device=device)

        self.raw = nn.Parameter(vec([bounds.to_raw(model.params[i].value, a, b) for i, a, b in zip(fitted, lo, hi)]))
        self.register_buffer("_kinds", vec(kinds, torch.long))
        # per kind, the constants its map needs, with harmless values elsewhere (torch.where's NaN trap)
        self.register_buffer("_lo", vec([a if k & bounds.LOWER else 0.0 for a, k in zip(lo, kinds)]))
        self.register_buffer("_hi", vec([b if k & bounds.UPPER else 0.0 for b, k in zip(hi, kinds)]))
        self.register_buffer("_span", vec([b - a if k == bounds.BOTH else 1.0 for a, b, k in zip(lo, hi, kinds)]))
        self.register_buffer("fixed_values", vec([model.params[i].value for i in fixed]))
        order = fitted + fixed
        self.register_buffer("_order", vec([order.index(i) for i in range(len(order))], torch.long))
        self.nets = nn.ModuleList(MLP(net, dtype=dtype, device=device) for net in model.nets)
        self.set_weights(init_weights(model, seed))
        self._inputs: list | None = None

    # -- parameters -----------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return self.fixed_values.dtype

    @property
    def device(self) -> torch.device:
        return self.fixed_values.device

    def param_values(self) -> torch.Tensor:
        """Every parameter's value (declaration order), differentiable in ``raw``."""
        z, k = self.raw, self._kinds
        both = self._lo + self._span * torch.sigmoid(z)
        soft = torch.clamp_min(z, 0.0) + torch.log1p(torch.exp(-torch.abs(z)))  # exact, unlike F.softplus
        value = torch.where(k == bounds.BOTH, both, torch.where(k == bounds.LOWER, self._lo + soft,
                                                          torch.where(k == bounds.UPPER, self._hi - soft, z)))
        return torch.cat([value, self.fixed_values])[self._order]

    def params(self) -> dict[str, float]:
        """Parameter values by name."""
        return dict(zip((p.name for p in self.model.params), self.param_values().tolist()))

    @torch.no_grad()
    def set_params(self, values: dict[str, float]) -> None:
        """Set parameters by name (fixed ones too); a value outside its bounds is a ``UsageError``."""
        fixed = [p for p in self.model.params if p.fixed]
        for name, value in values.items():
            try:
                p = self.model.param(name)
            except KeyError as exc:
                raise UsageError(exc.args[0]) from None
            if not p.lower <= value <= p.upper:
                raise UsageError(f"parameter '{name}' = {value} is outside its bounds [{p.lower}, {p.upper}]")
            if p.fixed:
                self.fixed_values[fixed.index(p)] = value
            else:
                self.raw[self.fitted_names.index(name)] = bounds.to_raw(value, p.lower, p.upper)

    # -- nets ---------------------------------------------------------------------------

    def weights(self) -> torch.Tensor:
        """All nets' weights as one flat vector in ``odedsl.nets`` layout (a copy)."""
        if not self.nets:
            return torch.zeros(0, dtype=self.dtype, device=self.device)
        return torch.cat([net.flat() for net in self.nets]).detach()

    def set_weights(self, flat) -> None:
        flat = torch.as_tensor(np.asarray(flat, dtype=float) if not torch.is_tensor(flat) else flat,
                               dtype=self.dtype, device=self.device)
        sizes = [sum(p.numel() for p in net.parameters()) for net in self.nets]
        if flat.ndim != 1 or flat.numel() != sum(sizes):
            raise UsageError(f"expected a vector of {sum(sizes)} net weights, got shape {tuple(flat.shape)}")
        pos = 0
        for net, n in zip(self.nets, sizes):
            net.load_flat(flat[pos:pos + n])
            pos += n

    # -- inputs -------------------------------------------------------------------------

    def set_inputs(self, inputs: dict | None) -> None:
        """Input samples ``{name: (times, values)}``; times ``(M,)`` or ``(B, M)`` per trajectory, increasing.

        Between samples an input is linear; beyond the ends it stays at the end value
        (as in the Numba backend).
        """
        if not self.model.inputs:
            self._inputs = None
            return
        inputs = inputs or {}
        missing = [u.name for u in self.model.inputs if u.name not in inputs]
        if missing:
            raise UsageError(f"no samples given for input {', '.join(missing)}")
        unknown = sorted(set(inputs) - {u.name for u in self.model.inputs})
        if unknown:
            raise UsageError(f"unknown input {', '.join(unknown)}; the model's inputs: "
                             + ", ".join(u.name for u in self.model.inputs))
        self._inputs = []
        for u in self.model.inputs:
            times, values = inputs[u.name]
            ut = torch.as_tensor(times, dtype=self.dtype, device=self.device)
            uv = torch.as_tensor(values, dtype=self.dtype, device=self.device)
            if ut.shape != uv.shape or ut.shape[-1] == 0:
                raise UsageError(f"input '{u.name}': times and values must have the same, non-empty shape")
            if not bool(torch.isfinite(uv).all() & torch.isfinite(ut).all()):
                raise UsageError(f"input '{u.name}' contains NaN or infinite samples")
            if ut.shape[-1] > 1 and bool((ut[..., 1:] <= ut[..., :-1]).any()):
                raise UsageError(f"input '{u.name}': sample times must be increasing")
            self._inputs.append((ut.contiguous(), uv.contiguous()))

    def input_values(self, t: torch.Tensor, rows: torch.Tensor | None = None, rate: bool = False):
        """The inputs (or their rates of change) at times ``t`` (one per row), ``(B, n_inputs)``; None without inputs."""
        if not self.model.inputs:
            return None
        if self._inputs is None:
            raise UsageError("the model has inputs: give their samples with set_inputs() or solve(inputs=...)")
        cols = []
        for ut, uv in self._inputs:
            if ut.ndim == 2 and rows is not None:
                ut, uv = ut[rows], uv[rows]
            cols.append(_interp(ut, uv, t, rate))
        return torch.stack(cols, -1)

    # -- evaluation -----------------------------------------------------------------------

    def forward(self, t, y: torch.Tensor) -> torch.Tensor:
        """dy/dt for a batch ``y`` of shape ``(..., n_states)`` at time ``t``."""
        return self._pointwise(self.fn.rhs, t, y)

    def observe(self, t, y: torch.Tensor) -> torch.Tensor:
        """The observables at ``(t, y)``, ``(..., n_observables)``."""
        return self._pointwise(self.fn.observe, t, y)

    def _pointwise(self, fn, t, y: torch.Tensor) -> torch.Tensor:
        if y.dtype != self.dtype:
            raise UsageError(f"y has dtype {y.dtype} but the model computes in {self.dtype}; convert y, or the "
                             f"model with .to({y.dtype})")
        t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
        u = None
        if self.model.inputs:
            rows = None
            per_row = [ut.shape[0] for ut, _ in self._inputs or [] if ut.ndim == 2]
            if per_row:  # inputs given per trajectory: the trajectory axis is y's last batch axis
                if y.ndim < 2 or y.shape[-2] != per_row[0]:
                    raise UsageError(f"the inputs were given for {per_row[0]} trajectories: y must have shape "
                                     f"(..., {per_row[0]}, n_states); got {tuple(y.shape)}")
                rows = torch.arange(per_row[0], device=y.device).expand(y.shape[:-1]).reshape(-1)
            u = self.input_values(t.expand(y.shape[:-1]).reshape(-1), rows).reshape(*y.shape[:-1], -1)
        return fn(t, y, tuple(self.param_values().unbind()), self.prepared_nets(), u)

    def initial_values(self, p: torch.Tensor | None = None) -> torch.Tensor:
        """The file's initial values at the current parameters, ``(n_states,)``."""
        p = self.param_values() if p is None else p
        return self.fn.init(tuple(p.unbind()), p.new_zeros(()))

    def solve(self, t_eval, y0=None, method: str = "dopri5", rtol: float = 1e-6, atol: float = 1e-8,
              gradient: str = "backprop", *, dt: float | None = None, max_steps: int = 100_000, h0=None,
              seminorm: bool = True, checkpoint_every: int = 32, inputs: dict | None = None) -> torch.Tensor:
        """Integrate and return the states at ``t_eval``: ``(T, *batch, n_states)``.

        ``t_eval`` is ``(T,)`` or ``(B, T)`` (its own times for each trajectory,
        non-decreasing; the first is the start). ``y0`` is ``(*batch, n_states)``;
        None: the file's initial values (differentiable in the parameters).
        ``gradient`` picks how ``backward()`` differentiates the solve: ``backprop``
        through the solver's operations, the continuous ``adjoint`` (memory
        independent of the number of steps; ``seminorm`` leaves the parameter
        channels out of its error control), or ``checkpoint`` (exact discrete
        gradients, states stored every ``checkpoint_every`` steps and recomputed).
        """
        from odedsl.adjoint import solve

        if gradient not in GRADIENT_MODES:
            raise UsageError(f"unknown gradient mode '{gradient}'; valid: {', '.join(GRADIENT_MODES)}")
        if inputs is not None:
            self.set_inputs(inputs)
        p = self.param_values()
        if y0 is None:
            y0 = self.initial_values(p)
        y0 = torch.as_tensor(y0, dtype=self.dtype, device=self.device)
        n = len(self.model.states)
        if y0.shape[-1:] != (n,):
            raise UsageError(f"y0 must end in the number of states ({n}); got shape {tuple(y0.shape)}")
        t = torch.as_tensor(t_eval, dtype=self.dtype, device=self.device)
        batch = y0.shape[:-1]
        if t.ndim == 2 and not batch:
            batch = t.shape[:1]
            y0 = y0.expand(*batch, n)
        flat = y0.reshape(-1, n)
        out = solve(self, t, flat, p, method=method, rtol=rtol, atol=atol, gradient=gradient, dt=dt,
                    max_steps=max_steps, h0=h0, seminorm=seminorm, checkpoint_every=checkpoint_every)
        return out.reshape(out.shape[0], *batch, n)

    def rhs_closure(self, p: torch.Tensor):
        """``f(t, y, rows)`` for the solver core, parameters unpacked once."""
        ps = tuple(p.unbind())
        fn, nets = self.fn, self.prepared_nets()
        if not self.model.inputs:
            def f(t, y, rows):
                return fn.rhs(t, y, ps, nets, None)
        else:
            def f(t, y, rows):
                return fn.rhs(t, y, ps, nets, self.input_values(t, rows))
        f.autonomous = self.autonomous  # the solver may skip computing stage times
        return f

    def prepared_nets(self) -> list:
        """The nets with their weights transposed once (``torch_nets.Prepared``), for one solve."""
        return [net.prepared() for net in self.nets]

    @property
    def autonomous(self) -> bool:
        """The right-hand side does not depend on time (no time symbol, no inputs)."""
        m = self.model
        return not m.inputs and not any(m.time in e.free_symbols for e in m.rhs)


def _interp(ut: torch.Tensor, uv: torch.Tensor, t: torch.Tensor, rate: bool) -> torch.Tensor:
    """Linear interpolation of samples (constant beyond the ends) at ``t`` (B,); ut (M,) or (B, M)."""
    M = ut.shape[-1]
    if M == 1:
        v = uv[..., 0].expand(t.shape)
        return torch.zeros_like(v) if rate else v
    if ut.ndim == 1:
        i = (torch.searchsorted(ut, t.contiguous(), right=True) - 1).clamp(0, M - 2)
        t0, t1, v0, v1 = ut[i], ut[i + 1], uv[i], uv[i + 1]
    else:
        i = (torch.searchsorted(ut, t.reshape(-1, 1).contiguous(), right=True) - 1).clamp(0, M - 2)
        t0, t1 = ut.gather(1, i).squeeze(1), ut.gather(1, i + 1).squeeze(1)
        v0, v1 = uv.gather(1, i).squeeze(1), uv.gather(1, i + 1).squeeze(1)
    if rate:
        inside = (t >= ut[..., 0]) & (t < ut[..., -1])
        return torch.where(inside, (v1 - v0) / (t1 - t0), torch.zeros_like(v0))
    theta = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0)
    return v0 + theta * (v1 - v0)
