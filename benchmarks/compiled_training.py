"""Compiled training on the CPU: odedsl's Numba discrete adjoint against diffrax under ``jax.jit``.

One training iteration of the Lotka–Volterra UDE (MLP 2→32→32→2 tanh; α trained,
δ fixed), t ∈ [0, 5], 21 outputs, dopri5, rtol = atol = 1e-6, float64: solve,
MSE against the full Lotka–Volterra solution, gradient with respect to α and
every weight. Both tools hold the same weights; the gradients are compared.

    .venv-bench/bin/python benchmarks/compiled_training.py [--repeats N]

odedsl: ``odedsl.gradient.CompiledSolve`` (one taped forward solve, the MSE's
cotangent in NumPy, one compiled replay + backward pass). diffrax: ``Dopri5``
with a ``PIDController`` at the same tolerances, ``SaveAt(ts=...)``, its default
``RecursiveCheckpointAdjoint`` and ``BacksolveAdjoint``, ``jax.jit`` of
``jax.value_and_grad``; compile time excluded (one warm-up call each).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's odedsl first

import numpy as np  # noqa: E402

import odedsl  # noqa: E402
from benchmarks import provenance  # noqa: E402

UDE_FILE = ROOT / "models" / "lotka_volterra_ude.ode"
TOL = 1e-6
TRUE = {"alpha": 1.3, "beta": 0.9, "gamma": 0.8, "delta": 1.8}


def target(t: np.ndarray, y0: np.ndarray) -> np.ndarray:
    from scipy.integrate import solve_ivp

    a, b, c, d = (TRUE[k] for k in ("alpha", "beta", "gamma", "delta"))
    return solve_ivp(lambda _, y: [a * y[0] - b * y[0] * y[1], c * y[0] * y[1] - d * y[1]], (t[0], t[-1]), y0,
                     t_eval=t, method="DOP853", rtol=1e-12, atol=1e-12).y.T


def odedsl_iteration(model, t, goal):
    """A closure doing one iteration; returns (loss, dL/dalpha, dL/dweights)."""
    from odedsl.gradient import CompiledSolve
    from odedsl.nets import init_weights

    solver = CompiledSolve(model, "dopri5", TOL, TOL)
    p = np.array([q.value for q in model.params])
    w = init_weights(model, 0)
    margs = (p, w, np.zeros(1), np.zeros((1, 0)))
    y0 = np.array([float(s.initial) for s in model.states])
    alpha = [q.name for q in model.params].index("alpha")

    def step():
        out, tape = solver.forward(t, y0, margs)
        g = 2.0 * (out - goal) / goal.size
        _, gp, gw = solver.backward(t, y0, margs, tape, g, out)
        return float(((out - goal) ** 2).mean()), float(gp[alpha]), gw

    return step, w


def diffrax_iteration(model, t, goal, weights, adjoint: str):
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
    ts, gl = jnp.array(t), jnp.array(goal)
    adj = diffrax.RecursiveCheckpointAdjoint() if adjoint == "recursive" else diffrax.BacksolveAdjoint()

    def loss(params):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Dopri5(), t0=t[0], t1=t[-1], dt0=None, y0=y0,
                                  args=params, saveat=diffrax.SaveAt(ts=ts),
                                  stepsize_controller=diffrax.PIDController(rtol=TOL, atol=TOL), adjoint=adj,
                                  max_steps=100_000)
        return jnp.mean((sol.ys - gl) ** 2)

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args(argv)
    model = odedsl.load(UDE_FILE)
    t = np.linspace(0.0, 5.0, 21)
    goal = target(t, np.array([float(s.initial) for s in model.states]))
    odedsl_step, weights = odedsl_iteration(model, t, goal)
    tools = {"odedsl numba (discrete adjoint)": odedsl_step}
    try:
        tools["diffrax RecursiveCheckpointAdjoint (jit)"] = diffrax_iteration(model, t, goal, weights, "recursive")
        tools["diffrax BacksolveAdjoint (jit)"] = diffrax_iteration(model, t, goal, weights, "backsolve")
    except ImportError:
        print("diffrax is not installed: odedsl alone")
    info = provenance.versions(["odedsl", "numba", "jax", "diffrax"])
    print("## Compiled training: odedsl (Numba) against diffrax (jax.jit), one UDE iteration\n")
    print(f"Command: `{' '.join(['.venv-bench/bin/python', 'benchmarks/compiled_training.py', *(argv or sys.argv[1:])])}`\n")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in info.items()) + "\n")
    rows = {name: timed(step, args.repeats) for name, step in tools.items()}
    ref_wall, ref_cpu, (ref_loss, ref_alpha, ref_w) = rows["odedsl numba (discrete adjoint)"]
    print("| tool | ms / iteration (wall / CPU) | time / odedsl's (wall / CPU) | loss rel. diff | dL/dα rel. diff |"
          " dL/dW rel. diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (wall, cpu, (loss, g_alpha, g_w)) in rows.items():
        print(f"| {name} | {wall * 1e3:.2f} / {cpu * 1e3:.2f} | {wall / ref_wall:.2f}× / {cpu / ref_cpu:.2f}× | "
              f"{rel(loss, ref_loss):.1e} | {rel(g_alpha, ref_alpha):.1e} | {rel(g_w, ref_w):.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
