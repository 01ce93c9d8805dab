"""One autograd node per sequence: the kernel's forward and its derived backward.

torch autograd sees a single node (ScanBackward); it never traces the per-step ops.
"""
import torch
from torch.autograd.function import once_differentiable


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernel, counts, *flat):
        n_in, n_st, n_par = counts
        xs, inits, params = flat[:n_in], flat[n_in:n_in + n_st], flat[n_in + n_st:]
        save = torch.is_grad_enabled() or any(ctx.needs_input_grad[2:])
        ys, finals, res = kernel.forward(xs, inits, params, save)
        finals = _fresh_finals(finals, inits)
        ctx.kernel, ctx.counts, ctx.n_res = kernel, counts, len(res)
        ctx.save_for_backward(*xs, *inits, *params, *ys, *res)
        return (*ys, *finals)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        n_in, n_st, n_par = ctx.counts
        saved = ctx.saved_tensors
        xs, inits = saved[:n_in], saved[n_in:n_in + n_st]
        params = saved[n_in + n_st:n_in + n_st + n_par]
        rest = saved[n_in + n_st + n_par:]
        n_out = len(rest) - ctx.n_res
        ys, res = rest[:n_out], rest[n_out:]
        d_ys = tuple(torch.zeros_like(y) if g is None else g.contiguous() for y, g in zip(ys, grads[:n_out]))
        d_fin = tuple(torch.zeros_like(i) if g is None else g.contiguous().clone()
                      for i, g in zip(inits, grads[n_out:]))
        d_xs, d_inits, d_params = ctx.kernel.backward(d_ys, d_fin, xs, inits, params, ys, res)
        return (None, None, *d_xs, *d_inits, *d_params)


def _fresh_finals(finals, inits):
    # a final state that is the initial state itself (T = 0) must be a new tensor: for autograd, and so that
    # writing into the result never writes into the caller's initial state
    return tuple(f.clone() if any(f is i for i in inits) else f for f in finals)


def scan_op(kernel, xs, inits, params):
    """-> (ys: tuple of (T, B, n) for the output states, finals: tuple of (B, n) for every state)."""
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (*xs, *inits, *params))):
        ys, finals, _ = kernel.forward(xs, inits, params, False)   # inference: no graph, no residuals
        return tuple(ys), _fresh_finals(finals, inits)
    outs = _Scan.apply(kernel, (len(xs), len(inits), len(params)), *xs, *inits, *params)
    n_out = len(outs) - len(inits)
    return tuple(outs[:n_out]), tuple(outs[n_out:])
