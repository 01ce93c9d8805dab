"""Odd but valid inputs on every backend: tiny sizes, views, no-grad modes, long sequences, NaN and inf."""
import pytest
import torch

import symcell
from symcell.cells import LSTMCell
from symcell.cells import lstm_reference
from zoo import eager_scan, rel_err

DEVICE = {"reference": "cpu", "cpp": "cpu", "triton": "cuda" if torch.cuda.is_available() else "cpu"}
BACKENDS = [b for b in ("reference", "cpp", "triton") if symcell.backends.get(b).usable(torch.device(DEVICE[b]))]
DTYPE = {"reference": torch.float64, "cpp": torch.float64, "triton": torch.float32}
TOL = {"reference": 1e-10, "cpp": 1e-10, "triton": 1e-4}


def _grads(outs, wrt):
    """gradients of a fixed random projection of the outputs"""
    g = torch.Generator().manual_seed(1)
    cots = [torch.randn(o.shape, generator=g, dtype=o.dtype).to(o.device) for o in outs]
    return torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs, cots)), wrt)


def _scan(cell, x, states):
    ys, fin = symcell.scan(cell, x, states)
    return (ys, *fin)


def _lstm(backend, I, H):
    torch.manual_seed(0)
    return LSTMCell(I, H, backend=backend).to(DEVICE[backend], DTYPE[backend])


def _inputs(backend, T, B, I, H, seed=0):
    g = torch.Generator().manual_seed(seed)
    dev, dtype = DEVICE[backend], DTYPE[backend]
    x = torch.randn(T, B, I, generator=g, dtype=dtype).to(dev).requires_grad_()
    states = [torch.randn(B, H, generator=g, dtype=dtype).to(dev).requires_grad_() for _ in range(2)]
    return x, states


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_of_one_and_sizes_of_one_match_autograd(backend):
    for T, B, I, H in [(5, 1, 1, 1), (3, 1, 2, 1), (4, 2, 1, 3)]:
        cell = _lstm(backend, I, H)
        x, states = _inputs(backend, T, B, I, H)
        wrt = [x, *states, *cell.parameters()]
        outs = _scan(cell, x, states)
        (ys_r,), fin_r = eager_scan(lstm_reference, [x], states, list(cell.parameters()), (0,))
        refs = (ys_r, *fin_r)
        for a, b in zip(outs + _grads(outs, wrt), refs + _grads(refs, wrt)):
            assert rel_err(a, b) < TOL[backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_and_batch_first_views_give_the_same_results(backend):
    T, B, I, H = 4, 3, 3, 4
    cell = _lstm(backend, I, H)
    x, states = _inputs(backend, T, B, I, H)
    wrt = [x, *states, *cell.parameters()]
    base = _scan(cell, x, states)
    base_g = _grads(base, wrt)
    wide = torch.zeros(T, B, 2 * I, dtype=x.dtype, device=x.device)
    views = {
        "strided features": lambda t: (wide.index_copy(2, torch.arange(0, 2 * I, 2, device=x.device), t))[..., ::2],
        "batch-major storage": lambda t: t.transpose(0, 1).contiguous().transpose(0, 1),
    }
    for name, view in views.items():
        xv = view(x)
        assert not xv.is_contiguous(), name
        hv = [s.t().contiguous().t() for s in states]     # (B, H) views of (H, B) storage
        assert not hv[0].is_contiguous()
        outs = _scan(cell, xv, hv)
        for a, b in zip(outs + _grads(outs, wrt), base + base_g):
            assert rel_err(a, b) < TOL[backend], name
    cell.batch_first = True
    outs = symcell.scan(cell, x.transpose(0, 1), states)   # a (B, T, I) view of (T, B, I) storage
    torch.testing.assert_close(outs[0].transpose(0, 1), base[0], rtol=TOL[backend], atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_grad_modes_save_no_residuals(backend):
    T, B, I, H = 4, 3, 3, 4
    cell = _lstm(backend, I, H)
    x, states = _inputs(backend, T, B, I, H)
    kernel = cell._kernel(torch.device(DEVICE[backend]))
    calls = []
    forward = kernel.forward

    def recording(xs, inits, params, save, lengths=None):
        calls.append(save)
        return forward(xs, inits, params, save, lengths)
    kernel.forward = recording
    try:
        with torch.no_grad():
            ys, _ = cell(x, states)
        assert ys.grad_fn is None and calls[-1] is False
        with torch.inference_mode():
            ys_inf, _ = cell(x, states)
        assert ys_inf.is_inference() and calls[-1] is False
        torch.testing.assert_close(ys_inf, ys, rtol=0, atol=0)
        # nothing requires grad: no graph, no residuals
        frozen = [t.detach() for t in (x, *states)]
        for p in cell.parameters():
            p.requires_grad_(False)
        ys, _ = cell(frozen[0], frozen[1:])
        assert ys.grad_fn is None and calls[-1] is False
        # only the input requires grad: its gradient, and the parameters get none
        xg = x.detach().requires_grad_()
        ys, _ = cell(xg, frozen[1:])
        assert calls[-1] is True
        ys.sum().backward()
        assert xg.grad is not None and all(p.grad is None for p in cell.parameters())
    finally:   # (the class's method again: an instance attribute left here hid it from later tests' spies)
        del kernel.forward


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.cpp) if b == "reference" else b
                                     for b in BACKENDS])   # the reference backend is checked against cpp
def test_a_sequence_of_ten_thousand_steps(backend):
    # Triton's interpreter runs some fifteen steps a second here (forward and backward): on CPU, a shorter sequence
    T = 10000 if backend != "triton" or DEVICE[backend] == "cuda" else 100
    cell = _lstm(backend, 2, 3)
    x, states = _inputs(backend, T, 2, 2, 3)
    ref = _lstm("cpp" if backend == "reference" else "reference", 2, 3).to(x.dtype)
    ref.load_state_dict({k: v.cpu() for k, v in cell.state_dict().items()})
    wrt = [x, *states, *cell.parameters()]
    outs = _scan(cell, x, states)
    refs = _scan(ref, x.detach().cpu().requires_grad_(), [s.detach().cpu() for s in states])
    for a, b in zip(outs, refs):
        assert a.shape == b.shape and torch.isfinite(a).all()
        assert rel_err(a, b) < TOL[backend] * 10
    assert all(torch.isfinite(g).all() for g in _grads(outs, wrt))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_in_one_sequence_stays_in_that_sequence(backend, bad):
    cell = _lstm(backend, 3, 4)
    x, states = _inputs(backend, 5, 3, 3, 4)
    with torch.no_grad():
        x[2, 1, 0] = bad
    ys, (h, c) = cell(x, states)
    for row in (0, 2):
        assert torch.isfinite(ys[:, row]).all() and torch.isfinite(h[row]).all() and torch.isfinite(c[row]).all()
    assert torch.isfinite(ys[:2, 1]).all()
    (g,) = torch.autograd.grad(ys.sum() + h.sum() + c.sum(), x)
    assert torch.isfinite(g[:, 0]).all() and torch.isfinite(g[:, 2]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_lengths_changed_in_place_after_the_forward_leave_its_gradients_alone(backend):
    """the scan kept the caller's lengths tensor itself: filled in place before the backward (a buffer reused for
    the next batch), it changed the gradients (the padding got some) or sent the kernels past the sequence; nn's
    pack_padded_sequence copies them"""
    cell = _lstm(backend, 3, 4)
    x = torch.randn(5, 3, 3, dtype=DTYPE[backend], device=DEVICE[backend], requires_grad=True)

    def grads(mutate):
        lengths = torch.tensor([5, 3, 2])
        ys, (h, c) = cell(x, lengths=lengths)
        if mutate:
            lengths.fill_(mutate)
        return _grads([ys, h, c], [x, cell.weight_hh])
    want = grads(0)
    for value in (5, 10 ** 6):
        assert all(torch.equal(g, w) for g, w in zip(grads(value), want))


@pytest.mark.parametrize("backend", BACKENDS)
def test_tensors_with_the_negative_bit_are_read_as_their_values(backend):
    """torch._neg_view (a lazy negation some backward formulas send) keeps the values' negatives in memory: the
    triton kernels read that memory raw, so a negated state, weight or output gradient came out wrong"""
    cell = _lstm(backend, 3, 4)
    dev, dt = DEVICE[backend], DTYPE[backend]
    g = torch.Generator().manual_seed(1)
    x, h, c, cot = (torch.randn(*s, generator=g, dtype=dt).to(dev) for s in ((5, 2, 3), (2, 4), (2, 4), (5, 2, 4)))
    w = cell.weight_hh.detach()

    def run(negate):
        leaves = [t.clone().requires_grad_() for t in (x, h, c, w)]
        args = [torch._neg_view(t) if negate else -t for t in leaves]
        ys, _ = torch.func.functional_call(cell, {**dict(cell.named_parameters()), "weight_hh": args[3]},
                                           (args[0], tuple(args[1:3])))
        cots = torch._neg_view(cot) if negate else -cot
        return [ys, *torch.autograd.grad(ys, leaves, cots)]
    for got, want in zip(run(True), run(False)):
        assert rel_err(got, want) < TOL[backend]
