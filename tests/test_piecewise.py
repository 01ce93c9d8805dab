"""Comparisons, where, maximum / minimum, abs, clamp, hardtanh, hardsigmoid (issue 14) through whole cells on
every backend, at exactly the points where torch's conventions decide a derivative (ties, zero, the bounds), and
the errors a user meets writing Python's max() or an `if` on a symbolic value."""
import pytest
import torch
import torch.nn.functional as F

import symcell
from symcell import cat, clamp, hardsigmoid, hardtanh, maximum, minimum, relu, tanh, where
from zoo import gradcheck_scan, rel_err

DEVICE = {"reference": "cpu", "cpp": "cpu", "triton": "cuda" if torch.cuda.is_available() else "cpu"}
BACKENDS = [b for b in DEVICE if symcell.backends.get(b).usable(torch.device(DEVICE[b]))]


@symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"g": ("H",)})
def Kinks(x, h, g):
    return g * (maximum(x, h) + 2 * minimum(x, h) + 3 * abs(x) + 5 * clamp(x, -0.5, 0.5) + 7 * where(x >= h, x, h)
                + 11 * hardtanh(x) + 13 * hardsigmoid(3 * x) + 17 * relu(x) + 19 * maximum(x, 0.5)
                + 23 * where(x < 0, 0.0, tanh(x)))


def kinks_ref(x, h, g):
    half = x.new_tensor(0.5)
    return g * (torch.maximum(x, h) + 2 * torch.minimum(x, h) + 3 * x.abs() + 5 * torch.clamp(x, -0.5, 0.5)
                + 7 * torch.where(x >= h, x, h) + 11 * F.hardtanh(x) + 13 * F.hardsigmoid(3 * x) + 17 * torch.relu(x)
                + 19 * torch.maximum(x, half) + 23 * torch.where(x < 0, x.new_tensor(0.0), torch.tanh(x)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_zero_and_bounds_follow_torch(backend):
    """Row 0 sits on every kink (x = h: ties; x in {0, +-0.5, +-1}: abs, relu, clamp, hardtanh and, as 3x = +-3,
    hardsigmoid); row 1 is random. One step, so the state is still tied to the input."""
    dev, dtype = DEVICE[backend], torch.float32 if backend == "triton" else torch.float64
    kinks = torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 0.25, 2.0, -2.0], dtype=dtype)
    x = torch.stack([kinks, torch.randn(8, dtype=dtype, generator=torch.Generator().manual_seed(0))])[None]
    h0 = x[0].clone()
    cell = Kinks(H=8, backend=backend).to(dev, dtype)
    with torch.no_grad():
        cell.g.copy_(torch.linspace(0.5, 1.5, 8))
    x, h0 = (t.to(dev).requires_grad_() for t in (x, h0))
    ys, (h,) = symcell.scan(cell, (x,), (h0,))
    want = kinks_ref(x[0], h0, cell.g)
    cot = torch.linspace(-1, 2, 16, dtype=dtype, device=dev).view(2, 8)
    got_g = torch.autograd.grad((h * cot).sum(), (x, h0, cell.g))
    want_g = torch.autograd.grad((want * cot).sum(), (x, h0, cell.g))
    # F.hardsigmoid's backward scales by 1/6 rounded to float32 whatever the dtype (3e-8 relative); ours is exact
    tol = 1e-7 if dtype == torch.float64 else 1e-5
    assert rel_err(h, want) < tol and rel_err(ys[0], want) < tol
    for a, b in zip(got_g, want_g):
        assert rel_err(a, b) < tol


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
def test_gradcheck_and_second_order_away_from_the_kinks(backend):
    from zoo import Piecewise
    torch.manual_seed(2)
    cell = Piecewise(I=3, H=4, backend=backend).double()
    g = torch.Generator().manual_seed(11)
    xs = [torch.randn(4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)]
    states = [torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    assert gradcheck_scan(cell, xs, states)
    params = list(cell.parameters())

    def f(x, h, m):
        ys, (hT, mT) = symcell.scan(cell, (x,), (h, m))
        return (ys.sin().sum() + (hT * mT).sum(),)
    assert torch.autograd.gradgradcheck(lambda *a: f(*a)[0], (*xs, *states))
    (gx,) = torch.autograd.grad(f(*xs, *states)[0], params[:1], create_graph=True)
    assert gx.requires_grad   # a gradient that is itself differentiable (a gradient penalty trains on it)


def _define(step, inputs=None):
    def cell(x, h, W, p):
        return step(x, h, W, p)
    return symcell.define(inputs=inputs or {"x": "H"}, state={"h": "H"},
                          params={"W": ("H", "H"), "p": ("H",)})(cell)


@pytest.mark.parametrize("step,error,message", [
    (lambda x, h, W, p: max(x, h), TypeError,
     r"\(h > x\) is a symbolic condition.*symcell\.maximum\(a, b\) / symcell\.minimum\(a, b\) for max\(\) / min\(\)"),
    (lambda x, h, W, p: h if h > 0 else x, TypeError, r"\(h > 0\) is a symbolic condition.*symcell\.where\(\(h > 0\)"),
    (lambda x, h, W, p: h if h else x, TypeError, r"^h is symbolic: Python control flow.*where, maximum"),
    (lambda x, h, W, p: where(h, x, h), TypeError, r"symcell\.where: the condition must be a comparison.*got h$"),
    (lambda x, h, W, p: clamp(h, x, 1.0), TypeError, r"symcell\.clamp\(h, min=x\): the bounds must be Python numbers"),
    (lambda x, h, W, p: clamp(h), ValueError, r"symcell\.clamp\(h\): give min, max or both"),
    (lambda x, h, W, p: maximum(h, 1, 2), TypeError, r"symcell\.maximum\(a, b\) takes 2 argument\(s\), got 3"),
    (lambda x, h, W, p: maximum(3, 4) + h, TypeError, r"symcell\.maximum\(a, b\) expects a symbolic tensor.*int, int"),
    (lambda x, h, W, p: W > h, TypeError, r"W is a 2-d parameter \(H, H\); it can only be used as `W @ v`"),
    (lambda x, h, W, p: torch.maximum(x, h), TypeError, r"torch\.maximum was called on the symbolic tensor 'x'.*where"),
    # W @ p: a vector parameter has no batch rows (it used to build, then compute garbage on cpp)
    (lambda x, h, W, p: W @ p + h, TypeError, r"W @ p: p depends on no input and no state.*parameter of size H"),
    (lambda x, h, W, p: W @ tanh(2 * p) + h, TypeError, r"W @ tanh\(\(2 \* p\)\): .* depends on no input and no state"),
], ids=["max()", "if a > 0", "if h", "where(h)", "clamp(h, x)", "clamp(h)", "maximum/3", "maximum(3, 4)", "W > h",
        "torch.maximum", "W @ p", "W @ f(p)"])
def test_errors_name_the_variable_and_the_way(step, error, message):
    with pytest.raises(error, match=message):
        _define(step)


def test_maximum_of_operands_of_different_sizes_names_them():
    with pytest.raises(ValueError, match=r"symcell\.maximum: h has size H, x has size I \(sizes must be equal, or 1\)"):
        _define(lambda x, h, W, p: maximum(h, x), inputs={"x": "I"})


def test_a_matmul_of_a_cat_with_a_bare_parameter_is_refused_and_one_of_its_value_runs():
    """W @ cat(h, b), b a vector parameter, was taken: the GEMM read b as if it had a row per batch row, on cpp past
    its end (a wrong answer, now and then a crash in free()), and the other backends failed inside their code.
    Refused where it is written (define) or, through a 3-d parameter's blocks, when it is lowered; cat(h, -b), a
    value the step computes, runs and matches autograd (beside a 3-d parameter it does not use)"""
    params = {"W": ("H", "2*H"), "R": (2, "H/2", "H"), "b": ("H",), "U": ("H", "I")}
    with pytest.raises(TypeError, match=r"^W @ cat\(h, b\): its part b is a parameter, which depends on no input and "
                                        r"no state.*declare that vector as a parameter of size H and add it"):
        symcell.define(inputs={"x": "I"}, state={"h": "H"}, params=params)(
            lambda x, h, W, R, b, U: symcell.tanh(W @ cat(h, b) + U @ x))
    Blocked = symcell.define(inputs={"x": "I"}, state={"h": "H"}, params=params, name="Blocked")(
        lambda x, h, W, R, b, U: symcell.tanh(R @ cat(h, b) + U @ x))
    with pytest.raises(TypeError, match=r"its part .* is a parameter, which depends on no input and no state"):
        Blocked(I=3, H=2, backend="reference")(torch.randn(4, 2, 3))
    Negated = symcell.define(inputs={"x": "I"}, state={"h": "H"}, params=params, name="Negated")(
        lambda x, h, W, R, b, U: symcell.tanh(W @ cat(h, -b) + U @ x))
    torch.manual_seed(0)
    cell = Negated(I=3, H=2, backend="reference").double()
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    h, ys = torch.zeros(2, 2, dtype=torch.float64), []
    for t in range(4):
        h = torch.tanh(torch.cat([h, -cell.b.expand(2, 2)], 1) @ cell.W.t() + x[t] @ cell.U.t())
        ys.append(h)
    y, _ = cell(x)
    torch.testing.assert_close(y, torch.stack(ys))
    g, g_ref = torch.autograd.grad(y.sum(), [x, cell.b]), torch.autograd.grad(torch.stack(ys).sum(), [x, cell.b])
    torch.testing.assert_close(g, g_ref)
    # (R, a 3-d parameter this step never uses, was handed to the kernels all the same: "too many values to unpack"
    # on reference, "params must hold 3 entries, got 4" on cpp; unused, it gets no gradient, as in torch)
    cell(x)[0].sum().backward()
    assert cell.R.grad is None and cell.W.grad is not None
