"""The Model: a checked model as SymPy, the single source every backend is generated from.

Everything numeric later (Numba, Torch, fitting) reads this object and nothing else:
symbols that carry the user's names, right-hand sides with ``let``s substituted,
exact Jacobians, and neural terms as opaque functions (see ``odedsl.symbolic``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property

import sympy

from odedsl.errors import Diagnostic
from odedsl.symbolic import NeuralFamily, NeuralTerm, neural_terms


@dataclass(frozen=True)
class State:
    name: str
    symbol: sympy.Symbol
    initial: sympy.Expr  # in terms of parameters and constants
    line: int


@dataclass(frozen=True)
class Param:
    name: str
    symbol: sympy.Symbol
    value: float
    lower: float = -math.inf
    upper: float = math.inf
    fixed: bool = False
    line: int = 0

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.lower) or math.isfinite(self.upper)


@dataclass(frozen=True)
class Const:
    name: str
    symbol: sympy.Symbol
    value: sympy.Expr  # an exact number where the file wrote one
    line: int


@dataclass(frozen=True)
class Input:
    name: str
    symbol: sympy.Symbol
    line: int


@dataclass(frozen=True)
class Net:
    """A neural term: an MLP from ``n_in`` to ``n_out`` reals."""

    name: str
    n_in: int
    n_out: int
    hidden: tuple[int, ...]
    activation: str
    init_scale: float
    family: NeuralFamily = field(repr=False, compare=False)
    line: int = 0

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.n_in, *self.hidden, self.n_out)

    @property
    def n_weights(self) -> int:
        sizes = self.layer_sizes
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))

    def output(self, index: int) -> type[NeuralTerm]:
        """The SymPy function class of output ``index``."""
        return self.family.function(index)


@dataclass(frozen=True)
class Let:
    name: str
    symbol: sympy.Symbol
    expr: sympy.Expr  # earlier lets already substituted
    line: int


@dataclass(frozen=True)
class Noise:
    kind: str  # a key of odedsl.lang.builtins.NOISE_MODELS
    args: tuple[sympy.Expr, ...]


@dataclass(frozen=True)
class Observable:
    column: str
    expr: sympy.Expr
    noise: Noise | None
    line: int


@dataclass(frozen=True)
class NetCall:
    """One evaluation of a net: all outputs used at the same arguments share it."""

    net: str
    args: tuple[sympy.Expr, ...]


@dataclass(eq=False)
class Model:
    """A checked model. Build one with ``odedsl.load`` or ``odedsl.loads``.

    Examples
    --------
    >>> import odedsl
    >>> m = odedsl.loads("param k = 0.5\\nstate x = 1\\nder(x) = -k*x\\n", name="decay")
    >>> m.rhs
    [-k*x]
    >>> m.jacobian_states()
    Matrix([[-k]])
    """

    name: str
    description: str | None
    filename: str
    source: str
    time: sympy.Symbol
    states: list[State]
    params: list[Param]
    consts: list[Const]
    inputs: list[Input]
    nets: list[Net]
    lets: list[Let]
    observables: list[Observable]
    rhs: list[sympy.Expr]
    warnings: list[Diagnostic] = field(default_factory=list)
    _backends: dict = field(default_factory=dict, repr=False)

    # -- symbols and lookups ------------------------------------------------

    @property
    def state_symbols(self) -> list[sympy.Symbol]:
        return [s.symbol for s in self.states]

    @property
    def param_symbols(self) -> list[sympy.Symbol]:
        return [p.symbol for p in self.params]

    @property
    def fitted_params(self) -> list[Param]:
        return [p for p in self.params if not p.fixed]

    @property
    def input_symbols(self) -> list[sympy.Symbol]:
        return [u.symbol for u in self.inputs]

    @property
    def initial_values(self) -> list[sympy.Expr]:
        return [s.initial for s in self.states]

    @property
    def const_values(self) -> dict[sympy.Symbol, sympy.Expr]:
        return {c.symbol: c.value for c in self.consts}

    def param(self, name: str) -> Param:
        return _by_name(self.params, name, "parameter")

    def state(self, name: str) -> State:
        return _by_name(self.states, name, "state")

    def net(self, name: str) -> Net:
        return _by_name(self.nets, name, "neural network")

    @cached_property
    def source_hash(self) -> str:
        """SHA-256 of the model text: the key of compiled-code caches."""
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    # -- calculus -------------------------------------------------------------

    def jacobian(self, wrt: list[sympy.Symbol], exprs: list[sympy.Expr] | None = None) -> sympy.Matrix:
        """Exact Jacobian of ``exprs`` (default: the right-hand side) with respect to ``wrt``.

        Only the symbols that occur in each expression are differentiated, so sparse
        models stay cheap. Neural terms differentiate to their opaque partials; the
        almost-everywhere-zero ``DiracDelta`` from ``sign`` or ``abs`` is dropped.
        """
        exprs = self.rhs if exprs is None else exprs
        column = {s: j for j, s in enumerate(wrt)}
        entries: dict[tuple[int, int], sympy.Expr] = {}
        for i, e in enumerate(exprs):
            for s in e.free_symbols & column.keys():
                d = sympy.diff(e, s)
                if d.has(sympy.DiracDelta):
                    d = d.replace(sympy.DiracDelta, lambda *a: sympy.S.Zero)
                if d != 0:
                    entries[(i, column[s])] = d
        return sympy.SparseMatrix(len(exprs), len(wrt), entries).as_mutable()

    def jacobian_states(self) -> sympy.Matrix:
        """d rhs / d states, shape (n_states, n_states)."""
        return self.jacobian(self.state_symbols)

    def jacobian_params(self, fitted_only: bool = False) -> sympy.Matrix:
        """d rhs / d params, shape (n_states, n_params); columns in declaration order."""
        params = self.fitted_params if fitted_only else self.params
        return self.jacobian([p.symbol for p in params])

    def time_derivative(self) -> list[sympy.Expr]:
        """Partial d rhs / d t at fixed states and inputs (inputs' own rates are the backend's)."""
        return [e.diff(self.time) if self.time in e.free_symbols else sympy.S.Zero for e in self.rhs]

    def cse(self, exprs: list[sympy.Expr] | None = None) -> tuple[list[tuple[sympy.Symbol, sympy.Expr]], list[sympy.Expr]]:
        """Common-subexpression elimination; temporaries are ``Dummy`` symbols, so they
        can never collide with a user's name."""
        exprs = self.rhs if exprs is None else exprs
        return sympy.cse(exprs, symbols=sympy.numbered_symbols("_t", cls=sympy.Dummy))

    def net_calls(self, exprs: list[sympy.Expr] | None = None) -> list[NetCall]:
        """Distinct net evaluations in ``exprs`` (default: rhs and observables), in a stable order."""
        if exprs is None:
            exprs = self.rhs + [o.expr for o in self.observables]
        seen: dict[tuple[str, tuple], NetCall] = {}
        for e in exprs:
            for term in sorted(neural_terms(e), key=sympy.default_sort_key):
                key = (term.net, term.args)
                if key not in seen:
                    seen[key] = NetCall(term.net, term.args)
        return list(seen.values())

    # -- numerics (lazy: importing the model never imports Numba) -------------------------

    def compile(self):
        """The model's compiled Numba module (generated and cached on disk on first use)."""
        if "numba" not in self._backends:
            from odedsl.backends.compiled import NumbaModel

            self._backends["numba"] = NumbaModel.build(self)
        return self._backends["numba"]

    def to_torch(self, dtype=None, device=None, seed: int = 0):
        """The model as a ``torch.nn.Module`` (``odedsl.backends.torch_model.TorchModel``): batched
        right-hand side, fitted parameters as ``nn.Parameter``, nets as submodules, and ``solve``.

        ``dtype`` defaults to float64; ``seed`` draws the nets' initial weights exactly as
        ``odedsl.nets.init_weights`` does, so both backends start from the same model.

        Examples
        --------
        >>> import odedsl, torch
        >>> m = odedsl.loads("param k = 1 in [0, 5]\\nstate x = 1\\nder(x) = -k*x\\n")
        >>> tm = m.to_torch()
        >>> ys = tm.solve(torch.tensor([0.0, 1.0]), rtol=1e-10, atol=1e-12)
        >>> round(ys[-1, 0].item(), 8)
        0.36787944
        """
        import torch

        from odedsl.backends.torch_model import TorchModel

        return TorchModel(self, dtype=dtype or torch.float64, device=device, seed=seed)

    def fit(self, data, out=None, resume: bool = False, progress=None, starts: int | None = None, client=None,
            workers: int | None = None, scheduler: str | None = None, weights=None, **settings):
        """Fit the parameters (and neural terms) to ``data``, a CSV path or a pandas DataFrame.

        ``settings`` are those of ``odedsl.fit.run.Settings`` (``method``, ``rtol``,
        ``atol``, ``max_iters``, ``lr``, ``gradient``, ``seed``, ``device``, ``l2``,
        ``shooting``, ``optimizer``, ``backend`` (``"auto"``, ``"numba"``: compiled exact
        gradients on the CPU, ``"torch"``), ``time_col``, ``experiment_col``, ``y0_from_data``, ...).
        ``out`` is a folder for checkpoints (``resume`` continues from it). ``weights``:
        the nets' starting weights (e.g. an earlier fit's ``.weights``; default: fresh
        ones from ``seed``). Returns a ``FitResult`` (``.params``, ``.loss``,
        ``.history``, ``.simulate``, ``.save``).

        ``starts=N``: a multi-start fit on Dask (``odedsl.distributed.starts``): the
        file's values and N-1 Latin-hypercube draws (from ``seed``), each a full fit,
        run on ``client`` (a ``distributed.Client``), on the cluster at ``scheduler``,
        or on a local cluster of ``workers`` processes (default: one per core). It
        returns the best start's result, a ``MultiStartResult`` whose ``.starts`` holds
        every start's record; with ``out``, each start is saved there as it finishes
        and ``resume`` runs only the missing ones; ``progress(done, failed, total,
        best_loss)``. In a script, call it under ``if __name__ == "__main__":``
        (the local cluster's worker processes import the script).
        """
        from odedsl.errors import UsageError
        from odedsl.fit.run import Settings, fit

        import dataclasses

        valid = [f.name for f in dataclasses.fields(Settings)]
        unknown = sorted(set(settings) - set(valid))
        if unknown:
            raise UsageError(f"unknown fit setting {', '.join(repr(u) for u in unknown)}; valid: {', '.join(valid)}")
        config = Settings(**settings)
        if starts is None:
            if client is not None or workers is not None or scheduler is not None:
                raise UsageError("client, workers and scheduler go with starts=N (a multi-start fit)")
            return fit(self, data, config, out=out, resume=resume, progress=progress, weights=weights)
        if weights is not None:
            raise UsageError("weights= starts one fit; a multi-start fit draws its starts (starts=N)")
        from odedsl.distributed.starts import multistart

        return multistart(self, data, config, starts, out=out, resume=resume, progress=progress, client=client,
                          workers=workers, scheduler=scheduler)

    def simulate(self, t_eval, params=None, y0=None, method: str = "dopri5", rtol: float = 1e-6,
                 atol: float = 1e-8, **options):
        """Integrate the model on the CPU and return a ``Solution`` at the times ``t_eval``.

        ``params`` and ``y0`` are dicts by name overriding the file's values; ``method`` is
        one of ``odedsl.solvers.methods.METHODS``; other options: ``dt`` (fixed-step
        methods), ``max_steps``, ``inputs`` (``{name: (times, values)}``), ``weights``
        (flat net weights, see ``odedsl.nets``), ``h0`` (first step).

        Examples
        --------
        >>> import odedsl
        >>> m = odedsl.loads("state x = 1\\nder(x) = -x\\n")
        >>> sol = m.simulate([0.0, 1.0], rtol=1e-10, atol=1e-12)
        >>> bool(abs(sol.y[-1, 0] - 0.36787944117144233) < 1e-9)
        True
        """
        from odedsl.simulate import simulate

        return simulate(self, t_eval, params=params, y0=y0, method=method, rtol=rtol, atol=atol, **options)

    def simulate_ensemble(self, t_eval, params=None, y0=None, method: str = "dopri5", rtol: float = 1e-6,
                          atol: float = 1e-8, **options):
        """Integrate N parameter sets and/or initial values in parallel on all cores.

        ``params`` and ``y0`` map names to arrays of N values (or single values,
        broadcast); the result's ``y`` is (N, T, n_states). Other options as in
        ``simulate``, plus ``on_failure="raise" | "nan"``.

        On Dask: ``client=`` (a ``distributed.Client``), ``scheduler="tcp://HOST:PORT"``
        or ``workers=K`` (a local cluster) cut the N rows into chunks
        (``chunk_size`` rows; by default about four per worker, at least 512) solved
        on the workers; the result equals the local one bit for bit.

        Examples
        --------
        >>> import odedsl
        >>> m = odedsl.loads("param k = 1\\nstate x = 1\\nder(x) = -k*x\\n")
        >>> ens = m.simulate_ensemble([0.0, 1.0], params={"k": [1.0, 2.0, 3.0]})
        >>> ens.y.shape
        (3, 2, 1)
        """
        from odedsl.simulate import simulate_ensemble

        return simulate_ensemble(self, t_eval, params=params, y0=y0, method=method, rtol=rtol, atol=atol,
                                 **options)

    # -- presentation ----------------------------------------------------------

    def summary(self) -> str:
        """One line: name and sizes."""
        parts = [
            _count(len(self.states), "state"),
            _count(len(self.params), "param") + (f" ({len(self.fitted_params)} fitted)" if self.params else ""),
        ]
        if self.inputs:
            parts.append(_count(len(self.inputs), "input"))
        if self.nets:
            parts.append(_count(len(self.nets), "net") + f" ({sum(n.n_weights for n in self.nets)} weights)")
        if self.observables:
            parts.append(_count(len(self.observables), "observable"))
        return f"{self.name}: " + ", ".join(parts)

    def __str__(self) -> str:
        from odedsl.render import render_text

        return render_text(self)

    def __repr__(self) -> str:
        return f"<Model {self.summary()}>"

    def _repr_latex_(self) -> str:
        from odedsl.render import render_latex

        return render_latex(self)

    def to_dict(self) -> dict:
        """A JSON-ready description (what ``odedsl show --format json`` prints)."""
        from odedsl.render import render_dict

        return render_dict(self)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _by_name(items, name: str, kind: str):
    for item in items:
        if item.name == name:
            return item
    names = ", ".join(i.name for i in items) or "none"
    raise KeyError(f"no {kind} named {name!r}; the model's are: {names}")
