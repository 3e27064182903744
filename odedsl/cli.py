"""The ``odedsl`` command: argument parsing, exit codes, and turning errors into messages.

Exit codes (docs/cli.md): 0 success, 1 invalid input (model or data file),
2 usage error, 3 numerical failure. No traceback reaches the user unless
ODEDSL_DEBUG=1 is set.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from odedsl import __version__
from odedsl.errors import ModelError, OdedslError, UsageError

log = logging.getLogger("odedsl")

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_NUMERIC, EXIT_INTERNAL = 0, 1, 2, 3, 70


def _print_warnings(model, stream) -> None:
    for w in model.warnings:
        print(w.format(), file=stream)


def cmd_check(args: argparse.Namespace) -> int:
    import odedsl

    status = EXIT_OK
    for path in args.models:
        try:
            model = odedsl.load(path)
        except OdedslError as exc:
            print(exc.format() if isinstance(exc, ModelError) else f"error: {exc}", file=sys.stderr)
            status = max(status, exc.exit_code)
            continue
        print(f"ok  {path}: {model.summary()}")
        if not args.quiet:
            _print_warnings(model, sys.stderr)
    return status


def cmd_show(args: argparse.Namespace) -> int:
    import odedsl

    model = odedsl.load(args.model)
    if args.format == "json":
        print(json.dumps(model.to_dict(), indent=2))
    elif args.format == "latex":
        print(model._repr_latex_())
    else:
        print(str(model))
    return EXIT_OK


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _whole(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _whole(1)


def _times(text: str) -> list[float]:
    return [_float(x) for x in text.split(",") if x.strip()]


def _assignment(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), _float(value)


def cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np

    import odedsl
    from odedsl.io.table import read_csv, write_csv

    model = odedsl.load(args.model)
    if args.times is not None:
        t_eval = args.times
    else:
        if args.t_end is None:
            raise UsageError("give --t-end T (or --times t1,t2,...)\nrun 'odedsl simulate --help' for help")
        if args.t_end <= args.t_start:
            raise UsageError(f"--t-end ({args.t_end:g}) must be after --t-start ({args.t_start:g})")
        t_eval = np.linspace(args.t_start, args.t_end, args.n)
    params, y0 = {}, {}
    weights = None
    if args.params:
        fitted = odedsl.load_fit(args.params, model)
        params, weights = dict(fitted.params), fitted.weights if fitted.weights.size else None
    states = {s.name for s in model.states}
    names = {p.name for p in model.params}
    for name, value in args.set or []:
        if name in names:
            params[name] = value
        elif name in states:
            y0[name] = value
        else:
            valid = ", ".join([p.name for p in model.params] + [s.name for s in model.states])
            raise UsageError(f"--set {name}=...: '{name}' is neither a parameter nor a state; valid names: {valid}")
    inputs = None
    if model.inputs:
        if args.inputs is None:
            raise UsageError(f"model '{model.name}' has input(s) {', '.join(u.name for u in model.inputs)}: "
                             "give their values with --inputs FILE.csv (a time column and one column per input)")
        time_col = model.time.name
        cols = read_csv(args.inputs, [time_col] + [u.name for u in model.inputs])
        inputs = {}
        for u in model.inputs:
            ok = ~np.isnan(cols[time_col]) & ~np.isnan(cols[u.name])
            inputs[u.name] = (cols[time_col][ok], cols[u.name][ok])
    if args.sweep or args.samples is not None:
        return _sweep(args, model, t_eval, params, y0, weights, inputs)
    for flag, given in (("--log", args.log), ("--workers", args.workers), ("--scheduler", args.scheduler),
                        ("--chunk-size", args.chunk_size)):
        if given:
            raise UsageError(f"{flag} is for sweeps: give --sweep NAME=LO:HI:N (or --samples N)")
    sol = model.simulate(t_eval, params=params, y0=y0, method=args.method, rtol=args.rtol, atol=args.atol,
                         dt=args.dt, inputs=inputs, max_steps=args.max_steps, weights=weights)
    header = [model.time.name, *sol.names]
    table = np.column_stack([sol.t, sol.y])
    if args.observables and model.observables:
        obs = sol.observables()
        header += list(obs)
        table = np.column_stack([table, *obs.values()])
    if args.out and args.out.lower().endswith(".parquet"):
        from odedsl.distributed.sweep import TableWriter

        with TableWriter(args.out, header) as writer:
            writer.write(list(table.T))
        print(f"wrote {len(sol.t)} rows to {args.out}")
    elif args.out:
        write_csv(args.out, header, table)
        print(f"wrote {len(sol.t)} rows to {args.out}")
    else:
        _print_table(header, table)
    st = sol.stats
    print(f"{args.method}: {st['n_accepted']} steps ({st['n_rejected']} rejected), {st['n_rhs']} rhs evaluations",
          file=sys.stderr)
    if args.plot:
        from odedsl.io.plots import plot_solution

        plot_solution(sol, args.plot)
        print(f"wrote the plot to {args.plot}", file=sys.stderr)
    return EXIT_OK


def _sweep(args: argparse.Namespace, model, t_eval, params: dict, y0: dict, weights, inputs) -> int:
    """``odedsl simulate --sweep ...``: every run of the grid (or the draws), streamed to ``--out``."""
    import numpy as np

    from odedsl.distributed.sweep import Job, Sweep, print_progress, run_sweep

    if not args.out:
        raise UsageError("a sweep writes a table: give --out FILE.csv (or FILE.parquet)")
    if args.plot:
        raise UsageError("--plot draws one trajectory; a sweep writes its runs to --out")
    sweep = Sweep.build(model, args.sweep or [], args.log or [], args.samples, args.seed)
    swept = {a.name for a in sweep.axes}
    job = Job(model.source, model.filename, sweep, np.asarray(t_eval, dtype=float),
              {"method": args.method, "rtol": args.rtol, "atol": args.atol, "dt": args.dt,
               "max_steps": args.max_steps},
              {k: v for k, v in params.items() if k not in swept}, {k: v for k, v in y0.items() if k not in swept},
              weights, inputs, args.observables)

    def started(dashboard, n_workers: int) -> None:
        where = f", dashboard {dashboard}" if dashboard else ""
        print(f"sweeping {sweep.n_runs} runs on {n_workers} Dask workers{where}", file=sys.stderr)

    report = run_sweep(model, job, args.out, args.chunk_size, workers=args.workers, scheduler=args.scheduler,
                       progress=print_progress(), on_start=started)
    print(f"wrote {report.rows} rows ({report.runs} runs x {len(job.t)} times) in {report.chunks} "
          f"chunk{'s' if report.chunks != 1 else ''} to {args.out}")
    if report.failed:
        print(f"warning: {report.failed} of {report.runs} runs failed to solve; their rows are NaN", file=sys.stderr)
        if report.failed == report.runs:
            print("error: no run of the sweep could be solved; check the ranges, or try a stiff --method",
                  file=sys.stderr)
            return EXIT_NUMERIC
    return EXIT_OK


def _sweep_axis(text: str):
    from odedsl.distributed.sweep import parse_axis

    try:
        return parse_axis(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--sweep ")) from None


def _print_table(header: list[str], table, max_rows: int = 11) -> None:
    import numpy as np

    rows = table if len(table) <= max_rows else table[np.unique(np.linspace(0, len(table) - 1, max_rows).astype(int))]
    cells = [header] + [[f"{x:.6g}" for x in r] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    for c in cells:
        print("  ".join(x.rjust(w) for x, w in zip(c, widths)))
    if len(table) > max_rows:
        print(f"({len(table)} rows; --out FILE.csv writes them all)")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so all usage errors share one path."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().rstrip()}\nrun '{self.prog} --help' for help")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = _Parser(
        prog="odedsl", formatter_class=fmt,
        description="Hybrid mechanistic / neural ODE models from .ode files.",
        epilog="examples:\n  odedsl check models/*.ode\n  odedsl show models/lotka_volterra_ude.ode\n\n"
               "exit codes: 0 ok, 1 invalid model or data file, 2 usage error, 3 numerical failure\n"
               "docs: docs/cli.md and docs/language.md",
    )
    p.add_argument("--version", action="version", version=f"odedsl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    c = sub.add_parser(
        "check", help="check model files and report every problem", formatter_class=fmt,
        description="Parse and check each model file. Prints a one-line summary per good file and every "
                    "error (FILE:LINE:COL with the line and a caret) of each bad one.",
        epilog="example:\n  odedsl check models/*.ode\n\nexit code 0 only when every file is a valid model",
    )
    c.add_argument("models", nargs="+", metavar="MODEL", help=".ode file(s) to check")
    c.add_argument("-q", "--quiet", action="store_true", help="do not print warnings (e.g. unused parameters)")
    c.set_defaults(run=cmd_check)

    s = sub.add_parser(
        "show", help="print a model's equations and parameters", formatter_class=fmt,
        description="Print the model's equations (with every 'let' substituted), initial values, "
                    "parameters, constants, inputs, neural networks and observables.",
        epilog="examples:\n  odedsl show models/sir.ode\n  odedsl show models/sir.ode --format latex\n"
               "  odedsl show models/sir.ode --format json > sir.json",
    )
    s.add_argument("model", metavar="MODEL", help=".ode file")
    s.add_argument("--format", choices=["text", "latex", "json"], default="text", help="output format (default: text)")
    s.set_defaults(run=cmd_show)

    from odedsl.solvers.methods import METHODS, method_names

    sim = sub.add_parser(
        "simulate", help="integrate a model and write or print its trajectory", formatter_class=fmt,
        description="Integrate the model from --t-start to --t-end on the CPU (compiled with Numba; the first "
                    "run of a model compiles it, later runs reuse the on-disk cache).",
        epilog="examples:\n  odedsl simulate models/lotka_volterra.ode --t-end 10\n"
               "  odedsl simulate models/lotka_volterra.ode --t-end 10 --n 1001 --set alpha=1.2 --out lv.csv "
               "--plot lv.png\n  odedsl simulate models/robertson.ode --times 0,1,10,100 --method rk4 --dt 1e-4\n"
               "  odedsl simulate models/lotka_volterra.ode --t-end 10 --sweep alpha=0.5:1.5:21 --sweep beta=0.1:1:10 "
               "--log beta --out sweep.parquet\n\n"
               "methods: " + ", ".join(METHODS) + "\nexit code 3 when the solve fails (the message says where and "
               "what to try)",
    )
    sim.add_argument("model", metavar="MODEL", help=".ode file")
    sim.add_argument("--t-start", type=_float, default=0.0, metavar="T0", help="start time (default 0)")
    sim.add_argument("--t-end", type=_float, metavar="T", help="end time")
    grid = sim.add_mutually_exclusive_group()
    grid.add_argument("--n", type=_positive_int, default=101, metavar="N",
                      help="number of evenly spaced output times (default 101)")
    grid.add_argument("--times", type=_times, metavar="T1,T2,...", help="explicit increasing output times")
    sim.add_argument("--method", default="dopri5", choices=method_names(), metavar="M",
                     help="integration method (default dopri5): " + ", ".join(method_names()))
    sim.add_argument("--rtol", type=_float, default=1e-6, metavar="R", help="relative tolerance (default 1e-6)")
    sim.add_argument("--atol", type=_float, default=1e-8, metavar="A", help="absolute tolerance (default 1e-8)")
    sim.add_argument("--dt", type=_float, metavar="DT", help="step size of the fixed-step methods")
    sim.add_argument("--max-steps", type=_positive_int, default=1_000_000, metavar="N",
                     help="give up after N steps (default 1000000)")
    sim.add_argument("--set", type=_assignment, action="append", metavar="NAME=VALUE",
                     help="override a parameter value or a state's initial value (repeatable)")
    sim.add_argument("--inputs", metavar="FILE.csv", help="values of the model's inputs over time")
    sim.add_argument("--observables", action="store_true", help="also output the observables")
    sim.add_argument("--out", metavar="FILE.csv",
                     help="write the trajectory as CSV (header: time, then states); FILE.parquet writes Parquet")
    sim.add_argument("--plot", metavar="FILE.png", help="plot every state against time")
    sim.add_argument("--params", metavar="DIR", help="use the parameters and weights of the fit saved in DIR")
    sw = sim.add_argument_group("sweeps", "simulate many parameter sets (or initial values) and write them all to "
                                "--out as one long table: run, swept values, time, states")
    sw.add_argument("--sweep", type=_sweep_axis, action="append", metavar="NAME=LO:HI:N",
                    help="sweep a parameter or a state's initial value over N evenly spaced values (repeatable: "
                         "the grid is every combination)")
    sw.add_argument("--log", action="append", metavar="NAME", help="space the swept NAME geometrically (0 < LO, HI)")
    sw.add_argument("--samples", type=_positive_int, metavar="N",
                    help="N Latin-hypercube draws within the --sweep ranges (written NAME=LO:HI) instead of a grid")
    sw.add_argument("--seed", type=int, default=0, help="seed of the --samples draws (default 0)")
    sw.add_argument("--chunk-size", type=_positive_int, metavar="RUNS",
                    help="runs solved and written at a time (default: about a million values per chunk)")
    where = sw.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, metavar="K",
                       help="solve the chunks on a local Dask cluster of K workers (default: in this process)")
    where.add_argument("--scheduler", metavar="ADDR", help="solve the chunks on the Dask cluster at tcp://HOST:PORT")
    sim.set_defaults(run=cmd_simulate)

    from odedsl.fit.cli import add_parser as add_fit

    from odedsl.discover.cli import add_parser as add_discover
    from odedsl.distributed.profile_cli import add_parser as add_profile

    for add in (add_fit, add_discover, add_profile):
        add(sub, fmt, _float, _positive_int, _whole(0))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting (``console_main`` exits)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        parser = build_parser()  # inside: it imports the subcommands' modules, and a Ctrl-C may come meanwhile
        args = parser.parse_args(argv)
        run: Callable[[argparse.Namespace], int] | None = getattr(args, "run", None)
        if run is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return run(args)
    except ModelError as exc:
        print(exc.format(), file=sys.stderr)
        return exc.exit_code
    except OdedslError as exc:
        print(f"error: {exc}" if not isinstance(exc, UsageError) else str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug in odedsl: say so plainly, keep the traceback for debugging
        if _caused_by_ctrl_c(exc):  # e.g. NumPy turns a Ctrl-C during its import into an ImportError
            print("interrupted", file=sys.stderr)
            return 130
        if os.environ.get("ODEDSL_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc}\n"
              "this is a bug in odedsl; rerun with ODEDSL_DEBUG=1 for the traceback and please report it",
              file=sys.stderr)
        return EXIT_INTERNAL


def _caused_by_ctrl_c(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def console_main() -> None:
    """Entry point of the ``odedsl`` console script."""
    sys.exit(main())
