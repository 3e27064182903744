"""odedsl's Numba backend against its peers, side by side in one run.

    bash benchmarks/setup_env.sh                # once: .venv-bench with the peers
    .venv-bench/bin/python benchmarks/solvers.py [--quick] [--json OUT]

Problems (as in ../shared/reference/peers.md): Lotka–Volterra dx = 1.5x - xy,
dy = xy - 3y, x0 = y0 = 1, t in [0, 10], 101 outputs, rtol 1e-6, atol 1e-8;
an ensemble of 10,000 Lotka–Volterra parameter sets (+-20%), final state only;
the stiff Robertson (t in [0, 1e5], rtol 1e-6, atol 1e-10) and HIRES (t in
[0, 321.8122], rtol 1e-6, atol 1e-10) problems, with the accuracy each tool
reaches at the final time against a tight-tolerance reference.
Times are medians after warm-up; compile time is reported separately. Peers that
are not installed are skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's odedsl first

import numpy as np  # noqa: E402

RTOL, ATOL = 1e-6, 1e-8
T_EVAL = np.linspace(0.0, 10.0, 101)
P_LV = np.array([1.5, 1.0, 1.0, 3.0])
Y0 = np.array([1.0, 1.0])


def median_time(fn, repeats: int, inner: int = 1) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def lv_python(t, y):
    return [1.5 * y[0] - y[0] * y[1], y[0] * y[1] - 3.0 * y[1]]


def bench_single(quick: bool) -> dict[str, float]:
    import odedsl
    from benchmarks.floor import dopri5_lv
    from scipy.integrate import solve_ivp

    reps = 5 if quick else 21
    results: dict[str, float] = {}
    model = odedsl.load(Path(__file__).resolve().parents[1] / "models" / "lotka_volterra.ode")
    start = time.perf_counter()
    model.simulate(T_EVAL, rtol=RTOL, atol=ATOL)
    results["odedsl compile + first solve (s)"] = time.perf_counter() - start
    results["odedsl simulate() dopri5"] = median_time(lambda: model.simulate(T_EVAL, rtol=RTOL, atol=ATOL), reps, 50)
    results["odedsl simulate() tsit5"] = median_time(
        lambda: model.simulate(T_EVAL, method="tsit5", rtol=RTOL, atol=ATOL), reps, 50)
    out = np.empty((T_EVAL.size, 2))
    results["hand-written @njit dopri5 (floor)"] = median_time(
        lambda: dopri5_lv(T_EVAL, Y0, P_LV, RTOL, ATOL, out), reps, 200)
    results["scipy solve_ivp RK45, Python rhs"] = median_time(
        lambda: solve_ivp(lv_python, (0, 10), Y0, t_eval=T_EVAL, rtol=RTOL, atol=ATOL), reps, 3)
    try:
        import numba

        nb_rhs = numba.njit(lambda t, y: np.array([1.5 * y[0] - y[0] * y[1], y[0] * y[1] - 3.0 * y[1]]))
        results["scipy solve_ivp RK45, Numba rhs"] = median_time(
            lambda: solve_ivp(nb_rhs, (0, 10), Y0, t_eval=T_EVAL, rtol=RTOL, atol=ATOL), reps, 3)
    except ImportError:
        pass
    try:
        import numbalsoda
        from numba import cfunc

        @cfunc(numbalsoda.lsoda_sig)
        def lv_c(t, u, du, p):
            du[0] = 1.5 * u[0] - u[0] * u[1]
            du[1] = u[0] * u[1] - 3.0 * u[1]

        addr = lv_c.address
        results["numbalsoda dop853"] = median_time(
            lambda: numbalsoda.dop853(addr, Y0, T_EVAL, rtol=RTOL, atol=ATOL), reps, 200)
        results["numbalsoda lsoda"] = median_time(
            lambda: numbalsoda.lsoda(addr, Y0, T_EVAL, rtol=RTOL, atol=ATOL), reps, 200)
    except ImportError:
        print("numbalsoda not installed: skipped", file=sys.stderr)
    return results


def bench_ensemble(quick: bool) -> dict[str, float]:
    """Trajectories per second for N Lotka–Volterra parameter sets, final state only."""
    import odedsl
    from benchmarks.floor import dopri5_lv_ensemble

    n = 2000 if quick else 10_000
    rng = np.random.default_rng(0)
    P = P_LV * rng.uniform(0.8, 1.2, size=(n, 4))
    t = np.array([0.0, 10.0])
    model = odedsl.load(Path(__file__).resolve().parents[1] / "models" / "lotka_volterra.ode")
    names = ["alpha", "beta", "delta", "gamma"]
    params = {k: P[:, j] for j, k in enumerate(names)}
    results = {}
    reps = 3 if quick else 7
    sec = median_time(lambda: model.simulate_ensemble(t, params=params, rtol=RTOL, atol=ATOL), reps)
    results["odedsl simulate_ensemble dopri5"] = n / sec
    out = np.empty((n, 2, 2))
    sec = median_time(lambda: dopri5_lv_ensemble(t, Y0, P, RTOL, ATOL, out), reps)
    results["hand-written @njit dopri5, prange (floor)"] = n / sec
    try:
        import numbalsoda
        from numba import cfunc, njit, prange

        @cfunc(numbalsoda.lsoda_sig)
        def lv_c(t, u, du, p):
            du[0] = p[0] * u[0] - p[1] * u[0] * u[1]
            du[1] = p[2] * u[0] * u[1] - p[3] * u[1]

        addr = lv_c.address

        @njit(parallel=True)
        def run(P, out):
            for k in prange(P.shape[0]):
                usol, _ = numbalsoda.dop853(addr, Y0, t, data=P[k], rtol=RTOL, atol=ATOL)
                out[k] = usol[-1]

        res = np.empty((n, 2))
        sec = median_time(lambda: run(P, res), reps)
        results["numbalsoda dop853, prange"] = n / sec
    except ImportError:
        pass
    return results


ROOT = Path(__file__).resolve().parents[1]


def robertson_rhs(t, y):
    return np.array([-0.04 * y[0] + 1e4 * y[1] * y[2], 0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2,
                     3e7 * y[1] ** 2])


def robertson_jac(t, y):
    return np.array([[-0.04, 1e4 * y[2], 1e4 * y[1]], [0.04, -1e4 * y[2] - 6e7 * y[1], -1e4 * y[1]],
                     [0.0, 6e7 * y[1], 0.0]])


def hires_rhs(t, y):
    return np.array([
        -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007, 1.71 * y[0] - 8.75 * y[1],
        -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4], 8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3],
        -1.745 * y[4] + 0.43 * y[5] + 0.43 * y[6],
        -280 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6],
        280 * y[5] * y[7] - 1.81 * y[6], -280 * y[5] * y[7] + 1.81 * y[6]])


def hires_jac(t, y):
    J = np.zeros((8, 8))
    J[0, :3] = [-1.71, 0.43, 8.32]
    J[1, :2] = [1.71, -8.75]
    J[2, 2:5] = [-10.03, 0.43, 0.035]
    J[3, 1:4] = [8.32, 1.71, -1.12]
    J[4, 4:7] = [-1.745, 0.43, 0.43]
    J[5, 3:8] = [0.69, 1.71, -0.43 - 280 * y[7], 0.69, -280 * y[5]]
    J[6, 5:8] = [280 * y[7], -1.81, 280 * y[5]]
    J[7, 5:8] = [-280 * y[7], 1.81, -280 * y[5]]
    return J


STIFF = {
    # name: (model file, scipy rhs, scipy jac, y0, t_end)
    "Robertson": (ROOT / "models" / "robertson.ode", robertson_rhs, robertson_jac, [1.0, 0.0, 0.0], 1e5),
    "HIRES": (ROOT / "tests" / "models" / "hires.ode", hires_rhs, hires_jac,
              [1.0, 0, 0, 0, 0, 0, 0, 0.0057], 321.8122),
}


def bench_stiff(quick: bool) -> dict[str, dict[str, tuple[float, float]]]:
    """Per problem: tool -> (seconds per solve, max relative error at the end vs a tight reference)."""
    import odedsl
    from scipy.integrate import solve_ivp

    rtol, atol = 1e-6, 1e-10
    reps = 3 if quick else 11
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for problem, (path, rhs, jac, y0, t_end) in STIFF.items():
        model = odedsl.load(path)
        t = np.array([0.0, t_end])
        ref = model.simulate(t, method="rodas5p", rtol=1e-12, atol=1e-16).y[-1]
        big = np.abs(ref) > 1e3 * atol

        def rel(y):
            return float(np.max(np.abs(y[big] - ref[big]) / np.abs(ref[big])))

        res = {}
        for method in ("rodas5p", "bdf", "auto"):
            sec = median_time(lambda: model.simulate(t, method=method, rtol=rtol, atol=atol), reps, 5)
            res[f"odedsl {method}"] = (sec, rel(model.simulate(t, method=method, rtol=rtol, atol=atol).y[-1]))
        for method in ("BDF", "Radau", "LSODA"):
            def run():
                return solve_ivp(rhs, (0, t_end), y0, method=method, jac=jac, rtol=rtol, atol=atol)
            sec = median_time(run, max(1, reps // 3))
            res[f"scipy {method} (analytic Jacobian)"] = (sec, rel(run().y[:, -1]))
        try:
            import numbalsoda
            from numba import cfunc, njit

            nb_rhs = njit(rhs)
            n_states = len(y0)

            @cfunc(numbalsoda.lsoda_sig)
            def c_rhs(t_, u, du, p):
                y = np.empty(n_states)
                for i in range(n_states):
                    y[i] = u[i]
                d = nb_rhs(t_, y)
                for i in range(n_states):
                    du[i] = d[i]

            addr = c_rhs.address
            y0a = np.array(y0)
            sec = median_time(lambda: numbalsoda.lsoda(addr, y0a, t, rtol=rtol, atol=atol), reps, 5)
            res["numbalsoda lsoda"] = (sec, rel(numbalsoda.lsoda(addr, y0a, t, rtol=rtol, atol=atol)[0][-1]))
        except ImportError:
            pass
        out[problem] = res
    return out


def bench_cli() -> dict[str, float]:
    """Whole `odedsl simulate` processes: cold (empty compile cache) and warm."""
    import os
    import subprocess
    import tempfile

    cmd = [sys.executable, "-m", "odedsl", "simulate", str(ROOT / "models" / "lotka_volterra.ode"), "--t-end", "10"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as cache:
        env["ODEDSL_CACHE_DIR"] = cache
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        cold = time.perf_counter() - start
        warm = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            warm.append(time.perf_counter() - start)
    return {"cold (first run, compiles)": cold, "warm (cached)": statistics.median(warm)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and a smaller ensemble (a smoke run)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    single = bench_single(args.quick)
    floor = single["hand-written @njit dopri5 (floor)"]
    print("Lotka–Volterra, one solve (median time; ratio to the hand-written floor)")
    for k, v in single.items():
        if k.endswith("(s)"):
            print(f"  {k:45s} {v:8.2f} s")
        else:
            print(f"  {k:45s} {v * 1e6:10.1f} us   {v / floor:7.2f}x")
    ens = bench_ensemble(args.quick)
    print("Lotka–Volterra ensemble (trajectories per second, 2 cores)")
    for k, v in ens.items():
        print(f"  {k:45s} {v:12,.0f}/s")
    stiff = bench_stiff(args.quick)
    for problem, res in stiff.items():
        print(f"{problem} (rtol 1e-6, atol 1e-10): time per solve, ratio to odedsl rodas5p, max rel. error at t_end")
        base = res["odedsl rodas5p"][0]
        for k, (sec, err) in res.items():
            print(f"  {k:45s} {sec * 1e3:10.3f} ms  {sec / base:8.1f}x   {err:9.1e}")
    cli = bench_cli()
    print("Whole CLI process: odedsl simulate models/lotka_volterra.ode --t-end 10")
    for k, v in cli.items():
        print(f"  {k:45s} {v:8.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"single_s": single, "ensemble_per_s": ens, "stiff": stiff, "cli_s": cli}, indent=2))


if __name__ == "__main__":
    main()
