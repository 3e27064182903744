"""The integration methods by name: what ``method="..."`` and ``--method`` accept.

A method is a kind of compiled loop (its ``kind``: explicit fixed-step or adaptive
Runge–Kutta, Rosenbrock, BDF, or ``auto`` switching), its coefficients and its
step-size controller settings. ``ALIASES`` maps generic names to a method.
Unknown names raise ``UsageError`` listing the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from odedsl.errors import UsageError


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "fixed", "adaptive", "rosenbrock", "bdf" or "auto"
    tableau: str  # the coefficients: an RK tableau, a Rosenbrock tableau, or "ndf" (bdf)
    description: str
    beta: float = 0.0  # PI controller's memory term (Hairer: 0.04 for dopri5, 0 for dop853)
    safety: float = 0.9
    facmin: float = 0.2
    facmax: float = 10.0
    control_order: int | None = None  # exponent 1/(q+1); default: the embedded order
    stiff: str | None = None  # auto: the method it switches to while the problem is stiff


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("euler", "fixed", "euler", "explicit Euler, order 1, fixed step"),
        Method("midpoint", "fixed", "midpoint", "explicit midpoint, order 2, fixed step"),
        Method("rk4", "fixed", "rk4", "classical Runge–Kutta, order 4, fixed step"),
        Method("bosh3", "adaptive", "bosh3", "Bogacki–Shampine 3(2), adaptive; loose tolerances"),
        Method("dopri5", "adaptive", "dopri5", "Dormand–Prince 5(4), adaptive; the default", beta=0.04),
        Method("tsit5", "adaptive", "tsit5", "Tsitouras 5(4), adaptive; often a little cheaper than dopri5",
               beta=0.04),
        Method("dop853", "adaptive", "dop853", "Dormand–Prince 8(5,3), adaptive; tight tolerances",
               facmin=1.0 / 3.0, facmax=6.0, control_order=7),
        # Hairer's RODAS bounds the step-size ratio to [0.2, 6]
        Method("rodas5p", "rosenbrock", "rodas5p", "Rodas5P, Rosenbrock 5(4), stiff; exact Jacobian", facmax=6.0),
        # scipy's BDF: MIN_FACTOR 0.2, MAX_FACTOR 10
        Method("bdf", "bdf", "ndf", "variable-order BDF/NDF (orders 1–5), stiff; exact Jacobian"),
        Method("auto", "auto", "dopri5", "dopri5, switching to rodas5p while the problem is stiff", beta=0.04,
               stiff="rodas5p"),
    )
}

#: Generic names for a method.
ALIASES: dict[str, str] = {"rosenbrock": "rodas5p"}


def method_names() -> list[str]:
    """Every name ``get_method`` accepts: the methods, then the aliases.

    Examples
    --------
    >>> method_names()[-1]
    'rosenbrock'
    """
    return [*METHODS, *ALIASES]


def get_method(name: str) -> Method:
    """The method called ``name`` (or aliased to it); ``UsageError`` listing the valid names otherwise.

    Examples
    --------
    >>> get_method("rosenbrock").name
    'rodas5p'
    """
    method = METHODS.get(ALIASES.get(name, name))
    if method is None:
        valid = ", ".join(method_names())
        raise UsageError(f"unknown method '{name}'; valid methods: {valid}")
    return method


@dataclass(frozen=True)
class KernelArrays:
    """A method's coefficients as the compiled loops take them (float64, contiguous)."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    e: np.ndarray
    e3: np.ndarray
    dense: np.ndarray
    xa: np.ndarray
    xc: np.ndarray
    fsal: bool
    order: int
    expo1: float


@cache
def kernel_arrays(name: str) -> KernelArrays:
    from odedsl.solvers.tableaux import get_tableau

    m = get_method(name)
    tab = get_tableau(m.tableau)
    s = tab.b.size
    e = np.zeros(s) if tab.b_err is None else np.ascontiguousarray(tab.b_err, dtype=float)
    e3 = getattr(tab, "b_err3", None)
    e3 = np.zeros(0) if e3 is None else np.ascontiguousarray(e3, dtype=float)
    q = m.control_order if m.control_order is not None else (tab.error_order or tab.order)
    xa = np.ascontiguousarray(tab.extra_a, dtype=float).reshape(-1, max(tab.dense.shape[0] - 1, 1))
    return KernelArrays(
        a=np.ascontiguousarray(tab.a, dtype=float), b=np.ascontiguousarray(tab.b, dtype=float),
        c=np.ascontiguousarray(tab.c, dtype=float), e=e, e3=e3,
        dense=np.ascontiguousarray(tab.dense, dtype=float), xa=xa,
        xc=np.ascontiguousarray(tab.extra_c, dtype=float), fsal=bool(tab.fsal), order=tab.order,
        expo1=1.0 / (q + 1) - 0.75 * m.beta,
    )


@cache
def stiff_kernel_args(name: str) -> tuple:
    """What the compiled loop of a stiff or ``auto`` method takes between ``margs`` and ``rtol``.

    ``_bdf``: the NDF constants and the controller settings. ``_rosenbrock``: the
    Rosenbrock tableau's coefficients and controller settings, then an explicit
    partner's (``auto``: its explicit method; the others: none, as empty arrays).
    Arrays are writable copies so that both cases compile to one specialisation.

    Examples
    --------
    >>> len(stiff_kernel_args("rodas5p")) == len(stiff_kernel_args("auto"))
    True
    """
    from odedsl.solvers.bdf import NDF_KAPPA
    from odedsl.solvers.rosenbrock import TABLEAUX

    m = get_method(name)
    if m.kind == "bdf":
        return (np.array(NDF_KAPPA), m.safety, m.facmin, m.facmax)
    if m.kind not in ("rosenbrock", "auto"):
        raise ValueError(f"{name} is an explicit method; its loops take kernel_arrays({name!r})")
    stiff = m if m.kind == "rosenbrock" else get_method(m.stiff)
    args = (*TABLEAUX[stiff.tableau].kernel_args(), stiff.safety, stiff.facmin, stiff.facmax)
    if m.kind == "rosenbrock":
        return (*args, np.zeros((0, 0)), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 0)), 0, 0.0, 0.0, 0.0,
                0.0, 0.0)
    k = kernel_arrays(m.name)
    return (*args, *(np.array(x) for x in (k.a, k.b, k.c, k.e, k.dense)), k.order, k.expo1, m.beta, m.safety,
            m.facmin, m.facmax)
