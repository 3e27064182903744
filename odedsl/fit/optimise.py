"""Gradient-based optimisation over a flat vector: Adam, then an L-BFGS polish, never losing work.

The loop only needs ``value_and_grad(x) -> (loss, gradient)`` (torch_objective.py
provides it; another backend can too). Adam is written out over the flat vector
so that its whole state (moments, step count, learning rate) is a few arrays:
a checkpoint is that state plus the history, written atomically every
``checkpoint_every`` iterations and on Ctrl-C, and a resumed run continues
exactly where the interrupted one stopped (the same numbers as an uninterrupted
run). A step whose loss or gradient is not finite, or whose solve fails, is
undone and retried with half the learning rate; after ``max_failures`` in a row
the fit stops with the best point so far.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from odedsl.errors import NumericalError, UsageError
from odedsl.fit.least_squares import Outcome

CHECKPOINT = "checkpoint.npz"


class Interrupted(Exception):
    """Ctrl-C during a fit: carries the best result so far (the checkpoint is already on disk)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("interrupted")
        self.outcome = outcome


@dataclass
class AdamState:
    x: np.ndarray
    m: np.ndarray
    v: np.ndarray
    step: int = 0  # Adam's step count (bias correction)
    iteration: int = 0  # iterations done, failed ones included
    lr: float = 1e-2
    failures: int = 0  # in a row (a success at a point restored after a failure does not end the row)
    retried: int = 0  # steps undone and retried smaller, in all
    restored: bool = False  # x is the best point, restored after a failure
    stopped: bool = False  # ended by max_failures
    signature: str = ""  # the problem's size and model, so a checkpoint is never resumed into another
    best_x: np.ndarray | None = None
    best_loss: float = math.inf
    history: list = field(default_factory=list)  # (iteration, loss, seconds)
    phase: str = "adam"  # "adam", then "polish", then "done"
    seconds: float = 0.0

    def save(self, path: Path) -> None:
        """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
        meta = {k: getattr(self, k) for k in ("step", "iteration", "lr", "failures", "retried", "restored", "stopped",
                                              "signature", "best_loss", "phase", "seconds")}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, x=self.x, m=self.m, v=self.v, best_x=self.best_x if self.best_x is not None else self.x,
                     history=np.array(self.history, dtype=float).reshape(-1, 3),
                     meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> AdamState:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(x=z["x"], m=z["m"], v=z["v"], best_x=z["best_x"],
                       history=[(int(i), float(loss), float(s)) for i, loss, s in z["history"]], **meta)


def adam(objective, state: AdamState, max_iters: int, checkpoint: Path | None, checkpoint_every: int = 10,
         progress=None, max_failures: int = 8, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> str:
    """Run Adam until ``max_iters`` iterations; returns why it stopped."""
    start = time.perf_counter() - state.seconds
    try:
        while state.iteration < max_iters:
            try:
                loss, g = objective.value_and_grad(state.x)
                ok = math.isfinite(loss) and bool(np.all(np.isfinite(g)))
            except NumericalError:
                ok = False
            state.iteration += 1
            if not ok:
                state.failures += 1
                state.retried += 1
                if state.failures >= max_failures:
                    state.stopped = True
                    return f"stopped: {max_failures} steps in a row gave a failed solve or a non-finite loss"
                if state.best_x is not None:
                    state.x = state.best_x.copy()  # undo: back to the best point, half the step
                    state.restored = True
                state.lr *= 0.5
                continue
            if not state.restored:
                state.failures = 0
            state.restored = False
            if loss < state.best_loss:
                state.best_loss, state.best_x = loss, state.x.copy()
            state.seconds = time.perf_counter() - start
            state.history.append((state.iteration, loss, state.seconds))
            if progress is not None:
                progress(state.iteration, loss, state.best_loss)
            state.step += 1
            state.m = beta1 * state.m + (1 - beta1) * g
            state.v = beta2 * state.v + (1 - beta2) * g * g
            m_hat = state.m / (1 - beta1 ** state.step)
            v_hat = state.v / (1 - beta2 ** state.step)
            state.x = state.x - state.lr * m_hat / (np.sqrt(v_hat) + eps)
            if checkpoint is not None and state.iteration % checkpoint_every == 0:
                state.save(checkpoint)
    except KeyboardInterrupt:
        if checkpoint is not None:
            state.save(checkpoint)
        raise Interrupted(_outcome(state, "interrupted during Adam")) from None
    retried = f" ({state.retried} failed steps retried with a smaller learning rate)" if state.retried else ""
    return f"{max_iters} Adam iterations{retried}"


def _outcome(state: AdamState, message: str) -> Outcome:
    if state.best_x is None:
        raise NumericalError("no step of the fit could be evaluated: the model fails to solve at the starting "
                             "point; check the parameter values, initial values and tolerances")
    return Outcome(state.best_x, state.best_loss, list(state.history), message, state.iteration)


def polish(objective, state: AdamState, max_iters: int, progress=None) -> str:
    """L-BFGS from the best point so far; keeps whatever it improves. Deterministic, so a resumed run
    that restarts it from the same point ends in the same place."""
    from scipy.optimize import minimize

    start = time.perf_counter() - state.seconds
    worst = {"loss": max(state.best_loss, 1.0) * 1e6}

    def fun(x):
        try:
            loss, g = objective.value_and_grad(x)
        except NumericalError:
            return worst["loss"], np.zeros_like(x)
        if not (math.isfinite(loss) and np.all(np.isfinite(g))):
            return worst["loss"], np.zeros_like(x)
        if loss < state.best_loss:
            state.best_loss, state.best_x = loss, x.copy()
        state.iteration += 1
        state.seconds = time.perf_counter() - start
        state.history.append((state.iteration, loss, state.seconds))
        if progress is not None:
            progress(state.iteration, loss, state.best_loss)
        return loss, g

    res = minimize(fun, state.best_x, jac=True, method="L-BFGS-B", options={"maxiter": max_iters})
    return f"L-BFGS: {res.message}"


def run(objective, x0: np.ndarray, adam_iters: int, polish_iters: int, lr: float, out: Path | None,
        resume: bool = False, progress=None, checkpoint_every: int = 10, signature: str = "") -> Outcome:
    """Adam for ``adam_iters`` iterations, then L-BFGS for at most ``polish_iters``; the best point seen.

    ``signature`` identifies the problem (model and vector size): resuming a checkpoint of another
    problem is a ``UsageError``.
    """
    path = None if out is None else out / CHECKPOINT
    signature = f"{x0.size} {signature}"
    if resume and path is not None and path.exists():
        state = AdamState.load(path)
        if state.signature != signature:
            raise UsageError(f"{out}: its checkpoint belongs to another fit (a different model, net sizes or "
                             "--shooting); resume with the settings it was made with, or start a new --out folder")
    else:
        state = AdamState(x=x0.copy(), m=np.zeros_like(x0), v=np.zeros_like(x0), lr=lr, signature=signature)
    messages = ["resumed a fit that had already finished: nothing left to do"] if state.phase == "done" else []
    if state.phase == "adam":
        messages.append(adam(objective, state, adam_iters, path, checkpoint_every, progress))
        state.phase = "done" if state.stopped else "polish"
        if path is not None:
            state.save(path)
    if state.phase == "polish" and polish_iters > 0 and state.best_x is not None:
        try:  # the checkpoint stays at the polish's start: a resumed run repeats the polish exactly
            messages.append(polish(objective, state, polish_iters, progress))
        except KeyboardInterrupt:
            raise Interrupted(_outcome(state, "interrupted during the L-BFGS polish")) from None
    state.phase = "done"
    if path is not None:
        state.save(path)
    outcome = _outcome(state, "; ".join(messages))
    outcome.failed = state.stopped
    return outcome
