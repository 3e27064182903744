"""Time the front end (parse + check + IR build) on synthetic models of growing size.

    python benchmarks/frontend.py                       # 100, 1,000 and 10,000 states
    python benchmarks/frontend.py --sizes 20 50 --repeats 1   # a quick smoke
    python benchmarks/frontend.py --json results.json

Each size is measured in a fresh Python process of its own, so one size's heap
does not slow the next and the peak memory (``getrusage``) is that size's alone.
There the script times ``parse``, ``check`` and ``lower`` one after the other,
exactly as ``odedsl.lang.compile_model`` chains them (cyclic garbage collector
paused, as it does), and then the whole public path, ``odedsl.loads``, on its
own. Before any timing it compiles a small model once, so the Lark parser is
built and every import is done. Before every timed run it empties SymPy's cache
and collects garbage, so each run starts like the first compile of a process and
does not pay for the previous run's garbage. Figures are medians over the
repeats (at most 3 repeats for 10,000 states and more).

It prints one row per size: the median seconds of each stage, their sum, the
``odedsl.loads`` total (wall clock, and the CPU time of the same runs, which
changes less when other processes share the machine), and the ratio of the total
to the previous size's next to the ratio of the sizes; then the verdict against
the targets, judged on CPU time: a 1,000-state model compiles in under 2 s, and
10x the states costs at most ~12x the time (in general: time ratio at most 1.2
times the size ratio; pairs below 100 states are not judged, fixed costs
dominate there).

The exit status is 0 whatever the verdict (this is a measurement), unless
``--fail-on-miss`` is given; 2 is a usage error.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Measure the checkout this script sits in, installed or not.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lark  # noqa: E402
import sympy  # noqa: E402
from sympy.core.cache import clear_cache  # noqa: E402

import odedsl  # noqa: E402
from odedsl.lang.check import check  # noqa: E402
from odedsl.lang.lower import lower  # noqa: E402
from odedsl.lang.parser import parse  # noqa: E402
from synthetic import synthetic_model  # noqa: E402

try:
    import resource
except ImportError:  # Windows
    resource = None

DEFAULT_SIZES = (100, 1000, 10000)
TARGET_STATES = 1000
TARGET_SECONDS = 2.0
SCALING_SLACK = 1.2  # 10x the states may cost 12x the time
SMALLEST_JUDGED = 100
LARGE = 10000  # from this size on, at most LARGE_REPEATS repeats
LARGE_REPEATS = 3


@dataclass
class Row:
    states: int
    lines: int
    kbytes: float
    repeats: int
    parse_s: float
    check_s: float
    lower_s: float
    stages_s: float
    total_s: float  # odedsl.loads end to end, wall clock
    total_cpu_s: float  # the same runs' CPU time, which the verdicts judge (wall clock on an idle machine)
    peak_rss_mb: float | None
    ratio: float | None = None  # total over the previous size's total (wall clock)
    cpu_ratio: float | None = None  # the same for CPU time
    size_ratio: float | None = None


def _peak_rss_mb() -> float | None:
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _fresh() -> None:
    clear_cache()
    gc.collect()


def _time_stages(text: str, name: str) -> tuple[float, float, float]:
    """Seconds for parse, check and lower, chained as ``compile_model`` chains them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        tree, rep = parse(text, name)
        rep.raise_if_errors()
        t1 = time.perf_counter()
        checked = check(tree, rep)
        rep.raise_if_errors()
        t2 = time.perf_counter()
        model = lower(checked, rep)
        t3 = time.perf_counter()
    finally:
        if was_enabled:
            gc.enable()
    del tree, checked, model
    return t1 - t0, t2 - t1, t3 - t2


def _time_total(text: str, name: str, n: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds of ``odedsl.loads``."""
    c0, t0 = time.process_time(), time.perf_counter()
    model = odedsl.loads(text, name)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    if len(model.states) != n or len(model.params) != n:  # the benchmark itself is broken
        raise RuntimeError(f"synthetic model of {n} states compiled to {len(model.states)} states")
    return elapsed, cpu


def measure(n: int, repeats: int, seed: int = 0) -> Row:
    """Median timings of the front end on the ``n``-state synthetic model."""
    text = synthetic_model(n, seed)
    name = f"synthetic_{n}.ode"
    runs = []
    for _ in range(repeats):
        _fresh()
        stages = _time_stages(text, name)
        _fresh()
        runs.append((*stages, sum(stages), *_time_total(text, name, n)))
    med = [statistics.median(col) for col in zip(*runs)]
    return Row(n, text.count("\n"), len(text.encode()) / 1024, repeats, *med, peak_rss_mb=_peak_rss_mb())


def _measure_in_child(n: int, repeats: int, seed: int) -> Row:
    """``measure(n, ...)`` in a fresh interpreter."""
    cmd = [sys.executable, __file__, "--one", str(n), "--repeats", str(repeats), "--seed", str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"measuring {n} states failed (exit status {proc.returncode})")
    return Row(**json.loads(proc.stdout.strip().splitlines()[-1]))


def verdicts(rows: list[Row]) -> list[tuple[str, bool | None, str]]:
    """(target, met?, detail) for each target; met is None when these sizes cannot say.

    Judged on CPU time: on an idle machine it equals the wall-clock time, and on a
    shared one it still measures odedsl rather than its neighbours.
    """
    out: list[tuple[str, bool | None, str]] = []
    at_target = next((r for r in rows if r.states == TARGET_STATES), None)
    what = f"{TARGET_STATES:,} states in < {TARGET_SECONDS:g} s"
    if at_target is None:
        out.append((what, None, f"not measured (add {TARGET_STATES} to --sizes)"))
    else:
        out.append((what, at_target.total_cpu_s < TARGET_SECONDS,
                    f"CPU {at_target.total_cpu_s:.3f} s (wall clock {at_target.total_s:.3f} s)"))
    what = f"scaling: time ratio <= {SCALING_SLACK:g} x size ratio (10x states -> <= {10 * SCALING_SLACK:g}x time)"
    judged = [(a, b) for a, b in zip(rows, rows[1:]) if a.states >= SMALLEST_JUDGED]
    if not judged:
        out.append((what, None, f"not judged (needs two sizes >= {SMALLEST_JUDGED})"))
    for a, b in judged:
        size_ratio, ratio = b.states / a.states, b.total_cpu_s / a.total_cpu_s
        out.append((what, ratio <= SCALING_SLACK * size_ratio,
                    f"{a.states:,} -> {b.states:,}: {size_ratio:g}x states, {ratio:.2f}x CPU time "
                    f"(wall clock {b.total_s / a.total_s:.2f}x)"))
    return out


def environment() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "sympy": sympy.__version__,
        "lark": lark.__version__,
        "odedsl": odedsl.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "load_average": load,
    }


def _fmt(x: float | None, spec: str, missing: str = "-") -> str:
    return missing if x is None else format(x, spec)


def table(rows: list[Row]) -> str:
    head = ("states", "lines", "KiB", "reps", "parse s", "check s", "lower s", "stages s", "loads s", "CPU s",
            "ratio (wall)", "CPU ratio / size", "peak MiB")
    body = [
        (f"{r.states:,}", f"{r.lines:,}", f"{r.kbytes:,.0f}", str(r.repeats), f"{r.parse_s:.3f}", f"{r.check_s:.3f}",
         f"{r.lower_s:.3f}", f"{r.stages_s:.3f}", f"{r.total_s:.3f}", f"{r.total_cpu_s:.3f}",
         _fmt(r.ratio, ".2f"), "-" if r.cpu_ratio is None else f"{r.cpu_ratio:.2f} / {r.size_ratio:g}",
         _fmt(r.peak_rss_mb, ".0f"))
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time parse + check + IR build on synthetic models.")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), metavar="N",
                        help="numbers of states, run in increasing order (default: 100 1000 10000)")
    parser.add_argument("--repeats", type=int, default=5, metavar="N",
                        help=f"timed runs per size, median reported (default 5; at most {LARGE_REPEATS} "
                             f"from {LARGE:,} states)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic models (default 0)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures to this JSON file")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if any(n < 1 for n in args.sizes):
        parser.error("--sizes must be at least 1")
    if args.one is not None:
        odedsl.loads(synthetic_model(10, args.seed + 1), "warmup.ode")  # builds the parser, finishes imports
        print(json.dumps(asdict(measure(args.one, args.repeats, args.seed))))
        return 0
    sizes = sorted(set(args.sizes))

    env = environment()
    print(f"odedsl {env['odedsl']} front end | Python {env['python']}, sympy {env['sympy']}, lark {env['lark']} | "
          f"{env['cpus']} CPUs, load {_fmt(env['load_average'] and env['load_average'][0], '.2f')} | {env['date']}",
          flush=True)
    rows: list[Row] = []
    for n in sizes:
        repeats = min(args.repeats, LARGE_REPEATS) if n >= LARGE else args.repeats
        row = _measure_in_child(n, repeats, args.seed)
        if rows:
            prev = rows[-1]
            row.ratio, row.cpu_ratio = row.total_s / prev.total_s, row.total_cpu_s / prev.total_cpu_s
            row.size_ratio = n / prev.states
        rows.append(row)
        print(f"  {n:,} states: {row.total_s:.3f} s", file=sys.stderr, flush=True)

    print()
    print(table(rows))
    print()
    results = verdicts(rows)
    for what, met, detail in results:
        mark = {True: "PASS", False: "MISS", None: "n/a "}[met]
        print(f"{mark}  {what}: {detail}")
    env["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None

    if args.json is not None:
        args.json.write_text(json.dumps({
            "environment": env,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "rows": [asdict(r) for r in rows],
            "verdicts": [{"target": w, "met": m, "detail": d} for w, m, d in results],
        }, indent=2) + "\n")
    missed = any(m is False for _, m, _ in results)
    return 1 if missed and args.fail_on_miss else 0


if __name__ == "__main__":
    raise SystemExit(main())
