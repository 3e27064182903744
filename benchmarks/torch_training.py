"""odedsl's Torch backend against torchdiffeq and torchode: training iterations side by side in one run.

    bash benchmarks/setup_env.sh                 # once: .venv-bench with the peers
    .venv-bench/bin/python benchmarks/torch_training.py [--quick] [--repeats N] [--only ude|node|spiral]
                                                        [--threads N] [--json OUT]

One *iteration* is what a training step costs before the optimiser: solve, MSE
loss against a fixed target, ``backward()``. Every tool solves the same problem
with the same weights: the peers' vector field is what a user would write for
them, an ordinary ``nn.Module`` (an ``nn.Sequential`` MLP plus the physics
terms) into which the odedsl module's weights are copied. All use dopri5 with
the same rtol and atol. The peers:

- torchdiffeq ``odeint`` (backprop through the solver) and ``odeint_adjoint``
  (continuous adjoint, with ``adjoint_options=dict(norm="seminorm")``, as odedsl's
  adjoint uses a seminorm by default). One step size for the whole batch;
- torchode ``AutoDiffAdjoint(Dopri5, IntegralController)`` (backprop; its own
  steps for each sample, as odedsl takes them), eager (not compiled).

Problems:

1. ``ude``: the Lotka–Volterra UDE (models/lotka_volterra_ude.ode, MLP 2->32->32->2
   tanh), t in [0, 5], 21 observation times, rtol = atol = 1e-6, float64 and
   float32. The target is the Lotka–Volterra solution the UDE should learn
   (alpha = 1.3, beta = 0.9, gamma = 0.8, delta = 1.8, the file's initial values).
   odedsl with each gradient mode (backprop, checkpoint, adjoint) and every peer.
2. ``node``: a neural ODE, dz/dt = f(z), f an MLP 64->256->256->64 (tanh)
   (benchmarks/models/neural_ode_64.ode), batch 512 of random initial values,
   float32, t in [0, 1], 5 outputs, rtol = atol = 1e-6: throughput (trajectories
   per second of solve + backward) and memory.
3. ``spiral``: the spiral neural ODE (models/spiral_neural_ode.ode, MLP 2->50->2
   tanh), batch 4096 of initial values drawn from N(0, 2²), float32, on
   CUDA only (skipped without CUDA), t in [0, 10], 11 outputs, rtol = atol = 1e-6.

Columns:

- times are medians over the repeats after one warm-up iteration per tool; the
  tools take turns (one iteration each per round), so load from other processes
  spreads over all of them. On CPU both the wall-clock and the CPU time of the
  process are given, and ratios use CPU time: with one torch thread (the default,
  ``--threads``) it is the work done, which other processes on a shared machine
  change much less than the wall-clock time. (With two threads on a 2-core machine
  that another process is using, OpenMP's parallel regions stall: a 512x256 tanh
  took 16x longer than with one thread.) On CUDA: wall-clock time.
- "peer / odedsl": a peer's time over odedsl's in the matching gradient mode
  (backprop for odeint and torchode, adjoint for odeint_adjoint); above 1, odedsl
  is faster.
- "f calls": calls of the vector field (batched calls, whatever the number of
  rows) in the forward and in the backward pass (odedsl: the generated ``rhs``
  and ``vjp``).
- "solution error": max |y - y_ref| / max |y_ref| over the outputs, y_ref
  solved by odedsl in float64 at rtol = atol = 1e-11 with the same weights: the
  accuracy each tool buys with its calls.
- "rel. diff": the loss and its gradients with respect to alpha and the net
  weights (max-norm) against odedsl backprop. In float64 they should agree to
  ~1e-4 or better; they differ at the level of the tolerance (different step
  sequences; adjoint against backprop). For the UDE in float64, a line at
  rtol = atol = 1e-10 checks odedsl against torchdiffeq without the
  discretisation error.
- "saved for backward": the bytes of the tensors autograd saves for backward
  (``torch.autograd.graph.saved_tensors_hooks``; each storage once, however many
  views of it are saved; parameters not counted), held at the end of the forward
  pass, and the peak over the iteration, which also sees the graphs built inside
  ``backward`` (odedsl's checkpoint replays, torchdiffeq's adjoint VJPs). State a
  custom ``autograd.Function`` keeps outside ``save_for_backward`` (odedsl's
  checkpoint tape) and the solvers' working tensors are not counted.
- "peak RSS growth" (CPU, Linux): the growth of the process's peak RSS during one
  iteration, measured in a child process in which glibc maps every allocation of
  64 KiB or more on its own (``MALLOC_MMAP_THRESHOLD_``), so a freed tensor leaves
  the RSS. It counts everything (working tensors too) plus some allocator noise
  (a few MiB). Not measured with ``--quick``. On CUDA instead:
  ``torch.cuda.max_memory_allocated`` above the memory allocated before the
  iteration.

Peers that are not installed are skipped. The results are printed as markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's odedsl first

import numpy as np
import torch
from torch import nn

import odedsl
from benchmarks import provenance

UDE_FILE = ROOT / "models" / "lotka_volterra_ude.ode"
NODE_FILE = ROOT / "benchmarks" / "models" / "neural_ode_64.ode"
SPIRAL_FILE = ROOT / "models" / "spiral_neural_ode.ode"
UDE_TOL = 1e-6
UDE_TRUE = {"alpha": 1.3, "beta": 0.9, "gamma": 0.8, "delta": 1.8}
NODE_TOL = 1e-6
SPIRAL_TOL = 1e-6
MIB = 2.0 ** 20


def peers() -> dict[str, object]:
    """The peers that can be imported, by name."""
    found = {}
    for name in ("torchdiffeq", "torchode"):
        try:
            found[name] = __import__(name)
        except ImportError:
            pass
    return found


def versions() -> dict[str, str]:
    return provenance.versions(["torch", "odedsl", "torchdiffeq", "torchode"])


# -- the peers' vector fields: what a user writes by hand --------------------------------------------------

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus, "gelu": nn.GELU,
               "elu": nn.ELU, "silu": nn.SiLU, "identity": nn.Identity}


def sequential_like(mlp: nn.Module) -> nn.Sequential:
    """A plain ``nn.Sequential`` holding a copy of the weights of odedsl's MLP ``mlp``."""
    layers: list[nn.Module] = []
    for k, lin in enumerate(mlp.layers):
        new = nn.Linear(lin.in_features, lin.out_features, dtype=lin.weight.dtype, device=lin.weight.device)
        with torch.no_grad():
            new.weight.copy_(lin.weight)
            new.bias.copy_(lin.bias)
        layers.append(new)
        if k + 1 < len(mlp.layers):
            layers.append(ACTIVATIONS[mlp.activation]())
    return nn.Sequential(*layers)


class LotkaVolterraUDE(nn.Module):
    """d(prey) = alpha*prey + U(y)[0], d(pred) = -delta*pred + U(y)[1]; alpha trained, delta fixed."""

    def __init__(self, net: nn.Sequential, alpha: float, delta: float) -> None:
        super().__init__()
        w = net[0].weight
        self.net = net
        self.alpha = nn.Parameter(torch.tensor(alpha, dtype=w.dtype, device=w.device))
        self.delta = delta
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        u = self.net(y)
        return torch.stack([self.alpha * y[..., 0] + u[..., 0], -self.delta * y[..., 1] + u[..., 1]], -1)


class NeuralODE(nn.Module):
    """dz/dt = net(z)."""

    def __init__(self, net: nn.Sequential) -> None:
        super().__init__()
        self.net = net
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.net(y)


# -- tools ----------------------------------------------------------------------------------------------------------


@dataclass
class Tool:
    name: str
    gradient: str  # backprop, checkpoint or adjoint
    solve: Callable[[], torch.Tensor]  # (T, *batch, n_states)
    params: list  # every tensor the iteration differentiates
    grads: Callable[[], dict]  # after backward: {"alpha": float, "weights": flat tensor}
    counting: Callable  # () -> context manager yielding a function that returns the calls so far
    odedsl: bool = False

    @property
    def counterpart(self) -> str | None:
        """The odedsl row this peer is compared with."""
        if self.odedsl:
            return None
        return "odedsl adjoint" if self.gradient == "adjoint" else "odedsl backprop"


def odedsl_tools(tm, t, y0, tol: float, modes=("backprop", "checkpoint", "adjoint"), alpha: str | None = None):
    """odedsl in each gradient mode: ``tm.solve`` as a user calls it."""
    net_params = [p for net in tm.nets for p in net.parameters()]
    params = [tm.raw, *net_params] if tm.raw.numel() else net_params
    names = [p.name for p in tm.model.params]

    def grads() -> dict:
        out = {"weights": torch.cat([p.grad.reshape(-1) for p in net_params]).detach().double().cpu()}
        if alpha is not None:  # dL/dalpha = dL/draw / (dalpha/draw): alpha is mapped from an unconstrained raw
            j = tm.fitted_names.index(alpha)
            with torch.enable_grad():
                dalpha = torch.autograd.grad(tm.param_values()[names.index(alpha)], tm.raw)[0][j]
            out["alpha"] = float(tm.raw.grad[j] / dalpha)
        return out

    @contextlib.contextmanager
    def counting():
        fn, calls = tm.fn, [0]

        class Counting:
            def __getattr__(self, name):
                attr = getattr(fn, name)
                if name not in ("rhs", "vjp", "jac"):
                    return attr

                def counted(*args, **kwargs):
                    calls[0] += 1
                    return attr(*args, **kwargs)
                return counted

        tm.fn = Counting()
        try:
            yield lambda: calls[0]
        finally:
            tm.fn = fn

    def make(mode):
        return lambda: tm.solve(t, y0=y0, method="dopri5", rtol=tol, atol=tol, gradient=mode)

    return [Tool(f"odedsl {mode}", mode, make(mode), params, grads, counting, odedsl=True) for mode in modes]


def peer_tools(func: nn.Module, t, y0, tol: float, found: dict, alpha: bool = False) -> list[Tool]:
    """torchdiffeq odeint, odeint_adjoint and torchode on the hand-written ``func``; ``y0`` (N,) or (B, N)."""
    params = list(func.parameters())
    net_params = list(func.net.parameters())

    def grads() -> dict:
        out = {"weights": torch.cat([p.grad.reshape(-1) for p in net_params]).detach().double().cpu()}
        if alpha:
            out["alpha"] = float(func.alpha.grad)
        return out

    @contextlib.contextmanager
    def counting():
        start = func.calls
        yield lambda: func.calls - start

    tools = []
    if "torchdiffeq" in found:
        tdq = found["torchdiffeq"]
        tools.append(Tool("torchdiffeq odeint", "backprop",
                          lambda: tdq.odeint(func, y0, t, rtol=tol, atol=tol, method="dopri5"),
                          params, grads, counting))
        tools.append(Tool("torchdiffeq odeint_adjoint", "adjoint",
                          lambda: tdq.odeint_adjoint(func, y0, t, rtol=tol, atol=tol, method="dopri5",
                                                     adjoint_options={"norm": "seminorm"}),
                          params, grads, counting))
    if "torchode" in found:
        to = found["torchode"]
        term = to.ODETerm(func)
        solver = to.AutoDiffAdjoint(to.Dopri5(term=term), to.IntegralController(atol=tol, rtol=tol, term=term))
        solver = solver.to(dtype=y0.dtype, device=y0.device)
        batched = y0.ndim == 2
        Y0 = y0 if batched else y0.unsqueeze(0)
        T_EVAL = t.unsqueeze(0).expand(Y0.shape[0], -1)

        def torchode_solve():
            ys = solver.solve(to.InitialValueProblem(y0=Y0, t_eval=T_EVAL)).ys  # (B, T, N)
            return ys.transpose(0, 1) if batched else ys[0]

        tools.append(Tool("torchode", "backprop", torchode_solve, params, grads, counting))
    return tools


# -- measurements ---------------------------------------------------------------------------------------------------


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def iteration(tool: Tool, target: torch.Tensor) -> torch.Tensor:
    """One training iteration without the optimiser: solve, MSE, backward."""
    for p in tool.params:
        p.grad = None
    loss = (tool.solve() - target).square().mean()
    loss.backward()
    return loss.detach()


def time_tools(tools: list[Tool], target, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per iteration; one warm-up each, then the tools take turns."""
    samples: dict[str, list[tuple[float, float]]] = {tool.name: [] for tool in tools}
    for tool in tools:
        iteration(tool, target)
    _sync(target.device)
    for _ in range(repeats):
        for tool in tools:
            wall, cpu = time.perf_counter(), time.process_time()
            iteration(tool, target)
            _sync(target.device)
            samples[tool.name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
            for name, s in samples.items()}


def counted_iteration(tool: Tool, target, reference: torch.Tensor | None = None) -> dict:
    """One iteration counting vector-field calls: loss, gradients, calls in the forward and backward pass,
    and the solution's error (max-norm, relative) against ``reference``."""
    for p in tool.params:
        p.grad = None
    with tool.counting() as calls:
        ys = tool.solve()
        loss = (ys - target).square().mean()
        fwd = calls()
        loss.backward()
        bwd = calls() - fwd
    out = {"loss": loss.item(), "calls_fwd": fwd, "calls_bwd": bwd, **tool.grads()}
    if reference is not None:
        out["error"] = rel(ys.detach().to(reference.dtype), reference)
    return out


@torch.no_grad()
def reference_solution(tm, t, y0, tol: float = 1e-11) -> torch.Tensor:
    """The same problem solved in float64 at a tight tolerance (odedsl, the same weights and parameters)."""
    ref = tm.model.to_torch(dtype=torch.float64, device=t.device)
    ref.set_weights(tm.weights().double())
    ref.raw.copy_(tm.raw)
    return ref.solve(t.double(), y0=None if y0 is None else y0.double(), method="dopri5", rtol=tol, atol=tol)


def saved_tensor_bytes(tool: Tool, target) -> tuple[int, int]:
    """Bytes of the tensors autograd saves for backward: (held at the end of the forward pass, peak).

    Every tensor a graph saves (``saved_tensors_hooks``) counts from when it is saved until
    it is freed, its storage once however many views of it are saved; parameters do not
    count. The peak is over the whole iteration, so graphs built inside ``backward`` count
    too (odedsl's checkpoint replays, torchdiffeq's adjoint VJPs), and a graph dropped during
    the forward pass (a rejected step) stops counting when it is dropped.
    """
    exclude = {p.untyped_storage().data_ptr() for p in tool.params}
    live: dict[int, list[int]] = {}  # storage address -> [saved tensors alive, bytes]
    now, peak = [0], [0]

    def release(ptr: int) -> None:
        entry = live.get(ptr)
        if entry is not None:
            entry[0] -= 1
            if entry[0] == 0:
                now[0] -= entry[1]
                del live[ptr]

    def pack(x):
        x = x.detach()  # not x itself: a saved output holding its own grad_fn would be a reference cycle
        if x.layout == torch.strided:
            storage = x.untyped_storage()
            ptr = storage.data_ptr()
            if ptr and ptr not in exclude:
                entry = live.setdefault(ptr, [0, storage.nbytes()])
                if entry[0] == 0:
                    now[0] += entry[1]
                    peak[0] = max(peak[0], now[0])
                entry[0] += 1
                weakref.finalize(x, release, ptr)
        return x

    for p in tool.params:
        p.grad = None
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        loss = (tool.solve() - target).square().mean()
        gc.collect()
        at_end = now[0]
        loss.backward()
    return at_end, peak[0]


def _proc_status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def cuda_peak_bytes(tool: Tool, target) -> int:
    gc.collect()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    iteration(tool, target)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def rel(a, b) -> float:
    """|a - b| / |b| (max-norm for tensors)."""
    if isinstance(a, torch.Tensor):
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))
    return abs(a - b) / max(abs(b), 1e-300)


def measure(tools: list[Tool], target, repeats: int, batch: int | None = None,
            reference: torch.Tensor | None = None) -> dict[str, dict]:
    """Per tool: median wall and CPU seconds, the ratio to its odedsl counterpart, calls, loss, gradients.

    Ratios use CPU time on CPU (with one torch thread it is the work done, and other
    processes on the machine change it much less than the wall-clock time), wall time on CUDA.
    """
    times = time_tools(tools, target, repeats)
    on_cpu = target.device.type == "cpu"
    rows = {}
    for tool in tools:
        wall, cpu = times[tool.name]
        row = {"gradient": tool.gradient, "wall_s": wall, "cpu_s": cpu if on_cpu else None,
               "vs": tool.counterpart}
        if batch:
            row["traj_per_s"] = batch / wall
        rows[tool.name] = {**row, **counted_iteration(tool, target, reference)}
    key = "cpu_s" if on_cpu else "wall_s"
    for row in rows.values():
        if row["vs"] in rows:
            row["ratio"] = row[key] / rows[row["vs"]][key]
    compare(rows, "odedsl backprop")
    return rows


def compare(rows: dict[str, dict], ref: str) -> None:
    """Each row's relative differences from row ``ref``: loss, alpha (if any), weights."""
    r = rows[ref]
    for row in rows.values():
        row["d_loss"] = rel(row["loss"], r["loss"])
        row["d_weights"] = rel(row["weights"], r["weights"])
        if "alpha" in r:
            row["d_alpha"] = rel(row["alpha"], r["alpha"])
    for row in rows.values():
        row.pop("weights")  # compared; too long to report


# -- problem 1: the UDE -------------------------------------------------------------------------------------------


def lv_target(t: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """The full Lotka–Volterra model the UDE should learn, solved tightly (scipy DOP853)."""
    from scipy.integrate import solve_ivp

    a, b, c, d = (UDE_TRUE[k] for k in ("alpha", "beta", "gamma", "delta"))

    def f(_, y):
        return [a * y[0] - b * y[0] * y[1], c * y[0] * y[1] - d * y[1]]

    return solve_ivp(f, (t[0], t[-1]), y0, t_eval=t, method="DOP853", rtol=1e-12, atol=1e-12).y.T


def ude_tools(dtype, tol: float, found: dict, with_odedsl_modes=("backprop", "checkpoint", "adjoint"),
              reference: bool = True):
    tm = odedsl.load(UDE_FILE).to_torch(dtype=dtype)
    t = torch.linspace(0.0, 5.0, 21, dtype=dtype)
    y0 = tm.initial_values().detach()
    target = torch.tensor(lv_target(t.double().numpy(), y0.double().numpy()), dtype=dtype)
    params = tm.params()
    func = LotkaVolterraUDE(sequential_like(tm.nets[0]), params["alpha"], params["delta"])
    tools = odedsl_tools(tm, t, None, tol, with_odedsl_modes, alpha="alpha")
    tools += peer_tools(func, t, y0, tol, found, alpha=True)
    return tools, target, reference_solution(tm, t, None) if reference else None


def compiled_row(tm, target: torch.Tensor, repeats: int, backprop: dict) -> dict:
    """The same iteration (solve, MSE, gradient) compiled with Numba (issue #6: ``odedsl.gradient``), float64,
    compared with odedsl's Torch backprop row: time, loss and gradients."""
    from odedsl.gradient import CompiledSolve

    model = tm.model
    t = np.linspace(0.0, 5.0, 21)
    goal = target.double().numpy()
    solver = CompiledSolve(model, "dopri5", UDE_TOL, UDE_TOL)
    p = tm.param_values().detach().double().numpy()
    margs = (p, tm.weights().double().numpy(), np.zeros(1), np.zeros((1, 0)))
    y0 = tm.initial_values().detach().double().numpy()

    def step():  # one forward solve, the loss's cotangent, one replay + backward pass: all compiled
        out, tape = solver.forward(t, y0, margs)
        g = 2.0 * (out - goal) / goal.size
        _, gp, gw = solver.backward(t, y0, margs, tape, g)
        return float(((out - goal) ** 2).mean()), gp, gw

    step()
    samples = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        loss, gp, gw = step()
        samples.append((time.perf_counter() - wall, time.process_time() - cpu))
    alpha = [p.name for p in model.params].index("alpha")
    cpu = statistics.median(c for _, c in samples)
    return {"gradient": "discrete adjoint (Numba)", "wall_s": statistics.median(w for w, _ in samples),
            "cpu_s": cpu, "vs": "odedsl backprop", "ratio": backprop["cpu_s"] / cpu, "calls_fwd": "–",
            "calls_bwd": "–", "d_loss": rel(loss, backprop["loss"]), "d_alpha": rel(float(gp[alpha]), backprop["alpha"]),
            "d_weights": rel(torch.as_tensor(gw), torch.as_tensor(backprop["weights_full"]))}


def bench_ude(args, found: dict) -> dict:
    repeats = args.repeats or (1 if args.quick else 15)
    out: dict = {"repeats": repeats, "tables": {}}
    for dtype in (torch.float64,) if args.quick else (torch.float64, torch.float32):
        tools, target, ref = ude_tools(dtype, UDE_TOL, found)
        if dtype == torch.float64:  # keep odedsl backprop's full gradient for the compiled row's comparison
            backprop = next(tool for tool in tools if tool.name == "odedsl backprop")
            full = counted_iteration(backprop, target)
        rows = measure(tools, target, repeats, reference=ref)
        if dtype == torch.float64:
            reference_row = {**rows["odedsl backprop"], "weights_full": np.asarray(full["weights"]),
                             "alpha": full["alpha"], "loss": full["loss"]}
            rows["odedsl numba (compiled)"] = compiled_row(odedsl.load(UDE_FILE).to_torch(dtype=dtype), target,
                                                           repeats, reference_row)
        out["tables"][str(dtype).removeprefix("torch.")] = rows
    if not args.quick and "torchdiffeq" in found:  # agreement without the discretisation error
        tight = 1e-10
        tools, target, _ = ude_tools(torch.float64, tight, found, ("backprop",), reference=False)
        res = {tool.name: counted_iteration(tool, target) for tool in tools if tool.name in
               ("odedsl backprop", "torchdiffeq odeint")}
        compare(res, "odedsl backprop")
        d = res["torchdiffeq odeint"]
        out["tight"] = {"tol": tight, "d_loss": d["d_loss"], "d_alpha": d["d_alpha"], "d_weights": d["d_weights"]}
    return out


# -- problems 2 and 3: neural ODEs -------------------------------------------------------------------------------


def node_tools(path: Path, batch: int, t_end: float, n_out: int, dtype, device, tol: float, found: dict,
               y0_scale: float = 1.0, reference: bool = True):
    tm = odedsl.load(path).to_torch(dtype=dtype, device=device)
    n = len(tm.model.states)
    gen = torch.Generator().manual_seed(0)
    Y0 = (y0_scale * torch.randn(batch, n, generator=gen, dtype=dtype)).to(device)
    t = torch.linspace(0.0, t_end, n_out, dtype=dtype, device=device)
    target = torch.randn(n_out, batch, n, generator=gen, dtype=dtype).to(device)
    func = NeuralODE(sequential_like(tm.nets[0]))
    tools = odedsl_tools(tm, t, Y0, tol) + peer_tools(func, t, Y0, tol, found)
    return tools, target, reference_solution(tm, t, Y0) if reference else None


def bench_neural(tools, target, reference, repeats: int, batch: int, rss: dict | None) -> dict:
    rows = measure(tools, target, repeats, batch, reference)
    for tool in tools:
        row = rows[tool.name]
        row["saved_bytes"], row["saved_peak_bytes"] = saved_tensor_bytes(tool, target)
        if target.device.type == "cuda":
            row["cuda_peak_bytes"] = cuda_peak_bytes(tool, target)
        else:
            row["rss_growth_bytes"] = (rss or {}).get(tool.name)
    return rows


def node_problem(args, found: dict, reference: bool = True):
    batch = 16 if args.quick else 512
    return (*node_tools(NODE_FILE, batch, 1.0, 5, torch.float32, "cpu", NODE_TOL, found, 1.0, reference), batch)


def spiral_problem(args, found: dict, reference: bool = True):
    batch = 256 if args.quick else 4096
    return (*node_tools(SPIRAL_FILE, batch, 10.0, 11, torch.float32, args.spiral_device, SPIRAL_TOL, found, 2.0,
                        reference), batch)


PROBLEMS = {"node": node_problem, "spiral": spiral_problem}


def rss_probe(args) -> None:
    """(In a child process) the peak RSS growth of one iteration of each tool, as JSON on stdout."""
    tools, target, _, _ = PROBLEMS[args.rss_probe](args, peers(), reference=False)
    for tool in tools:  # warm-up: first calls allocate what stays (kernels, caches)
        iteration(tool, target)
    out = {}
    for tool in tools:
        for p in tool.params:
            p.grad = None
        gc.collect()
        if not _reset_peak_rss():
            break
        base = _proc_status("VmRSS")
        iteration(tool, target)
        peak = _proc_status("VmHWM")
        out[tool.name] = None if base is None or peak is None else max(peak - base, 0)
    print(json.dumps(out))


def rss_growth(args, section: str) -> dict:
    """Peak RSS growth per tool, measured in a child process whose glibc maps every allocation of 64 KiB
    or more on its own (``MALLOC_MMAP_THRESHOLD_``), so freed tensors leave the RSS and the growth
    follows the live tensors rather than what the allocator kept; Linux only ({} elsewhere)."""
    if args.quick or not Path("/proc/self/clear_refs").exists():  # --quick: no second process
        return {}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-probe", section, "--threads", str(args.threads),
           "--spiral-device", args.spiral_device] + (["--quick"] if args.quick else [])
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
        return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


def bench_node(args, found: dict) -> dict:
    repeats = args.repeats or (1 if args.quick else 7)
    tools, target, ref, batch = node_problem(args, found)
    rss = rss_growth(args, "node")
    return {"repeats": repeats, "batch": batch, "rows": bench_neural(tools, target, ref, repeats, batch, rss)}


def bench_spiral(args, found: dict) -> dict:
    device = args.spiral_device
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        return {"skipped": "CUDA is not available"}
    repeats = args.repeats or (1 if args.quick else 7)
    tools, target, ref, batch = spiral_problem(args, found)
    rss = rss_growth(args, "spiral") if torch.device(device).type == "cpu" else None
    name = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else platform.processor()
    return {"repeats": repeats, "batch": batch, "device": f"{device} ({name})" if name else device,
            "rows": bench_neural(tools, target, ref, repeats, batch, rss)}


# -- report -----------------------------------------------------------------------------------------------------------


def _fmt_rel(x) -> str:
    return "–" if x is None else ("0" if x == 0 else f"{x:.1e}")


def _fmt_mib(x) -> str:
    return "–" if x is None else f"{x / MIB:,.1f}"


def _fmt_ms(r) -> str:
    return f"{r['wall_s'] * 1e3:,.1f}" + ("" if r.get("cpu_s") is None else f" / {r['cpu_s'] * 1e3:,.1f}")


def _ratio(row) -> str:
    return f"**{row['ratio']:.2f}×** vs {row['vs']}" if row.get("ratio") is not None else "–"


def markdown_ude(res: dict) -> list[str]:
    lines = []
    for dtype, rows in res["tables"].items():
        lines += [f"### Lotka–Volterra UDE, one training iteration, {dtype} (median of {res['repeats']})", "",
                  ("| tool | gradient | ms / iteration (wall / CPU) | peer / odedsl | f calls fwd + bwd |"
                   " solution error | loss rel. diff | dL/dα rel. diff | dL/dW rel. diff |"),
                  "|---|---|---:|---|---:|---:|---:|---:|---:|"]
        for name, r in rows.items():
            lines.append(f"| {name} | {r['gradient']} | {_fmt_ms(r)} | {_ratio(r)} | "
                         f"{r['calls_fwd']} + {r['calls_bwd']} | {_fmt_rel(r.get('error'))} | "
                         f"{_fmt_rel(r['d_loss'])} | {_fmt_rel(r.get('d_alpha'))} | {_fmt_rel(r['d_weights'])} |")
        lines.append("")
    if "tight" in res:
        tt = res["tight"]
        lines += [(f"At rtol = atol = {tt['tol']:g} (float64, backprop), odedsl and torchdiffeq `odeint` agree to "
                   f"{_fmt_rel(tt['d_loss'])} (loss), {_fmt_rel(tt['d_alpha'])} (dL/dα) and "
                   f"{_fmt_rel(tt['d_weights'])} (dL/dW, max-norm)."), ""]
    return lines


def markdown_neural(title: str, res: dict) -> list[str]:
    if "skipped" in res:
        return [f"### {title}", "", f"Skipped: {res['skipped']}.", ""]
    rows = res["rows"]
    cuda = any("cuda_peak_bytes" in r for r in rows.values())
    mem = "CUDA peak MiB" if cuda else "peak RSS growth MiB"
    ms = "ms / iteration" if cuda else "ms / iteration (wall / CPU)"
    lines = [f"### {title} (median of {res['repeats']})", "",
             (f"| tool | gradient | {ms} | trajectories / s | peer / odedsl | f calls fwd + bwd | "
             f"saved for backward MiB, end of fwd / peak | {mem} | solution error | loss rel. diff | "
             "dL/dW rel. diff |"),
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        m = r.get("cuda_peak_bytes") if cuda else r.get("rss_growth_bytes")
        lines.append(f"| {name} | {r['gradient']} | {_fmt_ms(r)} | {r['traj_per_s']:,.0f} | {_ratio(r)} | "
                     f"{r['calls_fwd']} + {r['calls_bwd']} | {_fmt_mib(r['saved_bytes'])} / "
                     f"{_fmt_mib(r['saved_peak_bytes'])} | {_fmt_mib(m)} | {_fmt_rel(r.get('error'))} | "
                     f"{_fmt_rel(r['d_loss'])} | {_fmt_rel(r['d_weights'])} |")
    lines.append("")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (a smoke run)")
    ap.add_argument("--repeats", type=int, help="timed iterations per tool (default: 15 ude, 7 node and spiral)")
    ap.add_argument("--only", choices=("ude", "node", "spiral"), action="append",
                    help="run only this problem (may be given more than once)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: see the module docstring; 0 keeps torch's default)")
    ap.add_argument("--spiral-device", default="cuda", help=argparse.SUPPRESS)  # to try the spiral on CPU
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--rss-probe", choices=tuple(PROBLEMS), help=argparse.SUPPRESS)  # the child of rss_growth
    args = ap.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if args.threads < 0:
        ap.error("--threads must be at least 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_probe:
        rss_probe(args)
        return 0
    only = args.only or ["ude", "node", "spiral"]
    found = peers()
    info = versions()
    command = provenance.command_line()
    lines = ["## Torch backend: training iterations against torchdiffeq and torchode", "",
             f"Command: `{command}`", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".", "",
             f"Machine: {os.cpu_count()} CPUs ({platform.machine()}), {torch.get_num_threads()} torch thread(s), "
             + (f"CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no CUDA")
             + f"; {provenance.load_average()} at the start.", ""]
    missing = [p for p in ("torchdiffeq", "torchode") if p not in found]
    if missing:
        lines += [f"Not installed, skipped: {', '.join(missing)}.", ""]
    print("\n".join(lines), flush=True)
    results: dict = {"command": command, "versions": info, "threads": torch.get_num_threads()}
    sections = {
        "ude": (bench_ude, markdown_ude),
        "node": (bench_node, lambda r: markdown_neural(
            f"Neural ODE 64 -> 256 -> 256 -> 64, batch {r['batch']}, float32, CPU", r)),
        "spiral": (bench_spiral, lambda r: markdown_neural(
            f"Spiral neural ODE, batch {r.get('batch', 4096)}, float32, {r.get('device', 'CUDA')}", r)),
    }
    start = time.perf_counter()
    for name in ("ude", "node", "spiral"):
        if name not in only:
            continue
        bench, render = sections[name]
        res = bench(args, found)
        results[name] = res
        print("\n".join(render(res)), flush=True)
    print(f"Total {time.perf_counter() - start:.0f} s; {provenance.load_average()} at the end.")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=_jsonable))
    return 0


def _jsonable(x):
    if isinstance(x, torch.Tensor):
        return x.tolist() if x.numel() <= 16 else f"<tensor of {x.numel()}>"
    return str(x)


if __name__ == "__main__":
    sys.exit(main())
