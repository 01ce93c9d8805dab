"""The Triton kernels' variants and launches: the 64-bit variant for buffers of 2^31 elements or more, one
compile whatever T and B, a model on a device other than the current one. (The kernels' values and gradients on
every cell: test_backends.py and the zoo, through the interpreter without a GPU; compiled for sm_80/sm_90
without one: test_triton_aot.py.)"""
import pytest
import torch

from symcell import registry
from symcell.backends import triton as triton_backend
from symcell.cells import LSTM
from zoo import CASES

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"   # (CPU tensors: Triton's interpreter)


@pytest.mark.parametrize("backend", ["triton"])
@pytest.mark.parametrize("name", ["LSTM", "PeepholeLSTM"])
def test_the_64_bit_variant_is_exact(monkeypatch, backend, name):
    """Buffers of 2^31 elements need tens of GiB; the variant they get runs here on every size (WIDE_AT = 0):
    forward, backward and lengths against the reference backend"""
    monkeypatch.setattr(triton_backend, "WIDE_AT", 0)
    factory = CASES[name][0]
    torch.manual_seed(0)
    cell = factory(backend=backend).to(DEVICE)
    ref = factory(backend="reference").to(DEVICE)
    ref.load_state_dict(cell.state_dict())
    x = torch.randn(6, 5, cell.dims["I"], device=DEVICE, requires_grad=True)
    lengths = torch.tensor([6, 2, 5, 1, 6])
    for kw in ({}, {"lengths": lengths}):
        y, r = cell(x, **kw)[0], ref(x, **kw)[0]
        torch.testing.assert_close(y, r, rtol=1e-4, atol=1e-5)
        g = torch.autograd.grad(y.square().sum(), [x, *cell.parameters()])
        gr = torch.autograd.grad(r.square().sum(), [x, *ref.parameters()])
        for a, b in zip(g, gr):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def compiled_variants(cell, device):
    kernel = registry.kernel_for(cell._kernel_key(device))
    return {name: len(kernel._entries[name].jit.device_caches[device.index][0]) for name in ("forward", "backward")}


@pytest.mark.triton
@pytest.mark.gpu
@needs_gpu
def test_the_kernels_compile_once_whatever_t_and_b():
    """Triton specialises integer arguments equal to 1 or divisible by 16 unless told not to: T, B and the strides
    are run-time values, so new lengths and batch sizes reuse the compiled kernels"""
    dev = torch.device("cuda", torch.cuda.current_device())
    cell = LSTM(8, 16, backend="triton").to(dev)
    ref = LSTM(8, 16, backend="reference").to(dev)
    ref.load_state_dict(cell.state_dict())
    counts = None
    for T, B in [(16, 16), (1, 1), (5, 3), (33, 32), (2, 17)]:
        x = torch.randn(T, B, 8, device=dev)
        y, _ = cell(x)
        y.sum().backward()
        torch.testing.assert_close(y, ref(x)[0], rtol=1e-4, atol=1e-5)
        counts = counts or compiled_variants(cell, dev)
        assert compiled_variants(cell, dev) == counts, (T, B)


@pytest.mark.triton
@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_model_on_another_device_than_the_current_one():
    torch.cuda.set_device(0)
    cell = LSTM(8, 16, backend="triton").to("cuda:1")
    ref = LSTM(8, 16, backend="reference")
    ref.load_state_dict({k: v.cpu() for k, v in cell.state_dict().items()})
    x = torch.randn(7, 5, 8)
    y, (h, c) = cell(x.to("cuda:1"))
    assert y.device == torch.device("cuda:1")
    torch.testing.assert_close(y.cpu(), ref(x)[0], rtol=1e-4, atol=1e-5)
