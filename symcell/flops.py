"""The FLOPs of a scan, for torch.utils.flop_counter.FlopCounterMode (and the tools built on it).

FlopCounterMode counts an operator by a formula registered for it, and counts the matmuls only (aten.mm, bmm,
convolutions; pointwise work is free), 2 FLOPs a multiply-add. A scan's matmuls are its statements (kernel.py):

    MatMul        out = sum of operand @ weight[:, cols].T       2 * rows(weight) * len(cols) a row, each term
    OperandGrad   dest += src @ weight[:, cols]                  the same
    WeightGrad    dest[:, cols] += src.T @ operand               the same

each over the T * B rows of a call (a step's over B rows T times; a phase before or after the loop over all of
them at once), less the statements and terms the call's `skip` flags leave out (skips.py). That is what the
reference backend's aten.mm calls count, and the eager loop's under torch autograd. Rows past their length are
counted too (the reference backend computes them). Pointwise regions, the sums of a vector parameter's
gradient, the copies of the weights: not counted, as FlopCounterMode counts none of torch's.
"""
import sympy
import torch
from torch.utils import flop_counter

from . import skips
from .dims import dim_symbol
from .kernel import MatMul, OperandGrad, WeightGrad


def per_row(scan):
    """-> [(condition to leave it out, the FLOPs a row: a sympy expression in the dimensions)], one per matmul
    term, transposed matmul and weight gradient of the scan"""
    buf = {b.name: b for b in scan.buffers}
    stmts, terms = skips.conditions(scan)

    def flops(weight, start, stop):
        return 2 * buf[weight].size[0] * (stop - start)

    out = []
    for st in scan.before + scan.step + scan.after:
        if isinstance(st, MatMul):
            for t, off in zip(st.terms, terms[id(st)]):
                out.append((stmts.get(id(st), ()) + off, flops(t.weight, t.col_start, t.col_stop)))
        elif isinstance(st, (OperandGrad, WeightGrad)):
            # (a weight gradient's buffer has its weight's shape)
            weight = st.weight if isinstance(st, OperandGrad) else st.dest
            out.append((stmts.get(id(st), ()), flops(weight, st.col_start, st.col_stop)))
    return out


def count(scan, dims, T, B, skip=()):
    """The FLOPs of one call of `scan` over T steps of B rows, its dimensions {name: value}, `skip` its flags: T
    steps of a row's FLOPs, the last step's apart (skips.LAST: what it leaves out, the other steps run)."""
    row, last_row = _a_row(scan, tuple(sorted(dims.items())), tuple(skip))
    return (T - 1) * B * row + B * last_row if T > 0 else 0


_ROWS = {}   # (id(scan), dims, skip) -> (scan, FLOPs a row, a row's at the last step): a model calls the same few


def _a_row(scan, dims, skip):
    k = (id(scan), dims, skip)
    if k not in _ROWS or _ROWS[k][0] is not scan:
        on, values = skips.on(scan, skip), {dim_symbol(n): v for n, v in dims}
        terms = [(cond, int(sympy.sympify(f).subs(values))) for cond, f in per_row(scan)]
        _ROWS[k] = scan, *(sum(n for cond, n in terms if not skips.holds(cond, flags))
                           for flags in (on, on | {skips.LAST}))
    return _ROWS[k][1:]


def _sequence_shape(scan, groups):
    """the (T, B, n) shape of the scan's first sequence argument, from its groups of argument shapes"""
    at, k = scan.first_seq_at
    return groups[at][k]


register_flop_formula = flop_counter.register_flop_formula


def register_entry(op, scan, dim_names):
    """Count a built entry point's operator (called as op(*groups, dims, [save,] lengths, skip): build.py's
    Entry): once an operator, as FlopCounterMode's registry takes one formula for each."""
    n = len(scan.args)

    def formula(*args, out_shape=None, **kwargs):
        groups, dims, skip = args[:n], args[n], args[-1]
        T, B = _sequence_shape(scan, groups)[:2]
        return count(scan, dict(zip(dim_names, dims)), T, B, skip)
    # (one dict operation: two threads building a cell's first kernel at once register it twice, where
    # register_flop_formula's check and insert would let the second raise "duplicate registrations")
    flop_counter.flop_registry.setdefault(op, flop_counter.shape_wrapper(formula))


def tell_counters(op):
    """A FlopCounterMode copies the registry when it is made: one made before `op` was built (in its first call, or
    in another thread) is told of its formula when it sees the call. (Called by every call of an entry point while
    a dispatch mode is on: a check of the thread's mode stack, the kernel's first FlopCounterMode call adds it.)"""
    for mode in torch.utils._python_dispatch._get_current_dispatch_mode_stack():
        registry = getattr(getattr(mode, "counter", None), "flop_registry", None)
        if isinstance(registry, dict) and op not in registry:
            registry[op] = flop_counter.flop_registry[op]
