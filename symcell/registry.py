"""Cells by hash, kernel keys, and the one memo of what the pipeline made.

A kernel is named by a key, "<hash of the cell>:<dimensions>:<backend>", not passed as an object: a traced or
exported program refers to it by that string, and a fresh process that defines (imports) the same cell finds it
again. The hash is of the cell's fingerprint (ir.fingerprint), stable across processes.
"""
import hashlib
import importlib

from . import backends, cache, pipeline
from .errors import too_deep
from .ir import fingerprint

_CELLS = {}        # hash -> CellIR, for every cell defined in this process
_LOWERED = {}      # (hash, dims or None) -> pipeline.Lowered
_PROGRAMS = {}     # (hash, dims or None, backend name) -> the program the backend runs (pipeline.backend_program)
_SECOND = {}       # (hash, dims or None, sums after the loop) -> the second-order scans (pipeline.second_order)
_KERNELS = {}      # key -> built Kernel
_DEFINERS = []     # modules whose import defines more cells (the prebuilt ones), tried for unknown keys


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
    if k not in _LOWERED:
        # (SYMCELL_DEBUG prints each stage as the pipeline makes it: one loaded from disk would print none)
        _LOWERED[k] = cache.memo(f"lowered-{cell_hash}-{_dims_id(dims)}",
                                 lambda: pipeline.lower(_CELLS[cell_hash], dims), fresh=pipeline.debugging())
    return _LOWERED[k]


def _dims_id(dims):
    return "symbolic" if dims is None else "_".join(f"{n}{v}" for n, v in sorted(dims.items()))


def second_order(cell_hash, dims=None, backend=None):
    """The tangent scans of a cell at a binding (second derivatives) as `backend` runs its first order (None:
    the lowered program), made once, when first needed."""
    after = bool(backend and backend.param_sums_after_loop)
    k = (*_binding(cell_hash, dims), after)
    if k not in _SECOND:
        def make():
            low = lowered(cell_hash, dims)
            return pipeline.second_order(pipeline.backend_program(low, backend) if backend else low.program)
        _SECOND[k] = cache.memo(f"second-{cell_hash}-{_dims_id(dims)}{'-sums-after' if after else ''}", make,
                                fresh=pipeline.debugging())
    return _SECOND[k]


def ir_of(cell_hash):
    return _CELLS[cell_hash]


def _program(cell_hash, dims, backend):
    """the lowered cell's program as `backend` runs it (pipeline.backend_program), made once"""
    k = (*_binding(cell_hash, dims), backend.name)
    if k not in _PROGRAMS:
        _PROGRAMS[k] = pipeline.backend_program(lowered(cell_hash, dims), backend)
    return _PROGRAMS[k]


def program_for(k):
    """The kernel program a key's kernel renders (nothing is built): what the fake implementations read."""
    cell, dims, name = parse(k)
    backend = backends.get(name)
    return _program(cell, None if backend.symbolic else dims, backend)


def kernel_for(k):
    if k not in _KERNELS:
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
        _KERNELS[k] = backends.Kernel(program, source, entries, second, label)
        _KERNELS[k].key = k   # (the registered operators name it so: autograd.py under compiled autograd)
    return _KERNELS[k]
