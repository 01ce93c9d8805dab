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


MASKED = {   # a function whose derivative is 0 * inf where a mask is 0: torch's backward selects, so 0
    "sqrt(relu(x))": (lambda x: symcell.sqrt(relu(x)), lambda x: torch.sqrt(torch.relu(x))),
    "sqrt(clamp(x, 0, 9))": (lambda x: symcell.sqrt(symcell.clamp(x, 0.0, 9.0)),
                             lambda x: torch.sqrt(torch.clamp(x, 0.0, 9.0))),
    "sqrt(maximum(x, 0))": (lambda x: symcell.sqrt(symcell.maximum(x, 0.0)),
                            lambda x: torch.sqrt(torch.clamp_min(x, 0.0))),
    "log(relu(x)) where x > 0": (lambda x: symcell.where(x > 0, symcell.log(relu(x)), 0.0) + x,
                                 lambda x: torch.where(x > 0, torch.log(torch.relu(x)), 0.0) + x),
}


@pytest.mark.parametrize("backend,dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(MASKED))
def test_a_masked_derivative_is_selected_not_multiplied(backend, dtype, name):
    """step(x) / (2 sqrt(relu(x))) where x < 0 is 0 * inf: NaN multiplied, 0 as torch's backward selects it (a
    product with 0/1 factors is where(...), functions.masked), in reverse mode and forward mode"""
    ours, theirs = MASKED[name]
    Cell = symcell.define(inputs={"x": "H"}, state={"h": "H"}, name="Masked")(lambda x, h: ours(x) + 0.5 * h)
    cell = Cell(H=6, backend=backend).to(dtype)
    x = torch.tensor([-3.0, -0.5, 0.0, 0.5, 2.0, 4.0], dtype=dtype).repeat(2, 1, 1).requires_grad_()
    ys, _ = cell(x)
    g, = torch.autograd.grad(ys.sum(), x)
    def eager(xe):
        h, want = torch.zeros(1, 6, dtype=dtype), []
        for t in range(2):
            h = theirs(xe[t]) + 0.5 * h
            want.append(h)
        return torch.stack(want)
    xe = x.detach().clone().requires_grad_()
    ge, = torch.autograd.grad(eager(xe).sum(), xe)
    # (finite where torch's is: at x = 0 clamp's gradient is 1, sqrt's infinite, in torch too)
    assert torch.equal(torch.isfinite(g), torch.isfinite(ge)) and torch.allclose(g, ge), (g, ge)
    assert torch.isfinite(g[:, :, :2]).all()
    if backend != "triton":   # (forward mode: the tangent scan, not the triton backend's)
        from torch.autograd.forward_ad import dual_level, make_dual, unpack_dual
        with dual_level():
            ys_t = unpack_dual(cell(make_dual(x.detach(), torch.ones_like(x)))[0]).tangent
        _, want_t = torch.func.jvp(eager, (x.detach(),), (torch.ones_like(x),))
        # (torch's own forward mode multiplies the mask in places: NaN where x < 0; equal where it is finite)
        finite = torch.isfinite(want_t)
        assert torch.allclose(ys_t[finite], want_t[finite]) and torch.isfinite(ys_t[:, :, :2]).all(), ys_t


@symcell.define(inputs={"x": "H"}, state={"h": "H"})
def FarConstants(x, h):
    """constants past C++'s int (1e30, printed as the integer 10**30 it is, overflowed) and infinite ones"""
    return (x * 1e30 + symcell.maximum(symcell.where(h > 0, h, float("-inf")), x) +
            symcell.clamp(x, float("-inf"), 1.0) + symcell.minimum(h, float("inf")))


@pytest.mark.parametrize("backend,dtype", DTYPES)
def test_constants_past_int_and_infinite_ones(backend, dtype):
    cell = FarConstants(H=3, backend=backend).to(dtype)
    x = torch.tensor([[[1.0, -2.5, 0.7]], [[0.3, 2.0, -1.0]]], dtype=dtype, requires_grad=True)
    ys, _ = cell(x)
    h, want = torch.zeros(1, 3, dtype=dtype), []
    for t in range(2):
        h = (x[t] * 1e30 + torch.maximum(torch.where(h > 0, h, float("-inf")), x[t]) +
             torch.clamp(x[t], max=1.0) + h)
        want.append(h)
    assert torch.allclose(ys, torch.stack(want), rtol=1e-6), (ys, torch.stack(want))
    g, = torch.autograd.grad(ys.sum(), x)
    assert torch.isfinite(g).all()


def test_a_division_by_the_constant_0_is_refused_with_what_to_write():
    with pytest.raises(ValueError, match=r"h / 0: a division by the constant 0"):
        @symcell.define(inputs={"x": "H"}, state={"h": "H"})
        def Divides(x, h):
            return x + h / 0
        Divides(H=2)
