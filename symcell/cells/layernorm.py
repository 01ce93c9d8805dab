"""The LSTM with layer normalization of haste's LayerNormLSTM (after Ba et al. 2016, section 3.1): the input and
recurrent pre-activations normalized separately over their 4H features (each with a gain, the bias after
them), and the cell normalized (gain and shift) before its tanh:
    gates = LN(W_ih x) * gamma_ih + LN(W_hh h) * gamma_hh + bias          LN(v) = (v - mean(v)) / sqrt(var(v) + eps)
    i, f, g, o = split(gates, 4)                                          (nn.LSTM's gate order and layout)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h' = sigmoid(o) * tanh(LN(c') * gamma_c + beta_c)
The means and variances are reductions over a row's features, inside the fused kernels."""
import torch
import torch.nn.functional as F

import symcell
from symcell import mean, sigmoid, split, sqrt, tanh

from ..module import Cell

EPS = 1e-5


def layer_norm(v, eps=EPS):
    """(v - mean(v)) / sqrt(var(v) + eps) over v's features, with the variance's divisor its size (biased), as
    torch's layer norm"""
    mu = mean(v)
    var = mean((v - mu) ** 2)
    return (v - mu) / sqrt(var + eps)


@symcell.define(inputs={"x": "I"}, state={"h": "H", "c": "H"},
                params={"weight_ih": ("4*H", "I"), "weight_hh": ("4*H", "H"), "bias": ("4*H",),
                        "gamma_ih": ("4*H",), "gamma_hh": ("4*H",), "gamma_c": ("H",), "beta_c": ("H",)},
                name="LayerNormLSTM")
def _layernorm_lstm(x, h, c, weight_ih, weight_hh, bias, gamma_ih, gamma_hh, gamma_c, beta_c):
    gates = layer_norm(weight_ih @ x) * gamma_ih + layer_norm(weight_hh @ h) * gamma_hh + bias
    i, f, g, o = split(gates, 4)
    c = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h = sigmoid(o) * tanh(layer_norm(c) * gamma_c + beta_c)
    return h, c


def layernorm_lstm_reference(x, h, c, weight_ih, weight_hh, bias, gamma_ih, gamma_hh, gamma_c, beta_c):
    """_layernorm_lstm in plain torch (F.layer_norm): x (B, I), h, c (B, H) -> (h, c)."""
    ln = lambda v: F.layer_norm(v, v.shape[-1:], eps=EPS)  # noqa: E731
    gates = ln(x @ weight_ih.t()) * gamma_ih + ln(h @ weight_hh.t()) * gamma_hh + bias
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(ln(c) * gamma_c + beta_c), c


class LayerNormLSTM(Cell):
    """LayerNormLSTM(input_size, hidden_size): ys, (h, c) = cell(xs, (h, c)). Stack it with
    symcell.RNN(LayerNormLSTM.spec, num_layers=..., I=..., H=...)."""

    spec = _layernorm_lstm.spec
    spec.initial = {"gamma_ih": 1.0, "gamma_hh": 1.0, "gamma_c": 1.0, "beta_c": 0.0}

    def __init__(self, input_size, hidden_size, *, batch_first=False, backend="auto", device=None, dtype=None):
        super().__init__(I=input_size, H=hidden_size, batch_first=batch_first, backend=backend,
                         device=device, dtype=dtype)
        self.input_size, self.hidden_size = input_size, hidden_size

    # reset_parameters: weights and bias uniform(-k, k), k = 1/sqrt(H), as nn.LSTM; the gains 1 and the shift 0
    # (spec.initial), as nn.LayerNorm; symcell.RNN stacking the spec starts them so too
