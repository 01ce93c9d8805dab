"""Running a bound cell over a batch of sequences: scan's semantics, lengths, reversal, batch_first.

The kernels scan forward in time over (T, B, n) sequences in which every row takes every step (a cpp kernel skips
an ended row's), and hold the state of a row past its length. This module turns every other way of calling a cell
into that: a reversed scan flips time (within each row's own length), batch_first transposes, outputs past a
row's length are zeroed, and the rows are put in the order the backend prefers (cpp: longest first), then back.
And it sets the precision: 16-bit floats compute in float32, and torch.autocast picks the dtype as it does for
nn.LSTM.
"""
import contextlib
import functools
import importlib
import inspect
import operator
import sys
import warnings

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.autograd import forward_ad
from torch.nn.utils import prune

from . import autograd, backends, deploy, ops, registry, replay
from .cache import BuildError
from .errors import DtypeError


def scan(cell, xs, state=None, reverse=False, lengths=None):
    """Run `cell` over the sequence xs. Semantics (for one input, batch_first=False):

        ys = []
        for t in (reversed(range(T)) if reverse else range(T)):
            state = cell.step(xs[t], state)
            ys.append(state[0])                 # the `outputs`: the first state by default
        ys = stack(ys in time order of xs)      # so ys[t] is the output at input xs[t], also when reverse
        return ys, state

    `lengths` (B ints, 0 <= lengths[b] <= T) makes row b a sequence of its own length: it runs steps
    0 .. lengths[b] - 1 (with reverse, lengths[b] - 1 down to 0), its final state is the state after its own last
    step and its outputs past its length are zero, as for a PackedSequence in nn.LSTM. The masking runs inside
    the fused loops: an ended row's step holds its state (the cpp kernels skip it) and its fused regions write
    zeros there, so the values in the padding are never read into a result (NaN, inf, or zeros that a cell's
    log(x) would take to -inf, alike: kernel.py).

    The whole sequence is one autograd node; its backward is the derived backward scan.
    """
    if isinstance(cell, type) or not hasattr(cell, "_binding"):   # (a Cell: module.py, above this module)
        raise TypeError(f"symcell.scan: cell must be an instance of a cell made with symcell.define (e.g. "
                        f"LLTM(I=..., H=...)), got {cell!r}" + (" (a class)" if isinstance(cell, type) else ""))
    if not isinstance(reverse, bool):
        raise TypeError(f"symcell.scan: reverse must be a bool, got {type(reverse).__name__} {reverse!r}")
    refresh_weights(cell)
    return scan_module(cell, xs, state, reverse, lengths)


def scan_module(cell, xs, state=None, reverse=False, lengths=None):
    """scan, where the module's weights are as its call computes them (its own call: the hooks have run)"""
    return run(cell._binding, cell._param_list(), xs, state, reverse, lengths, cell.batch_first,
               cell.autocast_devices)


# the forward pre-hooks by which pruning and the old weight_norm and spectral_norm compute a weight from what they
# store (weight_orig and its mask; weight_g and weight_v), as a call runs them
_WEIGHT_HOOKS = (prune.BasePruningMethod, importlib.import_module("torch.nn.utils.weight_norm").WeightNorm,
                 importlib.import_module("torch.nn.utils.spectral_norm").SpectralNorm)


def refresh_weights(module):
    """Compute the weights a call would (scan and a cell's step call no module: without this they read the weight
    of the module's last call, which an optimizer step since has made stale). The call's other hooks (observers,
    argument rewriters, torch's module tracker, which pairs each pre-hook with its forward hook) are a call's."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, _WEIGHT_HOOKS):
            hook(module, ())


def _recorded(tensors):
    """Whether autograd records a graph through these tensors' scan."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _differentiated(tensors):
    """Whether autograd or a torch.func transform will ask for a derivative of these tensors' scan."""
    if _recorded(tensors):
        return True
    # (each tensor's wrappers and tangents asked only where a torch.func transform or a dual level is on: ~1.5 us
    # a tensor, every step of a cell called step by step)
    if not autograd.forward_mode_on():
        return False
    return any(_functorch("is_functorch_wrapped_tensor", t) or _has_tangent(t) for t in tensors)


def _functorch(test, t):
    """torch._C._functorch's `test` of t (False where this torch has no such test)"""
    return getattr(torch._C._functorch, test, lambda t: False)(t)


def _has_tangent(t):
    return forward_ad.unpack_dual(t).tangent is not None


def _transformed(tensors):
    """Whether forward mode or vmap carries these tensors while torch.compile traces: the registered operator has
    no forward-mode rule, and torch took its tangents as zeros (jvp and jacfwd of a compiled model were 0), nor a
    batching rule (torch raised from its internals); the eager path has both. (torch.func's reverse transforms
    cannot leave a trace so: after a graph break inside them torch asserts on their tensors; README.)"""
    return any(_functorch("is_batchedtensor", t) or _has_tangent(t) for t in tensors)


def _eager_path(key, xs, inits, params, lengths, computing_for):
    """the eager path: the backend's kernel, through autograd.py's Functions where a derivative may be asked"""
    kernel = registry.kernel_for(key).for_dtype(computing_for)
    if _differentiated((*xs, *inits, *params)):   # one autograd node per sequence (autograd.py)
        n_out = len(kernel.program.forward.returns[0].buffers)   # (the output sequences: ops._n_outputs)
        outs = autograd.Scan.apply(kernel, lengths, (len(xs), len(inits), len(params)), *xs, *inits, *params)
        return tuple(outs[:n_out]), tuple(outs[n_out:n_out + len(inits)])
    # inference: the kernel directly, no residuals, no graph
    ys, finals, _ = kernel.forward(xs, inits, params, False, lengths)
    return tuple(ys), tuple(finals)


def _never_traced(fn, reason):
    """torch.compiler.disable, with the reason torch shows where it can (a keyword of torch 2.8 and later)"""
    if "reason" in inspect.signature(torch.compiler.disable).parameters:
        return torch.compiler.disable(fn, reason=reason)
    return torch.compiler.disable(fn)


# The eager path, never traced: from a frame torch.compile runs eagerly after a graph break it could not resume
# from, the frames below would each be compiled (building kernels inside a trace); and from a trace, for forward
# mode and vmap: a graph break. Each made at its first use: torch.compiler.disable imports torch._dynamo (and with
# it Triton, where installed), which made at import was 0.7 s of every `import symcell`. Where torch._dynamo was
# never imported, no frame was compiled and none can be: scan_op calls the path as it is.
_EAGER = "symcell's eager path: kernels built and run in Python"
_TRANSFORMED = ("symcell: forward mode (torch.func.jvp, jacfwd) and vmap of a scan run outside the compiled graph, "
                "which has no rule for them (a graph break: not under fullgraph=True)")


@functools.cache
def _disabled(reason):
    return _never_traced(_eager_path, reason)


def is_fake(*tensors):
    """Whether these are fake tensors (FakeTensorMode: shape and memory estimators, meta-device helpers), which
    have no values to read: they take the registered operators' fake implementations, as torch.compile does."""
    # (torch's detect_fake_mode, ~15 us a call, asked only where a fake mode is on or a tensor is one: an
    # LSTMCell's step paid it every step)
    mode_on = torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FAKE) is not None
    if not mode_on and not any(isinstance(t, FakeTensor) for t in tensors):
        return False
    return torch._guards.detect_fake_mode(tensors) is not None


def _proxy_traced():
    """Whether make_fx records the ops (its proxy mode is on, in real mode too): it records the registered operator,
    one node at any length, where the reference backend's per-step ops made a graph of one length"""
    return torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.PROXY) is not None


def _eager(tensors):
    """Whether scan_op runs a scan of these tensors on the eager path (the backend's kernel, from Python)."""
    return not torch.compiler.is_compiling() and not torch.jit.is_tracing() and not is_fake(*tensors) \
        and not _proxy_traced()


def _weights16(computing_for, tensors):
    """Whether a 16-bit scan of these tensors may hand its kernel the weight matrices in their dtype
    (Kernel.weights16): a bfloat16 or float16 module's call on the eager path where no forward mode or torch.func
    transform is on. Its forward and a plain backward read them so (a short call multiplies them as stored, a longer
    one makes its panels from them; sc.h's weight), and a backward writes their gradients in their dtype; every
    other derivative's scans take float32 copies (autograd.Scan.backward). (A recorded call of more than 128 rows took float32 copies made here, which
    autograd cast back for the gradients: 3.8 ms of a bfloat16 GRU's 40 ms training step at H=1024 B=64 T=4 were
    copies, torch.profiler.)"""
    return computing_for in LOW_PRECISION and _eager(tensors) and not autograd.forward_mode_on()


def _kernel_params(binding, key, params, low, weights16):
    """The kernel's parameters (run's and run_plan's), row-major. A 16-bit scan's in float32, copied before their
    blocks (a block's gradient is added in float32); but where `weights16` (a call _weights16 allows) the weight
    matrices its kernel takes as given (Kernel.weights16) stay 16-bit: the float32 copies of a decoder's weights
    made at every step took more time than its kernel (a bfloat16 LSTMCell's step at B=4 I=256 H=512: 0.37 of
    0.55 ms, profiled)."""
    if low is not None and not weights16:
        params = [p.float() for p in params]
    params = binding.kernel_params(params)
    if weights16:
        kept = registry.kernel_for(key).weights16
        params = [p if k in kept else p.float() for k, p in enumerate(params)]
    return tuple(p.contiguous() for p in params)


def scan_op(key, xs, inits, params, lengths=None, computing_for=None):
    """-> (ys: tuple of (T, B, n) for the output states, finals: tuple of (B, n) for every state).
    `lengths`: None, or an int64 tensor of B lengths on the tensors' device (see symcell.scan). computing_for:
    the 16-bit dtype of float32 tensors that stand for a 16-bit scan (Kernel.for_dtype), else None."""
    # (fake tensors, as shape and memory estimators and meta-device helpers run a model on, need the registered
    # operators' fake implementations: a backend's kernel would read their memory)
    # (_eager's condition, written out: called as a function here, torch.compile's resumption after the graph break
    # of forward mode below lost the tangents, test_forward_mode_and_vmap_inside_torch_compile)
    if not torch.compiler.is_compiling() and not torch.jit.is_tracing() and not is_fake(*xs, *inits, *params) \
            and not _proxy_traced():
        if "torch._dynamo" not in sys.modules:
            return _eager_path(key, xs, inits, params, lengths, computing_for)
        return _disabled(_EAGER)(key, xs, inits, params, lengths, computing_for)
    if torch.compiler.is_compiling() and _transformed((*xs, *inits, *params)):
        return _disabled(_TRANSFORMED)(key, xs, inits, params, lengths, computing_for)   # (a graph break)
    n_out = ops._n_outputs(key)
    # torch.compile, tracing and export see the registered operators (ops.py). A traced graph must not depend on
    # grad mode: it records save=False, and a backward through it recomputes the residuals
    if deploy.recording():   # symcell.deploy: the cell's own C++ operator, which runs without Python
        outs = deploy.forward(key, xs, inits, params, lengths)
        return tuple(outs[:n_out]), tuple(outs[n_out:n_out + len(inits)])
    save = not torch.jit.is_tracing() and _recorded((*xs, *inits, *params))
    outs = ops.scan(key, list(xs), list(inits), list(params), save, lengths)
    return tuple(outs[:n_out]), tuple(outs[n_out:n_out + len(inits)])


def check_lengths(name, lengths, T, B, device):
    """lengths (a sequence of ints or an integer tensor) -> an int64 tensor of B values in [0, T] on `device`."""
    def within():   # (T's value in a message a compiled graph holds made torch.compile specialise on T)
        return f"{name}: lengths must lie in [0, T]" + ("" if torch.compiler.is_compiling() else f" = [0, {T}]")
    if isinstance(lengths, torch.Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"{name}: lengths must hold integers, got dtype {lengths.dtype}")
        if _functorch("is_batchedtensor", lengths):   # (before reading values)
            raise NotImplementedError(f"{name}: vmap over the lengths of a scan is not supported; vmap over the "
                                      "inputs, states or parameters")
        if lengths.is_meta and torch.device(device).type != "meta":
            raise ValueError(f"{name}: lengths are on the meta device, which holds no values; give them as a list or "
                             f"a tensor on the CPU" + ("" if torch.device(device).type == "cpu" else f" or {device}"))
        # (int64 on the CPU; the values checked once here, where a traced program's operator checks them itself)
        home = "meta" if lengths.is_meta else "cpu"   # (meta: a module on the meta device, no values to move)
        # (a copy: the caller's tensor changed in place before the backward, a buffer reused for the next batch,
        # changed the gradients, or sent the kernels past the sequence; nn's pack copies them too.) A trace records
        # one copy in the caller's dtype, whatever it runs on later, which the operator converts from any integer
        # dtype or refuses: a conversion recorded made a trace take 2.5 as 2, and one made with int64 lengths
        # refuse int32 ones
        if torch.jit.is_tracing() and lengths.device.type == home:
            host = lengths.detach().clone()   # (a .to() records its dtype)
        else:
            int64 = lengths.dtype == torch.int64 and lengths.device.type == home
            host = lengths.detach().clone() if int64 else lengths.detach().to(home, torch.int64)
    else:
        if not isinstance(lengths, (list, tuple, range)) and not hasattr(lengths, "__array__"):
            raise TypeError(f"{name}: lengths must be a sequence of ints or an integer tensor, got "
                            f"{type(lengths).__name__}")
        values = []
        for v in lengths:   # (integers only: int(2.5) would run 2 steps, int(True) 1)
            if isinstance(v, (int, torch.SymInt)) and not isinstance(v, bool):   # (SymInt: torch.compile's ints)
                values.append(v)
            elif isinstance(v, bool) or not hasattr(v, "__index__"):
                raise TypeError(f"{name}: lengths must be integers, got {type(v).__name__} {v!r}")
            else:
                values.append(operator.index(v))
        if any(v < 0 or v > T for v in values):
            raise ValueError(f"{within()}, got min {min(values)} and max {max(values)}")
        host = torch.as_tensor(values, dtype=torch.int64, device="cpu")   # (not the default device: meta holds no values)
    if host.dim() != 1 or host.shape[0] != B:
        raise ValueError(f"{name}: lengths must have one entry per batch row, shape ({B},), got {tuple(host.shape)}")
    if torch.compiler.is_compiling() or is_fake(host):   # (a traced graph checks its lengths when it runs, without
        torch._assert_async(((host >= 0) & (host <= T)).all(), within())   # branching on them; fakes have none)
    elif host.is_meta:   # (a module on the meta device: no values to check)
        pass
    elif B:   # (a trace's in the caller's integer dtype: compared as int64, a copy, as a trace records a .to()
        # that returns its tensor as the tensor it returns)
        values = host.to(torch.int64, copy=True) if host.dtype != torch.int64 else host
        if values.min() < 0 or values.max() > T:
            raise ValueError(f"{within()}, got min {int(values.min())} and max {int(values.max())}")
    return host if host.device == torch.device(device) else host.to(device)


def row_order(binding, lengths, dtype):
    """The row order the backend that will run this binding prefers for these lengths (None: keep theirs); dtype:
    the inputs' (the kernels run in float64 or float32: a 16-bit dtype runs in float32). binding: or a list of them
    (symcell.RNN's layers, one order for all): the widest layer's, the costliest where they would differ."""
    # A traced graph (torch.compile, jit.trace, symcell.deploy) keeps the caller's order, which every kernel takes:
    # the order is speed on a CPU, and choosing it reads the lengths' values. (jit.trace recorded the example's
    # choice, and the reordering then fitted the input to the lengths: 3 rows and 2 lengths ran 2 rows, no error.)
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or is_fake(lengths) or lengths.is_meta:
        return None
    if isinstance(binding, (list, tuple)):   # (after the check above: dynamo cannot trace max's key)
        binding = max(binding, key=lambda b: b.weight_elements)
    weight_bytes = binding.weight_elements * (8 if dtype == torch.float64 else 4)
    order = backends.get(backends.resolve(binding.backend, lengths.device)).row_order(lengths, weight_bytes)
    if order is not None and torch.equal(lengths[order], lengths):   # already so
        return None
    return order


def _reversal(lengths, T):
    """(T, B) time indices that reverse each row within its own length and leave its padding in place. The
    permutation is its own inverse, so it also puts the outputs back in input order."""
    t = torch.arange(T, device=lengths.device)[:, None]
    return torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


# bfloat16 and float16 parameters and inputs: the scan runs in float32 (its state between steps and every
# accumulation) on their values and rounds its results to their dtype, so a long sequence does not drift as a
# 16-bit state would. (The triton kernels read a 16-bit module's recurrent weights in its dtype, exactly:
# LOW_PRECISION_WEIGHTS; the cpp kernels read the weight matrices in their dtype where a call multiplies them as
# stored, else float32 copies, and a bfloat16 scan's GEMMs round their operands to bfloat16 where the CPU multiplies
# it: sc.h's weight and products16.)
LOW_PRECISION = (torch.bfloat16, torch.float16)


def _autocast(xs, state, params, casts=("cpu", "cuda")):
    """Under torch.autocast for the tensors' device, the scan runs in autocast's dtype, as nn.LSTM does (its
    operator is on autocast's lower-precision list): inputs, states and parameters cast to it, those in float64
    left alone as autocast leaves them. On a device not in `casts` (a module's autocast_devices: nn.GRU's and nn's
    cells' operators are on CUDA's list, not the CPU's) as nn's: where neither the input nor a state is in
    autocast's dtype, as given; where a state is float32, in float32 on the input and weights rounded to
    autocast's dtype (the state stays float32); else all cast to it.
    -> (xs, state, params, the device type whose autocast to turn off inside, or None)"""
    first = params[0] if params else (xs if isinstance(xs, torch.Tensor) else next(iter(xs), None))
    kind = first.device.type if isinstance(first, torch.Tensor) else None
    if kind not in ("cpu", "cuda") or not torch.is_autocast_enabled(kind):
        return xs, state, params, None
    dtype = torch.get_autocast_dtype(kind)

    def cast(v, to=dtype):
        if isinstance(v, torch.Tensor):
            return v.to(dtype).to(to) if v.is_floating_point() and v.dtype != torch.float64 else v
        return tuple(cast(t, to) for t in v) if isinstance(v, (tuple, list)) else v
    if kind in casts:
        return cast(xs), cast(state), [cast(p) for p in params], kind
    # nn's cells and GRU off autocast's list: their matmuls run in autocast's dtype where the input or the state
    # is in it, and the state keeps its dtype (a float32 state stays float32 from step to step, bfloat16 it
    # stalled: a c growing 0.3 a step stopped at 128)
    x0 = xs if isinstance(xs, torch.Tensor) else next(iter(xs), None)
    given = [t for t in _as_tuple(state) if isinstance(t, torch.Tensor)]
    if not any(isinstance(t, torch.Tensor) and t.dtype == dtype for t in (x0, *given)):
        return xs, state, params, kind   # (autocast off inside all the same: the scan's own ops are not cast)
    if any(t.dtype == torch.float32 for t in given):   # in float32 on the inputs and weights autocast would round
        return cast(xs, torch.float32), state, [cast(p, torch.float32) for p in params], kind
    return cast(xs), cast(state), [cast(p) for p in params], kind


def _as_tuple(state):
    return () if state is None else (state,) if isinstance(state, torch.Tensor) else tuple(state)


def _check(binding, *args):
    """binding.check, quiet in a trace (quiet_in_a_trace)"""
    if not torch.jit.is_tracing():
        return binding.check(*args)
    with quiet_in_a_trace():
        return binding.check(*args)


@contextlib.contextmanager
def quiet_in_a_trace():
    """in torch.jit.trace, without the trace's warnings about the example's sizes read as Python values: the
    checks read them to refuse a wrong call, and the trace records none of it (nn.LSTM's own checks warn so too:
    14 times for a 2-layer bidirectional LSTM, where symcell's added 72; a cell's step's check, twice)"""
    if not torch.jit.is_tracing():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def _as_called(binding, ys, final, low):
    """a scan's outputs as its caller gets them (run's and run_plan's): the final states, not the outputs that are
    not states (they end with the step); in the 16-bit dtype `low` of a scan that ran in float32"""
    final = final[:len(binding.state_sizes)]
    if low is not None:
        ys, final = tuple(y.to(low) for y in ys), tuple(f.to(low) for f in final)
    return ys, final


def run(binding, params, xs, state, reverse, lengths, batch_first, autocast_devices=("cpu", "cuda"),
        param_names=None, ordered=False, plan_as=None):
    """scan of a bound cell with the given parameters (see scan); autocast_devices: see _autocast; param_names:
    the parameters' names in the caller's messages (symcell.RNN's), else the cell's; ordered: the caller chose
    the rows' order (symcell.RNN, once for all its layers), which the scan keeps. plan_as: the signature under
    which the caller looks this call's plan up (replay.py: Cell.step's), else run's own."""
    if plan_as is None and lengths is None and replay.plain():
        plan_as = replay.signature(("scan", reverse, batch_first), xs, state, params)
        plan = binding.plans.get(plan_as)
        if plan is not None:
            return run_plan(binding, plan, params, xs, state)
    plannable, state_given = plan_as is not None and lengths is None, state
    xs, state, params, autocast = _autocast(xs, state, params, autocast_devices)
    try:
        seq, state, ref = _check(binding, xs, state, params, batch_first, param_names)
    except DtypeError as e:   # (its dtypes are what autocast made of the tensors passed)
        if autocast is None:
            raise
        raise type(e)(f"{e} (under torch.autocast({autocast!r}, dtype={torch.get_autocast_dtype(autocast)}), "
                         "as autocast cast the tensors passed: float64 ones it leaves alone)") from None
    low = ref.dtype if ref.dtype in LOW_PRECISION else None
    # the scan computes for that dtype (a backend may round to it what is exact in it: the triton backend's
    # weights, LOW_PRECISION_WEIGHTS) only where every parameter is in it
    computing_for = low if low is not None and all(p.dtype == low for p in params) else None
    weights16 = _weights16(computing_for, (*seq, *state, *params))
    if low is not None:   # (and the parameters, _kernel_params)
        seq, state = ([t.float() for t in ts] for ts in (seq, state))
    T, B = seq[0].shape[0], seq[0].shape[1]
    unsort = None
    if lengths is not None:
        lengths = check_lengths(binding.name, lengths, T, B, ref.device)
        order = None if ordered else row_order(binding, lengths, seq[0].dtype)
        if order is not None:
            unsort = torch.argsort(order)
            seq = [x.index_select(1, order) for x in seq]
            state = tuple(s.index_select(0, order) for s in state)
            lengths = lengths[order]
    # (in a trace, lengths of the caller's integer dtype whatever the example's, which the operator converts: the
    # masks here compare them as int64, as torch promotes no wider unsigned dtype with it; a copy, see check_lengths)
    steps = lengths.to(torch.int64, copy=True) if lengths is not None and torch.jit.is_tracing() else lengths
    if reverse:
        if lengths is None:
            seq = [x.flip(0) for x in seq]
        else:
            rows = torch.arange(B, device=ref.device)[None, :]
            flip = _reversal(steps, T)
            seq = [x[flip, rows] for x in seq]
    key = binding.kernel_key(ref.device, seq[0].dtype)
    # the deploy operator takes row-major tensors; every other path makes its arguments so itself (backends/base.py),
    # inside the operator a trace records: a copy of a strided input here was in a trace or not as the example input
    # was strided, and jit.trace's check of a bidirectional LSTM on a strided input failed
    if deploy.recording():
        seq = tuple(x.contiguous() for x in seq)
        state = tuple(s.contiguous() for s in state)
    params = _kernel_params(binding, key, params, low, weights16)
    # autocast off inside: the float32 (or float64) scan must not be cast again by the ops it runs
    with torch.autocast(autocast, enabled=False) if autocast else contextlib.nullcontext():
        ys, final = scan_op(key, seq, state, params, lengths, computing_for)
    ys, final = _as_called(binding, ys, final, low)
    if lengths is not None:   # outputs past each row's length are zero (the kernel holds the state there)
        ys = tuple(y.masked_fill(backends.padding(steps, T), 0) for y in ys)
    if reverse:
        ys = tuple(y.flip(0) for y in ys) if lengths is None else tuple(y[flip, rows] for y in ys)
    if unsort is not None:
        ys = tuple(y.index_select(1, unsort) for y in ys)
        final = tuple(f.index_select(0, unsort) for f in final)
    if batch_first:
        ys = tuple(y.transpose(0, 1) for y in ys)
    # (a call plain() let through, on the kernel later calls get: not a fallback they would try to build again)
    if plannable and autocast is None and binding.settled(key, ref.device):
        binding.plans.keep(plan_as, replay.Plan(key, reverse, batch_first, state_given is None, low, computing_for))
    return (ys[0] if len(ys) == 1 else ys), final


def run_plan(binding, plan, params, xs, state):
    """run, for a call whose signature an earlier call's plan was kept under (replay.py): that call's checks
    passed, and its answers hold for this one. Without lengths or autocast (no plan is kept for those)."""
    given = params, xs, state
    seq = (xs,) if isinstance(xs, torch.Tensor) else tuple(xs)
    if plan.batch_first:
        seq = tuple(x.transpose(0, 1) for x in seq)
    if plan.reverse:
        seq = tuple(x.flip(0) for x in seq)
    B, like = seq[0].shape[1], seq[0]
    if plan.zero_state:
        state = tuple(like.new_zeros(B, n) for n in binding.state_sizes.values())
    else:
        state = (state,) if isinstance(state, torch.Tensor) else tuple(state)
    state += tuple(like.new_zeros(B, n) for n in binding.hidden_sizes.values())
    weights16 = _weights16(plan.computing_for, (*seq, *state, *params))
    if plan.low is not None:   # (and the parameters, _kernel_params)
        seq, state = (tuple(t.float() for t in ts) for ts in (seq, state))
    params = _kernel_params(binding, plan.key, params, plan.low, weights16)
    try:
        ys, final = _eager_path(plan.key, seq, state, params, None, plan.computing_for)
    except BuildError:   # (its kernel let go since, and not built again: the full path, which may fall back)
        binding.plans.clear()
        return run(binding, *given, plan.reverse, None, plan.batch_first)
    ys, final = _as_called(binding, ys, final, plan.low)
    if plan.reverse:
        ys = tuple(y.flip(0) for y in ys)
    if plan.batch_first:
        ys = tuple(y.transpose(0, 1) for y in ys)
    return (ys[0] if len(ys) == 1 else ys), final
