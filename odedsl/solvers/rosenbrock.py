"""Rosenbrock–Wanner integration: Rodas5P, with its embedded error estimate and dense output.

A Rosenbrock method is linearly implicit: each step factors one matrix built from
the exact Jacobian and solves ``s`` linear systems with it, with no Newton
iteration, so a stiff problem costs one ``jac`` and one LU per step. In the
formulation of Hairer & Wanner, *Solving ODEs II* (2nd ed.), IV.7, which needs
no products with ``J``, a step of size ``h`` from ``(t, y)`` is::

    W = I/(h γ) - J                    J = ∂f/∂y(t, y), factored once per step
    W k_i = f(t + c_i h, y + Σ_{j<i} a_ij k_j) + Σ_{j<i} (C_ij / h) k_j + h d_i ∂f/∂t(t, y)
    y_new = y + Σ_i m_i k_i,           err = Σ_i e_i k_i

(``a``, ``C``, ``m`` are the transformed coefficients ``α Γ⁻¹``, ``I/γ - Γ⁻¹`` and
``b Γ⁻¹`` of the method's ``α``, ``Γ``, ``b``.) The dense output is the method's own
interpolant ``y(t + θh) = (1-θ) y + θ (y_new + (1-θ)(q_0 + θ q_1 + θ² q_2))`` with
``q_r = Σ_i H_ri k_i``.

The kernels are plain Python functions that ``odedsl.backends.numba_module`` copies
into each model's generated module and compiles there, next to the model's
``rhs``, ``jac`` (exact, symbolic) and ``dfdt``. The loop ``_rosenbrock`` also runs
method ``auto``: given an explicit partner (dopri5) it starts with that and
switches between the two by the rule of auto.py, so the two methods share one
compiled loop (compiling a loop takes seconds per model).

Step-size control: the embedded error estimate in explicit.py's RMS norm, and
Gustafsson's predictive controller as in Hairer's RODAS code (Gustafsson, ACM
TOMS 20, 1994; HW II, IV.8), which damps the step-size oscillations of stiff
problems better than the PI controller of the explicit methods. A singular ``W``
(in practice: ``J`` holding inf or NaN) or a non-finite stage rejects the step as
a NaN does in the explicit methods; status codes are explicit.py's.
"""

# ``rhs``, ``jac`` and ``dfdt`` are defined by the generated module these functions are compiled into.
# ruff: noqa: F821

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from odedsl.solvers.auto import STAT_SWITCHES, _auto_verdict, _pi_factor, _rk_outputs, _rk_step
from odedsl.solvers.explicit import (STAT_ACCEPTED, STAT_JAC, STAT_REJECTED, STAT_RHS, STATUS_OK,
                                     _rms_norm, _start, _step_guard)
from odedsl.solvers.linalg import _factor_shifted, _lu_solve
from odedsl.solvers.tableaux import TableauError

# --------------------------------------------------------------------------- the tableau (Python only)

# Rooted trees up to order 5 as (order, γ(t), Φ(α, B)), B = α + Γ with its diagonal. For a
# Rosenbrock method the weights b (in the untransformed form) must satisfy Σ_i b_i Φ_i(t) = 1/γ(t),
# where Φ follows the tree's edges with α below a vertex that has several children and with B
# below a vertex that has one (HW II, IV.7, Table 7.1, written with B so that the right-hand
# sides lose their γ-polynomials). A dense output with weights b(θ) must give θ^order/γ(t).
_TREES = (
    (1, 1, lambda al, B, one: one),
    (2, 2, lambda al, B, one: B @ one),
    (3, 3, lambda al, B, one: (al @ one) ** 2),
    (3, 6, lambda al, B, one: B @ (B @ one)),
    (4, 4, lambda al, B, one: (al @ one) ** 3),
    (4, 8, lambda al, B, one: (al @ one) * (al @ (B @ one))),
    (4, 12, lambda al, B, one: B @ (al @ one) ** 2),
    (4, 24, lambda al, B, one: B @ (B @ (B @ one))),
    (5, 5, lambda al, B, one: (al @ one) ** 4),
    (5, 10, lambda al, B, one: (al @ one) ** 2 * (al @ (B @ one))),
    (5, 15, lambda al, B, one: (al @ one) * (al @ (al @ one) ** 2)),
    (5, 30, lambda al, B, one: (al @ one) * (al @ (B @ (B @ one)))),
    (5, 20, lambda al, B, one: (al @ (B @ one)) ** 2),
    (5, 20, lambda al, B, one: B @ (al @ one) ** 3),
    (5, 40, lambda al, B, one: B @ ((al @ one) * (al @ (B @ one)))),
    (5, 60, lambda al, B, one: B @ (B @ (al @ one) ** 2)),
    (5, 120, lambda al, B, one: B @ (B @ (B @ (B @ one)))),
)


@dataclass(frozen=True)
class RosenbrockTableau:
    """A Rosenbrock method in the transformed form the kernels take, checked when built.

    ``a``, ``C`` (s×s, strictly lower), ``gamma``, the nodes ``c`` and ``d`` (the row
    sums of Γ, weighting ``∂f/∂t``), the weights ``m``, the error weights ``e`` and the
    dense-output rows ``H``: see the module docstring. Construction recovers the
    untransformed ``α``, ``Γ``, ``b`` and checks ``c`` and ``d`` against them and the order
    conditions of the solution (``order``), of the embedded solution ``m - e``
    (``error_order``) and of the dense output at a few θ (``dense_order``), raising
    ``TableauError``: a mistyped digit fails at import, not as a wrong answer.

    Examples
    --------
    >>> RODAS5P.order, RODAS5P.error_order, RODAS5P.dense_order, RODAS5P.stages
    (5, 4, 4, 8)
    """

    name: str
    order: int
    error_order: int
    dense_order: int
    gamma: float
    a: np.ndarray
    C: np.ndarray
    c: np.ndarray
    d: np.ndarray
    m: np.ndarray
    e: np.ndarray
    H: np.ndarray
    source: str

    def __post_init__(self) -> None:
        for name in ("a", "C", "c", "d", "m", "e", "H"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        s = self.stages
        if self.a.shape != (s, s) or self.C.shape != (s, s) or self.H.shape[1:] != (s,) \
                or not self.c.shape == self.d.shape == self.e.shape == (s,):
            raise TableauError(self.name, "array shapes agree with the number of stages")
        if np.any(np.triu(self.a)) or np.any(np.triu(self.C)):
            raise TableauError(self.name, "a and C are strictly lower triangular")
        G = np.linalg.inv(np.eye(s) / self.gamma - self.C)
        alpha = self.a @ G
        self._close(alpha.sum(axis=1), self.c, "row sums of alpha equal c")
        self._close(G.sum(axis=1), self.d, "row sums of Gamma equal d")
        self._orders(self.m @ G, alpha, G, self.order, 1.0, "the solution")
        self._orders((self.m - self.e) @ G, alpha, G, self.error_order, 1.0, "the embedded solution")
        for theta in (0.25, 0.5, 0.8):
            weights = theta * self.m + theta * (1 - theta) * (np.vander([theta], len(self.H), True)[0] @ self.H)
            self._orders(weights @ G, alpha, G, self.dense_order, theta, f"the dense output at theta={theta}")

    @property
    def stages(self) -> int:
        return self.m.size

    def _close(self, got: np.ndarray, want: np.ndarray, condition: str) -> None:
        bad = np.abs(got - want) > 1e-12 * np.maximum(1.0, np.abs(want))
        if np.any(bad):
            raise TableauError(self.name, condition, f"differs at index {int(np.argmax(bad))}")

    def _orders(self, b: np.ndarray, alpha: np.ndarray, G: np.ndarray, order: int, theta: float, what: str) -> None:
        """Σ b Φ(t) = θ^ρ/γ(t) for every tree t up to ``order``, to a tolerance scaled by |b|·|Φ|."""
        B = alpha + G
        one = np.ones(self.stages)
        for rho, gam, phi in _TREES:
            if rho > order:
                break
            terms = b * phi(alpha, B, one)
            if abs(terms.sum() - theta**rho / gam) > 1e-11 * max(1.0, float(np.abs(terms).sum())):
                raise TableauError(self.name, f"order condition {rho} (gamma(t)={gam}) of {what}",
                                   f"residual {terms.sum() - theta**rho / gam:.3g}")

    def kernel_args(self) -> tuple:
        """The coefficients as ``_rosenbrock`` and ``_auto`` take them, in their order.

        The arrays are writable copies: Numba types read-only arrays differently, and
        would compile the loops a second time for them.
        """
        return (self.a.copy(), self.C.copy(), self.gamma, self.c.copy(), self.d.copy(), self.m.copy(), self.e.copy(),
                self.H.copy(), self.error_order)


# Steinebach, "Construction of Rosenbrock–Wanner method Rodas5P and numerical benchmarks within the
# Julia Differential Equations package", BIT Numer. Math. 63, 27 (2023), improving RODASP. The digits
# are those of OrdinaryDiffEq.jl's tableau (lib/OrdinaryDiffEqRosenbrock/src/rosenbrock_tableaus.jl:
# RODAS5PA, RODAS5PC, RODAS5Pc, RODAS5Pd, RODAS5PH). Rodas is stiffly accurate: m is the last row of a
# plus a one for the last stage, and the error estimate is the last stage alone.
RODAS5P = RosenbrockTableau(
    "rodas5p", order=5, error_order=4, dense_order=4, gamma=0.21193756319429014,
    a=[[0, 0, 0, 0, 0, 0, 0, 0],
       [3.0, 0, 0, 0, 0, 0, 0, 0],
       [2.849394379747939, 0.45842242204463923, 0, 0, 0, 0, 0, 0],
       [-6.954028509809101, 2.489845061869568, -10.358996098473584, 0, 0, 0, 0, 0],
       [2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641, 0, 0, 0, 0],
       [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256, 0.030198172008377946,
        0, 0, 0],
       [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256, 0.030198172008377946,
        1, 0, 0],
       [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256, 0.030198172008377946,
        1, 1, 0]],
    C=[[0, 0, 0, 0, 0, 0, 0, 0],
       [-14.155112264123755, 0, 0, 0, 0, 0, 0, 0],
       [-17.97296035885952, -2.859693295451294, 0, 0, 0, 0, 0, 0],
       [147.12150275711716, -1.41221402718213, 71.68940251302358, 0, 0, 0, 0, 0],
       [165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306, 0, 0, 0, 0],
       [24.854864614690072, -3.0009227002832186, 47.4931110020768, 5.5814197821558125, -0.6610691825249471,
        0, 0, 0],
       [30.91273214028599, -3.1208243349937974, 77.79954646070892, 34.28646028294783, -19.097331116725623,
        -28.087943162872662, 0, 0],
       [37.80277123390563, -3.2571969029072276, 112.26918849496327, 66.9347231244047, -40.06618937091002,
        -54.66780262877968, -9.48861652309627, 0]],
    c=[0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716, 0.4288403609558664, 1, 1, 1],
    d=[0.21193756319429014, -0.42387512638858027, -0.3384627126235924, 1.8046452872882734, 2.325825639765069,
       0, 0, 0],
    m=[-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256, 0.030198172008377946,
       1, 1, 1],
    e=[0, 0, 0, 0, 0, 0, 0, 1],
    H=[[25.948786856663858, -2.5579724845846235, 10.433815404888879, -2.3679251022685204, 0.524948541321073,
        1.1241088310450404, 0.4272876194431874, -0.17202221070155493],
       [-9.91568850695171, -0.9689944594115154, 3.0438037242978453, -24.495224566215796, 20.176138334709044,
        15.98066361424651, -6.789040303419874, -6.710236069923372],
       [11.419903575922262, 2.8879645146136994, 72.92137995996029, 80.12511834622643, -52.072871366152654,
        -59.78993625266729, -0.15582684282751913, 4.883087185713722]],
    source="Steinebach 2023, BIT 63:27; digits of OrdinaryDiffEq.jl",
)

#: The Rosenbrock methods by tableau name (``Method.tableau``).
TABLEAUX = {RODAS5P.name: RODAS5P}


# --------------------------------------------------------------------------- compiled kernels


def _ros_step(t, y, f0, ft, J, h, margs, a, C, gamma, c, d, m, e, W, piv, K, u, ynew, err, rtol, atol, stats):
    """One Rosenbrock step of size ``h`` from ``(t, y)``: stages into ``K``, ``ynew``; returns the error norm.

    ``f0``, ``J`` and ``ft`` are ``f``, ``∂f/∂y`` and ``∂f/∂t`` at ``(t, y)``: a rejected step
    retries with a smaller ``h`` at the same point, so they are the caller's to reuse.
    Returns ``inf`` when ``W`` is singular or the step is not finite.
    """
    n = y.size
    s = m.size
    if not _factor_shifted(J, 1.0 / (h * gamma), 1.0, W, piv, stats):
        return math.inf
    inv_h = 1.0 / h
    for st in range(s):
        if st == 0:
            for i in range(n):
                K[0, i] = f0[i]
        else:
            for i in range(n):
                acc = y[i]
                for j in range(st):
                    acc += a[st, j] * K[j, i]
                u[i] = acc
            rhs(t + c[st] * h, u, margs, K[st])
            stats[STAT_RHS] += 1
        hd = h * d[st]
        for i in range(n):
            acc = K[st, i] + hd * ft[i]
            for j in range(st):
                acc += C[st, j] * inv_h * K[j, i]
            K[st, i] = acc
        _lu_solve(W, piv, K[st])
    for i in range(n):
        acc = y[i]
        ea = 0.0
        for j in range(s):
            acc += m[j] * K[j, i]
            ea += e[j] * K[j, i]
        if not math.isfinite(acc):
            return math.inf
        ynew[i] = acc
        err[i] = ea
    return _rms_norm(err, y, ynew, rtol, atol)


def _ros_outputs(t_eval, idx, t, h, t_new, y, ynew, K, H, q, out):
    """Fill the rows of ``out`` with times in ``(t, t_new]`` from the step's dense output; the next index."""
    n = y.size
    r = H.shape[0]
    if idx >= t_eval.size or t_eval[idx] > t_new:
        return idx
    for k in range(r):
        for i in range(n):
            acc = 0.0
            for j in range(H.shape[1]):
                acc += H[k, j] * K[j, i]
            q[k, i] = acc
    while idx < t_eval.size and t_eval[idx] <= t_new:
        if t_eval[idx] == t_new:
            for i in range(n):
                out[idx, i] = ynew[i]
        else:
            theta = (t_eval[idx] - t) / h
            for i in range(n):
                acc = q[r - 1, i]
                for k in range(r - 2, -1, -1):
                    acc = q[k, i] + theta * acc
                out[idx, i] = (1.0 - theta) * y[i] + theta * (ynew[i] + (1.0 - theta) * acc)
        idx += 1
    return idx


def _gustafsson(err_norm, h, err_acc, h_acc, expo, safety, facmin, facmax):
    """Step-size factor after an accepted step: the smaller of the classical and the predictive one.

    Gustafsson's predictive controller (as in RODAS) also uses the last accepted
    step's size ``h_acc`` and error ``err_acc``; ``h_acc = 0`` means there is none.
    """
    fac = facmax if err_norm == 0.0 else min(facmax, max(facmin, safety * err_norm ** (-expo)))
    if h_acc > 0.0 and err_norm > 0.0:
        pred = safety * (h / h_acc) * (err_acc / (err_norm * err_norm)) ** expo
        fac = min(fac, max(facmin, min(facmax, pred)))
    return fac


def _rosenbrock(t_eval, y0, margs, a, C, gamma, c, d, m, e, H, error_order, safety, facmin, facmax,
                ea, eb, ec, ee, edense, eorder, eexpo1, ebeta, esafety, efacmin, efacmax,
                rtol, atol, h_init, h_max, max_steps, out, stats):
    """Adaptive Rosenbrock integration with dense output at ``t_eval``; returns ``(status, t_reached)``.

    ``ea`` .. ``efacmax`` are an explicit partner (its tableau and PI controller
    settings); with one (``eb`` not empty: method ``auto``) the loop starts explicit and
    switches between the two by the rule of auto.py. One ``jac``/``dfdt`` per accepted
    Rosenbrock step (a rejected step reuses them), one LU per attempt.
    """
    n = y0.size
    y = y0.copy()
    ynew, f0, ft, u, err = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    J, W = np.empty((n, n)), np.empty((n, n))
    piv = np.empty(n, dtype=np.int64)
    K = np.empty((max(m.size, eb.size), n))
    q = np.empty((H.shape[0], n))
    expo = 1.0 / (error_order + 1)
    t = t_eval[0]
    t_end = t_eval[t_eval.size - 1]
    stiff = eb.size == 0
    order = error_order + 1 if stiff else eorder
    status, idx, h, h_max = _start(t_eval, y, margs, f0, order, rtol, atol, h_init, h_max, out, stats)
    if status >= 0:
        return status, t
    # the switching rule's counters; np.int64, not literals, or Numba compiles _auto_verdict twice
    votes, calm = np.int64(0), np.int64(0)
    err_old = 1e-4  # the explicit PI controller's memory
    h_acc, err_acc = 0.0, 0.0  # the Rosenbrock controller's memory (h_acc = 0: none yet)
    have_jac = False
    rejected = False
    nan_rejects = 0
    steps = 0
    while idx < t_eval.size:
        status = _step_guard(steps, max_steps, h, t, nan_rejects)
        if status >= 0:
            return status, t
        last = t + 1.01 * h >= t_end
        if last:
            h = t_end - t
        steps += 1
        if not stiff:
            err_norm = _rk_step(t, y, f0, h, margs, ea, eb, ec, ee, K, u, ynew, err, rtol, atol, stats)
        else:
            if not have_jac:
                jac(t, y, margs, J)
                dfdt(t, y, margs, ft)
                stats[STAT_JAC] += 1
                have_jac = True
            err_norm = _ros_step(t, y, f0, ft, J, h, margs, a, C, gamma, c, d, m, e, W, piv, K, u, ynew, err, rtol,
                                 atol, stats)
        if not math.isfinite(err_norm):
            nan_rejects += 1
            stats[STAT_REJECTED] += 1
            h *= 0.25
            rejected = True
            continue
        nan_rejects = 0
        if err_norm > 1.0:
            stats[STAT_REJECTED] += 1
            h *= max(facmin, safety * err_norm ** (-expo)) if stiff else max(efacmin, esafety * err_norm ** (-eexpo1))
            rejected = True
            continue
        stats[STAT_ACCEPTED] += 1
        t_new = t_end if last else t + h
        if stiff:
            idx = _ros_outputs(t_eval, idx, t, h, t_new, y, ynew, K, H, q, out)
            fac = _gustafsson(err_norm, h, err_acc, h_acc, expo, safety, facmin, facmax)
            h_acc, err_acc = h, max(err_norm, 1e-2)
        else:
            idx = _rk_outputs(t_eval, idx, t, h, t_new, y, ynew, K, edense, out)
            fac = _pi_factor(err_norm, err_old, eexpo1, ebeta, esafety, efacmin, efacmax)
            err_old = max(err_norm, 1e-4)
        if rejected:
            fac = min(fac, 1.0)
        rejected = False
        h_next = min(h * fac, h_max)
        was_stiff = stiff
        if eb.size > 0:
            stiff, votes, calm = _auto_verdict(stiff, votes, calm, h, h_next, K, ea, J)
            if stiff != was_stiff:
                stats[STAT_SWITCHES] += 1
                h_acc, err_old = 0.0, 1e-4
        have_jac = False
        t = t_new
        for i in range(n):
            y[i] = ynew[i]
        if idx < t_eval.size:
            if was_stiff:
                rhs(t, y, margs, f0)
                stats[STAT_RHS] += 1
            else:  # first same as last: the explicit step's last stage is f(t_new, y_new)
                for i in range(n):
                    f0[i] = K[eb.size - 1, i]
        h = h_next
    return STATUS_OK, t
