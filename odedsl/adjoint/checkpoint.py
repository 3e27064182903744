"""Checkpointed gradients: exact discrete gradients at the memory of a stretch of steps.

The forward pass runs without autograd and keeps a ``Tape``: each step's size,
which rows accepted it, and the full state every ``checkpoint_every`` steps. The
backward pass walks the checkpoints from the last to the first; for each it
replays the steps of its stretch with autograd on (the same operations as the
forward pass, so the same numbers), and back-propagates the outputs' cotangents
and the cotangent of the stretch's end state, which the later stretch returned.
"""

from __future__ import annotations

import torch

from odedsl.adjoint import Problem, start_gradient, time_gradients
from odedsl.solvers.torch_rk import Tape


class Checkpointed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, prob: Problem, y0, t_eval, p, *weights):
        tape = Tape(every=prob.checkpoint_every)
        out = prob.integrator()(prob.tm.rhs_closure(p), t_eval, y0, prob.opts, tape, p=p)[0]
        ctx.prob, ctx.tape = prob, tape
        ctx.save_for_backward(y0, t_eval, p, out, *weights)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        prob, tape = ctx.prob, ctx.tape
        y0, t_eval, p, out, *weights = ctx.saved_tensors
        T, B, N = out.shape
        padded = torch.cat([grad_out, torch.zeros_like(grad_out[:1])])
        gp = torch.zeros_like(p)
        gw = [torch.zeros_like(w) for w in weights]
        g_end = None
        g_y0 = torch.zeros_like(y0)
        bounds = [c[0] for c in tape.checkpoints] + [len(tape.steps)]
        for k in range(len(tape.checkpoints) - 1, -1, -1):
            _, keep, start = tape.checkpoints[k]
            with torch.enable_grad():
                p_ = p.detach().requires_grad_()
                start.y = start.y.detach().requires_grad_()
                seg_out = torch.zeros_like(padded)
                end = prob.replay(prob.tm.rhs_closure(p_), start, tape.steps[bounds[k]:bounds[k + 1]], seg_out, p_)
                outs, cots = [seg_out], [padded]
                if g_end is not None:
                    outs.append(end.y)
                    cots.append(g_end)
                pairs = [(o, c) for o, c in zip(outs, cots) if o.requires_grad]
                grads = torch.autograd.grad([o for o, _ in pairs], [start.y, p_, *weights], [c for _, c in pairs],
                                            allow_unused=True) if pairs else [None] * (2 + len(weights))
            g_start, g_p, *g_w = grads
            gp += g_p if g_p is not None else 0
            for acc, g in zip(gw, g_w):
                if g is not None:
                    acc += g
            g_start = torch.zeros_like(start.y) if g_start is None else g_start
            if keep is not None:  # the stretch before ended with more rows: the finished ones get nothing
                full = g_start.new_zeros(keep.shape[0], N)
                full[keep] = g_start
                g_start = full
            g_end = g_start
        if g_end is not None:
            g_y0 = g_end
        g_t = time_gradients(prob.tm, p, t_eval, out, grad_out, g_y0, y0) if ctx.needs_input_grad[2] else None
        return (None, g_y0 + start_gradient(t_eval, grad_out), g_t, gp, *gw)
