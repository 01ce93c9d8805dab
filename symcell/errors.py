"""The errors of a call's arguments, each also the exception type nn's modules raise for the same mistake; and
the error of a step too deep to process."""
import contextlib


class ShapeError(ValueError, RuntimeError):
    """Arguments of the wrong shape or size. Both a ValueError (what symcell has always raised) and a RuntimeError
    (what nn.LSTM, nn.GRU and their cells raise for the same mistakes), so code written for either catches it."""


class DtypeError(TypeError, ValueError, RuntimeError):
    """Tensors of a dtype the parameters do not have (or a backend cannot compute in): a TypeError as before, the
    ValueError of nn.LSTM and nn.GRU, the RuntimeError of nn's cells."""


class StateCountError(ShapeError, TypeError):
    """Another number of state tensors than the cell has (a ValueError as before; nn.LSTM raises a RuntimeError,
    nn.LSTMCell given a bare tensor a TypeError)."""


class DeviceError(ValueError, RuntimeError):
    """Tensors on another device than the parameters: a ValueError as before, a RuntimeError as nn's."""


@contextlib.contextmanager
def too_deep(name):
    """a RecursionError inside (symcell's passes and sympy walk a step's operations recursively) as an error that
    says which cell and what is likely, the recursion kept as its cause (a recursion of the step's own shows there)"""
    try:
        yield
    except RecursionError as e:
        raise ValueError(f"symcell: processing the step of {name} met Python's recursion limit: most likely its "
                         "chain of operations is too deep (an ODE solver unrolled hundreds of times in one step): "
                         "unroll fewer steps inside one step, or run the extra steps as steps of the scan itself "
                         "(the recursion is the cause below)") from e
