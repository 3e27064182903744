"""``odedsl fit``: the command line of the fitting loop, with its progress bar and its folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from odedsl.io.progress import Bar

GRADIENTS = ("backprop", "adjoint", "checkpoint")


def add_parser(sub, fmt, number, positive_int, count) -> None:
    from odedsl.solvers.methods import method_names

    f = sub.add_parser(
        "fit", help="fit a model's parameters and neural terms to data", formatter_class=fmt,
        description="Fit MODEL to the data in DATA (a CSV: see docs/data.md). A model without neural terms is "
                    "fitted by bounded least squares with exact sensitivities (and gets standard errors); a "
                    "hybrid model by Adam then L-BFGS, its gradient compiled on a CPU (see --backend). The results go "
                    "to --out DIR; checkpoints too, so --resume DIR continues an interrupted fit.",
        epilog="examples:\n  odedsl fit models/hare_lynx.ode models/data/hare_lynx.csv\n"
               "  odedsl fit models/lotka_volterra_ude.ode models/data/lotka_volterra_ude.csv --max-iters 500\n"
               "  odedsl fit models/sir.ode models/data/sir_boarding_school_1978.csv --out sir-fit\n"
               "  odedsl fit models/hare_lynx.ode models/data/hare_lynx.csv --starts 16 --workers 2\n\n"
               "writes: params.json, model.ode, weights.npz, history.csv, fit.png, loss.png; with --starts, the best "
               "start's, plus starts.csv, waterfall.png and starts/ (one record per finished start)\n"
               "exit codes: 0 ok, 1 bad model or data file, 2 usage error, 3 the fit could not proceed, "
               "130 interrupted (resume with --resume DIR)",
    )
    f.add_argument("model", metavar="MODEL", help=".ode file")
    f.add_argument("data", metavar="DATA", help="CSV data file (docs/data.md)")
    f.add_argument("--out", metavar="DIR", help="output folder (default: fit-<model name>)")
    f.add_argument("--max-iters", type=positive_int, metavar="N",
                   help="least squares: model evaluations (default 200); Adam: iterations (default 300)")
    f.add_argument("--polish-iters", type=count, metavar="N", help="L-BFGS iterations after Adam (default 100; 0: none)")
    f.add_argument("--lr", type=number, default=1e-2, metavar="LR", help="Adam's learning rate (default 0.01)")
    f.add_argument("--method", default="dopri5", choices=method_names(), metavar="M",
                   help="integration method (default dopri5)")
    f.add_argument("--rtol", type=number, default=1e-6, metavar="R", help="relative tolerance (default 1e-6)")
    f.add_argument("--atol", type=number, default=1e-8, metavar="A", help="absolute tolerance (default 1e-8)")
    f.add_argument("--gradient", choices=GRADIENTS, default="backprop",
                   help="how gradients get through the solver (Adam only; default backprop)")
    f.add_argument("--optimizer", choices=("auto", "least-squares", "adam"), default="auto",
                   help="default auto: least squares without neural terms, else Adam + L-BFGS")
    f.add_argument("--backend", choices=("auto", "numba", "torch"), default="auto",
                   help="where Adam's loss and gradient are computed: numba (compiled, CPU), torch (any device); "
                        "default auto: numba on a CPU for small nets")
    f.add_argument("--seed", type=int, default=0,
                   help="seed of the nets' initial weights and of the --starts draw (default 0)")
    f.add_argument("--device", choices=("cpu", "cuda"), help="Torch device for Adam (default cpu)")
    f.add_argument("--shooting", type=positive_int, metavar="K",
                   help="multiple shooting: K segments per experiment, each from fitted states, with a continuity "
                        "penalty (for long or oscillating series; Adam path)")
    f.add_argument("--l2", type=number, default=0.0, metavar="L", help="L2 penalty on the neural weights")
    f.add_argument("--time-col", metavar="NAME", help="the data's time column (default: the model's time name)")
    f.add_argument("--experiment-col", metavar="NAME",
                   help="column splitting the rows into experiments (default: 'experiment' when present)")
    f.add_argument("--y0-from-data", action="store_true",
                   help="start each experiment from the data's values of the states that have a column")
    f.add_argument("--starts", type=positive_int, metavar="N",
                   help="multi-start: N fits in parallel on Dask, from the file's values and N-1 Latin-hypercube "
                        "draws within the bounds; the best one is the result (docs/tutorial-multistart.md)")
    f.add_argument("--workers", type=positive_int, metavar="K",
                   help="with --starts: worker processes of the local Dask cluster (default: one per core)")
    f.add_argument("--scheduler", metavar="ADDR",
                   help="with --starts: run on the Dask cluster whose scheduler is at ADDR (tcp://HOST:PORT; "
                        "default: $ODEDSL_SCHEDULER, else a local cluster)")
    f.add_argument("--resume", metavar="DIR", help="continue the fit saved in DIR (with --starts: run only the "
                                                   "starts missing there)")
    f.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    f.set_defaults(run=cmd_fit)


def cmd_fit(args: argparse.Namespace) -> int:
    import odedsl
    from odedsl.errors import UsageError
    from odedsl.fit import optimise
    from odedsl.fit.report import table, write_outputs
    from odedsl.fit.run import Settings, fit

    model = odedsl.load(args.model)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here (use --device cpu)")
    out = Path(args.resume or args.out or f"fit-{model.name}")
    if args.resume and not out.is_dir():
        raise UsageError(f"--resume {out}: no such folder")
    settings = Settings(method=args.method, rtol=args.rtol, atol=args.atol, max_iters=args.max_iters,
                        polish_iters=args.polish_iters, lr=args.lr, gradient=args.gradient, seed=args.seed,
                        device=args.device, l2=args.l2, shooting=args.shooting, optimizer=args.optimizer,
                        backend=args.backend, time_col=args.time_col,
                        experiment_col=args.experiment_col, y0_from_data=args.y0_from_data)
    if args.workers and args.scheduler:
        raise UsageError("--workers sizes a local cluster and --scheduler names an existing one: give one of them")
    if args.starts is not None or (args.resume and (out / "starts" / "plan.json").exists()):
        return _cmd_starts(args, model, settings, out)
    if args.workers or args.scheduler:
        raise UsageError("--workers and --scheduler go with --starts N (a multi-start fit)")
    bar = _Progress(enabled=not args.quiet)
    try:
        with bar:
            result = fit(model, args.data, settings, out=out, resume=bool(args.resume), progress=bar.progress_of,
                         report=bar.start)
    except optimise.Interrupted as exc:
        write_outputs(exc.result, out)
        print(f"interrupted: the best result so far is in {out}/; continue with --resume {out}", file=sys.stderr)
        return 130
    written = write_outputs(result, out)
    print(table(result))
    print(f"{result.message}")
    print(f"wrote {', '.join(p.name for p in written)} to {out}/")
    if result.failed:
        print(f"error: the fit stopped early ({result.message}); the best result so far is in {out}/. Try a "
              "smaller --lr, tighter bounds, other starting values or a stiff --method", file=sys.stderr)
        return 3
    return 0


def _cmd_starts(args: argparse.Namespace, model, settings, out: Path) -> int:
    """``odedsl fit --starts N``: the fits on Dask, each start written to ``out`` as it finishes."""
    from odedsl.distributed.starts import StartsStopped, multistart
    from odedsl.fit.report import table, write_outputs

    bar = _StartsProgress(enabled=not args.quiet)
    try:
        with bar:
            result = multistart(model, args.data, settings, args.starts, out=out, resume=bool(args.resume),
                                progress=bar.progress_of, report=bar.start, workers=args.workers,
                                scheduler=args.scheduler)
    except StartsStopped as exc:
        if exc.result is not None:
            write_outputs(exc.result, out)
        print(f"{'' if exc.exit_code == 130 else 'error: '}{exc}", file=sys.stderr)
        return exc.exit_code
    written = write_outputs(result, out)
    print(table(result))
    print(f"best start: {result.best_start} ({result.message})")
    print(result.summary())
    print(f"wrote {', '.join(p.name for p in written)}, starts.csv, waterfall.png and starts/ to {out}/")
    if result.failed:
        print(f"error: the best start's fit stopped early ({result.message}); its result is in {out}/",
              file=sys.stderr)
        return 3
    return 0


class _StartsProgress(Bar):
    """Starts done and failed, the best loss so far, elapsed and remaining time; the run's set-up first."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled, "starts", "failed {task.fields[failed]}  best {task.fields[best]}")

    def start(self, info: dict) -> None:
        for w in info["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
        print(f"optimizer: {info['optimizer']} ({info['why']})", file=sys.stderr)
        done = info["starts"] - info["to_run"]
        engine = info["engine"]
        if engine is None:
            print(f"all {info['starts']} starts are already done", file=sys.stderr)
            return
        where = (f"the Dask cluster at {engine.scheduler}" if engine.scheduler else
                 f"a local Dask cluster of {engine.n_workers} worker{'s' if engine.n_workers != 1 else ''}")
        resumed = f" ({done} of {info['starts']} already done)" if done else ""
        print(f"starts: {info['to_run']} to run{resumed} on {where}", file=sys.stderr)
        if engine.dashboard:
            import importlib.util

            hint = "" if engine.scheduler or importlib.util.find_spec("bokeh") else " (install bokeh to see it)"
            print(f"Dask dashboard: {engine.dashboard}{hint}", file=sys.stderr)
        self.open(total=info["starts"], completed=done, failed="-", best="-")

    def progress_of(self, done: int, failed: int, total: int, best: float) -> None:
        self.update(completed=done, total=total, failed=str(failed), best="-" if best != best else f"{best:.6g}")


class _Progress(Bar):
    """Iteration, loss, best loss, elapsed and remaining time; the optimiser's choice first."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled, "fit", "loss {task.fields[loss]}  best {task.fields[best]}")

    def start(self, kind: str, why: str, total: int | None = None, warnings: list[str] = ()) -> None:
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"optimizer: {kind} ({why})", file=sys.stderr)
        self.open(total=total, loss="-", best="-")

    def progress_of(self, iteration: int, loss: float, best: float) -> None:
        self.update(completed=iteration, loss=f"{loss:.4g}", best=f"{best:.4g}")
