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


def _pad_times(rows: list[np.ndarray]) -> np.ndarray:
    """Increasing sample times of different lengths as one array: each padded past its end (1 apart),
    where its input holds its last value anyway."""
    width = max(r.shape[0] for r in rows)
    return np.stack([np.concatenate([r, r[-1] + np.arange(1, width - r.shape[0] + 1)]) for r in rows])


def _segments(experiments, k: int) -> list[tuple[int, int, int]]:
    """(experiment, first index, last index) of each segment: ``k`` per experiment of about equal
    length, each starting at the previous one's last time."""
    out = []
    for b, e in enumerate(experiments):
        n = min(k, max(e.times.size - 1, 1))
        cuts = np.unique(np.round(np.linspace(0, e.times.size - 1, n + 1)).astype(int))
        out += [(b, int(i), int(j)) for i, j in zip(cuts[:-1], cuts[1:])] if cuts.size > 1 else [(b, 0, 0)]
    return out


class TorchObjective:
    """``value_and_grad`` of the fit's loss for ``model`` on ``data`` (see the module docstring)."""

    def __init__(self, model: Model, data: Dataset, sc: Scaling, method: str = "dopri5", rtol: float = 1e-6,
                 atol: float = 1e-8, gradient: str = "backprop", l2: float = 0.0, seed: int = 0,
                 device: str | None = None, dtype: torch.dtype = torch.float64, shooting: int | None = None,
                 shooting_weight: float = 1.0) -> None:
        self.model, self.data, self.sc = model, data, sc
        self.tm = tm = model.to_torch(dtype=dtype, device=device, seed=seed)
        self.options = {"method": method, "rtol": rtol, "atol": atol, "gradient": gradient}
        self.l2, self.shooting_weight = l2, shooting_weight
        exps = data.experiments
        # rows of the batched solve: one per experiment, or with multiple shooting one per segment
        self.segments = _segments(exps, shooting or 1)
        rows = [b for b, _, _ in self.segments]
        self.t_eval = torch.as_tensor(_pad([exps[b].times[i:j + 1] for b, i, j in self.segments]), dtype=dtype,
                                      device=tm.device)
        observed = []
        for k, (b, i, j) in enumerate(self.segments):
            o = exps[b].observed[i:j + 1].copy()
            if k and self.segments[k - 1][0] == b:
                o[0] = np.nan  # a segment's first value belongs to the segment before
            observed.append(o)
        observed = _pad(observed)
        lengths = np.array([j - i + 1 for _, i, j in self.segments])
        observed[np.arange(observed.shape[1])[None, :] >= lengths[:, None]] = np.nan  # padding counts nothing
        mask = np.isfinite(observed)
        self.mask = torch.as_tensor(mask, device=tm.device)
        self.observed = torch.as_tensor(np.where(mask, observed, 1.0), dtype=dtype, device=tm.device)
        self.n_points = int(mask.sum())
        self.last = torch.as_tensor(lengths - 1, device=tm.device)
        n = len(model.states)
        override = np.zeros((len(rows), n), dtype=bool)
        values = np.zeros((len(rows), n))
        for r, b in enumerate(rows):
            for i, st in enumerate(model.states):
                if st.name in exps[b].y0:
                    override[r, i], values[r, i] = True, exps[b].y0[st.name]
        self.y0_mask = torch.as_tensor(override, device=tm.device)
        self.y0_values = torch.as_tensor(values, dtype=dtype, device=tm.device)
        self.rows = rows
        self._set_inputs(rows)
        # each segment after an experiment's first starts from states of its own, fitted
        self.free = [r for r in range(len(rows)) if r and rows[r - 1] == rows[r]]
        self.z = torch.zeros((len(self.free), n), dtype=dtype, device=tm.device, requires_grad=True)
        self.scale = torch.ones(n, dtype=dtype, device=tm.device)
        if self.free:
            self._start_segments()
        self.params = [tm.raw, *tm.nets.parameters(), self.z]
        self.sizes = [p.numel() for p in self.params]

    def _set_inputs(self, rows: list[int]) -> None:
        """The inputs of each row's experiment."""
        exps = self.data.experiments
        if self.model.inputs:
            self.tm.set_inputs({u.name: (_pad_times([exps[b].inputs[u.name][0] for b in rows]),
                                         _pad([exps[b].inputs[u.name][1] for b in rows])) for u in self.model.inputs})

    @torch.no_grad()
    def _start_segments(self) -> None:
        """Each segment's states from a solve of the whole experiments at the starting values, and the
        states' spread (the continuity penalty's scale)."""
        exps = self.data.experiments
        tm = self.tm
        first = [self.rows.index(b) for b in range(len(exps))]  # each experiment's first row
        self._set_inputs(list(range(len(exps))))
        p = tm.param_values()
        y0 = torch.where(self.y0_mask, self.y0_values, tm.initial_values(p).expand_as(self.y0_values))[first]
        whole = torch.as_tensor(_pad([e.times for e in exps]), dtype=self.z.dtype, device=self.z.device)
        ys = tm.solve(whole, y0=y0, **{k: v for k, v in self.options.items() if k != "gradient"})
        self._set_inputs(self.rows)
        z = torch.stack([ys[self.segments[r][1], self.segments[r][0]] for r in self.free])
        # where a column observes a state itself, the segment starts from the data (the point of shooting:
        # the segments follow the data from the first iteration, which keeps the fit out of local minima)
        states = {s.symbol: i for i, s in enumerate(self.model.states)}
        for k, expr in enumerate(self.data.exprs):
            i = states.get(expr)
            if i is None:
                continue
            for row, r in enumerate(self.free):
                b, first, _ = self.segments[r]
                value = exps[b].observed[first, k]
                if np.isfinite(value):
                    z[row, i] = float(value)
        self.z.copy_(z)
        self.scale = ys.reshape(-1, ys.shape[-1]).std(0).clamp_min(1e-8)

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

    def solution(self, x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        """Every parameter's value by name, and the weights, at ``x``."""
        self.set_x(x)
        return self.tm.params(), self.tm.weights().cpu().numpy().astype(float)

    def loss(self) -> torch.Tensor:
        """The loss at the module's current parameters and weights, differentiable."""
        tm = self.tm
        p = tm.param_values()
        y0 = torch.where(self.y0_mask, self.y0_values, tm.initial_values(p).expand_as(self.y0_values))
        if self.free:
            y0 = y0.index_put((torch.as_tensor(self.free, device=y0.device),), self.z)
        ys = tm.solve(self.t_eval, y0=y0, **self.options)  # (T, rows, n)
        obs = tm.observe(self.t_eval.T, ys) if self.model.observables else ys
        obs = obs.transpose(0, 1)[..., self.columns]  # (B, T, n_columns)
        sigma = tm.fn.noise_scales(tuple(p.unbind()), p.new_zeros(()))[self.noise_index] \
            if self.model.observables else torch.ones(len(self.columns), dtype=p.dtype, device=p.device)
        r = residuals(torch, torch.where(self.mask, obs, self.observed), self.observed, sigma, self.sc)
        terms = torch.where(self.mask, loss_terms(torch, r, sigma, self.sc), torch.zeros_like(r))
        loss = terms.sum() / self.n_points
        if self.free:  # multiple shooting: each segment must end where the next one starts
            rows = torch.as_tensor([r - 1 for r in self.free], device=ys.device)
            ends = ys[self.last[rows], rows]
            loss = loss + self.shooting_weight * (((ends - self.z) / self.scale) ** 2).mean()
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
