"""``odedsl discover``: turn a trained neural term back into symbols, and write the new model.

The pipeline, one module per stage: ``sampling`` asks the trained nets what they
learned where the fitted model went; ``library`` builds the candidate terms in
SymPy from each net's inputs (and ``terms`` reads the user's); ``regression``
sweeps a sparse regression over them and picks a support per output;
``writer`` prints the model with each net output replaced; ``judge`` refits
that model to the data and sets it against the hybrid, in and beyond the data.
``report`` and ``cli`` present it. docs/discover.md explains the method and its
limits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sympy

from odedsl.discover.library import Library, build_library, evaluate
from odedsl.discover.options import Options
from odedsl.discover.regression import Candidate, Front, import_optimizers, regress
from odedsl.discover.sampling import Samples, sample
from odedsl.discover.terms import parse_terms
from odedsl.discover.writer import NewParam, model_text, to_ode, unique_name
from odedsl.errors import InputError, UsageError
from odedsl.model import Model

__all__ = ["Discovery", "Options", "OutputResult", "discover", "load_hybrid"]


@dataclass
class OutputResult:
    """One net output: its library, its front, the support chosen, and whether it replaces the net."""

    net: str
    output: int
    library: Library
    front: Front
    replaced: bool
    params: list[str] = field(default_factory=list)  # the new parameters' names, one per chosen term
    samples: tuple = field(default=(), repr=False)  # (library columns, net output, folds) it was regressed on

    @property
    def chosen(self) -> Candidate:
        return self.front.chosen

    def expression(self, numeric: bool = True) -> sympy.Expr:
        """The chosen expression in the net's input labels, with numbers (or the new parameters' names)."""
        terms = [self.library.display(self.library.features[j]) for j in self.chosen.support]
        coefs = ([sympy.Float(self.chosen.coef[j], 6) for j in self.chosen.support] if numeric
                 else [sympy.Symbol(p) for p in self.params])
        return sympy.Add(*(c * t for c, t in zip(coefs, terms)))

    def describe(self, candidate: Candidate) -> str:
        terms = [self.library.display(self.library.features[j]) for j in candidate.support]
        return to_ode(sympy.Add(*(sympy.Float(candidate.coef[j], 4) * t for j, t in zip(candidate.support, terms))))


@dataclass
class Discovery:
    """What ``FitResult.discover`` returns: the new model, its text, and how each output was found.

    ``model`` is ready to simulate and fit; ``table`` has one row per net output,
    ``candidates`` the whole front; ``save(path)`` writes the model file. After a
    refit (``refit=True``), ``refit`` is its ``FitResult`` and ``judgement`` the
    comparison with the hybrid.
    """

    model: Model
    text: str
    source: object  # the FitResult discovered from
    outputs: list[OutputResult]
    options: Options
    samples: Samples
    fit_dir: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    refit: object = None  # FitResult of the refitted discovered model
    judgement: object = None  # odedsl.discover.judge.Judgement
    pruned: list[tuple[str, float, float | None]] = field(default_factory=list)  # (param, value, std. error)

    def rewrite(self, values: dict[str, float] | None = None) -> None:
        """Print the model again from ``outputs`` (after a change of support), parameters at ``values``."""
        import odedsl

        self.text = _write(self.source, self.outputs, self.options, self.fit_dir, values, self.pruned)
        self.model = odedsl.loads(self.text, name=f"{self.source.model.name}_discovered.ode")

    @property
    def table(self) -> list[dict]:
        """Per net output: the expression chosen, its terms and coefficients, its errors, and whether it replaced
        the net."""
        return [{"net": o.net, "output": o.output, "expression": to_ode(o.expression()), "replaced": o.replaced,
                 "terms": [o.library.features[j].label for j in o.chosen.support],
                 "params": list(o.params), "coefficients": [float(o.chosen.coef[j]) for j in o.chosen.support],
                 "error": o.chosen.error, "cv_error": o.chosen.cv_error, "chosen_by": o.front.how}
                for o in self.outputs]

    @property
    def candidates(self) -> list[dict]:
        """The front of every output: each distinct support with its size, errors and AICc."""
        return [{"net": o.net, "output": o.output, "n_terms": c.size, "error": c.error, "cv_error": c.cv_error,
                 "aicc": c.aic, "threshold": c.threshold, "chosen": c is o.chosen, "expression": o.describe(c)}
                for o in self.outputs for c in o.front.candidates]

    @property
    def weights(self) -> np.ndarray:
        """The hybrid's weights of the nets the discovered model still has (empty when all were replaced)."""
        from odedsl.nets import layouts

        old = {lay.name: lay for lay in layouts(self.source.model)}
        parts = [self.source.weights[old[n.name].offset: old[n.name].offset + old[n.name].n_weights]
                 for n in self.model.nets]
        return np.concatenate(parts) if parts else np.zeros(0)

    def save(self, path: str | Path) -> Path:
        """Write the discovered model file to ``path``."""
        p = Path(path)
        try:
            p.write_text(self.text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {p}: {exc.strerror}") from None
        return p


def load_hybrid(folder: str | Path):
    """A fit folder of a hybrid model, with the checks discover needs (``InputError`` naming what is wrong)."""
    from odedsl.fit.result import PARAMS, WEIGHTS, load_fit

    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{d}: no such fit folder")
    try:
        result = load_fit(d)
    except InputError:
        if (d / PARAMS).exists() and not (d / WEIGHTS).exists():
            raise InputError(f"{d / WEIGHTS}: missing; discover needs the trained weights the fit saved") from None
        raise
    if not result.model.nets:
        raise InputError(f"{d}: the model fitted ('{result.model.name}') has no neural terms: discover replaces a "
                         "trained net by equations, so it needs the fit of a hybrid model")
    if not np.isfinite(result.weights).all():
        raise InputError(f"{d / WEIGHTS}: {int((~np.isfinite(result.weights)).sum())} of the weights are not finite")
    return result


def discover(result, fit_dir: str | None = None, **options) -> Discovery:
    """Replace each net output of a hybrid fit by a sparse combination of candidate terms.

    ``options`` are those of ``odedsl.discover.Options`` (``library``, ``degree``,
    ``terms``, ``optimizer``, ``threshold``, ``select``, ``samples``, ``box``,
    ``max_error``, ``refit``, ``extrapolate``). Everything a user can get wrong is
    checked before any work: ``UsageError`` for an option, ``ModelError`` for a
    term, ``InputError`` for the fit.

    Examples
    --------
    >>> import odedsl
    >>> fit = odedsl.load_fit("fit-lotka_volterra_ude")  # doctest: +SKIP
    >>> d = fit.discover(degree=2)  # doctest: +SKIP
    >>> print(d.model)  # doctest: +SKIP
    """
    valid = set(Options.__dataclass_fields__) - {"families", "resolved_degree"}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise UsageError(f"unknown discover option {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(valid))}")
    opts = Options(**options)
    model: Model = result.model
    where = fit_dir or "the fit"
    if not model.nets:
        raise InputError(f"{where}: the model fitted ('{model.name}') has no neural terms: nothing to discover")
    import_optimizers()
    user_terms = parse_terms(model, opts.terms)
    clock = time.perf_counter()
    samples = sample(result, opts.samples, opts.box, opts.folds)
    timings = {"sampling": time.perf_counter() - clock}
    clock = time.perf_counter()
    built = []
    for net in model.nets:
        calls = samples.of(net.name)
        if not calls:
            continue  # declared, never called: nothing to replace
        lib = build_library(model, net, calls[0].call.args, opts, user_terms)
        n = sum(c.where.shape[0] for c in calls)
        if len(lib) >= n:
            raise UsageError(f"the library has {len(lib)} candidates per output of {net.name} (degree "
                             f"{opts.resolved_degree} in {net.n_in} inputs) but there are only {n} samples: lower "
                             "--degree or raise --samples")
        theta = np.concatenate([evaluate(lib.exprs(c.call.args), samples.variables, c.where, samples.constants)
                                for c in calls])
        _check_columns(lib, theta)
        built.append((net, lib, theta, np.concatenate([c.outputs for c in calls]),
                      np.concatenate([c.folds for c in calls])))
    timings["library"] = time.perf_counter() - clock
    clock = time.perf_counter()
    outputs = []
    for net, lib, theta, targets, folds in built:
        fronts = regress(theta, targets, folds, opts.optimizer, opts.select, opts.threshold)
        for k, front in enumerate(fronts):
            outputs.append(OutputResult(net.name, k, lib, front, front.chosen.error <= opts.max_error,
                                        samples=(theta, targets[:, k], folds)))
    timings["regression"] = time.perf_counter() - clock
    clock = time.perf_counter()
    text = _write(result, outputs, opts, fit_dir)
    import odedsl

    new = odedsl.loads(text, name=f"{model.name}_discovered.ode")
    timings["writing"] = time.perf_counter() - clock
    found = Discovery(new, text, result, outputs, opts, samples, fit_dir, timings)
    if opts.refit:
        from odedsl.discover.judge import judge

        judge(found)
    return found


def _check_columns(lib: Library, theta: np.ndarray) -> None:
    """A candidate that is not finite on the samples (log of a negative input, a pole) cannot be regressed on."""
    bad = ~np.isfinite(theta).all(0)
    if bad.any():
        f = lib.features[int(np.flatnonzero(bad)[0])]
        count = int((~np.isfinite(theta[:, int(np.flatnonzero(bad)[0])])).sum())
        what = f"--term {to_ode(f.term)!r}" if f.family == "term" else f"--library {f.family}"
        raise UsageError(f"{what}: the candidate {to_ode(lib.display(f))} is not finite at {count} of "
                         f"{theta.shape[0]} samples (outside its domain there); leave it out")


def _write(result, outputs: list[OutputResult], opts: Options, fit_dir: str | None,
           values: dict[str, float] | None = None, pruned=()) -> str:
    """The discovered model's text: new parameters named after net, output and term; header with provenance.

    ``values`` (a refit's) override every parameter's value, the new ones included.
    """
    model = result.model
    values = values or {}
    taken = {s.name for s in model.states} | {p.name for p in model.params} | {c.name for c in model.consts} | \
        {u.name for u in model.inputs} | {n.name for n in model.nets} | {lt.name for lt in model.lets} | \
        {model.time.name, "pi", "inf"}
    from odedsl.lang.builtins import FUNCTIONS

    taken |= set(FUNCTIONS)
    replace: dict[sympy.Expr, sympy.Expr] = {}
    new_params: list[NewParam] = []
    by_net: dict[str, list[OutputResult]] = {}
    for o in outputs:
        by_net.setdefault(o.net, []).append(o)
        o.params = []
        if not o.replaced:
            continue
        symbols = []
        for j in o.chosen.support:
            f = o.library.features[j]
            name = unique_name(f"{o.net}_{o.output}_{f.label}", taken)
            o.params.append(name)
            symbols.append(sympy.Symbol(name, real=True))
            new_params.append(NewParam(name, float(values.get(name, o.chosen.coef[j])), ""))
        net = model.net(o.net)
        for call in model.net_calls():
            if call.net != o.net:
                continue
            exprs = o.library.exprs(call.args)
            value = sympy.Add(*(s * exprs[j] for s, j in zip(symbols, o.chosen.support)))
            replace[net.output(o.output)(*call.args)] = value
    kept = {}
    for name, outs in by_net.items():
        left = [o for o in outs if not o.replaced]
        if left:
            kept[name] = (f"still learned: output{'s' if len(left) > 1 else ''} "
                          f"{', '.join(str(o.output) for o in left)} of {name}, which no sparse expression explains "
                          f"within {opts.max_error:.0%} (best: "
                          f"{', '.join(f'{o.chosen.error:.0%}' for o in left)}); its weights are the fit's")
    for net in model.nets:  # declared but never called: keep it as it was
        if net.name not in by_net:
            kept[net.name] = "never called in the fitted model; kept as it was"
    header = _header(result, outputs, opts, fit_dir, bool(values), pruned)
    return model_text(model, {**result.params, **values}, replace, new_params, kept, header, unique_name(f"{model.name}_discovered",
                                                                                        set()))


_OPTIMIZER_WORDS = {"both": "supports proposed by STLSQ over a threshold sweep and by the LASSO path",
                    "stlsq": "supports proposed by STLSQ over a threshold sweep",
                    "lasso": "supports proposed by the LASSO path"}


def _header(result, outputs: list[OutputResult], opts: Options, fit_dir: str | None, refitted: bool,
            pruned) -> list[str]:
    from odedsl import __version__

    data = result.data_file or getattr(result.data, "path", None) or "unknown"
    lines = [f"Discovered by odedsl {__version__} (odedsl discover) from the fit "
             f"{'in ' + str(fit_dir) if fit_dir else 'of ' + result.model.filename}",
             f"of {result.model.filename} to {data}.",
             f"Library: {opts.describe_library()}; columns scaled to unit RMS.",
             f"Regression: {_OPTIMIZER_WORDS[opts.optimizer]}; each support refitted by least squares, "
             f"chosen by {outputs[0].front.how if outputs else ''}.",
             f"Samples: {opts.samples} dense times per experiment along the fitted trajectories"
             + (f", plus {opts.samples} in a box over their range" if opts.box else "") + "."]
    for o in outputs:
        c = o.chosen
        state = "replaced by" if o.replaced else "kept (no expression within the error bound); best"
        how = (f"threshold {c.threshold:.3g}" if math.isfinite(c.threshold) else
               "the sweep's support less a term the data did not support" if math.isnan(c.threshold) else "no term")
        lines.append(f"{o.net}[{o.output}] {state}: {to_ode(o.expression()) if c.support else '0'} "
                     f"({how}; relative error {c.error:.1%}, held-out {c.cv_error:.1%})")
    for name, value, se in pruned:
        lines.append(f"Dropped after the refit, not significant on the data: {name} = {value:.4g} "
                     f"(std. error {'n/a' if se is None else f'{se:.2g}'})")
    lines.append("Parameter values: least-squares refit to the data (std. errors in the discover folder's refit/)"
                 if refitted else "Other parameters start from the fit's values; refit with: odedsl fit THIS_FILE DATA")
    return lines
