"""The backends, by name. Each is a Backend (base.py): it renders a kernel program and builds a Kernel.

    reference   torch code, the loop in Python: any device; the oracle the others are tested against
    cpp         C++ through torch.utils.cpp_extension: CPU tensors
    triton      Triton kernels: CUDA tensors (CPU tensors under TRITON_INTERPRET=1)

backend="auto" takes, among the backends whose `devices` include the tensors' device and that are usable on
this machine, the one of highest priority.
"""
import sys

import torch

from .base import Backend, Kernel, padding  # noqa: F401
from .cpp import CppBackend
from .reference import ReferenceBackend
from .triton import TritonBackend

_REGISTRY = {b.name: b for b in (ReferenceBackend(), CppBackend(), TritonBackend())}


def get(name):
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, one of {sorted(_REGISTRY) + ['auto']}, got {name!r}")
    if name not in _REGISTRY:
        raise ValueError(f"backend={name!r} is not available; choose one of {sorted(_REGISTRY) + ['auto']}")
    return _REGISTRY[name]


def available():
    return sorted(_REGISTRY)


def assume_constant_result(fn):
    """torch.compiler.assume_constant_result, without importing torch._dynamo (0.7 s of `import symcell`, in a
    process that may never compile): the mark it sets, made here (tests/test_ecosystem.py checks that torch's
    decorator sets the same), or the decorator itself where torch._dynamo is imported already"""
    if "torch._dynamo" in sys.modules:
        return torch.compiler.assume_constant_result(fn)
    fn._dynamo_marked_constant = True
    return fn


# torch.compile takes the answer as a constant, without tracing the question: whether this machine has a C++
# compiler (shutil.which, a stat dynamo cannot trace: fullgraph failed on a module's first call in a process)
@assume_constant_result
def resolve(name, device):
    """'auto' -> the best usable backend for the device; another name is checked and returned: a backend that
    cannot run tensors on this device here raises, saying why."""
    if name != "auto":
        why = get(name).refuses(device)
        if why:
            raise RuntimeError(f"symcell: backend={name!r} cannot run tensors on {device}: {why}")
        return name
    ranked = sorted((b for b in _REGISTRY.values() if b.devices is None or device.type in b.devices),
                    key=lambda b: -b.priority)
    return next((b.name for b in ranked if b.usable(device)), "reference")
