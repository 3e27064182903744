"""Multi-start fits on Dask (odedsl/distributed/): the engine, the starts, and never losing work.

Two clusters serve the tests: an embedded ``LocalCluster`` of two worker processes
(the Python API), and a real one on loopback, a ``dask scheduler`` process and
``dask worker`` processes started here, driven through ``odedsl fit --scheduler``
exactly as a cluster user would. Every process started here is killed in a
``finally``; every wait has a timeout.

The hare–lynx fit from a far start (alpha 1, beta 0.05, delta 0.05, gamma 2)
lands in a local minimum with loss 3.3795 (its sum of squares 8x the best's);
the global optimum's loss is -2.00358.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import odedsl
from odedsl.cli import main
from odedsl.distributed.starts import StartsStopped, draw_starts, multistart, read_records, with_values
from odedsl.errors import UsageError
from odedsl.fit.run import Settings

from conftest import MODELS, ROOT

MODEL = str(MODELS / "hare_lynx.ode")
DATA = str(MODELS / "data" / "hare_lynx.csv")
FAR = {"alpha": 1.0, "beta": 0.05, "delta": 0.05, "gamma": 2.0}
LOCAL_LOSS, BEST_LOSS = 3.3795, -2.00358
PY = sys.executable


def far_model():
    return with_values(odedsl.load(MODEL), FAR)


@pytest.fixture(scope="module")
def engine():
    from odedsl.distributed.engine import Engine

    with Engine(workers=2) as e:
        yield e


# -- dask stays out of single fits -----------------------------------------------------------------------------


def test_check_and_a_single_fit_do_not_import_dask(tmp_path):
    code = f"""
import sys, odedsl
from odedsl.cli import main
assert main(["check", {MODEL!r}]) == 0
assert main(["fit", {MODEL!r}, {DATA!r}, "--max-iters", "3", "--out", {str(tmp_path / 'f')!r}, "-q"]) == 0
odedsl.load({MODEL!r}).fit({DATA!r}, max_iters=3)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
"""
    out = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# -- the starting points ---------------------------------------------------------------------------------------


def test_starts_are_a_latin_hypercube_within_the_bounds():
    m = odedsl.load(MODEL)
    x = draw_starts(m, 11, seed=4)
    names = [p.name for p in m.fitted_params]
    assert x[0].tolist() == [p.value for p in m.fitted_params]  # start 0: the file's values
    for j, p in enumerate(m.fitted_params):
        assert np.all((x[1:, j] >= p.lower) & (x[1:, j] <= p.upper))
    # alpha in [0, 5]: uniform, one draw in each tenth; H0 in [1, 200]: log-uniform, one per tenth of the log range
    a = x[1:, names.index("alpha")]
    assert sorted((a // 0.5).astype(int).tolist()) == list(range(10))
    h = np.log(x[1:, names.index("H0")]) / np.log(200)
    assert sorted((h // 0.1).astype(int).tolist()) == list(range(10))
    assert np.array_equal(draw_starts(m, 11, seed=4), x)  # reproducible
    assert not np.array_equal(draw_starts(m, 11, seed=5)[1:], x[1:])


def test_unbounded_parameters_are_drawn_around_their_value():
    m = odedsl.loads("param c = 2 in [0, inf]\nparam e = -3\nparam f = 2\nstate x = 1\nder(x) = -c*x + e*f\n")
    x = draw_starts(m, 201, seed=0)
    assert np.all((x[1:, 0] >= 0.2) & (x[1:, 0] <= 20))  # positive: a decade either side, log-uniform
    assert abs(np.median(np.log10(x[1:, 0] / 2))) < 0.1
    assert np.all((x[1:, 1] >= -6) & (x[1:, 1] <= 0))  # else uniform over value +- |value|
    assert np.all((x[1:, 2] >= 0) & (x[1:, 2] <= 4))


def test_with_values_changes_the_starting_point_not_the_file():
    m = odedsl.load(MODEL)
    far = with_values(m, FAR)
    assert far.param("alpha").value == 1.0 and m.param("alpha").value == 0.5
    assert far.source == m.source and far.param("H0").value == 30


# -- multi-start on the embedded cluster ---------------------------------------------------------------------------


def test_multistart_finds_the_global_minimum_a_single_start_misses(engine, tmp_path):
    far = far_model()
    single = far.fit(DATA)
    assert single.loss == pytest.approx(LOCAL_LOSS, abs=1e-3)
    out = tmp_path / "ms"
    result = far.fit(DATA, starts=8, seed=1, client=engine.client, out=out)
    assert result.loss == pytest.approx(BEST_LOSS, abs=1e-4)
    assert result.params["alpha"] == pytest.approx(0.540, abs=2e-3)
    assert result.best_start != 0 and result.reached_best() >= 3
    assert result.starts[0]["loss"] == pytest.approx(single.loss, abs=1e-6)  # start 0: the file's (far) values
    assert result.starts[0]["initial"] == {**FAR, "H0": 30.0, "L0": 4.0}
    failed = [r for r in result.starts if r["status"] == "failed"]  # one start of this draw cannot be solved
    assert len(failed) == 1 and "cannot be solved" in failed[0]["message"]
    rows = (out / "starts.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[0].startswith("start,status,loss,iterations,seconds,worker,initial_alpha")
    assert (out / "waterfall.png").stat().st_size > 10_000
    assert sorted(read_records(out)) == list(range(8))
    assert len({r["worker"] for r in result.starts}) == 2  # both workers took starts


def test_same_seed_same_starts_and_best_with_one_and_two_workers(engine):
    far = far_model()
    two = multistart(far, DATA, Settings(seed=1), 8, engine=engine)
    one = far.fit(DATA, starts=8, seed=1, workers=1)
    assert [r["initial"] for r in one.starts] == [r["initial"] for r in two.starts]
    assert len({r["worker"] for r in one.starts}) == 1
    assert one.best_start == two.best_start
    for name, value in two.params.items():
        assert one.params[name] == pytest.approx(value, rel=1e-12)
    assert [r["status"] for r in one.starts] == [r["status"] for r in two.starts]


def test_resume_after_an_interrupted_run_computes_only_the_missing_starts(engine, tmp_path):
    far, out = far_model(), tmp_path / "ms"

    def stop_after_three(done, failed, total, best):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(StartsStopped) as stopped:
        multistart(far, DATA, Settings(seed=1), 8, out=out, engine=engine, progress=stop_after_three)
    assert stopped.value.exit_code == 130 and stopped.value.done == 3
    assert "continue with --resume" in str(stopped.value)
    first = read_records(out)
    assert len(first) == 3 and len((out / "starts.csv").read_text().splitlines()) == 4
    stamps = {k: (out / "starts" / f"{k:04d}.json").stat().st_mtime_ns for k in first}
    resumed = multistart(far, DATA, Settings(seed=1), None, out=out, resume=True, engine=engine)
    assert sorted(resumed.computed) == sorted(set(range(8)) - set(first))
    assert {k: (out / "starts" / f"{k:04d}.json").stat().st_mtime_ns for k in first} == stamps
    assert len(resumed.starts) == 8 and resumed.loss == pytest.approx(BEST_LOSS, abs=1e-4)
    with pytest.raises(UsageError, match="seed"):  # a resume with other inputs is refused
        multistart(far, DATA, Settings(seed=2), None, out=out, resume=True, engine=engine)


def test_when_every_start_fails_the_run_exits_3_with_the_reasons(tmp_path, capsys, monkeypatch):
    # x' = k x^2 from x = 1 blows up at t = 1/k < 1: no start can be solved over [0, 2]
    (tmp_path / "blowup.ode").write_text("param k = 5 in [2, 10]\nstate x = 1\nder(x) = k*x^2\nobserve y = x\n")
    (tmp_path / "blowup.csv").write_text("t,y\n0,1\n1,2\n2,3\n")
    monkeypatch.chdir(tmp_path)
    code = main(["fit", "blowup.ode", "blowup.csv", "--starts", "3", "--workers", "1", "--out", "b", "-q"])
    err = capsys.readouterr().err
    assert code == 3
    assert "every one of the 3 starts failed: 3x" in err and "cannot be solved" in err
    assert len((tmp_path / "b" / "starts.csv").read_text().splitlines()) == 4


def test_engine_streams_results_and_names_a_raising_item(engine):
    from odedsl.distributed.engine import TaskError

    assert sorted(engine.map(abs, [-1, 2, -3])) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(TaskError, match="work item 1 failed: ZeroDivisionError"):
        list(engine.map(_inverse, [1, 0, 2], retries=0))
    got = dict(engine.map(_inverse, [1, 0], retries=0, on_error="yield"))
    assert got[0] == 1.0 and isinstance(got[1], TaskError)


def _inverse(x):
    return 1 / x


def test_compiling_is_paid_once_per_worker(engine):
    from odedsl.distributed.worker import worker_stats

    far = far_model()
    multistart(far, DATA, Settings(seed=1), 8, engine=engine)
    multistart(far, DATA, Settings(seed=2), 8, engine=engine)
    stats = engine.run_on_workers(worker_stats)
    assert len(stats) == 2 and sum(s["tasks"] for s in stats.values()) >= 16
    for s in stats.values():  # one model text: compiled once per process, however many tasks it ran
        assert s["models_compiled"] <= 1 and s["compile_seconds"] < 60


# -- errors -----------------------------------------------------------------------------------------------------------


def test_an_unreachable_scheduler_exits_2_within_seconds(capsys, tmp_path):
    port = _free_port()
    t = time.perf_counter()
    code = main(["fit", MODEL, DATA, "--starts", "4", "--scheduler", f"tcp://127.0.0.1:{port}",
                 "--out", str(tmp_path / "x"), "-q"])
    assert code == 2 and time.perf_counter() - t < 10
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in capsys.readouterr().err


def test_options_that_need_starts_are_usage_errors(capsys, monkeypatch):
    assert main(["fit", MODEL, DATA, "--workers", "2"]) == 2
    assert "--starts" in capsys.readouterr().err
    assert main(["fit", MODEL, DATA, "--starts", "2", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    with pytest.raises(UsageError, match="starts=N"):
        odedsl.load(MODEL).fit(DATA, workers=2)
    from odedsl.distributed.engine import Engine

    monkeypatch.setenv("ODEDSL_SCHEDULER", f"tcp://127.0.0.1:{_free_port()}")
    with pytest.raises(UsageError, match="cannot reach the Dask scheduler"):
        Engine(connect_timeout=2).start()


# -- a real cluster on loopback ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Loopback:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, all killed by ``close``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.procs = tmp, []
        info = tmp / "scheduler.json"
        self._spawn(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(info)], "scheduler")
        _wait(lambda: info.exists() and info.stat().st_size > 0, 30, "the scheduler to start")
        self.address = json.loads(info.read_text())["address"]
        self.workers = [self.add_worker(f"w{i}") for i in range(2)]

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        p = subprocess.Popen([PY, "-m", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def add_worker(self, name: str) -> tuple[subprocess.Popen, str]:
        """A single-threaded worker without a nanny (its pid is the worker's), and its address."""
        address = f"tcp://127.0.0.1:{_free_port()}"
        p = self._spawn(["distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-nanny",
                         "--no-dashboard", "--listen-address", address, "--name", name], name)
        return p, address

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=10, set_as_default=False) as c:
            c.wait_for_workers(n, timeout=60)

    def close(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    cluster = Loopback(tmp_path_factory.mktemp("loopback"))
    try:
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.close()


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _odedsl(*args: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "odedsl", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(p: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"odedsl did not finish in {timeout} s:\n{err}") from None
    return p.returncode, out, err


def _rows(out: Path) -> list[dict]:
    import csv

    with (out / "starts.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_a_loopback_cluster_from_the_command_line(loopback, tmp_path):
    out = tmp_path / "fit"
    code, stdout, stderr = _finish(_odedsl("fit", MODEL, DATA, "--starts", "6", "--scheduler", loopback.address,
                                           "--out", str(out), "-q"))
    assert code == 0, stderr
    assert f"on the Dask cluster at {loopback.address}" in stderr
    assert "6 starts:" in stdout and "best start: 0" in stdout
    rows = _rows(out)
    assert [int(r["start"]) for r in rows] == list(range(6))
    assert {r["worker"] for r in rows} <= {a for _, a in loopback.workers}
    doc = json.loads((out / "params.json").read_text())
    assert doc["loss"] == pytest.approx(BEST_LOSS, abs=1e-4) and doc["settings"]["starts"] == 6


def test_profiles_and_sweeps_on_the_loopback_cluster(loopback, tmp_path):
    """The other two distributed commands take the path a cluster user takes, and give the local results."""
    fit_dir = tmp_path / "fit"
    code, _, stderr = _finish(_odedsl("fit", MODEL, DATA, "--out", str(fit_dir), "-q"))
    assert code == 0, stderr
    code, stdout, stderr = _finish(_odedsl("profile", str(fit_dir), "--params", "gamma", "--points", "4",
                                           "--scheduler", loopback.address, "-q"))
    assert code == 0, stderr
    row = next(line.split() for line in stdout.splitlines() if line.startswith("gamma "))
    lower, upper = float(row[2]), float(row[3])
    assert lower < float(row[1]) < upper  # a bounded interval around the optimum
    sweep = tmp_path / "sweep.csv"
    code, stdout, stderr = _finish(_odedsl("simulate", MODEL, "--t-end", "2", "--n", "3", "--sweep",
                                           "alpha=0.5:1.5:5", "--chunk-size", "2", "--scheduler", loopback.address,
                                           "--out", str(sweep)))
    assert code == 0, stderr
    assert "wrote 15 rows (5 runs x 3 times) in 3 chunks" in stdout
    table = np.loadtxt(sweep, delimiter=",", skiprows=1)
    model = odedsl.load(MODEL)
    for alpha in (0.5, 1.0, 1.5):
        local = model.simulate([0.0, 1.0, 2.0], params={"alpha": alpha}).y
        got = table[np.isclose(table[:, 1], alpha)][:, -local.shape[1]:]
        np.testing.assert_array_equal(got, local)


def test_killing_a_worker_mid_run_loses_no_start(loopback, tmp_path):
    from distributed import Client

    victim, address = loopback.add_worker("victim")
    loopback.wait_for_workers(3)
    out, n = tmp_path / "fit", 40
    run = _odedsl("fit", MODEL, DATA, "--starts", str(n), "--scheduler", loopback.address, "--out", str(out), "-q")
    try:
        with Client(loopback.address, timeout=10, set_as_default=False) as c:
            # the victim is busy with a start and others have finished: the run is under way
            _wait(lambda: c.processing(workers=[address]).get(address) and read_records(out), 60,
                  "the victim worker to take a start")
            done_before = len(read_records(out))
            victim.kill()
            victim.wait(timeout=10)
    finally:
        code, stdout, stderr = _finish(run)
    assert done_before < n
    assert code == 0, stderr
    rows = _rows(out)
    assert sorted(int(r["start"]) for r in rows) == list(range(n))  # every start accounted for, once
    assert all(r["status"] in ("ok", "failed") for r in rows)
    assert all(r["message"] for r in rows if r["status"] == "failed")
    assert json.loads((out / "params.json").read_text())["loss"] == pytest.approx(BEST_LOSS, abs=1e-4)


def test_ctrl_c_keeps_the_finished_starts_and_resume_runs_the_rest(loopback, tmp_path):
    out, n = tmp_path / "fit", 60
    run = _odedsl("fit", MODEL, DATA, "--starts", str(n), "--scheduler", loopback.address, "--out", str(out),
                  "--rtol", "1e-10", "--atol", "1e-12", "-q")
    try:
        _wait(lambda: len(read_records(out)) >= 2 or run.poll() is not None, 60, "the first starts")
        run.send_signal(signal.SIGINT)
    finally:
        code, _, stderr = _finish(run)
    assert code == 130, stderr
    assert f"continue with --resume {out}" in stderr
    kept = read_records(out)
    assert 2 <= len(kept) < n and len(_rows(out)) == len(kept)
    assert (out / "params.json").exists()  # the best start so far is in the folder already
    code, stdout, stderr = _finish(_odedsl("fit", MODEL, DATA, "--resume", str(out), "--scheduler", loopback.address,
                                           "--rtol", "1e-10", "--atol", "1e-12", "-q"))
    assert code == 0, stderr
    assert f"{n - len(kept)} to run ({len(kept)} of {n} already done)" in stderr
    assert sorted(int(r["start"]) for r in _rows(out)) == list(range(n))
    assert all(read_records(out)[k] == rec for k, rec in kept.items())  # the kept starts were not run again
    assert math.isfinite(json.loads((out / "params.json").read_text())["loss"])


def test_a_lost_scheduler_ends_the_run_with_what_finished(tmp_path):
    """The scheduler killed mid-run: no hang; exit 3 with every finished start kept for --resume."""
    cluster = Loopback(tmp_path)
    try:
        cluster.wait_for_workers(2)
        out = tmp_path / "fit"
        run = _odedsl("fit", MODEL, DATA, "--starts", "60", "--scheduler", cluster.address, "--out", str(out),
                      "--rtol", "1e-10", "--atol", "1e-12", "-q")
        try:
            _wait(lambda: len(read_records(out)) >= 1 or run.poll() is not None, 90, "the first start")
            cluster.procs[0].kill()  # the scheduler
        finally:
            code, _, stderr = _finish(run, timeout=60)
    finally:
        cluster.close()
    assert code == 3, stderr
    assert "lost the connection to the Dask scheduler" in stderr and "--resume" in stderr, stderr
    assert len(_rows(out)) == len(read_records(out)) >= 1


@pytest.mark.parametrize("delay", [0.6, 1.2])
def test_ctrl_c_while_the_local_cluster_starts_is_clean(tmp_path, delay):
    """Whenever Ctrl-C comes — while importing, while Dask starts its workers, or while fitting — the run ends
    with exit 130 and a one-line message, never a traceback from Dask's half-started cluster."""
    p = _odedsl("fit", MODEL, DATA, "--starts", "40", "--workers", "2", "--out", str(tmp_path / "fit"), "-q")
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    code, stdout, stderr = _finish(p, timeout=60)
    assert "Traceback" not in stderr
    # 130 and a message; once, on a fresh CI venv, a Ctrl-C at 0.6 s went unseen (a library importing then
    # swallowed it) and the run finished normally: then it must be a complete run
    assert (code == 130 and "interrupted" in stderr) or (code == 0 and "40 starts:" in stdout), (code, stderr)
