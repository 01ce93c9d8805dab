"""The scan as torch operators: `symcell::scan` and `symcell::scan_backward`.

Registered with torch.library (fake implementations for tracing, autograd through the derived backward), so a
cell is one operator per sequence to torch autograd, TorchScript, torch.compile and torch.export. The kernel is
named by a key, "<hash of the cell>:<dimensions>:<backend>", not passed as an object: a traced or exported
program refers to it by that string, and a fresh process that defines (imports) the same cell rebuilds it.
"""
import hashlib
from typing import List, Optional

import torch
from torch.autograd.function import once_differentiable

_CELLS = {}     # hash of a cell's fingerprint -> its CellSpec, for every cell defined in this process
_KERNELS = {}   # key -> built kernel


def register_cell(spec):
    from .ir import fingerprint
    spec.hash = hashlib.sha256(fingerprint(spec.ir).encode()).hexdigest()[:20]
    _CELLS.setdefault(spec.hash, spec)


def kernel_key(spec, dims, backend):
    return f"{spec.hash}:{','.join(f'{k}={v}' for k, v in sorted(dims.items()))}:{backend}"


def _parse(key):
    """key -> (CellSpec, dims, backend)"""
    cell, dims, backend = key.split(":")
    if cell not in _CELLS:
        import symcell.cells  # noqa: F401  (defines the prebuilt cells)
    if cell not in _CELLS:
        raise RuntimeError(f"symcell: no cell with kernel key {key!r} in this process; define (import) the "
                           "cell before running a program traced or exported with it")
    return _CELLS[cell], {k: int(v) for k, v in (d.split("=") for d in dims.split(",") if d)}, backend


def kernel_for(key):
    if key not in _KERNELS:
        spec, dims, backend = _parse(key)
        _KERNELS[key] = spec.kernel(dims, backend)
    return _KERNELS[key]


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


def _outputs(key, xs, inits, save):
    """shapes of (ys, finals, residuals) for the fake implementation"""
    from . import backends
    from .dims import bind, dim_symbol
    from .plan import plan
    spec, dims, backend = _parse(key)
    # the same schedule the backend plans its residuals on: cpp renders the symbolic one
    sched, bwd = spec.symbolic_schedule() if backends.get(backend).symbolic else spec.schedule(dims)
    p = plan(sched, bwd)
    T, B = xs[0].shape[0], xs[0].shape[1]
    syms = {dim_symbol(k): v for k, v in dims.items()}
    size = {v.name: bind(v.size, syms, v.name) for v in sched.values if v.size is not None}
    ys = [(T, B, size[s]) for s in spec.ir.outputs]
    finals = [(B, size[s]) for s, _ in spec.ir.states]
    res = [(T, B, size[v]) for v in p.residuals] if save else []
    return ys, finals, res


@torch.library.custom_op("symcell::scan", mutates_args=())
def scan(key: str, xs: List[torch.Tensor], inits: List[torch.Tensor], params: List[torch.Tensor],
         save: bool, lengths: Optional[torch.Tensor]) -> List[torch.Tensor]:
    """ys of the output states, final states, then (when save) the residuals of the backward. With `lengths`
    (int64, one per row), row b holds its state from step lengths[b] on."""
    ys, finals, res = kernel_for(key).forward(tuple(xs), tuple(inits), tuple(params), save, lengths)
    res = [r for r in res if r is not None] if save else []
    return _unaliased([*ys, *finals, *res], [*xs, *inits, *params])


@scan.register_fake
def _(key, xs, inits, params, save, lengths):
    ys, finals, res = _outputs(key, xs, inits, save)
    return [xs[0].new_empty(s) for s in ys + finals + res]


@torch.library.custom_op("symcell::scan_backward", mutates_args=())
def scan_backward(key: str, d_ys: List[torch.Tensor], d_finals: List[torch.Tensor], xs: List[torch.Tensor],
                  inits: List[torch.Tensor], params: List[torch.Tensor], ys: List[torch.Tensor],
                  res: List[torch.Tensor], lengths: Optional[torch.Tensor]) -> List[torch.Tensor]:
    """gradients of xs, inits and params"""
    d_xs, d_inits, d_params = kernel_for(key).backward(tuple(d_ys), tuple(d_finals), tuple(xs), tuple(inits),
                                                       tuple(params), tuple(ys), tuple(res), lengths)
    return _unaliased([t.contiguous() for t in (*d_xs, *d_inits, *d_params)],
                      [*d_ys, *d_finals, *xs, *inits, *params, *ys, *res])


@scan_backward.register_fake
def _(key, d_ys, d_finals, xs, inits, params, ys, res, lengths):
    return [torch.empty_like(t) for t in (*xs, *inits, *params)]


def _setup_context(ctx, inputs, output):
    key, xs, inits, params, save, lengths = inputs
    n_out = len(_parse(key)[0].ir.outputs)
    ctx.key, ctx.counts, ctx.saved_residuals = key, (len(xs), len(inits), len(params), n_out), save
    ctx.has_lengths = lengths is not None
    ctx.save_for_backward(*xs, *inits, *params, *output, *([lengths] if lengths is not None else []))


def _backward(ctx, grads):
    n_in, n_st, n_par, n_out = ctx.counts
    saved = ctx.saved_tensors
    lengths = saved[-1] if ctx.has_lengths else None
    saved = saved[:-1] if ctx.has_lengths else saved
    xs, inits, params = saved[:n_in], saved[n_in:n_in + n_st], saved[n_in + n_st:n_in + n_st + n_par]
    outs = saved[n_in + n_st + n_par:]
    ys, res = outs[:n_out], outs[n_out + n_st:]
    if not ctx.saved_residuals:   # run without residuals (save=False), yet differentiated: recompute them
        res = scan(ctx.key, list(xs), list(inits), list(params), True, lengths)[n_out + n_st:]
    d_ys = [torch.zeros_like(y) if g is None else g.contiguous() for y, g in zip(ys, grads[:n_out])]
    d_fin = [torch.zeros_like(i) if g is None else g.contiguous() for i, g in zip(inits, grads[n_out:n_out + n_st])]
    d = scan_backward(ctx.key, d_ys, d_fin, list(xs), list(inits), list(params), list(ys), list(res), lengths)
    return None, d[:n_in], d[n_in:n_in + n_st], d[n_in + n_st:], None, None


torch.library.register_autograd("symcell::scan", _backward, setup_context=_setup_context)


class _EagerScan(torch.autograd.Function):
    """Eager training: the same kernel and derived backward as the operators, without their per-call dispatch
    cost (a few hundred microseconds in Python, 8% of a small LSTM's training step)."""

    @staticmethod
    def forward(ctx, key, kernel, lengths, n_xs, n_inits, *flat):
        xs, inits, params = flat[:n_xs], flat[n_xs:n_xs + n_inits], flat[n_xs + n_inits:]
        ys, finals, res = kernel.forward(xs, inits, params, True, lengths)
        finals = tuple(f.clone() if any(f is i for i in inits) else f for f in finals)
        ctx.kernel, ctx.counts, ctx.lengths = kernel, (n_xs, n_inits, len(params), len(ys)), lengths
        ctx.save_for_backward(*xs, *inits, *params, *ys, *[r for r in res if r is not None])
        return (*ys, *finals)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        n_in, n_st, n_par, n_out = ctx.counts
        saved = ctx.saved_tensors
        xs, inits = saved[:n_in], saved[n_in:n_in + n_st]
        params, ys = saved[n_in + n_st:n_in + n_st + n_par], saved[n_in + n_st + n_par:n_in + n_st + n_par + n_out]
        res = saved[n_in + n_st + n_par + n_out:]
        d_ys = tuple(torch.zeros_like(y) if g is None else g.contiguous() for y, g in zip(ys, grads[:n_out]))
        d_fin = tuple(torch.zeros_like(i) if g is None else g.contiguous().clone()
                      for i, g in zip(inits, grads[n_out:]))
        d_xs, d_inits, d_params = ctx.kernel.backward(d_ys, d_fin, xs, inits, params, ys, res, ctx.lengths)
        return (None, None, None, None, None, *d_xs, *d_inits, *d_params)


def scan_op(key, xs, inits, params, lengths=None):
    """-> (ys: tuple of (T, B, n) for the output states, finals: tuple of (B, n) for every state).
    `lengths`: None, or an int64 tensor of B lengths on the tensors' device (see symcell.scan)."""
    n_out = len(_parse(key)[0].ir.outputs)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (*xs, *inits, *params))
    if not torch.compiler.is_compiling() and not torch.jit.is_tracing():
        kernel = kernel_for(key)
        if needs_grad:    # eager training: one autograd node per sequence
            outs = _EagerScan.apply(key, kernel, lengths, len(xs), len(inits), *xs, *inits, *params)
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
