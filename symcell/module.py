"""symcell.define, the Cell module, and scan."""
import keyword
import math
import warnings

import torch
from torch import nn

from . import backends
from .autodiff import derive
from .cache import BuildError
from .frontend import trace
from .ir import CellIR
from .ops import kernel_for, kernel_key, register_cell, scan_op
from .schedule import bind_ir, lower

_RESERVED = ("torch",)
_fallback_warned = set()


class CellSpec:
    """What define() produced: the traced IR and the compiled artefacts, cached per dimension binding."""

    def __init__(self, ir: CellIR, doc=None):
        self.ir, self.doc = ir, doc
        register_cell(self)   # sets self.hash
        self._schedules, self._kernels = {}, {}

    def schedule(self, dims):
        key = tuple(sorted(dims.items()))
        if key not in self._schedules:
            sched = lower(bind_ir(self.ir, dims))
            self._schedules[key] = (sched, derive(sched))
        return self._schedules[key]

    def symbolic_schedule(self):
        """The schedule with dimensions left as symbols, for backends that take sizes at run time."""
        if None not in self._schedules:
            sched = lower(self.ir)
            self._schedules[None] = (sched, derive(sched))
        return self._schedules[None]

    def kernel(self, dims, backend):
        key = (tuple(sorted(dims.items())), backend)
        if key not in self._kernels:
            self._kernels[key] = backends.get(backend).build(self, dims)
        return self._kernels[key]


def _check_names(ir):
    for n in [n for n, _ in ir.inputs + ir.states + ir.params]:
        if n.startswith("_") or n.startswith("d_") or keyword.iskeyword(n) or n in _RESERVED:
            raise ValueError(f"{ir.name}: the name {n!r} is reserved for generated code (names may not start "
                             f"with '_' or 'd_', nor be {list(_RESERVED)} or a Python keyword)")


def define(inputs, state, params=None, outputs=None, name=None):
    """Define a recurrent cell from its step function.

        @symcell.define(inputs={"x": "I"}, state={"h": "H", "c": "H"},
                        params={"W": ("3*H", "H+I"), "b": ("3*H",)})
        def LLTM(x, h, c, W, b):
            ...
            return h, c

    Returns a subclass of `symcell.Cell`; instantiate it with the dimensions bound by keyword: LLTM(I=32, H=128).
    `outputs` names the states that form ys (default: the first); `name` overrides the function's name.
    """
    def deco(fn):
        ir = trace(fn, inputs, state, params, outputs, name)
        _check_names(ir)
        spec = CellSpec(ir, fn.__doc__)
        return type(ir.name, (Cell,), {"spec": spec, "__doc__": fn.__doc__ or f"symcell cell {ir.name}",
                                       "__module__": getattr(fn, "__module__", __name__)})
    return deco


class _class_or_instance:
    """A method that receives the instance when called on one, else the class."""

    def __init__(self, fn):
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj, cls):
        return self.fn.__get__(obj if obj is not None else cls)


class Binding:
    """A cell's equations with its dimensions bound: the sizes, the kernel keys and the checks of a call's
    arguments. A Cell holds one; a stacked symcell.RNN one per layer and direction (their parameters live on
    the module that holds them, and are passed in on each call)."""

    def __init__(self, spec, dims, backend="auto"):
        ir = spec.ir
        missing = [d for d in ir.dims if d not in dims]
        unknown = [d for d in dims if d not in ir.dims]
        if unknown:
            raise TypeError(f"{ir.name}() got unexpected argument(s) {unknown}; its dimensions are {list(ir.dims)}")
        if missing:
            raise TypeError(f"{ir.name}() is missing the dimension(s) {missing}; e.g. {ir.name}("
                            + ", ".join(f"{d}=..." for d in ir.dims) + ")")
        for d, v in dims.items():
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{ir.name}(): dimension {d} must be a positive int, got {v!r}")
        if backend != "auto":
            backends.resolve(backend, torch.device("cpu"))  # reject unknown names now, not at the first call
        self.spec, self.name, self.dims, self.backend = spec, ir.name, dict(dims), backend
        sched, _ = spec.schedule(self.dims)  # binds sizes: a bad binding fails here, before any data
        # the operators name their kernel by key (see ops.py)
        self.keys = {b: kernel_key(spec, self.dims, b) for b in backends.available()}
        bound = sched.ir
        self.input_sizes = {n: int(s) for n, s in bound.inputs}
        self.state_sizes = {n: int(s) for n, s in bound.states}
        self.param_shapes = {n: tuple(int(s) for s in shape) for n, shape in bound.params}

    def kernel_key(self, device):
        """The key of the kernel for tensors on `device`, building it now unless torch.compile is tracing."""
        name = backends.resolve(self.backend, device)
        if torch.compiler.is_compiling():
            return self.keys[name]
        try:
            kernel_for(self.keys[name])
        except BuildError as e:
            if self.backend != "auto" or name == "reference":
                raise
            if name not in _fallback_warned:
                _fallback_warned.add(name)
                warnings.warn(f"symcell: the {name} backend could not be built ({e}); backend='auto' uses the "
                              "reference backend instead", stacklevel=5)
            name = "reference"
        return self.keys[name]

    def check(self, xs, state, params, batch_first):
        """-> (input sequences as (T, B, n), initial states, a reference tensor for dtype and device)."""
        ir, name = self.spec.ir, self.name
        if isinstance(xs, torch.Tensor):
            xs = (xs,)
        xs = tuple(xs)
        if len(xs) != len(ir.inputs):
            raise ValueError(f"{name}: expected {len(ir.inputs)} input sequence(s) "
                             f"({', '.join(n for n, _ in ir.inputs)}), got {len(xs)}")
        ref = params[0] if params else xs[0]
        layout = "(B, T, features)" if batch_first else "(T, B, features)"
        for (n, _), x in zip(ir.inputs, xs):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name}: input {n!r} must be a tensor, got {type(x).__name__}")
            if x.dim() != 3:
                raise ValueError(f"{name}: input {n!r} must be 3-d {layout}, got shape {tuple(x.shape)}")
            if x.shape[-1] != self.input_sizes[n]:
                raise ValueError(f"{name}: input {n!r} has {x.shape[-1]} features (shape {tuple(x.shape)}) but the "
                                 f"cell expects {self.input_sizes[n]}")
        seq = [x.transpose(0, 1) if batch_first else x for x in xs]
        T, B = seq[0].shape[0], seq[0].shape[1]
        for (n, _), x in zip(ir.inputs, seq):
            if x.shape[0] != T or x.shape[1] != B:
                raise ValueError(f"{name}: input {n!r} has (T, B) = {tuple(x.shape[:2])} but input "
                                 f"{ir.inputs[0][0]!r} has {(T, B)}")
        for what, t in [(f"input {n!r}", x) for (n, _), x in zip(ir.inputs, xs)]:
            _same_kind(name, what, t, ref)
        names = [n for n, _ in ir.states]
        if state is None:
            state = tuple(ref.new_zeros(B, self.state_sizes[s]) for s in names)
        else:
            if isinstance(state, torch.Tensor):
                state = (state,)
            state = tuple(state)
            if len(state) != len(names):
                raise ValueError(f"{name}: state must be a tuple of {len(names)} tensor(s) ({', '.join(names)}), "
                                 f"got {len(state)}")
            for s, t in zip(names, state):
                if not isinstance(t, torch.Tensor):
                    raise TypeError(f"{name}: state {s!r} must be a tensor, got {type(t).__name__}")
                if tuple(t.shape) != (B, self.state_sizes[s]):
                    raise ValueError(f"{name}: state {s!r} has shape {tuple(t.shape)} but expected "
                                     f"(B, {self.state_sizes[s]}) = {(B, self.state_sizes[s])} for a batch of {B}")
                _same_kind(name, f"state {s!r}", t, ref)
        return seq, state, ref


class Cell(nn.Module):
    """A recurrent cell defined with symcell.define: a torch.nn.Module scanning the cell over a sequence.

        ys, state = cell(xs, state=None, lengths=None)   xs: (T, B, I), or (B, T, I) with batch_first
        state = cell.step(x, state)                      one step
    """

    spec: CellSpec = None

    def __init__(self, *, spec=None, batch_first=False, backend="auto", device=None, dtype=None, **dims):
        super().__init__()
        spec = spec or type(self).spec
        if spec is None:
            raise TypeError("symcell.Cell is a base class; make cells with symcell.define")
        self._spec = spec
        self._binding = Binding(spec, dims, backend)
        self.batch_first = batch_first
        for name, shape in self._binding.param_shapes.items():
            self.register_parameter(name, nn.Parameter(torch.empty(*shape, device=device, dtype=dtype)))
        self.reset_parameters()

    @property
    def dims(self):
        return self._binding.dims

    @property
    def backend(self):
        return self._binding.backend

    @property
    def input_sizes(self):
        return self._binding.input_sizes

    @property
    def state_sizes(self):
        return self._binding.state_sizes

    # --- parameters ------------------------------------------------------------------------------------
    def reset_parameters(self):
        """uniform(-k, k) with k = 1/sqrt(size of the first state), as nn.LSTM; override to change."""
        k = 1.0 / math.sqrt(next(iter(self.state_sizes.values())))
        with torch.no_grad():
            for p in self._param_list():
                p.uniform_(-k, k)

    def _param_list(self):
        return [getattr(self, n) for n, _ in self._spec.ir.params]

    # --- introspection ---------------------------------------------------------------------------------
    @_class_or_instance
    def gradients(self_or_cls):
        """The derived forward and backward equations of one step, as text (on the class or an instance)."""
        from .explain import explain
        spec = self_or_cls._spec if isinstance(self_or_cls, Cell) else self_or_cls.spec
        return explain(spec.ir)

    def source(self, device=None):
        """The generated code of the backend this cell uses for tensors on `device` (default: its parameters')."""
        device = torch.device(device) if device is not None else self._device()
        return self._kernel(device).source

    def _device(self):
        ps = self._param_list()
        return ps[0].device if ps else torch.device("cpu")

    def _kernel(self, device):
        return kernel_for(self._kernel_key(device))

    def _kernel_key(self, device):
        return self._binding.kernel_key(device)

    def extra_repr(self):
        dims = ", ".join(f"{k}={v}" for k, v in self.dims.items())
        return f"{dims}, batch_first={self.batch_first}, backend={self.backend!r}"

    # --- calling ---------------------------------------------------------------------------------------
    def forward(self, xs, state=None, lengths=None):
        return scan(self, xs, state, lengths=lengths)

    def step(self, x, state=None):
        """One step: x is (B, I) (a tuple for several inputs); returns the new state tuple."""
        xs = tuple(t.unsqueeze(0) for t in x) if isinstance(x, (tuple, list)) else x.unsqueeze(0)
        if self.batch_first:
            xs = tuple(t.transpose(0, 1) for t in xs) if isinstance(xs, tuple) else xs.transpose(0, 1)
        _, final = scan(self, xs, state)
        return final


def _same_kind(cell, what, t, ref):
    if not t.is_floating_point():
        raise TypeError(f"{cell}: {what} has dtype {t.dtype}; a floating dtype is needed")
    if t.dtype != ref.dtype:
        raise TypeError(f"{cell}: {what} has dtype {t.dtype} but the parameters have dtype {ref.dtype}")
    if t.device != ref.device:
        raise ValueError(f"{cell}: {what} is on {t.device} but the parameters are on {ref.device}")


def scan(cell, xs, state=None, reverse=False, lengths=None):
    """Run `cell` over the sequence xs. Semantics (for one input, batch_first=False):

        ys = []
        for t in (reversed(range(T)) if reverse else range(T)):
            state = cell.step(xs[t], state)
            ys.append(state[0])                 # the `outputs` states, first state by default
        ys = stack(ys in time order of xs)      # so ys[t] is the output at input xs[t], also when reverse
        return ys, state

    `lengths` (B ints, 0 <= lengths[b] <= T) makes row b a sequence of its own length: it runs steps
    0 .. lengths[b] - 1 (with reverse, lengths[b] - 1 down to 0), its final state is the state after its own last
    step and its outputs past its length are zero, as for a PackedSequence in nn.LSTM. The masking runs inside
    the fused loops: every row runs every step, and an ended row's step holds its state (so the values in the
    padding are never read into a result; keep them finite, as padding with zeros does, for finite gradients).

    The whole sequence is one autograd node; its backward is the derived backward scan.
    """
    return run(cell._binding, cell._param_list(), xs, state, reverse, lengths, cell.batch_first)


def check_lengths(name, lengths, T, B, device):
    """lengths (a sequence of ints or an integer tensor) -> an int64 tensor of B values in [0, T] on `device`."""
    if isinstance(lengths, torch.Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"{name}: lengths must hold integers, got dtype {lengths.dtype}")
        host = lengths.detach().to("cpu", torch.int64)
    else:
        try:
            host = torch.as_tensor([int(v) for v in lengths], dtype=torch.int64)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: lengths must be a sequence of ints or an integer tensor, got "
                            f"{type(lengths).__name__}") from None
    if host.dim() != 1 or host.shape[0] != B:
        raise ValueError(f"{name}: lengths must have one entry per batch row, shape ({B},), got {tuple(host.shape)}")
    if B and (host.min() < 0 or host.max() > T):
        raise ValueError(f"{name}: lengths must lie in [0, T] = [0, {T}], got min {int(host.min())} and max "
                         f"{int(host.max())}")
    return host.to(device)


def _row_order(lengths):
    """An order of the rows for a batch of mixed lengths (None: keep theirs): longest first, as packing sorts them,
    so that the cpp kernel's steps skip the rows that have ended (they are last); and dealt round-robin over the
    threads' contiguous slices of rows (each thread runs its slice's whole sequence), so that every slice holds
    long and short rows alike and no thread idles while another finishes the longest."""
    B, k = lengths.shape[0], max(1, torch.get_num_threads())
    ranked = torch.argsort(lengths, descending=True, stable=True)
    if B < 4 * k or k == 1:       # one slice (see sc::scan_rows): longest first is enough
        order = ranked
    else:                          # ranks 0, k, 2k, ... first, then 1, k + 1, ...: each block sorted, all alike
        r = torch.arange(B, device=lengths.device)
        order = ranked[torch.argsort((r % k) * B + r // k)]
    if torch.equal(lengths[order], lengths):   # already so (rows of equal length may come in any order)
        return None
    return order


def _reversal(lengths, T):
    """(T, B) time indices that reverse each row within its own length and leave its padding in place. The
    permutation is its own inverse, so it also puts the outputs back in input order."""
    t = torch.arange(T, device=lengths.device)[:, None]
    return torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def run(binding, params, xs, state, reverse, lengths, batch_first):
    """scan of a bound cell with the given parameters (see scan)."""
    seq, state, ref = binding.check(xs, state, params, batch_first)
    T, B = seq[0].shape[0], seq[0].shape[1]
    unsort = None
    if lengths is not None:
        lengths = check_lengths(binding.name, lengths, T, B, ref.device)
        order = _row_order(lengths)
        if order is not None:
            unsort = torch.argsort(order)
            seq = [x.index_select(1, order) for x in seq]
            state = tuple(s.index_select(0, order) for s in state)
            lengths = lengths[order]
    if reverse:
        if lengths is None:
            seq = [x.flip(0) for x in seq]
        else:
            rows = torch.arange(B, device=ref.device)[None, :]
            flip = _reversal(lengths, T)
            seq = [x[flip, rows] for x in seq]
    key = binding.kernel_key(ref.device)
    seq = tuple(x.contiguous() for x in seq)
    state = tuple(s.contiguous() for s in state)
    ys, final = scan_op(key, seq, state, tuple(p.contiguous() for p in params), lengths)
    if lengths is not None:   # outputs past each row's length are zero (the kernel holds the state there)
        ended = (torch.arange(T, device=ref.device)[:, None] >= lengths[None, :])[:, :, None]
        ys = tuple(y.masked_fill(ended, 0) for y in ys)
    if reverse:
        ys = tuple(y.flip(0) for y in ys) if lengths is None else tuple(y[flip, rows] for y in ys)
    if unsort is not None:
        ys = tuple(y.index_select(1, unsort) for y in ys)
        final = tuple(f.index_select(0, unsort) for f in final)
    if batch_first:
        ys = tuple(y.transpose(0, 1) for y in ys)
    return (ys[0] if len(ys) == 1 else ys), final
