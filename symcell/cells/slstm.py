"""The sLSTM of xLSTM (Beck et al. 2024, section 2.2): exponential input gate, sigmoid forget gate taken in log
space, a normaliser state n and a stabiliser state m, and recurrent weights that are block-diagonal, one block per
head:
    i~, f~, z~, o~ = W x + R h + b                   R: one (H/G, H/G) block per head and gate
    m' = max(log sigmoid(f~) + m, i~)                the stabiliser (eq. 15); i~ where n = 0
    i = exp(i~ - m'),  f = exp(log sigmoid(f~) + m - m'); 0 where n = 0
    c' = f c + i tanh(z~),  n' = f n + i,  h' = sigmoid(o~) c' / n'
Gate order i, f, z, o, as xLSTM's implementation. The states start at zero, as there, and as there the first step
(n = 0, nothing stored yet) takes m' = i~: with max(log sigmoid(f~), i~), an i~ far below it (-88 in float32) made
i underflow to 0 and h' = 0 / 0; f is 0 there as c and n hold nothing (exp of a large m - m' would be inf, and inf
times 0 NaN). n > 0 from the first step on, as i > 0 then."""
import numbers
import operator
from functools import lru_cache

import torch
import torch.nn.functional as F

import symcell
from symcell import cat, exp, maximum, sigmoid, softplus, split, tanh, where

from ..module import Cell


def _slstm_step(x, h, c, n, m, weight_ih, weight_hh, bias):
    # weight_hh is (4 G, H/G, H/G): its blocks applied to h's G heads once per gate give the four gates of R h
    pre_i, pre_f, pre_z, pre_o = split(weight_ih @ x + weight_hh @ cat(h, h, h, h) + bias, 4)
    log_f = -softplus(-pre_f)               # log sigmoid(f~)
    started = n > 0                         # (n = 0 before the first step: see the module docstring)
    m_new = where(started, maximum(log_f + m, pre_i), pre_i)
    i = exp(pre_i - m_new)
    f = where(started, exp(log_f + m - m_new), 0.0)
    c = f * c + i * tanh(pre_z)
    n = f * n + i
    return sigmoid(pre_o) * c / n, c, n, m_new


def slstm_cell(num_heads=1):
    """The sLSTM cell class with `num_heads` heads (dimensions I and H; H a multiple of num_heads), e.g. for
    symcell.RNN(slstm_cell(4), num_layers=2, I=64, H=128)."""
    return _slstm_cell(_heads(num_heads))


def _heads(num_heads):
    """a positive int (numpy's and torch's integers too, as nn's sizes): else, as nn's sizes, a TypeError for
    what is no integer and a ValueError for one below 1"""
    try:
        G = None if isinstance(num_heads, bool) else operator.index(num_heads)
    except TypeError:
        G = None
    if G is None:
        raise TypeError(f"SLSTM: num_heads must be a positive int, got {num_heads!r} ({type(num_heads).__name__})")
    if G <= 0:
        raise ValueError(f"SLSTM: num_heads must be a positive int, got {num_heads!r}")
    return G


@lru_cache(maxsize=None)
def _slstm_cell(G):
    return symcell.define(inputs={"x": "I"}, state={"h": "H", "c": "H", "n": "H", "m": "H"},
                          params={"weight_ih": ("4*H", "I"), "weight_hh": (4 * G, f"H/{G}", f"H/{G}"),
                                  "bias": ("4*H",)}, name="SLSTM")(_slstm_step)


def slstm_reference(x, h, c, n, m, weight_ih, weight_hh, bias):
    """_slstm_step in plain torch: x (B, I), h, c, n, m (B, H) -> (h, c, n, m)."""
    B, (blocks, d, _) = x.shape[0], weight_hh.shape
    rec = torch.einsum("bkj,kij->bki", torch.cat([h, h, h, h], 1).view(B, blocks, d), weight_hh)
    rec = rec.reshape(B, blocks * d)   # (not -1: a batch of none has no size to infer)
    pre_i, pre_f, pre_z, pre_o = (x @ weight_ih.t() + rec + bias).chunk(4, 1)
    log_f = F.logsigmoid(pre_f)
    started = n > 0
    m_new = torch.where(started, torch.maximum(log_f + m, pre_i), pre_i)
    i = torch.exp(pre_i - m_new)
    f = torch.where(started, torch.exp(log_f + m - m_new), torch.zeros_like(m))
    c = f * c + i * torch.tanh(pre_z)
    n = f * n + i
    return torch.sigmoid(pre_o) * c / n, c, n, m_new


class SLSTM(Cell):
    """SLSTM(input_size, hidden_size, num_heads=1): ys, (h, c, n, m) = cell(xs, state=None).

    Parameters weight_ih (4H, I), weight_hh (4 num_heads, H/num_heads, H/num_heads): one block per gate and head,
    bias (4H). ys is h."""

    spec_for = "symcell.cells.slstm_cell(num_heads)"   # (the class's cell: one per head count)

    def __init__(self, input_size, hidden_size, num_heads=1, *, batch_first=False, backend="auto", device=None,
                 dtype=None):
        num_heads = _heads(num_heads)
        if isinstance(hidden_size, numbers.Integral) and hidden_size % num_heads:
            raise ValueError(f"SLSTM: hidden_size ({hidden_size}) must be a multiple of num_heads ({num_heads})")
        super().__init__(spec=slstm_cell(num_heads).spec, I=input_size, H=hidden_size, batch_first=batch_first,
                         backend=backend, device=device, dtype=dtype)
        self.input_size, self.hidden_size, self.num_heads = input_size, hidden_size, num_heads
        self.spec = self._spec   # the class has one cell per head count (slstm_cell); an instance, its own

    def extra_repr(self):
        return f"{super().extra_repr()}, num_heads={self.num_heads}"
