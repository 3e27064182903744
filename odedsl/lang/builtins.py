"""What the language knows before a file declares anything: functions, constants,
activations, noise models and neural-network options.

The checker reads these tables for names and arities; the lowering reads them to
build SymPy. One table each, so adding a function is one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy

from odedsl.symbolic import relu, sigmoid, softplus


@dataclass(frozen=True)
class Function:
    min_args: int
    max_args: int | None  # None: any number >= min_args
    build: Callable[..., sympy.Expr]

    def arity_text(self) -> str:
        if self.max_args is None:
            return f"at least {self.min_args} arguments"
        n = self.min_args
        return f"{n} argument{'s' if n != 1 else ''}"


def _one(f: Callable[..., sympy.Expr]) -> Function:
    return Function(1, 1, f)


FUNCTIONS: dict[str, Function] = {
    "sin": _one(sympy.sin), "cos": _one(sympy.cos), "tan": _one(sympy.tan),
    "asin": _one(sympy.asin), "acos": _one(sympy.acos), "atan": _one(sympy.atan),
    "sinh": _one(sympy.sinh), "cosh": _one(sympy.cosh), "tanh": _one(sympy.tanh),
    "asinh": _one(sympy.asinh), "acosh": _one(sympy.acosh), "atanh": _one(sympy.atanh),
    "exp": _one(sympy.exp), "log": _one(sympy.log), "sqrt": _one(sympy.sqrt),
    "log10": _one(lambda x: sympy.log(x, 10)), "log2": _one(lambda x: sympy.log(x, 2)),
    "abs": _one(sympy.Abs), "sign": _one(sympy.sign), "erf": _one(sympy.erf),
    "sigmoid": _one(sigmoid), "softplus": _one(softplus), "relu": _one(relu),
    "atan2": Function(2, 2, sympy.atan2),
    "min": Function(2, None, sympy.Min), "max": Function(2, None, sympy.Max),
}

#: Named numbers; a declaration of the same name takes precedence.
CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi}

#: Only meaningful in parameter bounds (``in [0, inf]``).
INFINITY = "inf"

#: Widest layer (inputs, outputs, hidden) a neural term may declare.
MAX_NET_WIDTH = 100_000

ACTIVATIONS = ("tanh", "relu", "softplus", "sigmoid", "gelu", "elu", "silu", "identity")


@dataclass(frozen=True)
class NoiseKind:
    n_args: int
    args_text: str
    meaning: str


NOISE_MODELS: dict[str, NoiseKind] = {
    "normal": NoiseKind(1, "SIGMA", "Gaussian error with standard deviation SIGMA"),
    "lognormal": NoiseKind(1, "SIGMA", "Gaussian error of standard deviation SIGMA on the log scale"),
}


@dataclass(frozen=True)
class NetOptionSpec:
    kind: str  # "int_list", "name", "number"
    default: object
    meaning: str


NET_OPTIONS: dict[str, NetOptionSpec] = {
    "hidden": NetOptionSpec("int_list", (32, 32), "widths of the hidden layers, e.g. [32, 32]; [] for a linear map"),
    "activation": NetOptionSpec("name", "tanh", "activation of the hidden layers: " + ", ".join(ACTIVATIONS)),
    "init_scale": NetOptionSpec(
        "number", 0.01,
        "scale of the last layer's initial weights relative to the usual initialisation "
        "(its biases start at zero); 0 makes the untrained net output exactly zero",
    ),
}
