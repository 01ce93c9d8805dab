"""The LLTM of the PyTorch C++ extension tutorial, with its parameter layout: `weights` (3S, S+F) applied to
cat(h, x) and `bias` (3S), so weights move between the two unchanged."""
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


class LLTM(Cell):
    """LLTM(input_features, state_size): ys, (h, c) = lltm(xs, (h, c)); lltm.step(x, (h, c)) for one step."""

    spec = _lltm.spec

    def __init__(self, input_features, state_size, *, batch_first=False, backend="auto", device=None, dtype=None):
        super().__init__(F=input_features, S=state_size, batch_first=batch_first, backend=backend,
                         device=device, dtype=dtype)
        self.input_features, self.state_size = input_features, state_size
