"""Forward sensitivities as a model of their own, compiled like any model.

For ``dy/dt = f(t, y, p)`` the sensitivities ``S = dy/dp`` obey
``dS/dt = ∂f/∂y S + ∂f/∂p`` with ``S(t0) = dy0/dp``. Written out in SymPy from the
model's exact Jacobians, they become extra states of a new ``Model`` whose
observables are the original ones followed by their derivatives
``dg/dp = ∂g/∂y S + ∂g/∂p``. The Numba backend then compiles and caches it like
any model, and one ``simulate`` gives the observables and their exact parameter
Jacobian along a trajectory, with error control on both: the least-squares fit
needs no finite differences.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from odedsl.model import Model, Observable, Param, State


def sensitivity_model(model: Model, wrt: list[Param], exprs: list[sympy.Expr]) -> Model:
    """``model`` extended by ``d state / d p`` for ``p`` in ``wrt``; its observables: ``exprs`` then
    ``d expr_k / d p_j`` (row-major, k outer)."""
    n, q = len(model.states), len(wrt)
    y = model.state_symbols
    ps = [p.symbol for p in wrt]
    S = [[sympy.Symbol(f"_sens_{i}_{j}", real=True) for j in range(q)] for i in range(n)]
    J = model.jacobian_states()
    Jp = model.jacobian(ps)
    rhs = list(model.rhs)
    for i in range(n):
        for j in range(q):
            rhs.append(sum((J[i, k] * S[k][j] for k in range(n) if J[i, k] != 0), Jp[i, j]))
    states = list(model.states)
    for i, st in enumerate(model.states):
        for j in range(q):
            states.append(State(f"_sens_{i}_{j}", S[i][j], sympy.diff(st.initial, ps[j]), st.line))
    observables = [Observable(f"_obs_{k}", e, None, 0) for k, e in enumerate(exprs)]
    dg_dy = model.jacobian(y, exprs)
    dg_dp = model.jacobian(ps, exprs)
    for k in range(len(exprs)):
        for j in range(q):
            d = sum((dg_dy[k, i] * S[i][j] for i in range(n) if dg_dy[k, i] != 0), dg_dp[k, j])
            observables.append(Observable(f"_dobs_{k}_{j}", d, None, 0))
    tag = ", ".join(p.name for p in wrt)
    return replace(model, name=f"{model.name}_sensitivities", states=states, rhs=rhs, observables=observables,
                   source=f"{model.source}\n# odedsl: forward sensitivities of {exprs} with respect to {tag}\n",
                   warnings=[], _backends={})
