"""Repeated calls: a call with tensors like an earlier call's runs the kernel that call found, without asking again.

A decoder or a sampler steps a cell in a loop with tensors of the same shapes, dtypes and devices every time, and
every time a call's checks (module.Binding.check), the choice of its kernel (Binding.kernel_key) and the eager
path's questions (sequence.scan_op) came to the same answers: ~60 us of Python a step around a ~20 us operator,
where nn.LSTMCell's whole step takes ~35. A Plan is those answers. The binding keeps it under the signature of
the call that found them, and a later call with the same signature, made while no mode is on that changes what a
call runs (`plain`), runs the kernel at once (sequence.run_plan); any other call takes the full path, which
raises on bad arguments.

    sig = signature(tag, xs, state, params) if plain() else None
    plan = binding.plans.get(sig)
    if plan is not None:
        return sequence.run_plan(binding, plan, params, xs, state)
    ... the full path, which ends with binding.plans.keep(sig, Plan(...)) where its call was plain

What the answers depend on is all in the signature: the arguments' structure and each tensor's type, shape,
dtype, device and layout (a call's checks read nothing else: a tensor's values, strides and requires_grad they
do not). Whether autograd records the call is asked again each call, by the eager path, as the full path asks it.
"""
from dataclasses import dataclass

import torch

from . import autograd, deploy

# (subclasses are not plain: FakeTensor, DTensor, a torch.func wrapper's own types; their calls take the full path)
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def signature(tag, xs, state, params):
    """The signature of a call (tag: what the caller calls, with the flags that change what it runs), or None
    where an argument is not a plain tensor (nor, for xs and state, a tuple or list of them), whose call always
    takes the full path. A tensor and a 1-tuple of it sign alike: a call takes them alike."""
    xs = (xs,) if type(xs) in _PLAIN else xs
    given = () if state is None else (state,) if type(state) in _PLAIN else state
    if not (isinstance(xs, (tuple, list)) and isinstance(given, (tuple, list))):
        return None
    sig = [tag, len(xs), None if state is None else len(given)]   # (None: no state given, zeros)
    for t in (*xs, *given, *params):
        if type(t) not in _PLAIN:
            return None
        sig += (t.shape, t.dtype, t.device, t.layout)
    return tuple(sig)


def plain():
    """No mode is on that changes what a call runs or records: torch.compile and torch.jit.trace tracing, a
    dispatch mode (fake tensors, make_fx, selective checkpointing), torch.func's transforms, forward mode's dual
    level, the profiler (a row for each call), autocast, symcell.deploy recording."""
    # (is_compiling first: torch.compile takes it as True and traces nothing after it)
    return not (torch.compiler.is_compiling() or torch.jit.is_tracing() or torch._C._len_torch_dispatch_stack()
                or autograd.forward_mode_on() or torch._C._autograd._profiler_enabled()
                or torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda") or deploy.recording())


@dataclass(frozen=True)
class Plan:
    """What a full call found for its signature: the kernel's key, and how its arguments become the kernel's (see
    sequence.run_plan). zero_state: the call passed no state, which starts at zeros; low: the 16-bit dtype of a
    scan that runs in float32 (sequence.LOW_PRECISION), else None; computing_for: the kernel's (Kernel.for_dtype)."""
    key: str
    reverse: bool
    batch_first: bool
    zero_state: bool
    low: torch.dtype = None
    computing_for: torch.dtype = None


class Plans:
    """A binding's plans by signature. A few: a call of other shapes (another batch size) adds one; past `most`,
    all are dropped and found again (a loop over ever-new shapes pays a full call each, as without plans)."""

    most = 16

    def __init__(self):
        self._by_sig = {}

    def get(self, sig):
        return self._by_sig.get(sig) if sig is not None else None

    def clear(self):
        self._by_sig.clear()

    def keep(self, sig, plan):
        if len(self._by_sig) >= self.most:
            self.clear()
        self._by_sig[sig] = plan

    def __len__(self):
        return len(self._by_sig)
