"""Fitting (issue #5): recovery of known parameters from synthetic data, bounds, the UDE
training loss, resume after an interruption, the data contract's errors through the CLI,
solver failures mid-fit, the fit folder and ``simulate --params``, several experiments,
missing values and replicates, and DataFrame input.

Data are simulated with the model's own Numba ``simulate`` plus 2 % multiplicative
Gaussian noise from fixed seeds; fits start from values 30 % off. Model texts are
module constants so that their compiled code is reused (from the on-disk cache) run
after run. Every tolerance is stated where it is asserted.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS

import odedsl
from odedsl.cli import main
from odedsl.errors import InputError, NumericalError, UsageError

RECOVERY = 0.05  # relative error allowed on a recovered parameter
NOISE = 0.02  # multiplicative noise of the synthetic data

# -- models ---------------------------------------------------------------------------

LV_TRUE = {"alpha": 1.5, "beta": 1.0, "delta": 1.0, "gamma": 3.0}
LV_START = {"alpha": 1.95, "beta": 0.7, "delta": 1.3, "gamma": 2.1}  # each 30 % off

LV_OBS = """model lv_obs "Lotka-Volterra observed through data columns"
param alpha = {alpha} in [0, 10]
param beta = {beta} in [0, 10]
param delta = {delta} in [0, 10]
param gamma = {gamma} in [0, 10]
state prey = 1.0
state pred = 1.0
der(prey) = alpha*prey - beta*prey*pred
der(pred) = delta*prey*pred - gamma*pred
observe prey_obs = prey
observe pred_obs = pred
"""

# states observed directly; initial values deliberately wrong: only --y0-from-data makes it fit
LV_PLAIN = """model lv_plain
param alpha = {alpha} in [0, 10]
param beta = {beta} in [0, 10]
param delta = {delta} in [0, 10]
param gamma = {gamma} in [0, 10]
state prey = 5.0
state pred = 5.0
der(prey) = alpha*prey - beta*prey*pred
der(pred) = delta*prey*pred - gamma*pred
"""

SIR_TRUE = {"beta": 2.0, "gamma": 0.5}  # models/sir.ode's own values
SIR_START = {"beta": 2.6, "gamma": 0.35}

# exp(-t) is the data; the optimum (k = 1, a = 1) lies outside both boxes
BOUNDED = """model decay_bounded
param k = 0.3 in [0.1, 0.5]
param a = 2 in [1.5, 3]
state x = a
der(x) = -k*x
"""

# x = 1/(1 - k t) blows up at t = 1/k: every k > 1/1.8 fails to solve on the data's [0, 1.8]
BLOWUP = """model blowup
param k = 0.3
state x = 1
der(x) = k*x^2
"""

UDE = """model lv_ude_small
param alpha = 1.0 in [0, 5]
param delta = 1.8 fixed
state prey = 0.44249296
state pred = 4.6280594
nn U: 2 -> 2, hidden = [8], activation = tanh
der(prey) = alpha*prey + U(prey, pred)[0]
der(pred) = -delta*pred + U(prey, pred)[1]
"""
UDE_TRUTH = {"alpha": 1.3, "beta": 0.9, "delta": 0.8, "gamma": 1.8}  # LV_OBS's roles: 1.3 x - 0.9 x y, ...
UDE_Y0 = {"prey": 0.44249296, "pred": 4.6280594}

# every data-contract error: an input, a lognormal observable, two states
ERRS = """model errs
param k = 0.5 in [0, 5]
input u
state x = 1
state y = 1
der(x) = -k*x + u
der(y) = k*x - y
observe xo = x
observe yl = y ~ lognormal(0.1)
"""


def lv_obs(values=LV_START):
    return odedsl.loads(LV_OBS.format(**values), name="lv_obs")


def sir_start():
    text = (MODELS / "sir.ode").read_text()
    text = text.replace("param beta = 2.0 ", f"param beta = {SIR_START['beta']} ")
    text = text.replace("param gamma = 0.5 ", f"param gamma = {SIR_START['gamma']} ")
    assert text.count(str(SIR_START["beta"])) == 1 and text.count(str(SIR_START["gamma"])) == 1
    return odedsl.loads(text, name="sir_start")


# -- helpers -----------------------------------------------------------------------------

def write_csv(path: Path, header: list[str], rows) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow(["" if (isinstance(v, float) and math.isnan(v)) else (repr(float(v)) if not isinstance(v, str)
                        else v) for v in row])
    return path


def noisy(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return values * (1.0 + NOISE * rng.standard_normal(values.shape))


def assert_recovered(params: dict, truth: dict, rel: float = RECOVERY) -> None:
    for name, value in truth.items():
        assert params[name] == pytest.approx(value, rel=rel), (name, params[name], value)


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def read_history(path: Path) -> np.ndarray:
    with path.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["iteration", "loss", "seconds"]
    return np.array(rows[1:], dtype=float).reshape(-1, 3)


@pytest.fixture(scope="module")
def lv_data(tmp_path_factory):
    """(t, prey_obs, pred_obs) from the true Lotka-Volterra with 2 % noise, and its CSV."""
    t = np.linspace(0.0, 10.0, 41)
    obs = lv_obs().simulate(t, params=LV_TRUE, rtol=1e-10, atol=1e-12).observables()
    rng = np.random.default_rng(20240501)
    prey, pred = noisy(obs["prey_obs"], rng), noisy(obs["pred_obs"], rng)
    path = write_csv(tmp_path_factory.mktemp("lv") / "lv.csv", ["t", "prey_obs", "pred_obs"],
                     zip(t, prey, pred))
    return t, prey, pred, path


@pytest.fixture(scope="module")
def ude_data(tmp_path_factory):
    """States of the true Lotka-Volterra that the UDE's net has to learn (no noise)."""
    t = np.linspace(0.0, 3.0, 31)
    sol = lv_obs().simulate(t, params=UDE_TRUTH, y0=UDE_Y0, rtol=1e-10, atol=1e-12)
    return write_csv(tmp_path_factory.mktemp("ude") / "ude.csv", ["t", "prey", "pred"],
                     zip(t, sol["prey"], sol["pred"]))


@pytest.fixture(scope="module")
def blowup_data(tmp_path_factory):
    t = np.linspace(0.0, 1.8, 19)
    return write_csv(tmp_path_factory.mktemp("blowup") / "b.csv", ["t", "x"], zip(t, 1.0 / (1.0 - 0.5 * t)))


@pytest.fixture(scope="module")
def bounded_data(tmp_path_factory):
    t = np.linspace(0.0, 3.0, 16)
    return write_csv(tmp_path_factory.mktemp("bounded") / "d.csv", ["t", "x"], zip(t, np.exp(-t)))


# -- 1. synthetic recovery by least squares ---------------------------------------------------

def check_uncertainty(result) -> None:
    names = [p.name for p in result.model.fitted_params]
    assert result.stderr is not None and set(result.stderr) == set(names)
    for name in names:
        se = result.stderr[name]
        assert math.isfinite(se) and se > 0, (name, se)
    corr = np.asarray(result.corr)
    assert corr.shape == (len(names), len(names))
    assert np.all(np.isfinite(corr))
    np.testing.assert_allclose(corr, corr.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.diag(corr), 1.0, rtol=0, atol=1e-12)
    assert np.all(np.abs(corr) <= 1 + 1e-12)


def test_recovers_lotka_volterra_by_least_squares(lv_data):
    *_, path = lv_data
    result = lv_obs().fit(path)
    assert result.settings["optimizer"] == "least-squares"
    assert_recovered(result.params, LV_TRUE)
    assert result.initial == LV_START
    check_uncertainty(result)
    # at most a few noise-sized standard errors away from the truth: the errors are of the right size
    for name, value in LV_TRUE.items():
        assert abs(result.params[name] - value) < 5 * result.stderr[name] + 1e-3 * value, name
    # the loss reported is the history's best, and about the 2 % noise scaled by each column's spread
    assert result.loss == min(h[1] for h in result.history)
    assert 0 < result.loss < 0.01


def test_recovers_sir_by_least_squares(tmp_path):
    t = np.arange(0.0, 15.0)
    truth = sir_start().simulate(t, params=SIR_TRUE, rtol=1e-10, atol=1e-12).observables()["in_bed"]
    path = write_csv(tmp_path / "sir.csv", ["day", "in_bed"], zip(t, noisy(truth, np.random.default_rng(7))))
    result = sir_start().fit(path)
    assert_recovered(result.params, SIR_TRUE)
    assert set(result.params) == {"beta", "gamma"}  # N is a const, never a parameter
    check_uncertainty(result)


# -- 2. bounds ------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["least-squares", "adam"])
def test_bounds_are_respected_when_the_optimum_lies_outside(optimizer, bounded_data):
    model = odedsl.loads(BOUNDED, name="decay_bounded")
    options = {"max_iters": 60, "polish_iters": 20, "lr": 0.2} if optimizer == "adam" else {}
    result = model.fit(bounded_data, optimizer=optimizer, **options)
    assert result.settings["optimizer"] == optimizer
    k, a = result.params["k"], result.params["a"]
    assert 0.1 <= k <= 0.5 and 1.5 <= a <= 3.0, (k, a)  # inside or on the bounds, exactly
    # pressed against them: the unconstrained optimum (k = 1, a = 1) is beyond both
    assert k > 0.5 - (1e-6 if optimizer == "least-squares" else 0.02)
    assert a < 1.5 + (1e-6 if optimizer == "least-squares" else 0.05)
    for _, loss, _ in result.history:
        assert math.isfinite(loss)


# -- 3. the UDE's training loss -------------------------------------------------------------------

def test_ude_training_loss_falls(ude_data):
    model = odedsl.loads(UDE, name="lv_ude_small")
    assert sum(n.n_weights for n in model.nets) == 2 * 8 + 8 + 8 * 2 + 2
    result = model.fit(ude_data, max_iters=120, lr=0.03, polish_iters=0, rtol=1e-5, atol=1e-7)
    assert result.settings["optimizer"] == "adam"
    initial = result.history[0][1]
    assert result.loss < 0.05  # threshold: the spread-scaled MSE; 120 Adam steps reach about 0.02
    assert result.loss < 0.1 * initial
    assert len(result.history) == 120
    assert result.weights.shape == (42,) and np.all(np.isfinite(result.weights))
    assert result.params["delta"] == 1.8  # fixed: never moved


# -- 4. resume equals uninterrupted ---------------------------------------------------------------

RESUME_SETTINGS = {"max_iters": 16, "polish_iters": 4, "lr": 0.02, "rtol": 1e-5, "atol": 1e-7, "checkpoint_every": 5}


def objective_classes():
    """The Adam path's loss-and-gradient classes (compiled and Torch): tests patch both."""
    from odedsl.fit.numba_objective import NumbaObjective
    from odedsl.fit.torch_objective import TorchObjective

    return NumbaObjective, TorchObjective


def interrupt_at(monkeypatch, call: int) -> None:
    """Make the K-th loss evaluation raise KeyboardInterrupt, as Ctrl-C would."""
    count = {"n": 0}
    for cls in objective_classes():
        def interrupting(self, x, original=cls.value_and_grad):
            count["n"] += 1
            if count["n"] == call:
                raise KeyboardInterrupt
            return original(self, x)

        monkeypatch.setattr(cls, "value_and_grad", interrupting)


def same_fit(a, b) -> None:
    assert a.loss == b.loss
    assert a.params == b.params
    np.testing.assert_array_equal(a.weights, b.weights)
    assert [(i, loss) for i, loss, _ in a.history] == [(i, loss) for i, loss, _ in b.history]


@pytest.mark.parametrize("phase, call", [("adam", 8), ("polish", 16 + 3)])
def test_resume_after_interrupt_equals_uninterrupted(phase, call, ude_data, tmp_path, monkeypatch):
    from odedsl.fit.optimise import CHECKPOINT, AdamState, Interrupted
    from odedsl.fit.run import Settings, fit

    model = odedsl.loads(UDE, name="lv_ude_small")
    reference = fit(model, ude_data, Settings(**RESUME_SETTINGS), out=tmp_path / "whole")
    assert len(reference.history) > RESUME_SETTINGS["max_iters"]  # the polish ran too

    interrupt_at(monkeypatch, call)
    with pytest.raises(Interrupted) as info:
        fit(model, ude_data, Settings(**RESUME_SETTINGS), out=tmp_path / "cut")
    monkeypatch.undo()
    state = AdamState.load(tmp_path / "cut" / CHECKPOINT)
    if phase == "adam":
        assert state.phase == "adam" and state.iteration == call - 1
    else:  # the checkpoint stays at the polish's start
        assert state.phase == "polish" and state.iteration == RESUME_SETTINGS["max_iters"]
    best_so_far = info.value.result  # what the CLI saves on Ctrl-C
    assert best_so_far.loss == min(h[1] for h in info.value.outcome.history)

    resumed = fit(model, ude_data, Settings(**RESUME_SETTINGS), out=tmp_path / "cut", resume=True)
    same_fit(resumed, reference)
    assert AdamState.load(tmp_path / "cut" / CHECKPOINT).phase == "done"


def test_cli_interrupt_exits_130_and_resume_matches(ude_data, tmp_path, monkeypatch, capsys):
    model = tmp_path / "ude.ode"
    model.write_text(UDE)
    flags = ["--max-iters", "12", "--polish-iters", "0", "--lr", "0.02", "--rtol", "1e-5", "--atol", "1e-7", "-q"]
    assert cli(capsys, "fit", model, ude_data, "--out", tmp_path / "whole", *flags)[0] == 0

    interrupt_at(monkeypatch, 7)
    code, _, err = cli(capsys, "fit", model, ude_data, "--out", tmp_path / "cut", *flags)
    monkeypatch.undo()
    assert code == 130
    assert f"interrupted: the best result so far is in {tmp_path / 'cut'}/; continue with --resume" in err
    saved = json.loads((tmp_path / "cut" / "params.json").read_text())
    assert len(read_history(tmp_path / "cut" / "history.csv")) == 6

    assert cli(capsys, "fit", model, ude_data, "--resume", tmp_path / "cut", *flags)[0] == 0
    whole = json.loads((tmp_path / "whole" / "params.json").read_text())
    resumed = json.loads((tmp_path / "cut" / "params.json").read_text())
    assert resumed["params"] == whole["params"] and resumed["loss"] == whole["loss"]
    assert resumed["loss"] <= saved["loss"]
    np.testing.assert_array_equal(read_history(tmp_path / "cut" / "history.csv")[:, :2],
                                  read_history(tmp_path / "whole" / "history.csv")[:, :2])
    with np.load(tmp_path / "cut" / "weights.npz", allow_pickle=False) as a, \
            np.load(tmp_path / "whole" / "weights.npz", allow_pickle=False) as b:
        np.testing.assert_array_equal(a["weights"], b["weights"])


def test_least_squares_interrupt_saves_the_best_and_resume_finishes(lv_data, tmp_path, monkeypatch, capsys):
    from odedsl.fit.least_squares import Residuals

    original = Residuals.__call__
    count = {"n": 0}

    def interrupting(self, x):
        count["n"] += 1
        if count["n"] == 4:
            raise KeyboardInterrupt
        return original(self, x)

    model = tmp_path / "lv.ode"
    model.write_text(LV_OBS.format(**LV_START))
    out = tmp_path / "out"
    monkeypatch.setattr(Residuals, "__call__", interrupting)
    code, _, err = cli(capsys, "fit", model, lv_data[-1], "--out", out, "-q")
    monkeypatch.undo()
    assert code == 130
    assert f"continue with --resume {out}" in err
    saved = json.loads((out / "params.json").read_text())
    history = read_history(out / "history.csv")
    assert len(history) >= 1 and saved["loss"] == history[:, 1].min()
    assert saved["params"] != LV_START

    code, _, err = cli(capsys, "fit", model, lv_data[-1], "--resume", out, "-q")
    assert code == 0, err
    resumed = odedsl.load_fit(out)
    assert resumed.loss <= saved["loss"]
    assert_recovered(resumed.params, LV_TRUE)
    whole = lv_obs().fit(lv_data[-1])
    for name in LV_TRUE:  # the same optimum as a fit never interrupted, to 1e-6 relative
        assert resumed.params[name] == pytest.approx(whole.params[name], rel=1e-6)


@pytest.mark.parametrize("first, second", [(8, 4), (4, 8)], ids=["smaller", "larger"])
def test_resume_with_another_model_is_refused(first, second, ude_data, tmp_path):
    from odedsl.fit.run import Settings, fit

    settings = Settings(max_iters=3, polish_iters=0)
    models = {h: odedsl.loads(UDE.replace("hidden = [8]", f"hidden = [{h}]"), name=f"ude{h}") for h in (first, second)}
    fit(models[first], ude_data, settings, out=tmp_path / "fit")
    with pytest.raises((InputError, UsageError), match="checkpoint|weights|model"):
        fit(models[second], ude_data, settings, out=tmp_path / "fit", resume=True)


# -- 5. data errors (exit 1) and usage errors (exit 2) through the CLI --------------------------------

GOOD = "t,xo,yl,u\n0,1,1,0\n1,0.6,1.1,0\n2,0.4,0.9,0\n"

DATA_ERRORS = [
    ("no_time_column", "time,xo,yl,u\n0,1,1,0\n", [],
     ["{path}: no time column 't' (the model's time variable; use --time-col to name another)",
      "; the columns are: time, xo, yl, u"]),
    ("named_time_column_missing", GOOD, ["--time-col", "hours"],
     ["{path}: no time column 'hours'; the columns are: t, xo, yl, u"]),
    ("observe_column_missing", "t,xo,u\n0,1,0\n", [],
     ["{path}: no column for observable 'yl'; the columns are: t, xo, u"]),
    ("non_numeric_cell", "t,xo,yl,u\n0,1,1,0\n1,abc,1,0\n", [],
     ["{path}:3: column 'xo' has a non-numeric value 'abc'"]),
    ("non_numeric_time", "t,xo,yl,u\n0,1,1,0\nnoon,1,1,0\n", [],
     ["{path}:3: column 't' has a non-numeric value 'noon'"]),
    ("time_decreasing", "t,xo,yl,u\n0,1,1,0\n1,1,1,0\n0.5,1,1,0\n", [],
     ["{path}:4: time 0.5 comes after 1; times must not decrease within an experiment"]),
    ("time_decreasing_in_experiment", "experiment,t,xo,yl,u\nA,0,1,1,0\nA,3,1,1,0\nB,0,1,1,0\nB,2,1,1,0\nB,1,1,1,0\n",
     [], ["{path}:6: time 1 comes after 2 in experiment 'B'"]),
    ("empty_file", "", [], ["{path}: the file is empty"]),
    ("blank_lines_only", "\n\n", [], ["{path}: the file is empty"]),
    ("header_only", "t,xo,yl,u\n", [], ["{path}: the file has a header but no data rows"]),
    ("input_column_missing", "t,xo,yl\n0,1,1\n", [],
     ["{path}: no column for input 'u'; the columns are: t, xo, yl"]),
    ("lognormal_not_positive", "t,xo,yl,u\n0,1,1,0\n1,1,0,0\n", [],
     ["{path}:3: column 'yl' is observed with lognormal noise, so its values must be positive; found 0"]),
    ("lognormal_negative", "t,xo,yl,u\n0,1,1,0\n1,1,1,0\n2,1,-0.5,0\n", [],
     ["{path}:4: column 'yl'", "must be positive; found -0.5"]),
    ("y0_from_data_without_states", GOOD, ["--y0-from-data"],
     ["{path}: --y0-from-data needs a column named like a state (x, y)"]),
    ("unknown_experiment_col", GOOD, ["--experiment-col", "batch"],
     ["{path}: no experiment column 'batch'; the columns are: t, xo, yl, u"]),
    ("ragged_row", "t,xo,yl,u\n0,1,1,0\n1,1,1\n", [], ["{path}:3: row has 3 cells, the header has 4"]),
    ("no_observed_values", "t,xo,yl,u\n0,,,0\n1,,,0\n", [], ["{path}: no observed values"]),
    ("time_missing", "t,xo,yl,u\n0,1,1,0\n,1,1,0\n", [],
     ["{path}:3: the time column 't' is missing or not finite"]),
    ("experiment_label_empty", "experiment,t,xo,yl,u\nA,0,1,1,0\n,1,1,1,0\n", [],
     ["{path}:3: the experiment column 'experiment' is empty"]),
    ("y0_state_empty_at_start", "t,xo,yl,u,x\n0,1,1,0,\n1,1,1,0,0.5\n", ["--y0-from-data"],
     ["{path}:2: --y0-from-data: state column 'x' is empty at the experiment's first time"]),
    ("missing_data_file", None, [], ["{path}: no such data file"]),
]


@pytest.mark.parametrize("case, text, flags, fragments", DATA_ERRORS, ids=[c[0] for c in DATA_ERRORS])
def test_data_errors_exit_one_with_their_message(case, text, flags, fragments, tmp_path, capsys):
    model = tmp_path / "errs.ode"
    model.write_text(ERRS)
    data = tmp_path / f"{case}.csv"
    if text is not None:
        data.write_text(text)
    code, _, err = cli(capsys, "fit", model, data, "--out", tmp_path / "out", "-q", *flags)
    assert code == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment.format(path=data) in err
    assert not (tmp_path / "out" / "params.json").exists()


def test_data_errors_are_input_errors_from_the_api(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("t,xo,u\n0,1,0\n")
    with pytest.raises(InputError, match="no column for observable 'yl'"):
        odedsl.loads(ERRS, name="errs").fit(data)
    with pytest.raises(InputError, match="no such data file"):
        odedsl.loads(ERRS, name="errs").fit(tmp_path / "absent.csv")


def test_unused_column_is_a_warning_not_an_error(lv_data, tmp_path, capsys):
    t, prey, pred, _ = lv_data
    data = write_csv(tmp_path / "extra.csv", ["t", "prey_obs", "pred_obs", "notes"],
                     [(a, b, c, "ok") for a, b, c in zip(t, prey, pred)])
    model = tmp_path / "lv.ode"
    model.write_text(LV_OBS.format(**LV_START))
    code, _, err = cli(capsys, "fit", model, data, "--out", tmp_path / "out", "--max-iters", "3", "-q")
    assert code == 0, err
    assert (f"warning: {data}: column 'notes' matches no time, observable, input or state of the model; "
            "it is ignored") in err
    assert (tmp_path / "out" / "params.json").exists()


def test_state_column_warning_does_not_deny_it_is_a_state(tmp_path):
    from odedsl.fit.data import read_dataset

    data = write_csv(tmp_path / "d.csv", ["t", "prey_obs", "pred_obs", "prey"], [(0, 1, 1, 1), (1, 2, 0.5, 2)])
    (warning,) = read_dataset(lv_obs(), data).warnings  # exactly one warning, about 'prey'
    assert "'prey'" in warning
    assert "matches no time, observable, input or state" not in warning


@pytest.mark.parametrize("flags, fragment", [
    (["--max-iters", "0"], "--max-iters: expected a number >= 1, got 0"),
    (["--max-iters", "many"], "--max-iters: expected a whole number, got 'many'"),
    (["--lr", "fast"], "--lr: expected a number, got 'fast'"),
    (["--rtol", "nan"], "--rtol: expected a finite number"),
    (["--optimizer", "sgd"], "--optimizer: invalid choice: 'sgd'"),
    (["--gradient", "magic"], "--gradient: invalid choice: 'magic'"),
    (["--method", "rk99"], "--method: invalid choice: 'rk99'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flag_values_exit_two(flags, fragment, tmp_path, capsys):
    model = tmp_path / "errs.ode"
    model.write_text(ERRS)
    data = tmp_path / "d.csv"
    data.write_text(GOOD)
    code, _, err = cli(capsys, "fit", model, data, *flags)
    assert code == 2
    assert fragment in err and "Traceback" not in err


def test_resume_of_a_missing_folder_exits_two(tmp_path, capsys):
    model = tmp_path / "errs.ode"
    model.write_text(ERRS)
    data = tmp_path / "d.csv"
    data.write_text(GOOD)
    code, _, err = cli(capsys, "fit", model, data, "--resume", tmp_path / "nowhere")
    assert code == 2
    assert f"--resume {tmp_path / 'nowhere'}: no such folder" in err


def test_device_cuda_without_cuda_exits_two(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    model = tmp_path / "errs.ode"
    model.write_text(ERRS)
    data = tmp_path / "d.csv"
    data.write_text(GOOD)
    code, _, err = cli(capsys, "fit", model, data, "--device", "cuda")
    assert code == 2
    assert "--device cuda: no CUDA device is available here (use --device cpu)" in err


def test_model_with_nothing_to_fit_exits_two(tmp_path, capsys):
    model = tmp_path / "fixed.ode"
    model.write_text("model fixed_only\nparam k = 0.5 fixed\nstate x = 1\nder(x) = -k*x\n")
    data = write_csv(tmp_path / "d.csv", ["t", "x"], [(0, 1), (1, 0.6)])
    code, _, err = cli(capsys, "fit", model, data)
    assert code == 2
    assert "model 'fixed_only' has nothing to fit: every parameter is fixed and it has no nets" in err


def test_least_squares_on_a_hybrid_model_exits_two(ude_data, tmp_path, capsys):
    model = tmp_path / "ude.ode"
    model.write_text(UDE)
    code, _, err = cli(capsys, "fit", model, ude_data, "--optimizer", "least-squares")
    assert code == 2
    assert "--optimizer least-squares needs a model without neural terms" in err


def test_unknown_fit_setting_is_a_usage_error(lv_data):
    with pytest.raises(UsageError, match="unknown fit setting"):
        lv_obs().fit(lv_data[-1], learning_rate=0.1)


# -- 6. a solver that blows up mid-fit ---------------------------------------------------------------

class _Merged:
    """Several recorders of failures read as one list."""

    def __init__(self, lists: list[list]) -> None:
        self.lists = lists

    def __iter__(self):
        return (f for lst in self.lists for f in lst)

    def __len__(self) -> int:
        return sum(len(lst) for lst in self.lists)

    def __bool__(self) -> bool:
        return len(self) > 0


def count_failures(monkeypatch, cls) -> list:
    """Record every evaluation of ``cls.value_and_grad`` / ``cls.__call__`` that raises NumericalError."""
    name = "__call__" if cls.__name__ == "Residuals" else "value_and_grad"
    original = getattr(cls, name)
    failures = []

    def wrapped(self, x):
        try:
            return original(self, x)
        except NumericalError as exc:
            failures.append((np.array(x, copy=True), str(exc)))
            raise

    monkeypatch.setattr(cls, name, wrapped)
    return failures


def test_adam_survives_blow_ups_and_saves_the_best(blowup_data, tmp_path, monkeypatch, capsys):
    failures = _Merged([count_failures(monkeypatch, cls) for cls in objective_classes()])
    model = tmp_path / "blowup.ode"
    model.write_text(BLOWUP)
    out = tmp_path / "out"
    # lr 5 throws k far past 1/1.8 where the solution explodes before the last data time
    code, stdout, err = cli(capsys, "fit", model, blowup_data, "--optimizer", "adam", "--lr", "5",
                            "--max-iters", "30", "--polish-iters", "0", "--rtol", "1e-9", "--atol", "1e-11",
                            "--out", out, "-q")
    assert code == 0, err  # failed steps are undone and retried smaller: the fit goes on and ends normally
    assert len(failures) >= 3 and all("step size became too small" in msg for _, msg in failures)
    assert "30 Adam iterations" in stdout
    doc = json.loads((out / "params.json").read_text())
    k = doc["params"]["k"]
    assert math.isfinite(k) and 0 < k < 1 / 1.8  # a point that solves
    history = read_history(out / "history.csv")
    assert np.all(np.isfinite(history[:, 1]))
    assert doc["loss"] == history[:, 1].min()  # the best seen, not the last
    # and it is the loss of the saved parameters (the Numba solve agrees with Torch to 1e-4 relative)
    t, x = np.loadtxt(blowup_data, delimiter=",", skiprows=1, unpack=True)
    sim = odedsl.loads(BLOWUP, name="blowup").simulate(t, params={"k": k}, rtol=1e-11, atol=1e-13)["x"]
    assert np.mean(((sim - x) / np.std(x)) ** 2) == pytest.approx(doc["loss"], rel=1e-4)
    for name in ("weights.npz", "history.csv", "fit.png", "loss.png"):
        assert (out / name).exists(), name


def test_adam_from_a_start_that_does_not_solve_exits_three(blowup_data, tmp_path, capsys):
    model = tmp_path / "blowup2.ode"
    model.write_text(BLOWUP.replace("k = 0.3", "k = 2"))
    code, _, err = cli(capsys, "fit", model, blowup_data, "--optimizer", "adam", "--max-iters", "5",
                       "--polish-iters", "0", "--out", tmp_path / "out", "-q")
    assert code == 3
    assert "no step of the fit could be evaluated: the model fails to solve at the starting point" in err


def test_adam_stopped_by_repeated_failures_exits_three_with_the_best_saved(blowup_data, tmp_path, monkeypatch,
                                                                           capsys):
    """From the 6th evaluation on, every solve fails (as if the model had become unsolvable): Adam undoes
    and retries 8 times, then stops; the best point so far is saved and the exit code is 3."""
    count = {"n": 0}
    for cls in objective_classes():
        def failing(self, x, original=cls.value_and_grad):
            count["n"] += 1
            if count["n"] > 5:
                raise NumericalError("trajectory 0: the step size became too small (simulated)")
            return original(self, x)

        monkeypatch.setattr(cls, "value_and_grad", failing)
    model = tmp_path / "blowup.ode"
    model.write_text(BLOWUP)
    out = tmp_path / "out"
    code, _, err = cli(capsys, "fit", model, blowup_data, "--optimizer", "adam", "--lr", "0.01",
                            "--max-iters", "50", "--out", out, "-q")
    assert code == 3
    assert "error: the fit stopped early (stopped: 8 steps in a row gave a failed solve or a non-finite loss)" in err
    assert f"the best result so far is in {out}/" in err
    assert count["n"] == 5 + 8  # no polish after the stop
    doc = json.loads((out / "params.json").read_text())
    history = read_history(out / "history.csv")
    assert len(history) == 5 and doc["loss"] == history[:, 1].min()
    assert math.isfinite(doc["params"]["k"]) and doc["params"]["k"] != 0.3  # Adam moved before the failures


def test_one_failed_last_step_is_not_a_stop(blowup_data, tmp_path, capsys):
    model = tmp_path / "blowup.ode"
    model.write_text(BLOWUP)
    # iteration 1 solves at k = 0.3, lr 5 throws k to 5.3, iteration 2 fails: undone, retried smaller
    code, stdout, err = cli(capsys, "fit", model, blowup_data, "--optimizer", "adam", "--lr", "5",
                            "--max-iters", "2", "--polish-iters", "5", "--out", tmp_path / "out", "-q")
    assert code == 0, err
    assert "L-BFGS" in stdout  # the polish ran


def test_least_squares_with_failing_trial_steps_still_converges(blowup_data, monkeypatch):
    from odedsl.fit.least_squares import Residuals

    failures = count_failures(monkeypatch, Residuals)
    result = odedsl.loads(BLOWUP, name="blowup").fit(blowup_data)
    assert failures, "no trial step failed: the test no longer exercises the failure path"
    assert all(f[0][0] > 1 / 1.8 for f in failures)
    assert result.params["k"] == pytest.approx(0.5, rel=1e-5)
    assert result.loss < 1e-10
    assert math.isfinite(result.stderr["k"]) and result.stderr["k"] > 0


# -- 7. the fit folder, simulate --params, load_fit ---------------------------------------------------

def test_fit_folder_and_simulate_with_params(ude_data, tmp_path, capsys):
    model_path = tmp_path / "ude.ode"
    model_path.write_text(UDE)
    model = odedsl.load(model_path)
    out = tmp_path / "fit"
    code, stdout, err = cli(capsys, "fit", model_path, ude_data, "--out", out, "--max-iters", "5",
                            "--polish-iters", "0", "--rtol", "1e-5", "--atol", "1e-7", "-q")
    assert code == 0, err
    assert "optimizer: adam" in err
    assert "final loss:" in stdout and "neural weights: 42" in stdout
    assert f"wrote params.json, model.ode, weights.npz, history.csv, fit.png, loss.png to {out}/" in stdout

    doc = json.loads((out / "params.json").read_text())
    assert set(doc["params"]) == {p.name for p in model.params}
    assert all(isinstance(v, float) and math.isfinite(v) for v in doc["params"].values())
    assert doc["initial"] == {"alpha": 1.0, "delta": 1.8}
    assert isinstance(doc["loss"], float) and math.isfinite(doc["loss"])
    assert doc["settings"]["optimizer"] == "adam" and doc["settings"]["max_iters"] == 5
    assert doc["odedsl_version"] == odedsl.__version__
    with np.load(out / "weights.npz", allow_pickle=False) as z:
        weights = z["weights"]
    assert weights.shape == (sum(n.n_weights for n in model.nets),) and np.all(np.isfinite(weights))
    history = read_history(out / "history.csv")
    assert history.shape == (5, 3) and list(history[:, 0]) == [1, 2, 3, 4, 5]
    for name in ("fit.png", "loss.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    # load_fit round-trips what was written, with and without the model
    loaded = odedsl.load_fit(out)
    assert loaded.params == doc["params"] and loaded.loss == doc["loss"]
    np.testing.assert_array_equal(loaded.weights, weights)
    again = odedsl.load_fit(out, model)
    assert again.params == loaded.params

    # simulate --params uses the fitted values and weights
    times = [0.0, 0.5, 1.0, 2.0, 3.0]
    sim_csv = tmp_path / "sim.csv"
    code, _, err = cli(capsys, "simulate", model_path, "--params", out, "--times", ",".join(map(str, times)),
                       "--out", sim_csv)
    assert code == 0, err
    got = np.loadtxt(sim_csv, delimiter=",", skiprows=1)
    expected = loaded.simulate(times)
    np.testing.assert_allclose(got[:, 1:], expected.y, rtol=1e-12, atol=0)
    default = model.simulate(times).y  # the file's values and the seed-0 initial weights
    assert np.max(np.abs(default - expected.y)) > 1e-4


def test_load_fit_round_trip_and_other_model(lv_data, tmp_path):
    result = lv_obs().fit(lv_data[-1])
    folder = result.save(tmp_path / "lv")
    back = odedsl.load_fit(folder, lv_obs())
    assert back.params == result.params and back.loss == result.loss
    assert back.stderr == result.stderr and back.initial == result.initial
    assert back.weights.size == 0
    doc = json.loads((folder / "params.json").read_text())
    np.testing.assert_allclose(np.array(doc["correlation"]), result.corr, rtol=0, atol=0)
    np.testing.assert_allclose(back.simulate([0.0, 5.0]).y, result.simulate([0.0, 5.0]).y, rtol=1e-14)

    with pytest.raises(InputError, match="parameters alpha, delta are not in model 'sir'; was the fit made with another"):
        odedsl.load_fit(folder, sir_start())
    with pytest.raises(InputError, match="not a fit folder"):
        odedsl.load_fit(tmp_path / "empty", lv_obs())


def test_fit_folder_stands_on_its_own(lv_data, tmp_path, monkeypatch):
    """The folder keeps the model text and the data file's absolute path: loadable after the model file
    is gone, from another directory, with the data read again with the fit's settings."""
    model_path = tmp_path / "lv.ode"
    text = LV_OBS.format(**LV_START)
    model_path.write_text(text)
    result = odedsl.load(model_path).fit(lv_data[-1])
    folder = result.save(tmp_path / "lv")
    assert (folder / "model.ode").read_text() == text
    assert json.loads((folder / "params.json").read_text())["data_file"] == str(Path(lv_data[-1]).resolve())
    model_path.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    back = odedsl.load_fit(folder)
    assert back.params == result.params and back.model.source == text
    data = back.dataset()
    assert data.n_points == result.data.n_points
    np.testing.assert_array_equal(data.experiments[0].observed, result.data.experiments[0].observed)


def test_load_fit_with_other_nets_is_an_input_error(ude_data, tmp_path):
    model = odedsl.loads(UDE, name="lv_ude_small")
    result = model.fit(ude_data, max_iters=2, polish_iters=0)
    folder = result.save(tmp_path / "ude")
    other = odedsl.loads(UDE.replace("hidden = [8]", "hidden = [4]"), name="other")
    with pytest.raises(InputError, match="42 weights, but model 'lv_ude_small' has 22"):
        odedsl.load_fit(folder, other)


# -- 8. several experiments ------------------------------------------------------------------------------

def multi_experiment_csv(path: Path, missing: float = 0.0, replicates: bool = False) -> tuple[Path, dict]:
    """Two experiments of the true Lotka-Volterra with their own initial values and times."""
    rng = np.random.default_rng(11)
    truth = lv_obs()  # simulated with params=LV_TRUE: the same compiled code as the fits'
    plans = {"A": (np.linspace(0.0, 8.0, 33), {"prey": 1.0, "pred": 1.0}),
             "B": (np.concatenate([[0.5], np.sort(rng.uniform(0.6, 6.0, 24))]), {"prey": 2.0, "pred": 0.5})}
    rows = []
    for name, (t, y0) in plans.items():
        sol = truth.simulate(t, params=LV_TRUE, y0=y0, rtol=1e-10, atol=1e-12)
        for _ in range(2 if replicates else 1):
            values = noisy(sol.y, rng)
            values[0] = sol.y[0]  # each experiment's start was set, not measured: known exactly
            if missing:
                values[1:][rng.random(values[1:].shape) < missing] = np.nan  # first rows give the y0
            rows += [(name, ti, *v) for ti, v in zip(t, values)]
    if replicates:
        rows.sort(key=lambda r: (r[0], r[1]))
    return write_csv(path, ["experiment", "t", "prey", "pred"], rows), plans


def test_multiple_experiments_start_from_their_data(tmp_path, capsys):
    data, plans = multi_experiment_csv(tmp_path / "multi.csv")
    model_path = tmp_path / "lv_plain.ode"
    model_path.write_text(LV_PLAIN.format(**LV_START))
    out = tmp_path / "out"
    code, _, err = cli(capsys, "fit", model_path, data, "--y0-from-data", "--out", out, "-q")
    assert code == 0, err
    fitted = odedsl.load_fit(out)
    assert_recovered(fitted.params, LV_TRUE)

    from odedsl.fit.data import read_dataset

    dataset = read_dataset(odedsl.load(model_path), data, y0_from_data=True)
    assert [e.name for e in dataset.experiments] == ["A", "B"]
    with open(data) as fh:
        first = {}
        for row in csv.DictReader(fh):
            first.setdefault(row["experiment"], {"prey": float(row["prey"]), "pred": float(row["pred"])})
    truth = lv_obs()
    for e in dataset.experiments:
        assert e.y0 == first[e.name] == plans[e.name][1]  # exactly the first row's values
        assert e.times[0] == plans[e.name][0][0] and e.times.size == plans[e.name][0].size
        # started there (at the experiment's first time), the fitted model follows the noiseless truth
        # to within 5 % of each state's range
        sol = fitted.simulate(e.times, y0=e.y0, rtol=1e-9, atol=1e-11)
        exact = truth.simulate(e.times, params=LV_TRUE, y0=e.y0, rtol=1e-9, atol=1e-11)
        error = np.max(np.abs(sol.y - exact.y), axis=0)
        assert np.all(error < RECOVERY * np.ptp(exact.y, axis=0)), (e.name, error)


def test_without_y0_from_data_the_wrong_initial_values_do_not_fit(tmp_path):
    data, _ = multi_experiment_csv(tmp_path / "multi.csv")
    result = odedsl.loads(LV_PLAIN.format(**LV_START), name="lv_plain").fit(data, max_iters=30)
    # the states' file values (5, 5) are far from both experiments' starts: no parameter set fits well
    assert all(e.y0 == {} for e in result.data.experiments)
    assert result.loss > 0.05


# -- 9. missing values and replicates --------------------------------------------------------------------

def test_missing_values_and_replicates(lv_data, tmp_path):
    t, _, _, _ = lv_data
    obs = lv_obs().simulate(t, params=LV_TRUE, rtol=1e-10, atol=1e-12).observables()
    rng = np.random.default_rng(3)
    rows = []
    for i, ti in enumerate(t):
        for _ in range(3 if i % 4 == 0 else 1):  # every fourth time measured three times
            prey, pred = noisy(np.array([obs["prey_obs"][i], obs["pred_obs"][i]]), rng)
            cells = [prey if rng.random() > 0.15 else math.nan, pred if rng.random() > 0.15 else math.nan]
            rows.append((ti, *cells))
    rows.append((10.5, math.nan, math.nan))  # a row with nothing observed
    path = write_csv(tmp_path / "gaps.csv", ["t", "prey_obs", "pred_obs"], rows)
    n_values = sum(not math.isnan(v) for r in rows for v in r[1:])
    assert n_values < 2 * len(rows) and len(rows) > t.size

    result = lv_obs().fit(path)
    assert result.data.n_points == n_values
    assert_recovered(result.params, LV_TRUE)
    check_uncertainty(result)


def test_both_optimisers_compute_the_same_loss(tmp_path):
    """One loss for both backends: different lengths, missing values, replicates, y0 from data."""
    from odedsl.fit.data import read_dataset
    from odedsl.fit.least_squares import Residuals
    from odedsl.fit.loss import scaling
    from odedsl.fit.torch_objective import TorchObjective

    data, _ = multi_experiment_csv(tmp_path / "multi.csv", missing=0.2, replicates=True)
    model = odedsl.loads(LV_PLAIN.format(**LV_START), name="lv_plain")
    dataset = read_dataset(model, data, y0_from_data=True)
    assert [e.times.size for e in dataset.experiments] == [66, 50]
    sc = scaling(dataset)
    r, _ = Residuals(model, dataset, sc, "dopri5", 1e-10, 1e-12)(np.array(list(LV_START.values())))
    assert r.size == dataset.n_points
    objective = TorchObjective(model, dataset, sc, "dopri5", 1e-10, 1e-12)
    assert objective.n_points == dataset.n_points
    assert objective.value(objective.get_x()) == pytest.approx(float(r @ r) / r.size, rel=1e-7)


# -- 10. a pandas DataFrame ----------------------------------------------------------------------------

def test_dataframe_input(lv_data, tmp_path):
    import pandas as pd

    t, prey, pred, path = lv_data
    frame = pd.DataFrame({"t": t, "prey_obs": prey, "pred_obs": pred})
    result = lv_obs().fit(frame)
    assert_recovered(result.params, LV_TRUE)
    from_csv = lv_obs().fit(path)
    for name in LV_TRUE:
        assert result.params[name] == pytest.approx(from_csv.params[name], rel=1e-9)
    # the folder records no data file (the frame's temporary copy is gone), and says so when asked
    folder = result.save(tmp_path / "frame")
    assert json.loads((folder / "params.json").read_text())["data_file"] is None
    with pytest.raises(InputError, match="records no data file"):
        odedsl.load_fit(folder).dataset()
