"""symcell.cells.LSTM / GRU against nn.LSTM / nn.GRU with the same state_dict."""
import pytest
import torch
from torch import nn

from symcell.cells import GRU, LSTM


def _grads(out, tensors, cot):
    return torch.autograd.grad(sum((o * c).sum() for o, c in zip(out, cot)), tensors)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_same_outputs_and_gradients_after_load_state_dict(kind, bias, batch_first):
    torch.manual_seed(0)
    I, H, T, B = 3, 5, 6, 2
    ref = (nn.LSTM if kind == "lstm" else nn.GRU)(I, H, bias=bias, batch_first=batch_first).double()
    cell = (LSTM if kind == "lstm" else GRU)(I, H, bias=bias, batch_first=batch_first,
                                             backend="reference").double()
    assert set(cell.state_dict()) == set(ref.state_dict())
    cell.load_state_dict(ref.state_dict())
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, B, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(1, B, H, dtype=torch.float64, requires_grad=True)
    hx, init = ((h0, c0), [h0, c0]) if kind == "lstm" else (h0, [h0])
    out_r, st_r = ref(x, hx)
    out_s, st_s = cell(x, hx)
    st_r = st_r if kind == "lstm" else (st_r,)
    st_s = st_s if kind == "lstm" else (st_s,)
    for a, b in zip((out_s, *st_s), (out_r, *st_r)):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    cot = [torch.randn_like(t) for t in (out_r, *st_r)]
    wrt = [x, *init]
    g_s = _grads((out_s, *st_s), wrt + list(cell.parameters()), cot)
    g_r = _grads((out_r, *st_r), wrt + [dict(ref.named_parameters())[n] for n, _ in cell.named_parameters()], cot)
    for a, b in zip(g_s, g_r):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_default_state_and_weights_move_back_to_nn():
    torch.manual_seed(1)
    cell = LSTM(4, 3, backend="reference")
    ref = nn.LSTM(4, 3)
    ref.load_state_dict(cell.state_dict())
    x = torch.randn(5, 2, 4)
    out_s, (h_s, c_s) = cell(x)
    out_r, (h_r, c_r) = ref(x)
    assert h_s.shape == (1, 2, 3)
    torch.testing.assert_close(out_s, out_r, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c_s, c_r, rtol=1e-5, atol=1e-6)
    cell.flatten_parameters()  # a no-op, for cuDNN-style code


def test_initial_state_shape_is_checked():
    cell = GRU(3, 4)
    with pytest.raises(ValueError, match=r"h_0 must have shape \(1, B, 4\), got \(2, 4\)"):
        cell(torch.randn(5, 2, 3), torch.zeros(2, 4))


def test_unsupported_options_say_so():
    with pytest.raises(NotImplementedError, match="num_layers"):
        LSTM(3, 4, num_layers=2)
