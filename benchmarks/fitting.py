"""``Model.fit`` against the same fits written the usual way with scipy and torchdiffeq, side by side in one run.

    bash benchmarks/setup_env.sh                 # once: .venv-bench with the peers
    .venv-bench/bin/python benchmarks/fitting.py [--quick] [--only lsq|ude] [--repeats N] [--threads N]
                                                 [--json OUT]

Two problems (issue #5's performance requirements):

1. ``lsq``: a physics-only Lotka–Volterra fit. dx = alpha x - beta x y,
   dy = delta x y - gamma y; six fitted parameters (the four rates and the two
   initial values, all bounded to [0, 10]). The data: the true model (alpha 1.5,
   beta 1, delta 1, gamma 3, x0 = y0 = 1) solved tightly at 21 times in [0, 10],
   with 2% multiplicative Gaussian noise (seed 0). The fit starts 30% off every
   value. odedsl: ``Model.fit`` (bounded trust-region least squares, exact
   Jacobians from the forward-sensitivity system, Numba, dopri5). The peer, as one
   writes it with scipy: ``solve_ivp`` (RK45, Python right-hand side) inside the
   residual function of ``scipy.optimize.least_squares`` with a finite-difference
   Jacobian (``jac="2-point"``), the same bounds and the same residuals (each
   column divided by its standard deviation in the data, all by sqrt(n)), hence
   the same optimum. Two scipy rows: one with odedsl's optimiser options
   (``trf``, ``x_scale="jac"``, ftol = xtol = 1e-12, gtol = 1e-10, at most 200
   evaluations), so only the Jacobian and the solver differ; one with scipy's
   defaults. All solve at rtol 1e-6, atol 1e-8.
2. ``ude``: the Lotka–Volterra UDE (models/lotka_volterra_ude.ode, MLP 2->32->32->2
   tanh; alpha fitted, delta fixed) on data from the true Lotka–Volterra model as
   in Rackauckas et al. 2020 (x0 = 0.44249296, y0 = 4.6280594, alpha 1.3, beta 0.9,
   gamma 0.8, delta 1.8; 31 times in [0, 3]; noise 5% of each column's mean,
   seed 0). odedsl: ``Model.fit`` on its Adam path (``polish_iters=0``: no L-BFGS,
   so both run the same algorithm), 200 iterations, lr 1e-2. The peer, as one
   writes it with torchdiffeq: an ``nn.Module`` vector field with an ``nn.Sequential``
   MLP holding odedsl's initial weights (``model.to_torch(seed=0).weights()``),
   ``odeint`` (dopri5, backprop) and ``torch.optim.Adam`` (lr 1e-2, betas 0.9/0.999,
   eps 1e-8, as odedsl's own Adam). alpha is bounded to [0, 10] in the file, which
   odedsl enforces by training ``alpha = 10 sigmoid(raw)``; the peer trains the same
   ``raw``, so both take the same Adam steps and differ only in their solvers' step
   sequences. The loss is odedsl's (odedsl/fit/loss.py): prey_count has no noise
   model, so its residuals are divided by the column's standard deviation in the
   data; pred_count ~ normal(0.1): residuals divided by 0.1, plus 2 log 0.1 per
   value; the mean over the 62 values. Both solve at rtol 1e-6, atol 1e-8 in float64.

Times are medians over the repeats (the tools take turns, one fit each per round),
after one warm-up fit each: odedsl's one-time compile (Numba for the sensitivity
system; the generated Torch module) is reported apart and excluded. Both the
wall-clock and the CPU time of the process are given; ratios use CPU time (one
torch thread by default, ``--threads``; numba's ``simulate`` and scipy run on one
core), which other processes on a shared machine change much less than the wall
time. The timed odedsl fit is the public call, from the CSV path to the result;
the peers' timed code starts from the same CSV (``np.loadtxt``). Counting wrappers
(solves, vector-field calls) stay in place during the timed runs; they cost well
under 1%.

torchdiffeq is skipped when it is not installed (scipy is an odedsl dependency).
The results are printed as markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's odedsl first

import numpy as np  # noqa: E402

import odedsl  # noqa: E402
from benchmarks import provenance  # noqa: E402

RTOL, ATOL = 1e-6, 1e-8

# -- problem 1: physics-only least squares ---------------------------------------------------------------------------

LSQ_NAMES = ("alpha", "beta", "delta", "gamma", "prey0", "pred0")
LSQ_TRUE = np.array([1.5, 1.0, 1.0, 3.0, 1.0, 1.0])
LSQ_START = LSQ_TRUE * np.array([1.3, 0.7, 0.7, 1.3, 1.3, 0.7])  # 30% off every value
LSQ_LOWER, LSQ_UPPER = 0.0, 10.0
LSQ_T = np.linspace(0.0, 10.0, 21)
LSQ_NOISE = 0.02
LSQ_OPTIONS = {"method": "trf", "x_scale": "jac", "ftol": 1e-12, "xtol": 1e-12, "gtol": 1e-10, "max_nfev": 200}

LSQ_SOURCE = """model lv_fit "Lotka–Volterra with fitted rates and initial values"
param alpha = {alpha!r} in [{lo!r}, {hi!r}]
param beta = {beta!r} in [{lo!r}, {hi!r}]
param delta = {delta!r} in [{lo!r}, {hi!r}]
param gamma = {gamma!r} in [{lo!r}, {hi!r}]
param prey0 = {prey0!r} in [{lo!r}, {hi!r}]
param pred0 = {pred0!r} in [{lo!r}, {hi!r}]
state prey = prey0
state pred = pred0
der(prey) = alpha*prey - beta*prey*pred
der(pred) = delta*prey*pred - gamma*pred
"""


def lsq_model(values) -> odedsl.Model:
    """The Lotka–Volterra model with ``values`` (in ``LSQ_NAMES`` order) as the file's parameter values."""
    text = LSQ_SOURCE.format(lo=LSQ_LOWER, hi=LSQ_UPPER, **{k: float(v) for k, v in zip(LSQ_NAMES, values)})
    return odedsl.loads(text, name="lv_fit.ode")


def lv_rhs(a: float, b: float, d: float, g: float):
    """The right-hand side as a scipy user writes it."""
    def f(_, u):
        return [a * u[0] - b * u[0] * u[1], d * u[0] * u[1] - g * u[1]]
    return f


def lsq_data(path: Path) -> None:
    """The true model solved tightly (scipy DOP853), 2% multiplicative noise, as a CSV."""
    from scipy.integrate import solve_ivp

    from odedsl.io.table import write_csv

    a, b, d, g, x0, y0 = LSQ_TRUE
    y = solve_ivp(lv_rhs(a, b, d, g), (LSQ_T[0], LSQ_T[-1]), [x0, y0], t_eval=LSQ_T, method="DOP853",
                  rtol=1e-12, atol=1e-12).y.T
    rng = np.random.default_rng(0)
    obs = y * (1.0 + LSQ_NOISE * rng.standard_normal(y.shape))
    write_csv(path, ["t", "prey", "pred"], np.column_stack([LSQ_T, obs]))


@contextlib.contextmanager
def counting_residuals():
    """Count and time odedsl's residual-and-Jacobian evaluations (one sensitivity solve each)."""
    from odedsl.fit import least_squares as ls

    original = ls.Residuals.__call__
    stats = {"solves": 0, "seconds": 0.0}

    def counted(self, x):
        start = time.perf_counter()
        try:
            return original(self, x)
        finally:
            stats["solves"] += 1
            stats["seconds"] += time.perf_counter() - start

    ls.Residuals.__call__ = counted
    try:
        yield stats
    finally:
        ls.Residuals.__call__ = original


def odedsl_lsq(model: odedsl.Model, path: Path) -> dict:
    with counting_residuals() as stats:
        res = model.fit(str(path), rtol=RTOL, atol=ATOL)
    return {"x": [res.params[k] for k in LSQ_NAMES], "loss": float(res.loss), "nfev": len(res.history),
            "solves": stats["solves"], "solve_s": stats["seconds"], "message": res.message}


def scipy_lsq(path: Path, options: dict) -> dict:
    """The fit written the usual way: solve_ivp in the residual function, finite-difference Jacobian."""
    from scipy.integrate import solve_ivp
    from scipy.optimize import least_squares

    data = np.loadtxt(path, delimiter=",", skiprows=1)
    t, obs = data[:, 0], data[:, 1:]
    spread, root_n = obs.std(0), math.sqrt(obs.size)
    count = {"solves": 0, "rhs": 0, "seconds": 0.0}

    def residuals(x):
        a, b, d, g, x0, y0 = x
        start = time.perf_counter()
        sol = solve_ivp(lv_rhs(a, b, d, g), (t[0], t[-1]), [x0, y0], t_eval=t, method="RK45", rtol=RTOL, atol=ATOL)
        count["seconds"] += time.perf_counter() - start
        count["solves"] += 1
        count["rhs"] += sol.nfev
        if not sol.success:
            return np.full(obs.size, 1e3)
        return ((sol.y.T - obs) / spread).ravel() / root_n

    sol = least_squares(residuals, LSQ_START, jac="2-point", bounds=(LSQ_LOWER, LSQ_UPPER), **options)
    return {"x": sol.x.tolist(), "loss": float(sol.fun @ sol.fun), "nfev": int(sol.nfev), "njev": int(sol.njev),
            "solves": count["solves"], "rhs_calls": count["rhs"], "solve_s": count["seconds"], "message": sol.message}


def timed(fn) -> tuple[dict, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def rel(a, b) -> float:
    """max |a - b| / |b|, elementwise."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def take_turns(tools: dict, repeats: int, warm_up: dict | None = None) -> dict[str, dict]:
    """One warm-up call of each tool (``warm_up[name]``, else the tool itself), then ``repeats`` rounds
    in which each tool is timed once. Medians of the wall and CPU time, and of the share of each run's
    wall time its ``solve_s`` took; the other figures are the last run's."""
    rows: dict[str, dict] = {}
    for name, fn in tools.items():
        _, wall, cpu = timed((warm_up or {}).get(name, fn))
        rows[name] = {"first_wall_s": wall, "first_cpu_s": cpu, "walls": [], "cpus": [], "shares": []}
    for _ in range(repeats):
        for name, fn in tools.items():
            out, wall, cpu = timed(fn)
            row = rows[name]
            row.update(out)
            row["walls"].append(wall)
            row["cpus"].append(cpu)
            row["shares"].append(out["solve_s"] / wall)
    for row in rows.values():
        row["wall_s"] = statistics.median(row.pop("walls"))
        row["cpu_s"] = statistics.median(row.pop("cpus"))
        row["solve_share"] = statistics.median(row.pop("shares"))
    return rows


def bench_lsq(args, found: dict, tmp: Path) -> dict:
    path = tmp / "lotka_volterra.csv"
    lsq_data(path)
    model = lsq_model(LSQ_START)
    repeats = args.repeats or (1 if args.quick else 7)
    tools = {"odedsl Model.fit": lambda: odedsl_lsq(model, path),
             "scipy, odedsl's optimiser options": lambda: scipy_lsq(path, LSQ_OPTIONS),
             "scipy, default options": lambda: scipy_lsq(path, {})}
    rows = take_turns(tools, repeats)
    ref = rows["odedsl Model.fit"]
    for name, row in rows.items():
        row["d_x"] = rel(row["x"], ref["x"])
        row["d_loss"] = rel(row["loss"], ref["loss"])
        row["ratio_cpu"] = row["cpu_s"] / ref["cpu_s"]
        row["ratio_wall"] = row["wall_s"] / ref["wall_s"]
    return {"repeats": repeats, "n_points": int(2 * LSQ_T.size), "names": list(LSQ_NAMES),
            "true": LSQ_TRUE.tolist(), "start": LSQ_START.tolist(), "rows": rows}


# -- problem 2: the UDE on the Adam path -------------------------------------------------------------------------------

UDE_FILE = ROOT / "models" / "lotka_volterra_ude.ode"
UDE_TRUE = {"alpha": 1.3, "beta": 0.9, "gamma": 0.8, "delta": 1.8}
UDE_Y0 = (0.44249296, 4.6280594)
UDE_T = np.linspace(0.0, 3.0, 31)
UDE_NOISE = 5e-2  # of each column's mean, as in Rackauckas et al. 2020
UDE_LR = 1e-2
UDE_SEED = 0


def ude_data(path: Path) -> None:
    from scipy.integrate import solve_ivp

    from odedsl.io.table import write_csv

    a, b, c, d = (UDE_TRUE[k] for k in ("alpha", "beta", "gamma", "delta"))
    x = solve_ivp(lv_rhs(a, b, c, d), (UDE_T[0], UDE_T[-1]), list(UDE_Y0), t_eval=UDE_T, method="DOP853",
                  rtol=1e-12, atol=1e-12).y.T
    rng = np.random.default_rng(0)
    noisy = x + UDE_NOISE * x.mean(0) * rng.standard_normal(x.shape)
    write_csv(path, ["t", "prey_count", "pred_count"], np.column_stack([UDE_T, noisy]))


def odedsl_start(model: odedsl.Model):
    """odedsl's starting point: the nets' initial weights (flat, ``odedsl.nets`` layout) and alpha's
    unconstrained coordinate, as ``Model.fit`` builds them (``to_torch(seed=...)``)."""
    import torch

    tm = model.to_torch(dtype=torch.float64, seed=UDE_SEED)
    return tm.weights(), tm.raw.detach()[tm.fitted_names.index("alpha")].clone()


def torchdiffeq_module(model: odedsl.Model, start):
    """The UDE as a torchdiffeq user writes it, starting from ``start`` (``odedsl_start``)."""
    import torch
    from torch import nn

    flat, raw = start
    net_decl = model.net("U")
    assert net_decl.activation == "tanh"
    alpha = model.param("alpha")
    delta = model.param("delta").value

    class UDE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            sizes = net_decl.layer_sizes
            layers: list[nn.Module] = []
            for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers.append(nn.Linear(a, b, dtype=torch.float64))
                if k + 1 < len(sizes) - 1:
                    layers.append(nn.Tanh())
            self.net = nn.Sequential(*layers)
            pos = 0
            with torch.no_grad():  # odedsl.nets layout: per layer, weight (out x in, row-major) then bias
                for p in self.net.parameters():
                    p.copy_(flat[pos:pos + p.numel()].reshape(p.shape))
                    pos += p.numel()
            assert pos == flat.numel()
            # alpha in [lo, hi] as lo + (hi - lo) sigmoid(raw), from odedsl's starting raw value
            self.raw = nn.Parameter(raw.clone())
            self.lo, self.span = alpha.lower, alpha.upper - alpha.lower
            self.calls = 0

        def alpha(self):
            return self.lo + self.span * torch.sigmoid(self.raw)

        def forward(self, t, y):
            self.calls += 1
            u = self.net(y)
            return torch.stack([self.alpha() * y[..., 0] + u[..., 0], -delta * y[..., 1] + u[..., 1]], -1)

    return UDE()


def torchdiffeq_ude(model: odedsl.Model, start, path: Path, iters: int, tdq) -> dict:
    """The training loop written the usual way with torchdiffeq and torch.optim.Adam."""
    import torch

    data = np.loadtxt(path, delimiter=",", skiprows=1)
    t = torch.tensor(data[:, 0])
    observed = torch.tensor(data[:, 1:])
    func = torchdiffeq_module(model, start)
    y0 = torch.tensor(UDE_Y0, dtype=torch.float64)
    # odedsl's loss: prey_count scaled by its spread in the data; pred_count ~ normal(0.1)
    scale = torch.tensor([float(np.std(data[:, 1])), 0.1], dtype=torch.float64)
    penalty = torch.tensor([0.0, 2.0 * math.log(0.1)], dtype=torch.float64)
    opt = torch.optim.Adam(func.parameters(), lr=UDE_LR, betas=(0.9, 0.999), eps=1e-8)
    losses, alphas, solve_s = [], [], 0.0
    for _ in range(iters):
        t0 = time.perf_counter()
        opt.zero_grad()
        ys = tdq.odeint(func, y0, t, rtol=RTOL, atol=ATOL, method="dopri5")
        r = (ys - observed) / scale
        loss = (r * r + penalty).mean()
        loss.backward()
        solve_s += time.perf_counter() - t0
        losses.append(loss.item())
        with torch.no_grad():  # before the step: the iterate whose loss this is
            alphas.append(float(func.alpha()))
        opt.step()
    best = int(np.argmin(losses))  # what odedsl hands back: the best iterate
    return {"losses": losses, "calls": func.calls, "solve_s": solve_s, "alpha": alphas[best]}


@contextlib.contextmanager
def counting_ude():
    """Count odedsl's vector-field calls and time its ``value_and_grad`` (solve, loss, backward)."""
    from odedsl.backends.torch_model import TorchModel
    from odedsl.fit.torch_objective import TorchObjective

    closure, vg = TorchModel.rhs_closure, TorchObjective.value_and_grad
    stats = {"calls": 0, "seconds": 0.0}

    def rhs_closure(self, p):
        f = closure(self, p)

        def counted(t, y, rows):
            stats["calls"] += 1
            return f(t, y, rows)
        counted.autonomous = f.autonomous
        return counted

    def value_and_grad(self, x):
        start = time.perf_counter()
        try:
            return vg(self, x)
        finally:
            stats["seconds"] += time.perf_counter() - start

    TorchModel.rhs_closure, TorchObjective.value_and_grad = rhs_closure, value_and_grad
    try:
        yield stats
    finally:
        TorchModel.rhs_closure, TorchObjective.value_and_grad = closure, vg


UDE_NUMBA = "odedsl Model.fit (numba backend: the default on a CPU)"
UDE_TORCH = "odedsl Model.fit (torch backend)"


def odedsl_ude(model: odedsl.Model, path: Path, iters: int, backend: str) -> dict:
    """``backend="torch"`` counts the vector-field calls; the compiled ``numba`` one runs without Python hooks."""
    with counting_ude() as stats:
        res = model.fit(str(path), max_iters=iters, polish_iters=0, lr=UDE_LR, rtol=RTOL, atol=ATOL,
                        seed=UDE_SEED, optimizer="adam", backend=backend)
    return {"losses": [loss for _, loss, _ in res.history], "calls": stats["calls"], "solve_s": stats["seconds"],
            "alpha": res.params["alpha"], "best": float(res.loss), "message": res.message}


def bench_ude(args, found: dict, tmp: Path) -> dict:
    path = tmp / "lotka_volterra_ude.csv"
    ude_data(path)
    model = odedsl.load(UDE_FILE)
    iters = args.ude_iters or (5 if args.quick else 200)
    repeats = args.repeats or (1 if args.quick else 3)
    tools = {UDE_NUMBA: lambda n=iters: odedsl_ude(model, path, n, "numba"),
             UDE_TORCH: lambda n=iters: odedsl_ude(model, path, n, "torch")}
    if "torchdiffeq" in found:
        start = odedsl_start(model)  # outside the timed code
        tools["torchdiffeq odeint + torch.optim.Adam"] = lambda n=iters: torchdiffeq_ude(model, start, path, n,
                                                                                         found["torchdiffeq"])
    rows = take_turns(tools, repeats, {name: (lambda fn=fn: fn(2)) for name, fn in tools.items()})
    ref = rows[UDE_NUMBA]
    for row in rows.values():
        losses = row.pop("losses")
        row["iterations"] = len(losses)
        row["first_loss"], row["last_loss"] = losses[0], losses[-1]
        row["best"] = min(losses)
        row["calls_per_iter"] = row["calls"] / max(len(losses), 1)
    for row in rows.values():
        row["ratio_cpu"] = row["cpu_s"] / ref["cpu_s"]
        row["ratio_wall"] = row["wall_s"] / ref["wall_s"]
        row["d_first_loss"] = rel(row["first_loss"], ref["first_loss"])
    return {"repeats": repeats, "iterations": iters, "lr": UDE_LR, "n_points": int(2 * UDE_T.size), "rows": rows}


# -- report ------------------------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    return provenance.versions(["odedsl", "numpy", "scipy", "numba", "torch", "torchdiffeq"])


def peers() -> dict[str, object]:
    """The peers that can be imported, by name (scipy is an odedsl dependency, always there)."""
    try:
        return {"torchdiffeq": __import__("torchdiffeq")}
    except ImportError:
        return {}


def _ms(row) -> str:
    return f"{row['wall_s'] * 1e3:,.1f} / {row['cpu_s'] * 1e3:,.1f}"


def _ratio(row, first: bool) -> str:
    return "–" if first else f"**{row['ratio_cpu']:.1f}×** ({row['ratio_wall']:.1f}× wall)"


def markdown_lsq(res: dict) -> list[str]:
    rows = res["rows"]
    ref = rows["odedsl Model.fit"]
    lines = [f"### Physics-only Lotka–Volterra, least squares, 6 parameters, {res['n_points']} values "
             f"(median of {res['repeats']} fits)", "",
             "| tool | ms / fit (wall / CPU) | time / odedsl's (CPU) | evaluations (+ Jacobians) | ODE solves | "
             "time in solves | loss | params rel. diff |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for i, (name, r) in enumerate(rows.items()):
        evals = f"{r['nfev']}" + (f" + {r['njev']}" if "njev" in r else "")
        solves = f"{r['solves']}" + (f" ({r['rhs_calls']:,} rhs calls)" if "rhs_calls" in r else " (sensitivities)")
        d_x = "–" if i == 0 else f"{r['d_x']:.1e}"
        lines.append(f"| {name} | {_ms(r)} | {_ratio(r, i == 0)} | {evals} | {solves} | {r['solve_share']:.0%} | "
                     f"{r['loss']:.6e} | {d_x} |")
    lines += ["", "| | " + " | ".join(res["names"]) + " |", "|---|" + "---:|" * len(res["names"])]
    lines.append("| true | " + " | ".join(f"{v:g}" for v in res["true"]) + " |")
    lines.append("| start | " + " | ".join(f"{v:g}" for v in res["start"]) + " |")
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.5f}" for v in r["x"]) + " |")
    lines += ["", (f"odedsl's first fit in this process (not timed above; Numba compile of the sensitivity system, "
                   f"or its load from the on-disk cache): {ref['first_wall_s']:.2f} s wall. odedsl's time outside its "
                   "sensitivity solves (each gives the residuals and their Jacobian) is building the sensitivity "
                   "system (SymPy), reading the CSV and scipy's trust-region steps."), ""]
    return lines


def markdown_ude(res: dict) -> list[str]:
    rows = res["rows"]
    ref = rows[UDE_NUMBA]
    lines = [f"### Lotka–Volterra UDE, {res['iterations']} Adam iterations (lr {res['lr']:g}), "
             f"{res['n_points']} values (median of {res['repeats']} fits)", "",
             "| tool | s / fit (wall / CPU) | time / odedsl's (CPU) | f calls / iteration | "
             "solve + loss + backward | loss at start | best loss | last loss | alpha at the best |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for i, (name, r) in enumerate(rows.items()):
        lines.append(f"| {name} | {r['wall_s']:,.2f} / {r['cpu_s']:,.2f} | {_ratio(r, i == 0)} | "
                     f"{r['calls_per_iter']:.1f} | {r['solve_share']:.0%} | {r['first_loss']:.6g} | "
                     f"{r['best']:.6g} | {r['last_loss']:.6g} | {r['alpha']:.4f} |")
    lines += ["", f"odedsl's first call in this process, a 2-iteration warm-up (not timed above; it loads the "
              f"generated Torch module): {ref['first_wall_s']:.2f} s wall.", ""]
    if len(rows) > 1:
        other = rows[list(rows)[1]]
        lines += [f"The loss at the start agrees to {other['d_first_loss']:.1e} (same weights, same loss).", ""]
    else:
        lines += ["torchdiffeq is not installed: odedsl alone.", ""]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: one repeat, 5 Adam iterations")
    ap.add_argument("--only", choices=("lsq", "ude"), action="append",
                    help="run only this problem (may be given more than once)")
    ap.add_argument("--repeats", type=int, help="timed fits per tool (default: 7 lsq, 3 ude)")
    ap.add_argument("--ude-iters", type=int, help="Adam iterations of the UDE fit (default 200)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0 keeps torch's default)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if args.ude_iters is not None and args.ude_iters < 1:
        ap.error("--ude-iters must be at least 1")
    if args.threads < 0:
        ap.error("--threads must be at least 0")
    only = args.only or ["lsq", "ude"]
    threads = "–"
    if "ude" in only:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        threads = str(torch.get_num_threads())
    found = peers()
    info = versions()
    command = provenance.command_line()
    lines = ["## Fitting: `Model.fit` against scipy and torchdiffeq", "",
             f"Command: `{command}`", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".", "",
             f"Machine: {os.cpu_count()} CPUs ({platform.machine()}), {threads} torch thread(s); "
             f"{provenance.load_average()} at the start.", ""]
    if "torchdiffeq" not in found and "ude" in only:
        lines += ["Not installed, skipped: torchdiffeq.", ""]
    print("\n".join(lines), flush=True)
    results: dict = {"command": command, "versions": info}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, bench, render in (("lsq", bench_lsq, markdown_lsq), ("ude", bench_ude, markdown_ude)):
            if name not in only:
                continue
            res = bench(args, found, Path(tmp))
            results[name] = res
            print("\n".join(render(res)), flush=True)
    print(f"Total {time.perf_counter() - start:.0f} s; {provenance.load_average()} at the end.")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
