"""Prebuilt cells, each written with symcell.define."""
from .lltm import LLTM
from .lstm import GRU, LSTM
from .peephole import PeepholeLSTM

__all__ = ["LLTM", "LSTM", "GRU", "PeepholeLSTM"]
