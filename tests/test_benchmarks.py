"""Smoke test of the benchmarks: the synthetic models compile and the front-end script runs.

No timing is asserted here; the figures live in docs/performance.md.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

import odedsl

from conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


synthetic = _load("synthetic")


@pytest.mark.parametrize("n", [1, 5, 50])
def test_synthetic_model_compiles_with_expected_sizes(n):
    m = odedsl.loads(synthetic.synthetic_model(n), name=f"synthetic_{n}.ode")
    assert len(m.states) == n
    assert len(m.params) == n and len(m.fitted_params) == n
    assert all(p.bounded for p in m.params)
    assert len(m.consts) == len(synthetic.CONSTS)
    assert len(m.observables) == min(synthetic.N_OBSERVES, n)
    if n >= 4:  # from 4 states on every template, hence every constant, is used
        assert m.warnings == []


def test_synthetic_model_is_coupled_and_nonlinear():
    m = odedsl.loads(synthetic.synthetic_model(50))
    states = set(m.state_symbols)
    # each equation couples its own state to at least two others (ring neighbours, far state)
    assert all(len(e.free_symbols & states) >= 3 for e in m.rhs)
    text = synthetic.synthetic_model(50)
    for construct in ("sin(", "exp(", "tanh(", "^", "/", "if ", " then ", " else "):
        assert construct in text


def test_synthetic_model_is_deterministic_for_a_seed():
    assert synthetic.synthetic_model(30, seed=3) == synthetic.synthetic_model(30, seed=3)
    assert synthetic.synthetic_model(30, seed=3) != synthetic.synthetic_model(30, seed=4)


def test_synthetic_model_rejects_no_states():
    with pytest.raises(ValueError, match="at least 1"):
        synthetic.synthetic_model(0)


def test_frontend_script_smoke(tmp_path):
    out = tmp_path / "frontend.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "frontend.py"), "--sizes", "20", "50", "--repeats", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "parse s" in proc.stdout and "loads s" in proc.stdout
    result = json.loads(out.read_text())
    assert [r["states"] for r in result["rows"]] == [20, 50]
    assert all(r["total_s"] > 0 for r in result["rows"])


def test_frontend_script_usage_error_exits_two():
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "frontend.py"), "--repeats", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--repeats" in proc.stderr


def test_solver_benchmark_pieces_are_correct():
    """The solver benchmark compares like with like: its floor and its scipy Jacobians are right."""
    import numpy as np

    from benchmarks import solvers
    from benchmarks.floor import dopri5_lv

    out = np.empty((solvers.T_EVAL.size, 2))
    dopri5_lv(solvers.T_EVAL, solvers.Y0, solvers.P_LV, solvers.RTOL, solvers.ATOL, out)
    ref = odedsl.load(ROOT / "models" / "lotka_volterra.ode").simulate(solvers.T_EVAL, rtol=1e-10, atol=1e-12).y
    np.testing.assert_allclose(out, ref, atol=1e-4)
    rng = np.random.default_rng(0)
    for _, (_, rhs, jac, y0, _) in solvers.STIFF.items():
        y = np.abs(np.asarray(y0)) + rng.uniform(0.1, 1.0, len(y0))
        eps = 1e-7
        fd = np.column_stack([(rhs(0, y + eps * e) - rhs(0, y - eps * e)) / (2 * eps) for e in np.eye(len(y))])
        np.testing.assert_allclose(jac(0, y), fd, rtol=1e-6, atol=1e-3)


def _torch_training():
    pytest.importorskip("torch")
    return _load("torch_training")


def test_torch_training_peer_vector_fields_are_the_odedsl_models():
    """The peers solve the same problems: the hand-written modules equal odedsl's, weight for weight."""
    import torch

    tt = _torch_training()
    gen = torch.Generator().manual_seed(1)
    tm = odedsl.load(tt.UDE_FILE).to_torch(dtype=torch.float64)
    p = tm.params()
    func = tt.LotkaVolterraUDE(tt.sequential_like(tm.nets[0]), p["alpha"], p["delta"])
    y = torch.rand(7, 2, generator=gen, dtype=torch.float64) * 5
    torch.testing.assert_close(func(0.0, y), tm(0.0, y), rtol=1e-12, atol=1e-12)
    for path in (tt.NODE_FILE, tt.SPIRAL_FILE):
        tm = odedsl.load(path).to_torch(dtype=torch.float64)
        n = len(tm.model.states)
        y = torch.randn(5, n, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(tt.NeuralODE(tt.sequential_like(tm.nets[0]))(0.0, y), tm(0.0, y),
                                   rtol=1e-12, atol=1e-12)


def test_torch_training_script_runs_without_peers(monkeypatch, capsys, tmp_path):
    """CI has neither torchdiffeq nor torchode: the script then measures odedsl alone."""
    tt = _torch_training()
    monkeypatch.setattr(tt, "peers", dict)
    out = tmp_path / "torch_training.json"
    assert tt.main(["--quick", "--only", "ude", "--threads", "0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Not installed, skipped: torchdiffeq, torchode." in text
    rows = json.loads(out.read_text())["ude"]["tables"]["float64"]
    assert list(rows) == ["odedsl backprop", "odedsl checkpoint", "odedsl adjoint", "odedsl numba (compiled)"]
    compiled = rows.pop("odedsl numba (compiled)")
    assert all(r["calls_fwd"] > 0 and r["error"] < 1e-4 for r in rows.values())
    assert rows["odedsl checkpoint"]["d_weights"] < 1e-10  # the same discrete gradient as backprop
    assert rows["odedsl adjoint"]["d_weights"] < 1e-4
    # the compiled discrete adjoint: the same loss and gradients as Torch backprop through the same steps
    assert compiled["d_loss"] < 1e-12 and compiled["d_alpha"] < 1e-9 and compiled["d_weights"] < 1e-9


def test_torch_training_script_smoke(capsys, tmp_path):
    """A quick run against the peers: every tool runs, and all agree on the loss and its gradients."""
    tt = _torch_training()
    pytest.importorskip("torchdiffeq")
    pytest.importorskip("torchode")
    out = tmp_path / "torch_training.json"
    assert tt.main(["--quick", "--threads", "0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| tool | gradient |" in text and "peer / odedsl" in text
    result = json.loads(out.read_text())
    tools = ["odedsl backprop", "odedsl checkpoint", "odedsl adjoint", "torchdiffeq odeint",
             "torchdiffeq odeint_adjoint", "torchode"]
    ude = result["ude"]["tables"]["float64"]
    assert list(ude) == [*tools, "odedsl numba (compiled)"]
    assert ude.pop("odedsl numba (compiled)")["d_weights"] < 1e-9
    for r in ude.values():
        assert r["d_loss"] < 1e-4 and r["d_alpha"] < 1e-4 and r["d_weights"] < 1e-4, r
        assert r["calls_fwd"] > 0 and r["wall_s"] > 0
    assert ude["torchdiffeq odeint"]["ratio"] > 0
    node = result["node"]["rows"]
    assert list(node) == tools
    for name, r in node.items():
        assert r["d_loss"] < 1e-4 and r["d_weights"] < 1e-3, (name, r)  # float32
        assert r["saved_bytes"] >= 0 and r["saved_peak_bytes"] >= r["saved_bytes"]
    # backprop keeps every step's graph; the adjoints only their inputs and outputs
    assert node["odedsl backprop"]["saved_bytes"] > 10 * node["odedsl adjoint"]["saved_bytes"]
    assert "spiral" in result


def _fitting():
    pytest.importorskip("torch")
    return _load("fitting")


def test_fitting_script_runs_without_torchdiffeq(monkeypatch, capsys, tmp_path):
    """CI has no torchdiffeq: the least-squares comparison (scipy is a dependency) runs in full and finds
    odedsl's optimum; the UDE fit runs for odedsl alone."""
    fitting = _fitting()
    monkeypatch.setattr(fitting, "peers", dict)
    out = tmp_path / "fitting.json"
    assert fitting.main(["--quick", "--threads", "0", "--ude-iters", "3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Not installed, skipped: torchdiffeq." in text and "| tool |" in text
    result = json.loads(out.read_text())
    lsq = result["lsq"]["rows"]
    assert list(lsq) == ["odedsl Model.fit", "scipy, odedsl's optimiser options", "scipy, default options"]
    for r in lsq.values():
        assert r["d_x"] < 1e-3 and r["d_loss"] < 1e-3, r  # the same optimum
        assert r["cpu_s"] > 0 and r["solves"] > 0
    assert max(abs(a - b) / b for a, b in zip(lsq["odedsl Model.fit"]["x"], fitting.LSQ_TRUE)) < 0.05
    ude = result["ude"]["rows"]
    assert list(ude) == [fitting.UDE_NUMBA, fitting.UDE_TORCH]
    r = ude[fitting.UDE_TORCH]
    assert r["iterations"] == 3 and r["calls_per_iter"] > 0 and r["best"] < r["first_loss"]
    compiled = ude[fitting.UDE_NUMBA]
    assert compiled["iterations"] == 3 and abs(compiled["best"] - r["best"]) < 1e-8 * abs(r["first_loss"])


def test_fitting_script_ude_smoke(capsys, tmp_path):
    """With torchdiffeq: the hand-written training starts from the same weights with the same loss, and
    the two Adam runs stay together."""
    fitting = _fitting()
    pytest.importorskip("torchdiffeq")
    out = tmp_path / "fitting.json"
    assert fitting.main(["--quick", "--only", "ude", "--threads", "0", "--ude-iters", "3", "--json", str(out)]) == 0
    assert "| torchdiffeq odeint + torch.optim.Adam |" in capsys.readouterr().out
    rows = json.loads(out.read_text())["ude"]["rows"]
    assert list(rows) == [fitting.UDE_NUMBA, fitting.UDE_TORCH, "torchdiffeq odeint + torch.optim.Adam"]
    peer = rows["torchdiffeq odeint + torch.optim.Adam"]
    assert peer["d_first_loss"] < 1e-5  # same initial weights and alpha, same loss (up to the solvers' error)
    ref = rows[fitting.UDE_NUMBA]
    assert abs(peer["best"] - ref["best"]) < 1e-3 * abs(ref["first_loss"])
    assert abs(peer["alpha"] - ref["alpha"]) < 1e-3


def test_compiled_training_script_smoke(capsys):
    """odedsl's compiled iteration runs (and, where diffrax is installed, diffrax beside it, with agreeing
    losses and gradients up to the two solvers' step sequences)."""
    ct = _load("compiled_training")
    assert ct.main(["--repeats", "2"]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| odedsl") or line.startswith("| diffrax")]
    assert rows[0].startswith(f"| {ct.ODEDSL} |") and "checkpoint" in rows[1]
    for row in rows[1:]:
        loss, alpha, weights = (float(x) for x in row.strip("| ").split(" | ")[-3:])
        assert loss < 1e-4 and alpha < 1e-3 and weights < 1e-3, row
