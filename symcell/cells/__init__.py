"""Prebuilt cells, each written with symcell.define, each with its step in plain torch beside it."""
from .lltm import LLTM, lltm_reference
from .lstm import GRU, LSTM, GRUCell, LSTMCell, from_nn, gru_reference, lstm_reference
from .layernorm import LayerNormLSTM, layernorm_lstm_reference
from .peephole import PeepholeLSTM, peephole_reference
from .slstm import SLSTM, slstm_cell, slstm_reference

# defined now, so that a fresh process finds their kernels' keys (symcell/registry.py); another head count is
# defined by its first SLSTM(..., num_heads=k) or slstm_cell(k), which a process must make before it loads a
# program traced with it
for _heads in (1, 2, 4):
    slstm_cell(_heads)

__all__ = ["LLTM", "LSTM", "GRU", "LSTMCell", "GRUCell", "PeepholeLSTM", "SLSTM", "LayerNormLSTM", "from_nn",
           "slstm_cell", "lltm_reference", "lstm_reference", "gru_reference", "peephole_reference",
           "slstm_reference", "layernorm_lstm_reference"]
