"""Test tiers (markers declared in pyproject.toml):

    nocompile   the fast tier that needs no C++ compiler and no Triton: the reference backend, printers, render
                snapshots, the passes, every error message (python -m pytest -m nocompile: under a minute)
    cpp         builds C++ kernels (a test parametrized with backend="cpp", or using backend="auto" on CPU)
    triton      runs Triton kernels: compiled on a GPU, else through Triton's interpreter on CPU tensors
    gpu         runs on a CUDA device
    slow        subprocesses, examples, long sequences and fuzz runs

A test parametrized over backends gets the tier of its backend; every test that is not cpp, triton, gpu or slow
is nocompile, and a nocompile test that builds a cpp or triton kernel fails, naming itself, so the tier stays
true.
"""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

# Without a GPU the Triton backend is tested on CPU tensors through Triton's interpreter; the variable must be set
# before any kernel is decorated. With a GPU the same tests run compiled kernels on CUDA tensors.
try:
    import torch
    _gpu = torch.cuda.is_available()
except ImportError:
    _gpu = False
if not _gpu:
    os.environ.setdefault("TRITON_INTERPRET", "1")
else:   # nn.LSTM/nn.GRU are the float32 references of the parity tests: cuDNN's TF32 default would round them
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

_COMPILING = {"cpp": ("cpp",), "triton": ("triton", "gpu") if _gpu else ("triton",)}


def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        for mark in _COMPILING.get(backend, ()):
            item.add_marker(mark)
        if not any(item.get_closest_marker(m) for m in ("cpp", "triton", "gpu", "slow")):
            item.add_marker("nocompile")


@pytest.fixture(autouse=True)
def _the_nocompile_tier_builds_nothing(request, monkeypatch):
    if request.node.get_closest_marker("nocompile") is None:
        return
    import symcell

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} is in the nocompile tier but builds a kernel of a compiling "
                             "backend: mark it cpp or triton (a backend='auto' cell on CPU is cpp)")
    for name in ("cpp", "triton"):
        monkeypatch.setattr(type(symcell.backends.get(name)), "build", refuse)


@pytest.fixture
def threads(request):
    """torch's intra-op threads set to the test's parameter (the cpp backend's ways of splitting its work count
    rows a thread), restored after"""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)
