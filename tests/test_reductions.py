"""Sums and means over a row's features (issue 14): values of size 1 that broadcast against vectors, as do
inputs and parameters declared with size 1 and scalar parameters of shape (). The cells of the zoo (TimeStep,
LayerNormLSTM) check them on every backend; this file checks the forms and the errors."""
import pytest
import torch

import symcell
from symcell import mean, sqrt, tanh

BACKENDS = [b for b in ("reference", "cpp") if symcell.backends.get(b).usable(torch.device("cpu"))]


@symcell.define(inputs={"x": "H"}, state={"h": "H", "s": 1}, params={"g": ("H",), "c": ()})
def Norm(x, h, s, g, c):
    v = x + h
    mu = mean(v)
    sd = sqrt(mean((v - mu) ** 2) + 1e-5)
    return g * (v - mu) / sd + c * s, symcell.sum(tanh(v)) + c   # a state of size 1, a sum into it


def norm_ref(x, h, s, g, c):
    v = x + h
    return (g * torch.nn.functional.layer_norm(v, v.shape[-1:], eps=1e-5) + c * s,
            torch.tanh(v).sum(1, keepdim=True) + c)


@pytest.mark.parametrize("backend", BACKENDS)
def test_layer_norm_a_size_1_state_and_a_scalar_parameter_match_torch(backend):
    torch.manual_seed(0)
    cell = Norm(H=5, backend=backend).double()
    assert cell.c.shape == () and cell.state_sizes == {"h": 5, "s": 1}
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    s0 = torch.randn(3, 1, dtype=torch.float64, requires_grad=True)
    ys, (h, s) = cell(x, (h0, s0))
    hh, ss, outs = h0, s0, []
    for t in range(4):
        hh, ss = norm_ref(x[t], hh, ss, cell.g, cell.c)
        outs.append(hh)
    torch.testing.assert_close(ys, torch.stack(outs), rtol=1e-12, atol=1e-12)
    cot = torch.randn(ys.shape, dtype=torch.float64)
    wrt = (x, h0, s0, cell.g, cell.c)
    got = torch.autograd.grad((ys * cot).sum() + s.sum(), wrt)
    want = torch.autograd.grad((torch.stack(outs) * cot).sum() + ss.sum(), wrt)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_derived_equations_say_what_is_summed_over_the_features():
    text = Norm.gradients()
    assert "t0 = h + x" in text and "sum0 = sum(t0)" in text and "(summed over the features)" in text
    assert "d_c +=" in text and "(summed over the batch and the features)" in text


@pytest.mark.parametrize("step,error,message", [
    (lambda x, h, W: symcell.sum(W), TypeError, r"W is a 2-d parameter \(H, H\); it can only be used as `W @ v`"),
    (lambda x, h, W: symcell.mean(2.0) + h, TypeError, r"symcell\.mean expects a symbolic vector .*got float"),
    (lambda x, h, W: h + x, ValueError,
     r"cannot compute h \+ x: h has size H but x has size I \(sizes must be equal, or one of them 1\)"),
    (lambda x, h, W: symcell.maximum(h, x), ValueError,
     r"symcell\.maximum: h has size H, x has size I \(sizes must be equal, or 1\)"),
    (lambda x, h, W: symcell.sum(h), ValueError, r"the new state 'h' is sum\(h\) of size 1, but state 'h' is "
                                                  r"declared with size H"),
])
def test_reduction_errors_name_the_variable(step, error, message):
    def C(x, h, W):
        return step(x, h, W)
    with pytest.raises(error, match=message):
        symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "H")})(C)
