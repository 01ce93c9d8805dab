"""symcell: recurrent cells written as equations, with derived gradients and fused kernels."""
from . import backends
from .frontend import cat, elu, exp, log, relu, sigmoid, softplus, split, sqrt, tanh
from .module import Cell, define, scan
from .rnn import RNN

__all__ = ["define", "scan", "Cell", "RNN", "cells", "backends",
           "sigmoid", "tanh", "relu", "elu", "softplus", "exp", "log", "sqrt", "cat", "split"]
__version__ = "0.1.0"


def __getattr__(name):
    # cells are defined (traced) on first use, so `import symcell` stays cheap
    if name == "cells":
        import importlib
        return importlib.import_module(".cells", __name__)
    raise AttributeError(f"module 'symcell' has no attribute {name!r}")
