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
            print(str(exc), file=sys.stderr)
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting (``console_main`` exits)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    parser = build_parser()
    try:
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
        if os.environ.get("ODEDSL_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc}\n"
              "this is a bug in odedsl; rerun with ODEDSL_DEBUG=1 for the traceback and please report it",
              file=sys.stderr)
        return EXIT_INTERNAL


def console_main() -> None:
    """Entry point of the ``odedsl`` console script."""
    sys.exit(main())
