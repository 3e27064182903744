"""Sweeps and distributed ensembles (odedsl.distributed.sweep, ``odedsl simulate --sweep``).

The distributed ensemble equals the local one bit for bit; the sweep writes the
expected grid (CSV and Parquet) chunk by chunk, each chunk on disk before the
next is solved; bad flags get clear messages and exit codes. Local clusters
have two workers and are closed by the code under test; subprocesses have
timeouts.
"""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

import odedsl
from odedsl.cli import main
from odedsl.distributed.engine import Engine
from odedsl.distributed.sweep import Job, Sweep, parse_axis, run_sweep

from conftest import MODELS

DECAY = "param k = 1 in [0, 10]\nparam c = 0.5\nstate x = 1\nder(x) = -k*x + c\n"


@pytest.fixture(scope="module")
def decay(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "decay.ode"
    path.write_text(DECAY)
    return path


def exact(k, c, x0, t):
    return c / k + (x0 - c / k) * np.exp(-k * t)


def read(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], dtype=float)


def test_distributed_ensemble_equals_local_bit_for_bit():
    m = odedsl.load(MODELS / "lotka_volterra.ode")
    rng = np.random.default_rng(0)
    n = 203  # not a multiple of the chunk: the last chunk is short
    params = {"alpha": rng.uniform(0.8, 1.8, n), "beta": rng.uniform(0.5, 1.5, n)}
    y0 = {"prey": rng.uniform(0.5, 2.0, n)}
    t = np.linspace(0, 10, 21)
    with Engine(workers=2) as engine:  # closed on the way out, whatever happens
        for method in ("dopri5", "rk4"):  # rk4 with a step of 0.5: some trajectories blow up, NaN in both
            local = m.simulate_ensemble(t, params=params, y0=y0, method=method, on_failure="nan")
            dist = m.simulate_ensemble(t, params=params, y0=y0, method=method, on_failure="nan",
                                       client=engine.client, chunk_size=37)
            check(local, dist, method)


def check(local, dist, method):
    assert (method == "rk4") == (not local.ok.all())
    assert dist.y.tobytes() == local.y.tobytes(), method
    assert np.array_equal(dist.stats, local.stats) and np.array_equal(dist.status, local.status)
    assert np.array_equal(dist.params, local.params) and np.array_equal(dist.t_reached, local.t_reached)


def test_sweep_csv_writes_the_grid(decay, tmp_path, capsys):
    out = tmp_path / "grid.csv"
    assert main(["simulate", str(decay), "--times", "0,0.5,2", "--sweep", "k=1:3:3", "--sweep", "x=1:2:2",
                 "--set", "c=0.25", "--out", str(out), "--rtol", "1e-10", "--atol", "1e-12"]) == 0
    assert "wrote 18 rows (6 runs x 3 times) in 1 chunk" in capsys.readouterr().out
    header, table = read(out)
    assert header == ["run", "k", "x(0)", "t", "x"]
    assert table.shape == (18, 5)
    # runs in grid order, the last axis fastest; three rows per run
    assert table[:, 0].tolist() == [r for r in range(6) for _ in range(3)]
    assert table[::3, 1].tolist() == [1, 1, 2, 2, 3, 3] and table[::3, 2].tolist() == [1, 2] * 3
    assert table[:, 3].tolist() == [0, 0.5, 2] * 6
    np.testing.assert_allclose(table[:, 4], exact(table[:, 1], 0.25, table[:, 2], table[:, 3]), rtol=1e-8)


def test_sweep_parquet_log_scale_in_chunks_on_workers_equals_local_csv(decay, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    common = ["simulate", str(decay), "--t-end", "3", "--n", "4", "--sweep", "k=0.1:10:9", "--log", "k",
              "--sweep", "c=0:1:5", "--chunk-size", "7", "--observables"]
    assert main([*common, "--out", str(tmp_path / "s.csv")]) == 0
    assert "wrote 180 rows (45 runs x 4 times) in 7 chunks" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "s.parquet"), "--workers", "2"]) == 0
    f = pq.ParquetFile(tmp_path / "s.parquet")
    assert f.metadata.num_row_groups == 7  # one per chunk: written as each arrived
    table = f.read()
    assert table.column_names == ["run", "k", "c", "t", "x"]
    header, csv_table = read(tmp_path / "s.csv")
    assert header == table.column_names
    got = np.column_stack([table.column(c).to_numpy() for c in header])
    assert got.tobytes() == csv_table.tobytes()  # the same numbers from the workers, and CSV loses no digit
    k = np.unique(got[:, 1])
    np.testing.assert_allclose(k, np.geomspace(0.1, 10, 9), rtol=1e-15)
    np.testing.assert_allclose(got[:, 4], exact(got[:, 1], got[:, 2], 1.0, got[:, 3]), rtol=1e-4, atol=1e-6)


def test_a_sweep_larger_than_a_chunk_streams_each_chunk_to_disk_before_the_next(decay, tmp_path):
    m = odedsl.load(decay)
    sweep = Sweep.build(m, [parse_axis("k=0.5:5:50"), parse_axis("c=0:1:20")])
    job = Job(m.source, m.filename, sweep, np.linspace(0, 1, 11), {}, {}, {}, None, None, False)
    out = tmp_path / "big.csv"
    on_disk = []

    def progress(done, total, failed):
        with out.open() as fh:
            on_disk.append((done, sum(1 for _ in fh) - 1))

    report = run_sweep(m, job, out, chunk_size=64, progress=progress)
    assert report.runs == 1000 and report.chunks == 16 and report.rows == 11_000
    assert on_disk == [(min(64 * (i + 1), 1000), 11 * min(64 * (i + 1), 1000)) for i in range(16)]


def test_samples_are_latin_hypercube_within_the_ranges_and_reproducible(decay, tmp_path, capsys):
    args = ["simulate", str(decay), "--times", "0,1", "--samples", "20", "--sweep", "k=0.01:100", "--log", "k",
            "--sweep", "x=0:1", "--seed", "7"]
    assert main([*args, "--out", str(tmp_path / "a.csv")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    _, table = read(tmp_path / "a.csv")
    k, x0 = table[::2, 1], table[::2, 2]
    assert k.size == 20 and 0.01 <= k.min() and k.max() <= 100 and 0 <= x0.min() and x0.max() <= 1
    # Latin hypercube: one draw in each of the 20 equal strata (of log k, and of x(0))
    assert sorted(np.floor(20 * np.log(k / 0.01) / np.log(1e4)).astype(int)) == list(range(20))
    assert sorted(np.floor(20 * x0).astype(int)) == list(range(20))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odedsl", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("extra, code, message", [
    (["--sweep", "k=1:2", "--out", "o.csv"], 2, "give the number of grid points, k=LO:HI:N"),
    (["--sweep", "k=1:x:3", "--out", "o.csv"], 2, "expected NAME=LO:HI:N"),
    (["--sweep", "k=1:2:0", "--out", "o.csv"], 2, "N must be a whole number >= 1"),
    (["--sweep", "kk=1:2:3", "--out", "o.csv"], 2, "'kk' is neither a parameter nor a state of model"),
    (["--sweep", "k=-1:2:3", "--log", "k", "--out", "o.csv"], 2, "--log k: the range -1:2 is not positive"),
    (["--sweep", "k=1:2:3", "--log", "c", "--out", "o.csv"], 2, "--log c: no --sweep c=... to put on a log scale"),
    (["--sweep", "k=1:2:3"], 2, "a sweep writes a table: give --out"),
    (["--samples", "5", "--sweep", "k=1:2:3", "--out", "o.csv"], 2, "with --samples the axes are ranges only"),
    (["--samples", "5", "--out", "o.csv"], 2, "give at least one --sweep"),
    (["--log", "k"], 2, "--log is for sweeps"),
    (["--workers", "2"], 2, "--workers is for sweeps"),
    (["--sweep", "k=1:2:3", "--out", "o.csv", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], 2,
     "not allowed with argument"),
    (["--sweep", "k=1:2:3", "--out", "o.csv", "--params", "no/such/fit"], 1, "not a fit folder"),
])
def test_bad_sweeps_clear_messages_and_exit_codes(decay, tmp_path, extra, code, message):
    proc = subprocess.run([sys.executable, "-m", "odedsl", "simulate", str(decay), "--t-end", "1", *extra],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.csv").exists()


def test_missing_model_file_is_an_input_error(tmp_path):
    proc = run_cli("simulate", str(tmp_path / "nope.ode"), "--t-end", "1", "--sweep", "k=1:2:3", "--out",
                   str(tmp_path / "o.csv"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
