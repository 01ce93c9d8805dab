"""The derived backward pass.

For a region with leaves u_j and outputs o_k = f_k(u), given cotangents g_k = dL/do_k:
    dL/du_j = sum_k g_k * d f_k / d u_j          (functions.diff, then one CSE over all j)
A vector parameter is broadcast over the batch in the forward, so its gradient is summed over the batch.
For a matmul y = v @ W[:, c0:c1].T:
    dv += dy @ W[:, c0:c1]                        (stays in the loop when v depends on the state)
    dW[:, c0:c1] += dy.T @ v                      (deferred: one GEMM over all T*B rows after the loop)
The backward of the scan is a scan in reverse time: the cotangent of the state entering step t is the
carry into step t-1; the residuals it reads are the leaves of every region and the operands of every matmul.
"""
from dataclasses import dataclass
from typing import Any, Tuple

import sympy

from .functions import diff, masked
from .schedule import MatMul, Region, View


@dataclass(frozen=True)
class RegionGrad:
    region: Region
    cotangents: Tuple[Tuple[sympy.Symbol, View], ...]   # g_k and the output view it is the cotangent of
    temps: Tuple[Tuple[sympy.Symbol, sympy.Expr], ...]  # common subexpressions, in order
    grads: Tuple[Tuple[View, sympy.Expr], ...]          # accumulate expr (in temps) into the gradient of the view
    exprs: Tuple[sympy.Expr, ...] = ()                  # each grad's expression without temps (to differentiate)


@dataclass(frozen=True)
class MatMulGrad:
    matmul: MatMul


@dataclass(frozen=True)
class Backward:
    loop: Tuple[Any, ...]   # run in reverse time, statements already in reverse order
    pre: Tuple[Any, ...]    # run once after the loop over all T*B rows


def view_symbol_name(view, schedule):
    """h_new for a whole value; h_new_2 for its third block of the view's size; h_new_s for another slice"""
    full = view.start == 0 and view.stop == schedule.value(view.value).size
    if full:
        return view.value
    k = sympy.simplify(view.start / (view.stop - view.start))
    return f"{view.value}_{k}" if k.is_Integer else f"{view.value}_s"


# (~60 us a node on the 2-core dev machine: 3 s; the zoo's largest region gradient, the sLSTM's, has ~21000)
TREE_LIMIT = 50_000


def _tree_size(exprs):
    """the nodes of `exprs` counted as trees (a subexpression once for every path to it), in one pass over the
    distinct ones"""
    size = {}

    def count(e):
        if e not in size:
            size[e] = 1 + sum(count(a) for a in e.args)
        return size[e]
    return sum(count(e) for e in exprs)


def _region_grad(region, schedule, taken):
    cot = []
    for dest, _ in region.outputs:
        name = "d_" + view_symbol_name(dest, schedule)
        while name in taken:
            name += "_"
        taken.add(name)
        cot.append((sympy.Symbol(name), dest))
    raw = []
    for sym, view in region.leaves:
        total = sympy.Integer(0)
        for (g, _), (_, expr) in zip(cot, region.outputs):
            total += g * diff(expr, sym)
        if total != 0:
            raw.append((view, masked(total)))
    prefix = "_c"
    while any(n.startswith(prefix) for n in taken):
        prefix += "_"
    exprs = [e for _, e in raw]
    # sympy's "basic" optimizations (y - x as -(x - y), common factors of sums pulled out) walk the expressions as
    # trees, each shared subexpression once for every path to it: a chain of n pointwise functions each using its
    # input several times is a tree exponential in n (v = tanh(v * sigmoid(v) + 0.1 * v) eight deep took minutes).
    # Past TREE_LIMIT nodes the plain elimination (a pass over each distinct subexpression) runs alone.
    basic = _tree_size(exprs) <= TREE_LIMIT
    temps, reduced = sympy.cse(exprs, symbols=sympy.numbered_symbols(prefix), optimizations="basic" if basic else None)
    return RegionGrad(region, tuple(cot), tuple(temps), tuple((v, e) for (v, _), e in zip(raw, reduced)),
                      tuple(e for _, e in raw))


def derive(schedule):
    taken = {v.name for v in schedule.values}
    for stmts in (schedule.pre, schedule.loop):
        for st in stmts:
            if isinstance(st, Region):
                taken |= {s.name for s, _ in st.leaves}

    def stage(stmts):
        out = []
        for st in reversed(stmts):
            out.append(_region_grad(st, schedule, taken) if isinstance(st, Region) else MatMulGrad(st))
        return tuple(out)

    return Backward(stage(schedule.loop), stage(schedule.pre))
