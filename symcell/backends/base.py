"""What every backend is, and what it hands back.

A backend turns scans of a kernel program (kernel.py, tangent.py: the scans as data) into source text, and the
source into entry points. It never asks for anything else: the pipeline gives it the program.

    class MyBackend(Backend):
        name, devices, priority = "mine", ("cpu",), 1      # backend="auto" picks by device, then priority
        symbolic = True                                    # renders sizes as run-time values (one build per cell)
        def usable(self, device): ...
        def render(self, program, scans): -> str           # printable: cell.source()
        def build(self, program, scans, source, dims): -> {scan name: entry point}

An entry point takes its scan's arguments (kernel.Scan.args: lists of tensors, in order), then `save` when the
scan has the flag, then `lengths` (None or an int64 tensor of B lengths), and returns a flat list of tensors in
the order of its scan's result groups. It never writes into its arguments (the operators declare no mutation).
An entry point with `fresh = True` returns only tensors it allocated, never an argument or a view of one, nor
one twice (of others, Kernel.run clones the results that share memory: `unaliased`). An entry point with
`skips = True` also takes `skip=`: one flag per argument tensor (it is all zeros), then one per result (not
wanted: its value is unspecified), so that it may leave out the work they make useless (the tangents of a second
derivative are often zero in some inputs, and some gradients are not asked for). Others are never given it;
they compute everything, which is the same answer.
"""
import contextlib
import contextvars
import copy

import torch

from .. import skips


class Backend:
    name = None
    devices = ()          # device types backend="auto" may pick this backend for
    priority = 0          # among usable backends for a device, "auto" takes the highest
    symbolic = False      # True: sizes are run-time arguments (the program keeps them symbolic)
    # sum a vector parameter's gradient once after the backward's loop where a sequence holds its terms, not
    # each step (kernel.params_summed_after_loop: for a GPU, where a step's sums are round trips)
    param_sums_after_loop = False
    # the forward and backward take a 16-bit module's weight matrices as they are, where they read them only as
    # matmuls' and transposed matmuls' weights (kernel.weights_only), in a call sequence._weights16 allows: the cpp
    # kernels multiply them as stored without a float32 copy (sc.h's weight). Elsewhere sequence.py hands every
    # backend float32 copies, and autograd.py every scan but the forward and a plain backward.
    weights16 = False

    def usable(self, device):
        raise NotImplementedError

    def refuses(self, device):
        """Why this backend cannot run tensors on `device` on this machine, or None. (A missing compiler is
        not a refusal: the build says so, with what to install.)"""
        if self.devices is not None and device.type not in self.devices:
            return f"it runs on {' or '.join(self.devices)} tensors"
        return None

    def render(self, program, scans):
        raise NotImplementedError

    def build(self, program, scans, source, dims):
        raise NotImplementedError

    def row_order(self, lengths, weight_bytes):
        """An order of the rows that suits this backend for a batch of mixed lengths (None: keep theirs);
        weight_bytes: the cell's weight matrices' size, as its kernels run them."""
        return None


def unaliased(outs, inputs):
    """Results may share memory neither with arguments nor with each other (at T = 0 a final state would be the
    initial one; autograd may accumulate into a gradient in place): clone those that do. An empty result is
    cloned whatever its storage (at T = 0 and B = 0 the initial state itself came back: no pointer tells)."""
    taken = {t.untyped_storage().data_ptr() for t in inputs if t.numel()}
    fresh = []
    for t in outs:
        if not t.numel():
            fresh.append(t.clone())
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr in taken:
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        taken.add(ptr)
        fresh.append(t)
    return fresh


# the 16-bit dtype the running entry point's float32 scan computes for (Kernel.for_dtype), else None
COMPUTING_FOR = contextvars.ContextVar("symcell_computing_for", default=None)


class Kernel:
    """A built cell: its program, the source of its first-order scans and their entry points; the second-order
    scans (tangent.py) are rendered and built the first time one is called (`second_order()` makes them).

        forward(xs, inits, params, save, lengths=None)                 -> (ys, finals, residuals)
        backward(d_ys, d_finals, xs, inits, params, ys, res, lengths=None) -> (d_xs, d_inits, d_params)
        tangent_forward(xs, inits, params, ys, res, t_xs, t_inits, t_params, save, lengths=None)
                                                                       -> (t_ys, t_finals, t_res)
        tangent_backward(d_ys, d_finals, xs, inits, params, ys, res, <the tangents of those seven>, lengths=None)
                                                                       -> (t_d_xs, t_d_inits, t_d_params)
    xs are (T, B, n) tensors, inits (B, n), ys the sequences of the output states; t_ the tangents. No result
    shares memory with an argument or another result.
    """

    computing_for = None   # see for_dtype
    weights16 = frozenset()   # the parameters forward and backward take in 16 bits as given (Backend.weights16)

    def __init__(self, program, source, entries, second_order=None, label="symcell"):
        self.program, self.source = program, source
        self._entries, self._second_order = dict(entries), second_order
        # the scans by name, the second-order ones once built (shared with for_dtype's views, as _entries)
        self._scans = {s.name: s for s in (program.forward, program.backward)}
        self._ready = set()   # the dtypes `ready` built for
        self.label = label   # names the cell in profiler rows: "symcell.LSTM[H=5,I=4].cpp.forward"

    def for_dtype(self, dtype):
        """This kernel computing for `dtype`: a 16-bit dtype whose scan runs in float32 (sequence.py), or None.
        Its entry points run with COMPUTING_FOR set to it, so a backend may multiply faster for it (the triton
        backend's tf32, LOW_PRECISION_DOT). The autograd nodes keep the kernel they were given, so the
        backward and the higher derivatives of a 16-bit scan compute for its dtype too."""
        if dtype is None:
            return self
        view = copy.copy(self)   # (the entry points and scans are shared: built once for both)
        view.computing_for = dtype
        return view

    def ready(self, dtype):
        """Build now what the first-order scans need to run `dtype` tensors, where the backend builds a library for
        each dtype when a call first needs it (cpp: their entry points' `ready`): a caller that must know whether
        the backend builds here asks before it calls (Binding.kernel_key, for backend='auto')."""
        if dtype in self._ready:   # (asked at every call: a step of a cell is tens of microseconds)
            return
        for name in ("forward", "backward"):
            ready = getattr(self._entries[name], "ready", None)
            if ready is not None:
                ready(dtype)
        self._ready.add(dtype)

    def _scan(self, name):
        if name not in self._entries:
            if self._second_order is None:
                raise NotImplementedError(f"symcell: this kernel has no {name} scan")
            scans, _, entries = self._second_order()   # (the source: SYMCELL_DEBUG=1 prints it)
            self._entries.update(entries)
            self._scans.update({s.name: s for s in scans})
        return self._entries[name]

    def scan(self, name):
        """The kernel.Scan an entry point runs."""
        if name not in self._scans:
            self._scan(name)
        return self._scans[name]

    def run(self, name, groups, save=None, lengths=None, wanted=None):
        """An entry point on lists of tensors -> its result groups (a group saved only when saving is empty).
        wanted: one bool per result tensor (None: all); an unwanted one may be returned with any value."""
        entry = self._scan(name)
        scan = self._scans[name]
        # entry points read row-major memory, as it holds the values: a tensor with its negative bit set (a lazy
        # torch._neg_view, as some backward formulas send) holds -values there, which a kernel would read raw
        # (the triton kernels did; torch resolves it before the cpp operators)
        if not getattr(entry, "any_layout", False):   # (an operator whose dispatch and kernel make them so: cpp's)
            groups = [[t.resolve_neg().contiguous() for t in g] for g in groups]
        kw = {"skip": skips.call_flags(scan, groups, wanted)} if getattr(entry, "skips", False) else {}
        args = (*groups, *([save] if scan.save else []), lengths)
        token = COMPUTING_FOR.set(self.computing_for)
        try:
            profiling = torch._C._autograd._profiler_enabled()
            if profiling or torch._C._len_torch_dispatch_stack():
                # (a profiler row only while a profiler records: record_function costs ~5 us a call, an LSTMCell
                # step's tenth, when none does)
                with (torch.profiler.record_function(f"{self.label}.{name}") if profiling
                      else contextlib.nullcontext()), _unseen_by_checkpoint():
                    flat = entry(*args, **kw)
            else:
                flat = entry(*args, **kw)
            if not getattr(entry, "fresh", False):   # (~4 us a call: an LSTMCell step's tenth)
                flat = unaliased(flat, [t for g in groups for t in g])
        finally:
            COMPUTING_FOR.reset(token)
        out, k = [], 0
        for r in scan.returns:
            if r.save and not save:
                out.append(())
                continue
            out.append(tuple(flat[k:k + len(r.buffers)]))
            k += len(r.buffers)
        return tuple(out)

    # The padding (rows past their length) is zeros wherever a derivative is computed: a kernel may compute the
    # ended rows' steps (their results unread) or multiply them by zeros in a GEMM after the loop, where a NaN or
    # inf there (log-features of zero-padded audio) made every gradient NaN. (A forward that saves nothing is left
    # as it is: its results never read the padding.) The padding's gradient is then zero, as packing's: its rows'
    # steps pass the carried gradient on and add none (kernel.PassEnded).
    def forward(self, xs, inits, params, save, lengths=None):
        return self.run("forward", (_unpadded(xs, lengths) if save else xs, inits, params), save, lengths)

    def backward(self, d_ys, d_finals, xs, inits, params, ys, residuals, lengths=None, wanted=None):
        return self.run("backward", (d_ys, d_finals, _unpadded(xs, lengths), inits, params, ys, residuals),
                        lengths=lengths, wanted=wanted)

    def tangent_forward(self, xs, inits, params, ys, res, t_xs, t_inits, t_params, save, lengths=None):
        return self.run("tangent_forward", (_unpadded(xs, lengths), inits, params, ys, res, _unpadded(t_xs, lengths),
                                            t_inits, t_params), save, lengths)

    def tangent_backward(self, primal, tangents, lengths=None, wanted=None):
        """primal: (d_ys, d_finals, xs, inits, params, ys, res); tangents: theirs, in that order"""
        (d_ys, d_fin, xs, *rest), (t_d_ys, t_d_fin, t_xs, *t_rest) = primal, tangents
        return self.run("tangent_backward", (d_ys, d_fin, _unpadded(xs, lengths), *rest, t_d_ys, t_d_fin,
                                             _unpadded(t_xs, lengths), *t_rest), lengths=lengths, wanted=wanted)


def _unpadded(seqs, lengths):
    """(T, B, n) sequences with zeros past each row's length; as they are without lengths, or where no row ends
    before T (on the CPU, where that is known without waiting for a device)"""
    if lengths is None or not seqs or not lengths.numel():
        return seqs
    T = seqs[0].shape[0]
    if lengths.device.type == "cpu" and int(lengths.min()) >= T:
        return seqs
    ended = padding(lengths, T)
    return type(seqs)(t.masked_fill(ended, 0) for t in seqs)


def padding(lengths, T):
    """(T, B, 1): True at the steps past each row's length"""
    return (torch.arange(T, device=lengths.device)[:, None] >= lengths[None, :])[:, :, None]


def _unseen_by_checkpoint():
    """Within: selective activation checkpointing does not see the ops a scan runs inside (the reference and triton
    backends' entry points are torch ops and kernel launches on buffers they allocate): it would cache a buffer
    the scan then fills ("cached ... has been mutated"), and, allowed to, hand the recomputation a cached tensor
    whose memory a triton kernel then read out of bounds (a segfault under the interpreter). The scan is one
    autograd node; its recomputation runs it whole. (Other dispatch modes are left as they are when no
    checkpointing is on.)"""
    modes = torch.utils._python_dispatch._get_current_dispatch_mode_stack()
    if not any(type(m).__name__ in ("_CachingTorchDispatchMode", "_CachedTorchDispatchMode") for m in modes):
        return contextlib.nullcontext()
    return torch.utils._python_dispatch._disable_current_modes()



class Renderer:
    """Statements are rendered by `render_<Statement>` methods, in the manner of sympy's `_print_<Node>`."""

    def render(self, st):
        method = getattr(self, f"render_{type(st).__name__}", None)
        if method is None:
            raise NotImplementedError(f"{type(self).__name__} cannot render {type(st).__name__}")
        return method(st)

    def render_all(self, stmts):
        for st in stmts:
            self.render(st)
