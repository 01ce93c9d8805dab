"""symcell: recurrent cells written as equations, with derived gradients and fused kernels."""
from . import backends, deploy, registry
from .frontend import FUNCTIONS, cat, split
from .module import Cell, DeviceError, DtypeError, ShapeError, StateCountError, define
from .rnn import RNN
from .sequence import scan

globals().update(FUNCTIONS)   # symcell.sigmoid, symcell.tanh, ...: every user function of functions.py
__all__ = ["define", "scan", "Cell", "RNN", "ShapeError", "DtypeError", "DeviceError", "StateCountError", "cells",
           "backends", "deploy", *FUNCTIONS, "cat", "split"]
__version__ = "0.1.0"

# a traced or exported program names its kernels by key; a fresh process that never imported symcell.cells
# finds the prebuilt cells' keys by importing it (the registry knows where, not what)
registry.define_cells_in("symcell.cells")


def __dir__():   # (cells is made on first use: listed all the same)
    return sorted({*globals(), "cells"})


def __getattr__(name):
    # cells are defined (traced) on first use, so `import symcell` stays cheap
    if name == "cells":
        import importlib
        return importlib.import_module(".cells", __name__)
    raise AttributeError(f"module 'symcell' has no attribute {name!r}")
