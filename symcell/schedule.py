"""From the traced IR to a schedule: what runs before the loop, what runs in it, and which pointwise work
fuses into one region.

Passes, in order (see `lower`):
  1. bind      dimensions -> integers (skipped for the symbolic schedule that `gradients()` prints)
  2. rewrite   W @ cat(a, b)      -> one matmul of two terms W[:, :na] @ a + W[:, na:] @ b
               W @ x + U @ h      -> one matmul of two terms (same size): one output buffer, accumulated
               slice(f(a, b))     -> f(slice(a), slice(b))          (splits move to the leaves, which become views)
               slice(cat(...))    -> the part it falls in, when provable
               f(cat(a, b), v)    -> cat(f(a, v[:na]), f(b, v[na:]))
  3. hoist     a matmul whose operands depend on no state runs once over all T*B rows before the loop; one
               with a state term runs all its terms in the loop (its input terms are as cheap there, per
               batch slice, and the gates never make a round trip through memory)
  4. materialize  pointwise nodes feeding a matmul or a cat get a buffer; every other one is inlined
  5. regions   ready pointwise outputs of one size form one fused region (one loop over batch x features)
"""
from dataclasses import dataclass, replace
from typing import Any, Tuple

import sympy

from . import dims as D
from .functions import UNARY
from .ir import CellIR, Node, walk

ZERO = sympy.Integer(0)


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
    kind: str      # input | state | param | matmul | pw | cat | new_state
    size: Any
    stage: str     # 'pre' (computed for all steps before the loop) | 'loop' | 'given'


@dataclass(frozen=True)
class Term:
    """weight[:, col_start:col_stop] applied to the operand view: operand @ weight[:, cols].T"""
    weight: str
    col_start: Any
    col_stop: Any
    operand: View


@dataclass(frozen=True)
class MatMul:
    """out = sum over terms of operand @ weight[:, cols].T (one buffer, accumulated)."""
    out: str
    terms: Tuple[Term, ...]


@dataclass(frozen=True)
class Region:
    """Fused pointwise work: outputs[k] = (destination view, sympy expression in the leaf symbols)."""
    outputs: Tuple[Tuple[View, sympy.Expr], ...]
    leaves: Tuple[Tuple[sympy.Symbol, View], ...]


@dataclass(frozen=True)
class Schedule:
    ir: CellIR
    values: Tuple[Value, ...]
    pre: Tuple[Any, ...]          # statements run once over all T*B rows
    loop: Tuple[Any, ...]         # statements run each step
    new_states: Tuple[str, ...]   # the value holding each state's new value

    def value(self, name):
        return next(v for v in self.values if v.name == name)


# --- pass 1: bind ---------------------------------------------------------------------------------------

def bind_ir(ir, dims):
    """Substitute integer dimensions everywhere; every size must come out a positive integer."""
    syms = {D.dim_symbol(k): v for k, v in dims.items()}
    memo = {}

    def b(n):
        if n in memo:
            return memo[n]
        args = tuple(b(a) for a in n.args)
        size = None if n.size is None else sympy.Integer(D.bind(n.size, syms, n.label))
        attr = n.attr
        if n.op == "slice":
            attr = tuple(sympy.Integer(sympy.sympify(x).subs(syms)) for x in attr)
        elif n.op == "matmul":
            attr = (attr[0], sympy.Integer(sympy.sympify(attr[1]).subs(syms)),
                    sympy.Integer(D.bind(attr[2], syms, f"{attr[0]} columns")))
        memo[n] = replace(n, args=args, size=size, attr=attr)
        return memo[n]

    inputs = tuple((n, sympy.Integer(D.bind(s, syms, f"input {n!r}"))) for n, s in ir.inputs)
    states = tuple((n, sympy.Integer(D.bind(s, syms, f"state {n!r}"))) for n, s in ir.states)
    params = tuple((n, tuple(sympy.Integer(D.bind(s, syms, f"param {n!r}")) for s in shape))
                   for n, shape in ir.params)
    returns = tuple(b(r) for r in ir.returns)
    return replace(ir, inputs=inputs, states=states, params=params, returns=returns)


# --- pass 2: rewrite ------------------------------------------------------------------------------------

def _provably(rel):
    """True only when sympy can prove the relation for every binding of the dimensions."""
    return bool(rel == True)  # noqa: E712 - sympy relational


def _eq(a, b):
    return sympy.expand(a - b) == 0


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
    if len(mms) < 2 or any(not _eq(m.size, mms[0].size) for m in mms):
        return None
    merged = Node("matmul", tuple(a for m in mms for a in m.args), mms[0].size,
                  tuple(t for m in mms for t in m.attr), " + ".join(m.label for m in mms))
    total = merged
    for t in terms:
        if t.op != "matmul":
            total = _add(total, t)
    return total


def rewrite(returns):
    memo = {}

    def rw(n):
        if n in memo:
            return memo[n]
        n2 = replace(n, args=tuple(rw(a) for a in n.args)) if n.args else n
        out = _local(n2)
        memo[n] = out
        return out

    def _local(n):
        if n.op == "cat" and any(a.op == "cat" for a in n.args):
            flat = [p for a in n.args for p in (a.args if a.op == "cat" else (a,))]
            return rw(_cat(flat, n.label))
        if n.op == "slice":
            base, (s, e) = n.args[0], n.attr
            if _eq(s, 0) and _eq(e, base.size):
                return base
            if base.op == "slice":
                bs = base.attr[0]
                return rw(_slice(base.args[0], bs + s, bs + e))
            if base.op == "pw":
                args = [a if a.size is None else _slice(a, s, e) for a in base.args]
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
        if n.op == "matmul" and not isinstance(n.attr[0], tuple):   # the front end's W @ v: one term
            operand, (w, c0, _) = n.args[0], n.attr
            parts = operand.args if operand.op == "cat" else (operand,)
            terms = tuple((w, c0 + ps, c0 + pe) for ps, pe in _offsets(parts))
            return Node("matmul", tuple(parts), n.size, terms, n.label)
        if n.op == "pw" and n.attr == "add":
            merged = _merge_matmuls(_add_terms(n))
            if merged is not None:
                return rw(merged)
        if n.op == "pw":
            cats = [a for a in n.args if a.op == "cat"]
            if cats:
                bounds = _offsets(cats[0].args)
                parts = [rw(Node("pw", tuple(a if a.size is None else _slice(a, s, e) for a in n.args),
                                 sympy.simplify(e - s), n.attr, n.label)) for s, e in bounds]
                return rw(_cat(parts, n.label))
        return n

    return tuple(rw(r) for r in returns)


# --- sympy expressions of pointwise nodes ---------------------------------------------------------------

def pw_expr(fn, args):
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
    if fn == "id":
        return args[0]
    if isinstance(fn, tuple) and fn[0] == "pow":
        e = fn[1]
        return args[0] ** (sympy.Integer(int(e)) if float(e).is_integer() else sympy.nsimplify(e))
    return UNARY[fn](args[0])


# --- passes 3-5 -----------------------------------------------------------------------------------------

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


def lower(ir):
    returns = rewrite(ir.returns)
    nodes = walk(returns)
    users = {n: [] for n in nodes}
    for n in nodes:
        for a in n.args:
            users[a].append(n)

    names = _Names([n for n, _ in ir.inputs] + [n for n, _ in ir.states] + [n for n, _ in ir.params])
    depends_on_state = {}
    for n in nodes:
        depends_on_state[n] = n.op == "state" or any(depends_on_state[a] for a in n.args)

    # values: the nodes that get a buffer
    value_of, values = {}, []

    def add_value(node, name, kind, stage):
        values.append(Value(name, kind, node.size if node is not None else None, stage))
        if node is not None:
            value_of[node] = name
        return name

    for n, s in ir.inputs:
        add_value(Node("input", (), s, n, n), n, "input", "given")
    for n, s in ir.states:
        add_value(Node("state", (), s, n, n), n, "state", "given")
    for n, shape in ir.params:
        if len(shape) == 1:
            add_value(Node("param", (), shape[0], n, n), n, "param", "given")

    def base_view(n):
        """A leaf-ish node -> the view it denotes, or None when it is a pointwise expression."""
        if n.op == "slice":
            v = base_view(n.args[0])
            return None if v is None else View(v.value, v.start + n.attr[0], v.start + n.attr[1])
        if n in value_of:
            return View(value_of[n], ZERO, n.size)
        return None

    # which pointwise nodes need a buffer: operands of matmuls and parts of cats that stay
    needs_buffer = set()
    for n in nodes:
        if n.op == "matmul":
            needs_buffer |= {a for a in n.args if a.op in ("pw", "cat")}
        if n.op == "slice" and n.args[0].op == "cat":
            needs_buffer.add(n.args[0])
    pre_nodes = set()
    for n in nodes:  # a hoisted matmul pulls its whole operand subgraph before the loop
        if n.op == "matmul" and not depends_on_state[n]:
            pre_nodes |= {m for m in walk([n])}

    # statements, scheduled by readiness: matmuls as soon as their operand exists, then every ready
    # pointwise output, grouped by size into regions
    stmts = {"pre": [], "loop": []}
    pending = []   # (stage, dest View, node) pointwise outputs waiting for their leaves

    def stage_of(n):
        return "pre" if n in pre_nodes else "loop"

    def materialize(n, stage, name_hint, kind):
        if n in value_of:
            return value_of[n]
        name = add_value(n, names.new(name_hint), kind, stage)
        if n.op == "cat":
            for part, (ps, pe) in zip(n.args, _offsets(n.args)):
                pending.append((stage, View(name, ps, pe), part))
        elif n.op != "matmul":
            pending.append((stage, View(name, ZERO, n.size), n))
        return name

    counter = {"t": 0, "cat": 0}

    def hint(n):
        if n.op == "cat":
            counter["cat"] += 1
            return f"cat{counter['cat'] - 1}"
        counter["t"] += 1
        return f"t{counter['t'] - 1}"

    matmuls = [n for n in nodes if n.op == "matmul"]
    for n in nodes:
        if n in needs_buffer:
            materialize(n, stage_of(n), hint(n), n.op)
    mm_pending = []
    for n in matmuls:
        op_names = []
        for a in n.args:
            v = base_view(a)
            full = v is not None and v.start == 0 and v.stop == values_size(values, v.value)
            op_names.append(v.value if full else (f"{v.value}_s" if v is not None else "v"))
        weights = list(dict.fromkeys(w for w, _, _ in n.attr))
        hint_name = f"{weights[0]}_{''.join(op_names)}" if len(weights) == 1 else \
            "_".join(f"{w}{o}" for w, o in zip([w for w, _, _ in n.attr], op_names))
        if len(weights) > 1:
            hint_name = "gates" if "gates" not in names.taken else hint_name
        add_value(n, names.new(hint_name), "matmul", stage_of(n))
        mm_pending.append(n)
    new_states = []
    for (sn, _), r in zip(ir.states, returns):
        nm = names.new(f"{sn}_new")
        new_states.append(nm)
        values.append(Value(nm, "new_state", r.size, "loop"))
        if r.op == "cat":
            for part, (ps, pe) in zip(r.args, _offsets(r.args)):
                pending.append(("loop", View(nm, ps, pe), part))
        else:
            pending.append(("loop", View(nm, ZERO, r.size), r))

    ready = {v.name for v in values if v.stage == "given"}
    written = {}  # value -> number of outputs still to write
    for stage, dest, _ in pending:
        written[dest.value] = written.get(dest.value, 0) + 1

    sym_names = {}

    def leaf_symbol(view, leaves):
        key = (view.value, view.start, view.stop)
        if key not in sym_names:
            full = view.start == 0 and view.stop == values_size(values, view.value)
            sym_names[key] = view.value if full else names.new(_slice_name(view))
        s = sympy.Symbol(sym_names[key])
        leaves[s] = view
        return s

    def expr_of(n, leaves, memo):
        """The node as a sympy expression; buffers and views of them become leaf symbols."""
        if n in memo:
            return memo[n]
        if n.op == "const":
            e = sympy.Float(n.attr) if not float(n.attr).is_integer() else sympy.Integer(int(n.attr))
        else:
            v = base_view(n)
            if v is not None:
                e = leaf_symbol(v, leaves)
            elif n.op == "pw":
                e = pw_expr(n.attr, [expr_of(a, leaves, memo) for a in n.args])
            else:
                raise AssertionError(f"unexpected node {n.op} inside a region")
        memo[n] = e
        return e

    def leaf_values(n, acc):
        """Buffers that node n reads when inlined."""
        v = base_view(n)
        if v is not None:
            acc.add(v.value)
        elif n.op == "pw":
            for a in n.args:
                leaf_values(a, acc)
        return acc

    def _is_own_buffer(n, dest):
        # a pointwise node with its own buffer is defined by its expression, not read from itself
        return n.op == "pw" and value_of.get(n) == dest.value

    def _definition_reads(n, dest):
        if _is_own_buffer(n, dest):
            return set().union(*[leaf_values(a, set()) for a in n.args])
        return leaf_values(n, set())

    def _definition(n, dest, leaves, memo):
        if _is_own_buffer(n, dest):
            return pw_expr(n.attr, [expr_of(a, leaves, memo) for a in n.args])
        return expr_of(n, leaves, memo)

    while pending or mm_pending:
        progressed = False
        for n in list(mm_pending):
            views = [base_view(a) for a in n.args]
            if all(v.value in ready for v in views):
                terms = tuple(Term(w, c0, c1, v) for (w, c0, c1), v in zip(n.attr, views))
                stmts[stage_of(n)].append(MatMul(value_of[n], terms))
                ready.add(value_of[n])
                mm_pending.remove(n)
                progressed = True
        now = [(st, dest, n) for st, dest, n in pending if _definition_reads(n, dest) <= ready]
        groups = {}
        for st, dest, n in now:
            groups.setdefault((st, dest.stop - dest.start), []).append((dest, n))
            pending.remove((st, dest, n))
            progressed = True
        for (st, _), outs in groups.items():
            leaves, memo = {}, {}
            exprs = tuple((dest, _definition(n, dest, leaves, memo)) for dest, n in outs)
            stmts[st].append(Region(exprs, tuple(leaves.items())))
        for st, dest, n in now:
            written[dest.value] -= 1
            if written[dest.value] == 0:
                ready.add(dest.value)
        if not progressed:
            raise AssertionError("schedule made no progress; a cycle in the cell IR")

    return Schedule(ir, tuple(values), tuple(stmts["pre"]), tuple(stmts["loop"]), tuple(new_states))


def values_size(values, name):
    return next(v.size for v in values if v.name == name)


def _slice_name(view):
    """W_h[2*H:3*H] -> W_h_2 (the third chunk of its size); other slices -> W_h_s."""
    size = sympy.simplify(view.stop - view.start)
    k = sympy.simplify(view.start / size)
    if k.is_integer:
        return f"{view.value}_{k}"
    return f"{view.value}_s"
