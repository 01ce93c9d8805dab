"""Saturated cells stay finite; the kink conventions are torch's."""
import pytest
import torch

import symcell
from symcell import elu, relu, sigmoid, softplus, tanh
from symcell.cells import LSTM

BACKENDS = [b for b in symcell.backends.available() if symcell.backends.get(b).usable(torch.device("cpu"))]
# triton computes in float32 only (it runs here under Triton's interpreter)
DTYPES = [(b, d) for b in BACKENDS for d in ([torch.float32] if b == "triton" else [torch.float32, torch.float64])]


@symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"w": ("H",)})
def Saturating(x, h, w):
    return sigmoid(w * x) * tanh(x) + softplus(x) * 1e-4 + elu(x) * 1e-4 + relu(-x) * 1e-4 + 0.5 * h


@pytest.mark.parametrize("backend,dtype", DTYPES)
def test_pre_activations_of_1e4_give_finite_values_and_gradients(backend, dtype):
    cell = Saturating(H=4, backend=backend).to(dtype)
    x = torch.tensor([[[1e4, -1e4, 1e4, -1e4]]], dtype=dtype).repeat(3, 2, 1).requires_grad_()
    ys, (h,) = cell(x)
    ys.sum().backward()
    assert torch.isfinite(ys).all() and torch.isfinite(x.grad).all()
    assert torch.isfinite(cell.w.grad).all()

    lstm = LSTM(2, 3, backend=backend).to(dtype)
    with torch.no_grad():
        lstm.weight_ih_l0.fill_(1.0)
    x = torch.tensor([1e4, -1e4], dtype=dtype).repeat(4, 2, 1).requires_grad_()
    out, (h, c) = lstm(x)
    (out.sum() + c.sum()).backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in lstm.parameters())


@symcell.define(inputs={"x": "H"}, state={"h": "H"})
def Kinks(x, h):
    return relu(x) + 2 * elu(x) + h


@pytest.mark.parametrize("backend,dtype", DTYPES)
def test_kinks_follow_torch_relu_prime_0_is_0_and_elu_prime_0_is_1(backend, dtype):
    cell = Kinks(H=3, backend=backend).to(dtype)
    x = torch.tensor([0.0, 0.0, -1.0], dtype=dtype).view(1, 1, 3).requires_grad_()
    ys, _ = cell(x)
    (g,) = torch.autograd.grad(ys.sum(), x)
    x2 = x.detach().clone().requires_grad_()
    (g_ref,) = torch.autograd.grad((torch.relu(x2) + 2 * torch.nn.functional.elu(x2)).sum(), x2)
    if backend == "triton":   # its float32 exp may differ from torch's by an ulp at elu'(-1) = exp(-1)
        torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=0)
    else:
        assert torch.equal(g, g_ref)
    assert g[0, 0, 0].item() == 2.0   # relu'(0) = 0, elu'(0) = 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_in_one_sequence_stays_in_that_sequence(backend):
    cell = LSTM(3, 4, backend=backend)
    x = torch.randn(5, 3, 3)
    x[2, 1, 0] = float("nan")
    out, (h, c) = cell(x)
    assert torch.isnan(out[2:, 1]).all() and torch.isnan(h[0, 1]).all()
    assert torch.isfinite(out[:, 0]).all() and torch.isfinite(out[:, 2]).all() and torch.isfinite(out[:2, 1]).all()


@symcell.define(inputs={"x": "H"}, state={"h": "H"})
def Softplus(x, h):
    return softplus(x) + 0 * h


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "cpp"])
def test_float32_softplus_is_accurate_from_tiny_to_saturated(backend):
    """The cpp backend's float softplus is arithmetic (it vectorizes): within a few float32 ulps of torch's in
    float64, from where the result is 1e-35 to where it is x."""
    # (-80: 1.8e-35; below about -87 the result is a denormal, which the kernels flush to 0 by design, sc.h)
    x = torch.cat([torch.linspace(-30, 30, 601), torch.tensor([-80.0, -1e-6, 0.0, 1e-6, 19.99, 20.01, 50.0])])
    cell = Softplus(H=x.numel(), backend=backend)
    ys, _ = cell(x.view(1, 1, -1))
    want = torch.nn.functional.softplus(x.double())
    assert ((ys.view(-1).double() - want).abs() / want.abs().clamp_min(1e-38)).max() < 4e-7
