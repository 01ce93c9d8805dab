"""Random valid cells for the property tests: a small program of operations, run two ways.

A program is a list of instructions over a pool of values (the input x, the states, then each instruction's
result), each value with a symbolic size ("I", "H", "2*H"). The same program runs symbolically, traced by
symcell.define, and eagerly on torch tensors (rows = batch), which with torch autograd is the independent
reference. Values of size 1 (sums and means over features) broadcast against the others. Functions whose range
could overflow are composed with bounded ones (exp(tanh(v)), log(1 + v^2)),
so every random cell is finite on random inputs. The eager hardsigmoid is zoo's exact one (torch's backward
rounds 1/6 to float32).
"""
import inspect
from dataclasses import dataclass, field
from typing import List, Tuple

import torch
import torch.nn.functional as F
from hypothesis import strategies as st

import symcell
from zoo import _hardsigmoid

SIZES = ("I", "H", "2*H")
UNARY = ("sigmoid", "tanh", "relu", "elu", "softplus", "silu", "gelu", "erf", "exp_tanh", "log_1p_sq", "sqrt_1p_sq",
         "square", "neg", "abs", "hardtanh", "hardsigmoid", "clamp")
BINARY = ("add", "sub", "mul", "div_1p_sq", "maximum", "minimum", "where_gt")


@dataclass
class Program:
    states: List[str]                           # sizes of the states
    ops: List[tuple] = field(default_factory=list)
    sizes: List[str] = field(default_factory=list)   # size of every value: x, the states, then each op's result
    params: List[Tuple[str, tuple]] = field(default_factory=list)   # (name, shape)
    new_states: List[int] = field(default_factory=list)
    extra: List[int] = field(default_factory=list)   # values returned as outputs that are not states

    def __str__(self):
        return (f"states={self.states} ops={self.ops} new_states={self.new_states} params={self.params} "
                f"extra={self.extra}")

    def ys_index(self):
        """what forms ys, as indices into what a step returns (the new states, then the extra outputs): the
        extra outputs, then the first state"""
        return (*range(len(self.states), len(self.states) + len(self.extra)), 0)


def _unary(name, a, sym):
    f = symcell if sym else torch
    if name == "sigmoid":
        return f.sigmoid(a)
    if name == "tanh":
        return f.tanh(a)
    if name == "relu":
        return symcell.relu(a) if sym else torch.relu(a)
    if name == "elu":
        return symcell.elu(a) if sym else F.elu(a)
    if name == "softplus":
        return symcell.softplus(a) if sym else F.softplus(a)
    if name == "silu":
        return symcell.silu(a) if sym else F.silu(a)
    if name == "gelu":
        return symcell.gelu(a) if sym else F.gelu(a)
    if name == "erf":
        return f.erf(a)
    if name == "exp_tanh":
        return f.exp(f.tanh(a))
    if name == "log_1p_sq":
        return f.log(1 + a * a)
    if name == "sqrt_1p_sq":
        return f.sqrt(1 + a * a)
    if name == "square":
        return a ** 2
    if name == "neg":
        return -a
    if name == "abs":
        return abs(a)
    if name == "hardtanh":
        return symcell.hardtanh(a) if sym else F.hardtanh(a)
    if name == "hardsigmoid":
        return symcell.hardsigmoid(a) if sym else _hardsigmoid(a)
    if name == "clamp":
        return symcell.clamp(a, -0.5, 0.75) if sym else torch.clamp(a, -0.5, 0.75)
    raise AssertionError(name)


def _binary(name, a, b, sym):
    if name == "maximum":
        return symcell.maximum(a, b) if sym else torch.maximum(a, b)
    if name == "minimum":
        return symcell.minimum(a, b) if sym else torch.minimum(a, b)
    if name == "where_gt":
        return (symcell.where if sym else torch.where)(a > b, a * b, b - 0.5)
    if name == "add":
        return a + b
    if name == "sub":
        return a - b
    if name == "mul":
        return a * b
    if name == "div_1p_sq":
        return a / (1 + b * b)
    raise AssertionError(name)


def run(prog, x, states, params, sym):
    """One step of the program: symbolically (sym=True, inside symcell.define) or on (B, n) tensors."""
    vals = [x, *states]
    p = dict(zip([n for n, _ in prog.params], params))
    for op in prog.ops:
        kind = op[0]
        if kind == "unary":
            vals.append(_unary(op[1], vals[op[2]], sym))
        elif kind == "binary":
            vals.append(_binary(op[1], vals[op[2]], vals[op[3]], sym))
        elif kind == "scale":
            vals.append(op[1] * vals[op[2]] + op[3])
        elif kind == "vec":          # a vector parameter, elementwise (broadcast over the batch)
            vals.append(p[op[1]] * vals[op[2]])
        elif kind == "matmul":       # W @ cat(operands)
            w, operands = p[op[1]], [vals[i] for i in op[2]]
            if sym:
                vals.append(w @ (operands[0] if len(operands) == 1 else symcell.cat(*operands)))
            else:
                vals.append(torch.cat(operands, 1) @ w.t())
        elif kind == "blocks":       # a 3-d parameter (2, H, H) on a 2*H vector: one block per half
            w, v = p[op[1]], vals[op[2]]
            if sym:
                vals.append(w @ v)
            else:
                halves = v.chunk(2, 1)
                vals.append(torch.cat([halves[0] @ w[0].t(), halves[1] @ w[1].t()], 1))
        elif kind == "rows":         # W split by rows into two matrices, the k-th one on v
            w, v, k = p[op[1]], vals[op[2]], op[3]
            vals.append(symcell.split(w, 2)[k] @ v if sym else v @ w.chunk(2, 0)[k].t())
        elif kind == "reduce":       # sum or mean over a value's features: size 1, broadcast where used
            v = vals[op[2]]
            if sym:
                vals.append((symcell.sum if op[1] == "sum" else symcell.mean)(v))
            else:
                vals.append(v.sum(1, keepdim=True) if op[1] == "sum" else v.mean(1, keepdim=True))
        elif kind == "split":        # part k of n equal parts
            v, n, k = vals[op[1]], op[2], op[3]
            vals.append(symcell.split(v, n)[k] if sym else v.chunk(n, 1)[k])
        else:
            raise AssertionError(kind)
    out = tuple(vals[i] for i in prog.new_states + prog.extra)
    return out if len(out) > 1 else out[0]


@st.composite
def programs(draw, max_ops=8):
    n_states = draw(st.integers(1, 3))
    prog = Program(states=[draw(st.sampled_from(SIZES)) for _ in range(n_states)])
    prog.sizes = ["I", *prog.states]

    def new_param(shape):
        name = f"p{len(prog.params)}"
        prog.params.append((name, shape))
        return name

    def pick(size=None):
        choices = [i for i, s in enumerate(prog.sizes) if size is None or s == size]
        return draw(st.sampled_from(choices)) if choices else None

    def matmul_to(size):
        operands = [pick() for _ in range(draw(st.integers(1, 3)))]
        w = new_param((size, "+".join(prog.sizes[i] for i in operands)))
        prog.ops.append(("matmul", w, tuple(operands)))
        prog.sizes.append(size)

    for _ in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(["unary", "unary", "binary", "binary", "scale", "vec", "matmul", "matmul",
                                     "split", "blocks", "rows", "reduce", "scalar"]))
        if kind == "unary":
            a = pick()
            prog.ops.append(("unary", draw(st.sampled_from(UNARY)), a))
            prog.sizes.append(prog.sizes[a])
        elif kind == "binary":       # operands of one size, or the second of size 1 (broadcast)
            a = pick()
            b = pick(prog.sizes[a]) if draw(st.booleans()) else (pick("1") or pick(prog.sizes[a]))
            prog.ops.append(("binary", draw(st.sampled_from(BINARY)), a, b))
            prog.sizes.append(prog.sizes[a])
        elif kind == "scale":
            a = pick()
            prog.ops.append(("scale", draw(st.sampled_from([0.5, -1.5, 2.0])), a,
                             draw(st.sampled_from([0.0, 1.0, -0.25]))))
            prog.sizes.append(prog.sizes[a])
        elif kind == "vec":
            a = pick()
            prog.ops.append(("vec", new_param((prog.sizes[a],)), a))
            prog.sizes.append(prog.sizes[a])
        elif kind == "scalar":       # a parameter of shape (): one number for every row and feature
            a = pick()
            prog.ops.append(("vec", new_param(()), a))
            prog.sizes.append(prog.sizes[a])
        elif kind == "reduce":
            a = pick()
            prog.ops.append(("reduce", draw(st.sampled_from(["sum", "mean"])), a))
            prog.sizes.append("1")
        elif kind == "matmul":
            matmul_to(draw(st.sampled_from(["H", "2*H"])))
        elif kind == "blocks":
            a = pick("2*H")
            if a is None:
                continue
            prog.ops.append(("blocks", new_param((2, "H", "H")), a))
            prog.sizes.append("2*H")
        elif kind == "rows":
            a, size = pick(), draw(st.sampled_from(["H", "2*H"]))
            prog.ops.append(("rows", new_param((f"2*({size})", prog.sizes[a])), a, draw(st.integers(0, 1))))
            prog.sizes.append(size)
        else:
            a = pick("2*H")
            if a is None:
                continue
            prog.ops.append(("split", a, 2, draw(st.integers(0, 1))))
            prog.sizes.append("H")
    for size in prog.states:
        if pick(size) is None or draw(st.booleans()):
            # mostly a fresh function of the step, bounded so long sequences stay finite
            if pick(size) is None:
                matmul_to(size)
            prog.ops.append(("unary", draw(st.sampled_from(["tanh", "sigmoid"])), pick(size)))
            prog.sizes.append(size)
        prog.new_states.append(pick(size))
    if draw(st.integers(0, 3)) == 0:    # an output that is not a state (outputs={"y0": size})
        prog.extra.append(pick())
    return prog


def define(prog, name):
    """The symcell cell of a program."""
    names = ["x"] + [f"s{k}" for k in range(len(prog.states))] + [n for n, _ in prog.params]

    def step(**kw):
        return run(prog, kw["x"], [kw[f"s{k}"] for k in range(len(prog.states))],
                   [kw[n] for n, _ in prog.params], sym=True)
    step.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                            for n in names])
    outputs = {**{f"y{k}": prog.sizes[i] for k, i in enumerate(prog.extra)}, "s0": None} if prog.extra else None
    return symcell.define(inputs={"x": "I"}, state={f"s{k}": s for k, s in enumerate(prog.states)},
                          params={n: shape for n, shape in prog.params}, outputs=outputs, name=name)(step)


def eager_step(prog):
    def step(x, *rest):
        out = run(prog, x, rest[:len(prog.states)], rest[len(prog.states):], sym=False)
        return out if isinstance(out, tuple) else (out,)
    return step
