"""Where a trained net is asked what it learned: along the fitted trajectories, optionally over a box.

A net is only trained where the fitted model went, so its outputs are sampled
there by default: the hybrid is solved at dense times across each experiment of
the fit's data, and every call of every net is evaluated at the arguments the
model file feeds it. ``box`` adds points spread over the range of the states
seen on those trajectories, to probe the net between them (where it was never
trained: use it to see how far a discovery holds, not to make one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from odedsl.discover.library import evaluate
from odedsl.errors import InputError
from odedsl.model import Model, NetCall
from odedsl.nets import activation, layouts

#: Seed of the box's points and of the folds of box samples, so a discovery is reproducible.
SEED = 0


@dataclass
class CallSamples:
    """The samples of one call of a net: where (time, states, inputs), its arguments and its outputs there."""

    call: NetCall
    where: np.ndarray  # (N, 1 + n_states + n_inputs)
    arguments: np.ndarray  # (N, n_in)
    outputs: np.ndarray  # (N, n_out)
    folds: np.ndarray  # (N,) the cross-validation fold of each sample


@dataclass
class Samples:
    """All samples of a fit: one ``CallSamples`` per net call, and what they were taken from."""

    variables: list[sympy.Symbol]  # the columns of ``where``
    constants: dict[sympy.Symbol, float]  # fitted parameters and constants, by symbol
    calls: list[CallSamples]
    trajectories: list[tuple[str, np.ndarray, np.ndarray]]  # (experiment, t, states) of the hybrid
    n_box: int

    def of(self, net: str) -> list[CallSamples]:
        return [c for c in self.calls if c.call.net == net]


def model_constants(model: Model, params: dict[str, float]) -> dict[sympy.Symbol, float]:
    """Every parameter's (fitted) value and every constant's value, by symbol."""
    out = {p.symbol: float(params.get(p.name, p.value)) for p in model.params}
    for c in model.consts:
        out[c.symbol] = float(c.value.xreplace({k: sympy.Float(v) for k, v in out.items()}))
    return out


def forward_batch(model: Model, net_name: str, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The outputs of one net at the rows of ``x`` (N, n_in): the ``odedsl.nets`` layout and activations."""
    lay = next(lay for lay in layouts(model) if lay.name == net_name)
    h = np.asarray(x, dtype=float)
    pos = lay.offset
    sizes = lay.sizes
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = weights[pos: pos + fan_in * fan_out].reshape(fan_out, fan_in)
        pos += fan_in * fan_out
        b = weights[pos: pos + fan_out]
        pos += fan_out
        h = h @ w.T + b
        if layer < len(sizes) - 2:
            h = activation(lay.activation, h)
    return h


def sample(result, n: int = 200, box: bool = False, folds: int = 5) -> Samples:
    """Sample every net of a fit (a ``FitResult``) along its fitted trajectories (and a box).

    Raises ``InputError`` when the fit's data cannot be read again or an experiment spans no time.
    """
    model: Model = result.model
    data = result.dataset()
    variables = [model.time, *model.state_symbols, *model.input_symbols]
    constants = model_constants(model, result.params)
    method = result.settings.get("method", "dopri5")
    weights = np.asarray(result.weights, dtype=float)
    rows, fold_ids, trajectories = [], [], []
    for e in data.experiments:
        t0, t1 = float(e.times[0]), float(e.times[-1])
        if not t1 > t0:
            raise InputError(f"{data.path}: experiment '{e.name}' has all its rows at t = {t0:g}; sampling a "
                             "trajectory needs a time span")
        t = np.linspace(t0, t1, n)
        sol = model.simulate(t, params=result.params, y0=e.y0 or None, inputs=e.inputs or None,
                             weights=weights if weights.size else None, method=method, rtol=1e-8, atol=1e-10)
        u = np.column_stack([np.interp(t, *e.inputs[i.name]) for i in model.inputs]) if model.inputs else \
            np.zeros((n, 0))
        rows.append(np.column_stack([t, sol.y, u]))
        fold_ids.append(np.minimum((np.arange(n) * folds) // n, folds - 1))  # contiguous blocks of time
        trajectories.append((e.name, t, sol.y))
    where = np.concatenate(rows)
    fold = np.concatenate(fold_ids)
    n_box = 0
    if box:
        rng = np.random.default_rng(SEED)
        n_box = n
        picked = where[rng.integers(0, where.shape[0], n_box)].copy()  # times and inputs seen on a trajectory
        ns = len(model.states)
        lo, hi = where[:, 1:1 + ns].min(0), where[:, 1:1 + ns].max(0)
        picked[:, 1:1 + ns] = rng.uniform(lo, hi, size=(n_box, ns))
        where = np.concatenate([where, picked])
        fold = np.concatenate([fold, rng.integers(0, folds, n_box)])
    calls = []
    for call in model.net_calls():
        args = evaluate(list(call.args), variables, where, constants)
        bad = ~np.isfinite(args).all(1)
        if bad.any():
            raise InputError(f"the inputs of {call.net}({', '.join(map(str, call.args))}) are not finite at "
                             f"{int(bad.sum())} of {len(bad)} samples of the fitted trajectories")
        calls.append(CallSamples(call, where, args, forward_batch(model, call.net, weights, args), fold))
    return Samples(variables, constants, calls, trajectories, n_box)
