"""Every derivative of a scan in eager mode: torch.autograd.Functions around a built kernel's entry points.

With p = (xs, inits, params), F(p) = (ys, finals) the scan, d = (d_ys, d_finals) a cotangent:

    Scan            F(p)                                    its residuals kept for the rest
    ScanBackward    G(p, d) = J_F(p)^T d                    the backward scan
    DoubleBackward  D(p, d; p', d') = (J_F p', G(p, d') + H p')      H = the Hessian of s = <d, F(p)>
    ScanTangent     J_F(p) p'                               the tangent of the forward (forward mode)

    derivative of            is
    Scan (reverse)           ScanBackward
    Scan (forward)           ScanTangent
    ScanBackward (reverse)   D with (p', d') = (a, 0): (J_F a, H a), the gradients of d and of p
    ScanBackward (forward)   D's second part: G(p, d') + H p'
    DoubleBackward, with respect to (p', d')   D itself, at (p', d') = (the cotangent of its second part, of
                             its first): it is linear in them and symmetric, as H is; so the double-backward
                             trick of torch.autograd.functional.hvp works
    ScanTangent (reverse)    G(p, c) for p', and D's second part at d = c, p' for p
    anything else            (a third derivative, forward mode over forward mode) raises, saying so

D is two scans (tangent.py): the tangent of the forward gives J_F p' and the tangents of the residuals, and the
tangent of the backward gives G(p, d') + H p', as H p' is the JVP of G in direction p' (H is symmetric). Each
Function has a `setup_context` and a `vmap` (one call per vmapped slice; a parameter gradient is per slice, so
slices cannot share one scan), so torch.func's grad, vjp, jvp, jacrev, jacfwd, hessian and vmap compose.
"""
import inspect

import torch
from torch.autograd import Function, forward_ad
from torch.autograd.graph import get_gradient_edge

THIRD = ("symcell: a third derivative of a scan is not supported (first and second derivatives are: double "
         "backward, forward mode, forward mode over reverse mode and reverse mode over forward mode)")


def _split(flat, counts):
    groups, k = [], 0
    for n in counts:
        groups.append(tuple(flat[k:k + n]))
        k += n
    return groups


def _zeros(grads, like):
    """grads with None (no gradient, no tangent) as zeros shaped like the tensors they stand for"""
    assert len(grads) == len(like), (len(grads), len(like))
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, like)]


def _per_slice(apply, info, in_dims, flat):
    """vmap by one call per slice: `apply` on each slice of the vmapped dimension, results stacked (a result not
    wanted, None, stays None)."""
    outs = [apply(*[t if d is None else t.select(d, i) for t, d in zip(flat, in_dims)]) for i in range(info.batch_size)]
    stacked = tuple(None if o[0] is None else torch.stack(o) for o in zip(*outs))
    return stacked, tuple(None if o is None else 0 for o in stacked)


_is_legacy_batched = getattr(torch._C._functorch, "is_legacy_batchedtensor", lambda t: False)


def _refuse_legacy_batching(flat):
    """autograd.grad(is_grads_batched=True) and autograd.functional's vectorize=True batch a backward or a jvp
    with autograd's legacy vmap, which calls a Function's forward with batched tensors past its `vmap` rule:
    the kernels would fail deep inside (an in-place op, an operator with no batching rule); say what instead"""
    if any(isinstance(t, torch.Tensor) and _is_legacy_batched(t) for t in flat):
        raise NotImplementedError(
            "symcell: torch.autograd.grad(is_grads_batched=True) and torch.autograd.functional.jacobian/hessian("
            "vectorize=True) are not supported through a scan (autograd's legacy batching bypasses the scan's "
            "vmap rule); use torch.func (vmap over vjp, jacrev, jacfwd, hessian) or vectorize=False")


def _unbatched_lengths(d):
    if d is not None:
        raise NotImplementedError("symcell: vmap over the lengths of a scan is not supported; vmap over the inputs, "
                                  "states or parameters")


def _edges(tensors):
    """where the gradient of each input goes (None: it needs none, or no graph is recorded: under no_grad a view
    of a leaf has no edge, and no backward will come)"""
    def edge(t):
        try:
            return get_gradient_edge(t) if t.requires_grad else None
        except AssertionError:
            return None
    return [edge(t) for t in tensors]


def _attached(tensors):
    """The tensors as inputs whose gradient edges lead through a node of their own (a view of a leaf): the engine
    can say whether it will run such a node in the current backward, not whether it will accumulate into a leaf."""
    if not torch.is_grad_enabled():
        return list(tensors)
    return [t.view_as(t) if t.requires_grad and t.grad_fn is None else t for t in tensors]


def _refuse_if_used(edges):
    """A gradient this Function cannot give (a third derivative) is refused only when this backward would use it:
    the double-backward trick of torch.autograd.functional.hvp runs a backward that needs only some of them."""
    if any(e is not None and torch._C._will_engine_execute_node(e.node) for e in edges):
        raise NotImplementedError(THIRD)
    return [None] * len(edges)


def _double_backward(kernel, lengths, p, d, ys, res, t_p, t_d, wanted=None):
    """D(p, d; p', d') = (J_F p' as (t_ys, t_finals), G(p, d') + H p' as gradients of (xs, inits, params)).
    wanted: a bool per gradient of (xs, inits, params), None for all; an unwanted one is None. (J_F p' is always
    computed: the second scan reads it.)"""
    xs, inits, params = p
    t_xs, t_inits, t_params = t_p
    t_ys, t_fin, t_res = kernel.tangent_forward(xs, inits, params, ys, res, t_xs, t_inits, t_params, True, lengths)
    g = kernel.tangent_backward((*d, xs, inits, params, ys, res), (*t_d, t_xs, t_inits, t_params, t_ys, t_res),
                                lengths, wanted)
    return (*t_ys, *t_fin, *_keep([t for grp in g for t in grp], wanted))


def _keep(tensors, wanted):
    """the tensors that are wanted (None: all), None in place of the others"""
    return tensors if wanted is None else [t if w else None for t, w in zip(tensors, wanted)]


try:
    from torch._functorch.utils import unwrap_dead_wrappers
except ImportError:   # (a torch without functorch's wrappers has none to unwrap)
    def unwrap_dead_wrappers(args):
        return args


def forward_mode_on():
    """whether a Function's jvp may be asked for in this call: a dual level (forward_ad) or a torch.func transform
    is on (sequence.py and replay.py ask it too)"""
    return forward_ad._current_level >= 0 or torch._C._are_functorch_transforms_active()


class _Function(Function):
    """torch's Function.apply binds its arguments to forward's signature on every call, to fill in the defaults that
    setup_context is then given (inspect's bind: ~13 us of an LSTMCell's recorded step); symcell's forwards take every
    argument by position and have no defaults, so outside torch.func's transforms their arguments go straight to
    autograd's own apply, as torch's go after the binding (dead functorch wrappers unwrapped as it does)."""

    @classmethod
    def apply(cls, *args):
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        return super(Function, cls).apply(*unwrap_dead_wrappers(args))


class Scan(_Function):
    """(kernel, lengths, (n_xs, n_inits, n_params), *xs, *inits, *params) -> (*ys, *finals, *residuals)"""

    @staticmethod
    def forward(kernel, lengths, counts, *flat):
        _refuse_legacy_batching(flat)
        xs, inits, params = _split(flat, counts)
        ys, finals, res = kernel.forward(xs, inits, params, True, lengths)
        return (*ys, *finals, *res)

    @staticmethod
    def setup_context(ctx, inputs, output):
        kernel, lengths, counts, *flat = inputs
        n_out = len(output) - counts[1] - len(kernel.program.forward.returns[2].buffers)
        ys, res = output[:n_out], output[n_out + counts[1]:]
        ctx.mark_non_differentiable(*res)
        # a gradient nobody sends back stays None: autograd would otherwise hand backward zeros shaped like every
        # residual, whose gradients it never reads (15.6 MB a call for an LSTM at B=32 T=100 H=256, written and
        # freed, the backward's peak memory)
        ctx.set_materialize_grads(False)
        ctx.kernel, ctx.lengths, ctx.counts, ctx.n_out = kernel, lengths, counts, n_out
        ctx.save_for_backward(*flat, *ys, *res)
        if forward_mode_on():   # (jvp runs during this call or never: without tangents ~2 us a step saved)
            ctx.save_for_forward(*flat, *ys, *res)

    @staticmethod
    def vmap(info, in_dims, kernel, lengths, counts, *flat):
        _unbatched_lengths(in_dims[1])
        return _per_slice(lambda *f: Scan.apply(kernel, lengths, counts, *f), info, in_dims[3:], flat)

    @staticmethod
    def _saved(ctx):
        # (ctx.saved_tensors once a backward or jvp: each read unpacks them again, which non-reentrant
        # torch.utils.checkpoint refuses, "Unpack is being triggered for a tensor that was already unpacked once")
        saved = ctx.saved_tensors
        return _split(saved, (*ctx.counts, ctx.n_out, len(saved)))

    @staticmethod
    def backward(ctx, *grads):
        xs, inits, params, ys, res = Scan._saved(ctx)
        d_ys = _zeros(grads[:ctx.n_out], ys)
        d_fin = _zeros(grads[ctx.n_out:ctx.n_out + len(inits)], inits)
        key = getattr(ctx.kernel, "key", None)
        plain = not torch.is_grad_enabled() and not forward_mode_on() and not torch.compiler.is_compiling()
        if not plain:   # (a 16-bit module's weights, as its forward took them: float32 copies for every other scan)
            params = tuple(p.float() if p.dtype in (torch.bfloat16, torch.float16) else p for p in params)
        if key is not None and torch.compiler.is_compiling():
            # compiled autograd traces this backward: the registered operator (ops.py), which it records as one
            # node (the kernel's Python broke its graph, and fullgraph=True failed)
            wanted = ctx.needs_input_grad[3:]
            d = torch.ops.symcell.scan_backward(key, d_ys, d_fin, xs, inits, params, ys, res, ctx.lengths,
                                                None if all(wanted) else list(wanted))
            return (None, None, None, *_keep(d, wanted))
        args = (ctx.kernel, ctx.lengths, _counts(d_ys, d_fin, xs, inits, params, ys, res), ctx.needs_input_grad[3:],
                *d_ys, *d_fin, *xs, *inits, *params, *ys, *res)
        if plain:
            # a backward that records no graph (no create_graph) and no transform can differentiate: the kernel
            # itself, not through a Function whose derivatives nobody will ask for (and the cpp backward reads a
            # 16-bit module's weights as its forward did: Kernel.weights16)
            return (None, None, None, *ScanBackward.forward(*args))
        return (None, None, None, *ScanBackward.apply(*args))

    @staticmethod
    def jvp(ctx, *tangents):
        xs, inits, params, ys, res = Scan._saved(ctx)
        t_p = _zeros(tangents[3:], (*xs, *inits, *params))
        t = ScanTangent.apply(ctx.kernel, ctx.lengths, _counts(xs, inits, params, ys, res), *xs, *inits, *params, *ys,
                              *res, *t_p)
        return (*t, *(None for _ in res))


def _counts(*groups):
    return tuple(len(g) for g in groups)


class ScanBackward(_Function):
    """(kernel, lengths, counts, wanted, *d_ys, *d_finals, *xs, *inits, *params, *ys, *res)
    -> (*d_xs, *d_inits, *d_params), those not `wanted` (a bool each) None"""

    @staticmethod
    def forward(kernel, lengths, counts, wanted, *flat):
        _refuse_legacy_batching(flat)
        d_xs, d_inits, d_params = kernel.backward(*_split(flat, counts), lengths, wanted)
        return tuple(_keep([*d_xs, *d_inits, *d_params], wanted))

    @staticmethod
    def setup_context(ctx, inputs, output):
        kernel, lengths, counts, wanted, *flat = inputs
        ctx.kernel, ctx.lengths, ctx.counts, ctx.wanted = kernel, lengths, counts, wanted
        ctx.save_for_backward(*flat)
        ctx.save_for_forward(*flat)
        ctx.set_materialize_grads(False)   # a gradient nobody sends back (None) is a zero tangent, left out

    @staticmethod
    def vmap(info, in_dims, kernel, lengths, counts, wanted, *flat):
        _unbatched_lengths(in_dims[1])
        return _per_slice(lambda *f: ScanBackward.apply(kernel, lengths, counts, wanted, *f), info, in_dims[4:], flat)

    @staticmethod
    def _d(ctx, saved, t_p, t_d, wanted):
        d_ys, d_fin, xs, inits, params, ys, res = saved
        counts = _counts(xs, inits, params, d_ys, d_fin, ys, res, xs, inits, params, d_ys, d_fin)
        return DoubleBackward.apply(ctx.kernel, ctx.lengths, counts, wanted,
                                    *_attached((*xs, *inits, *params, *d_ys, *d_fin)), *ys, *res, *t_p, *t_d)

    @staticmethod
    def backward(ctx, *a):
        saved = _split(ctx.saved_tensors, ctx.counts)
        d_ys, d_fin, xs, inits, params, ys, res = saved
        a = _zeros(a, (*xs, *inits, *params))
        n_d = len(d_ys) + len(d_fin)
        wanted = ctx.needs_input_grad[4 + n_d:4 + n_d + len(a)]   # H a only where xs, inits, params need it
        out = ScanBackward._d(ctx, saved, a, [torch.zeros_like(t) for t in (*d_ys, *d_fin)], wanted)
        # d_ys, d_finals get J_F a; xs, inits, params get H a; ys and the residuals are functions of p, which
        # both already account for
        return (None, None, None, None, *out, *(None for _ in (*ys, *res)))

    @staticmethod
    def jvp(ctx, *tangents):
        saved = _split(ctx.saved_tensors, ctx.counts)
        d_ys, d_fin, xs, inits, params, ys, res = saved
        n_d = len(d_ys) + len(d_fin)
        t = _zeros(tangents[4:4 + n_d + len(xs) + len(inits) + len(params)], (*d_ys, *d_fin, *xs, *inits, *params))
        return ScanBackward._d(ctx, saved, t[n_d:], t[:n_d], ctx.wanted)[n_d:]


class DoubleBackward(_Function):
    """(kernel, lengths, counts, wanted, *xs, *inits, *params, *d_ys, *d_finals, *ys, *res, *t_xs, *t_inits,
    *t_params, *t_d_ys, *t_d_finals) -> (*t_ys, *t_finals, *g_xs, *g_inits, *g_params): D of the module
    docstring, the g_ not `wanted` (a bool each, or None: all) None"""

    @staticmethod
    def forward(kernel, lengths, counts, wanted, *flat):
        _refuse_legacy_batching(flat)
        xs, inits, params, d_ys, d_fin, ys, res, t_xs, t_inits, t_params, t_d_ys, t_d_fin = _split(flat, counts)
        return _double_backward(kernel, lengths, (xs, inits, params), (d_ys, d_fin), ys, res,
                                (t_xs, t_inits, t_params), (t_d_ys, t_d_fin), wanted)

    @staticmethod
    def setup_context(ctx, inputs, output):
        kernel, lengths, counts, wanted, *flat = inputs
        ctx.kernel, ctx.lengths, ctx.counts, ctx.wanted = kernel, lengths, counts, wanted
        n_primal = sum(counts[:7])
        ctx.save_for_backward(*flat[:n_primal])
        ctx.save_for_forward(*flat[:n_primal])
        ctx.primal_edges = _edges(flat[:sum(counts[:5])])   # p and d: their gradients would be third derivatives
        ctx.set_materialize_grads(False)   # jvp tells no tangent (None) from a tangent (torch.func: zeros)

    @staticmethod
    def vmap(info, in_dims, kernel, lengths, counts, wanted, *flat):
        _unbatched_lengths(in_dims[1])
        return _per_slice(lambda *f: DoubleBackward.apply(kernel, lengths, counts, wanted, *f), info, in_dims[4:],
                          flat)

    @staticmethod
    def _again(ctx, saved, t_p, t_d, wanted):
        n = sum(ctx.counts[:5])
        return DoubleBackward.apply(ctx.kernel, ctx.lengths, ctx.counts, wanted, *_attached(saved[:n]), *saved[n:],
                                    *t_p, *t_d)

    @staticmethod
    def backward(ctx, *u):
        saved = ctx.saved_tensors
        xs, inits, params, d_ys, d_fin, ys, res = _split(saved, ctx.counts[:7])
        n_y, n_p = len(d_ys) + len(d_fin), len(xs) + len(inits) + len(params)
        u_d = _zeros(u[:n_y], (*d_ys, *d_fin))                      # the cotangent of J_F p'
        u_p = _zeros(u[n_y:], (*xs, *inits, *params))               # the cotangent of G(p, d') + H p'
        refused = _refuse_if_used(ctx.primal_edges)
        # D is linear in (p', d'), with the symmetric matrix [[H, J^T], [J, 0]]: its VJP is D at (u_p, u_d)
        start = 4 + sum(ctx.counts[:7])   # where the inputs p' begin
        again = DoubleBackward._again(ctx, saved, u_p, u_d, ctx.needs_input_grad[start:start + n_p])
        grads_p, grads_d = again[n_y:], again[:n_y]
        return (None, None, None, None, *refused, *(None for _ in (*ys, *res)), *grads_p, *grads_d)

    @staticmethod
    def jvp(ctx, *tangents):
        n_primal = sum(ctx.counts[:7])
        if any(t is not None for t in tangents[4:4 + sum(ctx.counts[:5])]):
            raise NotImplementedError(THIRD)
        saved = ctx.saved_tensors
        xs, inits, params, d_ys, d_fin, _, _ = _split(saved, ctx.counts[:7])
        t_p = _zeros(tangents[4 + n_primal:4 + n_primal + len(xs) + len(inits) + len(params)], (*xs, *inits, *params))
        t_d = _zeros(tangents[4 + n_primal + len(t_p):], (*d_ys, *d_fin))
        return DoubleBackward._again(ctx, saved, t_p, t_d, ctx.wanted)


class ScanTangent(_Function):
    """(kernel, lengths, counts, *xs, *inits, *params, *ys, *res, *t_xs, *t_inits, *t_params) -> (*t_ys, *t_finals)"""

    @staticmethod
    def forward(kernel, lengths, counts, *flat):
        _refuse_legacy_batching(flat)
        xs, inits, params, ys, res = _split(flat, counts)
        t_xs, t_inits, t_params = _split(flat[sum(counts):], counts[:3])
        t_ys, t_fin, _ = kernel.tangent_forward(xs, inits, params, ys, res, t_xs, t_inits, t_params, False, lengths)
        return (*t_ys, *t_fin)

    @staticmethod
    def setup_context(ctx, inputs, output):
        kernel, lengths, counts, *flat = inputs
        ctx.kernel, ctx.lengths, ctx.counts = kernel, lengths, counts
        ctx.save_for_backward(*flat)
        ctx.save_for_forward(*flat)
        ctx.set_materialize_grads(False)   # jvp tells no tangent (None) from a tangent (torch.func: zeros)

    @staticmethod
    def vmap(info, in_dims, kernel, lengths, counts, *flat):
        _unbatched_lengths(in_dims[1])
        return _per_slice(lambda *f: ScanTangent.apply(kernel, lengths, counts, *f), info, in_dims[3:], flat)

    @staticmethod
    def backward(ctx, *c):
        """with cotangent c: J_F^T c = G(p, c) for p'; for p, the second derivative H_{<c, F>} p' (D at d = c)"""
        saved = ctx.saved_tensors
        xs, inits, params, ys, res = _split(saved, ctx.counts)
        t_p = saved[sum(ctx.counts):]
        c = _zeros(c, (*ys, *inits))
        c_ys, c_fin = c[:len(ys)], c[len(ys):]
        n_p = len(t_p)
        for_t = ScanBackward.apply(ctx.kernel, ctx.lengths, _counts(c_ys, c_fin, xs, inits, params, ys, res),
                                   ctx.needs_input_grad[3 + len(saved) - n_p:],
                                   *c_ys, *c_fin, *xs, *inits, *params, *ys, *res)
        counts = _counts(xs, inits, params, c_ys, c_fin, ys, res, xs, inits, params, c_ys, c_fin)
        d = DoubleBackward.apply(ctx.kernel, ctx.lengths, counts, ctx.needs_input_grad[3:3 + n_p],
                                 *_attached((*xs, *inits, *params, *c_ys, *c_fin)), *ys, *res, *t_p,
                                 *(torch.zeros_like(t) for t in c))
        for_p = d[len(c):]
        return (None, None, None, *for_p, *(None for _ in (*ys, *res)), *for_t)

    @staticmethod
    def jvp(ctx, *tangents):
        if any(t is not None for t in tangents[3:3 + sum(ctx.counts[:3])]):
            raise NotImplementedError("symcell: forward mode over forward mode (a second tangent) of a scan is not "
                                      "supported; forward mode over reverse mode is, as torch.func.hessian uses")
        n = sum(ctx.counts)
        saved = ctx.saved_tensors
        xs, inits, params, ys, res = _split(saved, ctx.counts)
        t_p = _zeros(tangents[3 + n:], (*xs, *inits, *params))
        return ScanTangent.apply(ctx.kernel, ctx.lengths, ctx.counts, *saved[:n], *t_p)


# Function.apply (under torch.func's transforms, _Function) binds its arguments to `forward`'s signature on every
# call where `setup_context` is defined, and inspect.signature reads a function's __signature__ before building
# one (~10 us a call: an LSTMCell step's tenth); the signatures never change
for _f in (Scan, ScanBackward, DoubleBackward, ScanTangent):
    _f.forward.__signature__ = inspect.signature(_f.forward)
