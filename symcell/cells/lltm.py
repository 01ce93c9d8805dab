"""The LLTM of the PyTorch C++ extension tutorial, with its parameter layout: `weights` (3S, S+F) applied to
cat(h, x) and `bias` (3S), so weights move between the two unchanged."""
import torch
import torch.nn.functional as F

import symcell
from symcell import cat, elu, sigmoid, split, tanh

from ..module import Cell


@symcell.define(inputs={"x": "F"}, state={"h": "S", "c": "S"},
                params={"weights": ("3*S", "S+F"), "bias": ("3*S",)}, name="LLTM")
def _lltm(x, h, c, weights, bias):
    input_gate, output_gate, candidate = split(weights @ cat(h, x) + bias, 3)
    c = c + sigmoid(input_gate) * elu(candidate)
    h = tanh(c) * sigmoid(output_gate)
    return h, c


def lltm_reference(x, h, c, weights, bias):
    """_lltm in plain torch (the tutorial's Python module): x (B, F), h, c (B, S) -> (h, c)."""
    input_gate, output_gate, candidate = (torch.cat([h, x], 1) @ weights.t() + bias).chunk(3, 1)
    c = c + torch.sigmoid(input_gate) * F.elu(candidate)
    return torch.tanh(c) * torch.sigmoid(output_gate), c


class LLTM(Cell):
    """LLTM(input_features, state_size): ys, (h, c) = lltm(xs, (h, c)); lltm.step(x, (h, c)) for one step."""

    spec = _lltm.spec

    def __init__(self, input_features, state_size, *, batch_first=False, backend="auto", device=None, dtype=None):
        super().__init__(F=input_features, S=state_size, batch_first=batch_first, backend=backend,
                         device=device, dtype=dtype)
        self.input_features, self.state_size = input_features, state_size
