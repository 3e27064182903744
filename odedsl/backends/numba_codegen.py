"""Model -> Python source of the model's numeric functions, for Numba to compile.

Generated code never contains a user's name: states, parameters and inputs
become ``y_0``, ``p_0``, ``u_0``; temporaries come from SymPy's CSE; the user's
names appear only in comments, and names are restricted to [A-Za-z0-9_] by the
grammar, so a model file can never inject code. Neural terms become calls of
the MLP kernels on the flat weight vector (layout: ``odedsl.nets``).

Every generated function has the signature ``f(t, y, margs, out)`` (``init`` is
``init(p, out)``), where ``margs = (p, w, ut, uv)``: parameters, net weights, and
the input samples (times and values) interpolated inside the function.
"""

from __future__ import annotations

import sympy

from odedsl.backends.codegen_common import (BasePrinter, CodegenError, NetCall, ReverseMode, code_symbols,
                                            find_net_calls, input_rates)
from odedsl.model import Model
from odedsl.nets import ACTIVATION_CODES, layouts


class _Printer(BasePrinter):
    """The shared printer with odedsl's functions as the compiled kernels' scalar helpers."""

    def _print_sigmoid(self, e):
        return f"_sigmoid({self._print(e.args[0])})"

    def _print_softplus(self, e):
        return f"_softplus({self._print(e.args[0])})"

    def _print_relu(self, e):
        return f"_relu({self._print(e.args[0])})"

    def _print_Heaviside(self, e):
        at_zero = e.args[1] if len(e.args) > 1 else sympy.Rational(1, 2)
        return f"_heaviside({self._print(e.args[0])}, {self._print(sympy.Float(at_zero))})"

    def _print_sign(self, e):
        return f"_sign({self._print(e.args[0])})"


class _FunctionWriter:
    """Writes the body of one generated function: unpacking, nets, CSE, assignments."""

    def __init__(self, gen: "_Generator") -> None:
        self.gen = gen
        self.lines: list[str] = []

    def emit_block(self, targets: list[str], exprs: list[sympy.Expr], prefix: str) -> None:
        if not exprs:
            return
        replacements, reduced = sympy.cse(exprs, symbols=sympy.numbered_symbols(prefix), optimizations="basic")
        for sym, value in replacements:
            self.lines.append(f"{sym} = {self.gen.printer.doprint(value)}")
        for target, value in zip(targets, reduced):
            self.lines.append(f"{target} = {self.gen.printer.doprint(value)}")

    def body(self, targets: list[str], exprs: list[sympy.Expr], needed: set | None = None) -> list[str]:
        """``needed``: the net-output placeholders later code reads (None: all); a call none of whose
        outputs is needed gets its arguments but no forward pass."""
        exprs = [self.gen.to_code_symbols(e) for e in exprs]
        calls, placeholder = self.gen.net_calls(exprs)
        used = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
        for c in calls:
            for a in c.args:
                used |= a.free_symbols
        self.lines += self.gen.unpack(used)
        for level in sorted({c.level for c in calls}):
            batch = [c for c in calls if c.level == level]
            arg_targets, arg_exprs = [], []
            for c in batch:
                n_in = len(c.args)
                self.lines.append(f"_a{c.index} = np.empty({n_in})")
                for i, a in enumerate(c.args):
                    arg_targets.append(f"_a{c.index}[{i}]")
                    arg_exprs.append(a.xreplace(placeholder))
            self.emit_block(arg_targets, arg_exprs, f"_x{level}_")
            for c in batch:
                mine = {sym for t, sym in placeholder.items() if (t.net, t.args) == (c.net, c.args)}
                if needed is None or mine & needed:
                    self.lines += self.gen.net_eval(c, exprs, placeholder)
        self.emit_block(targets, [e.xreplace(placeholder) for e in exprs], "_c")
        return self.lines


class _Generator:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.printer = _Printer()
        self.code = code_symbols(model)
        self.layouts = {lay.name: lay for lay in layouts(model)}
        self.net_index = {n.name: i for i, n in enumerate(model.nets)}

    def to_code_symbols(self, e: sympy.Expr) -> sympy.Expr:
        return sympy.sympify(e).xreplace(self.code)

    def unpack(self, used: set) -> list[str]:
        names = {s.name for s in used}
        lines = []
        for i, s in enumerate(self.model.states):
            if f"y_{i}" in names:
                lines.append(f"y_{i} = y[{i}]  # {s.name}")
        for j, p in enumerate(self.model.params):
            if f"p_{j}" in names:
                lines.append(f"p_{j} = p[{j}]  # {p.name}")
        for k, u in enumerate(self.model.inputs):
            if f"u_{k}" in names:
                lines.append(f"u_{k} = _interp(t, ut, uv, {k})  # {u.name}")
            if f"v_{k}" in names:
                lines.append(f"v_{k} = _interp_slope(t, ut, uv, {k})  # d{u.name}/dt")
        return lines

    def net_calls(self, exprs: list[sympy.Expr]) -> tuple[list[NetCall], dict]:
        return find_net_calls(exprs)

    def net_eval(self, c: NetCall, exprs: list[sympy.Expr], placeholder: dict) -> list[str]:
        lay = self.layouts[c.net]
        n_out = lay.sizes[-1]
        mine = {t: s for t, s in placeholder.items() if (t.net, t.args) == (c.net, c.args)}
        need_jac = any(t.wrt for t in mine)
        sizes = f"_SIZES_{self.net_index[c.net]}"
        act = ACTIVATION_CODES[lay.activation]
        lines = [f"_o{c.index} = np.empty({n_out})  # {c.net}"]
        if need_jac:
            lines.append(f"_j{c.index} = np.empty(({n_out}, {len(c.args)}))")
            lines.append(f"_mlp_jacobian(w, {lay.offset}, {sizes}, {act}, _a{c.index}, _o{c.index}, _j{c.index})")
        else:
            lines.append(f"_mlp_forward(w, {lay.offset}, {sizes}, {act}, _a{c.index}, _o{c.index})")
        for t, s in sorted(mine.items(), key=lambda kv: kv[1].name):
            source = f"_o{c.index}[{t.output}]" if not t.wrt else f"_j{c.index}[{t.output}, {t.wrt[0]}]"
            lines.append(f"{s.name} = {source}")
        return lines

    def function(self, name: str, args: str, targets: list[str], exprs: list[sympy.Expr], prelude: list[str],
                 doc: str) -> str:
        writer = _FunctionWriter(self)
        body = prelude + writer.body(targets, exprs)
        head = [f"def {name}({args}):", f'    """{doc}"""']
        if "margs" in args:
            head.append("    p, w, ut, uv = margs")
        return "\n".join(head + ["    " + line for line in body] + ["    return None", ""])

    def vjp(self) -> str:
        """``vjp(t, y, margs, a, gy, gp, gw)``: gy = a·∂f/∂y, gp = a·∂f/∂p, gw += a·∂f/∂weights.

        The physics symbolically (``codegen_common.ReverseMode``), each net call through ``_mlp_vjp``.
        """
        m = self.model
        n, n_p = len(m.states), len(m.params)
        exprs = [self.to_code_symbols(e) for e in m.rhs]
        calls, placeholder = self.net_calls(exprs)
        rev = ReverseMode.build(exprs, calls, placeholder, n, n_p, {c.index: m.net(c.net).n_out for c in calls})
        used = set().union(*(e.free_symbols for e in rev.grads), *(e.free_symbols for cs in rev.cout.values()
                                                                      for e in cs)) if n else set()
        for c in calls:  # an outer call's arguments read inner calls' outputs
            for arg in c.args:
                used |= arg.xreplace(placeholder).free_symbols
        writer = _FunctionWriter(self)
        writer.body([], exprs, needed=used)  # unpacking, every net's inputs, and the forward passes needed
        writer.lines += [f"a_{i} = a[{i}]" for i in range(n) if sympy.Symbol(f"a_{i}", real=True) in used]
        for level in sorted({c.level for c in calls}, reverse=True):
            for c in [c for c in calls if c.level == level]:
                lay = self.layouts[c.net]
                n_out, n_in = lay.sizes[-1], len(c.args)
                writer.lines.append(f"_co{c.index} = np.empty({n_out})")
                writer.lines.append(f"_gi{c.index} = np.empty({n_in})")
                writer.emit_block([f"_co{c.index}[{k}]" for k in range(n_out)], rev.cout[c.index], f"_b{c.index}_")
                writer.lines.append(f"_mlp_vjp(w, {lay.offset}, _SIZES_{self.net_index[c.net]}, "
                                    f"{ACTIVATION_CODES[lay.activation]}, _a{c.index}, _co{c.index}, _gi{c.index}, gw)")
                writer.lines += [f"_g{c.index}_{i} = _gi{c.index}[{i}]" for i in range(n_in)]
        writer.emit_block([f"gy[{i}]" for i in range(n)] + [f"gp[{j}]" for j in range(n_p)], rev.grads, "_z")
        head = ["def vjp(t, y, margs, a, gy, gp, gw):",
                '    """gy = a.df/dy, gp = a.df/dp, and gw += a.df/dw (the caller zeroes gw)."""',
                "    p, w, ut, uv = margs"]
        return "\n".join(head + ["    " + line for line in writer.lines] + ["    return None", ""])

    def matrix(self, name: str, args: str, mat: sympy.Matrix, doc: str) -> str:
        """A function writing the non-zero entries of ``mat`` into a zeroed dense ``out``."""
        entries = [(i, j, mat[i, j]) for i in range(mat.rows) for j in range(mat.cols) if mat[i, j] != 0]
        return self.function(name, args, [f"out[{i}, {j}]" for i, j, _ in entries], [e for _, _, e in entries],
                             ["out[:, :] = 0.0"], doc)

    def module_functions(self) -> str:
        m = self.model
        n, n_p = len(m.states), len(m.params)
        ps = [q.symbol for q in m.params]
        obs = [o.expr for o in m.observables]
        noise = [o.noise.args[0] if o.noise else sympy.S.One for o in m.observables]
        sizes = [f"_SIZES_{i} = np.array({list(lay.sizes)}, dtype=np.int64)" for i, lay in enumerate(self.layouts.values())]
        out = ["# model functions", f"N_STATES = {n}", f"N_PARAMS = {n_p}", f"N_INPUTS = {len(m.inputs)}",
               f"N_OBSERVABLES = {len(m.observables)}", *sizes, "",
               self.function("rhs", "t, y, margs, out", [f"out[{i}]" for i in range(n)], m.rhs, [], "dy/dt at (t, y)."),
               self.matrix("jac", "t, y, margs, out", m.jacobian_states(), "d rhs / d y, dense (n, n)."),
               self.function("dfdt", "t, y, margs, out", [f"out[{i}]" for i in range(n)], input_rates(m, m.rhs), [],
                             "partial d rhs / d t, including the inputs' rates of change."),
               self.matrix("jac_p", "t, y, margs, out", m.jacobian_params(), "d rhs / d params (n, n_params)."),
               self.function("observe", "t, y, margs, out", [f"out[{i}]" for i in range(len(obs))], obs, [],
                             "The observables at (t, y)."),
               self.matrix("observe_jac", "t, y, margs, out", m.jacobian(m.state_symbols, obs),
                           "d observables / d y (n_observables, n)."),
               self.matrix("observe_jac_p", "t, y, margs, out", m.jacobian(ps, obs),
                           "d observables / d params (n_observables, n_params)."),
               self.function("noise", "p, out", [f"out[{i}]" for i in range(len(noise))], noise, [],
                             "Each observable's noise scale (1 without a noise model)."),
               self.matrix("noise_jac", "p, out", m.jacobian(ps, noise), "d noise scales / d params."),
               self.vjp(),
               self.matrix("init_jac", "p, out", m.jacobian(ps, m.initial_values),
                           "d initial values / d params (n, n_params)."),
               self.function("init", "p, out", [f"out[{i}]" for i in range(n)], m.initial_values, [],
                             "Initial values from the parameters.")]
        return "\n".join(out)


def generate(model: Model) -> str:
    """The Python source of the model's functions (``rhs``, ``jac``, ``dfdt``, ``jac_p``, ``observe``, ``init``).

    Raises ``CodegenError`` for a construct the backend cannot compile.
    """
    try:
        return _Generator(model).module_functions()
    except CodegenError:
        raise
    except (TypeError, ValueError, NotImplementedError) as exc:  # SymPy's strict printer: unsupported construct
        raise CodegenError(f"model '{model.name}' cannot be compiled for Numba: {exc}") from None
