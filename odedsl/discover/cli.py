"""``odedsl discover``: the command line of the discovery, and the folder it writes."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from odedsl.discover.options import FAMILIES, OPTIMIZERS, SELECTIONS


def add_parser(sub, fmt, number, positive_int, count) -> None:
    d = sub.add_parser(
        "discover", help="replace a fitted model's neural terms by equations (sparse regression)", formatter_class=fmt,
        description="Sample each neural output of the hybrid fit in FITDIR along its fitted trajectories, regress "
                    "it sparsely on a library of candidate terms built from the net's inputs (STLSQ and the LASSO "
                    "path, the support chosen by held-out error or AICc), and write the model with each output "
                    "replaced by its expression, each coefficient a new parameter. Then refit that model to the "
                    "same data by least squares and compare it with the hybrid, in and beyond the data. "
                    "See docs/discover.md.",
        epilog="examples:\n  odedsl discover fit-lotka_volterra_ude\n"
               "  odedsl discover fit-lotka_volterra_ude --degree 2 --library exp --term \"prey/(1 + pred)\"\n"
               "  odedsl discover fit-lotka_volterra_ude --threshold 0.1 --out lv_discovered.ode --no-refit\n\n"
               "writes to --dir (default FITDIR/discover): discovered.ode (or --out), candidates.csv, "
               "discover.png, and after the refit refit/ (a fit folder) and extrapolation.png\n"
               "exit codes: 0 ok, 1 bad fit folder or --term, 2 usage error, 3 a solve or the refit failed",
    )
    d.add_argument("fitdir", metavar="FITDIR", help="folder written by odedsl fit for a hybrid model")
    d.add_argument("--library", default="", metavar="SPEC",
                   help=f"candidate families, comma-separated: polyN (polynomials up to degree N), "
                        f"{', '.join(FAMILIES)} (default: polynomials only)")
    d.add_argument("--degree", type=count, metavar="D", help="polynomial degree, all cross terms (default 3)")
    d.add_argument("--term", action="append", default=[], metavar="EXPR",
                   help="an extra candidate in the model's own syntax, e.g. \"prey/(1 + pred)\" (repeatable)")
    d.add_argument("--optimizer", choices=OPTIMIZERS, default="both",
                   help="which sparse regression proposes supports (default both: STLSQ and the LASSO path)")
    how = d.add_mutually_exclusive_group()
    how.add_argument("--threshold", type=number, metavar="L",
                     help="a fixed threshold (STLSQ, on unit-RMS columns) or LASSO weight, instead of choosing")
    how.add_argument("--select", choices=SELECTIONS, default="cv",
                     help="how the support is chosen: cv (error on held-out blocks of time; default) or aic")
    d.add_argument("--samples", type=positive_int, default=200, metavar="N",
                   help="dense times per experiment along the fitted trajectories (default 200)")
    d.add_argument("--box", action="store_true",
                   help="also sample N points spread over the range of the states on those trajectories")
    d.add_argument("--max-error", type=number, default=0.25, metavar="E",
                   help="keep the net for an output whose expression errs by more than E (relative RMS; "
                        "default 0.25)")
    d.add_argument("--out", metavar="NEW.ode", help="where to write the model file (default DIR/discovered.ode)")
    d.add_argument("--dir", metavar="DIR", help="output folder (default FITDIR/discover)")
    d.add_argument("--no-refit", action="store_true", help="do not refit and judge the discovered model")
    d.add_argument("--extrapolate", type=number, default=3.0, metavar="F",
                   help="judge both models up to F times the data's time window (default 3)")
    d.set_defaults(run=cmd_discover)


def cmd_discover(args: argparse.Namespace) -> int:
    from odedsl.discover import discover, load_hybrid
    from odedsl.discover.report import (equations_text, front_text, judgement_text, plot_extrapolation, plot_front,
                                        write_candidates)
    from odedsl.errors import NumericalError, UsageError

    start = time.perf_counter()
    result = load_hybrid(args.fitdir)
    found = discover(result, fit_dir=args.fitdir, library=args.library, degree=args.degree, terms=tuple(args.term),
                     optimizer=args.optimizer, threshold=args.threshold, select=args.select, samples=args.samples,
                     box=args.box, max_error=args.max_error, refit=False, extrapolate=args.extrapolate)
    folder = Path(args.dir) if args.dir else Path(args.fitdir) / "discover"
    out = Path(args.out) if args.out else folder / "discovered.ode"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output folder {exc.filename}: {exc.strerror}") from None
    n = sum(c.where.shape[0] for c in found.samples.calls[:1])
    k = len(found.samples.trajectories)
    print(f"sampled {', '.join(net.name for net in result.model.nets)} at {n} points along {k} fitted "
          f"trajector{'y' if k == 1 else 'ies'}{' and in a box' if args.box else ''} "
          f"({sum(found.timings.values()):.2f} s for sampling, library, regression and writing)")
    print(front_text(found))
    status = 0
    if not args.no_refit:
        from odedsl.discover.judge import judge

        try:
            judge(found)
        except NumericalError as exc:
            print(f"error: the refit of the discovered model failed: {exc}\nthe model file is written as the "
                  f"regression gave it; fit it with odedsl fit {out} DATA to try other settings", file=sys.stderr)
            status = exc.exit_code
    found.save(out)
    write_candidates(found, folder / "candidates.csv")
    plot_front(found, folder / "discover.png")
    written = [out.name if out.parent == folder else str(out), "candidates.csv", "discover.png"]
    print()
    print(equations_text(found))
    if found.judgement is not None:
        if found.refit is not None:
            from odedsl.fit.report import write_outputs

            write_outputs(found.refit, folder / "refit")
            written.append("refit/")
        plot_extrapolation(found, folder / "extrapolation.png")
        written.append("extrapolation.png")
        print()
        print(judgement_text(found))
    print(f"wrote {', '.join(written)} to {folder}/ ({time.perf_counter() - start:.1f} s in all)")
    return status
