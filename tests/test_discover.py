"""odedsl discover: the regression alone, end to end on the UDE example, the file written, and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sympy
from scipy.integrate import solve_ivp

import odedsl
from odedsl.cli import main
from odedsl.discover.library import build_library, evaluate
from odedsl.discover.options import Options
from odedsl.discover.regression import regress
from odedsl.discover.writer import to_ode
from odedsl.fit.result import FitResult
from odedsl.nets import init_weights

pytest.importorskip("pysindy")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]
UDE = ROOT / "models" / "lotka_volterra_ude.ode"
LV = ROOT / "models" / "lotka_volterra.ode"
DATA = ROOT / "models" / "data" / "lotka_volterra_ude.csv"
# The paper's system: dx = αx − βxy, dy = γxy − δy (names of models/lotka_volterra.ode: delta is γ, gamma is δ).
TRUE = {"alpha": 1.3, "beta": 0.9, "delta": 0.8, "gamma": 1.8}
X0 = (0.44249296, 4.6280594)


def lotka_volterra(t_end: float, y0=X0, n: int = 301) -> tuple[np.ndarray, np.ndarray]:
    def rhs(_, z):
        x, y = z
        return [1.3 * x - 0.9 * x * y, 0.8 * x * y - 1.8 * y]

    t = np.linspace(0, t_end, n)
    return t, solve_ivp(rhs, (0, t_end), list(y0), t_eval=t, rtol=1e-10, atol=1e-12).y.T


# -- the regression alone: the net replaced by the exact interaction ------------------------------------------

@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_regression_recovers_the_interaction_terms(noise):
    model = odedsl.load(UDE)
    net = model.nets[0]
    call = model.net_calls()[0]
    lib = build_library(model, net, call.args, Options(degree=3), [])
    assert len(lib) == 10  # 1, x, y, x², xy, y², x³, x²y, xy², y³
    t, states = lotka_volterra(3.0, n=200)
    where = np.column_stack([t, states])
    theta = evaluate(lib.exprs(call.args), [model.time, *model.state_symbols], where, {})
    x, y = states.T
    exact = np.column_stack([-0.9 * x * y, 0.8 * x * y])
    rng = np.random.default_rng(1)
    targets = exact + noise * np.sqrt(np.mean(exact ** 2, 0)) * rng.standard_normal(exact.shape)
    folds = np.minimum(np.arange(200) * 5 // 200, 4)
    xy = [f.label for f in lib.features].index("prey_pred")
    for front, truth in zip(regress(theta, targets, folds), (-0.9, 0.8)):
        assert front.chosen.support == (xy,)  # that term and no other
        assert front.chosen.coef[xy] == pytest.approx(truth, rel=0.01)
        assert front.chosen.error <= noise + 1e-6
    for front in regress(theta, targets, folds, optimizer="stlsq", select="aic") if noise == 0 else []:
        assert front.chosen.support == (xy,)


# -- end to end on the UDE example ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The shipped UDE model trained on synthetic noisy data from the true system.

    The shipped data (one experiment, t in [0, 3]) cannot tell -βxy in the prey equation from -cy or -cy²
    (docs/discover.md, "Limits"), so this adds a second experiment started at (2, 0.5), made the same way:
    5 % noise of each series' mean, 31 times on [0, 3].
    """
    d = tmp_path_factory.mktemp("discover")
    lv = odedsl.load(LV)
    t = np.round(np.linspace(0, 3, 31), 10)
    rng = np.random.default_rng(2020)
    lines = ["experiment,t,prey_count,pred_count,prey,pred"]
    for e, (x0, y0) in enumerate([X0, (2.0, 0.5)]):
        sol = lv.simulate(t, params=TRUE, y0={"prey": x0, "pred": y0}, method="dop853", rtol=1e-10, atol=1e-12)
        noisy = [v + 0.05 * v.mean() * rng.standard_normal(v.size) for v in (sol["prey"], sol["pred"])]
        lines += [f"{e},{t[i]:g},{noisy[0][i]:.7g},{noisy[1][i]:.7g}," + (f"{x0},{y0}" if i == 0 else ",")
                  for i in range(t.size)]
    (d / "lv2.csv").write_text("\n".join(lines) + "\n")
    result = odedsl.load(UDE).fit(d / "lv2.csv", max_iters=1000, polish_iters=300, seed=0, y0_from_data=True)
    result.save(d / "fit")
    return d / "fit"


@pytest.fixture(scope="module")
def discovered(trained) -> tuple[Path, int, str]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["discover", str(trained)])
    return trained / "discover", code, buf.getvalue()


def test_end_to_end_recovers_the_interaction(discovered):
    folder, code, printed = discovered
    assert code == 0, printed
    model = odedsl.load(folder / "discovered.ode")
    assert not model.nets  # both outputs replaced: the nn declaration is gone
    prey, pred = model.state_symbols
    alpha, delta = model.param("alpha").symbol, model.param("delta").symbol
    b, g = sympy.Symbol("U_0_prey_pred", real=True), sympy.Symbol("U_1_prey_pred", real=True)
    assert sympy.simplify(model.rhs[0] - (alpha * prey + b * prey * pred)) == 0
    assert sympy.simplify(model.rhs[1] - (-delta * pred + g * prey * pred)) == 0
    refit = json.loads((folder / "refit" / "params.json").read_text())["params"]
    assert refit["U_0_prey_pred"] == pytest.approx(-0.9, rel=0.10)
    assert refit["U_1_prey_pred"] == pytest.approx(0.8, rel=0.10)
    assert refit["alpha"] == pytest.approx(1.3, rel=0.10)
    assert "verdict: the discovered model fits the data about as well as the hybrid" in printed
    for name in ("discover.png", "extrapolation.png", "candidates.csv"):
        assert (folder / name).stat().st_size > 0


def test_refitted_model_extrapolates_to_ten_times_the_window(discovered):
    folder, code, _ = discovered
    fit = odedsl.load_fit(folder / "refit")
    t, truth = lotka_volterra(30.0, n=601)  # the data span [0, 3]
    sol = fit.simulate(t, y0=dict(zip(["prey", "pred"], X0)), rtol=1e-10, atol=1e-12)
    rms = np.sqrt(np.mean((sol.y - truth) ** 2, axis=0)) / truth.std(axis=0)
    worst = np.abs(sol.y - truth).max(axis=0) / np.abs(truth).max(axis=0)
    assert np.all(rms < 0.3), rms  # measured 0.15, 0.17: the oscillation kept, its phase drifting slowly
    assert np.all(worst < 0.4), worst


def test_written_file_round_trips_through_check(discovered, capsys):
    folder, _, _ = discovered
    path = folder / "discovered.ode"
    assert main(["check", str(path)]) == 0
    assert main(["show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "d(prey)/dt = U_0_prey_pred*pred*prey + alpha*prey" in shown
    text = path.read_text()
    assert text.startswith("# Discovered by odedsl")
    assert "from the fit in" in text and "Library: polynomials of degree <= 3" in text
    assert "nn U" not in text


def test_python_api(trained):
    fit = odedsl.load_fit(trained)
    found = fit.discover(refit=False)
    first, second = found.table
    assert second["terms"] == ["prey_pred"]  # before the refit, the prey equation may carry a small extra term
    assert "prey_pred" in first["terms"] and len(first["terms"]) <= 2  # that the refit drops (see above)
    assert second["coefficients"][0] == pytest.approx(0.8, rel=0.10)
    assert first["coefficients"][first["terms"].index("prey_pred")] == pytest.approx(-0.9, rel=0.25)
    assert sum(row["chosen"] for row in found.candidates) == 2
    assert sum(found.timings.values()) < 5.0  # a guard; the figure (under 2 s) is measured in docs/performance.md
    assert found.model.simulate([0.0, 1.0]).y.shape == (2, 2)


# -- the printer and partial replacement ----------------------------------------------------------------------

def test_printer_writes_the_language():
    x, y = sympy.symbols("x y", real=True)
    expr = sympy.Piecewise((x, (x > 1) & (y <= 2)), (sympy.Abs(y), True)) + sympy.Max(x, 2) + sympy.exp(1) * x
    text = to_ode(expr)
    m = odedsl.loads(f"state x = 1\nstate y = 1\nder(x) = {text}\nder(y) = 0\n")
    assert sympy.simplify(m.rhs[0] - expr) == 0


def hybrid_folder(tmp_path: Path) -> Path:
    """A fit folder of the UDE model at its initial weights: enough for discover's checks, no training."""
    model = odedsl.load(UDE)
    result = FitResult(model, {p.name: p.value for p in model.params}, init_weights(model), -1.0,
                       settings={"method": "dopri5"}, data_file=str(DATA))
    return result.save(tmp_path / "fit")


def test_an_output_no_expression_explains_keeps_the_net(tmp_path):
    folder = hybrid_folder(tmp_path)
    assert main(["discover", str(folder), "--max-error", "1e-9", "--degree", "1", "--no-refit"]) == 0
    text = (folder / "discover" / "discovered.ode").read_text()
    assert "# still learned: outputs 0, 1 of U" in text
    assert "nn U: 2 -> 2, hidden = [32, 32], activation = tanh" in text
    assert main(["check", str(folder / "discover" / "discovered.ode")]) == 0


# -- bad input: a message naming what and where, the exit code, nothing written --------------------------------

def run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_fit_without_neural_terms(tmp_path, capsys):
    model = odedsl.load(ROOT / "models" / "exponential_decay.ode")
    folder = FitResult(model, {p.name: p.value for p in model.params}, np.zeros(0), 0.0).save(tmp_path / "fit")
    code, err = run(["discover", str(folder)], capsys)
    assert code == 1
    assert "has no neural terms" in err and str(folder) in err
    assert not (folder / "discover").exists()


def test_missing_weights(tmp_path, capsys):
    folder = hybrid_folder(tmp_path)
    (folder / "weights.npz").unlink()
    code, err = run(["discover", str(folder)], capsys)
    assert code == 1 and "weights.npz: missing" in err
    assert not (folder / "discover").exists()


def test_corrupt_weights(tmp_path, capsys):
    folder = hybrid_folder(tmp_path)
    (folder / "weights.npz").write_bytes(b"not a numpy file")
    code, err = run(["discover", str(folder)], capsys)
    assert code == 1 and "weights.npz: not a readable weights file" in err
    assert not (folder / "discover").exists()


def test_not_a_fit_folder(tmp_path, capsys):
    code, err = run(["discover", str(tmp_path / "nowhere")], capsys)
    assert code == 1 and "no such fit folder" in err


def test_unknown_library_family(tmp_path, capsys):
    folder = hybrid_folder(tmp_path)
    code, err = run(["discover", str(folder), "--library", "poly2,bessel"], capsys)
    assert code == 2
    assert "unknown family 'bessel'" in err and "exp, sin, cos, log, rational" in err
    assert not (folder / "discover").exists()


def test_library_larger_than_the_samples(tmp_path, capsys):
    folder = hybrid_folder(tmp_path)
    code, err = run(["discover", str(folder), "--degree", "8", "--samples", "30"], capsys)
    assert code == 2
    assert "the library has 45 candidates per output of U" in err and "only 30 samples" in err
    assert not (folder / "discover").exists()


def test_bad_term_is_located_in_its_text(tmp_path, capsys):
    folder = hybrid_folder(tmp_path)
    code, err = run(["discover", str(folder), "--term", "prey/(1 + predd)"], capsys)
    assert code == 1
    assert "--term 1:1:11: error: 'predd' is not declared" in err
    assert "prey/(1 + predd)" in err and "^~~~~" in err and "did you mean 'pred'?" in err
    code, err = run(["discover", str(folder), "--term", "prey +* pred"], capsys)
    assert code == 1 and "--term 1:1:7: error: unexpected '*'" in err
    assert not (folder / "discover").exists()


def test_term_outside_its_domain(tmp_path, capsys):
    folder = hybrid_folder(tmp_path)
    code, err = run(["discover", str(folder), "--term", "log(prey - 1)"], capsys)
    assert code == 2 and "--term 'log(prey - 1)': the candidate log(prey - 1) is not finite" in err
    assert not (folder / "discover").exists()


def test_user_term_enters_the_library(tmp_path):
    folder = hybrid_folder(tmp_path)
    fit = odedsl.load_fit(folder)
    found = fit.discover(terms=("prey/(1 + pred)",), library="exp", degree=1, refit=False)
    labels = [f.label for f in found.outputs[0].library.features]
    assert labels == ["1", "prey", "pred", "exp_prey", "exp_pred", "prey_pred_1"]


def test_unknown_python_option(tmp_path):
    fit = odedsl.load_fit(hybrid_folder(tmp_path))
    with pytest.raises(odedsl.UsageError, match="unknown discover option 'degre'"):
        fit.discover(degre=2)
    shutil.rmtree(tmp_path / "fit")
