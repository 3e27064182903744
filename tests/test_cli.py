"""The command line as a user meets it: exit codes, messages, help, and no tracebacks."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from odedsl.cli import main

from conftest import MODELS


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odedsl", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_check_all_examples_exit_zero(capsys):
    paths = sorted(str(p) for p in MODELS.glob("*.ode"))
    assert main(["check", *paths]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(paths)
    assert all(line.startswith("ok  ") for line in out)
    assert any("lotka_volterra_ude: 2 states, 2 params (1 fitted), 1 net (1218 weights), 2 observables" in l for l in out)


def test_check_mixed_good_and_bad_reports_each_and_exits_one(tmp_path, capsys):
    bad = tmp_path / "bad.ode"
    bad.write_text("param alpha = 1\nstate x = 1\nder(x) = -alpah*x\n")
    good = MODELS / "exponential_decay.ode"
    assert main(["check", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert "ok  " in captured.out and "exponential_decay" in captured.out
    assert f"{bad}:3:11: error: 'alpah' is not declared" in captured.err
    assert "did you mean 'alpha'?" in captured.err
    assert "der(x) = -alpah*x\n" in captured.err
    assert "          ^~~~~" in captured.err


def test_check_prints_warnings_unless_quiet(tmp_path, capsys):
    f = tmp_path / "w.ode"
    f.write_text("param unused = 1\nstate x = 1\nder(x) = -x\n")
    assert main(["check", str(f)]) == 0
    assert "warning: parameter 'unused' is declared but never used" in capsys.readouterr().err
    assert main(["check", "--quiet", str(f)]) == 0
    assert capsys.readouterr().err == ""


def test_missing_file_is_input_error(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.ode")]) == 1
    assert "no such model file" in capsys.readouterr().err


def test_show_text_latex_json(capsys):
    path = str(MODELS / "sir.ode")
    assert main(["show", path]) == 0
    text = capsys.readouterr().out
    assert "d(S)/dday = -I*S*beta/N" in text
    assert "beta   2      [0, 10]  fitted" in text
    assert main(["show", path, "--format", "latex"]) == 0
    latex = capsys.readouterr().out
    assert latex.startswith("\\begin{align}") and "\\frac{d S}{d day}" in latex
    assert main(["show", path, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["time"] == "day"
    assert [s["name"] for s in data["states"]] == ["S", "I", "R"]
    assert data["params"][0] == {"name": "beta", "value": 2.0, "lower": 0.0, "upper": 10.0, "fixed": False}
    assert data["observables"][0]["column"] == "in_bed"


def test_show_bad_model_exits_one(tmp_path, capsys):
    f = tmp_path / "bad.ode"
    f.write_text("state x = 1\n")
    assert main(["show", str(f)]) == 1
    assert "state 'x' has no equation" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["check"], "the following arguments are required: MODEL"),
        (["show", "x.ode", "--format", "pdf"], "invalid choice: 'pdf'"),
        (["check", "--bogus", "x.ode"], "unrecognized arguments: --bogus"),
        ([], "usage: odedsl"),
    ],
)
def test_usage_errors_exit_two(argv, fragment, capsys):
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_help_of_every_command_has_an_example():
    for args in (["--help"], ["check", "--help"], ["show", "--help"]):
        proc = run_cli(*args)
        assert proc.returncode == 0
        assert "example" in proc.stdout and "odedsl " in proc.stdout


def test_version():
    import odedsl

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"odedsl {odedsl.__version__}"


def test_subprocess_bad_model_no_traceback(tmp_path):
    f = tmp_path / "bad.ode"
    f.write_bytes(b"state x = 1\nder(x) = \xff\n")
    proc = run_cli("check", str(f))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{f}:2:10: error: the file is not valid UTF-8 text (byte 0xff)" in proc.stderr


def test_check_does_not_import_torch_or_numba():
    code = (
        "import sys, odedsl; from odedsl.cli import main; "
        f"rc = main(['check', '--quiet', {str(MODELS / 'lotka_volterra_ude.ode')!r}]); "
        "heavy = [m for m in ('torch', 'numba', 'matplotlib', 'scipy') if m in sys.modules]; "
        "print(heavy); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_internal_errors_are_reported_without_traceback(monkeypatch, capsys):
    import odedsl

    def boom(path):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(odedsl, "load", boom)
    monkeypatch.delenv("ODEDSL_DEBUG", raising=False)
    assert main(["check", "x.ode"]) == 70
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: simulated bug" in err and "ODEDSL_DEBUG=1" in err


# -- simulate ---------------------------------------------------------------------


def test_simulate_prints_table_and_stats(capsys):
    assert main(["simulate", str(MODELS / "lotka_volterra.ode"), "--t-end", "10", "--n", "3"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["t", "prey", "pred"]
    assert [float(x) for x in lines[1].split()] == [0.0, 1.0, 1.0]
    assert len(lines) == 4
    assert "dopri5:" in err and "rhs evaluations" in err


def test_simulate_writes_csv_and_plot(tmp_path, capsys):
    csv_path, png = tmp_path / "sir.csv", tmp_path / "sir.png"
    argv = ["simulate", str(MODELS / "sir.ode"), "--t-end", "14", "--n", "15", "--set", "beta=1.66",
            "--set", "I=2", "--observables", "--out", str(csv_path), "--plot", str(png)]
    assert main(argv) == 0
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "day,S,I,R,in_bed"
    assert len(rows) == 16
    first = [float(x) for x in rows[1].split(",")]
    assert first == [0.0, 762.0, 2.0, 0.0, 2.0]  # --set I=2 overrides the initial value
    last = [float(x) for x in rows[-1].split(",")]
    assert abs(sum(last[1:4]) - 764.0) < 1e-6  # S + I + R conserved
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_simulate_fixed_step_method(capsys):
    argv = ["simulate", str(MODELS / "exponential_decay.ode"), "--times", "0,1,2", "--method", "rk4", "--dt", "0.01"]
    assert main(argv) == 0
    last = capsys.readouterr().out.splitlines()[-1].split()
    assert float(last[1]) == pytest.approx(2.0 * math.exp(-1.0), rel=1e-6)  # printed with 6 digits


def test_simulate_with_inputs_file(tmp_path, capsys):
    data = tmp_path / "force.csv"
    data.write_text("t,force,comment\n0,0,a\n5,1,b\n10,0,c\n")
    argv = ["simulate", str(MODELS / "forced_oscillator.ode"), "--t-end", "10", "--inputs", str(data)]
    assert main(argv) == 0
    assert "dopri5:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, code, fragment",
    [
        (["--set", "alpah=2"], 2, "'alpah' is neither a parameter nor a state; valid names: alpha, beta"),
        (["--set", "alpha"], 2, "expected NAME=VALUE"),
        (["--times", "0,2,1"], 2, "output times must be increasing"),
        (["--method", "rk45"], 2, "invalid choice: 'rk45'"),
        (["--rtol", "abc"], 2, "expected a number, got 'abc'"),
        (["--n", "0"], 2, "expected a number >= 1"),
        (["--rtol", "0"], 2, "tolerances must be positive"),
    ],
)
def test_simulate_usage_errors(extra, code, fragment, capsys):
    argv = ["simulate", str(MODELS / "lotka_volterra.ode"), *(["--t-end", "10"] if "--times" not in extra else []),
            *extra]
    assert main(argv) == code
    assert fragment in capsys.readouterr().err


def test_simulate_needs_an_end_time(capsys):
    assert main(["simulate", str(MODELS / "lotka_volterra.ode")]) == 2
    assert "give --t-end" in capsys.readouterr().err


def test_simulate_missing_inputs_is_a_usage_error(capsys):
    assert main(["simulate", str(MODELS / "forced_oscillator.ode"), "--t-end", "1"]) == 2
    assert "give their values with --inputs" in capsys.readouterr().err


def test_simulate_bad_inputs_file(tmp_path, capsys):
    data = tmp_path / "force.csv"
    data.write_text("t,force\n0,0\n5,oops\n")
    assert main(["simulate", str(MODELS / "forced_oscillator.ode"), "--t-end", "1", "--inputs", str(data)]) == 1
    assert f"{data}:3: column 'force' has a non-numeric value 'oops'" in capsys.readouterr().err
    data.write_text("t,push\n0,0\n")
    assert main(["simulate", str(MODELS / "forced_oscillator.ode"), "--t-end", "1", "--inputs", str(data)]) == 1
    assert "no column named 'force'; the columns are: t, push" in capsys.readouterr().err


def test_simulate_numerical_failure_exits_three(tmp_path, capsys):
    f = tmp_path / "blowup.ode"
    f.write_text("model blowup\nstate x = 1\nder(x) = x^2\n")
    assert main(["simulate", str(f), "--t-end", "2"]) == 3
    err = capsys.readouterr().err
    assert "the solve of 'blowup' with dopri5 stopped at t = " in err and "Traceback" not in err


def test_simulate_max_steps(capsys):
    argv = ["simulate", str(MODELS / "lotka_volterra.ode"), "--t-end", "10", "--max-steps", "5"]
    assert main(argv) == 3
    assert "max_steps=5" in capsys.readouterr().err


@pytest.mark.parametrize("flag, name", [("--out", "x.csv"), ("--plot", "x.png")])
def test_simulate_unwritable_output_is_a_usage_error(flag, name, tmp_path, capsys):
    target = tmp_path / "missing-dir" / name
    assert main(["simulate", str(MODELS / "exponential_decay.ode"), "--t-end", "1", flag, str(target)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {target}: No such file or directory" in err and "internal error" not in err
