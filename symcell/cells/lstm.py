"""nn.LSTM / nn.GRU equations, gate order, call signature and state_dict keys (one layer, one direction)."""
import symcell
from symcell import sigmoid, split, tanh

from ..module import Cell


def _lstm_step(x, h, c, weight_ih_l0, weight_hh_l0, bias_ih_l0=None, bias_hh_l0=None):
    gates = weight_ih_l0 @ x + weight_hh_l0 @ h
    if bias_ih_l0 is not None:
        gates = gates + bias_ih_l0 + bias_hh_l0
    i, f, g, o = split(gates, 4)            # nn.LSTM's gate order
    c = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h = sigmoid(o) * tanh(c)
    return h, c


def _gru_step(x, h, weight_ih_l0, weight_hh_l0, bias_ih_l0=None, bias_hh_l0=None):
    gi, gh = weight_ih_l0 @ x, weight_hh_l0 @ h
    if bias_ih_l0 is not None:
        gi, gh = gi + bias_ih_l0, gh + bias_hh_l0
    i_r, i_z, i_n = split(gi, 3)            # nn.GRU's gate order: reset, update, new
    h_r, h_z, h_n = split(gh, 3)
    r = sigmoid(i_r + h_r)
    z = sigmoid(i_z + h_z)
    n = tanh(i_n + r * h_n)                 # r multiplies W_hn h + b_hn, as in nn.GRU
    return (1 - z) * n + z * h


def _specs(name, step, gates, states):
    """(spec with biases, spec without): the step's bias arguments default to None when undeclared."""
    weights = {"weight_ih_l0": (f"{gates}*H", "I"), "weight_hh_l0": (f"{gates}*H", "H")}
    biases = {"bias_ih_l0": (f"{gates}*H",), "bias_hh_l0": (f"{gates}*H",)}
    state = {s: "H" for s in states}
    with_bias = symcell.define(inputs={"x": "I"}, state=state, params={**weights, **biases}, name=name)(step)
    without = symcell.define(inputs={"x": "I"}, state=state, params=weights, name=name)(step)
    return with_bias.spec, without.spec


class _NNCompatible(Cell):
    _specs = None
    _mode = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, backend="auto", device=None, dtype=None):
        if num_layers != 1 or bidirectional or dropout:
            raise NotImplementedError(f"symcell.cells.{self._mode}: num_layers > 1, bidirectional and dropout are "
                                      "not supported yet; use one layer, one direction")
        super().__init__(spec=self._specs[0 if bias else 1], I=input_size, H=hidden_size,
                         batch_first=batch_first, backend=backend, device=device, dtype=dtype)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.num_layers, self.bidirectional, self.dropout = 1, False, 0.0

    def _initial(self, hx, name):
        """nn's (num_layers * directions, B, H) state -> the cell's (B, H)."""
        if hx.dim() != 3 or hx.shape[0] != 1:
            raise ValueError(f"{self._mode}: {name} must have shape (1, B, {self.hidden_size}), got "
                             f"{tuple(hx.shape)}")
        return hx[0]

    def flatten_parameters(self):
        """A no-op, for code written against cuDNN RNNs."""

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}, batch_first={self.batch_first}, " \
               f"backend={self.backend!r}"


class LSTM(_NNCompatible):
    """A drop-in nn.LSTM (one layer): out, (h_n, c_n) = lstm(x, (h_0, c_0)), h_n of shape (1, B, H)."""

    _mode = "LSTM"

    def forward(self, input, hx=None):
        state = None if hx is None else (self._initial(hx[0], "h_0"), self._initial(hx[1], "c_0"))
        out, (h, c) = symcell.scan(self, input, state)
        return out, (h.unsqueeze(0), c.unsqueeze(0))


class GRU(_NNCompatible):
    """A drop-in nn.GRU (one layer): out, h_n = gru(x, h_0), h_n of shape (1, B, H)."""

    _mode = "GRU"

    def forward(self, input, hx=None):
        state = None if hx is None else (self._initial(hx, "h_0"),)
        out, (h,) = symcell.scan(self, input, state)
        return out, h.unsqueeze(0)


LSTM._specs = _specs("LSTM", _lstm_step, 4, ("h", "c"))
GRU._specs = _specs("GRU", _gru_step, 3, ("h",))
LSTM.spec, GRU.spec = LSTM._specs[0], GRU._specs[0]   # the class-level view (gradients()) is the biased cell
