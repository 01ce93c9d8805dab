"""Prebuilt cells, each written with symcell.define."""
from .lltm import LLTM
from .lstm import GRU, LSTM, GRUCell, LSTMCell, from_nn
from .peephole import PeepholeLSTM

__all__ = ["LLTM", "LSTM", "GRU", "LSTMCell", "GRUCell", "PeepholeLSTM", "from_nn"]
