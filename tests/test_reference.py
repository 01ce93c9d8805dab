"""The reference backend against an independent eager loop with torch autograd, and gradcheck."""
import pytest
import torch

import symcell
from zoo import CASES, eager_scan, gradcheck_scan, random_inputs, rel_err


def run_symcell(cell, xs, states):
    ys, final = symcell.scan(cell, tuple(xs), tuple(states))
    return (ys if isinstance(ys, tuple) else (ys,)), final


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("T", [1, 7])
def test_values_and_all_gradients_match_eager_autograd(name, T):
    factory, step, outputs = CASES[name]
    torch.manual_seed(1)
    cell = factory(backend="reference").double()
    xs, states = random_inputs(cell, T=T, B=3)
    params = list(cell.parameters())
    ys, final = run_symcell(cell, xs, states)
    ys_ref, final_ref = eager_scan(step, xs, states, params, outputs)
    for a, b in zip(ys + final, ys_ref + final_ref):
        assert a.shape == b.shape
        assert rel_err(a, b) < 1e-9
    # cotangents on every output sequence and every final state
    g = torch.Generator().manual_seed(2)
    cots = [torch.randn(a.shape, generator=g, dtype=a.dtype) for a in ys + final]
    wrt = xs + states + params
    loss = sum((a * c).sum() for a, c in zip(ys + final, cots))
    loss_ref = sum((a * c).sum() for a, c in zip(ys_ref + final_ref, cots))
    got = torch.autograd.grad(loss, wrt)
    want = torch.autograd.grad(loss_ref, wrt)
    for a, b in zip(got, want):
        assert rel_err(a, b) < 1e-9


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck_float64(name):
    factory, _, _ = CASES[name]
    torch.manual_seed(3)
    cell = factory(backend="reference").double()
    xs, states = random_inputs(cell, T=3, B=2, seed=4)
    assert gradcheck_scan(cell, xs, states)


def test_one_autograd_node_per_sequence():
    cell = CASES["LSTM"][0](backend="reference")
    ys, (h, c) = symcell.scan(cell, torch.randn(5, 2, 3), None)
    seen, stack = [], [ys.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None:
            continue
        seen.append(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    # one node for the whole sequence (its derived backward), then the leaves
    assert [s for s in seen if s != "AccumulateGrad"] == ["ScanBackward"]


def test_batch_first_reverse_and_step_agree_with_the_plain_scan():
    torch.manual_seed(0)
    cell = CASES["LLTM"][0](backend="reference").double()
    x = torch.randn(6, 2, 4, dtype=torch.float64)
    ys, (h, c) = cell(x)
    bf = CASES["LLTM"][0](backend="reference", batch_first=True).double()
    bf.load_state_dict(cell.state_dict())
    ys_bf, (h_bf, c_bf) = bf(x.transpose(0, 1))
    assert torch.equal(ys_bf.transpose(0, 1), ys) and torch.equal(h_bf, h)
    ys_r, (h_r, _) = symcell.scan(cell, x, reverse=True)
    ys_f, (h_f, _) = symcell.scan(cell, x.flip(0))
    assert torch.equal(ys_r, ys_f.flip(0)) and torch.equal(h_r, h_f)
    state = None
    for t in range(6):
        state = cell.step(x[t], state)
        assert torch.allclose(state[0], ys[t], rtol=0, atol=1e-14)


def test_zero_length_sequence_returns_the_initial_state_and_its_gradient():
    cell = CASES["GRU"][0](backend="reference").double()
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    out, (h,) = cell(torch.randn(0, 2, 3, dtype=torch.float64), (h0,))
    assert out.shape == (0, 2, 4) and torch.equal(h, h0)
    (g,) = torch.autograd.grad(h.sum(), h0)
    assert torch.equal(g, torch.ones_like(h0))


def test_float32_and_no_grad():
    cell = CASES["PeepholeLSTM"][0](backend="reference")
    x = torch.randn(4, 2, 3)
    with torch.no_grad():
        ys, _ = cell(x)
    assert ys.dtype == torch.float32 and ys.grad_fn is None
    ys2, _ = cell(x)
    assert torch.equal(ys, ys2.detach())


def test_default_init_is_uniform_one_over_sqrt_first_state_size():
    from zoo import TwoScale
    torch.manual_seed(0)
    cell = TwoScale(I=3, H=64)  # first state h has size 64 -> bound 1/8
    for p in cell.parameters():
        assert p.abs().max() <= 1 / 8
        if p.dim() == 2:  # hundreds of draws: the spread reaches the bound
            assert p.abs().max() > 0.95 / 8


def test_source_is_readable_generated_code():
    cell = CASES["LLTM"][0](backend="reference")
    src = cell.source()
    assert "def forward(" in src and "def backward(" in src
    assert "for _t in range(_T):" in src and "for _t in reversed(range(_T)):" in src
    assert "torch.sigmoid(" in src
