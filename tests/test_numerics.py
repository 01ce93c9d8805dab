"""Saturated cells stay finite; the kink conventions are torch's."""
import math

import pytest
import torch

import symcell
from symcell import elu, relu, sigmoid, softplus, tanh
from symcell.cells import LSTM
from zoo import rel_err

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


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b in ("cpp", "triton")])
def test_float32_softplus_is_accurate_from_tiny_to_saturated(backend):
    """The cpp backend's float softplus is arithmetic (it vectorizes), the triton one's log1p too (triton.language
    has none: its log(1 + exp(x)) was 0 below -17): within a few float32 ulps of torch's in float64, from where
    the result is 1e-35 to where it is x."""
    # (-80: 1.8e-35; below about -87 the result is a denormal, which the kernels flush to 0 by design, sc.h)
    x = torch.cat([torch.linspace(-30, 30, 601), torch.tensor([-80.0, -1e-6, 0.0, 1e-6, 19.99, 20.01, 50.0])])
    cell = Softplus(H=x.numel(), backend=backend)
    ys, _ = cell(x.view(1, 1, -1))
    want = torch.nn.functional.softplus(x.double())
    assert ((ys.view(-1).double() - want).abs() / want.abs().clamp_min(1e-38)).max() < 4e-7


@symcell.define(inputs={"x": "H"}, state={"h": "H"})
def NaNs(x, h):
    a, b, c, d, e, f, g, k = symcell.split(x, 8)
    return symcell.cat(symcell.maximum(a, 0.0), symcell.minimum(b, 0.0), symcell.clamp(c, -1.0, 2.0),
                       symcell.hardtanh(d), symcell.hardsigmoid(e), softplus(f), elu(g),
                       symcell.maximum(k, 0.0) ** 2) + 0.5 * h


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_in_is_nan_out_through_every_function(backend):
    """(triton's maximum and minimum drop a NaN by default: maximum, minimum, clamp, hardtanh, hardsigmoid, softplus
    and elu made a NaN a number, on a GPU too, so a diverging run went on as if it did not)"""
    x = torch.full((2, 1, 8), float("nan"), requires_grad=True)
    ys, _ = NaNs(H=8, backend=backend)(x)
    (g,) = torch.autograd.grad(ys.sum(), x)
    assert torch.isnan(ys).all()
    assert torch.isnan(g[:, :, 5]).all()   # softplus's, as torch's (the others' conventions at NaN are torch's 0 or 1)


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


@symcell.define(inputs={"x": "H"}, state={"h": "H"})
def Exponents(x, h):
    """exponents as written: sympy.nsimplify made sqrt(2) of math.sqrt(2) (which the C++ and Triton printers could
    not write: a TypeError at the first call), 1/10**20 of 1e-20 (the reference backend's backward divided a
    tensor by an int past int64) and an Integer of -1e20"""
    s = sigmoid(x)
    return (s ** math.sqrt(2) + s ** math.log(2) + s ** 0.1234567891234 + (1 + s) ** 1e-20 + (1 + s) ** -1e20
            + (x + 3) ** 2.9999 * 1e-3 + 0.5 * h)


def _exponents_eager(x, h):
    s = torch.sigmoid(x)
    return (s ** math.sqrt(2) + s ** math.log(2) + s ** 0.1234567891234 + (1 + s) ** 1e-20 + (1 + s) ** -1e20
            + (x + 3) ** 2.9999 * 1e-3 + 0.5 * h)


@pytest.mark.parametrize("backend,dtype", DTYPES)
def test_exponents_run_as_written(backend, dtype):
    cell = Exponents(H=3, backend=backend).to(dtype)
    x = torch.tensor([[[0.5, -0.2, 1.0]], [[-3.5, 0.1, 0.0]]], dtype=dtype, requires_grad=True)
    ys, _ = cell(x)
    h, want = torch.zeros(1, 3, dtype=dtype), []
    for t in range(2):
        h = _exponents_eager(x[t], h)
        want.append(h)
    want = torch.stack(want)
    # x + 3 < 0 at one place: a non-integer power of a negative number is NaN, as torch's
    assert torch.equal(torch.isnan(ys), torch.isnan(want)) and torch.isnan(want).any()
    tol = dict(rtol=1e-4 if backend == "triton" else 1e-6 if dtype == torch.float32 else 1e-9, atol=1e-6)
    torch.testing.assert_close(ys, want, equal_nan=True, **tol)
    g, = torch.autograd.grad(ys[0].sum(), x)     # (step 0 has no NaN, and its gradient reaches only x[0])
    g_want, = torch.autograd.grad(want[0].sum(), x)
    torch.testing.assert_close(g[0], g_want[0], **tol)
    text = Exponents.gradients()   # (sigmoid(x) is named _f0 in the long forward region)
    assert "sqrt(2)" not in text and "_f0 = sigmoid(x)" in text and "_f0**1.4142135623731" in text


def test_an_exponent_near_an_integer_is_not_rounded_to_it():
    @symcell.define(inputs={"x": "H"}, state={"h": "H"})
    def NearlyCube(x, h):          # (sympy.nsimplify made it x**3: -8 at x = -2, where torch gives NaN)
        return x ** 2.9999999999 + x ** 1e-300 + 0.5 * h

    assert "x**2.9999999999" in NearlyCube.gradients()
    x = torch.tensor([[[-2.0, 0.0, 1.5]]], dtype=torch.float64)
    ys, _ = NearlyCube(H=3, backend="reference").double()(x)
    torch.testing.assert_close(ys[0], x[0] ** 2.9999999999 + x[0] ** 1e-300, equal_nan=True, rtol=1e-12, atol=0)
    assert torch.isnan(ys[0, 0, 0]) and ys[0, 0, 1] == 0     # (0 ** 1e-300 is 0: it was 0 ** 0 = 1)


@symcell.define(inputs={"x": "H"}, state={"h": "H"})
def InfinitePower(x, h):
    return sigmoid(x) ** float("inf") + 0.5 * h     # (the Triton printer wrote the name inf)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_infinite_exponent(backend):
    x = torch.tensor([[[0.5, -0.2]], [[3.0, 0.0]]])
    ys, _ = InfinitePower(H=2, backend=backend)(x)
    assert torch.equal(ys, torch.zeros_like(ys))     # sigmoid < 1: its infinite power is 0, as torch's


@pytest.mark.parametrize("body, shows", [
    (lambda x, h: symcell.log(x - x) + h, r"log\(\(x - x\)\): this value folds to zoo, no real number"),
    (lambda x, h: h / (x * 0), r"\(h / \(x \* 0\)\): this value folds to zoo"),
    (lambda x, h: h * float("nan") + x, r"\(h \* nan\): this value folds to nan"),
    (lambda x, h: h * 0 * float("inf") + x, r"this value folds to nan"),
    (lambda x, h: symcell.sqrt(h * 0 - 1) + x, r"this value folds to I"),
    # (only one branch: the message said "for every input", and named sympy's Where)
    (lambda x, h: symcell.where(x > 0, float("nan"), h), r"which holds NaN, no real number .*one branch of a where"),
])
def test_a_value_sympy_folds_to_no_number_is_refused(body, shows):
    """log(x - x) is sympy's complex infinity (the reference backend failed with "name 'zoo' is not defined", the
    cpp one in its printer), and h * nan + x folded to nan, the gradient of x 0 where torch's is 1"""
    body.__name__ = "Folds"
    cell = symcell.define(inputs={"x": "H"}, state={"h": "H"})(body)
    with pytest.raises(ValueError, match=shows + r".*write what you mean"):
        cell(H=2, backend="reference")(torch.randn(2, 1, 2))


@pytest.mark.parametrize("backend,dtype", DTYPES)
def test_slstm_first_step_from_zero_is_finite_whatever_the_input_gate(backend, dtype):
    """from the zero state the stabiliser took max(log sigmoid(f~), i~): an i~ far below (-88 in float32, -746 in
    float64) made the input gate underflow to 0 and h = 0 / 0 (NaN, spreading through the head), or 0 silently;
    xLSTM's first step takes m = i~ (h = sigmoid(o~) tanh(z~))"""
    from symcell.cells import SLSTM
    cell = SLSTM(2, 2, backend=backend).to(dtype)
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hh.zero_()
        cell.bias.copy_(torch.tensor([-800.0, -800.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0]))   # i~, f~, z~, o~
    x = torch.zeros(3, 1, 2, dtype=dtype, requires_grad=True)
    ys, _ = cell(x)
    torch.testing.assert_close(ys[0, 0], torch.full((2,), 0.5 * math.tanh(0.5), dtype=dtype))
    assert torch.isfinite(ys).all()
    big = SLSTM(3, 4, num_heads=2, backend=backend).to(dtype)
    xb = (torch.randn(4, 2, 3, dtype=dtype) * 1e4).requires_grad_()
    out, _ = big(xb)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(xb.grad).all()


@symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("2*H", "I")})
def PowerOfProducts(x, h, W):
    a, b = symcell.split(W @ x, 2)
    return (a * a) ** 1.5 * 0.1 + (sigmoid(b) * h) ** 1.5


@pytest.mark.parametrize("backend,dtype", DTYPES)
def test_a_non_integer_power_of_a_product_has_finite_gradients_where_a_factor_is_0(backend, dtype):
    """sympy's rule for a power, b**p * p * b' / b, stayed a division where b is a product or a power:
    (a * a)**1.5 and (gate * h)**1.5 had 0/0, NaN, gradients at a zero state or a zero input row, where torch's
    are 0; the power rule p * b**(p - 1) * b' is used now"""
    torch.manual_seed(0)
    cell = PowerOfProducts(I=3, H=4, backend=backend).to(dtype)
    xs = torch.rand(5, 2, 3, dtype=dtype)
    xs[3, 1] = 0.0                                  # a padding row
    h0 = torch.zeros(2, 4, dtype=dtype, requires_grad=True)
    ys, _ = cell(xs, (h0,))
    grads = torch.autograd.grad(ys.sum(), (cell.W, h0))
    W, h = cell.W.detach().clone().requires_grad_(), h0.detach().clone().requires_grad_()
    want, hs = [], h
    for x in xs:
        a, b = (x @ W.T).chunk(2, -1)
        hs = (a * a) ** 1.5 * 0.1 + (torch.sigmoid(b) * hs) ** 1.5
        want.append(hs)
    wanted = torch.autograd.grad(torch.stack(want).sum(), (W, h))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ys, torch.stack(want), **tol)
    for got, ref in zip(grads, wanted):
        assert torch.isfinite(ref).all()
        torch.testing.assert_close(got, ref, **tol)
    # second derivatives (the tangent scans differentiate with the power rule too), in float64, away from 0
    if dtype == torch.float64:
        cell = PowerOfProducts(I=3, H=2, backend=backend).double()
        xs = torch.rand(3, 2, 3, dtype=torch.float64, requires_grad=True)
        h0 = (torch.rand(2, 2, dtype=torch.float64) + 0.5).requires_grad_()
        W = cell.W.detach().clone().requires_grad_()

        def run(xs, h0, W):
            return torch.func.functional_call(cell, {"W": W}, (xs, (h0,)))[0]
        assert torch.autograd.gradgradcheck(run, (xs, h0, W), check_fwd_over_rev=True)


@pytest.mark.cpp
@pytest.mark.parametrize("dtype,tiny", [(torch.float32, 1e-40), (torch.float64, 1e-310)])
def test_the_log_of_a_subnormal_number_in_cpp_is_that_of_the_zero_it_is_read_as(dtype, tiny):
    """The cpp kernels flush subnormal numbers to zero (README): log(1e-40) was -103.97 there (glibc's vector log
    read the number's bits), neither torch's -92.10 nor the -inf of the 0 the kernel reads it as"""
    cell = symcell.define(inputs={"x": "H"}, state={"h": "H"})(lambda x, h: symcell.log(x) + h)
    x = torch.tensor([[[tiny, 0.0, 2.0]]], dtype=dtype)
    ys, _ = cell(H=3, backend="cpp").to(dtype)(x)
    assert ys[0, 0, 0] == -math.inf and ys[0, 0, 1] == -math.inf
    assert ys[0, 0, 2] == pytest.approx(math.log(2.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_quotients_gradient_keeps_float32s_range(backend):
    """x / h's gradient wrt h, -g*x/h**2, was printed -g*x/(h*h): h*h left float32's range at |h| < 1e-19 or
    > 1e19, and the gradient was inf or 0 where torch's is finite; now -g*x/h/h"""
    cell = symcell.define(inputs={"x": "H"}, state={"h": "H"})(lambda x, h: x / h)
    v = torch.tensor([1e-30, 1e-25, 1e-20, 1.0, 1e20, 1e25, 1e30])
    x = v.reshape(1, 1, -1).clone().requires_grad_()
    h = v.reshape(1, -1).clone().requires_grad_()
    ys, _ = cell(H=v.numel(), backend=backend)(x, h)
    gx, gh = torch.autograd.grad(ys.sum(), (x, h))
    torch.testing.assert_close(gx.reshape(-1), 1 / v, rtol=1e-6, atol=0)
    torch.testing.assert_close(gh.reshape(-1), -1 / v, rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_layer_norms_gradient_keeps_float32s_range(backend):
    """The derived backward of (v - mean) / sqrt(var + eps) raises var to the power -3/2, printed v**1.5: past
    float32's range at inputs of magnitude 1e13, where dx came out off by half with no warning; now /v/sqrt(v)"""
    def LayerNormed(x, h):
        mu = symcell.mean(x)
        return (x - mu) / symcell.sqrt(symcell.mean((x - mu) ** 2) + 1e-5) + 0 * h
    cell = symcell.define(inputs={"x": "H"}, state={"h": "H"})(LayerNormed)(H=3, backend=backend)
    torch.manual_seed(0)
    base, cot = torch.randn(1, 2, 3, dtype=torch.float64), torch.randn(1, 2, 3, dtype=torch.float64)
    for scale in (1.0, 1e13, 1e15):
        x = (base * scale).float().requires_grad_()
        ys, _ = cell(x)
        (gx,) = torch.autograd.grad((ys * cot.float()).sum(), x)
        x64 = (base * scale).requires_grad_()
        mu = x64.mean(-1, keepdim=True)
        want = (x64 - mu) / torch.sqrt(((x64 - mu) ** 2).mean(-1, keepdim=True) + 1e-5)
        (gx64,) = torch.autograd.grad((want * cot).sum(), x64)
        assert rel_err(gx.double(), gx64) < 1e-4, scale


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "cpp"])
def test_a_power_common_subexpressions_share_keeps_float32s_range(backend):
    """Several gradients sharing h**-2 get it as a temp of its own (sympy.cse: _c2 = h**(-2)), a power alone,
    which was printed 1/(h*h) (0 at h = 1e20 in float32) after products had become divisions. (Not cpp: its
    kernels flush the subnormal 1e-40 that h**-2 alone is there to 0, README's Limitations.)"""
    f = lambda x, z, h: x * z / h / h - x / h + z / h / h / h   # noqa: E731
    cell = symcell.define(inputs={"x": "H", "z": "H"}, state={"h": "H"})(f)(H=3, backend=backend)
    def grads(dtype, run):
        x = torch.tensor([1e20, 1e19, 3.0], dtype=dtype).reshape(1, 1, 3).requires_grad_()
        z = torch.ones(1, 1, 3, dtype=dtype, requires_grad=True)
        h = torch.tensor([1e20, 3e19, 2.0], dtype=dtype).reshape(1, 3).requires_grad_()
        return torch.autograd.grad(run(x, z, h).sum(), (x, z, h))
    got = grads(torch.float32, lambda x, z, h: cell((x, z), h)[0])
    want = grads(torch.float64, lambda x, z, h: f(x[0], z[0], h))
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double().reshape(-1), b.reshape(-1), rtol=1e-5, atol=0)
