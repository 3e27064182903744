"""The continuous adjoint (Chen et al., *Neural Ordinary Differential Equations*, 2018).

After a forward solve that keeps only its outputs, the backward pass integrates
the augmented system backwards in time,

    dy/dt = f,   da/dt = -a·∂f/∂y,   dg_p/dt = -a·∂f/∂p,   dg_w/dt = -a·∂f/∂w,

from the last output time to the first, adding each output's cotangent to ``a`` as
it passes and restarting ``y`` there from the forward solution (as torchdiffeq
does). At the start ``a`` is dL/dy0 and ``g`` the parameter gradients; memory
does not depend on the number of steps. The products ``a·∂f/∂·`` come from the
generated ``vjp`` (symbolic for the physics, each net through its own VJP): one
call per stage, no autograd graph.

The batch is integrated as one system (the parameter gradients are shared), with
a trajectory frozen outside its own time span. The error control uses a
seminorm over ``y`` and ``a`` only (Kidger, Chen & Lyons, *"Hey, that's not an
ODE": Faster ODE Adjoints via Seminorms*, ICML 2021): the gradient channels are
integrals of the others and need no step control of their own. ``seminorm=False``
controls them too.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from odedsl.adjoint import Problem, flat_weight_grads, start_gradient, time_gradients


class ContinuousAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, prob: Problem, y0, t_eval, p, *weights):
        out = prob.integrator()(prob.tm.rhs_closure(p), t_eval, y0, prob.opts, p=p)[0]
        ctx.prob = prob
        ctx.save_for_backward(y0, t_eval, p, out, *weights)
        return out

    @staticmethod
    @torch.no_grad()
    def backward(ctx, grad_out):
        prob = ctx.prob
        y0, t_eval, p, out, *weights = ctx.saved_tensors
        tm = prob.tm
        T, B, N = out.shape
        n_p, n_w = p.numel(), sum(w.numel() for w in weights)
        ps = tuple(p.unbind())
        nets = tm.prepared_nets()
        zeros = [[torch.zeros_like(w) for w in net.parameters()] for net in tm.nets]
        t0, t_end = t_eval[:, 0], t_eval[:, -1]
        active = torch.ones(B, dtype=out.dtype, device=out.device)

        def f_aug(s, z, rows):
            tau = -s[0]
            y = z[0, :B * N].reshape(B, N)
            a = z[0, B * N:2 * B * N].reshape(B, N) * active.unsqueeze(-1)
            t_rows = tau.expand(B)
            f, gy, gp, gw = tm.fn.vjp(t_rows, y, ps, nets, tm.input_values(t_rows), a)
            parts = [(-f * active.unsqueeze(-1)).reshape(-1), gy.reshape(-1)]
            if n_p:
                parts.append(gp.reshape(-1, n_p).sum(0))
            parts += [g.reshape(-1) for g in flat_weight_grads(zeros, gw)]
            return torch.cat(parts).unsqueeze(0)

        y = torch.zeros(B, N, dtype=out.dtype, device=out.device)
        a = torch.zeros_like(y)
        a0 = torch.zeros_like(y)
        g = torch.zeros(n_p + n_w, dtype=out.dtype, device=out.device)
        times = torch.unique(t_eval).flip(0).tolist()
        opts = replace(prob.opts, norm_dims=2 * B * N if prob.seminorm else None, h0=None)
        integrate = prob.integrator()
        for i, tau in enumerate(times):
            hit = (t_eval == tau).T.unsqueeze(-1)  # (T, B, 1)
            rows_hit = hit.any(0)
            y = torch.where(rows_hit, (out * hit).sum(0) / hit.sum(0).clamp_min(1), y)
            starts = (t0 == tau).unsqueeze(-1)
            a0 = torch.where(starts, a, a0)  # dL/dy0 through the solve, before the outputs at the start
            a = a + torch.where(starts, torch.zeros_like(a), (grad_out * hit).sum(0))
            if i + 1 == len(times):
                break
            nxt = times[i + 1]
            active = ((t0 <= nxt) & (t_end >= tau)).to(out.dtype)
            z = torch.cat([y.reshape(-1), a.reshape(-1), g]).unsqueeze(0)
            span = torch.tensor([[-tau, -nxt]], dtype=out.dtype, device=out.device)
            z_out, _, h_last = integrate(f_aug, span, z, opts, p=p)
            opts = replace(opts, h0=h_last if bool((h_last > 0).all()) else None)
            z = z_out[-1, 0]
            y, a = z[:B * N].reshape(B, N), z[B * N:2 * B * N].reshape(B, N)
            g = z[2 * B * N:]
        g_t = time_gradients(tm, p, t_eval, out, grad_out, a0, y0) if ctx.needs_input_grad[2] else None
        g_w, pos = [], n_p
        for w in weights:
            g_w.append(g[pos:pos + w.numel()].reshape(w.shape))
            pos += w.numel()
        return (None, a0 + start_gradient(t_eval, grad_out), g_t, g[:n_p], *g_w)
