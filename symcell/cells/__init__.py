"""Prebuilt cells, each written with symcell.define, each with its step in plain torch beside it."""
from .lltm import LLTM, lltm_reference
from .lstm import GRU, LSTM, GRUCell, LSTMCell, from_nn, gru_reference, lstm_reference
from .peephole import PeepholeLSTM, peephole_reference

__all__ = ["LLTM", "LSTM", "GRU", "LSTMCell", "GRUCell", "PeepholeLSTM", "from_nn",
           "lltm_reference", "lstm_reference", "gru_reference", "peephole_reference"]
