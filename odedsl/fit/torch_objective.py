"""The loss and its gradient over one flat vector, computed on the Torch backend.

The vector ``x`` is the fitted parameters in their unconstrained coordinates
(``TorchModel.raw``: a bounded parameter can never leave its bounds) followed by
every net weight. All experiments are solved in one batched call, each row with
its own time grid (padded by repeating its last time, which costs nothing) and
its own inputs; missing values are masked out of the loss. Optimisers see only
``value_and_grad(x) -> (loss, gradient)`` (optimise.py), so another backend can
provide the same interface.
"""

from __future__ import annotations

import numpy as np
import torch

from odedsl.fit.data import Dataset
from odedsl.fit.loss import Scaling, loss_terms, residuals
from odedsl.model import Model


def _pad(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of different lengths as one array, each padded by repeating its last value."""
    width = max(r.shape[0] for r in rows)
    return np.stack([np.concatenate([r, np.repeat(r[-1:], width - r.shape[0], axis=0)]) for r in rows])


class TorchObjective:
    """``value_and_grad`` of the fit's loss for ``model`` on ``data`` (see the module docstring)."""

    def __init__(self, model: Model, data: Dataset, sc: Scaling, method: str = "dopri5", rtol: float = 1e-6,
                 atol: float = 1e-8, gradient: str = "backprop", l2: float = 0.0, seed: int = 0,
                 device: str | None = None, dtype: torch.dtype = torch.float64) -> None:
        self.model, self.data, self.sc = model, data, sc
        self.tm = model.to_torch(dtype=dtype, device=device, seed=seed)
        self.options = {"method": method, "rtol": rtol, "atol": atol, "gradient": gradient}
        self.l2 = l2
        tm = self.tm
        exps = data.experiments
        self.t_eval = torch.as_tensor(_pad([e.times for e in exps]), dtype=dtype, device=tm.device)
        observed = _pad([np.where(np.isfinite(e.observed), e.observed, np.nan) for e in exps])
        # padded rows repeat real ones: mask them out so that no value counts twice
        lengths = np.array([e.times.size for e in exps])
        pad = np.arange(observed.shape[1])[None, :] >= lengths[:, None]
        observed[pad] = np.nan
        mask = np.isfinite(observed)
        self.mask = torch.as_tensor(mask, device=tm.device)
        self.observed = torch.as_tensor(np.where(mask, observed, 1.0), dtype=dtype, device=tm.device)
        self.n_points = int(mask.sum())
        n = len(model.states)
        override = np.zeros((len(exps), n), dtype=bool)
        values = np.zeros((len(exps), n))
        for b, e in enumerate(exps):
            for i, st in enumerate(model.states):
                if st.name in e.y0:
                    override[b, i], values[b, i] = True, e.y0[st.name]
        self.y0_mask = torch.as_tensor(override, device=tm.device)
        self.y0_values = torch.as_tensor(values, dtype=dtype, device=tm.device)
        if model.inputs:
            tm.set_inputs({u.name: (_pad([e.inputs[u.name][0] for e in exps]), _pad([e.inputs[u.name][1] for e in exps]))
                           for u in model.inputs})
        self.params = [tm.raw, *tm.nets.parameters()]
        self.sizes = [p.numel() for p in self.params]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def get_x(self) -> np.ndarray:
        return torch.cat([p.detach().reshape(-1) for p in self.params]).cpu().numpy().astype(float)

    @torch.no_grad()
    def set_x(self, x: np.ndarray) -> None:
        pos = 0
        for p, k in zip(self.params, self.sizes):
            p.copy_(torch.as_tensor(x[pos:pos + k].reshape(p.shape), dtype=p.dtype))
            pos += k

    def loss(self) -> torch.Tensor:
        """The loss at the module's current parameters and weights, differentiable."""
        tm = self.tm
        p = tm.param_values()
        y0 = torch.where(self.y0_mask, self.y0_values, tm.initial_values(p).expand_as(self.y0_values))
        ys = tm.solve(self.t_eval, y0=y0, **self.options)  # (T, B, n)
        obs = tm.observe(self.t_eval.T, ys) if self.model.observables else ys
        obs = obs.transpose(0, 1)[..., self.columns]  # (B, T, n_columns)
        sigma = tm.fn.noise_scales(tuple(p.unbind()), p.new_zeros(()))[self.noise_index] \
            if self.model.observables else torch.ones(len(self.columns), dtype=p.dtype, device=p.device)
        r = residuals(torch, torch.where(self.mask, obs, self.observed), self.observed, sigma, self.sc)
        terms = torch.where(self.mask, loss_terms(torch, r, sigma, self.sc), torch.zeros_like(r))
        loss = terms.sum() / self.n_points
        if self.l2 and tm.nets:
            w = torch.cat([q.reshape(-1) for q in tm.nets.parameters()])
            loss = loss + self.l2 * (w * w).mean()
        return loss

    @property
    def columns(self) -> list[int]:
        """Where each data column sits in what ``observe`` returns (or among the states)."""
        names = [o.column for o in self.model.observables] or [s.name for s in self.model.states]
        return [names.index(c) for c in self.data.columns]

    noise_index = columns

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss and its gradient at ``x``; raises ``NumericalError`` when a solve fails."""
        self.set_x(x)
        for p in self.params:
            p.grad = None
        loss = self.loss()
        loss.backward()
        grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params])
        return float(loss.detach()), grad.cpu().numpy().astype(float)

    def value(self, x: np.ndarray) -> float:
        self.set_x(x)
        with torch.no_grad():
            return float(self.loss())
