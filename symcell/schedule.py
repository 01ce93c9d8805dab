"""From the traced IR to a schedule: what runs before the loop, what runs in it, and which pointwise work
fuses into one region. The passes, each a function of what the previous ones produced (pipeline.py runs them):

  bind_ir          dimensions -> integers (skipped for backends that take sizes at run time, and gradients())
  rewrite          W @ cat(a, b)      -> one matmul of two terms W[:, :na] @ a + W[:, na:] @ b
                   W @ x + U @ h      -> one matmul of two terms (same size): one output buffer, accumulated
                   slice(f(a, b))     -> f(slice(a), slice(b))         (splits move to the leaves, which become views)
                   slice(cat(...))    -> the part it falls in, when provable
                   f(cat(a, b), v)    -> cat(f(a, v[:na]), f(b, v[na:]))      (a size-1 v is not split: it broadcasts)
                   sum(cat(a, b))     -> sum(a) + sum(b)
  hoist            a matmul whose operands depend on no state runs once over all T*B rows before the loop, with
                   the pointwise work feeding it; one with a state term runs all its terms in the loop (its
                   input terms are as cheap there, per batch slice, and the gates never make a round trip)
  materialize      pointwise nodes feeding a matmul, reductions (and an operand they share), and cats a slice
                   cannot see through, get a buffer; every other pointwise node is inlined where it is used
  allocate_values  names every buffer (inputs, states, vector parameters, buffered nodes, matmul outputs, new
                   states) and lists the pointwise outputs that must be written into them
  form_regions     statements by readiness: a matmul as soon as its operands exist, then every ready pointwise
                   output, grouped by (stage, width) into fused regions (one loop over rows x features each; a
                   reduction's width is its operand's), their expressions in sympy with common subexpressions
                   named (_e0, _e1, ...)
"""
import math
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Dict, FrozenSet, Tuple

import sympy

from . import dims as D
from .functions import BY_NAME
from .ir import CellIR, Node, refuse_parameter_part, walk
from .printing import math_str

ZERO = sympy.Integer(0)


class Kind(str, Enum):
    """What a value is (a str, so it prints and compares as its name)."""
    INPUT = "input"
    STATE = "state"          # a state as it enters the step
    PARAM = "param"          # a vector parameter, broadcast over the batch
    MATMUL = "matmul"
    PW = "pw"                # a pointwise value with a buffer of its own
    CAT = "cat"
    NEW_STATE = "new_state"  # a state's new value

    def __str__(self):
        return self.value


class Stage(str, Enum):
    GIVEN = "given"          # an argument of the scan
    PRE = "pre"              # computed for all T*B rows before the loop
    LOOP = "loop"            # computed in each step

    def __str__(self):
        return self.value


# --- the schedule's data -------------------------------------------------------------------------------

@dataclass(frozen=True)
class View:
    """Features start:stop of a value (a buffer of shape (rows, size))."""
    value: str
    start: Any
    stop: Any


@dataclass(frozen=True)
class Value:
    name: str
    kind: Kind
    size: Any
    stage: Stage


@dataclass(frozen=True)
class Term:
    """weight[:, col_start:col_stop] applied to the operand view: operand @ weight[:, cols].T"""
    weight: str
    col_start: Any
    col_stop: Any
    operand: View


@dataclass(frozen=True)
class MatMul:
    """out = sum over terms of operand @ weight[:, cols].T (one buffer; += onto it when `accumulate`)."""
    out: str
    terms: Tuple[Term, ...]
    accumulate: bool = False


@dataclass(frozen=True)
class Region:
    """Fused pointwise work over rows x `width` features. `outputs[k]` = (destination view, its sympy expression
    in the leaf symbols); to compute them, evaluate `temps` in order, then `results[k]` (the same expressions
    written with the temps) into each destination; a destination of size 1 takes the sum over the features
    (a reduction), a leaf of size 1 is the same for every feature (broadcast)."""
    outputs: Tuple[Tuple[View, sympy.Expr], ...]
    leaves: Tuple[Tuple[sympy.Symbol, View], ...]
    temps: Tuple[Tuple[sympy.Symbol, sympy.Expr], ...] = ()
    results: Tuple[sympy.Expr, ...] = ()
    width: Any = None    # the features the region runs over (kernel.Pointwise says how size-1 views join in)


@dataclass(frozen=True)
class Schedule:
    ir: CellIR
    values: Tuple[Value, ...]
    pre: Tuple[Any, ...]          # statements run once over all T*B rows
    loop: Tuple[Any, ...]         # statements run each step
    new_states: Tuple[str, ...]   # the value holding each state's new value

    def value(self, name):
        return next(v for v in self.values if v.name == name)


# --- bind -----------------------------------------------------------------------------------------------

def bind_ir(ir, dims):
    """Substitute integer dimensions everywhere; every size must come out a positive integer."""
    syms = {D.dim_symbol(k): v for k, v in dims.items()}
    memo = {}

    def at(what):   # (what an error names: the cell, then the value)
        return f"{ir.name}: {what}"

    def b(n):
        if n in memo:
            return memo[n]
        args = tuple(b(a) for a in n.args)
        size = None if n.size is None else sympy.Integer(D.bind(n.size, syms, at(n.label)))
        attr = n.attr
        if n.op == "const" and isinstance(attr, sympy.Basic):
            attr = sympy.Integer(D.bind(attr, syms, at(n.label)))
        elif n.op == "slice":
            attr = tuple(sympy.Integer(sympy.sympify(x).subs(syms)) for x in attr)
        elif n.op == "matmul":
            attr = tuple((w, sympy.Integer(sympy.sympify(c0).subs(syms)),
                          sympy.Integer(D.bind(c1, syms, at(f"{w} columns")))) for w, c0, c1 in attr)
        memo[n] = replace(n, args=args, size=size, attr=attr)
        return memo[n]

    inputs = tuple((n, sympy.Integer(D.bind(s, syms, at(f"input {n!r}")))) for n, s in ir.inputs)
    states = tuple((n, sympy.Integer(D.bind(s, syms, at(f"state {n!r}")))) for n, s in ir.states)
    def shapes(params):
        return tuple((n, tuple(sympy.Integer(D.bind(s, syms, at(f"param {n!r}"))) for s in shape))
                     for n, shape in params)
    declared = shapes(ir.declared)   # (first: an error names a parameter as declared, W, not a block of it, W_0)
    params = shapes(ir.params)
    views = tuple((n, p, sympy.Integer(sympy.sympify(r0).subs(syms)), sympy.Integer(sympy.sympify(r1).subs(syms)))
                  for n, p, r0, r1 in ir.views)
    returns = tuple(b(r) for r in ir.returns)
    return replace(ir, inputs=inputs, states=states, params=params, returns=returns, declared=declared, views=views)


# --- rewrite --------------------------------------------------------------------------------------------

def _provably(rel):
    """True only when sympy can prove the relation for every binding of the dimensions."""
    return bool(rel == True)  # noqa: E712 - sympy relational


def _slice(base, start, stop):
    size = sympy.simplify(stop - start)
    return Node("slice", (base,), size, (sympy.simplify(start), sympy.simplify(stop)),
                f"{base.label}[{D.fmt(start)}:{D.fmt(stop)}]")


def _add(a, b):
    return Node("pw", (a, b), a.size, "add", f"({a.label} + {b.label})")


def _cat(parts, label):
    return Node("cat", tuple(parts), sympy.Add(*[p.size for p in parts]), None, label)


def _offsets(parts):
    off, out = ZERO, []
    for p in parts:
        out.append((off, off + p.size))
        off = off + p.size
    return out


def _add_terms(n):
    if n.op == "pw" and n.attr == "add":
        return _add_terms(n.args[0]) + _add_terms(n.args[1])
    return [n]


def _merge_matmuls(terms):
    """a + M1 + b + M2 with matmuls M1, M2 of one size -> (M1 + M2 as one matmul) + a + b; None if nothing merges"""
    mms = [t for t in terms if t.op == "matmul"]
    if len(mms) < 2 or any(not D.same_size(m.size, mms[0].size) for m in mms):
        return None
    merged = Node("matmul", tuple(a for m in mms for a in m.args), mms[0].size,
                  tuple(t for m in mms for t in m.attr), " + ".join(m.label for m in mms))
    total = merged
    for t in terms:
        if t.op != "matmul":
            total = _add(total, t)
    return total


def _split_cat_operands(n):
    """A matmul term on cat(a, b) -> two terms on a and b over consecutive column blocks; None if none is a cat"""
    if not any(a.op == "cat" for a in n.args):
        return None
    args, terms = [], []
    for a, (w, c0, _) in zip(n.args, n.attr):
        parts = a.args if a.op == "cat" else (a,)
        for p, (ps, pe) in zip(parts, _offsets(parts)):
            refuse_parameter_part(n.label, p, D.fmt(n.size))
            args.append(p)
            terms.append((w, c0 + ps, c0 + pe))
    return Node("matmul", tuple(args), n.size, tuple(terms), n.label)


def _rewrite_slice(n, rw):
    base, (s, e) = n.args[0], n.attr
    if D.same_size(s, 0) and D.same_size(e, base.size):
        return base
    if base.op == "slice":
        bs = base.attr[0]
        return rw(_slice(base.args[0], bs + s, bs + e))
    if base.op == "pw":
        args = [a if _broadcasts(a, base) else _slice(a, s, e) for a in base.args]
        return rw(Node("pw", tuple(args), n.size, base.attr, n.label))
    if base.op == "cat":
        pieces = []
        for part, (ps, pe) in zip(base.args, _offsets(base.args)):
            if _provably(pe <= s) or _provably(ps >= e):
                continue  # no overlap
            if not (_provably(ps <= s) or _provably(ps >= s)) or \
               not (_provably(pe <= e) or _provably(pe >= e)):
                return n  # undecidable overlap: the cat is materialized, the slice is a view of it
            lo = s if _provably(s >= ps) else ps
            hi = e if _provably(e <= pe) else pe
            pieces.append(rw(_slice(part, lo - ps, hi - ps)))
        return pieces[0] if len(pieces) == 1 else rw(_cat(pieces, n.label))
    return n


def _broadcasts(arg, node):
    """Whether an operand of a pointwise node is the same for all its features: a number, or a size-1 value
    under a wider node (D.broadcast)."""
    return arg.size is None or (D.is_one(arg.size) and not D.is_one(node.size))


def rewrite(returns):
    """The new states with the rewrites of the module docstring applied, bottom up, to a fixed point."""
    memo = {}

    def rw(n):
        if n not in memo:
            memo[n] = _local(replace(n, args=tuple(rw(a) for a in n.args)) if n.args else n)
        return memo[n]

    def _local(n):
        if n.op == "cat" and any(a.op == "cat" for a in n.args):
            return rw(_cat([p for a in n.args for p in (a.args if a.op == "cat" else (a,))], n.label))
        if n.op == "slice":
            return _rewrite_slice(n, rw)
        if n.op == "matmul":
            split = _split_cat_operands(n)
            if split is None:
                for a in n.args:   # (a block of a 3-d parameter's matmul on a cat is a slice of it, rewritten)
                    refuse_parameter_part(n.label, a, D.fmt(n.size))
            return n if split is None else rw(split)
        if n.op == "pw" and n.attr == "add":
            merged = _merge_matmuls(_add_terms(n))
            if merged is not None:
                return rw(merged)
        if n.op == "pw":
            cats = [a for a in n.args if a.op == "cat" and not _broadcasts(a, n)]
            if cats:
                parts = [rw(Node("pw", tuple(a if _broadcasts(a, n) else _slice(a, s, e) for a in n.args),
                                 sympy.simplify(e - s), n.attr, n.label)) for s, e in _offsets(cats[0].args)]
                return rw(_cat(parts, n.label))
        if n.op == "reduce" and n.args[0].op == "cat":   # sum(cat(a, b)) = sum(a) + sum(b)
            parts = [rw(Node("reduce", (p,), n.size, n.attr, n.label)) for p in n.args[0].args]
            total = parts[0]
            for p in parts[1:]:
                total = rw(_add(total, p))
            return total
        return n

    return tuple(rw(r) for r in returns)


# --- hoist, materialize ---------------------------------------------------------------------------------

def hoist(returns):
    """The nodes computed before the loop: every matmul that depends on no state, with its operand subgraph."""
    on_state = {}
    for n in walk(returns):
        on_state[n] = n.op == "state" or any(on_state[a] for a in n.args)
    return frozenset(m for n in walk(returns) if n.op == "matmul" and not on_state[n] for m in walk([n]))


def materialize(returns):
    """The pointwise, reduction and cat nodes that need a buffer of their own, in graph order: operands of matmuls
    (a GEMM reads memory), reductions and the operands they share with other users, and cats that a slice could
    not see through."""
    nodes = walk(returns)
    users = {}
    for n in nodes:
        for a in set(n.args):
            users[a] = users.get(a, 0) + 1
    users.update({r: users.get(r, 0) + 1 for r in returns})
    need = set()
    for n in nodes:
        if n.op == "matmul":
            need |= {a for a in n.args if a.op in ("pw", "cat")}
        if n.op == "reduce":   # its sum is written once a region has run over all the operand's features
            need.add(n)
            # an operand used after the reduction too (layer_norm(c) of a new c) is kept, not computed again
            # in every region after it
            need |= {a for a in n.args if a.op == "pw" and users[a] > 1}
        if n.op == "slice" and n.args[0].op == "cat":
            need.add(n.args[0])
    return tuple(n for n in nodes if n in need)


# --- allocate values ------------------------------------------------------------------------------------

class _Names:
    def __init__(self, taken):
        self.taken = set(taken)

    def new(self, base):
        name, k = base, 1
        while name in self.taken or not name.isidentifier():
            name = f"{base}{k}" if base.isidentifier() else f"v{len(self.taken)}_{k}"
            k += 1
        self.taken.add(name)
        return name


@dataclass(frozen=True)
class Allocation:
    """Every buffer of a step and what must be written into each."""
    values: Tuple[Value, ...]
    value_of: Dict[Node, str] = field(hash=False, compare=False)   # node -> the value holding it
    writes: Tuple[Tuple[Stage, View, Node], ...]   # pointwise outputs to compute: (stage, destination, node)
    matmuls: Tuple[Node, ...]
    new_states: Tuple[str, ...]
    pre: FrozenSet[Node]
    taken: FrozenSet[str]                           # names in use (leaf symbols must avoid them)

    def size(self, name):
        return next(v.size for v in self.values if v.name == name)


def base_view(n, value_of):
    """A node that denotes (a slice of) a buffer -> the view; None when it is a pointwise expression."""
    if n.op == "slice":
        v = base_view(n.args[0], value_of)
        return None if v is None else View(v.value, v.start + n.attr[0], v.start + n.attr[1])
    if n in value_of:
        return View(value_of[n], ZERO, n.size)
    return None


def _matmul_name(n, value_of, values):
    """gates for a matmul of several weights; W_hx for W @ cat(h, x); W_v when the operand has no name"""
    ops = []
    for a in n.args:
        v = base_view(a, value_of)
        full = v is not None and v.start == 0 and v.stop == next(x.size for x in values if x.name == v.value)
        ops.append(v.value if full else (f"{v.value}_s" if v is not None else "v"))
    weights = list(dict.fromkeys(w for w, _, _ in n.attr))
    if len(weights) > 1:
        return "gates"
    return f"{weights[0]}_{''.join(ops)}"


def allocate_values(ir, returns, pre, buffered):
    names = _Names([n for n, _ in ir.inputs] + [n for n, _ in ir.states] + [n for n, _ in ir.params])
    values, value_of, writes = [], {}, []

    def add(node, name, kind, stage, size=None):
        values.append(Value(name, kind, node.size if node is not None else size, stage))
        if node is not None:
            value_of[node] = name
        return name

    def written(stage, dest, n):
        """n's value goes into dest: a cat writes each part into its own columns"""
        if n.op == "cat":
            for part, (ps, pe) in zip(n.args, _offsets(n.args)):
                writes.append((stage, View(dest, ps, pe), part))
        else:
            writes.append((stage, View(dest, ZERO, n.size), n))

    for n, s in ir.inputs:
        add(Node("input", (), s, n, n), n, Kind.INPUT, Stage.GIVEN)
    for n, s in ir.states:
        add(Node("state", (), s, n, n), n, Kind.STATE, Stage.GIVEN)
    for n, shape in ir.params:
        if len(shape) == 1:
            add(Node("param", (), shape[0], n, n), n, Kind.PARAM, Stage.GIVEN)
    counter = {"pw": 0, "cat": 0, "reduce": 0}
    for n in buffered:
        stage = Stage.PRE if n in pre else Stage.LOOP
        hint = {"pw": "t", "cat": "cat", "reduce": "sum"}[n.op] + str(counter[n.op])
        counter[n.op] += 1
        written(stage, add(n, names.new(hint), Kind.CAT if n.op == "cat" else Kind.PW, stage), n)
    matmuls = [n for n in walk(returns) if n.op == "matmul"]
    for n in matmuls:
        add(n, names.new(_matmul_name(n, value_of, values)), Kind.MATMUL, Stage.PRE if n in pre else Stage.LOOP)
    new_states = []
    for (sn, _), r in zip(ir.states, returns):
        new_states.append(add(None, names.new(f"{sn}_new"), Kind.NEW_STATE, Stage.LOOP, r.size))
        written(Stage.LOOP, new_states[-1], r)
    return Allocation(tuple(values), value_of, tuple(writes), tuple(matmuls), tuple(new_states), pre,
                      frozenset(names.taken))


# --- form regions ---------------------------------------------------------------------------------------

def pw_expr(fn, args):
    """A pointwise node's function applied to sympy arguments."""
    if fn == "add":
        return args[0] + args[1]
    if fn == "sub":
        return args[0] - args[1]
    if fn == "mul":
        return args[0] * args[1]
    if fn == "div":
        return args[0] / args[1]
    if fn == "neg":
        return -args[0]
    if isinstance(fn, tuple) and fn[0] == "pow":
        return args[0] ** exponent(fn[1])
    return BY_NAME[fn].sympy(*args)


def exponent(e):
    """A power's exponent as written, exactly: an integer as such (where C++'s int holds it), a fraction with a
    small power-of-two denominator (0.5, -1.5: printed as sqrt, rsqrt, exact rationals in the derivatives) as a
    Rational, anything else a Float of the same double. (sympy.nsimplify, used before, took 2.9999999999 for 3
    and 1e-300 for 0, and made sqrt(2), log(2) of math.sqrt(2), math.log(2), which the C++ and Triton printers
    cannot write as numbers.)"""
    e = float(e)
    if math.isfinite(e) and not e.is_integer():
        exact = sympy.Rational(e)
        if exact.q <= 1024:
            return exact
    return number(e)


def number(v):
    """A constant as sympy takes it: an integer as such where C++'s int holds it (1e30 as the integer 10**30 it
    is overflowed), anything else the Float of the same double."""
    v = float(v)
    return sympy.Integer(int(v)) if v.is_integer() and abs(v) < 2 ** 31 else sympy.Float(v)


def defined(n, e):
    """e, the expression of the pointwise node n; a ValueError where sympy has folded it to a value that is no
    real number for any input (log(x - x) = log(0) is complex infinity, 0 * inf and a NaN constant NaN, sqrt(0 * x
    - 1) imaginary): the printers cannot write it, and NaN would swallow the other terms' gradients"""
    held = [name for atom, name in ((sympy.zoo, "complex infinity (sympy's zoo)"), (sympy.nan, "NaN"),
                                    (sympy.I, "the imaginary unit I")) if e.has(atom)]
    if held:
        whole = "" if e in (sympy.zoo, sympy.nan, sympy.I) else f", which holds {' and '.join(held)}"
        raise ValueError(f"{n.label or n}: this value folds to {math_str(e)}{whole}, no real number (as "
                         "log(x - x) = log(0), h / (x * 0), 0 * inf, inf - inf or a NaN constant do, even in one "
                         "branch of a where): write what you mean, e.g. where(...) with float('inf') where a value "
                         "is infinite")
    return e


class _Exprs:
    """Pointwise nodes as sympy expressions; buffers and views of them become leaf symbols (named once)."""

    def __init__(self, alloc):
        self.alloc, self.names, self.symbols = alloc, _Names(alloc.taken), {}

    def leaf(self, view, leaves):
        key = (view.value, view.start, view.stop)
        if key not in self.symbols:
            full = view.start == 0 and view.stop == self.alloc.size(view.value)
            self.symbols[key] = view.value if full else self.names.new(_slice_name(view))
        s = sympy.Symbol(self.symbols[key])
        leaves[s] = view
        return s

    def of(self, n, leaves, memo):
        if n in memo:
            return memo[n]
        if n.op == "const":
            if isinstance(n.attr, sympy.Basic):   # a size (mean's divisor): a number once bound, else dimensions
                e = n.attr
            else:
                e = number(n.attr)
        else:
            v = base_view(n, self.alloc.value_of)
            if v is not None:
                e = self.leaf(v, leaves)
            elif n.op == "pw":
                e = defined(n, pw_expr(n.attr, [self.of(a, leaves, memo) for a in n.args]))
            else:
                raise AssertionError(f"unexpected node {n.op} inside a region")
        memo[n] = e
        return e

    def definition(self, n, dest, leaves, memo):
        """The expression written into dest: a pointwise node with its own buffer is defined by its function of
        its operands (reading the buffer would read itself); a reduction by its operand, summed over its
        features by the region."""
        if self._own(n, dest):
            if n.op == "reduce":
                return self.of(n.args[0], leaves, memo)
            return defined(n, pw_expr(n.attr, [self.of(a, leaves, memo) for a in n.args]))
        return self.of(n, leaves, memo)

    def width(self, n, dest):
        """The features the region writing n into dest runs over: a reduction's operand's."""
        return n.args[0].size if self._own(n, dest) and n.op == "reduce" else dest.stop - dest.start

    def reads(self, n, dest):
        """The buffers the definition of n reads."""
        if self._own(n, dest):
            return set().union(*[self._leaf_values(a) for a in n.args])
        return self._leaf_values(n)

    def _own(self, n, dest):
        return n.op in ("pw", "reduce") and self.alloc.value_of.get(n) == dest.value

    def _leaf_values(self, n):
        v = base_view(n, self.alloc.value_of)
        if v is not None:
            return {v.value}
        return set().union(*[self._leaf_values(a) for a in n.args]) if n.op == "pw" else set()


def _region(exprs, leaves, width):
    temps, results = sympy.cse([e for _, e in exprs], symbols=sympy.numbered_symbols("_e"))
    return Region(tuple(exprs), tuple(leaves.items()), tuple(temps), tuple(results), width)


def form_regions(ir, alloc):
    exprs = _Exprs(alloc)
    stmts = {Stage.PRE: [], Stage.LOOP: []}
    ready = {v.name for v in alloc.values if v.stage == Stage.GIVEN}
    pending_writes, pending_mm = list(alloc.writes), list(alloc.matmuls)
    unwritten = {}   # value -> number of its outputs still to write
    for _, dest, _ in pending_writes:
        unwritten[dest.value] = unwritten.get(dest.value, 0) + 1
    while pending_writes or pending_mm:
        progressed = False
        for n in list(pending_mm):
            views = [base_view(a, alloc.value_of) for a in n.args]
            if all(v.value in ready for v in views):
                terms = tuple(Term(w, c0, c1, v) for (w, c0, c1), v in zip(n.attr, views))
                out = alloc.value_of[n]
                stmts[Stage.PRE if n in alloc.pre else Stage.LOOP].append(MatMul(out, terms))
                ready.add(out)
                pending_mm.remove(n)
                progressed = True
        now = [(st, dest, n) for st, dest, n in pending_writes if exprs.reads(n, dest) <= ready]
        groups = {}
        for st, dest, n in now:
            groups.setdefault((st, exprs.width(n, dest)), []).append((dest, n))
            pending_writes.remove((st, dest, n))
            progressed = True
        for (st, width), outs in groups.items():
            leaves, memo = {}, {}
            stmts[st].append(_region([(dest, exprs.definition(n, dest, leaves, memo)) for dest, n in outs], leaves,
                                     width))
        for _, dest, _ in now:
            unwritten[dest.value] -= 1
            if unwritten[dest.value] == 0:
                ready.add(dest.value)
        if not progressed:
            raise AssertionError("schedule made no progress; a cycle in the cell IR")
    return Schedule(ir, alloc.values, tuple(stmts[Stage.PRE]), tuple(stmts[Stage.LOOP]), alloc.new_states)


def _slice_name(view):
    """W_h[2*H:3*H] -> W_h_2 (the third chunk of its size); other slices -> W_h_s."""
    size = sympy.simplify(view.stop - view.start)
    k = sympy.simplify(view.start / size)
    if k.is_integer:
        return f"{view.value}_{k}"
    return f"{view.value}_s"

