"""``odedsl profile``: profile likelihoods of a saved fit, on a Dask cluster, written to the fit's folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from odedsl.io.progress import Bar


def add_parser(sub, fmt, number, positive_int, count) -> None:
    p = sub.add_parser(
        "profile", help="profile likelihoods and confidence intervals of a fit's parameters", formatter_class=fmt,
        description="For each parameter of the fit saved in FITDIR (by 'odedsl fit'), fix it on a grid around the "
                    "optimum and re-optimise the others, each point warm-started from its neighbour. The grid "
                    "starts from the standard error when there is one and goes on until the profile crosses the "
                    "threshold of the confidence level (chi-squared, 1 degree of freedom), a bound is reached, or "
                    "3 x --points points were made on that side. Both sides of every parameter run at the same "
                    "time on a Dask cluster: a local one (one single-threaded worker per core, or --workers K) "
                    "unless --scheduler names one. Each point is written to profiles.csv as it finishes; "
                    "--resume runs only the missing ones.",
        epilog="examples:\n  odedsl profile fit-hare_lynx\n"
               "  odedsl profile fit-hare_lynx --params alpha,gamma --points 15 --workers 2\n"
               "  odedsl profile fit-hare_lynx --scheduler tcp://10.0.0.5:8786 --resume\n\n"
               "writes: profiles.csv, profile_<name>.png (into FITDIR unless --out DIR)\n"
               "exit codes: 0 ok, 1 FITDIR is not a readable fit, 2 usage error (or an unreachable scheduler), "
               "3 every point failed, 130 interrupted (continue with --resume)",
    )
    p.add_argument("fit", metavar="FITDIR", help="folder of a fit saved by 'odedsl fit'")
    p.add_argument("--params", metavar="A,B,...", help="the parameters to profile (default: every fitted one)")
    p.add_argument("--points", type=_at_least_two, default=10, metavar="N",
                   help="about N points from the optimum to the threshold on each side (default 10)")
    p.add_argument("--level", type=number, default=0.95, metavar="L", help="confidence level (default 0.95)")
    p.add_argument("--max-iters", type=positive_int, metavar="N",
                   help="most evaluations (least squares) or iterations (Adam) per point (default: the fit's)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: FITDIR)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, metavar="K",
                       help="workers of the local Dask cluster (default: one per core)")
    where.add_argument("--scheduler", metavar="ADDR",
                       help="use the running Dask cluster at ADDR, tcp://HOST:PORT (default: $ODEDSL_SCHEDULER, "
                            "else a local cluster)")
    p.add_argument("--resume", action="store_true", help="keep the points in profiles.csv and run only the missing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_profile)


def _at_least_two(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected a number >= 2, got {value}")
    return value


def cmd_profile(args: argparse.Namespace) -> int:
    from odedsl.distributed.profile import CSV, profile
    from odedsl.errors import UsageError
    from odedsl.fit.result import load_fit

    if not 0 < args.level < 1:
        raise UsageError(f"--level must be between 0 and 1 (got {args.level:g})")
    result = load_fit(args.fit)
    names = [n.strip() for n in args.params.split(",") if n.strip()] if args.params else None
    if args.params is not None and not names:
        raise UsageError("--params: give parameter names separated by commas, e.g. --params alpha,gamma")
    out = Path(args.out or args.fit)
    bar = _Progress(enabled=not args.quiet)

    def started(dashboard: str | None, n_workers: int) -> None:
        where = f", dashboard {dashboard}" if dashboard else ""
        n = len(names) if names else len(result.model.fitted_params)
        print(f"profiling {n} parameter{'s' if n != 1 else ''} on {n_workers} Dask worker{'s' if n_workers != 1 else ''}"
              f"{where}", file=sys.stderr)
        bar.open(last="")

    try:
        with bar:
            prof = profile(result, params=names, points=args.points, level=args.level, out=out, resume=args.resume,
                           workers=args.workers, scheduler=args.scheduler, max_iters=args.max_iters,
                           progress=bar.progress_of, on_start=started)
    except KeyboardInterrupt:
        print(f"interrupted: the points finished so far are in {out / CSV}; continue with "
              f"odedsl profile {args.fit} --resume" + (f" --out {args.out}" if args.out else ""), file=sys.stderr)
        return 130
    print(prof.table())
    written = [out / CSV] + [out / f"profile_{n}.png" for n in prof.names]
    print(f"wrote {', '.join(p.name for p in written)} to {out}/")
    ok = sum(p.status == "ok" for p in prof.points)
    failed = [p for p in prof.points if p.status == "failed"]
    if failed and not ok:
        reasons = sorted({p.message for p in failed})
        print(f"error: every profile point failed ({len(failed)}): " + "; ".join(reasons[:3]), file=sys.stderr)
        return 3
    if failed:
        print(f"warning: {len(failed)} profile points failed (their side ends there); see the 'message' column of "
              f"{out / CSV}", file=sys.stderr)
    return 0


class _Progress(Bar):
    """Points done, the last one, and elapsed time."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled, "profile", "{task.fields[last]}", unit="points")

    def progress_of(self, done: int, total: int, point) -> None:
        if point is not None:
            last = f"{point.param} = {point.value:.4g} {'failed' if point.status == 'failed' else ''}".rstrip()
            self.update(completed=done, last=last)
