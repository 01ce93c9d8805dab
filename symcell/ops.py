"""The scans as torch operators, for torch.compile, tracing and export (eager mode runs autograd.py instead):

    symcell::scan                  F, the forward      autograd: its backward is symcell::scan_backward
    symcell::scan_backward         G, the backward     autograd: symcell::scan_double_backward
    symcell::scan_double_backward  D, both second-order scans    autograd: D again (it is linear, symmetric)

Registered with torch.library, with fake implementations whose shapes come from the kernel program. The kernel
is named by its key (registry.py), not passed as an object: a traced or exported program refers to it by that
string, and a fresh process that defines (imports) the same cell finds it again. The derivative rules are those
of autograd.py (see there why the tangent scans give every second derivative).
"""
from typing import List, Optional

import torch

from . import flops, registry, skips
from .autograd import _attached, _counts, _double_backward, _edges, _keep, _refuse_if_used, _split, _zeros
from .dims import bind, dim_symbol
from .kernel import Role


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


def _check_lengths(xs, lengths):
    """lengths as the kernels take them: one int64 a row, each in [0, T], from integers of any width (a floating
    dtype refused: 2.5 is no length). A traced program (jit.trace) calls the operator with whatever its caller
    passes, in its own dtype (sequence.check_lengths), where an eager call checked them first."""
    T, B = xs[0].shape[0], xs[0].shape[1]
    integer = not (lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool)
    if not integer or tuple(lengths.shape) != (B,):
        raise ValueError(f"symcell::scan: lengths must be an integer tensor of one entry per batch row, shape ({B},), "
                         f"got {lengths.dtype} of shape {tuple(lengths.shape)}")
    lengths = _int64(lengths)
    if lengths.device.type == "cpu":
        if B and (int(lengths.min()) < 0 or int(lengths.max()) > T):
            raise ValueError(f"symcell::scan: lengths must lie in [0, T] = [0, {T}], got min {int(lengths.min())} "
                             f"and max {int(lengths.max())}")
    else:   # (without waiting for the device)
        torch._assert_async(((lengths >= 0) & (lengths <= T)).all(), "symcell::scan: lengths must lie in [0, T]")
    return lengths


def _int64(lengths):
    """lengths as the kernels take them (a trace passes them in its caller's integer dtype: sequence.check_lengths)"""
    return None if lengths is None else lengths.to(torch.int64)


@torch.library.custom_op("symcell::scan", mutates_args=())
def scan(key: str, xs: List[torch.Tensor], inits: List[torch.Tensor], params: List[torch.Tensor],
         save: bool, lengths: Optional[torch.Tensor]) -> List[torch.Tensor]:
    """ys of the output states, final states, then (when save) the residuals of the backward. With `lengths`
    (int64, one per row), row b holds its state from step lengths[b] on."""
    if lengths is not None:
        lengths = _check_lengths(xs, lengths)
    ys, finals, res = registry.kernel_for(key).forward(xs, inits, params, save, lengths)
    return [*ys, *finals, *res]


@scan.register_fake
def _(key, xs, inits, params, save, lengths):
    return [xs[0].new_empty(s) for s in _shapes(key, xs[0].shape[0], xs[0].shape[1], save)]


@torch.library.custom_op("symcell::scan_backward", mutates_args=())
def scan_backward(key: str, d_ys: List[torch.Tensor], d_finals: List[torch.Tensor], xs: List[torch.Tensor],
                  inits: List[torch.Tensor], params: List[torch.Tensor], ys: List[torch.Tensor],
                  res: List[torch.Tensor], lengths: Optional[torch.Tensor],
                  wanted: Optional[List[bool]] = None) -> List[torch.Tensor]:
    """gradients of xs, inits and params. `wanted`: a bool each (None: all), as the autograd formula below knows
    them from its ctx.needs_input_grad; an unwanted one has any value (the kernel leaves out the work only it
    needs: a first layer's d_x GEMM, the product into an initial state's gradient, as the eager path does). (A
    defaulted argument: a graph that calls the operator without it still runs.)"""
    lengths = _int64(lengths)   # (the forward's, checked there)
    d_xs, d_inits, d_params = registry.kernel_for(key).backward(d_ys, d_finals, xs, inits, params, ys, res, lengths,
                                                                wanted)
    return [t.contiguous() for t in (*d_xs, *d_inits, *d_params)]


@scan_backward.register_fake
def _(key, d_ys, d_finals, xs, inits, params, ys, res, lengths, wanted=None):
    # contiguous, as the operator returns them (empty_like would keep a strided input's strides: a compiled
    # backward of a batch_first or transposed input failed its stride check)
    return [t.new_empty(t.shape) for t in (*xs, *inits, *params)]


@torch.library.custom_op("symcell::scan_double_backward", mutates_args=())
def scan_double_backward(key: str, xs: List[torch.Tensor], inits: List[torch.Tensor], params: List[torch.Tensor],
                         d_ys: List[torch.Tensor], d_finals: List[torch.Tensor], ys: List[torch.Tensor],
                         res: List[torch.Tensor], t_xs: List[torch.Tensor], t_inits: List[torch.Tensor],
                         t_params: List[torch.Tensor], t_d_ys: List[torch.Tensor], t_d_finals: List[torch.Tensor],
                         lengths: Optional[torch.Tensor]) -> List[torch.Tensor]:
    """D(p, d; p', d') of autograd.py: (J_F p' as ys' and finals', then G(p, d') + H p' for xs, inits, params)"""
    lengths = _int64(lengths)
    out = _double_backward(registry.kernel_for(key), lengths, (xs, inits, params), (d_ys, d_finals), ys, res,
                           (t_xs, t_inits, t_params), (t_d_ys, t_d_finals))
    return [t.contiguous() for t in out]


@scan_double_backward.register_fake
def _(key, xs, inits, params, d_ys, d_finals, ys, res, t_xs, t_inits, t_params, t_d_ys, t_d_finals, lengths):
    return [t.new_empty(t.shape) for t in (*d_ys, *d_finals, *xs, *inits, *params)]


def _n_outputs(key):
    """the number of output sequences of a key's cell (plain lookups: torch.compile traces this)"""
    return len(registry.ir_of(registry.parse(key)[0]).outputs)


def _save(ctx, tensors, lengths):
    """save_for_backward, the lengths too (AOTAutograd sees a tensor the backward reads only through it)"""
    ctx.has_lengths = lengths is not None
    ctx.save_for_backward(*tensors, *([lengths] if lengths is not None else []))


def _saved(ctx, counts):
    """-> (the saved tensors in groups of `counts`, the lengths or None)"""
    saved = ctx.saved_tensors
    tensors, lengths = (saved[:-1], saved[-1]) if ctx.has_lengths else (saved, None)
    return [list(g) for g in _split(tensors, counts)], lengths


def _setup_scan(ctx, inputs, output):
    key, xs, inits, params, save, lengths = inputs
    n_out = _n_outputs(key)
    ctx.key, ctx.saved_residuals = key, save
    # a gradient nobody sends back stays None (_zeros makes the ones the backward reads): as autograd.py's Scan,
    # no zeros shaped like every residual in the backward (an eager call of the operator, or a graph that keeps them)
    ctx.set_materialize_grads(False)
    ctx.counts = (len(xs), len(inits), len(params), n_out, len(output) - n_out - len(inits))
    # the outputs are ys, finals, residuals: the finals are not needed
    _save(ctx, (*xs, *inits, *params, *output[:n_out], *output[n_out + len(inits):]), lengths)


def _scan_backward(ctx, grads):
    (xs, inits, params, ys, res), lengths = _saved(ctx, ctx.counts)
    if not ctx.saved_residuals:   # run without residuals (save=False), yet differentiated: recompute them
        res = scan(ctx.key, xs, inits, params, True, lengths)[len(ys) + len(inits):]
    n_out = len(ys)
    d_ys, d_fin = _zeros(grads[:n_out], ys), _zeros(grads[n_out:n_out + len(inits)], inits)
    wanted = [*ctx.needs_input_grad[1], *ctx.needs_input_grad[2], *ctx.needs_input_grad[3]]   # (a bool a tensor)
    d = scan_backward(ctx.key, d_ys, d_fin, xs, inits, params, ys, list(res), lengths,
                      None if all(wanted) else wanted)   # (None: the argument left at its default in the graph)
    d = _keep(d, wanted)
    n_in, n_st = len(xs), len(inits)
    return None, d[:n_in], d[n_in:n_in + n_st], d[n_in + n_st:], None, None


torch.library.register_autograd("symcell::scan", _scan_backward, setup_context=_setup_scan)


def _setup_scan_backward(ctx, inputs, output):
    key, d_ys, d_finals, xs, inits, params, ys, res, lengths, wanted = inputs
    # (the dispatcher drops an argument equal to its default before the autograd formula, which returns one
    # gradient for each argument it was given: `wanted` only where not None, though setup_context sees it always)
    ctx.wanted_given = wanted is not None
    ctx.key, ctx.counts = key, _counts(d_ys, d_finals, xs, inits, params, ys, res)
    ctx.set_materialize_grads(False)
    _save(ctx, (*d_ys, *d_finals, *xs, *inits, *params, *ys, *res), lengths)


def _d(ctx, t_p, t_d):
    (d_ys, d_fin, xs, inits, params, ys, res), lengths = _saved(ctx, ctx.counts)
    t_xs, t_inits, t_params = [list(g) for g in _split(t_p, (len(xs), len(inits), len(params)))]
    xs, inits, params, d_ys, d_fin = [list(g) for g in _split(_attached((*xs, *inits, *params, *d_ys, *d_fin)),
                                                              _counts(xs, inits, params, d_ys, d_fin))]
    return scan_double_backward(ctx.key, xs, inits, params, d_ys, d_fin, ys, res, t_xs, t_inits, t_params,
                                t_d[:len(d_ys)], t_d[len(d_ys):], lengths)


def _scan_double_backward(ctx, a):
    """with cotangents a of the gradients: d_ys, d_finals get J_F a, xs, inits and params get H a (autograd.py);
    ys and res are functions of those, already accounted for"""
    (d_ys, d_fin, xs, inits, params, ys, res), _ = _saved(ctx, ctx.counts)
    out = _d(ctx, _zeros(a, (*xs, *inits, *params)), [torch.zeros_like(t) for t in (*d_ys, *d_fin)])
    n_d, n_in, n_st = len(d_ys) + len(d_fin), len(xs), len(inits)
    g = out[n_d:]
    return (None, out[:len(d_ys)], out[len(d_ys):n_d], g[:n_in], g[n_in:n_in + n_st], g[n_in + n_st:],
            [None] * len(ys), [None] * len(res), None, *([None] if ctx.wanted_given else []))


torch.library.register_autograd("symcell::scan_backward", _scan_double_backward, setup_context=_setup_scan_backward)


def _setup_double_backward(ctx, inputs, output):
    key, xs, inits, params, d_ys, d_finals, ys, res, t_xs, t_inits, t_params, t_d_ys, t_d_finals, lengths = inputs
    ctx.key, ctx.counts = key, _counts(d_ys, d_finals, xs, inits, params, ys, res)
    ctx.set_materialize_grads(False)
    _save(ctx, (*d_ys, *d_finals, *xs, *inits, *params, *ys, *res), lengths)
    ctx.primal_edges = _edges([*xs, *inits, *params, *d_ys, *d_finals])


def _double_backward_backward(ctx, u):
    """D is linear in (p', d') and symmetric: its VJP is D at (the cotangent of its second part, of its first).
    Gradients for p or d would be third derivatives: refused when this backward would use them."""
    (d_ys, d_fin, xs, inits, params, ys, res), _ = _saved(ctx, ctx.counts)
    n_d = len(d_ys) + len(d_fin)
    refused = _refuse_if_used(ctx.primal_edges)
    again = _d(ctx, _zeros(u[n_d:], (*xs, *inits, *params)), _zeros(u[:n_d], (*d_ys, *d_fin)))
    g_p, g_d = again[n_d:], again[:n_d]
    n_in, n_st = len(xs), len(inits)
    groups = [list(g) for g in _split(refused, (len(xs), len(inits), len(params), len(d_ys), len(d_fin)))]
    return (None, *groups, [None] * len(ys), [None] * len(res), g_p[:n_in], g_p[n_in:n_in + n_st], g_p[n_in + n_st:],
            g_d[:len(d_ys)], g_d[len(d_ys):], None)


torch.library.register_autograd("symcell::scan_double_backward", _double_backward_backward,
                                setup_context=_setup_double_backward)


# FlopCounterMode (flops.py): the scans these operators run, whole but for the gradients scan_backward is told are
# unwanted (its kernels are told of no zero tangents). The double backward's two tangent scans are the backend's to
# build, so it is not counted.
@flops.register_flop_formula(torch.ops.symcell.scan)
def _scan_flops(key, xs, inits, params, save, lengths, out_shape=None, **kwargs):
    return flops.count(registry.program_for(key).forward, registry.parse(key)[1], *xs[0][:2])


@flops.register_flop_formula(torch.ops.symcell.scan_backward)
def _scan_backward_flops(key, d_ys, d_finals, xs, inits, params, ys, res, lengths, wanted=None, out_shape=None,
                        **kwargs):
    scan = registry.program_for(key).backward
    skip = skips.call_flags(scan, (d_ys, d_finals, xs, inits, params, ys, res), wanted)   # (shapes: lengths read)
    return flops.count(scan, registry.parse(key)[1], *xs[0][:2], skip)
