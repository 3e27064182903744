"""Model -> Python source of the model's functions on PyTorch tensors, batched.

Each generated function works on a batch: ``y`` has shape ``(..., n_states)``, and
every state ``y_i`` is a view ``y[..., i]``, so one call is a few dozen tensor
operations whatever the batch size (no Python loop over states or samples). The
expressions are the IR's, CSE'd by SymPy; names are sanitised exactly as in the
Numba backend (``odedsl.backends.codegen_common``); nets are called as the
submodules ``nets[k]`` (``odedsl.backends.torch_nets.MLP``).

Functions (``p`` is a tuple of 0-d parameter tensors, ``u`` the inputs at ``t``
as ``(..., n_inputs)`` or None, ``v`` their rates of change):

- ``rhs(t, y, p, nets, u)``: dy/dt, ``(..., n)``.
- ``vjp(t, y, p, nets, u, a)``: ``(f, a·∂f/∂y, a·∂f/∂p, weight cotangents)``: the
  physics part from symbolic derivatives, each net through its own VJP. The
  adjoint's backward pass calls this and nothing else.
- ``jac(t, y, p, nets, u)``: ∂f/∂y, ``(..., n, n)`` (stiff methods); ``dfdt(t, y, p, nets, u, v)``.
- ``observe(t, y, p, nets, u)``: the observables, ``(..., n_obs)``; ``init(p)``: initial values ``(n,)``.

``if`` expressions become ``torch.where``. Its known trap: the branch not taken
still feeds its gradient (zero) through its own operations, and ``0 * inf`` or a
NaN there poisons the result. Every branch's leaves are therefore wrapped in
``_gmask(active, leaf)``, which passes values unchanged and gradients only where
the branch is active, so ``if x > 0 then sqrt(x) else 0`` has a finite gradient
at negative ``x``.
"""

from __future__ import annotations

import hashlib

import sympy

from odedsl.backends.codegen_common import (BasePrinter, CodegenError, NetCall, ReverseMode, code_symbols,
                                            find_net_calls, input_rates)
from odedsl.model import Model


class gmask(sympy.Function):  # noqa: N801 - printed as the runtime helper _gmask
    """``gmask(active, x)`` is ``x``; its gradient flows only where ``active`` holds."""


_FUNCS = {
    "sin": "torch.sin", "cos": "torch.cos", "tan": "torch.tan", "asin": "torch.asin", "acos": "torch.acos",
    "atan": "torch.atan", "sinh": "torch.sinh", "cosh": "torch.cosh", "tanh": "torch.tanh",
    "asinh": "torch.asinh", "acosh": "torch.acosh", "atanh": "torch.atanh", "exp": "torch.exp",
    "log": "torch.log", "erf": "torch.erf", "Abs": "torch.abs", "sign": "torch.sign", "atan2": "torch.atan2",
    "sigmoid": "torch.sigmoid", "relu": "torch.relu", "softplus": "_softplus",
}


class _Printer(BasePrinter):
    """The shared printer, writing torch calls."""

    SQRT = "torch.sqrt"

    def __init__(self) -> None:
        super().__init__()
        self.known_functions = dict(_FUNCS)

    def _print(self, expr, **kwargs):
        if isinstance(expr, sympy.Expr) and not expr.free_symbols and not expr.is_Number \
                and not isinstance(expr, sympy.Symbol):
            try:
                return repr(float(expr))
            except TypeError:
                pass
        return super()._print(expr, **kwargs)

    def _print_Function(self, e):
        name = type(e).__name__
        if name in _FUNCS:
            return f"{_FUNCS[name]}({', '.join(self._print(a) for a in e.args)})"
        return super()._print_Function(e)

    def _print_sign(self, e):
        return f"torch.sign({self._print(e.args[0])})"

    def _print_Abs(self, e):
        return f"torch.abs({self._print(e.args[0])})"

    def _print_gmask(self, e):
        return f"_gmask({self._print(e.args[0])}, {self._print(e.args[1])})"

    def _print_Heaviside(self, e):
        at_zero = e.args[1] if len(e.args) > 1 else sympy.Rational(1, 2)
        return f"_heaviside({self._print(e.args[0])}, {float(at_zero)!r})"

    def _print_Min(self, e):
        return self._fold("torch.minimum", e.args)

    def _print_Max(self, e):
        return self._fold("torch.maximum", e.args)

    def _fold(self, fn: str, args) -> str:
        text = self._print(args[0])
        for a in args[1:]:
            text = f"{fn}(_t({text}, _r), _t({self._print(a)}, _r))"
        return text

    def _print_Piecewise(self, e):
        text = None
        for value, cond in reversed(e.args):
            if text is None:
                text = self._print(value)
                continue
            text = f"torch.where({self._print(cond)}, _t({self._print(value)}, _r), _t({text}, _r))"
        return text

    def _print_ITE(self, e):
        c, a, b = e.args
        return f"torch.where({self._print(c)}, {self._print(a)}, {self._print(b)})"

    def _print_Relational(self, e):
        ops = {"==": "torch.eq", "!=": "torch.ne", "<": "torch.lt", "<=": "torch.le", ">": "torch.gt",
               ">=": "torch.ge"}
        return f"{ops[e.rel_op]}(_t({self._print(e.lhs)}, _r), _t({self._print(e.rhs)}, _r))"

    def _print_And(self, e):
        return "(" + " & ".join(self._print(a) for a in e.args) + ")"

    def _print_Or(self, e):
        return "(" + " | ".join(self._print(a) for a in e.args) + ")"

    def _print_Not(self, e):
        return f"(~{self._print(e.args[0])})"

    def _print_BooleanTrue(self, e):
        return "True"

    def _print_BooleanFalse(self, e):
        return "False"

    def _print_other_Pow(self, e, rational):
        base, exp = e.args
        if base == sympy.E:
            return f"torch.exp({self._print(exp)})"
        prec = sympy.printing.precedence.PRECEDENCE["Pow"]
        return f"{self.parenthesize(base, prec)}**{self.parenthesize(exp, prec)}"


def guard_branches(e: sympy.Expr) -> sympy.Expr:
    """``e`` with each ``if`` branch's leaves wrapped in ``gmask(branch active, leaf)``."""
    if not e.has(sympy.Piecewise):
        return e

    def guard(pw: sympy.Piecewise) -> sympy.Piecewise:
        pairs, earlier = [], sympy.false
        for value, cond in pw.args:
            active = sympy.And(cond, sympy.Not(earlier)) if earlier is not sympy.false else cond
            earlier = sympy.Or(earlier, cond)
            value = guard_branches(value)
            leaves = {s: gmask(active, s) for s in value.free_symbols}
            pairs.append((value.xreplace(leaves), cond))
        return sympy.Piecewise(*pairs, evaluate=False)

    return e.replace(lambda x: isinstance(x, sympy.Piecewise), guard)


class _Writer:
    """One generated function's body: unpacking, net evaluations, CSE'd assignments."""

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.lines: list[str] = []

    def block(self, targets: list[str], exprs: list[sympy.Expr], prefix: str) -> None:
        if not exprs:
            return
        exprs = [guard_branches(e) for e in exprs]
        replacements, reduced = sympy.cse(exprs, symbols=sympy.numbered_symbols(prefix), optimizations="basic")
        for sym, value in replacements:
            self.lines.append(f"{sym} = {self.gen.printer.doprint(value)}")
        for target, value in zip(targets, reduced):
            self.lines.append(f"{target} = {self.gen.printer.doprint(value)}")

    def unpack(self, used: set[sympy.Symbol]) -> None:
        names = {s.name for s in used}
        m = self.gen.model
        ys = [i for i in range(len(m.states)) if f"y_{i}" in names]
        if len(ys) > 1:
            targets = [f"y_{i}" if i in ys else "_" for i in range(len(m.states))]
            self.lines.append(f"{', '.join(targets)}, = y.unbind(-1)")
        elif ys:
            self.lines.append(f"y_{ys[0]} = y[..., {ys[0]}]")
        for j in range(len(m.params)):
            if f"p_{j}" in names:
                self.lines.append(f"p_{j} = p[{j}]  # {m.params[j].name}")
        for k in range(len(m.inputs)):
            if f"u_{k}" in names:
                self.lines.append(f"u_{k} = u[..., {k}]  # {m.inputs[k].name}")
            if f"v_{k}" in names:
                self.lines.append(f"v_{k} = v[..., {k}]")

    def nets(self, calls: list[NetCall], placeholder: dict, jacobian: bool, keep: bool) -> None:
        """Evaluate every call, level by level; ``keep``: the caches the VJP needs."""
        for level in sorted({c.level for c in calls}):
            batch = [c for c in calls if c.level == level]
            for c in batch:
                args = [a.xreplace(placeholder) for a in c.args]
                states = [f"y_{i}" for i in range(len(self.gen.model.states))]
                names = [a.name if isinstance(a, sympy.Symbol) else None for a in args]
                start = states.index(names[0]) if names and names[0] in states else -1
                if names == states:
                    self.lines.append(f"_x{c.index} = y")
                elif start >= 0 and names == states[start:start + len(names)]:
                    self.lines.append(f"_x{c.index} = y[..., {start}:{start + len(names)}]")
                else:
                    self.block([f"_a{c.index}_{i}" for i in range(len(args))], args, f"_s{c.index}_")
                    items = ", ".join(f"_a{c.index}_{i}" for i in range(len(args)))
                    self.lines.append(f"_x{c.index} = _stack([{items}], _r)")
                net = self.gen.net_index[c.net]
                if jacobian:
                    self.lines.append(f"_o{c.index}, _j{c.index} = nets[{net}].jacobian(_x{c.index})  # {c.net}")
                elif keep:
                    self.lines.append(f"_o{c.index}, _k{c.index} = nets[{net}].forward_cached(_x{c.index})  # {c.net}")
                else:
                    self.lines.append(f"_o{c.index} = nets[{net}].forward(_x{c.index})  # {c.net}")
                n_out = self.gen.model.net(c.net).n_out
                outs = ", ".join(f"_n{c.index}_{k}" for k in range(n_out))
                self.lines.append(f"{outs}, = _o{c.index}.unbind(-1)")
                if jacobian:
                    for k in range(n_out):
                        for j in range(len(c.args)):
                            self.lines.append(f"_d{c.index}_{k}_{j} = _j{c.index}[..., {k}, {j}]")


class _Generator:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.printer = _Printer()
        self.code = code_symbols(model)
        self.net_index = {n.name: i for i, n in enumerate(model.nets)}

    def prepare(self, exprs: list[sympy.Expr]) -> tuple[list[sympy.Expr], list[NetCall], dict]:
        exprs = [sympy.sympify(e).xreplace(self.code) for e in exprs]
        calls, placeholder = find_net_calls(exprs)
        return exprs, calls, placeholder

    def batched(self, calls: list[NetCall], placeholder: dict) -> set[sympy.Symbol]:
        """Symbols that always carry the batch shape: states, and outputs of nets fed with states."""
        out = {sympy.Symbol(f"y_{i}", real=True) for i in range(len(self.model.states))}
        for c in sorted(calls, key=lambda c: c.level):
            if any(a.xreplace(placeholder).free_symbols & out for a in c.args):
                out |= {s for t, s in placeholder.items() if (t.net, t.args) == (c.net, c.args)}
        return out

    def stack(self, names: list[str], exprs: list[sympy.Expr], batched: set) -> str:
        """Stack on a new last axis: plain ``torch.stack`` when every entry has the batch shape."""
        if exprs and all(e.free_symbols & batched for e in exprs):
            return f"torch.stack([{', '.join(names)}], -1)"
        return f"_stack([{', '.join(names)}], _r)"

    def head(self, name: str, args: str, doc: str) -> list[str]:
        return [f"def {name}({args}):", f'    """{doc}"""']

    def simple(self, name: str, args: str, exprs: list[sympy.Expr], doc: str, jacobian: bool = False,
               shape: tuple[int, int] | None = None) -> str:
        """A function returning ``exprs`` stacked on the last axis (or as an (n, m) block)."""
        exprs, calls, placeholder = self.prepare(exprs)
        w = _Writer(self)
        used = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
        for c in calls:
            for a in c.args:
                used |= a.free_symbols
        w.lines.append("_r = y[..., 0]" if "y" in args.split(", ") else "_r = None")
        w.unpack(used)
        w.nets(calls, placeholder, jacobian, keep=False)
        body = [e.xreplace(placeholder) for e in exprs]
        w.block([f"_e{i}" for i in range(len(exprs))], body, "_c")
        batched = self.batched(calls, placeholder)
        if shape is None:
            w.lines.append(f"return {self.stack([f'_e{i}' for i in range(len(exprs))], body, batched)}")
        else:
            rows = [self.stack([f"_e{i * shape[1] + j}" for j in range(shape[1])],
                               body[i * shape[1]:(i + 1) * shape[1]], batched) for i in range(shape[0])]
            w.lines.append(f"return torch.stack([{', '.join(rows)}], -2)")
        return "\n".join(self.head(name, args, doc) + ["    " + line for line in w.lines]) + "\n"

    def vjp(self) -> str:
        """The reverse-mode product (``codegen_common.ReverseMode``), each net through its own VJP."""
        m = self.model
        n, n_p = len(m.states), len(m.params)
        exprs, calls, placeholder = self.prepare(m.rhs)
        rev = ReverseMode.build(exprs, calls, placeholder, n, n_p, {c.index: m.net(c.net).n_out for c in calls})
        a = rev.a
        w = _Writer(self)
        used = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
        for c in calls:
            for arg in c.args:
                used |= arg.free_symbols
        w.lines.append("_r = y[..., 0]")
        w.unpack(used)
        w.nets(calls, placeholder, jacobian=False, keep=True)
        body = [e.xreplace(placeholder) for e in exprs]
        batched = self.batched(calls, placeholder)
        w.block([f"_f{i}" for i in range(n)], body, "_c")
        w.lines.append(f"_f = {self.stack([f'_f{i}' for i in range(n)], body, batched)}")
        w.lines.append(f"{', '.join(f'a_{i}' for i in range(n))}, = a.unbind(-1)")
        net_grads = []
        for level in sorted({c.level for c in calls}, reverse=True):
            for c in [c for c in calls if c.level == level]:
                n_out = m.net(c.net).n_out
                w.block([f"_co{c.index}_{k}" for k in range(n_out)], rev.cout[c.index], f"_b{c.index}_")
                cot = ", ".join(f"_co{c.index}_{k}" for k in range(n_out))
                net = self.net_index[c.net]
                w.lines.append(f"_gx{c.index}, _gw{c.index} = nets[{net}].vjp(_k{c.index}, _stack([{cot}], _r))")
                gs = ", ".join(f"_g{c.index}_{i}" for i in range(len(c.args)))
                w.lines.append(f"{gs}, = _gx{c.index}.unbind(-1)")
                net_grads.append((net, c.index))
        grads = rev.grads
        w.block([f"_gy{i}" for i in range(n)] + [f"_gp{j}" for j in range(n_p)], grads, "_z")
        batched |= set(a)
        w.lines.append(f"_gy = {self.stack([f'_gy{i}' for i in range(n)], grads[:n], batched)}")
        w.lines.append(f"_gp = {self.stack([f'_gp{j}' for j in range(n_p)], grads[n:], batched)}" if n_p
                       else "_gp = None")
        per_net = {}
        for net, idx in net_grads:
            per_net.setdefault(net, []).append(f"_gw{idx}")
        gw = ", ".join(("_sum_grads([" + ", ".join(per_net[k]) + "])") if k in per_net else "None"
                       for k in range(len(m.nets)))
        w.lines.append(f"return _f, _gy, _gp, [{gw}]")
        doc = "(f, a·df/dy, a·df/dp, per net: the weight cotangents summed over the batch, or None)."
        return "\n".join(self.head("vjp", "t, y, p, nets, u, a", doc) + ["    " + line for line in w.lines]) + "\n"

    def module(self) -> str:
        m = self.model
        n = len(m.states)
        jac = m.jacobian_states()
        parts = [
            f'"""Generated by odedsl for model {m.name!r} ({m.filename}); do not edit."""',
            "import math", "", "import torch", "",
            "from odedsl.backends.torch_runtime import _gmask, _heaviside, _softplus, _stack, _sum_grads, _t", "",
            f"N_STATES = {n}", "",
            self.simple("rhs", "t, y, p, nets, u", m.rhs, "dy/dt at (t, y), batched over y's leading axes."),
            self.vjp(),
            self.simple("jac", "t, y, p, nets, u", [jac[i, j] for i in range(n) for j in range(n)],
                        "d rhs / d y, (..., n, n).", jacobian=True, shape=(n, n)),
            self.simple("dfdt", "t, y, p, nets, u, v", input_rates(m, m.rhs),
                        "partial d rhs / d t, including the inputs' rates of change v."),
            self.simple("observe", "t, y, p, nets, u", [o.expr for o in m.observables], "The observables at (t, y)."),
            self.of_params("init", m.initial_values, "Initial values from the parameters, shape (n,)."),
            self.of_params("noise_scales", [o.noise.args[0] if o.noise else sympy.S.One for o in m.observables],
                           "Each observable's noise scale (its SIGMA; 1 without a noise model)."),
        ]
        return "\n\n".join(parts)

    def of_params(self, name: str, exprs: list[sympy.Expr], doc: str) -> str:
        """A function of the parameters only: ``name(p, p_ref)`` -> ``(len(exprs),)``."""
        exprs, _, _ = self.prepare(exprs)
        w = _Writer(self)
        w.lines.append("_r = p_ref")
        w.unpack(set().union(*(e.free_symbols for e in exprs)) if exprs else set())
        w.block([f"_e{i}" for i in range(len(exprs))], exprs, "_c")
        w.lines.append(f"return _stack([{', '.join(f'_e{i}' for i in range(len(exprs)))}], _r)")
        return "\n".join(self.head(name, "p, p_ref", doc) + ["    " + line for line in w.lines]) + "\n"


def generate(model: Model) -> str:
    """The source of the model's torch module; ``CodegenError`` for a construct it cannot express."""
    try:
        return _Generator(model).module()
    except CodegenError:
        raise
    except (TypeError, ValueError, NotImplementedError) as exc:  # SymPy's strict printer: unsupported construct
        raise CodegenError(f"model '{model.name}' cannot be compiled for PyTorch: {exc}") from None


def _generator_hash() -> str:
    import inspect
    import sys

    from odedsl import __version__
    from odedsl.backends import codegen_common, torch_runtime

    h = hashlib.sha256(__version__.encode())
    for mod in (codegen_common, torch_runtime, sys.modules[__name__]):
        h.update(inspect.getsource(mod).encode())
    return h.hexdigest()


#: Taken at import, from the code this process runs (not the file on disk when a model is loaded).
_GENERATOR_HASH = _generator_hash()


def module_name(model: Model) -> str:
    """The cache name of the model's torch module: a hash of the generator, the runtime and the model text."""
    return f"odedsl_torch_{hashlib.sha256((_GENERATOR_HASH + model.source).encode()).hexdigest()[:24]}"
