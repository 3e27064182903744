"""Multi-start fits on Dask: throughput with 1 and 2 local workers, Dask's cost per task, compile once per worker.

    /work/venv/bin/python benchmarks/scaling.py [--starts 16] [--repeats 7] [--json OUT]
    /work/venv/bin/python benchmarks/scaling.py --scheduler tcp://HOST:PORT   # the same on a real cluster

The figures of docs/scaling.md (issue #8's performance requirements):

1. ``throughput``: ``--starts`` (16) starts of the hare–lynx fit (models/hare_lynx.ode,
   models/data/hare_lynx.csv; start 0 the file's values, the rest a Latin hypercube
   from seed 0; each start a full least-squares fit) through the public call,
   ``odedsl.distributed.starts.multistart``, on an embedded ``LocalCluster`` of 1 and
   of 2 single-threaded worker processes, both started first. One run warms each
   (every worker compiles, i.e. loads the model from the on-disk cache, and derives
   its sensitivity system: paid once per worker), then ``--repeats`` timed runs, the
   two clusters taking turns so that the machine's other load falls on both alike;
   the median wall time per run gives the throughput in starts per second. The
   wall time includes everything a user waits for after the cluster is up: reading the
   data, shipping the problem to the workers, the fits, the results coming back.
2. ``overhead``: Dask's own cost per task, from an empty work item
   (``odedsl.distributed.worker.empty``): the round trip of one item at a time
   (submit, run, result back: the latency), and the time per item when 1000 are
   submitted at once (what each task costs the scheduler and the client in a stream:
   the throughput limit).
3. ``compile``: each worker's compile and preparation seconds, models compiled and
   tasks run (``worker_stats``), after the warm-up and the timed runs: one compile per
   worker, however many tasks it ran.

With ``--scheduler`` the same runs go to that cluster (its workers as they are)
instead of the local ones. Results are printed as markdown (and to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's odedsl first

import odedsl  # noqa: E402
from benchmarks import provenance  # noqa: E402

MODEL = ROOT / "models" / "hare_lynx.ode"
DATA = ROOT / "models" / "data" / "hare_lynx.csv"


def run_starts(engine, model, starts: int) -> tuple[float, list[dict]]:
    """One multi-start run on ``engine``: its wall time and records."""
    from odedsl.distributed.starts import multistart
    from odedsl.fit.run import Settings

    t = time.perf_counter()
    result = multistart(model, str(DATA), Settings(seed=0), starts, engine=engine)
    return time.perf_counter() - t, result.starts


def throughput(engines: dict, starts: int, repeats: int) -> dict:
    """Each engine warmed by one run, then ``repeats`` timed runs, the engines taking turns (so that whatever
    else the machine does falls on both alike)."""
    from odedsl.distributed.worker import worker_stats

    model = odedsl.load(MODEL)
    warm = {label: run_starts(e, model, starts)[0] for label, e in engines.items()}
    times: dict = {label: [] for label in engines}
    busy: dict = {label: [] for label in engines}  # the fits' own seconds per run
    records: dict = {}
    for _ in range(repeats):
        for label, e in engines.items():
            seconds, records[label] = run_starts(e, model, starts)
            times[label].append(seconds)
            busy[label].append(sum(r["seconds"] for r in records[label]))
    out = {}
    for label, e in engines.items():
        fit_seconds = sorted(r["seconds"] for r in records[label])
        out[label] = {"workers": e.n_workers, "warm_up_s": warm[label], "times_s": times[label],
                      "median_s": statistics.median(times[label]),
                      "starts_per_s": starts / statistics.median(times[label]),
                      "fit_seconds_sum": statistics.median(busy[label]), "fit_seconds_max": fit_seconds[-1],
                      "fits_at_once": statistics.median(b / t for b, t in zip(busy[label], times[label])),
                      "statuses": {s: sum(1 for r in records[label] if r["status"] == s)
                                   for s in ("ok", "stopped", "failed")},
                      "worker_stats": e.run_on_workers(worker_stats)}
    return out


def overhead(engine, n_seq: int = 200, n_batch: int = 1000) -> dict:
    from odedsl.distributed.worker import empty

    list(engine.map(empty, [0]))
    seq = []
    for k in range(n_seq):
        t = time.perf_counter()
        list(engine.map(empty, [k]))
        seq.append(time.perf_counter() - t)
    batch = []
    for _ in range(3):
        t = time.perf_counter()
        list(engine.map(empty, range(n_batch)))
        batch.append((time.perf_counter() - t) / n_batch)
    return {"round_trip_median_s": statistics.median(seq), "round_trip_min_s": min(seq),
            "round_trip_mean_s": statistics.fmean(seq), "stream_per_task_s": statistics.median(batch),
            "workers": engine.n_workers}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--scheduler", help="a running Dask cluster instead of local ones")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    import logging

    import distributed  # noqa: F401  (its import sets its loggers' levels: quieten them after it)

    from odedsl.distributed.engine import Engine

    logging.getLogger("distributed").setLevel(logging.ERROR)

    start = time.perf_counter()
    lines = ["# odedsl multi-start scaling", "",
             f"`{provenance.command_line()}`; {provenance.load_average()} at the start.", ""]
    versions = provenance.versions(["odedsl", "numpy", "scipy", "numba", "dask", "distributed"])
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    figures: dict = {"versions": versions, "starts": args.starts, "repeats": args.repeats}
    configs = [("cluster", {"scheduler": args.scheduler})] if args.scheduler else \
        [("1 worker", {"workers": 1}), ("2 workers", {"workers": 2})]
    engines, up = {}, {}
    try:
        for label, kwargs in configs:
            t = time.perf_counter()
            engines[label] = Engine(**kwargs).start()
            up[label] = time.perf_counter() - t
        for label, figs in throughput(engines, args.starts, args.repeats).items():
            figures[label] = {"cluster_start_s": up[label], **figs, "overhead": overhead(engines[label])}
    finally:
        for e in engines.values():
            e.close()
    lines += ["", f"## {args.starts} starts of the hare–lynx fit (median of {args.repeats} runs after a warm-up run)",
              "", "| cluster | start-up | warm-up run | run (median) | starts/s | the fits' own time (median sum) | "
              "fits running at once | statuses |", "|---|---|---|---|---|---|---|---|"]
    for label, _ in configs:
        f = figures[label]
        lines.append(f"| {label} | {f['cluster_start_s']:.2f} s | {f['warm_up_s']:.2f} s | "
                     f"{f['median_s']:.3f} s | {f['starts_per_s']:.1f} | {f['fit_seconds_sum']:.3f} s | "
                     f"{f['fits_at_once']:.2f} | {f['statuses']} |")
    if not args.scheduler:
        one, two = figures["1 worker"], figures["2 workers"]
        speedup = two["starts_per_s"] / one["starts_per_s"]
        paired = statistics.median(a / b for a, b in zip(one["times_s"], two["times_s"]))
        fastest = min(one["times_s"]) / min(two["times_s"])
        figures["speedup"], figures["speedup_paired"], figures["speedup_fastest"] = speedup, paired, fastest
        lines += ["", f"Throughput, 2 workers over 1: **{speedup:.2f}x** (ratio of the medians; the median of the "
                      f"{args.repeats} back-to-back pairs: {paired:.2f}x; the fastest runs: {fastest:.2f}x). "
                      "Each fit took "
                      f"{two['fit_seconds_sum'] / one['fit_seconds_sum']:.2f}x as long with 2 workers as with 1 "
                      "(the fits' own time): more than 1 means the two workers did not have two free cores."]
    lines += ["", "## Dask's cost per task (an empty work item)", "",
              "| cluster | round trip, one at a time (median / min) | per task, 1000 at once |", "|---|---|---|"]
    for label, _ in configs:
        o = figures[label]["overhead"]
        lines.append(f"| {label} | {o['round_trip_median_s'] * 1e3:.2f} / {o['round_trip_min_s'] * 1e3:.2f} ms | "
                     f"{o['stream_per_task_s'] * 1e3:.2f} ms |")
    lines += ["", "## Compile once per worker (after the warm-up and the timed runs)", "",
              "| cluster | worker | models compiled | compile | problems prepared | preparation | tasks run |",
              "|---|---|---|---|---|---|---|"]
    for label, _ in configs:
        for address, s in sorted(figures[label]["worker_stats"].items()):
            lines.append(f"| {label} | {address} (pid {s['pid']}) | {s['models_compiled']} | "
                         f"{s['compile_seconds']:.2f} s | {s['prepared']} | {s['prepare_seconds']:.2f} s | "
                         f"{s['tasks']} |")
    lines += ["", f"Total {time.perf_counter() - start:.0f} s; {provenance.load_average()} at the end."]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":  # the local cluster's worker processes import this file again
    sys.exit(main())
