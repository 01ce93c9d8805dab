"""The scan as torch operators: `symcell::scan` and `symcell::scan_backward`.

Registered with torch.library (fake implementations for tracing, autograd through the derived backward), so a
cell is one operator per sequence to torch autograd, TorchScript, torch.compile and torch.export. The kernel is
named by its key (registry.py), not passed as an object. Eager training skips the operators' dispatch through a
plain autograd.Function (_EagerScan) around the same kernel and backward.
"""
from typing import List, Optional

import torch
from torch.autograd.function import once_differentiable

from . import registry
from .dims import bind, dim_symbol
from .kernel import Role


def _unaliased(outs, inputs):
    """An operator's outputs may not share memory with its inputs or each other (e.g. at T = 0 the final
    state is the initial one): clone those that do."""
    taken = {t.untyped_storage().data_ptr() for t in inputs if t.numel()}
    fresh = []
    for t in outs:
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in taken:
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        if ptr is not None:
            taken.add(ptr)
        fresh.append(t)
    return fresh


def _shapes(key, T, B, save):
    """Shapes of the forward's results (ys, finals, then the residuals when saving), from its program."""
    scan = registry.program_for(key).forward
    dims = {dim_symbol(k): v for k, v in registry.parse(key)[1].items()}
    shapes = []
    for r in scan.returns:
        if r.save and not save:
            continue
        for b in r.buffers:
            n = bind(scan.buffer(b).size, dims, b)
            shapes.append((B, n) if scan.buffer(b).role == Role.CARRY_IN else (T, B, n))
    return shapes


def _n_outputs(key):
    """the number of output sequences of a key's cell (plain lookups: torch.compile traces this)"""
    return len(registry.ir_of(registry.parse(key)[0]).outputs)


@torch.library.custom_op("symcell::scan", mutates_args=())
def scan(key: str, xs: List[torch.Tensor], inits: List[torch.Tensor], params: List[torch.Tensor],
         save: bool, lengths: Optional[torch.Tensor]) -> List[torch.Tensor]:
    """ys of the output states, final states, then (when save) the residuals of the backward. With `lengths`
    (int64, one per row), row b holds its state from step lengths[b] on."""
    ys, finals, res = registry.kernel_for(key).forward(tuple(xs), tuple(inits), tuple(params), save, lengths)
    return _unaliased([*ys, *finals, *res], [*xs, *inits, *params])


@scan.register_fake
def _(key, xs, inits, params, save, lengths):
    return [xs[0].new_empty(s) for s in _shapes(key, xs[0].shape[0], xs[0].shape[1], save)]


@torch.library.custom_op("symcell::scan_backward", mutates_args=())
def scan_backward(key: str, d_ys: List[torch.Tensor], d_finals: List[torch.Tensor], xs: List[torch.Tensor],
                  inits: List[torch.Tensor], params: List[torch.Tensor], ys: List[torch.Tensor],
                  res: List[torch.Tensor], lengths: Optional[torch.Tensor]) -> List[torch.Tensor]:
    """gradients of xs, inits and params"""
    d_xs, d_inits, d_params = registry.kernel_for(key).backward(tuple(d_ys), tuple(d_finals), tuple(xs), tuple(inits),
                                                                tuple(params), tuple(ys), tuple(res), lengths)
    return _unaliased([t.contiguous() for t in (*d_xs, *d_inits, *d_params)],
                      [*d_ys, *d_finals, *xs, *inits, *params, *ys, *res])


@scan_backward.register_fake
def _(key, d_ys, d_finals, xs, inits, params, ys, res, lengths):
    return [torch.empty_like(t) for t in (*xs, *inits, *params)]


def _saved(saved, counts):
    """What both autograd paths save, in order: xs, inits, params, ys, residuals -> those five groups."""
    n_in, n_st, n_par, n_out = counts
    groups, k = [], 0
    for n in (n_in, n_st, n_par, n_out):
        groups.append(tuple(saved[k:k + n]))
        k += n
    return (*groups, tuple(saved[k:]))


def _cotangents(grads, ys, inits):
    """The gradients autograd passes a scan's backward, with None (an output that was not used) as zeros."""
    n_out = len(ys)
    return ([torch.zeros_like(y) if g is None else g.contiguous() for y, g in zip(ys, grads[:n_out])],
            [torch.zeros_like(i) if g is None else g.contiguous() for i, g in zip(inits, grads[n_out:])])


def _setup_context(ctx, inputs, output):
    key, xs, inits, params, save, lengths = inputs
    n_out, n_st = _n_outputs(key), len(inits)
    ctx.key, ctx.counts, ctx.saved_residuals = key, (len(xs), len(inits), len(params), n_out), save
    ctx.has_lengths = lengths is not None
    # the outputs are ys, finals, residuals: the finals are not needed
    ctx.save_for_backward(*xs, *inits, *params, *output[:n_out], *output[n_out + n_st:],
                          *([lengths] if lengths is not None else []))


def _backward(ctx, grads):
    saved = ctx.saved_tensors
    lengths = saved[-1] if ctx.has_lengths else None
    xs, inits, params, ys, res = _saved(saved[:-1] if ctx.has_lengths else saved, ctx.counts)
    if not ctx.saved_residuals:   # run without residuals (save=False), yet differentiated: recompute them
        res = scan(ctx.key, list(xs), list(inits), list(params), True, lengths)[len(ys) + len(inits):]
    d_ys, d_fin = _cotangents(grads, ys, inits)
    d = scan_backward(ctx.key, d_ys, d_fin, list(xs), list(inits), list(params), list(ys), list(res), lengths)
    n_in, n_st = len(xs), len(inits)
    return None, d[:n_in], d[n_in:n_in + n_st], d[n_in + n_st:], None, None


torch.library.register_autograd("symcell::scan", _backward, setup_context=_setup_context)


class _EagerScan(torch.autograd.Function):
    """Eager training: the same kernel and derived backward as the operators, without their per-call dispatch
    cost (a few hundred microseconds in Python, 8% of a small LSTM's training step)."""

    @staticmethod
    def forward(ctx, kernel, lengths, n_xs, n_inits, *flat):
        xs, inits, params = flat[:n_xs], flat[n_xs:n_xs + n_inits], flat[n_xs + n_inits:]
        ys, finals, res = kernel.forward(xs, inits, params, True, lengths)
        finals = tuple(f.clone() if any(f is i for i in inits) else f for f in finals)
        ctx.kernel, ctx.counts, ctx.lengths = kernel, (n_xs, n_inits, len(params), len(ys)), lengths
        ctx.save_for_backward(*xs, *inits, *params, *ys, *res)
        return (*ys, *finals)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        xs, inits, params, ys, res = _saved(ctx.saved_tensors, ctx.counts)
        d_ys, d_fin = _cotangents(grads, ys, inits)
        d_xs, d_inits, d_params = ctx.kernel.backward(d_ys, d_fin, xs, inits, params, ys, res, ctx.lengths)
        # autograd may accumulate into a gradient in place: none may alias another tensor (at T = 0, d_inits
        # would be the incoming d_finals)
        d = _unaliased([*d_xs, *d_inits, *d_params], [*d_ys, *d_fin, *xs, *inits, *params, *ys, *res])
        return (None, None, None, None, *d)


def scan_op(key, xs, inits, params, lengths=None):
    """-> (ys: tuple of (T, B, n) for the output states, finals: tuple of (B, n) for every state).
    `lengths`: None, or an int64 tensor of B lengths on the tensors' device (see symcell.scan)."""
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (*xs, *inits, *params))
    n_out = _n_outputs(key)
    if not torch.compiler.is_compiling() and not torch.jit.is_tracing():
        kernel = registry.kernel_for(key)
        if needs_grad:    # eager training: one autograd node per sequence
            outs = _EagerScan.apply(kernel, lengths, len(xs), len(inits), *xs, *inits, *params)
            return tuple(outs[:n_out]), tuple(outs[n_out:])
        # eager inference: the kernel directly, no residuals, no graph
        ys, finals, _ = kernel.forward(xs, inits, params, False, lengths)
        return tuple(ys), tuple(f.clone() if any(f is i for i in inits) else f for f in finals)
    # torch.compile, tracing and export see the registered operators
    # a traced graph must not depend on grad mode: it records save=False, and a backward through it recomputes
    # the residuals (see _backward)
    save = not torch.jit.is_tracing() and needs_grad
    outs = scan(key, list(xs), list(inits), list(params), save, lengths)
    return tuple(outs[:n_out]), tuple(outs[n_out:n_out + len(inits)])
