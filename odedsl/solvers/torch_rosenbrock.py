"""Rodas5P on batches of torch tensors: the stiff method of the Torch backend.

The step is rosenbrock.py's (Hairer & Wanner's formulation, no products with
``J``, the Rodas5P tableau held there) on ``(B, N)`` tensors: one batched LU of
``W = I/(hγ) - J`` per step from the model's exact symbolic Jacobian, ``s``
batched triangular solves, the method's own dense output, and Gustafsson's
predictive step-size controller per row. It plugs into torch_rk.py's loop as a
stepper, so batching, outputs, the NaN guard, compaction, the tape and replay
are the same code. Autograd differentiates through the LU, so ``backprop`` and
``checkpoint`` give exact discrete gradients; the continuous adjoint would need
the Jacobian of the augmented system and is not offered for this method.
"""

from __future__ import annotations

from functools import cache

import torch

from odedsl.solvers.methods import get_method
from odedsl.solvers.rosenbrock import TABLEAUX


@cache
def _tensors(name: str, dtype: torch.dtype, device: torch.device) -> dict:
    tab = TABLEAUX[name]
    return {k: torch.tensor(getattr(tab, k), dtype=dtype, device=device) for k in ("a", "C", "c", "d", "m", "e", "H")}


class Rosenbrock:
    """Steps of a Rosenbrock method for every row; ``model`` is ``(TorchModel, parameter vector)``."""

    kind = "rosenbrock"
    fsal = False

    def __init__(self, method: str, dtype: torch.dtype, device: torch.device, model) -> None:
        if model is None:
            raise ValueError("a Rosenbrock method needs the model's Jacobian")
        m = get_method(method)
        tab = TABLEAUX[m.tableau]
        self.m, self.tab = m, tab
        self.k = _tensors(m.tableau, dtype, device)
        self.c, self.d = tuple(float(x) for x in tab.c), tuple(float(x) for x in tab.d)
        self.gamma = float(tab.gamma)
        self.order = tab.error_order + 1
        self.expo = 1.0 / (tab.error_order + 1)
        tm, p = model
        ps = tuple(p.unbind())
        nets = tm.prepared_nets()

        def jac(t, y, rows):
            return tm.fn.jac(t, y, ps, nets, tm.input_values(t, rows))

        def dfdt(t, y, rows):
            return tm.fn.dfdt(t, y, ps, nets, tm.input_values(t, rows), tm.input_values(t, rows, rate=True))

        self.jac, self.dfdt = jac, dfdt

    def trial(self, f, st, h: torch.Tensor, stats):
        from odedsl.solvers.torch_rk import _call

        k = self.k
        hs = torch.where(h > 0, h, torch.ones_like(h))  # finished rows (h = 0) solve a harmless system
        J = self.jac(st.t, st.y, st.rows)
        ft = self.dfdt(st.t, st.y, st.rows)
        n = st.y.shape[-1]
        eye = torch.eye(n, dtype=st.y.dtype, device=st.y.device)
        W = eye / (hs * self.gamma).reshape(-1, 1, 1) - J
        lu, piv = torch.linalg.lu_factor(W)
        hc = hs.unsqueeze(-1)
        K = []
        for i in range(self.tab.stages):
            if i == 0:
                fi = st.k0
            else:
                Ks = torch.stack(K, -1)
                yi = st.y + Ks @ k["a"][i, :i]
                fi = _call(f, st.t + self.c[i] * h, yi, st.rows, stats)
            rhs = fi + hc * self.d[i] * ft
            if i:
                rhs = rhs + (Ks @ k["C"][i, :i]) / hc
            K.append(torch.linalg.lu_solve(lu, piv, rhs.unsqueeze(-1)).squeeze(-1))
        Ks = torch.stack(K, -1)
        return K, st.y + Ks @ k["m"]

    @torch.no_grad()
    def error(self, st, K: list, y_new, h, opts):
        from odedsl.solvers.torch_rk import _rms, _scale

        err = _rms((torch.stack(K, -1) @ self.k["e"])[:, :opts.norm_dims], _scale(st.y, y_new, opts))
        return torch.where(h > 0, err, torch.zeros_like(err))

    def interpolant(self, f, st, K: list, y_new, h, stats):
        q = torch.stack(K, -1) @ self.k["H"].T  # (B, N, r)
        y = st.y

        def at(theta):
            th = theta.unsqueeze(-1)
            acc = q[..., -1]
            for r in range(q.shape[-1] - 2, -1, -1):
                acc = q[..., r] + th * acc
            return (1 - th) * y + th * (y_new + (1 - th) * acc)

        return at

    @torch.no_grad()
    def factor(self, st, err: torch.Tensor, h: torch.Tensor, accept: torch.Tensor) -> torch.Tensor:
        """Gustafsson's predictive controller per row (rosenbrock.py's ``_gustafsson``)."""
        m, e = self.m, err.clamp_min(1e-300)
        fac = torch.where(err == 0, torch.full_like(err, m.facmax), (m.safety * e ** (-self.expo)).clamp(m.facmin, m.facmax))
        have = (st.h_acc > 0) & (err > 0)
        pred = m.safety * (h / torch.where(have, st.h_acc, torch.ones_like(h))) \
            * (st.err_old / e.square()) ** self.expo
        fac = torch.where(have, torch.minimum(fac, pred.clamp(m.facmin, m.facmax)), fac)
        fac = torch.where(st.rejected, fac.clamp_max(1.0), fac)
        rej = torch.clamp_min(m.safety * e ** (-self.expo), m.facmin)
        st.err_old = torch.where(accept, err.clamp_min(1e-2), st.err_old)
        return torch.where(accept, fac, rej)
