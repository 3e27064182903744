"""Profile likelihoods (odedsl.distributed.profile, ``odedsl profile``): identifiability, the scale, resume, errors.

The synthetic model: ``a`` and ``b`` only enter as their product (so neither is
identifiable on its own), ``k`` is identifiable. Every cluster is a local one
of two workers, closed by the code under test (its ``with Engine``), and every
subprocess has a timeout.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import time

import numpy as np
import pytest

import odedsl
from odedsl.cli import main
from odedsl.distributed.profile import CSV, Profiles, crossing, deviance, read_points, threshold

TRUTH = {"a": 1.0, "b": 0.5, "k": 0.8}
MODEL = """\
model product "a and b enter only as a*b: neither is identifiable alone; k is"
param a = 1 in [0.1, 10]
param b = 0.5 in [0.001, 100]
param k = 0.6 in [0.05, 5]
state x = 2
state y = 0
der(x) = -a*b*x
der(y) = a*b*x - k*y
observe xo = x ~ normal(0.05)
observe yo = y ~ normal(0.05)
"""


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """The model, synthetic data from the truth with known noise, and its fit saved by ``odedsl fit``."""
    d = tmp_path_factory.mktemp("profile")
    (d / "product.ode").write_text(MODEL)
    m = odedsl.load(d / "product.ode")
    t = np.linspace(0, 6, 25)
    sol = m.simulate(t, params=TRUTH, rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng(3)
    xo = sol["x"] + rng.normal(0, 0.05, t.size)
    yo = sol["y"] + rng.normal(0, 0.05, t.size)
    with (d / "data.csv").open("w") as fh:
        fh.write("t,xo,yo\n" + "".join(f"{a!r},{b!r},{c!r}\n" for a, b, c in zip(t.tolist(), xo.tolist(), yo.tolist())))
    assert main(["fit", str(d / "product.ode"), str(d / "data.csv"), "--out", str(d / "fit"), "-q"]) == 0
    return d


def test_cli_profile_nonidentifiable_unbounded_identifiable_contains_truth(fitted, capsys):
    start = time.perf_counter()
    assert main(["profile", str(fitted / "fit"), "--params", "a,k", "--points", "4", "--workers", "2", "-q"]) == 0
    seconds = time.perf_counter() - start
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert lines["a"].count("unbounded") == 2, out  # the profile of a is flat: both sides reach a's bounds
    assert "unbounded" not in lines["k"], out
    assert "wrote profiles.csv, profile_a.png, profile_k.png" in out
    for name in ("a", "k"):
        assert (fitted / "fit" / f"profile_{name}.png").stat().st_size > 10_000
    r = odedsl.load_fit(fitted / "fit")
    pts = read_points(fitted / "fit" / CSV, r.model)
    prof = Profiles(r.model, r.params, r.stderr, ["a", "k"], pts, 0.95)
    ivs = prof.intervals()
    assert ivs["a"].lower is None and ivs["a"].upper is None
    assert {p.value for p in pts if p.param == "a"} >= {0.1, 10.0}  # the flat profile went to both bounds
    a_deltas = [p.deviance - prof.reference for p in pts if p.param == "a" and p.status == "ok"]
    assert max(a_deltas) < 0.01  # flat: the product is fitted equally well everywhere
    k = ivs["k"]
    assert k.lower < TRUTH["k"] < k.upper
    assert k.upper - k.lower < 0.5  # a real interval, not the bounds [0.05, 5]
    # near-linear in k: the likelihood interval is close to the Wald one (±1.96 se)
    assert abs((k.upper - k.lower) - 2 * 1.959964 * r.stderr["k"]) < 0.2 * (k.upper - k.lower)
    # every profile point is in profiles.csv with its status and the re-optimised values
    assert all(p.status in ("ok", "optimum") for p in pts)
    b_over_a = [p.params["a"] * p.params["b"] for p in pts if p.param == "a" and p.status == "ok"]
    assert np.allclose(b_over_a, b_over_a[0], rtol=1e-3)
    assert seconds < 60


def test_resume_runs_only_the_missing_points_and_rows_arrive_one_by_one(fitted, tmp_path):
    r = odedsl.load_fit(fitted / "fit")
    rows_seen = []

    def progress(done, total, point):  # the point's row is on disk before we hear of it
        with (tmp_path / "full" / CSV).open() as fh:
            rows_seen.append((done, sum(1 for _ in fh) - 2))  # minus the header and the optimum's row

    full = r.profile(params=["k"], points=4, workers=2, out=tmp_path / "full", progress=progress)
    assert rows_seen == [(i, i) for i in range(1, len(rows_seen) + 1)]
    n_points = sum(p.status == "ok" for p in full.points)
    assert n_points == len(rows_seen) >= 4

    # an interrupted run: the optimum and the first point of each side only
    with (tmp_path / "full" / CSV).open() as fh:
        rows = list(csv.reader(fh))
    keep = [rows[0]] + [row for row in rows[1:] if int(row[2]) <= 1]
    (tmp_path / "part").mkdir()
    with (tmp_path / "part" / CSV).open("w", newline="") as fh:
        csv.writer(fh).writerows(keep)
    ran = []
    resumed = r.profile(params=["k"], points=4, workers=2, out=tmp_path / "part", resume=True,
                        progress=lambda done, total, point: ran.append((point.branch, point.step)))
    assert len(ran) == n_points - 2 and all(step >= 2 for _, step in ran)
    a, b = full.intervals()["k"], resumed.intervals()["k"]
    assert (a.lower, a.upper) == pytest.approx((b.lower, b.upper), rel=1e-9)
    assert len(read_points(tmp_path / "part" / CSV, r.model)) == len(full.points)


def test_deviance_scale_known_and_estimated_sigma(fitted, tmp_path):
    """Known σ: Δ(-2 log L) = n Δloss. No noise model: σ estimated, Δ = n log(SSR1 / SSR0)."""
    from odedsl.fit.data import read_dataset
    from odedsl.fit.least_squares import Residuals
    from odedsl.fit.loss import scaling

    def loss_and_ssr(model, data, x):
        res = Residuals(model, data, scaling(data), "dopri5", 1e-6, 1e-8)
        r, _ = res(np.array(x))
        return float(r @ r) / data.n_points + res.offset, float(r @ r)

    m = odedsl.load(fitted / "product.ode")
    data = read_dataset(m, fitted / "data.csv")
    p0, p1 = dict(TRUTH), {**TRUTH, "k": 0.9}
    d0, d1 = deviance(m, data, p0), deviance(m, data, p1)
    l0, _ = loss_and_ssr(m, data, [p0["a"], p0["b"], p0["k"]])
    l1, _ = loss_and_ssr(m, data, [p1["a"], p1["b"], p1["k"]])
    assert d1 - d0 == pytest.approx(data.n_points * (l1 - l0), rel=1e-6)  # the sensitivity solve differs in the 8th digit

    plain = odedsl.loads(MODEL.replace(" ~ normal(0.05)", ""), name="plain.ode")
    data = read_dataset(plain, fitted / "data.csv")
    spread = data.spread()
    e = data.experiments[0]

    def ssr(p):  # the loss's residuals without a noise model: scaled by each column's spread
        obs = plain.simulate(e.times, params=p).observables()
        model = np.stack([obs["xo"], obs["yo"]], -1)
        return float((((model - e.observed) / spread) ** 2).sum())

    d0, d1 = deviance(plain, data, p0), deviance(plain, data, p1)
    assert d1 - d0 == pytest.approx(data.n_points * math.log(ssr(p1) / ssr(p0)), rel=1e-9)


def test_crossing_and_threshold():
    assert threshold(0.95) == pytest.approx(3.841458820694124)
    assert crossing([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 4.0, 9.0], 3.841458820694124) == pytest.approx(1.959964, 1e-6)
    assert crossing([5.0, 4.0], [0.0, 0.5], 3.84) is None


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odedsl", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, code, message", [
    (["profile", "no/such/fit"], 1, "not a fit folder (no params.json)"),
    (["profile", "{fit}", "--params", "a,nosuch"], 2, "cannot profile 'nosuch': not a parameter"),
    (["profile", "{fit}", "--points", "1"], 2, "expected a number >= 2"),
    (["profile", "{fit}", "--level", "1.5"], 2, "--level must be between 0 and 1"),
    (["profile", "{fit}", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], 2, "not allowed with argument"),
    (["profile", "{fit}", "--scheduler", "tcp://127.0.0.1:1"], 2, "cannot reach the Dask scheduler"),
])
def test_bad_inputs_clear_messages_and_exit_codes(fitted, args, code, message):
    start = time.perf_counter()
    proc = run_cli(*[a.format(fit=fitted / "fit") for a in args])
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.perf_counter() - start < 30


def test_intervals_from_points_name_why_a_side_is_open_or_held_by_a_bound():
    """Intervals from recorded points alone: a crossing, a flat side up to the bound, a failed side, and a
    crossing caused by another parameter reaching its bound."""
    from odedsl.distributed.profile import Point

    m = odedsl.loads(MODEL, name="product.ode")
    fit = {"a": 1.0, "b": 0.5, "k": 0.8}

    def pt(name, branch, step, value, delta, status="ok", **params):
        return Point(name, branch, step, value, -100.0 + delta, 0.0, {**fit, name: value, **params}, status)

    points = [pt(n, 0, 0, fit[n], 0.0, "optimum") for n in ("a", "b", "k")]
    points += [pt("k", -1, 1, 0.7, 1.0), pt("k", -1, 2, 0.6, 4.0),  # crosses at sqrt-interpolated 0.6
               pt("k", 1, 1, 0.9, 1.0), pt("k", 1, 2, 1.0, 2.0, "failed")]
    points += [pt("a", -1, 1, 0.5, 0.0), pt("a", -1, 2, 0.1, 0.0),  # flat to the lower bound 0.1
               pt("a", 1, 1, 2.0, 0.0), pt("a", 1, 2, 4.0, 0.0)]  # flat, stopped inside the range
    points += [pt("b", 1, 1, 5.0, 0.0, a=0.1), pt("b", 1, 2, 8.0, 40.0, a=0.1)]  # a at its bound past the crossing
    ivs = Profiles(m, fit, {"k": 0.05}, ["a", "b", "k"], points, 0.95).intervals()
    k = ivs["k"]
    assert k.lower == pytest.approx(0.7 - 0.1 * (math.sqrt(threshold()) - 1.0) / (2.0 - 1.0))
    assert k.upper is None and k.upper_reason == "failed"
    assert ivs["a"].lower is None and ivs["a"].lower_reason == "bound"
    assert ivs["a"].upper is None and ivs["a"].upper_reason == "grid end"
    assert ivs["b"].upper is not None and ivs["b"].upper_reason == "a at its bound"
    assert ivs["b"].lower is None and ivs["b"].lower_reason == "not run"
    table = Profiles(m, fit, {"k": 0.05}, ["a", "b", "k"], points, 0.95).table()
    assert "unbounded (bound)" in table and "(a at its bound)" in table and "unbounded (failed)" in table


HYBRID = """\
model hybrid "a known decay and a small net"
param k = 0.7 in [0.1, 3]
state x = 1.5
nn U: 1 -> 1, hidden = [4], activation = tanh, init_scale = 0.3
der(x) = -k*x + U(x)[0]
observe xo = x ~ normal(0.05)
"""


def test_hybrid_profile_points_start_from_their_neighbours_weights(tmp_path, monkeypatch):
    """Each point of a hybrid model's profile retrains the net from the previous point's weights (the fit's for
    the first point), not from fresh ones: a profile of a trained model, not of a re-started training."""
    from odedsl.distributed import profile as prof
    from odedsl.fit import run

    m = odedsl.loads(HYBRID, name="hybrid.ode")
    t = np.linspace(0, 4, 17)
    xo = 1.5 * np.exp(-0.9 * t)
    path = tmp_path / "d.csv"
    path.write_text("t,xo\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(t.tolist(), xo.tolist())))
    result = m.fit(path, max_iters=30, polish_iters=0)
    # fit(weights=...) starts from the given weights: at the fitted k too, the first loss is the fit's best
    from odedsl.distributed.starts import with_values

    again = with_values(m, {"k": result.params["k"]}).fit(path, max_iters=1, polish_iters=0, weights=result.weights)
    assert again.history[0][1] == pytest.approx(result.loss, rel=1e-9)
    with pytest.raises(odedsl.errors.UsageError, match="net weights"):
        m.fit(path, max_iters=1, weights=np.zeros(3))

    starts = []
    real_fit = run.fit

    def spy(model, data, settings=None, **kw):
        starts.append(kw.get("weights"))
        r = real_fit(model, data, settings, **kw)
        starts.append(r.weights)
        return r

    monkeypatch.setattr(run, "fit", spy)
    chain = prof.Chain("k", 1, result.params["k"], 0.1, 3.0, 0.05, 3)
    job = prof.Job(m.source, m.filename, result.dataset(), dict(result.settings), result.weights, 5, "x")
    first = prof.solve_point(m, job, {"kind": "point", "param": "k", "branch": 1, "step": 1,
                                      "value": result.params["k"] + 0.05, "start": result.params, "weights": None})
    np.testing.assert_array_equal(starts[0], result.weights)  # the fit's weights for the first point
    assert first["status"] == "ok" and len(first["weights"]) == result.weights.size
    chain.weights = first["weights"]
    prof.solve_point(m, job, {"kind": "point", "param": "k", "branch": 1, "step": 2,
                              "value": result.params["k"] + 0.1, "start": first["params"], "weights": chain.weights})
    np.testing.assert_array_equal(starts[2], first["weights"])  # the neighbour's for the next
