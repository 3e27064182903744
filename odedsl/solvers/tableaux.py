"""Explicit Runge–Kutta methods held as data: Butcher tableaux that check themselves.

Each method is a :class:`Tableau`: its nodes ``c``, coefficients ``a``, weights
``b``, error weights ``b_err`` and dense-output polynomials, as read-only float64
arrays. Building a tableau checks its consistency (row sums of ``a`` equal ``c``,
weights sum to one, error weights to zero, the order conditions up to order four
for the solution, the embedded solution and the dense output), so a mistyped
coefficient fails at import, not as a wrong answer.

One step of size ``h`` from ``(t, y)``::

    k_i    = f(t + c_i h, y + h Σ_{j<i} a_ij k_j)          i = 1..s
    y_new  = y + h Σ_i b_i k_i
    err    = h Σ_i b_err_i k_i                             (= y_new - ŷ_new)

Dense output needs the ``s_dense - s`` extra stages (if any), computed after the
step like ordinary stages but from ``extra_c``/``extra_a`` over all earlier
stages, and then, for θ in [0, 1]::

    y(t + θh) ≈ y + h Σ_i w_i(θ) k_i,   w_i(θ) = Σ_m dense[i, m] θ^(m+1)

The methods, by name, are in :data:`TABLEAUX`; :func:`get_tableau` looks one up.

Examples
--------
>>> tab = get_tableau("dopri5")
>>> tab
Tableau('dopri5', order=5, error_order=4, stages=7, fsal=True, dense_order=4, dense_stages=7)
>>> round(float(tab.b.sum()), 12)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from odedsl.errors import UsageError

__all__ = ["TABLEAUX", "Tableau", "TableauError", "UnknownMethodError", "get_tableau"]

#: Absolute tolerance of the consistency checks, scaled by the size of the terms summed
#: (``tol * max(1, Σ|term|)``) so that tableaux with large coefficients (dop853's dense
#: output) are held to the same relative standard as small ones.
TOL = 1e-12


class TableauError(ValueError):
    """A tableau failed one of its consistency checks; ``tableau`` and ``condition`` say which."""

    def __init__(self, tableau: str, condition: str, detail: str = "") -> None:
        self.tableau = tableau
        self.condition = condition
        self.detail = detail
        msg = f"tableau {tableau!r} fails the check {condition!r}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class UnknownMethodError(UsageError, ValueError):
    """No tableau has this name; ``valid`` lists the names that do exist."""

    def __init__(self, name: str, valid: list[str]) -> None:
        self.name = name
        self.valid = list(valid)
        super().__init__(f"unknown method {name!r}; valid methods: {', '.join(self.valid)}")


# --------------------------------------------------------------------------- the data type

# Rooted trees up to order 4 as (label, order ρ, γ, Φ(A, c)): a method with weights w has
# order p when Σ_i w_i Φ_i(t) = 1/γ(t) for every tree t with ρ(t) <= p (Butcher; HNW I,
# Sec. II.2, Table 2.2). A dense output w(θ) of order p needs Σ_i w_i(θ) Φ_i(t) = θ^ρ/γ.
_TREES = (
    ("sum(w)", 1, 1, lambda A, c: np.ones_like(c)),
    ("sum(w*c)", 2, 2, lambda A, c: c),
    ("sum(w*c**2)", 3, 3, lambda A, c: c**2),
    ("sum(w*(A@c))", 3, 6, lambda A, c: A @ c),
    ("sum(w*c**3)", 4, 4, lambda A, c: c**3),
    ("sum(w*c*(A@c))", 4, 8, lambda A, c: c * (A @ c)),
    ("sum(w*(A@c**2))", 4, 12, lambda A, c: A @ c**2),
    ("sum(w*(A@A@c))", 4, 24, lambda A, c: A @ (A @ c)),
)
_MAX_CHECKED_ORDER = 4
_ARRAYS = (("c", 1), ("a", 2), ("b", 1), ("b_err", 1), ("b_err3", 1), ("dense", 2), ("extra_c", 1), ("extra_a", 2))
_OPTIONAL = ("b_err", "b_err3")


def _close(terms: np.ndarray, target: float) -> tuple[bool, float]:
    """Whether ``sum(terms) == target`` to ``TOL`` times the size of the terms; and the sum."""
    value = float(np.sum(terms))
    scale = max(1.0, float(np.sum(np.abs(terms))), abs(target))
    return abs(value - target) <= TOL * scale, value


@dataclass(frozen=True, eq=False, repr=False)
class Tableau:
    """An explicit Runge–Kutta method with its error estimate and dense output, as data.

    Arrays may be passed as anything NumPy can read as float64 (lists of
    ``Fraction``, floats, decimal strings); they are stored as read-only float64
    arrays. Construction raises :class:`TableauError` (a ``ValueError``) naming
    the tableau and the condition that failed.

    Attributes
    ----------
    name : str
        Registry name (``"dopri5"``).
    order : int
        Order of the propagated solution ``b``.
    error_order : int or None
        Order of the embedded solution ``b - b_err``; ``None`` for fixed-step methods.
    c : ndarray, shape (s,)
        Nodes.
    a : ndarray, shape (s, s)
        Strictly lower-triangular stage coefficients.
    b : ndarray, shape (s,)
        Weights of the propagated solution.
    b_err : ndarray, shape (s,), or None
        ``b - b_hat``: the local error estimate is ``h * Σ_i b_err[i] k_i``.
    fsal : bool
        First same as last: the last stage is ``f(t + h, y_new)`` (``a[-1] == b``,
        ``c[-1] == 1``), so it is the first stage of the next step.
    dense : ndarray, shape (s_dense, degree)
        Dense output ``y(t + θh) = y + h Σ_i (Σ_m dense[i, m] θ^(m+1)) k_i``
        over the ``s`` stages followed by the extra stages.
    dense_order : int
        Order of the dense output (its local error is ``O(h^(dense_order+1))``).
    extra_c : ndarray, shape (s_dense - s,)
        Nodes of the stages needed only for dense output (empty if none).
    extra_a : ndarray, shape (s_dense - s, s_dense - 1)
        Their coefficients over all earlier stages (zero-padded).
    source : str
        Where the coefficients come from.
    b_err3 : ndarray, shape (s,), or None
        A second error estimator, ``b - b_hat3`` with a third-order ``b_hat3``
        (dop853 only). Hairer's dop853 combines the two scaled RMS norms as
        ``err = err5**2 / sqrt(err5**2 + 0.01 * err3**2)`` and controls the step
        with the exponent 1/8, since that combination behaves like ``O(h^8)``.

    Examples
    --------
    >>> from fractions import Fraction as F
    >>> heun = Tableau("heun", 2, None, c=[0, 1], a=[[0, 0], [1, 0]], b=[F(1, 2), F(1, 2)],
    ...                b_err=None, fsal=False, dense=[[1, -F(1, 2)], [0, F(1, 2)]], dense_order=1,
    ...                extra_c=[], extra_a=[], source="Heun 1900")
    >>> heun.stages, heun.dense_stages
    (2, 2)
    >>> Tableau("bad", 2, None, c=[0, 1], a=[[0, 0], [0.9, 0]], b=[0.5, 0.5], b_err=None, fsal=False,
    ...         dense=[[1, -0.5], [0, 0.5]], dense_order=1, extra_c=[], extra_a=[], source="")
    Traceback (most recent call last):
    ...
    odedsl.solvers.tableaux.TableauError: tableau 'bad' fails the check 'row sums of a equal c': ...
    """

    name: str
    order: int
    error_order: int | None
    c: np.ndarray
    a: np.ndarray
    b: np.ndarray
    b_err: np.ndarray | None
    fsal: bool
    dense: np.ndarray
    dense_order: int
    extra_c: np.ndarray
    extra_a: np.ndarray
    source: str
    b_err3: np.ndarray | None = None

    # ------------------------------------------------------------------ construction

    def __post_init__(self) -> None:
        self._store_arrays()
        self._check_shapes()
        self._check_stages()
        self._check_weights()
        self._check_dense()

    def _fail(self, condition: str, detail: str = "") -> None:
        raise TableauError(self.name, condition, detail)

    def _store_arrays(self) -> None:
        """Every array field as a read-only float64 array of the right dimension."""
        for field, ndim in _ARRAYS:
            value = getattr(self, field)
            if value is None and field in _OPTIONAL:
                continue
            try:
                arr = np.array(value, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                self._fail(f"{field} is an array of numbers", str(exc))
            if arr.size == 0 and ndim == 2:
                arr = arr.reshape(0, 0)  # no extra stages; the width is fixed in _check_shapes
            if arr.ndim != ndim:
                self._fail(f"{field} is {ndim}-dimensional", f"got shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                self._fail(f"{field} is finite")
            arr.setflags(write=False)
            object.__setattr__(self, field, arr)

    def _check_shapes(self) -> None:
        s, n_extra = self.b.size, self.extra_c.size
        sd = s + n_extra
        if s < 1:
            self._fail("at least one stage")
        if self.c.shape != (s,) or self.a.shape != (s, s):
            self._fail("shapes c (s,), a (s, s), b (s,)", f"c {self.c.shape}, a {self.a.shape}, b {self.b.shape}")
        for field in _OPTIONAL:
            value = getattr(self, field)
            if value is not None and value.shape != (s,):
                self._fail(f"{field} has shape (s,) = ({s},)", f"got {value.shape}")
        if self.dense.shape[0] != sd or self.dense.shape[1] < 1:
            self._fail("dense has shape (s + len(extra_c), degree)", f"got {self.dense.shape}, expected ({sd}, degree)")
        if n_extra == 0 and self.extra_a.size == 0:
            extra_a = np.zeros((0, sd - 1))
            extra_a.setflags(write=False)
            object.__setattr__(self, "extra_a", extra_a)
        if self.extra_a.shape != (n_extra, sd - 1):
            self._fail("extra_a has shape (len(extra_c), s_dense - 1)",
                       f"got {self.extra_a.shape}, expected ({n_extra}, {sd - 1})")
        if self.order < 1 or self.dense_order < 1:
            self._fail("order >= 1 and dense_order >= 1")
        if (self.error_order is None) != (self.b_err is None):
            self._fail("error_order is given exactly when b_err is")
        if self.b_err3 is not None and self.b_err is None:
            self._fail("b_err3 only alongside b_err")
        if self.dense_order > self.dense.shape[1]:
            self._fail("dense_order <= polynomial degree", f"{self.dense_order} > {self.dense.shape[1]}")

    def _check_stages(self) -> None:
        """a strictly lower triangular, row sums equal to c, extra stages likewise, FSAL."""
        s = self.b.size
        upper = np.argwhere(np.triu(self.a) != 0.0)
        if upper.size:
            i, j = upper[0]
            self._fail("a is strictly lower triangular", f"a[{i}, {j}] = {float(self.a[i, j])!r}")
        for i in range(s):
            ok, value = _close(self.a[i], float(self.c[i]))
            if not ok:
                self._fail("row sums of a equal c", f"sum(a[{i}]) = {value!r}, c[{i}] = {float(self.c[i])!r}")
        for j in range(self.extra_c.size):
            if np.any(self.extra_a[j, s + j:] != 0.0):
                self._fail("extra stages use only earlier stages", f"extra_a[{j}, {s + j}:] is not zero")
            ok, value = _close(self.extra_a[j], float(self.extra_c[j]))
            if not ok:
                self._fail("row sums of extra_a equal extra_c",
                           f"sum(extra_a[{j}]) = {value!r}, extra_c[{j}] = {float(self.extra_c[j])!r}")
        if self.fsal:
            if self.c[-1] != 1.0:
                self._fail("FSAL: c[-1] == 1", f"c[-1] = {float(self.c[-1])!r}")
            diff = np.abs(self.a[-1] - self.b)
            if np.any(diff > TOL * np.maximum(1.0, np.abs(self.b))):
                self._fail("FSAL: a[-1] == b", f"largest difference {float(diff.max())!r}")

    def _check_weights(self) -> None:
        """Order conditions of b, and of the embedded solutions b - b_err (and b - b_err3)."""
        self._check_order_conditions(self.b, self.order, "b")
        for field, order in (("b_err", self.error_order), ("b_err3", 3)):
            e = getattr(self, field)
            if e is None:
                continue
            ok, value = _close(e, 0.0)
            if not ok:
                self._fail(f"sum({field}) == 0", f"sum = {value!r}")
            self._check_order_conditions(self.b - e, order, f"(b - {field})")

    def _check_order_conditions(self, w: np.ndarray, order: int, what: str) -> None:
        for label, rho, gamma, phi in _TREES:
            if rho > min(order, _MAX_CHECKED_ORDER):
                continue
            ok, value = _close(w * phi(self.a, self.c), 1.0 / gamma)
            if not ok:
                want = "1" if gamma == 1 else f"1/{gamma}"
                self._fail(f"order {rho} condition {label.replace('w', what)} == {want}",
                           f"got {value!r}, expected {1.0 / gamma!r}")

    def _check_dense(self) -> None:
        """w_i(1) = b_i (0 for extra stages); Σ_i w_i(θ) Φ_i(t) = θ^ρ/γ up to dense_order."""
        s, sd = self.b.size, self.dense.shape[0]
        b_full = np.concatenate([self.b, np.zeros(sd - s)])
        for i in range(sd):
            ok, value = _close(self.dense[i], float(b_full[i]))
            if not ok:
                self._fail("dense output at θ = 1 reproduces b",
                           f"sum(dense[{i}]) = {value!r}, expected {float(b_full[i])!r}")
        A = np.zeros((sd, sd))
        A[:s, :s] = self.a
        A[s:, : sd - 1] = self.extra_a
        c = np.concatenate([self.c, self.extra_c])
        for label, rho, gamma, phi in _TREES:
            if rho > min(self.dense_order, _MAX_CHECKED_ORDER):
                continue
            values = phi(A, c)
            for m in range(self.dense.shape[1]):
                target = 1.0 / gamma if m + 1 == rho else 0.0
                ok, value = _close(self.dense[:, m] * values, target)
                if not ok:
                    power = "θ" if rho == 1 else f"θ^{rho}"
                    want = power if gamma == 1 else f"{power}/{gamma}"
                    self._fail(f"dense output order {rho} condition {label.replace('w', 'w(θ)')} == {want}",
                               f"coefficient of θ^{m + 1} is {value!r}, expected {target!r}")

    # ------------------------------------------------------------------ conveniences

    @property
    def stages(self) -> int:
        """Number of stages ``s`` of one step (FSAL stage included).

        Examples
        --------
        >>> get_tableau("rk4").stages
        4
        """
        return int(self.b.size)

    @property
    def dense_stages(self) -> int:
        """Number of stages the dense output uses, ``s`` plus the extra ones.

        Examples
        --------
        >>> get_tableau("dop853").dense_stages
        16
        """
        return int(self.dense.shape[0])

    def dense_weights(self, theta: float | np.ndarray) -> np.ndarray:
        """The weights ``w_i(θ)``, shape ``(dense_stages,) + np.shape(theta)``.

        ``y(t + θh) ≈ y + h Σ_i w_i(θ) k_i``.

        Examples
        --------
        >>> tab = get_tableau("bosh3")
        >>> bool(np.allclose(tab.dense_weights(1.0)[: tab.stages], tab.b))
        True
        >>> round(float(tab.dense_weights(0.3).sum()), 12)
        0.3
        """
        theta = np.asarray(theta, dtype=np.float64)
        powers = np.stack([theta ** (m + 1) for m in range(self.dense.shape[1])])
        return np.tensordot(self.dense, powers, axes=(1, 0))

    def __repr__(self) -> str:
        return (f"Tableau({self.name!r}, order={self.order}, error_order={self.error_order}, "
                f"stages={self.stages}, fsal={self.fsal}, dense_order={self.dense_order}, "
                f"dense_stages={self.dense_stages})")


# --------------------------------------------------------------------------- exact helpers

F = Fraction  # exact values from ints, Fractions or the published decimal strings


def _poly_mul(p: list[Fraction], q: list[Fraction]) -> list[Fraction]:
    out = [F(0)] * (len(p) + len(q) - 1)
    for i, pi in enumerate(p):
        for j, qj in enumerate(q):
            out[i + j] += pi * qj
    return out


def _dense_from_polys(rows: list[list[Fraction]], polys: list[list[Fraction]], degree: int) -> list[list[Fraction]]:
    """``dense[i][m]`` = coefficient of θ^(m+1) in Σ_j rows[j][i] * polys[j](θ)."""
    n = len(rows[0])
    dense = [[F(0)] * degree for _ in range(n)]
    for row, poly in zip(rows, polys):
        for i in range(n):
            if row[i]:
                for m in range(1, len(poly)):
                    dense[i][m - 1] += row[i] * poly[m]
    return dense


def _unit(k: int, n: int) -> list[Fraction]:
    return [F(int(i == k)) for i in range(n)]


def _hermite_dense(b: list[Fraction], first: int, last: int) -> list[list[Fraction]]:
    """Cubic Hermite interpolation through (y, f(t, y)) and (y_new, f(t+h, y_new)) in ``dense`` form.

    With ``y_new = y + h Σ b_i k_i``, ``k_first = f(t, y)`` and ``k_last = f(t+h, y_new)``
    (``b`` padded to all dense stages), the Hermite basis gives
    ``w_i(θ) = (3θ² - 2θ³) b_i + (θ - 2θ² + θ³) [i = first] + (θ³ - θ²) [i = last]``.
    """
    h01, h10, h11 = [F(0), F(0), F(3), F(-2)], [F(0), F(1), F(-2), F(1)], [F(0), F(0), F(-1), F(1)]
    return _dense_from_polys([b, _unit(first, len(b)), _unit(last, len(b))], [h01, h10, h11], 3)


def _hairer_dense(b: list[Fraction], last: int, d_rows: list[list[Fraction]]) -> list[list[Fraction]]:
    """Expand the nested form of Hairer's CONTD5 / CONTD8 into ``dense`` polynomials.

    Those routines evaluate ``y + θ(r1 + θ'(r2 + θ(r3 + θ'(r4 + θ(r5 + θ'(r6 + θ r7))))))``
    with ``θ' = 1 - θ`` and, as multiples of ``h k``: ``r1 = Σ b_i k_i`` (= ydiff),
    ``r2 = k_1 - r1`` (bspl), ``r3 = r1 - k_last - r2`` (k_last = f(t+h, y_new)) and
    ``r4, r5, ...`` the rows of the method's ``d`` coefficients.
    """
    e1, elast = _unit(0, len(b)), _unit(last, len(b))
    r1 = list(b)
    r2 = [x - y for x, y in zip(e1, r1)]
    r3 = [x - y - z for x, y, z in zip(r1, elast, r2)]
    rows = [r1, r2, r3] + d_rows
    theta, one_minus = [F(0), F(1)], [F(1), F(-1)]
    polys, p = [], theta
    for j in range(len(rows)):
        polys.append(p)
        p = _poly_mul(p, one_minus if j % 2 == 0 else theta)
    return _dense_from_polys(rows, polys, len(polys[-1]) - 1)


def _lower(rows: list[list], s: int) -> list[list[Fraction]]:
    """A full (s, s) matrix from the rows below the diagonal (row i has i entries)."""
    return [[F(x) for x in row] + [F(0)] * (s - len(row)) for row in rows]


def _from_sparse(entries: dict[int, str | Fraction], n: int) -> list[Fraction]:
    """A length-n vector from {1-based index: value} (the numbering of the published tables)."""
    out = [F(0)] * n
    for k, v in entries.items():
        out[k - 1] = F(v)
    return out


# --------------------------------------------------------------------------- fixed-step methods
#
# Their dense output is cubic Hermite interpolation between (y, f(t, y)) and
# (y_new, f(t+h, y_new)). None of these methods evaluates f at (t+h, y_new), so it
# is added as one extra stage with extra_c = [1] and extra_a = b, which is exactly
# f(t+h, y_new) (in a fixed-step loop it is also the next step's first stage, so a
# loop that keeps it pays nothing). The interpolant's local error is O(h^min(p+1, 4))
# for a method of order p, hence dense_order = min(p, 3).


def _fixed(name: str, order: int, c: list, a_rows: list[list], b: list, source: str) -> Tableau:
    s = len(b)
    b = [F(x) for x in b]
    b_dense = b + [F(0)]
    return Tableau(
        name=name, order=order, error_order=None,
        c=[F(x) for x in c], a=_lower(a_rows, s), b=b, b_err=None, fsal=False,
        dense=_hermite_dense(b_dense, first=0, last=s), dense_order=min(order, 3),
        extra_c=[F(1)], extra_a=[b], source=source,
    )


# Euler (1768); Hairer–Nørsett–Wanner, Solving ODEs I, 2nd ed. (1993), Sec. I.7 and II.1.
EULER = _fixed(
    "euler", 1, c=[0], a_rows=[[]], b=[1],
    source="Explicit Euler method; Hairer, Nørsett & Wanner, Solving Ordinary Differential Equations I, "
           "2nd ed. (1993), Sec. II.1. Dense output: cubic Hermite with f(t+h, y_new) as an extra stage.",
)

# Runge (1895), the explicit midpoint rule; HNW I, Sec. II.1, Eq. (1.4).
MIDPOINT = _fixed(
    "midpoint", 2, c=[0, F(1, 2)], a_rows=[[], [F(1, 2)]], b=[0, 1],
    source="Explicit midpoint rule (Runge 1895); Hairer, Nørsett & Wanner, Solving Ordinary Differential "
           "Equations I, 2nd ed. (1993), Sec. II.1. Dense output: cubic Hermite with f(t+h, y_new) as an "
           "extra stage.",
)

# Kutta (1901), the classical fourth-order method; HNW I, Sec. II.1, Table 1.2 (left).
RK4 = _fixed(
    "rk4", 4, c=[0, F(1, 2), F(1, 2), 1], a_rows=[[], [F(1, 2)], [0, F(1, 2)], [0, 0, 1]],
    b=[F(1, 6), F(1, 3), F(1, 3), F(1, 6)],
    source="Classical Runge–Kutta method (Kutta 1901); Hairer, Nørsett & Wanner, Solving Ordinary "
           "Differential Equations I, 2nd ed. (1993), Sec. II.1, Table 1.2. Dense output: cubic Hermite "
           "with f(t+h, y_new) as an extra stage (order 3).",
)


# --------------------------------------------------------------------------- Bogacki–Shampine 3(2)
# P. Bogacki, L. F. Shampine, "A 3(2) pair of Runge–Kutta formulas", Appl. Math. Lett. 2(4),
# 321–325 (1989). Embedded second-order weights b_hat = (7/24, 1/4, 1/3, 1/8). FSAL, so the
# cubic Hermite dense output uses the method's own stages (k1 = f(t, y), k4 = f(t+h, y_new)).

def _bosh3() -> Tableau:
    b = [F(2, 9), F(1, 3), F(4, 9), F(0)]
    b_hat = [F(7, 24), F(1, 4), F(1, 3), F(1, 8)]
    return Tableau(
        name="bosh3", order=3, error_order=2,
        c=[F(0), F(1, 2), F(3, 4), F(1)],
        a=_lower([[], [F(1, 2)], [0, F(3, 4)], [F(2, 9), F(1, 3), F(4, 9)]], 4),
        b=b, b_err=[x - y for x, y in zip(b, b_hat)], fsal=True,
        dense=_hermite_dense(b, first=0, last=3), dense_order=3,
        extra_c=[], extra_a=[],
        source="P. Bogacki and L. F. Shampine, A 3(2) pair of Runge-Kutta formulas, Appl. Math. Lett. 2(4), "
               "321-325 (1989). Dense output: cubic Hermite over the FSAL stages.",
    )


BOSH3 = _bosh3()


# --------------------------------------------------------------------------- Dormand–Prince 5(4)
# J. R. Dormand, P. J. Prince, "A family of embedded Runge–Kutta formulae", J. Comput. Appl.
# Math. 6(1), 19–26 (1980). Coefficients, error weights E = b - b_hat and the dense output of
# Shampine (1986) as in E. Hairer and G. Wanner's dopri5.f (subroutine CDOPRI, function CONTD5);
# HNW I, Sec. II.5 (Table 5.2) and II.6.

def _dopri5() -> Tableau:
    s = 7
    b = [F(35, 384), F(0), F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), F(0)]
    a = _lower([
        [],
        [F(1, 5)],
        [F(3, 40), F(9, 40)],
        [F(44, 45), F(-56, 15), F(32, 9)],
        [F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)],
        [F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)],
        b[:6],
    ], s)
    # dopri5.f's E1..E7 are b - b_hat (b_hat = 5179/57600, 0, 7571/16695, 393/640, ...).
    b_err = [F(71, 57600), F(0), F(-71, 16695), F(71, 1920), F(-17253, 339200), F(22, 525), F(-1, 40)]
    # Dense output of Shampine (1986), dopri5.f's D1..D7 (the 4th-order CONTD5 term).
    d = [F(-12715105075, 11282082432), F(0), F(87487479700, 32700410799), F(-10690763975, 1880347072),
         F(701980252875, 199316789632), F(-1453857185, 822651844), F(69997945, 29380423)]
    return Tableau(
        name="dopri5", order=5, error_order=4,
        c=[F(0), F(1, 5), F(3, 10), F(4, 5), F(8, 9), F(1), F(1)], a=a, b=b, b_err=b_err, fsal=True,
        dense=_hairer_dense(b, last=6, d_rows=[d]), dense_order=4,
        extra_c=[], extra_a=[],
        source="J. R. Dormand and P. J. Prince, A family of embedded Runge-Kutta formulae, J. Comput. Appl. "
               "Math. 6(1), 19-26 (1980); dense output of L. F. Shampine, Some practical Runge-Kutta formulas, "
               "Math. Comp. 46(173), 135-150 (1986); both as in Hairer & Wanner's dopri5.f (CDOPRI, CONTD5), "
               "Hairer, Norsett & Wanner, Solving ODEs I, 2nd ed. (1993), Sec. II.5-II.6.",
    )


DOPRI5 = _dopri5()


# --------------------------------------------------------------------------- Tsitouras 5(4)
# Ch. Tsitouras, "Runge–Kutta pairs of order 5(4) satisfying only the first column simplifying
# assumption", Comput. Math. Appl. 62(2), 770–775 (2011), doi:10.1016/j.camwa.2011.06.002.
# The high-precision values below, the embedded weights b_hat and the interpolant (the expanded
# form of the paper's b_i(θ)) are those of OrdinaryDiffEq.jl (Tsit5ConstantCache, Tsit5Interp).
# Sign convention: the paper's Table 1 lists the error weights (with the sign of the last one
# misprinted); OrdinaryDiffEq's btilde is b_hat - b. Here b_err = b - b_hat, with b_hat_7 = +1/66;
# b_err sums to zero only with that sign.

def _tsit5() -> Tableau:
    s = 7
    c = [F(0), F(161, 1000), F(327, 1000), F(9, 10),
         F("0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604"),
         F(1), F(1)]
    rows = [
        [],
        [F(161, 1000)],
        ["-0.8480655492356988544426874250230774675121177393430391537369234245294192976164141156943e-2",
         "0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569"],
        ["2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289",
         "-6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366",
         "4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077"],
        ["5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791",
         "-11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589",
         "7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753",
         "-0.9249506636175524925650207933207191611349983406029535244034750452930469056411389539635e-1"],
        ["5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748",
         "-12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452",
         "8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986",
         "-0.7158497328140099722453054252582973869127213147363544882721139659546372402303777878835e-1",
         "-0.2826905039406838290900305721271224146717633626879770007617876201276764571291579142206e-1"],
        ["0.9646076681806522951816731316512876333711995238157997181903319145764851595234062815396e-1",
         F(1, 100),
         "0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509",
         "1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331",
         "-3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677",
         "2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841"],
    ]
    a = _lower(rows, s)
    b = a[6][:6] + [F(0)]
    b_hat = [F("0.9468075576583945807478876255758922856117527357724631226139574065785592789071067303271e-1"),
             F("0.9183565540343253096776363936645313759813746240984095238905939532922955247253608687270e-2"),
             F("0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813"),
             F("1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761"),
             F("-2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702"),
             F("1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089"),
             F(1, 66)]
    # Interpolant b_i(θ) = Σ_m r_im θ^m, m = 1..4 (r_i1 = 0 for i > 1).
    r = [
        ["0.999999999999999974283372471559910888475488471328",
         "-2.763706197274825911336735930481400260916070804192", "2.91325546182191274375068099306808",
         "-1.0530884977290216"],
        [0, "0.13169999999999999727", "-0.22339999999999999818", "0.1017"],
        [0, "3.93029623689475152850687446709813398", "-5.94103387213150473470249202589458001",
         "2.490627285651252793"],
        [0, "-12.411077166933676983734381540685453484102414134010752", "30.3381886302823215981729903691836576",
         "-16.54810288924490272"],
        [0, "37.50931341651103919496903965334519631242339792120440212", "-88.1789048947664011014276693541209817",
         "47.37952196281928122"],
        [0, "-27.896526289197287805948263144598643896", "65.09189467479367152629021928716553658",
         "-34.87065786149660974"],
        [0, F(3, 2), -4, F(5, 2)],
    ]
    return Tableau(
        name="tsit5", order=5, error_order=4, c=c, a=a, b=b,
        b_err=[x - y for x, y in zip(b, b_hat)], fsal=True,
        dense=[[F(x) for x in row] for row in r], dense_order=4,
        extra_c=[], extra_a=[],
        source="Ch. Tsitouras, Runge-Kutta pairs of order 5(4) satisfying only the first column simplifying "
               "assumption, Comput. Math. Appl. 62(2), 770-775 (2011), doi:10.1016/j.camwa.2011.06.002; "
               "high-precision coefficients, embedded weights and interpolant as in OrdinaryDiffEq.jl "
               "(Tsit5ConstantCache, Tsit5Interp).",
    )


TSIT5 = _tsit5()


# --------------------------------------------------------------------------- Dormand–Prince 8(5,3)
# The DOP853 method of Hairer, Nørsett & Wanner, Solving ODEs I, 2nd ed. (1993), Sec. II.5 and
# II.6 (built on P. J. Prince and J. R. Dormand, "High order embedded Runge–Kutta formulae",
# J. Comput. Appl. Math. 7(1), 67–75 (1981)); every coefficient below is the published decimal
# of E. Hairer and G. Wanner's dop853.f (version of April 25, 1996; subroutine DP86CO, function
# CONTD8), indexed as there (1-based stage numbers).
#
# Stages 1..12 make the step (stage 12 at c = 1), stage 13 is f(t+h, y_new) (FSAL: the next
# step's first stage), and stages 14..16 are needed only for the 7th-order dense output.
# Error estimates: b_err = dop853.f's ER (5th-order estimate), b_err3 = b - BHH (BHH: a
# 3rd-order quadrature on stages 1, 9, 12); DP86CO combines their scaled RMS norms as
# err = err5**2 / sqrt(err5**2 + 0.01 * err3**2) and uses the step-size exponent 1/8.

_DOP853_C = {
    2: "0.526001519587677318785587544488e-01", 3: "0.789002279381515978178381316732e-01",
    4: "0.118350341907227396726757197510", 5: "0.281649658092772603273242802490",
    6: "0.333333333333333333333333333333", 7: "0.25", 8: "0.307692307692307692307692307692",
    9: "0.651282051282051282051282051282", 10: "0.6", 11: "0.857142857142857142857142857142",
    12: "1", 13: "1", 14: "0.1", 15: "0.2", 16: "0.777777777777777777777777777778",
}
_DOP853_B = {
    1: "5.42937341165687622380535766363e-2", 6: "4.45031289275240888144113950566", 7: "1.89151789931450038304281599044",
    8: "-5.8012039600105847814672114227", 9: "3.1116436695781989440891606237e-1",
    10: "-1.52160949662516078556178806805e-1", 11: "2.01365400804030348374776537501e-1",
    12: "4.47106157277725905176885569043e-2",
}
_DOP853_BHH = {
    1: "0.244094488188976377952755905512", 9: "0.733846688281611857341361741547",
    12: "0.220588235294117647058823529412e-01",
}
_DOP853_ER = {
    1: "0.1312004499419488073250102996e-01", 6: "-0.1225156446376204440720569753e+01",
    7: "-0.4957589496572501915214079952", 8: "0.1664377182454986536961530415e+01",
    9: "-0.3503288487499736816886487290", 10: "0.3341791187130174790297318841",
    11: "0.8192320648511571246570742613e-01", 12: "-0.2235530786388629525884427845e-01",
}
_DOP853_A = {
    2: {1: "5.26001519587677318785587544488e-2"},
    3: {1: "1.97250569845378994544595329183e-2", 2: "5.91751709536136983633785987549e-2"},
    4: {1: "2.95875854768068491816892993775e-2", 3: "8.87627564304205475450678981324e-2"},
    5: {1: "2.41365134159266685502369798665e-1", 3: "-8.84549479328286085344864962717e-1",
        4: "9.24834003261792003115737966543e-1"},
    6: {1: "3.7037037037037037037037037037e-2", 4: "1.70828608729473871279604482173e-1",
        5: "1.25467687566822425016691814123e-1"},
    7: {1: "3.7109375e-2", 4: "1.70252211019544039314978060272e-1", 5: "6.02165389804559606850219397283e-2",
        6: "-1.7578125e-2"},
    8: {1: "3.70920001185047927108779319836e-2", 4: "1.70383925712239993810214054705e-1",
        5: "1.07262030446373284651809199168e-1", 6: "-1.53194377486244017527936158236e-2",
        7: "8.27378916381402288758473766002e-3"},
    9: {1: "6.24110958716075717114429577812e-1", 4: "-3.36089262944694129406857109825",
        5: "-8.68219346841726006818189891453e-1", 6: "2.75920996994467083049415600797e1",
        7: "2.01540675504778934086186788979e1", 8: "-4.34898841810699588477366255144e1"},
    10: {1: "4.77662536438264365890433908527e-1", 4: "-2.48811461997166764192642586468",
         5: "-5.90290826836842996371446475743e-1", 6: "2.12300514481811942347288949897e1",
         7: "1.52792336328824235832596922938e1", 8: "-3.32882109689848629194453265587e1",
         9: "-2.03312017085086261358222928593e-2"},
    11: {1: "-9.3714243008598732571704021658e-1", 4: "5.18637242884406370830023853209",
         5: "1.09143734899672957818500254654", 6: "-8.14978701074692612513997267357",
         7: "-1.85200656599969598641566180701e1", 8: "2.27394870993505042818970056734e1",
         9: "2.49360555267965238987089396762", 10: "-3.0467644718982195003823669022"},
    12: {1: "2.27331014751653820792359768449", 4: "-1.05344954667372501984066689879e1",
         5: "-2.00087205822486249909675718444", 6: "-1.79589318631187989172765950534e1",
         7: "2.79488845294199600508499808837e1", 8: "-2.85899827713502369474065508674",
         9: "-8.87285693353062954433549289258", 10: "1.23605671757943030647266201528e1",
         11: "6.43392746015763530355970484046e-1"},
    13: _DOP853_B,  # FSAL: f(t + h, y_new)
    14: {1: "5.61675022830479523392909219681e-2", 7: "2.53500210216624811088794765333e-1",
         8: "-2.46239037470802489917441475441e-1", 9: "-1.24191423263816360469010140626e-1",
         10: "1.5329179827876569731206322685e-1", 11: "8.20105229563468988491666602057e-3",
         12: "7.56789766054569976138603589584e-3", 13: "-8.298e-3"},
    15: {1: "3.18346481635021405060768473261e-2", 6: "2.83009096723667755288322961402e-2",
         7: "5.35419883074385676223797384372e-2", 8: "-5.49237485713909884646569340306e-2",
         11: "-1.08347328697249322858509316994e-4", 12: "3.82571090835658412954920192323e-4",
         13: "-3.40465008687404560802977114492e-4", 14: "1.41312443674632500278074618366e-1"},
    16: {1: "-4.28896301583791923408573538692e-1", 6: "-4.69762141536116384314449447206",
         7: "7.68342119606259904184240953878", 8: "4.06898981839711007970213554331",
         9: "3.56727187455281109270669543021e-1", 13: "-1.39902416515901462129418009734e-3",
         14: "2.9475147891527723389556272149", 15: "-9.15095847217987001081870187138"},
}
# CONTD8's four highest terms, as h * Σ_j d_kj k_j, k = 4..7 (dop853.f's D41..D716).
_DOP853_D = {
    4: {1: "-0.84289382761090128651353491142e+01", 6: "0.56671495351937776962531783590",
        7: "-0.30689499459498916912797304727e+01", 8: "0.23846676565120698287728149680e+01",
        9: "0.21170345824450282767155149946e+01", 10: "-0.87139158377797299206789907490",
        11: "0.22404374302607882758541771650e+01", 12: "0.63157877876946881815570249290",
        13: "-0.88990336451333310820698117400e-01", 14: "0.18148505520854727256656404962e+02",
        15: "-0.91946323924783554000451984436e+01", 16: "-0.44360363875948939664310572000e+01"},
    5: {1: "0.10427508642579134603413151009e+02", 6: "0.24228349177525818288430175319e+03",
        7: "0.16520045171727028198505394887e+03", 8: "-0.37454675472269020279518312152e+03",
        9: "-0.22113666853125306036270938578e+02", 10: "0.77334326684722638389603898808e+01",
        11: "-0.30674084731089398182061213626e+02", 12: "-0.93321305264302278729567221706e+01",
        13: "0.15697238121770843886131091075e+02", 14: "-0.31139403219565177677282850411e+02",
        15: "-0.93529243588444783865713862664e+01", 16: "0.35816841486394083752465898540e+02"},
    6: {1: "0.19985053242002433820987653617e+02", 6: "-0.38703730874935176555105901742e+03",
        7: "-0.18917813819516756882830838328e+03", 8: "0.52780815920542364900561016686e+03",
        9: "-0.11573902539959630126141871134e+02", 10: "0.68812326946963000169666922661e+01",
        11: "-0.10006050966910838403183860980e+01", 12: "0.77771377980534432092869265740",
        13: "-0.27782057523535084065932004339e+01", 14: "-0.60196695231264120758267380846e+02",
        15: "0.84320405506677161018159903784e+02", 16: "0.11992291136182789328035130030e+02"},
    7: {1: "-0.25693933462703749003312586129e+02", 6: "-0.15418974869023643374053993627e+03",
        7: "-0.23152937917604549567536039109e+03", 8: "0.35763911791061412378285349910e+03",
        9: "0.93405324183624310003907691704e+02", 10: "-0.37458323136451633156875139351e+02",
        11: "0.10409964950896230045147246184e+03", 12: "0.29840293426660503123344363579e+02",
        13: "-0.43533456590011143754432175058e+02", 14: "0.96324553959188282948394950600e+02",
        15: "-0.39177261675615439165231486172e+02", 16: "-0.14972683625798562581422125276e+03"},
}


def _dop853() -> Tableau:
    s, sd = 13, 16
    c_all = _from_sparse(_DOP853_C, sd)
    a_all = [_from_sparse(_DOP853_A.get(i, {}), sd) for i in range(1, sd + 1)]
    b = _from_sparse(_DOP853_B, s)
    bhh = _from_sparse(_DOP853_BHH, s)
    b_dense = b + [F(0)] * (sd - s)
    d_rows = [_from_sparse(_DOP853_D[k], sd) for k in (4, 5, 6, 7)]
    return Tableau(
        name="dop853", order=8, error_order=5,
        c=c_all[:s], a=[row[:s] for row in a_all[:s]], b=b,
        b_err=_from_sparse(_DOP853_ER, s), fsal=True,
        dense=_hairer_dense(b_dense, last=12, d_rows=d_rows), dense_order=7,
        extra_c=c_all[s:], extra_a=[row[: sd - 1] for row in a_all[s:]],
        source="E. Hairer, S. P. Norsett and G. Wanner, Solving Ordinary Differential Equations I, 2nd ed. "
               "(1993), Sec. II.5-II.6: the DOP853 method (after Prince & Dormand, J. Comput. Appl. Math. 7(1), "
               "67-75, 1981); coefficients, error estimators (ER, BHH) and dense output (CONTD8) from Hairer & "
               "Wanner's dop853.f, version of April 25, 1996.",
        b_err3=[x - y for x, y in zip(b, bhh)],
    )


DOP853 = _dop853()


# --------------------------------------------------------------------------- registry

#: Every method by name, in order of increasing order.
TABLEAUX: dict[str, Tableau] = {t.name: t for t in (EULER, MIDPOINT, RK4, BOSH3, DOPRI5, TSIT5, DOP853)}


def get_tableau(name: str) -> Tableau:
    """The tableau called ``name``.

    Raises :class:`UnknownMethodError` (a ``ValueError`` and an odedsl
    ``UsageError``) listing the valid names when there is none.

    Examples
    --------
    >>> get_tableau("tsit5").order
    5
    >>> get_tableau("rk45")
    Traceback (most recent call last):
    ...
    odedsl.solvers.tableaux.UnknownMethodError: unknown method 'rk45'; valid methods: euler, midpoint, rk4, ...
    """
    try:
        return TABLEAUX[name]
    except (KeyError, TypeError):
        raise UnknownMethodError(str(name), list(TABLEAUX)) from None
