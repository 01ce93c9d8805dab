"""Cells by hash, kernel keys, and the one memo of what the pipeline made.

A kernel is named by a key, "<hash of the cell>:<dimensions>:<backend>", not passed as an object: a traced or
exported program refers to it by that string, and a fresh process that defines (imports) the same cell finds it
again. The hash is of the cell's fingerprint (ir.fingerprint), stable across processes.
"""
import collections
import hashlib
import importlib

from . import backends, cache, pipeline
from .errors import too_deep
from .ir import fingerprint
from .kernel import OperandGrad, weights_only

_CELLS = {}        # hash -> CellIR, for every cell defined in this process
# The pipeline's products, each table keeping the KEPT most recently used: a sweep over sizes or over cells a loop
# defines kept every one for the life of the process (40-80 KiB each, from the derivation to the kernel's
# source). One let go is made again when asked for: its derivation from the memo on disk, a cpp kernel's library
# from the ones loaded (a library is never unloaded), so going back to an old size costs milliseconds, not a build.
KEPT = 256
_LOWERED = collections.OrderedDict()    # (hash, dims or None) -> pipeline.Lowered
_PROGRAMS = collections.OrderedDict()   # (hash, dims or None, backend name) -> the program the backend runs
_SECOND = collections.OrderedDict()     # (hash, dims or None, sums after the loop) -> the second-order scans
_KERNELS = collections.OrderedDict()    # key -> built Kernel
_DEFINERS = []     # modules whose import defines more cells (the prebuilt ones), tried for unknown keys


def _recall(table, k):
    """table[k] made the most recent, or None"""
    value = table.get(k)
    if value is not None:
        try:
            table.move_to_end(k)
        except KeyError:   # (let go meanwhile, by another thread: it is still this call's)
            pass
    return value


def _keep(table, k, value):
    table[k] = value
    while len(table) > KEPT:
        try:
            table.popitem(last=False)
        except KeyError:   # (emptied meanwhile, by another thread)
            break
    return value


def register(ir):
    """-> the cell's hash; the cell can now be found by the keys of its kernels."""
    h = hashlib.sha256(fingerprint(ir).encode()).hexdigest()[:20]
    _CELLS.setdefault(h, ir)
    return h


def define_cells_in(module):
    """A module whose import defines cells: imported when a key names a cell this process has not defined."""
    if module not in _DEFINERS:
        _DEFINERS.append(module)


def key(cell_hash, dims, backend):
    return f"{cell_hash}:{','.join(f'{k}={v}' for k, v in sorted(dims.items()))}:{backend}"


def parse(k):
    """key -> (hash, dims, backend name)"""
    cell, dims, backend = k.split(":")
    for module in _DEFINERS:
        if cell in _CELLS:
            break
        importlib.import_module(module)
    if cell not in _CELLS:
        raise RuntimeError(f"symcell: no cell with kernel key {k!r} in this process; define (import) the "
                           "cell before running a program traced or exported with it (a cell a function makes, "
                           "as symcell.cells.slstm_cell(3) for SLSTM's 3 heads, by calling it; one of a script's "
                           "__main__, by running its define), or run the program saved by symcell.deploy, which "
                           "needs no definition. The key is the hash of the cell's equations: a cell whose code "
                           "changed since the program was traced has another; trace the program again")
    return cell, {n: int(v) for n, v in (d.split("=") for d in dims.split(",") if d)}, backend


def _binding(cell_hash, dims):
    return cell_hash, None if dims is None else tuple(sorted(dims.items()))


def lowered(cell_hash, dims=None):
    """The pipeline's products for a cell at a binding of its dimensions (None: symbolic), made once (and kept
    on disk for the next process: cache.memo)."""
    k = _binding(cell_hash, dims)
    # (SYMCELL_DEBUG prints each stage as the pipeline makes it: one loaded from disk would print none)
    return _recall(_LOWERED, k) or _keep(_LOWERED, k, cache.memo(
        f"lowered-{cell_hash}-{_dims_id(dims)}", lambda: pipeline.lower(_CELLS[cell_hash], dims),
        fresh=pipeline.debugging()))


def _dims_id(dims):
    return "symbolic" if dims is None else "_".join(f"{n}{v}" for n, v in sorted(dims.items()))


def second_order(cell_hash, dims=None, backend=None):
    """The tangent scans of a cell at a binding (second derivatives) as `backend` runs its first order (None:
    the lowered program), made once, when first needed."""
    after = bool(backend and backend.param_sums_after_loop)
    k = (*_binding(cell_hash, dims), after)
    found = _recall(_SECOND, k)
    if found is not None:
        return found

    def make():
        low = lowered(cell_hash, dims)
        return pipeline.second_order(pipeline.backend_program(low, backend) if backend else low.program)
    return _keep(_SECOND, k, cache.memo(f"second-{cell_hash}-{_dims_id(dims)}{'-sums-after' if after else ''}",
                                        make, fresh=pipeline.debugging()))


def ir_of(cell_hash):
    return _CELLS[cell_hash]


def _program(cell_hash, dims, backend):
    """the lowered cell's program as `backend` runs it (pipeline.backend_program), made once"""
    k = (*_binding(cell_hash, dims), backend.name)
    return _recall(_PROGRAMS, k) or _keep(_PROGRAMS, k, pipeline.backend_program(lowered(cell_hash, dims), backend))


def program_for(k):
    """The kernel program a key's kernel renders (nothing is built): what the fake implementations read."""
    cell, dims, name = parse(k)
    backend = backends.get(name)
    return _program(cell, None if backend.symbolic else dims, backend)


def kernel_for(k):
    kernel = _recall(_KERNELS, k)
    if kernel is not None:
        return kernel
    cell, dims, name = parse(k)
    backend = backends.get(name)
    at = None if backend.symbolic else dims
    with too_deep(_CELLS[cell].name):
        program = _program(cell, at, backend)
        source, entries = pipeline.build(program, backend, dims, (program.forward, program.backward))

    def second():
        with too_deep(_CELLS[cell].name):
            scans = second_order(cell, at, backend)
            return (scans, *pipeline.build(program, backend, dims, scans))
    label = f"symcell.{_CELLS[cell].name}[{','.join(f'{n}={v}' for n, v in sorted(dims.items()))}].{name}"
    kernel = backends.Kernel(program, source, entries, second, label)
    kernel.key = k   # (the registered operators name it so: autograd.py under compiled autograd)
    if backend.weights16:
        params = next((a.buffers for a in program.forward.args if a.name == "_params"), ())
        # (the forward's matmuls' weights that the backward reads only as its transposed matmuls': both take them)
        both = set(weights_only(program.backward, OperandGrad))
        kernel.weights16 = frozenset(params.index(n) for n in weights_only(program.forward) if n in both)
    return _keep(_KERNELS, k, kernel)
