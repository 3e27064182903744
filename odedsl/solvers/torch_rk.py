"""Explicit Runge–Kutta on batches of torch tensors, each trajectory with its own steps.

The algorithm is explicit.py's (the same tableaux from tableaux.py, the same RMS
error norm, Hairer's initial step, the PI controller with the settings of
methods.py, dense output at the output times), written on tensors of shape
``(B, N)``: row ``b`` has its own time, step size, error, acceptance and output
times ``t_eval[b]``, so one hard trajectory does not make the others take its
steps. Once half the rows have finished, the batch is compacted to the rows still
running, so a finished trajectory stops costing right-hand-side evaluations.

One iteration is a *trial* (the stages and the new state at each row's step size)
and a *commit* (outputs that fall in the step, then the rows that accepted move
on). The step-size decisions are made under ``no_grad``; differentiating through
the loop (``backprop``) is the exact gradient of the computed solution with the
steps held fixed. ``Tape`` records the decisions, so that ``replay`` repeats a
stretch of the solve with the same steps: the checkpointed gradient
(odedsl/adjoint/checkpoint.py) recomputes the stretch between two checkpoints.

A trial whose values are not finite in some row is discarded and repeated with a
quarter of that row's step before any decision is taken: a rejected step then
never carries NaN or inf into the autograd graph, where ``0 * inf`` in the
backward pass would turn every gradient into NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cache

import torch

from odedsl.errors import NumericalError
from odedsl.solvers.methods import get_method, kernel_arrays

@dataclass(frozen=True)
class Coefficients:
    """An explicit method's coefficients as tensors of one dtype and device."""

    kind: str
    a: tuple  # row j: (j,) tensor weighing the earlier stages
    c: tuple[float, ...]
    b: torch.Tensor
    e: torch.Tensor | None
    e3: torch.Tensor | None
    dense: torch.Tensor
    xa: tuple
    xc: tuple[float, ...]
    powers: torch.Tensor
    fsal: bool
    order: int
    expo1: float
    beta: float
    safety: float
    facmin: float
    facmax: float

    @property
    def stages(self) -> int:
        return self.b.numel()


@cache
def coefficients(method: str, dtype: torch.dtype, device: torch.device) -> Coefficients:
    m = get_method(method)
    if m.kind not in ("fixed", "adaptive"):
        raise ValueError(f"{method} is not an explicit Runge–Kutta method")
    k = kernel_arrays(m.name)

    def t(x):
        return torch.tensor(x, dtype=dtype, device=device)

    s = k.b.size
    a = tuple(t(k.a[j, :j]) for j in range(s))
    xa = tuple(t(k.xa[i, :s + i]) for i in range(k.xa.shape[0] if k.xc.size else 0))
    e = t(k.e) if m.kind == "adaptive" else None
    return Coefficients(
        kind=m.kind, a=a, c=tuple(float(x) for x in k.c), b=t(k.b), e=e, e3=t(k.e3) if k.e3.size else None,
        dense=t(k.dense), xa=xa, xc=tuple(float(x) for x in k.xc),
        powers=torch.arange(1, k.dense.shape[1] + 1, dtype=dtype, device=device), fsal=k.fsal, order=k.order,
        expo1=k.expo1, beta=m.beta, safety=m.safety, facmin=m.facmin, facmax=m.facmax,
    )


class Stages:
    """A step's stage derivatives, and their ``(B, N, s)`` matrix for the coefficient products, stacked
    once per size. (Stacked, not written into a buffer: autograd forbids overwriting what it saved,
    and one code path for both keeps a solve with and without autograd bitwise the same.)"""

    def __init__(self, k0: torch.Tensor) -> None:
        self.items: list[torch.Tensor] = [k0]
        self._stacked: torch.Tensor | None = None

    def append(self, k: torch.Tensor) -> None:
        self.items.append(k)
        self._stacked = None

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.items[i]

    @property
    def matrix(self) -> torch.Tensor:
        if self._stacked is None:
            stacked = torch.stack(self.items, -1)
            if not torch.is_grad_enabled():  # made for the error estimate: no graph, so not for reuse
                return stacked
            self._stacked = stacked
        return self._stacked

    def combine(self, coeffs: torch.Tensor) -> torch.Tensor:
        """``sum_m coeffs[m] K_m`` over the first ``len(coeffs)`` stages."""
        m = coeffs.numel()
        return (self.matrix if m == len(self.items) else torch.stack(self.items[:m], -1)) @ coeffs


class RungeKutta:
    """How an explicit Runge–Kutta method takes, measures and interpolates one step of every row."""

    def __init__(self, method: str, dtype: torch.dtype, device: torch.device) -> None:
        self.co = co = coefficients(method, dtype, device)
        self.kind, self.fsal, self.order = co.kind, co.fsal, co.order

    def trial(self, f, st: Rows, h: torch.Tensor, stats: Stats) -> tuple[Stages, torch.Tensor]:
        """The stages of one step of size ``h`` per row, and the new state."""
        co = self.co
        K = Stages(st.k0)
        hc = h.unsqueeze(-1)
        yj = st.y
        timed = not getattr(f, "autonomous", False)
        for j in range(1, co.stages):
            yj = torch.addcmul(st.y, hc, K.combine(co.a[j]))
            K.append(_call(f, torch.add(st.t, h, alpha=co.c[j]) if timed else st.t, yj, st.rows, stats))
        if co.fsal:
            return K, yj
        return K, torch.addcmul(st.y, hc, K.combine(co.b))

    @torch.no_grad()
    def error(self, st: Rows, K: Stages, y_new: torch.Tensor, h: torch.Tensor, opts: Options) -> torch.Tensor:
        co, d = self.co, opts.norm_dims
        Ks = K.matrix[:, :d]
        scale = _scale(st.y, y_new, opts)
        err = _rms(h.unsqueeze(-1) * (Ks @ co.e), scale)
        if co.e3 is None:
            return err
        err3 = _rms(h.unsqueeze(-1) * (Ks @ co.e3), scale)  # dop853: Hairer's combined estimate
        den = err.square() + 0.01 * err3.square()
        return torch.where(den > 0, err.square() / den.sqrt().clamp_min(1e-300), torch.zeros_like(err))

    def interpolant(self, f, st: Rows, K: Stages, y_new, h, stats: Stats):
        """``theta -> y(t + theta h)`` per row, from the step's dense-output polynomials."""
        co = self.co
        for i, row in enumerate(co.xa):  # extra stages some methods need for dense output only
            yi = torch.addcmul(st.y, h.unsqueeze(-1), K.combine(row))
            K.append(_call(f, torch.add(st.t, h, alpha=co.xc[i]), yi, st.rows, stats))
        Q = K.matrix @ co.dense  # (B, N, degree)
        y, hc = st.y, h.unsqueeze(-1)
        return lambda theta: torch.addcmul(y, hc, (Q @ (theta.unsqueeze(-1) ** co.powers).unsqueeze(-1)).squeeze(-1))

    @torch.no_grad()
    def factor(self, st: Rows, err: torch.Tensor, h: torch.Tensor, accept: torch.Tensor) -> torch.Tensor:
        """The PI controller of explicit.py, per row; also updates the rows' controller memory."""
        co = self.co
        e = err.clamp_min(1e-300)
        fac = torch.where(err == 0, torch.full_like(err, co.facmax), co.safety * e ** (-co.expo1) * st.err_old ** co.beta)
        fac = fac.clamp(co.facmin, co.facmax)
        fac_rej = torch.clamp_min(co.safety * e ** (-co.expo1), co.facmin)
        st.err_old = torch.where(accept, err.clamp_min(1e-4), st.err_old)
        return torch.where(accept, torch.where(st.rejected, fac.clamp_max(1.0), fac), fac_rej)


def stepper(method: str, dtype: torch.dtype, device: torch.device, model=None):
    """The stepper of ``method``: ``RungeKutta``, or ``Rosenbrock`` (which needs the TorchModel ``model``)."""
    if get_method(method).kind == "rosenbrock":
        from odedsl.solvers.torch_rosenbrock import Rosenbrock

        return Rosenbrock(method, dtype, device, model)
    return RungeKutta(method, dtype, device)


@dataclass
class Options:
    rtol: float = 1e-6
    atol: float = 1e-8
    h0: torch.Tensor | float | None = None
    dt: float | None = None
    max_steps: int = 100_000
    norm_dims: int | None = None  # error norm over the first columns only (the adjoint's seminorm)
    compact: bool = True


@dataclass
class Stats:
    """Work done, summed over rows: right-hand-side row evaluations and steps."""

    rhs: int = 0
    accepted: int = 0
    rejected: int = 0
    iterations: int = 0


@dataclass
class Rows:
    """The state of the rows still running (every field has the batch on axis 0)."""

    rows: torch.Tensor
    t: torch.Tensor
    y: torch.Tensor
    k0: torch.Tensor
    h: torch.Tensor
    idx: torch.Tensor
    t_eval: torch.Tensor
    t_end: torch.Tensor
    err_old: torch.Tensor  # the controller's memory: last accepted error, and (Rosenbrock) step
    h_acc: torch.Tensor
    rejected: torch.Tensor
    nxt: torch.Tensor  # each row's next output time (its last one when all are written)

    def select(self, keep: torch.Tensor) -> Rows:
        return Rows(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    def detached(self) -> Rows:
        return Rows(**{f.name: getattr(self, f.name).detach() for f in fields(self)})


@dataclass
class Tape:
    """The decisions of a solve: per iteration with an accepted row, the compaction before it, the
    step sizes, the accepted rows and which took their last step; checkpoints every ``every`` entries."""

    every: int
    steps: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)


def _call(f, t, y, rows, stats: Stats):
    stats.rhs += y.shape[0]
    return f(t, y, rows)


def _rms(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (x / scale).square().mean(-1).sqrt()


def _scale(y: torch.Tensor, y_new: torch.Tensor, opts: Options) -> torch.Tensor:
    d = opts.norm_dims
    return opts.atol + opts.rtol * torch.maximum(y[:, :d].abs(), y_new[:, :d].abs())


def _emit(f, stp, st: Rows, K: list, y_new, h, t_new, moving, out, stats: Stats) -> None:
    """Write the outputs whose times fall in (t, t_new] of the moving rows (dense output)."""
    T = st.t_eval.shape[1]
    due = moving & (st.idx < T) & (st.nxt <= t_new)
    if not bool(due.any()):
        return
    at = stp.interpolant(f, st, K, y_new, h, stats)
    hs = torch.where(h > 0, h, torch.ones_like(h))
    while True:
        nxt = st.nxt
        value = torch.where((nxt == t_new).unsqueeze(-1), y_new, at(((nxt - st.t) / hs).clamp(0.0, 1.0)))
        slot = torch.where(due, st.idx, torch.full_like(st.idx, T))  # slot T: a row with nothing due
        out.index_put_((slot, st.rows), value)
        st.idx = st.idx + due.long()
        st.nxt = _next_time(st)
        due = due & (st.idx < T) & (st.nxt <= t_new)
        if not bool(due.any()):
            return


def _next_time(st: Rows) -> torch.Tensor:
    T = st.t_eval.shape[1]
    return st.t_eval.gather(1, st.idx.clamp(max=T - 1).unsqueeze(1)).squeeze(1)


def _commit(f, stp, st: Rows, K: list, y_new, h, accept, t_new, out, stats: Stats, everyone: bool | None = None) -> None:
    """Outputs within the step, then the accepting rows move to ``(t_new, y_new)``.

    ``everyone``: every row accepted (known to the caller, or found here): no selection, fewer autograd nodes.
    """
    _emit(f, stp, st, K, y_new, h, t_new, accept, out, stats)
    everyone = bool(accept.all()) if everyone is None else everyone
    st.h_acc = h if everyone else torch.where(accept, h, st.h_acc)
    acc = accept.unsqueeze(-1)
    st.y = y_new if everyone else torch.where(acc, y_new, st.y)
    st.t = t_new if everyone else torch.where(accept, t_new, st.t)
    k_next = K[-1] if stp.fsal else _call(f, st.t, st.y, st.rows, stats)
    st.k0 = k_next if everyone else torch.where(acc, k_next, st.k0)


def _start(f, stp, t_eval: torch.Tensor, y0: torch.Tensor, opts: Options, stats: Stats):
    """Rows at their first time, and the output buffer holding y0 wherever an output time is the start."""
    B, T = t_eval.shape
    t = t_eval[:, 0]
    at_start = t_eval <= t.unsqueeze(1)  # (B, T)
    out = torch.where(at_start.T.unsqueeze(-1), y0.unsqueeze(0), torch.zeros((), dtype=y0.dtype, device=y0.device))
    out = torch.cat([out, torch.zeros_like(out[:1])])  # slot T: writes of rows with nothing due
    k0 = _call(f, t, y0, None, stats)
    h = _initial_step(f, t, y0, k0, t_eval[:, -1] - t, stp.order, opts, stats) if stp.kind != "fixed" else t * 0
    st = Rows(rows=torch.arange(B, device=y0.device), t=t, y=y0, k0=k0, h=h, idx=at_start.sum(1), t_eval=t_eval,
              t_end=t_eval[:, -1], err_old=torch.full_like(t, 1e-4), h_acc=torch.zeros_like(t),
              rejected=torch.zeros(B, dtype=torch.bool, device=y0.device), nxt=t)
    st.nxt = _next_time(st)
    return st, out


@torch.no_grad()
def _initial_step(f, t, y, f0, span, order: int, opts: Options, stats: Stats) -> torch.Tensor:
    """Hairer's ``hinit`` per row (explicit.py's ``_initial_step``)."""
    if opts.h0 is not None:
        return torch.minimum(torch.as_tensor(opts.h0, dtype=y.dtype, device=y.device).expand_as(t), span)
    d = opts.norm_dims
    scale = opts.atol + opts.rtol * y[:, :d].abs()
    d0, d1 = _rms(y[:, :d], scale), _rms(f0[:, :d], scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp_min(1e-300))
    h0 = torch.minimum(h0, span).clamp_min(1e-300)
    f1 = _call(f, t + h0, y + h0.unsqueeze(-1) * f0, None, stats)
    d2 = _rms((f1 - f0)[:, :d], scale) / h0
    dm = torch.maximum(d1, d2)
    h1 = torch.where(dm <= 1e-15, torch.clamp_min(h0 * 1e-3, 1e-6), (0.01 / dm.clamp_min(1e-300)) ** (1.0 / (order + 1)))
    h = torch.minimum(torch.minimum(100 * h0, h1), span)
    return torch.where(torch.isfinite(dm), h, h0)


def integrate(f, t_eval: torch.Tensor, y0: torch.Tensor, method: str = "dopri5", opts: Options | None = None,
              tape: Tape | None = None, model=None) -> tuple[torch.Tensor, Stats, torch.Tensor]:
    """Solve ``dy/dt = f`` per row from ``t_eval[:, 0]``; ``(out (T, B, N), stats, last step sizes)``.

    ``f(t, y, rows)`` takes times ``(B,)``, states ``(B, N)`` and the original row
    numbers of the batch (None: all rows). ``t_eval`` is ``(B, T)``, non-decreasing
    in each row; ``y0`` is ``(B, N)``. ``model`` (a TorchModel with its parameters
    bound) gives stiff methods their Jacobian. Raises ``NumericalError`` naming the
    row and time when a row cannot go on.
    """
    opts = opts or Options()
    stp = stepper(method, y0.dtype, y0.device, model)
    stats = Stats()
    st, out = _start(f, stp, t_eval, y0, opts, stats)
    if stp.kind == "fixed":
        return _fixed(f, stp, st, out, opts, stats, tape)
    T = t_eval.shape[1]
    h_last = torch.zeros_like(st.h)  # per original row: its last accepted step (the adjoint's next first step)
    finished = st.idx >= T
    n_done = int(finished.sum())  # one host sync per iteration for the loop's bookkeeping, one for acceptance
    keep = None
    while n_done < finished.numel():
        if opts.compact and 2 * n_done >= finished.numel() and n_done:
            keep = ~finished
            h_last[st.rows[finished]] = st.h_acc[finished]
            st, finished, n_done = st.select(keep), finished[keep], 0
        with torch.no_grad():
            last = st.t + 1.01 * st.h >= st.t_end
            h = torch.where(finished, torch.zeros_like(st.h), torch.where(last, st.t_end - st.t, st.h))
        K, y_new = stp.trial(f, st, h, stats)
        err = stp.error(st, K, y_new, h, opts)
        stats.iterations += 1
        running = finished.numel() - n_done
        with torch.no_grad():
            bad = ~torch.isfinite(err)
            accept = (err <= 1.0) & ~finished
            n_acc = int(accept.sum())
            if n_acc < running or stats.iterations % 32 == 0 or stats.iterations > opts.max_steps:
                _check(st, h, bad, finished, opts, stats.iterations)
            if n_acc < running and bool(bad.any()):  # discard the whole trial: see the module docstring
                st.h = torch.where(bad, 0.25 * h, st.h)
                st.rejected = st.rejected | bad
                stats.rejected += int(bad.sum())
                continue
            fac = stp.factor(st, err, h, accept)
            stats.accepted += n_acc
            stats.rejected += running - n_acc
        if n_acc:
            t_new = torch.where(last, st.t_end, st.t + h)
            if tape is not None:
                _record(tape, st, keep, h, accept, t_new)
            keep = None
            _commit(f, stp, st, K, y_new, h, accept, t_new, out, stats, everyone=n_acc == finished.numel())
        with torch.no_grad():
            st.rejected = ~accept & ~finished
            st.h = torch.where(finished, st.h, h * fac)
            finished = finished | (st.idx >= T)
            n_done = int(finished.sum())
    h_last[st.rows] = st.h_acc
    return out[:T], stats, h_last


def _check(st: Rows, h, bad, finished, opts: Options, iterations: int) -> None:
    """NumericalError for a row that cannot go on: too many steps, or a step too small.

    A row still running has been running since the start, so its step count is the iteration count.
    """
    tiny = (h < 10 * torch.finfo(h.dtype).eps * st.t.abs().clamp_min(1.0)) & ~finished
    over = ~finished if iterations > opts.max_steps else torch.zeros_like(finished)
    if not bool((tiny | over).any()):
        return
    for mask, why, detail in (
            (over, f"more than {opts.max_steps} steps", "the problem may be stiff (try method='rodas5p') or need a "
             "larger max_steps"),
            (tiny, "the step size became too small", "the solution may blow up there, or the problem is stiff "
             "(try method='rodas5p') or discontinuous")):
        if bool(mask.any()):
            i = int(mask.nonzero()[0, 0])
            row, t = int(st.rows[i]), float(st.t[i])
            if bool(bad[i]):
                detail = "the solution became NaN or infinite; check the parameters and initial values, or the " \
                    "model may blow up in finite time"
            raise NumericalError(f"trajectory {row}: {why} at t = {t:.6g}; {detail}")


def _record(tape: Tape, st: Rows, keep, h, accept, t_new) -> None:
    """Append one step; every ``tape.every`` steps first a checkpoint: (step number, compaction, state)."""
    if len(tape.steps) % tape.every == 0:
        tape.checkpoints.append((len(tape.steps), keep, st.detached()))
        keep = None
    tape.steps.append((keep, h.detach(), accept, t_new.detach()))


def _fixed(f, stp, st: Rows, out, opts: Options, stats: Stats, tape: Tape | None):
    """Fixed steps: ``ceil(gap/dt)`` equal steps between consecutive output times of each row."""
    T = st.t_eval.shape[1]
    for j in range(1, T):
        gap = st.t_eval[:, j] - st.t_eval[:, j - 1]
        m = torch.ones_like(st.idx) if not opts.dt else torch.ceil(gap / opts.dt - 1e-9).clamp_min(1).long()
        hh = gap / m
        for k in range(int(m.max())):
            h = torch.where(k < m, hh, torch.zeros_like(hh))
            t_new = torch.where(k == m - 1, st.t_eval[:, j], st.t + h)
            K, y_new = stp.trial(f, st, h, stats)
            accept = h > 0
            if tape is not None:
                _record(tape, st, None, h, accept, t_new)
            _commit(f, stp, st, K, y_new, h, accept, t_new, out, stats)
            stats.accepted += int(accept.sum())
            if opts.max_steps and stats.accepted > opts.max_steps * st.y.shape[0]:
                raise NumericalError(f"more than {opts.max_steps} steps; use a larger dt")
        if not bool(torch.isfinite(st.y).all()):
            i = int((~torch.isfinite(st.y)).any(-1).nonzero()[0, 0])
            raise NumericalError(f"trajectory {i}: the solution became NaN or infinite by t = "
                                 f"{float(st.t_eval[i, j]):.6g}; try a smaller dt or an adaptive method")
    return out[:T], stats, torch.zeros_like(st.t)


def replay(f, method: str, start: Rows, steps: list, out: torch.Tensor, model=None) -> Rows:
    """Repeat recorded steps from ``start`` (its ``k0`` recomputed): outputs into ``out``; the end state."""
    stp = stepper(method, start.y.dtype, start.y.device, model)
    stats = Stats()
    st = Rows(**{f_.name: getattr(start, f_.name) for f_ in fields(start)})
    st.k0 = _call(f, st.t, st.y, st.rows, stats)
    for keep, h, accept, t_new in steps:
        if keep is not None:
            st = st.select(keep)
        K, y_new = stp.trial(f, st, h, stats)
        _commit(f, stp, st, K, y_new, h, accept, t_new, out, stats)
    return st


def grid(t_eval, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``t_eval`` as a ``(batch, T)`` tensor, checked: finite, non-decreasing, at least one time."""
    t = torch.as_tensor(t_eval, dtype=dtype, device=device)
    if t.numel() == 0:
        raise ValueError("t_eval is empty: give at least one output time")
    if t.ndim == 1:
        t = t.unsqueeze(0).expand(batch, -1)
    if t.ndim != 2 or t.shape[0] != batch or t.shape[1] == 0:
        raise ValueError(f"t_eval must have shape (T,) or ({batch}, T); got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("t_eval contains NaN or infinite times")
    if t.shape[1] > 1 and bool((t[:, 1:] < t[:, :-1]).any()):
        raise ValueError("t_eval must be non-decreasing in every row")
    return t

