"""The cell IR: one immutable node type, and the traced cell.

A Node is a vector of `size` features per batch row (size None: a scalar constant broadcast everywhere).
    op        args            attr
    input     ()              name
    state     ()              name               the state entering the step
    param     ()              name               a vector parameter, broadcast over the batch
    const     ()              value (float)
    pw        operands        function name ('add', 'mul', 'sigmoid', ...) or ('pow', exponent)
    matmul    (operand,)      (weight, col_start, col_stop): weight[:, col_start:col_stop] @ operand
    cat       parts           None               features concatenated
    slice     (base,)         (start, stop)      features start:stop of base
Nodes are hashable and compare by structure, so equal sub-expressions are one node.
"""
from dataclasses import dataclass, field
from typing import Any, Tuple

import sympy


@dataclass(frozen=True, eq=False)
class Node:
    op: str
    args: Tuple["Node", ...] = ()
    size: Any = None
    attr: Any = None
    label: str = field(default="", compare=False, hash=False)

    def __post_init__(self):
        # the hash, once: the dataclass's hashed the operands' hashes anew on every call, so a step whose values
        # each use the one before a few times (a highway layer: h*t + h*(1 - t)) took time exponential in its
        # depth to hash (define 60 s at 10 layers)
        object.__setattr__(self, "_hash", hash((self.op, self.args, self.size, self.attr)))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        # (the dataclass's compared the operands as trees: two equal steps built apart, a helper called twice on
        # the same values, took time exponential in their depth to compare)
        if self is other:
            return True
        if other.__class__ is not Node or self._hash != other._hash:
            return False
        seen, pairs = set(), [(self, other)]   # each pair of nodes compared once: a walk of the two graphs
        while pairs:
            a, b = pairs.pop()
            if a is b or (id(a), id(b)) in seen:
                continue
            if (a._hash != b._hash or a.op != b.op or len(a.args) != len(b.args) or a.size != b.size
                    or a.attr != b.attr):
                return False
            seen.add((id(a), id(b)))
            pairs.extend(zip(a.args, b.args))
        return True

    def __reduce__(self):   # (made again when unpickled: a string's hash differs from process to process)
        return Node, (self.op, self.args, self.size, self.attr, self.label)

    def __setstate__(self, state):   # (a node pickled by an earlier symcell, as its fields)
        for k, v in state.items():
            object.__setattr__(self, k, v)
        self.__post_init__()

    def __repr__(self):
        return self.label or f"{self.op}{self.attr or ''}"


@dataclass(frozen=True)
class CellIR:
    """What `symcell.define` traced: declarations with symbolic sizes, and the new states as nodes."""
    name: str
    inputs: Tuple[Tuple[str, sympy.Expr], ...]
    states: Tuple[Tuple[str, sympy.Expr], ...]
    params: Tuple[Tuple[str, Tuple[sympy.Expr, ...]], ...]
    returns: Tuple[Node, ...]          # new value of each state, in state order
    outputs: Tuple[str, ...]           # the values that form ys: states, or outputs declared with `outputs=`
    dims: Tuple[str, ...]              # dimension names, sorted
    hidden: Tuple[str, ...] = ()       # the last states: per-step outputs that are not states (see trace)
    declared: Tuple[Tuple[str, Tuple[sympy.Expr, ...]], ...] = ()   # the parameters as the user declared them
    views: Tuple[Tuple[str, str, Any, Any], ...] = ()   # (kernel parameter, declared one, r0, r1): rows r0:r1
    #                                                    of its 2-d form; `params` are the kernels' parameters

    @property
    def user_params(self):
        """the parameters a module holds (`params` are what the kernels take: these, 3-d ones as their blocks)"""
        return self.declared or self.params

    def param_shape(self, name):
        return dict(self.params)[name]


def refuse_parameter_part(product, part, size):
    """A GEMM reads one operand row per batch row: a part of a cat it multiplies that is a vector parameter as it is
    (or a block of one) has none, and W @ cat(h, b) built, then read past b on cpp (a wrong answer) and failed on the
    others. (A pointwise value of parameters, -b, is computed into rows of its own, and multiplied as any value.)
    product: the matmul as a message names it; size: its size, as written."""
    if (part.args[0] if part.op == "slice" else part).op == "param":
        raise TypeError(f"{product}: its part {part.label} is a parameter, which depends on no input and no state, so "
                        f"that part of the product is one constant vector for every row and step; declare that "
                        f"vector as a parameter of size {size} and add it, and multiply the other parts alone")


def walk(roots):
    """Every node reachable from roots, operands before users (post-order), each once."""
    seen, order = set(), []

    def visit(n):
        if n in seen:
            return
        seen.add(n)
        for a in n.args:
            visit(a)
        order.append(n)

    for r in roots:
        visit(r)
    return order


def fingerprint(ir):
    """A stable text of the traced cell (Python's hash() of strings changes per process; this does not):
    declarations, then every node once, operands before users, by index."""
    lines = [f"cell {ir.name}", f"inputs {ir.inputs}", f"states {ir.states}", f"params {ir.params}",
             f"outputs {ir.outputs}"] + ([f"hidden {ir.hidden}"] if ir.hidden else []) + (
                 [f"declared {ir.declared}", f"views {ir.views}"] if ir.views or ir.declared != ir.params else [])
    index = {}
    for n in walk(ir.returns):
        index[n] = len(index)
        lines.append(f"{index[n]} {n.op} {n.attr!r} {n.size} {[index[a] for a in n.args]}")
    lines.append(f"returns {[index[r] for r in ir.returns]}")
    return "\n".join(lines)
