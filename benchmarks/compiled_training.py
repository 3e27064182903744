"""Compiled training on the CPU: odedsl's Numba discrete adjoint against diffrax under ``jax.jit``.

One training iteration of the Lotka–Volterra UDE (MLP 2→32→32→2 tanh; α trained,
δ fixed), t ∈ [0, 5], 21 outputs, dopri5, rtol = atol = 1e-6, float64: solve,
the loss against the full Lotka–Volterra solution (the mean of squared residuals,
each column scaled by its spread, as ``odedsl fit`` does without a noise model),
gradient with respect to α and every weight. Both tools hold the same weights;
the gradients are compared.

    .venv-bench/bin/python benchmarks/compiled_training.py [--repeats N] [--fit]

odedsl: ``NumbaObjective.value_and_grad``, the entry point ``odedsl fit`` calls
once per iteration: one compiled call doing the taped forward solve, the loss,
its cotangent and the discrete adjoint. Also with ``--gradient checkpoint``'s
bounded-memory tape. diffrax: ``Dopri5`` with a ``PIDController`` at the same
tolerances, ``SaveAt(ts=...)``, its default ``RecursiveCheckpointAdjoint`` and
``BacksolveAdjoint``, ``jax.jit`` of ``jax.value_and_grad``; compile time
excluded (one warm-up call each). ``--fit`` also times the whole shipped UDE fit
(``odedsl fit`` as a user runs it: 300 Adam iterations and the L-BFGS polish),
with an empty compile cache and with a warm one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's odedsl first

import numpy as np  # noqa: E402

import odedsl  # noqa: E402
from benchmarks import provenance  # noqa: E402

UDE_FILE = ROOT / "models" / "lotka_volterra_ude.ode"
UDE_DATA = ROOT / "models" / "data" / "lotka_volterra_ude.csv"
ODEDSL = "odedsl numba (`odedsl fit`'s loss + gradient, one compiled call)"
TOL = 1e-6
TRUE = {"alpha": 1.3, "beta": 0.9, "gamma": 0.8, "delta": 1.8}


def target(t: np.ndarray, y0: np.ndarray) -> np.ndarray:
    from scipy.integrate import solve_ivp

    a, b, c, d = (TRUE[k] for k in ("alpha", "beta", "gamma", "delta"))
    return solve_ivp(lambda _, y: [a * y[0] - b * y[0] * y[1], c * y[0] * y[1] - d * y[1]], (t[0], t[-1]), y0,
                     t_eval=t, method="DOP853", rtol=1e-12, atol=1e-12).y.T


def benchmark_model():
    """The UDE with α unbounded (so the optimiser's coordinate is α itself) and no noise model."""
    text = UDE_FILE.read_text().replace("param alpha = 1.3 in [0, 10]", "param alpha = 1.3")
    return odedsl.loads(text.replace("pred ~ normal(0.1)", "pred"), name="ude_benchmark.ode")


def odedsl_iteration(model, t, goal, checkpoint_every=None):
    """A closure doing one iteration of ``odedsl fit``'s compiled path; returns (loss, dL/dα, dL/dweights)."""
    from odedsl.fit.data import read_dataset
    from odedsl.fit.loss import scaling
    from odedsl.fit.numba_objective import NumbaObjective

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "target.csv"
        path.write_text("t,prey_count,pred_count\n" + "".join(f"{a!r},{b!r},{c!r}\n" for a, (b, c) in zip(t.tolist(), goal.tolist())))
        data = read_dataset(model, path)
    objective = NumbaObjective(model, data, scaling(data), "dopri5", TOL, TOL, checkpoint_every=checkpoint_every)
    x = objective.get_x()

    def step():
        loss, grad = objective.value_and_grad(x)
        return loss, float(grad[0]), grad[1:]

    return step, x[1:], data.spread()


def diffrax_iteration(model, t, goal, weights, spread, adjoint: str):
    import diffrax
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    sizes = model.nets[0].layer_sizes
    layers, pos = [], 0
    for a, b in zip(sizes[:-1], sizes[1:]):  # odedsl.nets layout: W (out x in) row-major, then the bias
        layers.append((jnp.array(weights[pos:pos + a * b].reshape(b, a)), jnp.array(weights[pos + a * b:pos + a * b + b])))
        pos += a * b + b
    delta = float(model.param("delta").value)

    def field(_, y, args):
        alpha, net = args
        h = y
        for k, (W, bias) in enumerate(net):
            h = W @ h + bias
            if k < len(net) - 1:
                h = jnp.tanh(h)
        return jnp.stack([alpha * y[0] + h[0], -delta * y[1] + h[1]])

    y0 = jnp.array([float(s.initial) for s in model.states])
    ts, gl, sc = jnp.array(t), jnp.array(goal), jnp.array(spread)
    adj = diffrax.RecursiveCheckpointAdjoint() if adjoint == "recursive" else diffrax.BacksolveAdjoint()

    def loss(params):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Dopri5(), t0=t[0], t1=t[-1], dt0=None, y0=y0,
                                  args=params, saveat=diffrax.SaveAt(ts=ts),
                                  stepsize_controller=diffrax.PIDController(rtol=TOL, atol=TOL), adjoint=adj,
                                  max_steps=100_000)
        return jnp.mean(((sol.ys - gl) / sc) ** 2)

    f = jax.jit(jax.value_and_grad(loss))
    params = (jnp.array(float(model.param("alpha").value)), layers)

    def step():
        value, (g_alpha, g_net) = f(params)
        value.block_until_ready()
        flat = np.concatenate([np.concatenate([np.asarray(W).ravel(), np.asarray(b)]) for W, b in g_net])
        return float(value), float(g_alpha), flat

    return step


def timed(step, repeats: int) -> tuple[float, float, tuple]:
    """Median wall and CPU seconds (CPU counts every thread: XLA runs some of its own)."""
    result = step()  # warm-up (jax compiles here)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def fit_seconds(cache_dir: str) -> float:
    """Wall seconds of the shipped UDE fit, as a user runs it, in a new process with ``cache_dir``."""
    env = {**os.environ, "ODEDSL_CACHE_DIR": cache_dir}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "odedsl", "fit", str(UDE_FILE), str(UDE_DATA), "--out", out, "-q"],
                       env=env, check=True, capture_output=True, cwd=ROOT)
        return time.perf_counter() - start


def import_seconds(cache_dir: str) -> float:
    """Wall seconds of a new process that only imports odedsl (what ``fit_seconds`` pays before fitting)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import odedsl, odedsl.fit.run"], check=True, cwd=ROOT,
                   env={**os.environ, "ODEDSL_CACHE_DIR": cache_dir})
    return time.perf_counter() - start


def print_fit_figures() -> None:
    with tempfile.TemporaryDirectory() as cache:
        cold = fit_seconds(cache)
        warm = [fit_seconds(cache) for _ in range(3)]
        imports = import_seconds(cache)
    print("\n### The shipped UDE fit end to end (`odedsl fit models/lotka_volterra_ude.ode "
          "models/data/lotka_volterra_ude.csv`, 300 Adam iterations + L-BFGS)\n")
    print("| compile cache | wall s, whole process | of which starting Python + importing odedsl |")
    print("|---|---:|---:|")
    print(f"| empty (first run: compiles the model's module) | {cold:.2f} | {imports:.2f} |")
    print(f"| warm (median of 3) | {statistics.median(warm):.2f} | {imports:.2f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--fit", action="store_true", help="also time the shipped UDE fit, cold and warm cache")
    args = ap.parse_args(argv)
    model = benchmark_model()
    t = np.linspace(0.0, 5.0, 21)
    goal = target(t, np.array([float(s.initial) for s in model.states]))
    odedsl_step, weights, spread = odedsl_iteration(model, t, goal)
    tools = {ODEDSL: odedsl_step,
             "odedsl numba, `--gradient checkpoint` (tape bounded)": odedsl_iteration(model, t, goal, 32)[0]}
    try:
        for name, adjoint in (("RecursiveCheckpointAdjoint", "recursive"), ("BacksolveAdjoint", "backsolve")):
            tools[f"diffrax {name} (jit)"] = diffrax_iteration(model, t, goal, weights, spread, adjoint)
    except ImportError:
        print("diffrax is not installed: odedsl alone")
    info = provenance.versions(["odedsl", "numba", "jax", "diffrax"])
    print("## Compiled training: odedsl (Numba) against diffrax (jax.jit), one UDE iteration\n")
    print(f"Command: `{provenance.command_line()}` ({provenance.load_average()})\n")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in info.items()) + "\n")
    rows = {name: timed(step, args.repeats) for name, step in tools.items()}
    ref_wall, ref_cpu, (ref_loss, ref_alpha, ref_w) = rows[ODEDSL]
    print("| tool | ms / iteration (wall / CPU) | time / odedsl's (wall / CPU) | loss rel. diff | dL/dα rel. diff |"
          " dL/dW rel. diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (wall, cpu, (loss, g_alpha, g_w)) in rows.items():
        print(f"| {name} | {wall * 1e3:.2f} / {cpu * 1e3:.2f} | {wall / ref_wall:.2f}× / {cpu / ref_cpu:.2f}× | "
              f"{rel(loss, ref_loss):.1e} | {rel(g_alpha, ref_alpha):.1e} | {rel(g_w, ref_w):.1e} |")
    if args.fit:
        print_fit_figures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
