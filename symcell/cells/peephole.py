"""The LSTM with diagonal peephole connections of Graves (2013), eqs. 3-7:
    i = sigmoid(W_xi x + W_hi h + w_ci * c_prev + b_i)
    f = sigmoid(W_xf x + W_hf h + w_cf * c_prev + b_f)
    c = f * c_prev + i * tanh(W_xc x + W_hc h + b_c)
    o = sigmoid(W_xo x + W_ho h + w_co * c + b_o)          (the peephole of o sees the new cell)
    h = o * tanh(c)
The peephole weights are vectors used elementwise (diagonal matrices)."""
import torch

import symcell
from symcell import sigmoid, split, tanh

from ..module import Cell


@symcell.define(inputs={"x": "I"}, state={"h": "H", "c": "H"},
                params={"weight_ih": ("4*H", "I"), "weight_hh": ("4*H", "H"), "bias": ("4*H",),
                        "w_ci": ("H",), "w_cf": ("H",), "w_co": ("H",)}, name="PeepholeLSTM")
def _peephole(x, h, c, weight_ih, weight_hh, bias, w_ci, w_cf, w_co):
    a_i, a_f, a_c, a_o = split(weight_ih @ x + weight_hh @ h + bias, 4)
    i = sigmoid(a_i + w_ci * c)
    f = sigmoid(a_f + w_cf * c)
    c = f * c + i * tanh(a_c)
    o = sigmoid(a_o + w_co * c)
    h = o * tanh(c)
    return h, c


def peephole_reference(x, h, c, weight_ih, weight_hh, bias, w_ci, w_cf, w_co):
    """_peephole in plain torch: x (B, I), h, c (B, H) -> (h, c)."""
    a_i, a_f, a_c, a_o = (x @ weight_ih.t() + h @ weight_hh.t() + bias).chunk(4, 1)
    i = torch.sigmoid(a_i + w_ci * c)
    f = torch.sigmoid(a_f + w_cf * c)
    c = f * c + i * torch.tanh(a_c)
    o = torch.sigmoid(a_o + w_co * c)
    return o * torch.tanh(c), c


class PeepholeLSTM(Cell):
    """PeepholeLSTM(input_size, hidden_size): ys, (h, c) = cell(xs, (h, c))."""

    spec = _peephole.spec

    def __init__(self, input_size, hidden_size, *, batch_first=False, backend="auto", device=None, dtype=None):
        super().__init__(I=input_size, H=hidden_size, batch_first=batch_first, backend=backend,
                         device=device, dtype=dtype)
        self.input_size, self.hidden_size = input_size, hidden_size
