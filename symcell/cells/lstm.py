"""nn.LSTM / nn.GRU: their equations, gate order, call signatures and state_dict keys.

LSTMCell and GRUCell are one layer in one direction, with nn.LSTMCell's / nn.GRUCell's parameter names;
LSTM and GRU are symcell.RNN over them, with nn.LSTM's / nn.GRU's arguments and keys (`weight_ih_l0`, ...).
Beside each step's equations, the same step in plain torch (`lstm_reference`, `gru_reference`): what the
tests and benchmarks compare the compiled cells with.
"""

import operator

import torch
from torch import nn

import symcell
from symcell import sigmoid, split, tanh

from ..module import Cell, ShapeError, one_step, public_signature, stored_parameters, whole_under_fx
from ..rnn import RNN


def _lstm_step(x, h, c, weight_ih, weight_hh, bias_ih=None, bias_hh=None, weight_hr=None):
    gates = weight_ih @ x + weight_hh @ h
    if bias_ih is not None:
        gates = gates + bias_ih + bias_hh
    i, f, g, o = split(gates, 4)            # nn.LSTM's gate order
    c = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h = sigmoid(o) * tanh(c)
    if weight_hr is not None:               # proj_size > 0: h = W_hr (o * tanh(c)), of size P
        h = weight_hr @ h
    return h, c


def lstm_reference(x, h, c, weight_ih, weight_hh, bias_ih=None, bias_hh=None, weight_hr=None):
    """_lstm_step in plain torch: x (B, I), h (B, H or P), c (B, H) -> (h, c)."""
    gates = x @ weight_ih.t() + h @ weight_hh.t() + (0 if bias_ih is None else bias_ih + bias_hh)
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return (h if weight_hr is None else h @ weight_hr.t()), c


def _gru_step(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    gi, gh = weight_ih @ x, weight_hh @ h
    if bias_ih is not None:
        gi, gh = gi + bias_ih, gh + bias_hh
    i_r, i_z, i_n = split(gi, 3)            # nn.GRU's gate order: reset, update, new
    h_r, h_z, h_n = split(gh, 3)
    r = sigmoid(i_r + h_r)
    z = sigmoid(i_z + h_z)
    n = tanh(i_n + r * h_n)                 # r multiplies W_hn h + b_hn, as in nn.GRU
    return (1 - z) * n + z * h


def gru_reference(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """_gru_step in plain torch: x (B, I), h (B, H) -> (h,)."""
    gi, gh = x @ weight_ih.t(), h @ weight_hh.t()
    if bias_ih is not None:
        gi, gh = gi + bias_ih, gh + bias_hh
    i_r, i_z, i_n = gi.chunk(3, 1)
    h_r, h_z, h_n = gh.chunk(3, 1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return ((1 - z) * n + z * h,)


def _spec(name, step, gates, bias, proj=False):
    """The cell's spec for one choice of options: the step's optional arguments default to None when the
    parameter is not declared."""
    h = "P" if proj else "H"
    params = {"weight_ih": (f"{gates}*H", "I"), "weight_hh": (f"{gates}*H", h)}
    if bias:
        params.update(bias_ih=(f"{gates}*H",), bias_hh=(f"{gates}*H",))
    if proj:
        params["weight_hr"] = ("P", "H")
    state = {"h": h, "c": "H"} if gates == 4 else {"h": "H"}
    return symcell.define(inputs={"x": "I"}, state=state, params=params, name=name)(step).spec


_LSTM = {(b, p): _spec("LSTM", _lstm_step, 4, b, p) for b in (True, False) for p in (False, True)}
_GRU = {b: _spec("GRU", _gru_step, 3, b) for b in (True, False)}


def _integral(v):
    """v as an int where it is of any integer type (numpy's, a 0-d integer tensor: operator.index), as nn's cells
    take sizes; else as it is. A bool stays a bool, to be refused (True as a size is a mistake, not a 1)."""
    if isinstance(v, bool):
        return v
    try:
        return operator.index(v)
    except TypeError:
        return v


def _int_arg(kind, name, v, integral=False):
    """`integral`: any integer type (_integral), as nn's cells take; else an int, as nn.LSTM and nn.GRU check"""
    if integral:
        v = _integral(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{kind}: {name} should be of type int, got: {type(v).__name__}")
    if v <= 0:   # nn: a ValueError from LSTM and GRU, a RuntimeError from the cells (a negative tensor size)
        raise ShapeError(f"{kind}: {name} must be greater than zero, got {v}")
    return v


def _no_biases(cell, bias):
    """nn's cells without biases register bias_ih and bias_hh as None (code tests `cell.bias_ih is None`)"""
    if not bias:
        cell.register_parameter("bias_ih", None)
        cell.register_parameter("bias_hh", None)


def _bool_arg(kind, name, v):
    if not isinstance(v, bool):   # a string "False" is truthy: it would silently mean True
        raise TypeError(f"{kind}: {name} should be of type bool, got: {type(v).__name__}")


def _sizes(kind, input_size, hidden_size, proj_size=0):
    """nn's checks of the sizes (with nn's exception types), -> the cell's dimensions. Sizes of 0, which nn's
    cells accept, are refused: symcell's kernels need one feature at least (README, "Where symcell differs").
    The cells take any integer type as nn's do (numpy's), LSTM and GRU an int."""
    cell = kind.endswith("Cell")
    input_size = _int_arg(kind, "input_size", input_size, integral=cell)
    hidden_size = _int_arg(kind, "hidden_size", hidden_size, integral=cell)
    if cell:
        proj_size = _integral(proj_size)
    if isinstance(proj_size, bool) or not isinstance(proj_size, int):
        raise TypeError(f"{kind}: proj_size should be of type int, got: {type(proj_size).__name__}")
    if proj_size < 0:
        raise ValueError(f"{kind}: proj_size should be a positive integer or zero to disable projections, got "
                         f"{proj_size}")
    if proj_size >= hidden_size:
        raise ValueError(f"{kind}: proj_size has to be smaller than hidden_size; got proj_size={proj_size}, "
                         f"hidden_size={hidden_size}")
    return {"I": input_size, "H": hidden_size, **({"P": proj_size} if proj_size else {})}


def _layers(kind, num_layers, bias, batch_first):
    """nn.LSTM's / nn.GRU's checks of their other options"""
    _int_arg(kind, "num_layers", num_layers)
    _bool_arg(kind, "bias", bias)
    _bool_arg(kind, "batch_first", batch_first)


class LSTMCell(Cell):
    """nn.LSTMCell, and the same cell over a sequence, with nn.LSTMCell's parameters (weight_ih, weight_hh,
    bias_ih, bias_hh; weight_hr when proj_size > 0):

        h, c = cell(x, (h, c))          x (B, I) or (I,): one step, as nn.LSTMCell (hx=None: zeros)
        ys, (h, c) = cell(xs, (h, c))   xs (T, B, I), or (B, T, I) with batch_first: the fused scan
    """

    spec = _LSTM[True, False]
    autocast_devices = ("cuda",)   # (nn.LSTMCell's operator is on CUDA's autocast list, not the CPU's)

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, *, proj_size=0,
                 batch_first=False, backend="auto"):   # (nn.LSTMCell's positional arguments, then symcell's)
        dims = _sizes("LSTMCell", input_size, hidden_size, proj_size)
        super().__init__(spec=_LSTM[bool(bias), "P" in dims], batch_first=batch_first, backend=backend,
                         device=device, dtype=dtype, **dims)
        self.input_size, self.hidden_size, self.proj_size = dims["I"], dims["H"], dims.get("P", 0)
        self.bias = bias
        _no_biases(self, bias)

    def _init_size(self):
        """k = 1/sqrt(hidden_size) in reset_parameters, as nn.LSTMCell's and nn.LSTM's (with proj_size too, not
        the projected state's size)"""
        return self._binding.dims["H"]

    @whole_under_fx
    def forward(self, input, hx=None, lengths=None):   # (nn.LSTMCell's argument names)
        return super().forward(input, hx, lengths)

    def extra_repr(self):
        return _cell_repr(self)


class GRUCell(Cell):
    """nn.GRUCell, and the same cell over a sequence, with nn.GRUCell's parameters:

        h = cell(x, h)                  x (B, I) or (I,): one step, as nn.GRUCell (hx=None: zeros)
        ys, (h,) = cell(xs, h)          xs (T, B, I), or (B, T, I) with batch_first: the fused scan
    """

    spec = _GRU[True]
    autocast_devices = ("cuda",)   # (nn.GRUCell's operator is on CUDA's autocast list, not the CPU's)

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, *, batch_first=False,
                 backend="auto"):   # (nn.GRUCell's positional arguments, then symcell's)
        dims = _sizes("GRUCell", input_size, hidden_size)
        super().__init__(spec=_GRU[bool(bias)], batch_first=batch_first, backend=backend, device=device,
                         dtype=dtype, **dims)
        self.input_size, self.hidden_size, self.bias = dims["I"], dims["H"], bias
        _no_biases(self, bias)

    def extra_repr(self):
        return _cell_repr(self)

    def step(self, x, state=None):
        """One step, as nn.GRUCell: x (B, I) or (I,), state h (or (h,)) -> the new h, a tensor."""
        return super().step(x, state)[0]

    @whole_under_fx
    def forward(self, input, hx=None, lengths=None):
        if one_step(input):
            return super().forward(input, hx, lengths)[0]
        return super().forward(input, hx, lengths)


class LSTM(RNN):
    """A drop-in nn.LSTM: same arguments, state_dict keys and shapes, call and results.

        out, (h_n, c_n) = lstm(x, (h_0, c_0), lengths=None)

    x: (T, B, I), (B, T, I) with batch_first, (T, I) unbatched, or a PackedSequence; h_0 (L*D, B, P or H),
    c_0 (L*D, B, H). `lengths` gives padded sequences their lengths, as packing them would.
    """

    spec = _LSTM[True, False]
    mode = "LSTM"                  # (nn.RNNBase's attribute)
    # (nn.LSTM's packed operator, lstm.data, is not on the CPU's autocast list, its padded one is: a PackedSequence
    # runs in float32 there; CUDA's autocast casts cuDNN's RNN, packed or not)
    packed_autocast_devices = ("cuda",)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, *, backend="auto", device=None, dtype=None):
        _layers("LSTM", num_layers, bias, batch_first)
        dims = _sizes("LSTM", input_size, hidden_size, proj_size)
        super().__init__(_LSTM[bool(bias), proj_size > 0], num_layers, bidirectional, dropout, batch_first,
                         backend=backend, device=device, dtype=dtype, _init_size=hidden_size, **dims)
        self.input_size, self.hidden_size, self.bias, self.proj_size = input_size, hidden_size, bool(bias), proj_size

    @whole_under_fx
    def forward(self, input, hx=None, lengths=None):
        return super().forward(input, hx, lengths)

    def extra_repr(self):
        return _nn_repr(self)

    @classmethod
    def from_nn(cls, module, *, backend="auto"):
        """A symcell LSTM with the options and weights of `module` (an nn.LSTM), on its device and dtype."""
        if not isinstance(module, nn.LSTM):
            raise TypeError(f"LSTM.from_nn: expected an nn.LSTM, got {type(module).__name__}")
        return _from_nn(cls, module, backend, proj_size=module.proj_size)

    def to_nn(self):
        """An nn.LSTM with the options and weights of this module, on its device and dtype."""
        return _to_nn(self, nn.LSTM, proj_size=self.proj_size)


class GRU(RNN):
    """A drop-in nn.GRU: out, h_n = gru(x, h_0, lengths=None), layouts as nn.GRU's (see LSTM)."""

    spec = _GRU[True]
    autocast_devices = ("cuda",)   # (nn.GRU's operator is on CUDA's autocast list, not the CPU's: float32 there)
    mode = "GRU"                   # (nn.RNNBase's attribute)
    proj_size = 0                  # (nn.GRU's attribute, which code written for nn's RNNs reads)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, backend="auto", device=None, dtype=None, **unexpected):
        if "proj_size" in unexpected:   # nn.GRU's error, even for proj_size=0
            raise ValueError("GRU: proj_size argument is only supported for LSTM, not RNN or GRU")
        if unexpected:
            raise TypeError(f"GRU.__init__() got an unexpected keyword argument {next(iter(unexpected))!r}")
        _layers("GRU", num_layers, bias, batch_first)
        dims = _sizes("GRU", input_size, hidden_size)
        super().__init__(_GRU[bool(bias)], num_layers, bidirectional, dropout, batch_first, backend=backend,
                         device=device, dtype=dtype, _init_size=hidden_size, **dims)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bool(bias)

    @whole_under_fx
    def forward(self, input, hx=None, lengths=None):
        return super().forward(input, hx, lengths)

    def extra_repr(self):
        return _nn_repr(self)

    @classmethod
    def from_nn(cls, module, *, backend="auto"):
        """A symcell GRU with the options and weights of `module` (an nn.GRU), on its device and dtype."""
        if not isinstance(module, nn.GRU):
            raise TypeError(f"GRU.from_nn: expected an nn.GRU, got {type(module).__name__}")
        return _from_nn(cls, module, backend)

    def to_nn(self):
        """An nn.GRU with the options and weights of this module, on its device and dtype."""
        return _to_nn(self, nn.GRU)


def _cell_repr(m):
    """nn.LSTMCell's repr (LSTMCell(4, 6, bias=False)), then symcell's options where they are not the defaults"""
    text = f"{m.input_size}, {m.hidden_size}" + ("" if m.bias else ", bias=False")
    text += f", proj_size={m.proj_size}" if getattr(m, "proj_size", 0) else ""
    text += ", batch_first=True" if m.batch_first else ""
    return text + (f", backend={m.backend!r}" if m.backend != "auto" else "")


def _nn_repr(m):
    """nn.LSTM's repr (LSTM(4, 6, num_layers=2): the options that are not the defaults, in nn's order), then
    symcell's backend where it is not the default"""
    text = f"{m.input_size}, {m.hidden_size}" + (f", proj_size={m.proj_size}" if getattr(m, "proj_size", 0) else "")
    for option, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0),
                            ("bidirectional", False)):
        if getattr(m, option) != default:
            text += f", {option}={getattr(m, option)}"
    return text + (f", backend={m.backend!r}" if m.backend != "auto" else "")


def _options(m):
    return dict(num_layers=m.num_layers, bias=m.bias, batch_first=m.batch_first, dropout=float(m.dropout),
                bidirectional=m.bidirectional)


def _from_nn(cls, module, backend, **extra):
    p = next(module.parameters())
    out = cls(module.input_size, module.hidden_size, **_options(module), **extra, backend=backend,
              device=p.device, dtype=p.dtype)
    _load_values(out, module)
    _same_flags(module, out)
    return out


def _load_values(dst, src):
    """each parameter's value as src computes it (a parametrized or pruned one, weight_norm's, too: its
    state_dict holds the parametrization's parts instead)"""
    with torch.no_grad():
        dst.load_state_dict({k: getattr(src, k).detach() for k in dst.state_dict()})


def _same_flags(src, dst):
    """training mode and each parameter's requires_grad, so a frozen layer stays frozen (a parametrized or
    pruned one where no tensor that src computes it from is trained)"""
    dst.train(src.training)
    held = stored_parameters(src, [n for n, _ in dst.named_parameters()])
    frozen = {n for n, ps in held.items() if ps and not any(p.requires_grad for p in ps)}
    for n, p in dst.named_parameters():
        p.requires_grad_(n not in frozen)


def _to_nn(m, nn_cls, **extra):
    p = next(m.parameters())
    out = nn_cls(m.input_size, m.hidden_size, **_options(m), **extra, device=p.device, dtype=p.dtype)
    _load_values(out, m)
    _same_flags(m, out)
    return out


def from_nn(module, *, backend="auto"):
    """nn.LSTM -> symcell.cells.LSTM, nn.GRU -> symcell.cells.GRU, with the same options and weights."""
    for cls in (LSTM, GRU):
        if isinstance(module, getattr(nn, cls.__name__)):   # (a subclass too, as LSTM.from_nn takes it)
            return cls.from_nn(module, backend=backend)
    raise TypeError(f"symcell.cells.from_nn: expected an nn.LSTM or nn.GRU, got {type(module).__name__}")


public_signature(GRU, "unexpected")   # (the keywords nn.GRU refuses, refused as it does)
