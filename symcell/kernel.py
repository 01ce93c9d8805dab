"""The kernel program: the scans of a cell stated once, as data every backend renders.

A cell compiles to two scans, `forward` and `backward`. Each is a `Scan`: an entry point over sequences whose
semantics, for every backend, is this loop (lax.scan's, with phases before and after the loop):

    bind args                                    # TensorList arguments -> buffers (Scan.args)
    run `before` over all T*B rows               # e.g. matmuls on inputs alone, hoisted
    for t in (range(T) or reversed(range(T))):   # Scan.reverse
        run `step`                               # reads SEQ buffers at row block t, PREV at t - 1
        for (cin, cout) in carries: cin = cout   # the carry into the next step
    run `after` over all T*B rows                # e.g. weight gradients, one GEMM over all steps
    return the result groups (Scan.returns)

The statements: MatMul (out = or += a sum of operand @ weight.T terms), Pointwise (a fused region: expressions of
views of buffers assigned or accumulated into views), OperandGrad (d_op += d_out @ W), WeightGrad (d_W +=
d_out.T @ op over all rows), HoldEnded / PassEnded (rows past their length), Accumulate (dest += src). Each
names every buffer it touches.

The backward of the forward scan is itself a scan, in reverse time, over the residuals the forward kept
(JAX's "the backward of a scan is a scan"): the cotangent of each new state is its carry, the step runs the
derived regions (accumulating Pointwise) and the transposed matmuls (OperandGrad), and every weight gradient is
deferred to one GEMM after the loop (WeightGrad). The tangents of both scans (tangent.py) are more Scans of the
same statements, not new renderers.

Buffers carry a role, which says where a buffer lives and how a step addresses it:

    PARAM       a parameter, (size,) or (rows, cols); a vector parameter broadcasts over the rows
    PARAM_GRAD  a parameter's gradient: zeros, accumulated by every phase (summed over rows and steps); or
                assigned by its first weight gradients' GEMMs, not zeroed (weight_grads_assigned)
    SEQ         (T, B, n): row block t inside the step, all T*B rows before and after it. An argument, or
                allocated by the scan (zeros when `acc`: a gradient accumulated with +=)
    STEP        (B, n), lives for one step (zeroed at its start when `acc`); `keep` says when its value is
                kept in a sequence of its own (a residual of the forward)
    CARRY_IN    the carried value entering a step: the initial value (an argument) at the first step, then
                the CARRY_OUT it is paired with; in `returns`, its value after the last step
    CARRY_OUT   the carried value leaving a step (zeroed at the step's start when `acc`); `keep`: kept in a
                sequence (an output state always, a residual when saving)
    PREV        a forward state entering step t, read back in the backward: the SEQ buffer `seq` (the new
                state after each step) at t - 1, or its initial value (an argument) at t = 0

The rows past a sequence's length (`lengths`): a forward step holds their state (HoldEnded: new = old), and
its backward passes their carried cotangent straight to the previous state (PassEnded), so the step itself
contributes nothing there. Every backend adds one rule of its own rendering: on an ended row (in the step, and
in the phases over all T*B rows, row t * B + b) a Pointwise region writes zeros and adds nothing, selected, not
multiplied. The inputs' padding is zeros (Backend.forward), which need not be in a cell's domain: log(0) there
made -inf residuals that a GEMM over all rows multiplied by their zero cotangents (NaN weight gradients). With
the rule every value on an ended row is finite (zeros, held states, and matmuls of them). Backends may also skip
computing ended rows where nothing reads what a step writes into them (the cpp step's rows past _na).
"""
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Tuple

import sympy

from .autodiff import RegionGrad
from .printing import math_str
from .schedule import Kind, MatMul, Stage, View


class Role(str, Enum):
    PARAM = "param"
    PARAM_GRAD = "param_grad"
    SEQ = "seq"
    STEP = "step"
    CARRY_IN = "carry_in"
    CARRY_OUT = "carry_out"
    PREV = "prev"

    def __str__(self):
        return self.value


class Keep(str, Enum):
    NEVER = "never"
    SAVE = "save"         # when the forward is asked to save residuals for a backward
    ALWAYS = "always"

    def __str__(self):
        return self.value


@dataclass(frozen=True)
class Buffer:
    name: str
    role: Role
    size: Any                   # features per row (a sympy expression); a parameter's shape
    keep: Keep = Keep.NEVER     # STEP, CARRY_OUT: when its value after each step is kept as a (T, B, n) sequence
    acc: bool = False           # accumulated into with +=, so it starts at zero
    seq: str = ""               # PREV: the SEQ buffer of the states after each step


@dataclass(frozen=True)
class Arg:
    """A TensorList argument of a scan's entry point; element k binds buffers[k] (a SEQ, a PARAM, a CARRY_IN's
    initial value, a PREV's value at t = 0)."""
    name: str
    buffers: Tuple[str, ...]


@dataclass(frozen=True)
class Result:
    """A group of results: a SEQ or PARAM_GRAD buffer as it ends, a kept STEP/CARRY_OUT's sequence, a CARRY_IN's
    value after the last step. `save`: returned only when the forward saves residuals."""
    name: str
    buffers: Tuple[str, ...]
    save: bool = False


# --- statements (besides the schedule's MatMul): every buffer they touch is named in them -----------------

@dataclass(frozen=True)
class Pointwise:
    """Fused pointwise work over rows x `width` features: read the leaves (views of buffers), evaluate the temps
    in order, then each output's expression: assigned (=) into a view of a buffer, or accumulated (+=) into it;
    accumulated into a PARAM_GRAD buffer, it is summed over the rows (a vector parameter broadcasts).
    Views of one feature in a wider region (`broadcast`): a leaf is read once per row, the same for every
    feature; a destination takes the sum over the features (a reduction, or the gradient of a broadcast)."""
    leaves: Tuple[Tuple[sympy.Symbol, View], ...]
    temps: Tuple[Tuple[sympy.Symbol, sympy.Expr], ...]
    outputs: Tuple[Tuple[View, sympy.Expr, bool], ...]   # (destination, expression with temps, accumulate)
    exprs: Tuple[sympy.Expr, ...]                         # each output's expression in the leaves alone
    width: Any = None                                     # None: the first destination's

    @property
    def n(self):
        """the features the region runs over"""
        if self.width is not None:
            return self.width
        d = self.outputs[0][0]
        return d.stop - d.start

    def broadcast(self, view):
        """Whether a leaf or destination is one feature in a wider region (read for all, or summed over all)."""
        return view.stop - view.start == 1 and self.n != 1


@dataclass(frozen=True)
class OperandGrad:
    """dest += src @ weight[:, cols]: the gradient of a matmul term's operand, from its output's."""
    dest: View
    src: str
    weight: str
    col_start: Any
    col_stop: Any


@dataclass(frozen=True)
class WeightGrad:
    """dest[:, cols] += src.T @ operand, over all rows: the gradient of a matmul term's weight. An operand that is
    a PREV state is the sequence of states entering each step: its initial value, then seq[0 .. T-2]."""
    dest: str
    col_start: Any
    col_stop: Any
    src: str
    operand: View


@dataclass(frozen=True)
class HoldEnded:
    """Rows whose sequence has ended (t >= lengths[row]) keep their state: out = in, for each (in, out)."""
    pairs: Tuple[Tuple[str, str], ...]


@dataclass(frozen=True)
class PassEnded:
    """The backward of HoldEnded: on ended rows, d_in takes d_out (d_in is zero there: it is zeroed at the step's
    start) and d_out becomes 0, for each (d_in, d_out)."""
    pairs: Tuple[Tuple[str, str], ...]


@dataclass(frozen=True)
class Accumulate:
    """dest += src (a SEQ at row block t): an output's cotangent joins the carried one."""
    dest: str
    src: str


def pointwise(leaves, outputs, width, temp_prefix="_e"):
    """A Pointwise statement over `width` features from full expressions [(destination, expression,
    accumulate)], with one CSE; the leaves no expression reads are left out."""
    temps, results = sympy.cse([e for _, e, _ in outputs], symbols=sympy.numbered_symbols(temp_prefix))
    used = set().union(*[e.free_symbols for _, e, _ in outputs])
    return Pointwise(tuple((s, v) for s, v in leaves if s in used), tuple(temps), tuple((d, r, a) for (d, _, a), r in zip(outputs, results)),
                     tuple(e for _, e, _ in outputs), width)


@dataclass(frozen=True)
class Scan:
    name: str                                 # the entry point: "forward", "backward"
    reverse: bool                             # the loop runs t = T-1 .. 0
    save: bool                                # the entry point takes a `save` flag (Keep.SAVE buffers)
    args: Tuple[Arg, ...]
    buffers: Tuple[Buffer, ...]
    before: Tuple[Any, ...]
    step: Tuple[Any, ...]
    after: Tuple[Any, ...]
    carries: Tuple[Tuple[str, str], ...]      # (CARRY_IN, CARRY_OUT)
    returns: Tuple[Result, ...]

    def buffer(self, name):
        return next(b for b in self.buffers if b.name == name)

    def with_role(self, *roles):
        return [b for b in self.buffers if b.role in roles]

    @property
    def first_seq(self):
        """The first sequence argument: it gives the entry point T, B, dtype and device."""
        return next(b.name for b in self.buffers if b.role == Role.SEQ and self.arg_of(b.name))

    def arg_of(self, name):
        """(argument name, index) binding buffer `name`, or None when the scan allocates it"""
        return next(((a.name, k) for a in self.args for k, b in enumerate(a.buffers) if b == name), None)

    @property
    def first_seq_at(self):
        """(argument position, index) of first_seq: where an entry point's argument groups hold it"""
        name, k = self.arg_of(self.first_seq)
        return [a.name for a in self.args].index(name), k

    def used(self, stmts):
        """The buffers the statements read or write, in the scan's buffer order."""
        names = set()
        for st in stmts:
            names |= uses(st)
        return [b for b in self.buffers if b.name in names]


@dataclass(frozen=True)
class KernelProgram:
    name: str                     # the cell's
    dims: Tuple[str, ...]         # dimensions, in the order a kernel receives their values at run time
    forward: Scan
    backward: Scan

    @property
    def scans(self):
        return (self.forward, self.backward)


def weights_only(scan, of=MatMul):
    """The parameters a scan reads only as the weights of statements of the kind `of`: matmuls' (W of a term
    `operand @ W[:, c0:c1].T`) or transposed matmuls' (OperandGrad: `d_out @ W[:, c0:c1]`, a backward's), in the
    order of its arguments: a backend may take them in another dtype than the rest (the cpp forward and backward:
    a 16-bit module's weight matrices as given, Kernel.weights16)."""
    names = [b.name for b in scan.with_role(Role.PARAM) if len(b.size) == 2]
    stmts = [*scan.before, *scan.step, *scan.after]
    as_weight = {st.weight for st in stmts if isinstance(st, OperandGrad)} if of is OperandGrad else \
        {t.weight for st in stmts if isinstance(st, MatMul) for t in st.terms}
    otherwise = set()
    for st in stmts:
        if isinstance(st, of):   # (its operands and output)
            otherwise |= {st.out, *(t.operand.value for t in st.terms)} if of is MatMul else {st.src, st.dest.value}
        else:
            otherwise |= uses(st)
    return [n for a in scan.args for n in a.buffers if n in names and n in as_weight and n not in otherwise]


def grad(name):
    """The buffer holding the gradient of a value (user names cannot start with d_)."""
    return f"d_{name}"


def uses(st):
    """The buffers a statement reads or writes."""
    return reads(st) | writes(st)


def reads(st):
    """The buffers a statement reads (an accumulation reads what it adds to)."""
    if isinstance(st, MatMul):
        return {t.operand.value for t in st.terms} | {t.weight for t in st.terms} | ({st.out} if st.accumulate else set())
    if isinstance(st, Pointwise):
        return {v.value for _, v in st.leaves} | {d.value for d, _, acc in st.outputs if acc}
    if isinstance(st, OperandGrad):
        return {st.src, st.weight, st.dest.value}
    if isinstance(st, WeightGrad):
        return {st.src, st.operand.value, st.dest}
    if isinstance(st, (HoldEnded, PassEnded)):
        return {x for pair in st.pairs for x in pair}
    if isinstance(st, Accumulate):
        return {st.dest, st.src}
    raise TypeError(f"unknown statement {st!r}")


def sources(st):
    """The buffers a statement reads values from (not those it only accumulates into)."""
    if isinstance(st, Accumulate):
        return {st.src}
    if isinstance(st, Pointwise):
        return {v.value for _, v in st.leaves}
    if isinstance(st, (MatMul, OperandGrad, WeightGrad)):
        return reads(st) - writes(st)
    return reads(st)


def writes(st):
    """The buffers a statement writes into (assigned, accumulated, or changed on some rows)."""
    if isinstance(st, MatMul):
        return {st.out}
    if isinstance(st, Pointwise):
        return {d.value for d, _, _ in st.outputs}
    if isinstance(st, OperandGrad):
        return {st.dest.value}
    if isinstance(st, WeightGrad):
        return {st.dest}
    if isinstance(st, HoldEnded):
        return {new for _, new in st.pairs}
    if isinstance(st, PassEnded):
        return {x for pair in st.pairs for x in pair}
    if isinstance(st, Accumulate):
        return {st.dest}
    raise TypeError(f"unknown statement {st!r}")


def assigns(st):
    """The buffers a statement assigns (=) rather than accumulates into: a matmul's output, a region's outputs."""
    if isinstance(st, MatMul) and not st.accumulate:
        return {st.out}
    if isinstance(st, Pointwise):
        return {d.value for d, _, acc in st.outputs if not acc}
    return set()


# --- lowering the schedule, its backward and the plan to the two scans ----------------------------------

def _forward(schedule, plan):
    ir, vals = schedule.ir, schedule.values
    states = [n for n, _ in ir.states]
    new = dict(zip(states, schedule.new_states))
    buffers = [Buffer(n, Role.SEQ, s) for n, s in ir.inputs]
    buffers += [Buffer(n, Role.PARAM, shape) for n, shape in ir.params]
    buffers += [Buffer(n, Role.CARRY_IN, s) for n, s in ir.states]
    for (s, size) in ir.states:
        keep = Keep.ALWAYS if s in ir.outputs else Keep.SAVE if s in plan.res_states else Keep.NEVER
        buffers.append(Buffer(new[s], Role.CARRY_OUT, size, keep))
    buffers += [Buffer(v.name, Role.SEQ, v.size) for v in vals if v.stage == Stage.PRE]
    buffers += [Buffer(v.name, Role.STEP, v.size, Keep.SAVE if v.name in plan.res_loop else Keep.NEVER)
                for v in vals if v.stage == Stage.LOOP and v.kind in (Kind.MATMUL, Kind.PW, Kind.CAT)]
    pairs = tuple((s, new[s]) for s in states)
    return Scan(
        name="forward", reverse=False, save=True,
        args=(Arg("_xs", tuple(n for n, _ in ir.inputs)), Arg("_inits", tuple(states)),
              Arg("_params", tuple(n for n, _ in ir.params))),
        buffers=tuple(buffers), before=tuple(_statement(st) for st in schedule.pre),
        step=tuple(_statement(st) for st in schedule.loop) + (HoldEnded(pairs),), after=(), carries=pairs,
        returns=(Result("ys", tuple(new[s] for s in ir.outputs)), Result("finals", tuple(states)),
                 Result("res", residuals(schedule, plan), save=True)))


def _statement(st):
    """A schedule's statement as the kernel program's: a region becomes an assigning Pointwise."""
    if isinstance(st, MatMul):
        return st
    return Pointwise(st.leaves, st.temps, tuple((d, r, False) for (d, _), r in zip(st.outputs, st.results)),
                     tuple(e for _, e in st.outputs), st.width)


def _region_grad(rg):
    """A derived RegionGrad as an accumulating Pointwise: the cotangents are leaves on the gradient buffers of the
    region's outputs, each gradient accumulates into the gradient buffer of its leaf."""
    leaves = rg.region.leaves + tuple((g, View(grad(d.value), d.start, d.stop)) for g, d in rg.cotangents)
    return Pointwise(leaves, rg.temps, tuple((View(grad(v.value), v.start, v.stop), e, True) for v, e in rg.grads),
                     rg.exprs, rg.region.width)


def _matmul_grads(mm, deferred=()):
    """(in the loop, after it): a matmul's operand gradients, d_op += d_out @ W, and its weight gradients,
    d_W += d_out.T @ op over all rows; an operand in `deferred` has its gradient after the loop too."""
    step, after = [], []
    for t in mm.terms:
        og = OperandGrad(View(grad(t.operand.value), t.operand.start, t.operand.stop), grad(mm.out), t.weight,
                         t.col_start, t.col_stop)
        (after if t.operand.value in deferred else step).append(og)
    for t in mm.terms:
        after.append(WeightGrad(grad(t.weight), t.col_start, t.col_stop, grad(mm.out), t.operand))
    return step, after


def params_summed_after_loop(program):
    """The program with the backward's per-step sums of vector parameters' gradients moved after the loop where
    they can be (_param_sums_after): a pass a backend asks for (Backend.param_sums_after_loop). On an H200 those
    sums took a sixth of the triton backward's step (benchmarks/probe_backward.py); on a CPU they are adds in
    registers, and with the pass the cpp backend's LSTM gained nothing (3% slower, about the noise:
    benchmarks/compare_commits.py, AMD EPYC)."""
    b = program.backward
    step, sums = _param_sums_after(list(b.step), zeroed_sequences(b), {x.name for x in b.with_role(Role.PARAM_GRAD)})
    return replace(program, backward=replace(b, step=tuple(step), after=tuple(sums) + b.after))


def _param_sums_after(step, zeroed, param_grads):
    """A vector parameter's gradient (in `param_grads`) that a step region sums over the rows from the very
    expression it also accumulates into a whole sequence (an LSTM's bias: d_bias[cols] += rows' sum of the value
    added to d_gates[cols]) is that sequence's sum over all T*B rows after the loop: one reduction instead of one
    a step. Only where the sequence is one the scan allocates as zeros (`zeroed`) and that output is the only
    thing writing it in the step. -> (step, statements after)"""
    new_step, after = [], []
    for st in step:
        if not isinstance(st, Pointwise):
            new_step.append(st)
            continue
        seqs = {}   # a full expression -> the sequence view it alone accumulates into
        for k, ((d, _, _), e) in enumerate(zip(st.outputs, st.exprs)):
            if sole_write(step, st, k, zeroed) and not st.broadcast(d):
                seqs.setdefault(e, d)
        moved = [k for k, ((d, _, acc), e) in enumerate(zip(st.outputs, st.exprs))
                 if acc and d.value in param_grads and not st.broadcast(d) and e in seqs]
        if not moved:
            new_step.append(st)
            continue
        leaves, outputs = {}, []
        for k in moved:
            (d, _, _), e = st.outputs[k], st.exprs[k]
            sym = leaves.setdefault(seqs[e], sympy.Symbol(f"_rs{len(leaves)}"))
            outputs.append((d, sym, True))
        after.append(pointwise([(s, v) for v, s in leaves.items()], outputs, st.n))
        # (the derivation's temps stay: what the moved outputs read, the kept ones read too, as theirs are equal)
        kept = [k for k in range(len(st.outputs)) if k not in moved]
        new_step.append(replace(st, outputs=tuple(st.outputs[k] for k in kept),
                                exprs=tuple(st.exprs[k] for k in kept)))
    return new_step, after


def zeroed_sequences(scan):
    """the sequences a scan allocates as zeros for its step to accumulate into (not passed in)"""
    return {x.name for x in scan.buffers if x.role == Role.SEQ and x.acc and scan.arg_of(x.name) is None}


def sole_write(step, st, k, zeroed_seqs, unless=()):
    """Whether output k of the region st, one of the statements `step`, accumulates into a sequence in
    `zeroed_seqs` (zeros before the loop, a step's slot written only in that step; or a buffer the step zeroes
    before it) and is the only thing in the step writing those columns: then they hold zero before it, and its
    `+=` may be a store. Statements of the kinds `unless` are not counted (a caller that leaves them out)."""
    d, _, acc = st.outputs[k]
    return acc and d.value in zeroed_seqs and _alone(st, k) and written_only_by(step, st, d.value, unless)


def first_write(step, st, k, zeroed, unless=()):
    """Whether output k of the region st, one of the statements `step`, accumulates into a buffer in `zeroed` (one
    the step zeroes before it) that no statement before st writes (but those of the kinds `unless`) and no other
    output of st: the columns hold zero when it runs, so its `+=` may be a store, whatever writes come after it
    (a GRU backward's d_h: the region's part, then d_h += d_gates @ W_hh)."""
    d, _, acc = st.outputs[k]
    return acc and d.value in zeroed and _alone(st, k) and not any(
        not isinstance(o, unless) and d.value in writes(o) for o in before(step, st))


def before(step, st):
    """the statements of `step` before st (st itself, not an equal one)"""
    return step[:next(i for i, o in enumerate(step) if o is st)]


def written_only_by(step, st, name, unless=()):
    """whether no statement of `step` but st (and those of the kinds `unless`) writes the buffer `name`"""
    return not any(o is not st and not isinstance(o, unless) and name in writes(o) for o in step)


def weight_grads_assigned(scan):
    """The weight gradients whose GEMMs may assign their columns (d_W[:, c0:c1] = src.T @ op) where the scan would
    otherwise add to zeros: for a matrix PARAM_GRAD written only by WeightGrads after the loop, whose column ranges
    tile its columns (from 0 to its width, each two equal or apart), the first of each range. A step's gradient
    (few rows) spent more zeroing its weights' gradients than multiplying into them: an LSTMCell at H=512, 6 MiB
    of zeros a call. -> {PARAM_GRAD name: (its assigning statements)}; a buffer not in it is zeros, accumulated."""
    def same(a, b):
        return sympy.expand(sympy.sympify(a) - b) == 0

    assigned = {}
    for b in scan.with_role(Role.PARAM_GRAD):
        writers = [st for st in (*scan.before, *scan.step, *scan.after) if b.name in writes(st)]
        if len(b.size) != 2 or not writers or not all(isinstance(st, WeightGrad) and any(st is o for o in scan.after)
                                                      for st in writers):
            continue
        firsts = []   # the first writer of each column range
        for st in writers:
            if not any(same(st.col_start, f.col_start) and same(st.col_stop, f.col_stop) for f in firsts):
                firsts.append(st)
        at, left = 0, list(firsts)   # the ranges, chained from column 0: each starts where the one before stops
        while left:
            nxt = [f for f in left if same(f.col_start, at)]
            if len(nxt) != 1:
                break
            at = nxt[0].col_stop
            left.remove(nxt[0])
        if not left and same(at, b.size[1]):
            assigned[b.name] = tuple(firsts)
    return assigned


def _alone(st, k):
    """whether output k's columns are written by no other output of st (sizes may be symbols: provably apart)"""
    d = st.outputs[k][0]

    def apart(o):
        return o.value != d.value or any(sympy.sympify(b - a).is_nonnegative is True
                                         for a, b in ((o.stop, d.start), (d.stop, o.start)))
    return all(apart(o) for j, (o, _, _) in enumerate(st.outputs) if j != k)


def residuals(schedule, plan):
    """What the forward keeps for the backward, in the order it returns them and the backward reads them:
    values computed before the loop, values of the step, the sequences of states that are not outputs."""
    new = dict(zip((n for n, _ in schedule.ir.states), schedule.new_states))
    return plan.res_pre + plan.res_loop + tuple(new[s] for s in plan.res_states)


def _backward(schedule, backward, plan):
    ir, vals = schedule.ir, schedule.values
    states = [n for n, _ in ir.states]
    new = dict(zip(states, schedule.new_states))
    res = residuals(schedule, plan)
    kept = {new[s] for s in ir.outputs} | {new[s] for s in plan.res_states}
    buffers = [Buffer(n, Role.SEQ, s) for n, s in ir.inputs]
    buffers += [Buffer(n, Role.PARAM, shape) for n, shape in ir.params]
    buffers += [Buffer(n, Role.PREV, s, seq=new[n] if new[n] in kept else "") for n, s in ir.states]
    buffers += [Buffer(new[s], Role.SEQ, size) for s, size in ir.states if new[s] in kept]
    buffers += [Buffer(v.name, Role.SEQ, v.size) for v in vals if v.name in res and v.kind != Kind.NEW_STATE]
    buffers += [Buffer(f"_dys_{s}", Role.SEQ, size) for s, size in ir.states if s in ir.outputs]
    buffers += [Buffer(grad(new[s]), Role.CARRY_IN, size) for s, size in ir.states]
    buffers += [Buffer(grad(s), Role.CARRY_OUT, size, acc=True) for s, size in ir.states]
    buffers += [Buffer(grad(n), Role.SEQ, s, acc=True) for n, s in ir.inputs]
    buffers += [Buffer(grad(v.name), Role.SEQ, v.size, acc=True) for v in vals
                if v.stage == Stage.PRE or v.name in plan.loop_mm]
    buffers += [Buffer(grad(v.name), Role.STEP, v.size, acc=True) for v in vals
                if v.stage == Stage.LOOP and v.kind in (Kind.PW, Kind.CAT)]
    buffers += [Buffer(grad(n), Role.PARAM_GRAD, shape, acc=True) for n, shape in ir.params]

    step = [Accumulate(grad(new[s]), f"_dys_{s}") for s in ir.outputs]
    step.append(PassEnded(tuple((grad(s), grad(new[s])) for s in states)))
    after = []
    for st in backward.loop:
        if isinstance(st, RegionGrad):
            step += [_region_grad(st)] if st.grads else []   # a region of constants has no gradient
            continue
        # the operand gradients the next step needs in the loop; the weight gradients and the operand gradients
        # of what depends on no state after it, one GEMM each over all steps
        in_loop, at_end = _matmul_grads(st.matmul, plan.deferred_ops)
        step += in_loop
        after += at_end
    for st in backward.pre:
        if isinstance(st, RegionGrad):
            after += [_region_grad(st)] if st.grads else []
            continue
        in_loop, at_end = _matmul_grads(st.matmul)
        after += in_loop + at_end
    return Scan(
        name="backward", reverse=True, save=False,
        args=(Arg("_d_ys", tuple(f"_dys_{s}" for s in ir.outputs)), Arg("_d_finals", tuple(grad(new[s]) for s in states)),
              Arg("_xs", tuple(n for n, _ in ir.inputs)), Arg("_inits", tuple(states)),
              Arg("_params", tuple(n for n, _ in ir.params)), Arg("_ys", tuple(new[s] for s in ir.outputs)),
              Arg("_res", res)),
        buffers=tuple(buffers), before=(), step=tuple(step), after=tuple(after),
        carries=tuple((grad(new[s]), grad(s)) for s in states),
        returns=(Result("d_xs", tuple(grad(n) for n, _ in ir.inputs)),
                 Result("d_inits", tuple(grad(new[s]) for s in states)),
                 Result("d_params", tuple(grad(n) for n, _ in ir.params))))


def lower_to_kernel(schedule, backward, plan):
    return KernelProgram(schedule.ir.name, schedule.ir.dims, _forward(schedule, plan),
                         _backward(schedule, backward, plan))


def describe(program):
    """The program as text (SYMCELL_DEBUG=1 prints it): each scan's buffers by role, then its phases."""
    return "\n".join([f"kernel program {program.name}  (dims: {', '.join(program.dims)})"] +
                     [describe_scan(scan) for scan in program.scans])


def describe_scan(scan):
    lines = [f"  scan {scan.name}{' (reverse)' if scan.reverse else ''}",
             "    args: " + "; ".join(f"{a.name}: {', '.join(a.buffers)}" for a in scan.args)]
    for role in Role:
        bs = scan.with_role(role)
        if bs:
            lines.append(f"    {role}: " + ", ".join(
                b.name + (f" keep={b.keep}" if b.keep != Keep.NEVER else "") + (" acc" if b.acc else "")
                + (f" seq={b.seq}" if b.seq else "") + f" [{b.size}]" for b in bs))
    for phase in ("before", "step", "after"):
        for st in getattr(scan, phase):
            lines.append(f"    {phase}: {_stmt_text(st, math_str)}")
    lines.append("    carries: " + ", ".join(f"{a} <- {b}" for a, b in scan.carries))
    lines.append("    returns: " + "; ".join(f"{r.name}{' (when saving)' if r.save else ''}: "
                                              f"{', '.join(r.buffers)}" for r in scan.returns))
    return "\n".join(lines)


def _stmt_text(st, fmt):
    if isinstance(st, MatMul):
        return f"{st.out} = " + " + ".join(f"{t.operand.value}[{t.operand.start}:{t.operand.stop}] @ {t.weight}"
                                           f"[:, {t.col_start}:{t.col_stop}].T" for t in st.terms)
    if isinstance(st, Pointwise):
        temps = "".join(f"{t} = {fmt(e)}; " for t, e in st.temps)
        return "pointwise " + temps + "; ".join(f"{d.value}[{d.start}:{d.stop}] {'+=' if acc else '='} {fmt(e)}"
                                                for d, e, acc in st.outputs)
    if isinstance(st, OperandGrad):
        return (f"{st.dest.value}[{st.dest.start}:{st.dest.stop}] += {st.src} @ "
                f"{st.weight}[:, {st.col_start}:{st.col_stop}]")
    if isinstance(st, WeightGrad):
        return (f"{st.dest}[:, {st.col_start}:{st.col_stop}] += {st.src}.T @ "
                f"{st.operand.value}[{st.operand.start}:{st.operand.stop}]")
    if isinstance(st, HoldEnded):
        return "hold ended rows: " + ", ".join(f"{o} = {i}" for i, o in st.pairs)
    if isinstance(st, PassEnded):
        return "pass ended rows: " + ", ".join(f"{i} = {o}, {o} = 0" for i, o in st.pairs)
    if isinstance(st, Accumulate):
        return f"{st.dest} += {st.src}"
    return repr(st)
