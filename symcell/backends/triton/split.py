"""How a step's features are split over programs, and where the programs must wait for each other.

The Triton kernel runs a scan's step on a grid of (B / 16) x P programs: each batch tile of 16 rows is worked on
by P programs together, each computing the feature tiles it owns of every statement (P = 1 is one program doing
all of them). Programs of one batch tile share the step's values through global memory (L2), so a statement that
reads what another program wrote must wait for it: a grid barrier. This module decides, from the statements
alone, who owns which tile and where the barriers go; render.py prints the result.

Ownership. With `units` U (the gcd of the carried states' sizes: H for an LSTM) a multiple of the tile, column c
of any buffer belongs to program ((c mod U) // tile) mod P: the same hidden units of every buffer (the four gates
of unit j, h_j and c_j) are one program's, so an LSTM's pointwise region reads only gates its own program wrote.
A statement's tile at its columns [a0 + j, a0 + j + tile) runs on the owner of column a0 + j (a0: the
statement's first destination). An access at offset a is *aligned* when it touches only columns the running
program owns: U % tile == 0, a0 and a multiples of the tile, and a - a0 a multiple of U. When U is no multiple of
the tile, tiles are dealt out round-robin and no access is aligned (correct, more barriers).

Barriers. Two accesses to one memory conflict when one writes and not both are aligned (aligned accesses to a
column are all by its owner, in program order). A barrier goes before a statement that conflicts with anything
since the last barrier, the previous step's last phase included (the loop): the step is cut into phases, a
barrier between each two and, when needed, one at the step's start. What a step starts with depends on where its
own cut falls, so the cut is iterated from nothing pending until what it leaves pending is what it assumed. A carry's two slots alternate (slot A is read, slot B
written; the next step swaps them), so reading h_{t-1} while writing h_t needs none; a sequence's row block is
the step's own. An LSTM's forward and backward steps need one barrier each.

Statements that reduce over the features (a destination of one feature: a layer norm's mean) run whole on
program 0; their writes are then not aligned.

Shared reductions (render.REDUCTION_SHARES > 1, SplitReduction): an operand's gradient whose output is whole
units (d_h += d_gates @ W_hh) may run on more programs than there are tiles, each tile's reduction in shares
added atomically; its writes are not aligned (a barrier before anything reads them), and a plan takes it only
where that costs at most one barrier a step more.
"""
from dataclasses import dataclass
from math import gcd
from typing import Optional, Tuple

from ...kernel import Accumulate, HoldEnded, OperandGrad, PassEnded, Pointwise, Role
from ...schedule import MatMul


@dataclass(frozen=True)
class Zero:
    """The acc buffers zeroed at the step's start (they are accumulated into during it)."""
    names: Tuple[str, ...]


@dataclass(frozen=True)
class SplitReduction:
    """An operand's gradient (d_h += d_gates @ W: a narrow output from a long reduction) whose reduction is shared
    out: program p computes its tile p mod N of the output (N tiles) from the (p div N)-th share of the reduction
    and adds it in atomically (render.py). Its writes are then not aligned, so a barrier follows before anything
    reads them. Only for an output of whole aligned units (d_h), where P may exceed N."""
    st: OperandGrad


@dataclass(frozen=True)
class Access:
    key: str                  # the memory: a buffer, one slot of a carry, a gradient's partial sums
    write: bool
    offset: Optional[int]     # the statement's tile j touches columns offset + j..; None: any column


@dataclass(frozen=True)
class Split:
    units: int                # U
    tile: int                 # feature columns a tile
    phases: Tuple[Tuple[object, ...], ...]   # the step's items, cut where the programs must wait
    first_barrier: bool       # a barrier at the step's start (after the previous step's last phase)
    shares: int = 1           # the most programs a tile of a SplitReduction's output (1: none is split)

    @property
    def aligned(self):
        return self.units % self.tile == 0

    @property
    def most_programs(self):
        """P at most: one per tile of units (more would own nothing)"""
        return max(1, -(-self.units // self.tile))

    @property
    def barriers(self):
        """grid barriers a step"""
        return max(0, len(self.phases) - 1) + self.first_barrier


def reference(st):
    """The offset a0 whose columns decide which program runs a tile of the statement; None: program 0 runs all."""
    if isinstance(st, Pointwise):
        if any(st.broadcast(d) for d, _, _ in st.outputs):
            return None
        return int(st.outputs[0][0].start)
    if isinstance(st, OperandGrad):
        return int(st.dest.start)
    if isinstance(st, SplitReduction):
        return int(st.st.dest.start)
    return 0


def accesses(st, buf, slot):
    """What a statement reads and writes of the memory the step writes to (`slot`: a carry's buffer -> its
    slot's key). Reads of sequences and parameters never conflict and are left out by the caller."""
    def at(name, write, offset):
        b = buf[name]
        key = {Role.PARAM_GRAD: f"_part_{name}", Role.PREV: b.seq}.get(b.role, slot.get(name, name))
        return Access(key, write, None if offset is None else int(offset))

    out = []
    if isinstance(st, Zero):
        out = [at(n, True, 0) for n in st.names]
    elif isinstance(st, MatMul):
        out = [at(t.operand.value, False, None) for t in st.terms] + [at(st.out, True, 0)]
        out += [at(st.out, False, 0)] if st.accumulate else []
    elif isinstance(st, Pointwise):
        for _, v in st.leaves:
            out.append(at(v.value, False, None if st.broadcast(v) else v.start))
        for d, _, acc in st.outputs:
            offset = None if st.broadcast(d) else d.start
            out += [at(d.value, True, offset)] + ([at(d.value, False, offset)] if acc else [])
    elif isinstance(st, OperandGrad):
        out = [at(st.src, False, None), at(st.dest.value, False, st.dest.start), at(st.dest.value, True, st.dest.start)]
    elif isinstance(st, SplitReduction):   # every column of its output, by several programs
        out = [at(st.st.src, False, None), at(st.st.dest.value, False, None), at(st.st.dest.value, True, None)]
    elif isinstance(st, HoldEnded):
        out = [a for old, new in st.pairs for a in (at(old, False, 0), at(new, True, 0))]
    elif isinstance(st, PassEnded):
        out = [a for d_in, d_out in st.pairs for a in (at(d_out, False, 0), at(d_in, True, 0), at(d_out, True, 0))]
    elif isinstance(st, Accumulate):
        out = [at(st.src, False, 0), at(st.dest, False, 0), at(st.dest, True, 0)]
    else:
        raise TypeError(f"no split for {st!r}")
    return out


def plan(scan, items, tile, shares=1):
    """The Split of a step's items (Zero and the scan's statements as the kernel runs them); with `shares` > 1 the
    reductions of the operands' gradients whose output is whole aligned units are shared out (SplitReduction),
    where that costs at most one barrier a step more (an LSTM's or GRU's backward; not a cell whose several
    block-diagonal matmuls each write part of d_h, whose shares would each want a barrier)."""
    buf = {b.name: b for b in scan.buffers}
    sizes = [int(buf[cout].size) for _, cout in scan.carries]
    units = 0
    for n in sizes:
        units = gcd(units, n)
    units = units or 1
    alone = _cut(scan, items, buf, units, tile)
    if shares > 1 and units % tile == 0:
        shared = [SplitReduction(it) if isinstance(it, OperandGrad) and int(it.dest.start) % units == 0
                  and int(it.dest.stop - it.dest.start) <= units else it for it in items]
        if shared != items:
            split = _cut(scan, shared, buf, units, tile, shares)
            if split.barriers <= alone.barriers + 1:
                return split
    return alone


def _cut(scan, items, buf, units, tile, shares=1):
    """The Split of these items: their phases and barriers (the module's docstring)."""
    # a carry's two slots: within a step CARRY_IN is slot A, CARRY_OUT slot B; the next step swaps them
    slot, swapped = {}, {}
    for cin, cout in scan.carries:
        slot[cin], slot[cout] = f"A:{cout}", f"B:{cout}"
        swapped[f"A:{cout}"], swapped[f"B:{cout}"] = f"B:{cout}", f"A:{cout}"

    written = {a.key for it in items for a in accesses(it, buf, slot) if a.write}
    written |= {swapped.get(k, k) for k in written}

    def of(it):
        a0 = reference(it)
        out = []
        for a in accesses(it, buf, slot):
            if a.key not in written:
                continue
            aligned = (units % tile == 0 and a0 is not None and a.offset is not None and a0 % tile == 0
                       and a.offset % tile == 0 and (a.offset - a0) % units == 0)
            out.append((a.key, a.write, aligned))
        return out

    def conflict(pending, new):
        return any(k == k2 and (w or w2) and not (al and al2) for k, w, al in pending for k2, w2, al2 in new)

    per_item = [of(it) for it in items]
    # a previous step's accesses as this step names them: a carry's slots swap; a sequence's row block is each
    # step's own, but for one a PREV reads at t - 1
    fresh = {b.name for b in scan.buffers if b.role == Role.SEQ} - {b.seq for b in scan.buffers if b.role == Role.PREV}

    def before(accs):
        return {(swapped.get(k, k), w, al) for k, w, al in accs if k not in fresh}

    every = [a for acc in per_item for a in acc]
    history = before(every) | {a for a in every if a[0] not in fresh}   # any earlier step, either parity

    def cut(pending):
        """the greedy cut of the step, `pending` the accesses since the last barrier as it starts"""
        phases, current, first_barrier = [], [], False
        for it, acc in zip(items, per_item):
            if conflict(pending, acc):
                if current:
                    phases.append(tuple(current))
                else:
                    first_barrier = True
                current, pending = [], set()
            current.append(it)
            pending = set(pending) | set(acc)
        return tuple(phases) + ((tuple(current),) if current else ()), first_barrier

    def since_last_barrier(phases, first_barrier):
        """what a step's end leaves pending for the next: its last phase, or everything if the loop has no
        barrier at all"""
        if len(phases) <= 1 and not first_barrier:
            return history
        return before(a for it in phases[-1] for a in per_item[items.index(it)])

    # the cut depends on what the step starts with, which depends on the cut: from nothing pending, until the
    # assumption covers what the cut leaves pending (then every conflict has a barrier between); else the
    # conservative cut, which assumes any earlier access
    assumed = set()
    for _ in range(4):
        phases, first_barrier = cut(assumed)
        left = since_last_barrier(phases, first_barrier)
        if left <= assumed:
            break
        assumed = left
    else:
        phases, first_barrier = cut(history)
    return Split(units, tile, phases, first_barrier, shares)
