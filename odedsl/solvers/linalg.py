"""Dense LU factorisation with partial pivoting, for the stiff methods' small linear systems.

Plain loops that ``odedsl.backends.numba_module`` compiles into each model's module.
The implicit methods factor one matrix ``a*I - b*J`` per step (Rosenbrock) or per
step-size change (BDF) and solve with it several times, so the factorisation
works in place on a matrix the caller owns and the solve overwrites its
right-hand side: nothing is allocated per step. The loops are unblocked O(n³):
right for the tens of states of typical models, where a LAPACK call's fixed
overhead would dominate, not for thousands.

Pivots are recorded LAPACK-style (``piv[k]``: the row swapped with row ``k`` at
step ``k``). A zero or non-finite pivot means the matrix is singular (or J held
NaN); the factorisation then returns ``False`` and the caller rejects the step.
"""

import math

from odedsl.solvers.explicit import STAT_LU


def _lu_factor(A, piv):
    """Factor ``A`` in place into ``L`` (unit lower, below the diagonal) and ``U``; ``False`` if singular."""
    n = A.shape[0]
    for k in range(n):
        p = k
        big = abs(A[k, k])
        for i in range(k + 1, n):
            v = abs(A[i, k])
            if v > big:
                big = v
                p = i
        piv[k] = p
        if big == 0.0 or not math.isfinite(big):
            return False
        if p != k:
            for j in range(n):
                tmp = A[k, j]
                A[k, j] = A[p, j]
                A[p, j] = tmp
        inv = 1.0 / A[k, k]
        for i in range(k + 1, n):
            lik = A[i, k] * inv
            A[i, k] = lik
            if lik != 0.0:
                for j in range(k + 1, n):
                    A[i, j] -= lik * A[k, j]
    return True


def _lu_solve(LU, piv, b):
    """Overwrite ``b`` with the solution of ``A x = b``, ``LU``/``piv`` from ``_lu_factor(A, piv)``."""
    n = LU.shape[0]
    for k in range(n):
        p = piv[k]
        if p != k:
            tmp = b[k]
            b[k] = b[p]
            b[p] = tmp
    for i in range(1, n):
        acc = b[i]
        for j in range(i):
            acc -= LU[i, j] * b[j]
        b[i] = acc
    for i in range(n - 1, -1, -1):
        acc = b[i]
        for j in range(i + 1, n):
            acc -= LU[i, j] * b[j]
        b[i] = acc / LU[i, i]


def _factor_shifted(J, diag, scale, LU, piv, stats):
    """Factor ``diag*I - scale*J`` into ``LU``/``piv`` (counted in ``stats``); ``False`` if singular."""
    n = J.shape[0]
    for i in range(n):
        for j in range(n):
            LU[i, j] = -scale * J[i, j]
        LU[i, i] += diag
    stats[STAT_LU] += 1
    return _lu_factor(LU, piv)
