"""Triton from a kernel program: a persistent kernel per scan for the step, torch host code around it.

The grid is (B / BB) x P programs (Triton program instances), alive for the whole sequence. Rows never interact
in a recurrence, so the programs of different batch tiles never wait for each other; the P programs of one batch
tile split its features (split.py: program p owns the same hidden units of every buffer), and wait for each other
at a grid barrier where one reads what another wrote (an LSTM: once a step). P is chosen at launch from the sizes
and the GPU's SM count (1 at large B: a program does all features of its rows). Per step a program runs its tiles
of the in-loop matmuls as `tl.dot`s against weights streamed from L2, and its tiles of every fused region. Values
live in global memory between the statements of a step. Where each program has one tile of each block of units
and the weights are bfloat16 (_RESIDENT, decided at launch), the same kernel keeps its weight slices on chip for
all steps, takes some values from registers instead of memory (a matmul's tiles for the region after it, an
accumulation's sum, a region's outputs for the transposed d_h), and loads what the step never writes ahead. The
phases before and after the loop are the torch code of torch_code.py (cuBLAS on a GPU): one GEMM over all T*B
rows each.

Under Triton's interpreter (no GPU) programs run one after another, so a barrier would wait forever: there the
kernel is launched once for each stretch between two barriers (_PHASED: the same kernel code, its barriers
launch boundaries), so what a GPU runs between barriers runs in one launch there too.

In the kernel, a buffer v of the step has a block of row pointers `_r_v` (BB rows at step _t) and is read at
`_r_v + columns`; a carried value lives in two slots `_pp_<out>` (step _i reads slot _i % 2 and writes the other),
an output state is also stored into its sequence `_rk_v`. Feature sizes are compile-time constants (tile shapes);
T and B are run-time values.
"""
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import NamedTuple

from ...kernel import (Accumulate, HoldEnded, Keep, MatMul, OperandGrad, PassEnded, Pointwise, Role, before, reads,
                      first_write, sole_write, writes, written_only_by, zeroed_sequences)
from ...functions import FUNCTIONS
from ...printing import tl_str
from ..base import Renderer
from ..torch_code import ScanRenderer, init, seq
from .split import Zero, plan, reference

# rows per program (tl.dot wants every dim >= 16)
BB = 16
# the matmuls' reduction tile, by float32 precision (symcell.backends.triton.FLOAT32_DOT; a launch constant):
# the largest with which no zoo kernel spills (tests/test_triton_aot.py). A dot holds a BK-long strip of each
# operand for each output a thread: 16 on CUDA cores ("ieee") and for tf32x3's three products (32 spilled), 32
# with tf32 (64 spilled), half the loop's trips: on an H200 a step's 64-column dot ran in 6 us with tf32 and a
# tile of 64 (benchmarks/probe_step.py), while the kernel's per-trip latency dominates at 16.
REDUCTION_TILE = {"ieee": 16, "tf32x3": 16, "tf32": 32}
# the same for an operand's gradient (d_h += d_gates @ W: the program's 16 columns of d_h from all 4H of d_gates,
# a long reduction to a narrow output, where a wider tile fits; the widest without spills again)
GRAD_REDUCTION_TILE = {"ieee": 64, "tf32x3": 16, "tf32": 64}


def dot_constants(dot):
    """the launch constants that go with a float32 dot precision: _DOT and the reduction tiles above"""
    return {"_DOT": dot, "_BK": REDUCTION_TILE[dot], "_BKG": GRAD_REDUCTION_TILE[dot]}

# feature tile: 16, the smallest tl.dot takes, gives the most programs a split (H / 16) and the fewest live
# values (the second-order kernels carry primal and tangent tiles: with 32 the layer-norm LSTM's spilled 1 KiB).
# Tests set it to 2 under the interpreter, which has no such minimum, to split the zoo's small cells.
TILE = 16
# warps per program: 4 for the first-order kernels (on an H200 the LSTM's ran 1.3x faster than with 8,
# BENCHMARKS.md), 8 for the second-order ones, whose primal and tangent tiles spill with 4 (the layer-norm LSTM's
# tangent backward ~800 B). tests/test_triton_aot.py compiles every kernel with these.
NUM_WARPS = {"forward": 4, "backward": 4}
SECOND_ORDER_WARPS = 8
# Programs sharing each tile of an operand's gradient (the backward's d_h += d_gates @ W_hh: 16 columns from all
# 4H of d_gates) at most, when the GPU has the SMs: split.SplitReduction. On an H200 that matmul was ~11 us of the
# LSTM's 20 us backward step, each program reading its strip of W_hh and all of d_gates from L2 every step (~300
# KB); shared by 2 programs a tile it costs a grid barrier a step (0.4-1.2 us) and atomic adds more
# (benchmarks/probe_backward.py times it). 1, the default until a GPU has measured it: not shared. Under
# torch.use_deterministic_algorithms the tiles are never shared (the order of the atomic adds varies).
REDUCTION_SHARES = 1


# With resident slices, an operand's gradient that follows a barrier (the backward's d_h += d_gates @ W_hh) runs
# transposed: before the barrier each program multiplies its own columns of d_gates (its own units' gates, which it
# wrote) by its rows of W_hh, the forward's slice, into a partial d_h of every column; after it each program sums
# the P partials of its own tile of d_h (in program order: deterministic). A program then reads 2 x 48 KB a step
# (its partials out, its tile of everyone's in) where it read all of d_gates (192 KB for an LSTM at H=768, B=16).
# False: each program reads all of d_gates against its columns of W_hh (still on chip).
TRANSPOSED_GRADS = True
# With resident slices, where a step's last barrier falls within it (a backward: between its region and the sums of
# d_h), the values its region reads that the scan never writes (saved gates, the previous cell state, the output's
# cotangent) are loaded a step ahead, before the barrier of the step before, so their latency overlaps that wait;
# False: at the step's start, after the sums (benchmarks/probe_backward.py times both).
LOADS_A_STEP_AHEAD = True
# A resident weight slice is multiplied in chunks of this many reduction columns (one tl.dot each, unrolled in the
# kernel's text): the widest with which no zoo kernel spills at H=768 (tests/test_triton_aot.py; the LSTM's
# backward at sm_90 spilled 112 bytes with 128 and 2 KiB with 256, the compiler issuing every chunk's load early)
RESIDENT_CHUNK = 64
# A carry that a resident matmul multiplies (h in W_hh h) is split into its two bfloat16 parts (SPLIT_DOT) once,
# by the program that writes it, which stores them beside it (_ps_<carry>); the matmul's readers load the parts.
# Split by each reader, every program split every chunk of h each step, and in the dot's operand layout, where
# each of the 4 warps holds all of the chunk: in the LSTM's forward at H=768 (sm_90) 1160 of the time loop's 2590
# instructions a warp (F2F, FADD, F2FP, PRMT; benchmarks/sass_step.py). The same parts, so the same products. Without lengths (with
# them the ended rows' held state would need its parts too: the readers split h as before). False: readers split.
SPLIT_AT_WRITE = True
# The transposed partials (TRANSPOSED_GRADS) multiply the region's d_gates tiles one at a time, each by its own
# rows of the slice (kept as a piece a tile), where they are in registers: joined into one operand, their values
# sat in registers the tensor-core instructions do not take them from, and ptxas moved them into place before
# each (the LSTM's backward at H=768, sm_90: ~1200 moves of its 2726 instructions a warp a step). A GRU's (an
# LLTM's) three gate blocks are three products, no masked fourth. False: one operand of the joined tiles.
PARTIALS_BY_TILE = True
# A resident matmul's products go into this many independent sums (1, 2 or an even number): its high parts' and its
# low parts' (SPLIT_DOT) apart, each over every (DOT_SUMS / 2)-th chunk, added together after the last chunk. A
# tensor-core instruction that accumulates waits for the one before it on the same sum: in one sum, a warp's 192
# HMMAs a step of the LSTM's forward at H=768 were two chains of 96 dependent instructions (the two 8-column
# tiles of its 16): at 20-35 cycles a dependent HMMA (not measured here), 1.0-1.7 us a step at 1.98 GHz. With 4:
# eight chains of 24 (benchmarks/sass_step.py). (Rounding: the same products in another order.) 1: one sum.
DOT_SUMS = 4


def chunks(K):
    """[(start, width)]: a reduction over K columns as RESIDENT_CHUNK-wide dots (the last one masked), a power of
    two each (tl.arange)"""
    width = min(RESIDENT_CHUNK, 1 << max(0, K - 1).bit_length())
    return [(c0, width) for c0 in range(0, K, width)]


# a + b @ w for float32 a, b and bfloat16 w on tensor cores without rounding b to bfloat16: b = hi + lo, its first
# 8 significant bits and the next 8, two products exact in float32 each (b's 17th bit on is lost: finer than
# tf32's 11 bits, LOW_PRECISION_DOT's default). A resident slice stays bfloat16 on chip this way (w.to(float32)
# would be hoisted out of the loop with it: twice the shared memory). Under the interpreter (_BF16_DOT false)
# the same parts in float32: its bfloat16 tl.dot multiplies the bits as integers (Triton 3.9).
SPLIT_DOT = '''@triton.jit
def _bf16_dot(acc, a, w, _BF16_DOT: tl.constexpr):
    if _BF16_DOT:
        return tl.dot(a, w, acc, out_dtype=tl.float32)
    else:
        return tl.dot(a.to(tl.float32), w.to(tl.float32), acc)


@triton.jit
def _split_dot(acc, b, w, _BF16_DOT: tl.constexpr):
    hi = b.to(tl.bfloat16)
    return _pair_dot(acc, hi, (b - hi.to(tl.float32)).to(tl.bfloat16), w, _BF16_DOT)


@triton.jit
def _pair_dot(acc, hi, lo, w, _BF16_DOT: tl.constexpr):
    return _bf16_dot(_bf16_dot(acc, hi, w, _BF16_DOT), lo, w, _BF16_DOT)


@triton.jit
def _split_dots(acc_hi, acc_lo, b, w, _BF16_DOT: tl.constexpr):
    hi = b.to(tl.bfloat16)
    return _pair_dots(acc_hi, acc_lo, hi, (b - hi.to(tl.float32)).to(tl.bfloat16), w, _BF16_DOT)


@triton.jit
def _pair_dots(acc_hi, acc_lo, hi, lo, w, _BF16_DOT: tl.constexpr):
    # (each part's product into a sum of its own: DOT_SUMS)
    return _bf16_dot(acc_hi, hi, w, _BF16_DOT), _bf16_dot(acc_lo, lo, w, _BF16_DOT)
'''


# The column tiles of a matmul's accumulator (BB, G * BN), G = 1, 2 or 4, in order: a region that reads them at
# its own tile (a resident matmul's, followed by its pointwise region) takes them from registers (StepKernel.fused)
TILES = '''@triton.jit
def _tiles2(x, BN: tl.constexpr):
    a, b = tl.split(tl.permute(tl.reshape(x, (x.shape[0], 2, BN)), (0, 2, 1)))
    return a, b


@triton.jit
def _tiles4(x, BN: tl.constexpr):
    y = tl.permute(tl.reshape(x, (x.shape[0], 2, 2, BN)), (0, 3, 1, 2))   # [:, :, i, j]: tile 2 i + j
    a, b = tl.split(y)
    t0, t2 = tl.split(a)
    t1, t3 = tl.split(b)
    return t0, t1, t2, t3
'''


# The inverse: tiles (BB, BN) side by side as one (BB, G * BN) operand (a region's tiles of d_gates for the
# transposed d_h's partial products, StepKernel.joined)
JOINS = '''@triton.jit
def _join2(t0, t1):
    return tl.reshape(tl.permute(tl.join(t0, t1), (0, 2, 1)), (t0.shape[0], 2 * t0.shape[1]))


@triton.jit
def _join4(t0, t1, t2, t3):
    y = tl.join(tl.join(t0, t2), tl.join(t1, t3))   # [:, :, i, j]: tile 2 i + j
    return tl.reshape(tl.permute(y, (0, 2, 3, 1)), (t0.shape[0], 4 * t0.shape[1]))
'''


def written(item):
    """the buffers a step's item writes (a Zero too)"""
    return set(item.names) if isinstance(item, Zero) else writes(item)


def num_warps(scan_name):
    return NUM_WARPS.get(scan_name, SECOND_ORDER_WARPS)


# a matmul's output tiles one tl.dot computes at most (render_MatMul): 4 x 16 columns
GROUP = 4


class Ahead(NamedTuple):
    """a value a region (or an accumulation) reads, loaded ahead of its statement (prefetched_leaves)"""
    var: str           # the register variable
    name: str          # the buffer, at columns start + the program's one tile (masked to `width`)
    start: object
    width: int
    load_width: object   # (a parameter's: its features)
    per_step: bool     # loaded every step (not a parameter's, once)
    early: bool        # loaded a step ahead, before the barrier of the step before


class StepKernel(Renderer):
    """The step of a scan as a @triton.jit kernel looping over time."""

    def __init__(self, scan, w, module_params=()):
        self.scan, self.w = scan, w
        self.buf = {b.name: b for b in scan.buffers}
        self.out_of = dict(scan.carries)            # CARRY_IN -> its CARRY_OUT (whose two slots they share)
        # a step matmul's terms on sequences that exist before the loop (x in W @ cat(h, x)) run there, as one GEMM
        # over all T*B rows (the host's torch code, cuBLAS on a GPU): the loop streams only the recurrent weights
        self.hoisted, in_loop = {}, []
        for st in scan.step:
            if isinstance(st, MatMul):
                pre = [t for t in st.terms if self.before_loop(t.operand.value)]
                if pre and len(pre) < len(st.terms):
                    self.hoisted[id(st)] = (f"_pre{len(self.hoisted)}", pre)
                    st = replace(st, terms=tuple(t for t in st.terms if t not in pre))
            in_loop.append(st)
        self.used = scan.used(in_loop)   # (not the inputs and weights of the hoisted terms alone)
        # the module's weights (`module_params`) that only the in-loop matmuls read: a 16-bit module passes them in
        # its own dtype (_low), which holds their values exactly: half the bytes a step streams from L2 for them,
        # the same products (a load converts to float32)
        weights = {t.weight for st in in_loop if isinstance(st, MatMul) for t in st.terms} | \
            {st.weight for st in in_loop if isinstance(st, OperandGrad)}
        elsewhere = set().union(*({t.operand.value for t in st.terms} if isinstance(st, MatMul) else
                                         {st.src, st.dest.value} if isinstance(st, OperandGrad) else reads(st)
                                         for st in in_loop))
        self.weights16 = (weights & set(module_params)) - elsewhere
        # a region's `+=` into a sequence that holds zeros there (a backward's d_gates at step t) is a store: on an
        # H200 the loads of such read-modify-writes cost the LSTM's backward ~2 us a step (probe_backward.py)
        zeros = zeroed_sequences(scan)
        self.stored = {(id(st), k) for st in scan.step if isinstance(st, Pointwise)
                       for k in range(len(st.outputs)) if sole_write(scan.step, st, k, zeros)}
        zeroed = tuple(b.name for b in self.used if b.acc and b.role in (Role.STEP, Role.CARRY_OUT))
        self.split = plan(scan, ([Zero(zeroed)] if zeroed else []) + list(scan.step), TILE, REDUCTION_SHARES)
        # a `+=` into a buffer the step zeroes at its start (Zero: an LSTM backward's d_c and d_h) is a store too
        # without lengths (_MASKED): a region's where nothing before it writes the buffer but the ended rows'
        # statements (which run only with lengths), an operand's gradient's where nothing else writes it; not one
        # whose reduction is shared out (its shares add atomically)
        self.items = [it for phase in self.split.phases for it in phase]   # (the step's items in order)
        ended = (HoldEnded, PassEnded)
        self.stored_unmasked = {(id(st), k) for st in scan.step if isinstance(st, Pointwise)
                                for k in range(len(st.outputs)) if first_write(scan.step, st, k, zeroed, ended)
                                and not st.broadcast(st.outputs[k][0])} | \
            {(id(st), 0) for st in scan.step if isinstance(st, OperandGrad) and st.dest.value in zeroed and
             any(it is st for it in self.items) and written_only_by(scan.step, st, st.dest.value, ended)}
        self.overwritten = self.overwritten_unmasked()
        self.resident = self.resident_slices()
        # the statements with resident slices, in the step's order (their index s names their tiles)
        self.order = [st for st in self.items if id(st) in self.resident]
        self.split_parts = self.split_at_write()
        self.transposed = self.transposed_grads()
        self.fused = self.fused_leaves()
        self.forwarded = self.forwarded_accumulations()
        self.joined = self.joined_sources()
        self.prefetched = self.prefetched_leaves()
        self.onto = self.added_onto()
        self.carried = self.carried_sums()
        self.carried_leaves, self.carry_kept = self.carried_regions()
        self.tile_vars = {key: f"_dg{self.order.index(st)}_{b}" for st in self.order if id(st) in self.joined
                          for b, key in self.joined[id(st)].items()}   # {(id(region), output): its variable}
        # {id(transposed operand gradient): its source's blocks}: partials a tile at a time (PARTIALS_BY_TILE),
        # their slices one piece a tile: as many rows as blocks
        self.by_tile = {i: sorted(blocks) for i, blocks in self.joined.items() if PARTIALS_BY_TILE}
        for i, blocks in self.by_tile.items():
            weight, K, _, col = self.resident[i][0]
            self.resident[i] = [(weight, K, len(blocks) * self.split.tile, col)]
        # a slice two statements read alike (a tangent backward's d_h and its tangent, both from W_hh's columns for
        # the program's tile) is held once: {(id(st), term): the name of its chunks' tiles}
        self.slice_names, first = {}, {}
        for s, st in enumerate(self.order):
            for k, entry in enumerate(self.resident[id(st)]):
                key = (type(st), entry, self.group(self.n(st.out)) if isinstance(st, MatMul) else None,
                       id(st) in self.transposed, id(st) in self.by_tile)
                self.slice_names[id(st), k] = first.setdefault(key, f"_wr{s}_{k}")

    def resident_slices(self):
        """{id(statement): [(weight, K, columns a program keeps, the weight's first column)]}: the in-loop
        matmuls whose weight slice each program can hold on chip for the whole sequence, read from global memory
        once instead of every step (the persistent design: on an H200 the step's matmul streaming its slice from L2
        was most of the forward's step, BENCHMARKS.md). Where a program does one tile of each block of U columns
        (P >= U / tile, decided at launch: _RESIDENT) of an aligned split; for a 16-bit module's weights only
        (weights16: bfloat16 at launch), whose slices are half a float32 one's; an operand's gradient only where
        its output is one block of units (d_h), not shared out (SplitReduction)."""
        split, out = self.split, {}
        if not split.aligned:
            return out
        units, tile = split.units, split.tile
        for st in self.items:
            if isinstance(st, MatMul):
                _, hoisted = self.hoisted.get(id(st), (None, ()))
                terms = [t for t in st.terms if t not in hoisted]
                group = self.group(self.n(st.out))
                if -(-self.n(st.out) // units) <= group and all(t.weight in self.weights16 for t in terms):
                    out[id(st)] = [(t.weight, int(t.operand.stop - t.operand.start), group * tile, t.col_start)
                                   for t in terms]
            elif isinstance(st, OperandGrad):
                width = int(st.dest.stop - st.dest.start)
                if st.weight in self.weights16 and int(st.dest.start) % units == 0 and width <= units:
                    out[id(st)] = [(st.weight, self.n(st.src), tile, st.col_start)]
        return out

    def split_at_write(self):
        """{carry out: carry in}: the carries a resident matmul's term multiplies (SPLIT_AT_WRITE) that the step
        writes with plain stores of regions alone (one value a feature, not accumulated): those stores write the
        value's two bfloat16 parts too (store), which the matmul loads (resident_dot)"""
        if not SPLIT_AT_WRITE:
            return {}
        operands = {t.operand.value for st in self.order if isinstance(st, MatMul)
                    for t in st.terms if t not in self.hoisted.get(id(st), (None, ()))[1]}
        out = {}
        for cin, cout in self.scan.carries:
            writers = [st for st in self.scan.step if cout in writes(st) and not isinstance(st, HoldEnded)]
            if cin in operands and writers and all(
                    isinstance(st, Pointwise) and any(st is it for it in self.items) and
                    all(not acc and not st.broadcast(d) for d, _, acc in st.outputs if d.value == cout)
                    for st in writers):
                out[cout] = cin
        return out

    def transposed_grads(self):
        """{id(operand gradient): group}: the resident ones that run transposed (TRANSPOSED_GRADS): the first item
        of a phase after the first (so a barrier precedes it, between the partials and their sums), from a source
        of whole blocks of units that one pass of `group` tiles covers; their slices become the program's rows of
        the weight (its tiles of the source) by every column of the output"""
        out, units, tile = {}, self.split.units, self.split.tile
        if not TRANSPOSED_GRADS:
            return out
        for phase in self.split.phases[1:]:
            st = phase[0]
            if isinstance(st, OperandGrad) and id(st) in self.resident and self.n(st.src) % units == 0:
                group = self.group(self.n(st.src))
                if self.n(st.src) // units <= group:
                    out[id(st)] = group
                    self.resident[id(st)] = [(st.weight, int(st.dest.stop - st.dest.start), group * tile,
                                              st.col_start)]
        return out

    def fused_leaves(self):
        """{(id(region), leaf index): (s, block)}: a pointwise region that follows a resident matmul in its phase and
        reads its output at the region's own tile (block `block` of U columns) takes that tile from the matmul's
        accumulator in registers (_g<s>_<block>) when _RESIDENT: no store and load through L2 between the two (on
        an H200 a step's gates went out and back in through L2 between the forward's matmul and its region)"""
        out, units = {}, self.split.units
        for phase in self.split.phases:
            for mm, st in zip(phase, phase[1:]):
                if not (isinstance(mm, MatMul) and id(mm) in self.resident and not mm.accumulate and
                        isinstance(st, Pointwise)):
                    continue
                a0 = reference(st)
                if a0 is None or a0 % units or int(st.n) > units:   # (one tile of the region a program)
                    continue
                for i, (_, v) in enumerate(st.leaves):
                    if v.value == mm.out and not st.broadcast(v) and int(v.start) % units == 0 and \
                            int(v.stop - v.start) == int(st.n):
                        out[id(st), i] = (self.order.index(mm), int(v.start) // units)
        return out

    def single_tile_region(self, st):
        """whether a region's tile loop is one pass when _RESIDENT (a program's one tile: P >= U / tile)"""
        a0 = reference(st)
        return a0 is not None and a0 % self.split.units == 0 and int(st.n) <= self.split.units

    def forwarded_accumulations(self):
        """{(id(region), leaf index): the register variable}: a region that reads, at its own tile, what an
        Accumulate of its phase added into (d_h_new += the output's cotangent) takes the sum from registers
        (_fw_<dest>) when _RESIDENT and without lengths (with them the ended rows' statements between may change
        it); a store and load through L2 fewer on the backward step's critical path"""
        out, units = {}, self.split.units
        if not self.resident:
            return out
        for phase in self.split.phases:
            for i, acc in enumerate(phase):
                if not isinstance(acc, Accumulate) or self.n(acc.dest) > units:
                    continue
                for st in phase[i + 1:]:
                    if isinstance(st, Pointwise) and self.single_tile_region(st):
                        out.update({(id(st), j): f"_fw_{acc.dest}" for j, (_, v) in enumerate(st.leaves)
                                    if v.value == acc.dest and int(v.start) == 0 and
                                    int(v.stop) == self.n(acc.dest) == int(st.n)})
                    if not isinstance(st, (HoldEnded, PassEnded)) and acc.dest in written(st):
                        break
        return out

    def prefetched_leaves(self):
        """{(id(statement), leaf index): Ahead}: with resident slices (one tile a program), a region's leaves on
        buffers the step never writes are loaded ahead: a parameter's once before the time loop, a sequence's (a
        saved gate, the previous cell state) at the step's start, before its barrier, so that their latency
        overlaps the wait instead of following the matmul (the region's loads, a round trip through L2, came after
        the step's barrier and matmul); a forwarded accumulation's source (the output's cotangent, leaf None) too.
        Where the step's last barrier falls within it (a backward: between its region and the sums), the step's
        start follows that barrier at once, so a read-only sequence's (a saved gate, the cotangent) is loaded a
        step ahead instead, before the barrier of the step before (Ahead.early)"""
        out = {}
        if not self.resident:
            return out
        written_in_step = set().union(*(written(it) for it in self.items))
        late_barrier = LOADS_A_STEP_AHEAD and self.split.barriers > 0 and not self.split.first_barrier

        def ahead(key, var, name, start, width, load_width):
            b = self.buf[name]
            read_only = b.role == Role.SEQ or (b.role == Role.PREV and b.seq not in written_in_step)
            out[key] = Ahead(var, name, start, width, load_width, b.role != Role.PARAM, late_barrier and read_only)
        for phase in self.split.phases:
            for st in phase:
                if isinstance(st, Accumulate) and f"_fw_{st.dest}" in self.forwarded.values() and \
                        self.buf[st.src].role == Role.SEQ and st.src not in written_in_step:
                    ahead((id(st), None), f"_x_{st.src}", st.src, 0, self.n(st.dest), self.n(st.src))
                if not (isinstance(st, Pointwise) and self.single_tile_region(st)):
                    continue
                for i, (sym, v) in enumerate(st.leaves):
                    if st.broadcast(v) or v.value in written_in_step or (id(st), i) in self.fused or \
                            (id(st), i) in self.forwarded:
                        continue
                    b = self.buf[v.value]   # (a carry, or a sequence at _t - 1: what the step before wrote)
                    before = self.out_of[v.value] if b.role == Role.CARRY_IN else b.seq if b.role == Role.PREV else None
                    if before is not None and not self.own_writes(before):
                        continue
                    ahead((id(st), i), f"_x_{sym.name}", v.value, v.start, int(st.n), v.stop - v.start)
        return out

    def own_writes(self, cout):
        """whether every column of a buffer is written in a step by the program that owns it (regions of tiles
        aligned to units, the ended rows' hold): what the step before wrote there is final before the barrier"""
        units = self.split.units
        for st in self.items:
            if isinstance(st, HoldEnded) or cout not in written(st):
                continue
            if not isinstance(st, Pointwise) or reference(st) is None or reference(st) % units or \
                    any(d.value == cout and int(d.start) % units for d, _, _ in st.outputs):
                return False
        return True

    def prefetch(self, per_step):
        """the loads of prefetched_leaves: the per-step ones (those loaded early a step ahead: taken from the step
        before's, but for a launch's first step), or the parameters' (before the time loop)"""
        w = self.w
        loads = {a.var: a for a in self.prefetched.values() if a.per_step == per_step}
        if not loads:
            return
        with w.block(f"if _RESIDENT:   # {'this step' if per_step else 'the parameters'}' values its region reads, "
                     "loaded ahead (prefetched_leaves)"):
            w("_cjx = _pf * _BN + tl.arange(0, _BN)   # (the program's one tile)")
            early = [a for a in loads.values() if a.early]
            if early:
                with w.block("if _i > _I0:   # (loaded during the step before, ahead of its barrier)"):
                    for a in early:
                        w(f"{a.var} = _n{a.var}")
                with w.block("else:"):
                    for a in early:
                        w(f"{a.var} = {self.load_ahead(a, 0)}")
            for a in loads.values():
                if not a.early:
                    w(f"{a.var} = {self.load_ahead(a, 0)}")

    def prefetch_hoisted(self):
        """at the step's start, before its barrier (a forward's): a resident matmul's terms that ran before the loop
        (x @ W_ih^T), the program's tiles of them, into _xp<s>: they come from memory (HBM: a sequence of T steps),
        the slowest load of the step, which followed the barrier and overlapped only h's (from L2)"""
        pres = [(s, st) for s, st in enumerate(self.order) if isinstance(st, MatMul) and id(st) in self.hoisted]
        if not pres:
            return
        with self.w.block("if _RESIDENT:   # the matmuls' terms run before the loop, loaded ahead of the barrier"):
            for s, st in pres:
                self.w(f"_xp{s} = {self.hoisted_load(st, f'_cnr{s}', f'_cmr{s}')}")

    def hoisted_load(self, mm, cn, cm):
        """the terms of a matmul run before the loop, at columns `cn` (those that exist: `cm`)"""
        n_out = self.n(mm.out)
        return (f"tl.load({self.hoisted[id(mm)][0]} + _tw * _B * {n_out} + _rows[:, None] * {n_out} + {cn}[None, :], "
                f"mask=_rmask[:, None] & {cm}[None, :], other=0.0)")

    def prefetch_next(self):
        """before the step's last barrier: the next step's early loads (prefetched_leaves) into _n<variable>"""
        w = self.w
        early = {a.var: a for a in self.prefetched.values() if a.early}
        if not early:
            return
        with w.block("if _RESIDENT:   # the next step's read-only values, loaded ahead of this step's barrier"), \
                w.block("if _i + 1 < _I1:"):
            w("_cjx = _pf * _BN + tl.arange(0, _BN)   # (the program's one tile)")
            for a in early.values():
                w(f"_n{a.var} = {self.load_ahead(a, -1 if self.scan.reverse else 1)}")

    def load_ahead(self, a, shift):
        """an Ahead's load at the program's tile _cjx, of the step `shift` steps after this one"""
        mask = f"_rmask[:, None] & (_cjx < {a.width})[None, :]"
        return self.load(a.name, f"{a.start} + _cjx", mask, a.load_width, tile="_cjx", shift=shift)

    def carried_sums(self):
        """{id(operand gradient): the register variable}: where a forwarded accumulation (d_h_new += the output's
        cotangent) reads the carry that a resident operand's gradient stored whole the step before (d_h, the sums
        of the partials: its only writer, stored_unmasked, or the last, added_onto), that sum stays in registers
        for the next step (_cr_<carry>, carried by the time loop): without lengths, from a launch's second step on"""
        out = {}
        overwritten = self.overwritten
        accumulated = {var[len("_fw_"):] for var in self.forwarded.values()}
        for st in self.items:
            cout = st.dest.value if isinstance(st, OperandGrad) else None
            whole = (id(st), 0) in self.stored_unmasked or id(st) in self.onto
            if id(st) in self.resident and cout in overwritten and whole and \
                    any(self.out_of.get(cin) == cout for cin in accumulated):
                out[id(st)] = f"_cr_{cout}"
        return out

    def added_onto(self):
        """{id(resident operand gradient): (id(region), output, variable, the region's phase)}: an operand's
        gradient (d_h += d_gates @ W_hh) whose output's one writer before it in the step is a region's first write
        (stored_unmasked: a GRU's part of d_h that does not pass through the gates), at the program's own tile,
        adds its tile to that value kept in registers (_fo_<output>, carried by the time loop: the two are
        phases apart) without lengths: no load of what the region stored, and it stores the sum whole
        (carried_sums)"""
        out = {}
        for st in self.items:
            if not (isinstance(st, OperandGrad) and id(st) in self.resident):
                continue
            name = st.dest.value
            region, k = self.one_region_writing(before(list(self.scan.step), st), name)
            if region is None or (id(region), k) not in self.stored_unmasked:
                continue
            d = region.outputs[k][0]   # (the region's tile _pf * _BN + d.start is the gradient's _ckr)
            if int(d.start) == int(st.dest.start) and int(d.stop) == int(st.dest.stop):
                out[id(st)] = (id(region), k, f"_fo_{name}", self.phase_of(region))
        return out

    def one_region_writing(self, statements, name):
        """(region, output): the one statement of `statements` that writes the buffer `name` but the ended rows'
        (which run only with lengths), a region of one tile a program with one output into it; (None, None)"""
        writers = [o for o in statements if not isinstance(o, (HoldEnded, PassEnded)) and name in writes(o)]
        if len(writers) != 1 or not (isinstance(writers[0], Pointwise) and self.single_tile_region(writers[0])):
            return None, None
        ks = [k for k, (d, _, _) in enumerate(writers[0].outputs) if d.value == name]
        return (writers[0], ks[0]) if len(ks) == 1 else (None, None)

    def phase_of(self, st):
        """the index of the phase an item of the step is in"""
        return next(k for k, phase in enumerate(self.split.phases) if any(o is st for o in phase))

    def carried_regions(self):
        """({(id(region), leaf index): (variable, the writer's phase)}, {(id(region), output): variable}): a
        region's leaf on a carry that one region alone stores whole each step without lengths, at the program's
        own tile (an LSTM backward's d_c), and that nothing else writes, is the value that region kept in
        registers the step before (_cr_<carry>, carried by the time loop) when _RESIDENT and without lengths:
        no load of what the program itself stored (where it is not loaded ahead already: prefetched_leaves)"""
        leaves, kept = {}, {}
        if not self.resident:
            return leaves, kept
        ended, step = (HoldEnded, PassEnded), list(self.scan.step)
        for phase in self.split.phases:
            for st in phase:
                if not (isinstance(st, Pointwise) and self.single_tile_region(st)):
                    continue
                for i, (_, v) in enumerate(st.leaves):
                    if (id(st), i) in self.fused or (id(st), i) in self.forwarded or (id(st), i) in self.prefetched \
                            or st.broadcast(v) or self.buf[v.value].role != Role.CARRY_IN or \
                            any(not isinstance(o, ended) and v.value in writes(o) for o in step):
                        continue
                    cout = self.out_of[v.value]
                    wr, k = self.one_region_writing(step, cout)
                    if wr is None:
                        continue
                    d, _, acc = wr.outputs[k]
                    if (acc and (id(wr), k) not in self.stored_unmasked) or \
                            (int(d.start), int(d.stop)) != (int(v.start), int(v.stop)):
                        continue
                    kept[id(wr), k] = f"_cr_{cout}"
                    leaves[id(st), i] = (f"_cr_{cout}", self.phase_of(wr))
        return leaves, kept

    def joined_sources(self):
        """{id(transposed operand gradient): {block: (id(region), output)}}: the region just before its partials
        (the last writer of its source in the phase) stored the program's tiles of every block of the source; the
        partials join those register tiles (_dg<s>_<block>) instead of loading them back"""
        out, units = {}, self.split.units
        for k, phase in enumerate(self.split.phases[:-1]):
            st = self.split.phases[k + 1][0]
            if id(st) not in self.transposed:
                continue
            writers = [o for o in phase if st.src in written(o)]
            region = writers[-1] if writers else None
            if not (isinstance(region, Pointwise) and self.single_tile_region(region)):
                continue
            tiles = {int(d.start) // units: (id(region), j) for j, (d, _, acc) in enumerate(region.outputs)
                     if d.value == st.src and int(d.start) % units == 0 and int(d.stop - d.start) == int(region.n)
                     and (not acc or (id(region), j) in self.stored)}
            if set(tiles) == set(range(self.n(st.src) // units)):
                out[id(st)] = tiles
        return out

    @property
    def resident_bytes(self):
        """shared memory the resident slices take (bfloat16), each held once"""
        held = {self.slice_names[id(st), k]: 2 * K * cols for st in self.order
                for k, (_, K, cols, _) in enumerate(self.resident[id(st)])}
        return sum(held.values())

    def before_loop(self, name):
        """a sequence whole before the loop (an input, or made in the phase before it), not one the step adds to"""
        b = self.buf[name]
        return b.role == Role.SEQ and not b.acc

    def n(self, name):
        b = self.buf[name]
        return int(b.size[0] if b.role in (Role.PARAM, Role.PARAM_GRAD) else b.size)

    # --- arguments: (kernel parameter, host expression) --------------------------------------------------
    def args(self):
        out = []
        for b in self.used:
            v = b.name
            if v in self.weights16:
                out.append((f"_w_{v}", f"_{v}_w16"))
            elif b.role in (Role.SEQ, Role.PARAM):
                out.append((f"_ptr_{v}", seq(v) if b.role == Role.SEQ else v))
            elif b.role == Role.STEP:
                out += [(f"_ptr_{v}", seq(v)), (f"_ts_{v}", f"_{v}_ts")]
            elif b.role == Role.PREV:
                out += [(f"_ptr_{b.seq}", seq(b.seq)), (f"_init_{v}", init(v))]
            elif b.role == Role.PARAM_GRAD:
                out.append((f"_part_{v}", f"_{v}_part"))
        for _, cout in self.scan.carries:
            b = self.buf[cout]
            out.append((f"_pp_{cout}", f"_{cout}_pp"))
            if cout in self.split_parts:
                out.append((f"_ps_{cout}", f"_{cout}_ps"))
            if b.keep != Keep.NEVER:
                out += [(f"_ptr_{cout}", seq(cout)), (f"_ts_{cout}", f"_{cout}_ts")]
        out += [(pre, pre) for pre, _ in self.hoisted.values()]
        out += [(f"_pt{s}", f"_{st.dest.value}_pt{s}") for s, st in enumerate(self.order)
                if id(st) in self.transposed]
        return out

    def sizes(self):
        """the integer arguments: run-time values, never specialised on (Triton would compile again for T or B
        equal to 1 or divisible by 16)"""
        return ["_T", "_B", "_I0", "_I1", "_K0", "_K1", "_P"] + [a for a, _ in self.args() if a.startswith("_ts_")]

    # --- addressing -------------------------------------------------------------------------------------
    def row_pointers(self):
        """Each buffer's BB rows at this step: a (BB, 1) block of pointers; a carry's two slots alternate."""
        w = self.w
        for b in self.used:
            v, n = b.name, self.n(b.name)
            rows = f"_rows[:, None] * {n}"
            if b.role == Role.SEQ:
                w(f"_r_{v} = _ptr_{v} + _tw * _B * {n} + {rows}")
            elif b.role == Role.STEP:
                w(f"_r_{v} = _ptr_{v} + _tw * _ts_{v} + {rows}")
            elif b.role == Role.PREV:   # the state entering step _t: the sequence at _t - 1, or the initial state
                w(f"_r_{v} = _ptr_{b.seq} + (_tw - 1) * _B * {n} + {rows}")
                w(f"_ri_{v} = _init_{v} + {rows}")
        for cin, cout in self.scan.carries:
            n = self.n(cout)
            w(f"_r_{cin} = _pp_{cout} + (_iw % 2) * _B * {n} + _rows[:, None] * {n}")
            w(f"_r_{cout} = _pp_{cout} + ((_iw + 1) % 2) * _B * {n} + _rows[:, None] * {n}")
            if self.buf[cout].keep != Keep.NEVER:
                w(f"_rk_{cout} = _ptr_{cout} + _tw * _ts_{cout} + _rows[:, None] * {n}")
            if cout in self.split_parts:   # (its parts: two slots of two, each part's B rows)
                w(f"_rs_{cin} = _ps_{cout} + (_iw % 2) * 2 * _B * {n} + _rows[:, None] * {n}")
                w(f"_rs_{cout} = _ps_{cout} + ((_iw + 1) % 2) * 2 * _B * {n} + _rows[:, None] * {n}")

    def load(self, name, cols, mask, width=None, tile="_cj", shift=0):
        """a (rows, features) block of a buffer at columns `cols` (the tile index `tile` plus an offset); a vector
        parameter's one row (features masked to `width`) broadcasts over the rows. `shift`: a sequence's (or a
        previous state's) block `shift` steps after this step's"""
        b = self.buf[name]
        if b.role == Role.PARAM:
            return f"tl.load(_ptr_{name} + {cols}, mask={tile} < {width}, other=0.0)[None, :]"
        sign = "+" if shift > 0 else "-"
        at = f"_r_{name}" + (f" {sign} {abs(shift)} * _B * {self.n(name)}" if shift else "")
        if b.role == Role.PREV:   # `tile * 0 + _t` makes the step a tensor, as a mask must be
            t = "_t" if not shift else f"(_t {sign} {abs(shift)})"
            return (f"tl.load({at} + ({cols})[None, :], mask={mask} & (({tile} * 0 + {t}) > 0)[None, :], "
                    f"other=0.0) + tl.load(_ri_{name} + ({cols})[None, :], mask={mask} & (({tile} * 0 + {t}) == 0)"
                    "[None, :], other=0.0)")
        return f"tl.load({at} + ({cols})[None, :], mask={mask}, other=0.0)"

    def store(self, name, cols, value, mask, parts=True):
        """buffer[rows, cols] = value: a kept carry's sequence too, and (`parts`) a split carry's bfloat16 parts"""
        w = self.w
        w(f"tl.store(_r_{name} + ({cols})[None, :], {value}, mask={mask})")
        if name in self.buf and self.buf[name].role == Role.CARRY_OUT and self.buf[name].keep != Keep.NEVER:
            w(f"tl.store(_rk_{name} + ({cols})[None, :], {value}, mask={mask})")
        if parts and name in self.split_parts:
            with w.block("if _RESIDENT and not _MASKED:   # its bfloat16 parts, for the matmul: split_at_write"):
                w(f"_sh_{name} = ({value}).to(tl.bfloat16)")
                w(f"tl.store(_rs_{name} + ({cols})[None, :], _sh_{name}, mask={mask})")
                w(f"tl.store(_rs_{name} + _B * {self.n(name)} + ({cols})[None, :], (({value}) - _sh_{name}"
                  f".to(tl.float32)).to(tl.bfloat16), mask={mask})")

    def add(self, name, cols, value, mask, ptr="_ga"):
        self.w(f"{ptr} = _r_{name} + ({cols})[None, :]")
        self.w(f"tl.store({ptr}, tl.load({ptr}, mask={mask}, other=0.0) + ({value}), mask={mask})")

    def add_unless_masked(self, name, cols, value, mask, var, ptr="_ga", keep=None, why="for the next step: "
                          "carried_sums"):
        """`+=` into a buffer the step zeroed that nothing wrote before but the ended rows' statements
        (stored_unmasked): a store without lengths (of `var`, kept in `keep` too), the read-modify-write with them"""
        with self.w.block("if _MASKED:   # (ended rows may have passed a cotangent into it)"):
            self.add(name, cols, value, mask, ptr)
        with self.w.block("else:   # (it holds the step's zeros)"):
            self.w(f"{var} = _zero + ({value})")
            self.store(name, cols, var, mask)
            if keep:
                self.w(f"{keep} = {var}   # ({why})")

    def kept_or_loaded(self, target, var, kept, load, guard=True):
        """target = the register variable `var` where this launch set it (the condition `kept`: a GPU runs one
        launch; under the interpreter one starts at phase _K0 of step _I0, after a barrier, and sees only memory),
        else `load`; `guard`: only when _RESIDENT and without lengths, else `load` too"""
        w = self.w
        with w.block("if _RESIDENT and not _MASKED:") if guard else nullcontext():
            with w.block(f"if {kept}:"):
                w(f"{target} = {var}")
            with w.block("else:"):
                w(f"{target} = {load}")
        if guard:
            with w.block("else:"):
                w(f"{target} = {load}")

    def own(self, a0, j):
        """whether this program runs the tile at columns a0 + j (split.py); None: program 0 runs them all"""
        if a0 is None:
            return None
        if self.split.aligned:   # the owner of the tile's hidden units
            return f"(({a0} + {j}) % {self.split.units}) // _BN % _P == _pf"
        return f"(({a0} + {j}) // _BN) % _P == _pf"

    @contextmanager
    def owned_loop(self, var, width, a0):
        """`for var in ...:` over the starts of this program's tiles among columns a0 .. a0 + width (own()'s
        ownership). Where the owned tiles are evenly spaced it visits only them, _P tiles apart: on an H200 a loop
        over all of a step's tiles that tests each for its owner cost ~3 us a step for 48 tiles (the probe in
        benchmarks/probe_backward.py), as much as the elementwise work; otherwise every tile, testing it."""
        w, cond, units, tile = self.w, self.own(a0, var), self.split.units, self.split.tile
        if cond is None:
            with w.block(f"for {var} in range(0, {width}, _BN):"):
                yield
        elif a0 % tile == 0 and not self.split.aligned:   # dealt round-robin: tile a0 // tile + j is j's
            first = f"(_pf + _P - {a0 // tile} % _P) % _P"
            with w.block(f"for {var} in range({first} * _BN, {width}, _P * _BN):"):
                yield
        elif self.split.aligned and a0 % units == 0 and (width <= units or width % units == 0):
            # aligned: the program's tiles of each block of U columns
            if width <= units:
                with w.block(f"for {var} in range(_pf * _BN, {width}, _P * _BN):"):
                    yield
            else:
                with w.block(f"for _b0 in range(0, {width}, {units}):"), \
                        w.block(f"for {var} in range(_b0 + _pf * _BN, _b0 + {units}, _P * _BN):"):
                    yield
        else:
            with w.block(f"for {var} in range(0, {width}, _BN):"), w.block(f"if {cond}:"):
                yield

    @contextmanager
    def tiles(self, width, mask_rows="_rmask[:, None]", a0=0):
        """a loop over this program's feature tiles _cj of a block of `width` features; _m2 masks rows and
        features"""
        with self.owned_loop("_j0", width, a0):
            self.w("_cj = _j0 + tl.arange(0, _BN)")
            self.w(f"_m2 = {mask_rows} & (_cj < {width})[None, :]")
            yield

    # --- the kernel -------------------------------------------------------------------------------------
    def kernel(self):
        w, scan, split = self.w, self.scan, self.split
        w(f"@triton.jit(do_not_specialize={self.sizes()!r})")
        w(f"def _{scan.name}_kernel(_T, _B, _I0, _I1, _K0, _K1, _P, {', '.join(a for a, _ in self.args())}, _len_ptr, "
          "_sync_ptr, _BB: tl.constexpr, _BN: tl.constexpr, _BK: tl.constexpr, _BKG: tl.constexpr, "
          "_MASKED: tl.constexpr, _WIDE: tl.constexpr, _PHASED: tl.constexpr, _DOT: tl.constexpr, "
          "_RESIDENT: tl.constexpr, _BF16_DOT: tl.constexpr):")
        with w.block():
            w(f"# {len(split.phases)} phase(s) a step, {split.barriers} grid barrier(s): steps _I0 <= _i < _I1, from "
              "phase _K0 of the first to _K1 of the last (all of them on a GPU; under the interpreter, from one "
              "barrier to the next)")
            w("_pb = tl.program_id(0)   # this program's batch tile (axis 0: up to 2^31 - 1 of them)")
            w("_pf = tl.program_id(1)   # its share of the features, of _P")
            w("_rows = _pb * _BB + tl.arange(0, _BB)")
            w("_rmask = _rows < _B")
            with w.block("if _MASKED:"):
                w("_lens = tl.load(_len_ptr + _rows, mask=_rmask, other=0).to(tl.int32)   # (each row's length)")
            if self.resident:
                with w.block("if _RESIDENT:   # this program's weight slices, read once, on chip for every step"):
                    self.preload()
                self.prefetch(per_step=False)
            for var in self.carried.values():   # (loop-carried: set by the sums, read by the next step's accumulation)
                w(f"{var} = tl.zeros((_BB, _BN), dtype=tl.float32)")
            for _, _, var, _ in self.onto.values():   # (set by a region, read by an operand's gradient phases later)
                w(f"{var} = tl.zeros((_BB, _BN), dtype=tl.float32)")
            for var in sorted({a.var for a in self.prefetched.values() if a.early}):   # (loaded a step ahead)
                w(f"_n{var} = tl.zeros((_BB, _BN), dtype=tl.float32)")
            for var in sorted(set(self.carry_kept.values())):   # (set by a region, read by the next step's)
                w(f"{var} = tl.zeros((_BB, _BN), dtype=tl.float32)")
            with w.block("for _i in range(_I0, _I1):"):
                w(f"_t = {'_T - 1 - _i' if scan.reverse else '_i'}")
                with w.block("if _MASKED:"):
                    w("_live = _lens > _t   # (the rows still running)")
                # offsets: a step's in 64 bits when a buffer has 2^31 elements or more (a variant compiled only
                # then: 64-bit offsets cost 20-30% more registers), a row's within a step in 32
                with w.block("if _WIDE:"):
                    w("_tw, _iw = tl.cast(_t, tl.int64), tl.cast(_i, tl.int64)")
                with w.block("else:"):
                    w("_tw, _iw = _t, _i")
                self.row_pointers()
                self.prefetch(per_step=True)
                self.prefetch_hoisted()
                barrier = 0
                for k, phase in enumerate(split.phases):
                    if k == len(split.phases) - 1 and k > 0 and not split.first_barrier:
                        self.prefetch_next()
                    if k > 0 or split.first_barrier:
                        self.grid_barrier(barrier)
                        barrier += 1
                    with w.block(f"if ((_i > _I0) | (_K0 <= {k})) & ((_i < _I1 - 1) | ({k} <= _K1)):   # phase {k}"):
                        for st in phase:
                            self.render(st)
                            w("tl.debug_barrier()   # the next statement reads what other threads of this program wrote")
                        if k + 1 < len(split.phases) and id(split.phases[k + 1][0]) in self.transposed:
                            self.partials(split.phases[k + 1][0])

    def preload(self):
        """the resident slices (resident_slices) as bfloat16 tiles `_wr<s>_<k>_<c>`: statement s's term k's chunk c"""
        w = self.w
        for s, st in enumerate(self.order):
            if isinstance(st, MatMul):
                n_out = self.n(st.out)
                w(f"# {st.out}: the columns of this program's tiles, and their rows of the weights")
                self.tile_count(n_out, f"r{s}")
                self.tile_columns(n_out, self.group(n_out), "0", f"r{s}", f"r{s}")
                rows, pieces = f"_cnr{s}[None, :]", [("", "[:, None]", f"_cmr{s}[None, :]")]
            elif id(st) in self.transposed:
                op, n_src = st.dest, self.n(st.src)
                w(f"# {op.value}[{op.start}:{op.stop}] transposed: this program's tile of it, its columns of {st.src} "
                  f"(its tiles of each block of {self.split.units}), and their rows of the weight")
                w(f"_ckr{s} = _pf * _BN + tl.arange(0, _BN)")
                self.tile_count(n_src, f"p{s}")
                if id(st) in self.by_tile:   # (a piece a tile of the source: _cnp<s>_<b> its columns)
                    names = [f"_{b}" for b in self.by_tile[id(st)]]
                    for b in self.by_tile[id(st)]:
                        self.tile_columns(n_src, 1, str(b), f"p{s}_{b}", f"p{s}")
                else:
                    names = [""]
                    self.tile_columns(n_src, self.transposed[id(st)], "0", f"p{s}", f"p{s}")
                rows, pieces = None, [(x, f"_cnp{s}{x}[:, None]", f"_cmp{s}{x}[:, None]") for x in names]
            else:
                op = st.dest
                w(f"# {op.value}[{op.start}:{op.stop}]: this program's tile of it, and the weight's columns for it")
                w(f"_ckr{s} = _pf * _BN + tl.arange(0, _BN)")
                rows, pieces = "", [("", f"_ckr{s}[None, :]", f"(_ckr{s} < {int(op.stop - op.start)})[None, :]")]
            for k, (weight, K, _, col) in enumerate(self.resident[id(st)]):
                ldw, name = int(self.buf[weight].size[1]), self.slice_names[id(st), k]
                if name != f"_wr{s}_{k}":
                    w(f"# (its slice of {weight} is {name}_*)")
                    continue
                for c, (c0, width) in enumerate(chunks(K)):
                    if c == 0:
                        w(f"_kp{width} = tl.arange(0, {width})")
                    within = "" if c0 + width <= K else \
                        f"({c0} + _kp{width} < {K})[{'None, :' if rows is None else ':, None'}] & "
                    for suffix, cols, mask in pieces:
                        if rows is None:   # (transposed: the program's rows of the weight, K of its columns)
                            ptr = f"{cols} * {ldw} + ({col + c0} + _kp{width})[None, :]"
                        elif rows:   # (a matmul's: its output columns are the weight's rows)
                            ptr = f"{rows} * {ldw} + ({col + c0} + _kp{width})[:, None]"
                        else:      # (an operand's gradient: the reduction runs over the weight's rows)
                            ptr = f"({c0} + _kp{width})[:, None] * {ldw} + {col} + {cols}"
                        w(f"{name}_{c}{suffix} = tl.load(_w_{weight} + {ptr}, mask={within}{mask}, other=0.0)")

    def grid_barrier(self, k):
        """Every program of this batch tile has finished the phase before: each adds one to its tile's counter
        (release: its writes are visible first) and waits (acquire) until all _P have, for the k-th barrier of
        step _i. The counter only grows (int64), so no reset."""
        w = self.w
        with w.block("if not _PHASED:"), w.block("if _P > 1:"):
            w(f"_goal = (tl.cast(_i, tl.int64) * {self.split.barriers} + {k + 1}) * _P")
            w('tl.atomic_add(_sync_ptr + _pb, 1, sem="release", scope="gpu")')
            w('_seen = tl.atomic_add(_sync_ptr + _pb, 0, sem="acquire", scope="gpu")')
            with w.block("while _seen < _goal:"):
                w('_seen = tl.atomic_add(_sync_ptr + _pb, 0, sem="acquire", scope="gpu")')
            w("tl.debug_barrier()")

    def render_Zero(self, st):
        for name in st.names:   # accumulated into from zero at every step
            if name in self.overwritten:   # (without lengths its one writer stores every column)
                with self.w.block("if _MASKED:"), self.tiles(self.n(name)):
                    self.store(name, "_cj", "tl.zeros((_BB, _BN), dtype=tl.float32)", "_m2")
                continue
            with self.tiles(self.n(name)):
                self.store(name, "_cj", "tl.zeros((_BB, _BN), dtype=tl.float32)", "_m2")

    def overwritten_unmasked(self):
        """the zeroed buffers whose first writer (stored_unmasked) stores all their columns when there are no
        lengths, and that nothing reads before it (nor it, as a leaf): their zeros are never read then"""
        out, step = set(), list(self.scan.step)
        for i, st in enumerate(step):
            if isinstance(st, OperandGrad) and (id(st), 0) in self.stored_unmasked:
                views, leaves = [st.dest], set()
            elif isinstance(st, Pointwise):
                views = [d for k, (d, _, _) in enumerate(st.outputs) if (id(st), k) in self.stored_unmasked]
                leaves = {v.value for _, v in st.leaves}
            else:
                continue
            out |= {v.value for v in views if int(v.start) == 0 and int(v.stop) == self.n(v.value) and
                    v.value not in leaves and
                    not any(not isinstance(o, (HoldEnded, PassEnded)) and v.value in reads(o) for o in step[:i])}
        return out

    # --- statements -------------------------------------------------------------------------------------
    def render_MatMul(self, mm):
        w, n_out = self.w, self.n(mm.out)
        w(f"# {mm.out} {'+=' if mm.accumulate else '='} " + " + ".join(
            f"{t.operand.value}[{t.operand.start}:{t.operand.stop}] @ {t.weight}[:, {t.col_start}:{t.col_stop}].T"
            for t in mm.terms))
        group = self.group(n_out)
        if id(mm) not in self.resident:
            with self.owned_tiles(n_out, group):
                self.matmul_tiles(mm, group, f"_cn{group}", f"_cm{group}")
            return
        with w.block("if _RESIDENT:   # the program's one pass of tiles, against its slices on chip"):
            s = self.order.index(mm)
            self.matmul_tiles(mm, group, f"_cnr{s}", f"_cmr{s}", resident=True)
        with w.block("else:"), self.owned_tiles(n_out, group):
            self.matmul_tiles(mm, group, f"_cn{group}", f"_cm{group}")

    def matmul_tiles(self, mm, group, cn, cm, resident=False):
        """_acc<group>: the matmul at columns `cn` (those that exist: `cm`), stored; its weights streamed from
        global memory (L2) in _BK-wide pieces, or `resident`: from its slices on chip"""
        w = self.w
        pre, hoisted = self.hoisted.get(id(mm), (None, ()))
        # (names of their own for each width: a compiled loop wants each variable one shape)
        acc, wt = f"_acc{group}", f"_wt{group}"
        if pre and resident:   # (loaded ahead of the barrier: prefetch_hoisted)
            w(f"{acc} = _xp{self.order.index(mm)}   # the terms run before the loop")
        elif pre:
            w(f"{acc} = {self.hoisted_load(mm, cn, cm)}   # the terms run before the loop")
        else:
            w(f"{acc} = tl.zeros((_BB, {group} * _BN), dtype=tl.float32)")
        for k, t in enumerate(t for t in mm.terms if t not in hoisted):
            K, ldw = int(t.operand.stop - t.operand.start), int(self.buf[t.weight].size[1])
            if resident:
                self.resident_dot(acc, t.operand.value, int(t.operand.start), K, self.slice_names[id(mm), k])
                continue
            with w.block(f"for _k0 in range(0, {K}, _BK):"):
                w("_ck = _k0 + tl.arange(0, _BK)")
                w(f"_a = {self.load(t.operand.value, f'{t.operand.start} + _ck', f'_rmask[:, None] & (_ck < {K})[None, :]', tile='_ck')}")
                w(f"{wt} = {self.weight(t.weight)} + {cn}[None, :] * {ldw} + ({t.col_start} + _ck)[:, None], "
                  f"mask=(_ck < {K})[:, None] & {cm}[None, :], other=0.0){self.to_float(t.weight)}")
                w(f"{acc} += tl.dot(_a, {wt}, input_precision=_DOT)")
        if mm.accumulate:
            self.add(mm.out, cn, acc, f"_rmask[:, None] & {cm}[None, :]", ptr=f"_ga{group}")
        else:
            self.store(mm.out, cn, acc, f"_rmask[:, None] & {cm}[None, :]")
        s = self.order.index(mm) if resident else None
        if s in {fused for fused, _ in self.fused.values()}:
            names = ", ".join(f"_g{s}_{b}" for b in range(group))
            w(f"{names}{',' if group == 1 else ''} = {f'_tiles{group}({acc}, _BN)' if group > 1 else f'({acc},)'}"
              "   # its tiles, for the region next")

    def resident_dot(self, acc, operand, start, K, slices):
        """acc += operand[:, start:start + K] @ the resident slice, chunk by chunk (`slices`_<c>); a carry's two
        bfloat16 parts as its writer stored them (split_at_write), else the value split here"""
        w, cout = self.w, self.out_of.get(operand)
        parted = cout in self.split_parts
        with w.block("if _MASKED:") if parted else nullcontext():
            self.chunk_dots(acc, operand, start, K, slices, None)
        if parted:
            with w.block("else:   # (the parts its writer stored: split_at_write)"):
                self.chunk_dots(acc, operand, start, K, slices, f"_rs_{operand}")

    def chunk_dots(self, acc, operand, start, K, slices, parts):
        w, cs = self.w, chunks(K)
        half = min(DOT_SUMS // 2, len(cs))   # sums of each part (DOT_SUMS); 0: one sum for all
        sums = [f"{acc}_s{i}" for i in range(2 * half)]
        for name in sums:
            w(f"{name} = tl.zeros_like({acc})")
        for c, (c0, width) in enumerate(cs):
            kc = f"_kc{width}"
            if c == 0:
                w(f"{kc} = tl.arange(0, {width})")
            cols = f"{start + c0} + {kc}"
            mask = "_rmask[:, None]" + (f" & ({c0} + {kc} < {K})[None, :]" if c0 + width > K else "")
            into = f"{sums[c % half]}, {sums[half + c % half]}" if half else acc
            dot = "dots" if half else "dot"
            if parts is None:
                w(f"{into} = _split_{dot}({into}, {self.load(operand, cols, mask, tile=kc)}, {slices}_{c}, _BF16_DOT)")
            else:
                lo = f"{parts} + _B * {self.n(operand)}"
                w(f"{into} = _pair_{dot}({into}, tl.load({parts} + ({cols})[None, :], mask={mask}, other=0.0), "
                  f"tl.load({lo} + ({cols})[None, :], mask={mask}, other=0.0), {slices}_{c}, _BF16_DOT)")
        if half:   # the high parts' sums, then the low parts'
            hi, lo = (" + ".join(part) for part in (sums[:half], sums[half:]))
            w(f"{acc} += ({hi}) + ({lo})" if half > 1 else f"{acc} += {hi} + {lo}")

    def weight(self, name):
        """the start of a load of a matmul's weight (to which the caller adds offsets and mask)"""
        return f"tl.load(_w_{name}" if name in self.weights16 else f"tl.load(_ptr_{name}"

    def to_float(self, name):
        return ".to(tl.float32)" if name in self.weights16 else ""

    def group(self, n_out):
        """tiles of a matmul's output one tl.dot computes: a program's tiles of every block of U columns (an
        LSTM's four gates of its units) at once, up to GROUP. On a GPU one dot of 64 columns ran 5x faster than
        four of 16 (tensor cores; benchmarks/probe_step.py, BENCHMARKS.md)"""
        blocks = -(-n_out // self.split.units)
        return min(GROUP, 1 << (blocks - 1).bit_length())

    @contextmanager
    def owned_tiles(self, n_out, group):
        """A loop over this program's tiles of the n_out columns of a matmul's output, `group` tiles a pass: _cn
        the columns of the pass, _cm those that exist. The k-th tile the program owns (split.py's ownership, as
        own() tests it): aligned, the (k % J_p)-th of the program's J_p tiles in block k // J_p (tile j of a block
        of U columns is program j % P's); dealt round-robin, tile _pf + k * P. Names end in `group`."""
        self.tile_count(n_out)
        with self.w.block(f"for _g0 in range(0, _nt, {group}):"):
            self.tile_columns(n_out, group, "_g0", str(group))
            yield

    def tile_count(self, n_out, name=""):
        """writes _nt<name>: how many tiles of the n_out columns this program owns (owned_tiles)"""
        w, tile, units = self.w, self.split.tile, self.split.units
        if self.split.aligned:
            blocks = -(-n_out // units)
            w(f"_jp{name} = ({units // tile} - _pf + _P - 1) // _P   # this program's tiles in each block of {units} "
              "columns")
            w(f"_nt{name} = {blocks} * _jp{name}")
        else:
            w(f"_nt{name} = ({-(-n_out // tile)} - _pf + _P - 1) // _P   # this program's tiles, dealt round-robin")

    def tile_columns(self, n_out, group, g0, name, count=""):
        """writes _cn<name>, the columns of this program's tiles g0 .. g0 + group - 1 (owned_tiles), and _cm<name>,
        which of them exist, from tile_count(n_out, count)'s"""
        w, units, jp, nt = self.w, self.split.units, f"_jp{count}", f"_nt{count}"
        lanes = f"tl.arange(0, {group} * _BN)"
        w(f"_q{name} = {g0} + {lanes} // _BN   # the program's tile of each column")
        if self.split.aligned:
            w(f"_cn{name} = (_q{name} // {jp}) * {units} + (_pf + (_q{name} % {jp}) * _P) * _BN + {lanes} % _BN")
        else:
            w(f"_cn{name} = (_pf + _q{name} * _P) * _BN + {lanes} % _BN")
        w(f"_cm{name} = (_q{name} < {nt}) & (_cn{name} < {n_out})")

    def render_Pointwise(self, st):
        """One pass over feature tiles. A leaf of one feature in a wider region is read for every feature (its
        column `start + _cj * 0`); a destination of one feature sums over the tiles into _s<k> (per row), written
        after the pass."""
        w = self.w
        width = int(st.n)
        sums = [k for k, (d, _, _) in enumerate(st.outputs) if st.broadcast(d)]
        w(f"# fused region: {len(st.outputs)} output(s) of {width} features")
        a0 = reference(st)
        if a0 is None:   # a sum over the features: program 0 runs it all
            with w.block("if _pf == 0:"):
                self.region(st, width, sums, a0)
        else:
            self.region(st, width, sums, a0)

    def region(self, st, width, sums, a0):
        w = self.w
        for k in sums:
            w(f"_s{k} = tl.zeros((_BB,), dtype=tl.float32)")
        kept = {k: v for (r, k), v in self.tile_vars.items() if r == id(st)}   # (outputs kept in registers)
        for var in kept.values():
            w(f"{var} = tl.zeros((_BB, _BN), dtype=tl.float32)   # (this tile, for the partial products: joined)")
        onto = {k: var for r, k, var, _ in self.onto.values() if r == id(st)}
        with self.tiles(width, a0=a0):
            # an ended row's step writes zeros and adds nothing (kernel.py): its values selected out by _mv
            with w.block("if _MASKED:"):
                w("_mv = _m2 & _live[:, None]")
            with w.block("else:"):
                w("_mv = _m2")
            for i, (sym, v) in enumerate(st.leaves):
                if st.broadcast(v):
                    w(f"{sym.name} = {self.load(v.value, f'{v.start} + _cj * 0', '_m2', width)}")
                elif (id(st), i) in self.fused:   # (the matmul's tile in registers: fused_leaves)
                    s, b = self.fused[id(st), i]
                    w(f"{sym.name} = _g{s}_{b} if _RESIDENT else "
                      f"{self.load(v.value, f'{v.start} + _cj', '_m2', v.stop - v.start)}")
                elif (id(st), i) in self.prefetched:   # (loaded ahead)
                    w(f"{sym.name} = {self.prefetched[id(st), i].var} if _RESIDENT else "
                      f"{self.load(v.value, f'{v.start} + _cj', '_m2', v.stop - v.start)}")
                elif (id(st), i) in self.carried_leaves:   # (what the program stored the step before, in registers)
                    var, phase = self.carried_leaves[id(st), i]
                    self.kept_or_loaded(sym.name, var, f"(_i > _I0) & ((_i - 1 > _I0) | (_K0 <= {phase}))",
                                        self.load(v.value, f"{v.start} + _cj", "_m2", v.stop - v.start))
                elif (id(st), i) in self.forwarded:   # (an accumulation's sum in registers)
                    w(f"{sym.name} = {self.forwarded[id(st), i]} if _RESIDENT and not _MASKED else "
                      f"{self.load(v.value, f'{v.start} + _cj', '_m2', v.stop - v.start)}")
                else:
                    w(f"{sym.name} = {self.load(v.value, f'{v.start} + _cj', '_m2', v.stop - v.start)}")
            for sym, e in st.temps:
                w(f"{sym} = {tl_str(e)}")
            stored = {k for k, (_, _, acc) in enumerate(st.outputs) if not acc or (id(st), k) in self.stored}
            unmasked = {k for k in range(len(st.outputs)) if (id(st), k) in self.stored_unmasked} - stored
            if (stored | unmasked) - set(sums):
                w("_zero = tl.zeros((_BB, _BN), dtype=tl.float32)   # outputs of parameters alone still have rows")
            for k, (dest, e, acc) in enumerate(st.outputs):
                if k in sums:
                    w(f"_s{k} += tl.sum(tl.where(_mv, {tl_str(e)}, 0.0), axis=1)")
                    continue
                if self.buf[dest.value].role == Role.PARAM_GRAD:   # this program's partial sum over its rows
                    w(f"_g = tl.sum(tl.where(_mv, {tl_str(e)}, 0.0), axis=0)")
                    w(f"_pg = _part_{dest.value} + _pb * {self.n(dest.value)} + {dest.start} + _cj")
                    w(f"tl.store(_pg, tl.load(_pg, mask=_cj < {width}, other=0.0) + _g, mask=_cj < {width})")
                    continue
                w(f"_v{k} = {tl_str(e)}")   # (each where it is used: no more values alive at once than before)
                with w.block("if _MASKED:"):
                    w(f"_v{k} = tl.where(_mv, _v{k}, 0.0)")
                if k in unmasked and (id(st), k) in self.carry_kept:
                    self.add_unless_masked(dest.value, f"{dest.start} + _cj", f"_v{k}", "_m2", f"_o{k}",
                                           keep=self.carry_kept[id(st), k], why="for the next step: carried_regions")
                elif k in unmasked:
                    self.add_unless_masked(dest.value, f"{dest.start} + _cj", f"_v{k}", "_m2", f"_o{k}",
                                           keep=onto.get(k), why="for the operand's gradient: added_onto")
                elif k not in stored:
                    self.add(dest.value, f"{dest.start} + _cj", f"_v{k}", "_m2")
                else:   # (an assignment, or a sole `+=` into zeros: self.stored)
                    w(f"_o{k} = _zero + (_v{k})")
                    self.store(dest.value, f"{dest.start} + _cj", f"_o{k}", "_m2")
                    if k in kept:
                        w(f"{kept[k]} = _o{k}")
                    if (id(st), k) in self.carry_kept:   # (for the next step: carried_regions)
                        w(f"{self.carry_kept[id(st), k]} = _o{k}")
        # (variables of their own: a compiled loop wants each variable one shape, and _ga/_pg are tiles)
        for k in sums:
            dest, _, acc = st.outputs[k]
            if self.buf[dest.value].role == Role.PARAM_GRAD:
                w(f"_ps = _part_{dest.value} + _pb * {self.n(dest.value)} + {dest.start}")
                w(f"tl.store(_ps, tl.load(_ps) + tl.sum(tl.where(_rmask, _s{k}, 0.0), axis=0))")
            elif acc:
                w(f"_gs = _r_{dest.value} + {dest.start} + tl.arange(0, 1)[None, :]")
                w(f"tl.store(_gs, tl.load(_gs, mask=_rmask[:, None], other=0.0) + _s{k}[:, None], "
                  "mask=_rmask[:, None])")
            else:
                self.store(dest.value, f"{dest.start} + tl.arange(0, 1)", f"_s{k}[:, None]", "_rmask[:, None]")

    def render_OperandGrad(self, st):
        w, op = self.w, st.dest
        w(f"# {op.value}[{op.start}:{op.stop}] += {st.src} @ {st.weight}[:, {st.col_start}:{st.col_stop}]")
        width = int(op.stop - op.start)
        if id(st) in self.resident:
            s, n_src = self.order.index(st), self.n(st.src)
            with w.block("if _RESIDENT:   # the program's one tile, against its slice on chip"):
                if id(st) in self.transposed:
                    self.sum_partials(st, s)
                else:
                    w("_acc = tl.zeros((_BB, _BN), dtype=tl.float32)")
                    self.resident_dot("_acc", st.src, 0, n_src, self.slice_names[id(st), 0])
                self.grad_add(st, f"{op.start} + _ckr{s}", f"_rmask[:, None] & (_ckr{s} < {width})[None, :]",
                              self.carried.get(id(st)), self.onto.get(id(st)))
            with w.block("else:"):
                self.operand_grad_loop(st)
        else:
            self.operand_grad_loop(st)

    def partials(self, st):
        """(transposed_grads) before the barrier: this program's own columns of st's source times its rows of the
        weight, every column of the output, into its partial (slot _i % 2: the sums of step _i - 1 may still read
        the other)"""
        w, op, s = self.w, st.dest, self.order.index(st)
        K, group = int(op.stop - op.start), self.transposed[id(st)]
        w(f"# {op.value}[{op.start}:{op.stop}] += {st.src} @ {st.weight}[:, {st.col_start}:{st.col_stop}], transposed: "
          "this program's part, summed after the barrier")
        with w.block("if _RESIDENT:"):
            if id(st) in self.by_tile:   # (the region's tiles in registers, each in its two bfloat16 parts)
                for b in self.by_tile[id(st)]:
                    w(f"_dh{b} = _dg{s}_{b}.to(tl.bfloat16)")
                    w(f"_dl{b} = (_dg{s}_{b} - _dh{b}.to(tl.float32)).to(tl.bfloat16)")
            elif id(st) in self.joined:   # (the region's tiles in registers)
                tiles = [f"_dg{s}_{b}" if b in self.joined[id(st)] else "tl.zeros((_BB, _BN), dtype=tl.float32)"
                         for b in range(group)]
                joined = f"_join{group}({', '.join(tiles)})" if group > 1 else tiles[0]
                w(f"_dyp = {joined}")
            else:
                w(f"_dyp = {self.load(st.src, f'_cnp{s}', f'_rmask[:, None] & _cmp{s}[None, :]', tile=f'_cnp{s}')}")
            w(f"_pw = _pt{s} + (((_iw % 2) * tl.num_programs(0) + _pb) * _P + _pf) * _BB * {K} + "
              f"tl.arange(0, _BB)[:, None] * {K}")
            name = self.slice_names[id(st), 0]
            for c, (c0, width) in enumerate(chunks(K)):
                if c == 0:
                    w(f"_kc{width} = tl.arange(0, {width})")
                mask = f", mask=({c0} + _kc{width} < {K})[None, :]" if c0 + width > K else ""
                if id(st) in self.by_tile:
                    part = f"tl.zeros((_BB, {width}), dtype=tl.float32)"
                    for b in self.by_tile[id(st)]:
                        part = f"_pair_dot({part}, _dh{b}, _dl{b}, {name}_{c}_{b}, _BF16_DOT)"
                    w(f"tl.store(_pw + ({c0} + _kc{width})[None, :], {part}{mask})")
                else:
                    w(f"tl.store(_pw + ({c0} + _kc{width})[None, :], _split_dot(tl.zeros((_BB, {width}), "
                      f"dtype=tl.float32), _dyp, {name}_{c}, _BF16_DOT){mask})")
            w("tl.debug_barrier()")

    def sum_partials(self, st, s):
        """(transposed_grads) after the barrier: _acc, this program's tile of st's output, the sum of the P programs'
        partials in program order, one tile of each at a time. Unrolled over the most programs the host launches
        (P <= most_programs x shares, Host's _programs): the compiled code can issue every partial's load at once,
        one round trip through L2, where a loop over _P waited for each 16 programs' loads in turn. A tile a load:
        a sum over a block of 16 partials (tl.sum over its first axis) crossed warps, through shared memory, twelve
        block-wide barriers a step in the LSTM's backward at H=768, and its region's arithmetic ran twice (ptxas,
        sm_90: 1661 -> 1262 instructions a warp a step, 87 -> 36 barriers, MUFU 40 -> 20)"""
        w, K = self.w, int(st.dest.stop - st.dest.start)
        most = self.split.most_programs * self.split.shares
        w("_acc = tl.zeros((_BB, _BN), dtype=tl.float32)")
        w(f"_pr = _pt{s} + ((_iw % 2) * tl.num_programs(0) + _pb) * _P * _BB * {K} + "
          f"tl.arange(0, _BB)[:, None] * {K} + _ckr{s}[None, :]")
        with w.block(f"for _p in tl.static_range({most}):   # (_P <= {most})"):
            w(f"_acc += tl.load(_pr + _p * _BB * {K}, mask=(_ckr{s} * 0 + _p < _P)[None, :], other=0.0)")

    def operand_grad_loop(self, st):
        """an operand's gradient, its weights streamed from global memory (L2): the program's tiles in turn"""
        op = st.dest
        with self.owned_loop("_k0", int(op.stop - op.start), int(op.start)):
            self.operand_grad_tile(st, "0", str(self.n(st.src)))
            self.grad_add(st, f"{op.start} + _ck", f"_rmask[:, None] & (_ck < {op.stop - op.start})[None, :]")

    def grad_add(self, st, cols, mask, keep=None, onto=None):
        """an operand's gradient's tile _acc into its output: `+=`, or without lengths a store where the step
        zeroed it and nothing else writes it (stored_unmasked) or a store of _acc plus what the one region before
        stored there, in registers (`onto`: added_onto's entry); what it stores then also in the variable `keep`"""
        w = self.w
        if onto is not None:
            _, _, var, phase = onto
            with w.block("if _MASKED:   # (ended rows may have passed a cotangent into it)"):
                self.add(st.dest.value, cols, "_acc", mask)
            with w.block("else:   # (it holds what the region stored)"):
                self.kept_or_loaded("_was", var, f"(_i > _I0) | (_K0 <= {phase})",
                                    f"tl.load(_r_{st.dest.value} + ({cols})[None, :], mask={mask}, other=0.0)", False)
                w("_og = _was + _acc")
                self.store(st.dest.value, cols, "_og", mask)
                if keep:
                    w(f"{keep} = _og   # (for the next step: carried_sums)")
            return
        if (id(st), 0) not in self.stored_unmasked:
            self.add(st.dest.value, cols, "_acc", mask)
            return
        w("_zero = tl.zeros((_BB, _BN), dtype=tl.float32)")
        self.add_unless_masked(st.dest.value, cols, "_acc", mask, "_og", keep=keep)

    def render_SplitReduction(self, sr):
        """program _pf: the tiles _pf mod _nt of the output (_nt = N, or _P when fewer), from share _pf div _nt of
        the reduction's columns, added atomically (as many shares as _P holds whole sets of _nt programs)"""
        w, st = self.w, sr.st
        op, n_src, K = st.dest, self.n(st.src), int(st.dest.stop - st.dest.start)
        w(f"# {op.value}[{op.start}:{op.stop}] += {st.src} @ {st.weight}[:, {st.col_start}:{st.col_stop}], the "
          f"reduction over {st.src}'s columns shared out")
        w(f"_nt = tl.minimum(_P, {self.split.most_programs})")
        w("_s, _ns = _pf // _nt, _P // _nt   # this program's share, of _ns")
        w(f"_kc = tl.cdiv(tl.cdiv({n_src}, _ns), _BKG) * _BKG")
        with w.block(f"for _k0 in range((_pf % _nt) * _BN + (_s >= _ns) * {K}, {K}, _nt * _BN):"):
            self.operand_grad_tile(st, "_s * _kc", f"tl.minimum(_s * _kc + _kc, {n_src})")
            w(f"tl.atomic_add(_r_{op.value} + ({op.start} + _ck)[None, :], _acc, "
              f"mask=_rmask[:, None] & (_ck < {K})[None, :])")

    def operand_grad_tile(self, st, n_start, n_stop):
        """_acc: the tile _k0 of st's output from the src columns n_start .. n_stop"""
        w, n_src, K = self.w, self.n(st.src), int(st.dest.stop - st.dest.start)
        ldw = int(self.buf[st.weight].size[1])
        w("_ck = _k0 + tl.arange(0, _BN)")
        w("_acc = tl.zeros((_BB, _BN), dtype=tl.float32)")
        with w.block(f"for _n0 in range({n_start}, {n_stop}, _BKG):"):
            w("_cn = _n0 + tl.arange(0, _BKG)")
            w(f"_dy = {self.load(st.src, '_cn', f'_rmask[:, None] & (_cn < {n_src})[None, :]', tile='_cn')}")
            w(f"_wt = {self.weight(st.weight)} + _cn[:, None] * {ldw} + ({st.col_start} + _ck)[None, :], "
              f"mask=(_cn < {n_src})[:, None] & (_ck < {K})[None, :], other=0.0){self.to_float(st.weight)}")
            w("_acc += tl.dot(_dy, _wt, input_precision=_DOT)")

    def on_ended_rows(self, why, pairs, body):
        """With lengths (_MASKED), body(a, b) over the feature tiles of each pair, masked (_m2) to the rows whose
        sequence has ended by step _t."""
        w = self.w
        with w.block(f"if _MASKED:   # {why}"):
            w("_done = ~_live")
            for a, b in pairs:
                with self.tiles(self.n(a), "_rmask[:, None] & _done[:, None]"):
                    body(a, b)

    def render_HoldEnded(self, st):
        def hold(old, new):
            self.w(f"_old = {self.load(old, '_cj', '_m2')}")
            self.store(new, "_cj", "_old", "_m2", parts=False)   # (only with lengths: no parts, split_at_write)
        self.on_ended_rows("rows past their own length keep their state", st.pairs, hold)

    def render_PassEnded(self, st):
        def pass_through(d_in, d_out):
            self.w(f"_dn = {self.load(d_out, '_cj', '_m2')}")
            self.store(d_in, "_cj", "_dn", "_m2")
            self.store(d_out, "_cj", "tl.zeros((_BB, _BN), dtype=tl.float32)", "_m2")
        self.on_ended_rows("ended rows: the carried cotangent passes to the previous state, the step sees none",
                           st.pairs, pass_through)

    def render_Accumulate(self, st):
        var = f"_fw_{st.dest}"
        if var not in self.forwarded.values():
            with self.tiles(self.n(st.dest)):
                self.add(st.dest, "_cj", self.load(st.src, "_cj", "_m2"), "_m2")
            return
        w = self.w
        w(f"{var} = tl.zeros((_BB, _BN), dtype=tl.float32)   # (the sum, for the region after: forwarded)")
        carried = [v for v in self.carried.values() if v == f"_cr_{self.out_of.get(st.dest)}"]
        with self.tiles(self.n(st.dest)):
            w(f"_ga = _r_{st.dest} + (_cj)[None, :]")
            if carried:   # (what this program stored there the step before, still in registers: carried_sums)
                # (the sums are the step's last phase: a launch that runs this step ran them for the step before)
                self.kept_or_loaded("_was", carried[0], "_i > _I0", "tl.load(_ga, mask=_m2, other=0.0)")
            else:
                w("_was = tl.load(_ga, mask=_m2, other=0.0)")
            src = self.load(st.src, "_cj", "_m2")
            if (id(st), None) in self.prefetched:   # (loaded ahead)
                src = f"({self.prefetched[id(st), None].var} if _RESIDENT else {src})"
            w(f"{var} = _was + {src}")
            w(f"tl.store(_ga, {var}, mask=_m2)")


class Host(ScanRenderer):
    """The host function of a scan: torch code before and after, the kernel launch for the loop."""

    MM = "_mm"   # (symcell.backends.triton._mm: a 16-bit module's GEMMs in its dtype on a GPU's tensor cores)
    SKIPS = True   # (the GEMMs after the loop nobody needs left out: a first layer's d_x, a frozen weight's gradient)

    def __init__(self, program, scan, w, kernel):
        super().__init__(program, scan, w)
        self.kernel = kernel

    def loop(self):
        w, scan, like = self.w, self.scan, self.like
        w(f"_grid = triton.cdiv(_B, {BB})   # batch tiles")
        for b in self.kernel.used:
            if b.role == Role.STEP:   # one (B, n) block unless kept: then the step's row block of a sequence
                rows = {Keep.NEVER: "1", Keep.SAVE: "(_T if _save else 1)", Keep.ALWAYS: "_T"}[b.keep]
                stride = {Keep.NEVER: "0", Keep.SAVE: f"(_B * {b.size} if _save else 0)", Keep.ALWAYS: f"_B * {b.size}"}
                w(f"{seq(b.name)} = {like}.new_empty(({rows}, _B, {b.size})); _{b.name}_ts = {stride[b.keep]}")
            elif b.role == Role.PARAM_GRAD:   # one partial sum per program, summed after the kernel
                w(f"_{b.name}_part = {like}.new_zeros((_grid, {b.size[0]}))")
        for cin, cout in scan.carries:
            b = scan.buffer(cout)
            w(f"_{cout}_pp = {like}.new_empty((2, _B, {b.size})); _{cout}_pp[0] = {init(cin)}   # the carry's two slots")
            if b.keep == Keep.ALWAYS:
                w(f"{seq(cout)} = {like}.new_empty((_T, _B, {b.size})); _{cout}_ts = _B * {b.size}")
            elif b.keep == Keep.SAVE:
                w(f"{seq(cout)} = {like}.new_empty(((_T if _save else 1), _B, {b.size})); "
                  f"_{cout}_ts = _B * {b.size} if _save else 0")
        w("if _T > 0:")
        with w.block():
            w(f"_len = _lengths if _lengths is not None else {like}.new_zeros((1,), dtype=torch.int64)")
            for mm in scan.step:
                if id(mm) in self.kernel.hoisted:
                    pre, terms = self.kernel.hoisted[id(mm)]
                    rows = {t: f"{seq(t.operand.value)}.reshape(_T * _B, {self.size[t.operand.value]})" for t in terms}
                    w(f"{pre} = " + " + ".join(
                        f"{self.MM}({self.view(rows[t], t.operand)}, "
                        f"{self.columns(t.weight, t.col_start, t.col_stop)}.t())"
                        for t in terms) + f"   # the terms of {mm.out} on sequences, every step at once")
            for v in sorted(self.kernel.weights16):
                w(f"_{v}_w16 = _low({v})   # a 16-bit module's weights in its dtype (exact), else as they are")
            args = ", ".join(h for _, h in self.kernel.args())
            split = self.kernel.split
            most = split.most_programs
            w(f"_P = _programs({like}, {most * split.shares}, _grid{f', {most}' if split.shares > 1 else ''})   "
              "# programs splitting a batch tile's features")
            w(f"_sync = {like}.new_zeros((_grid,), dtype=torch.int64)   # a barrier counter a batch tile")
            resident = "False"
            if self.kernel.resident:
                weights = sorted({s[0] for slices in self.kernel.resident.values() for s in slices})
                nbytes = self.kernel.resident_bytes
                w(f"_resident = _resident_slices(_P, {most}, {nbytes}, "
                  f"{', '.join(f'_{v}_w16' for v in weights)})   # {nbytes} bytes on chip a program")
                resident = "_resident"
                for cout in self.kernel.split_parts:   # (slot 0: the initial state's parts)
                    w(f"_{cout}_ps = _parts(_{cout}_pp[0]) if _resident else {like}.new_empty((1,))   "
                      "# the carry's bfloat16 parts, two slots")
                for s, st in enumerate(self.kernel.order):
                    if id(st) in self.kernel.transposed:   # (two slots: render.StepKernel.partials)
                        K = int(st.dest.stop - st.dest.start)
                        w(f"_{st.dest.value}_pt{s} = {like}.new_empty((2, _grid, _P, {BB}, {K}) if _resident else (1,))"
                          f"   # each program's partial {st.dest.value}, transposed")
            w(f"_launch(_{scan.name}_kernel, (_grid, _P), _T, _B, {like}, {args}, _len, _sync, _phases="
              f"{len(split.phases)}, _first_barrier={split.first_barrier}, _BB={BB}, _BN={split.tile}, "
              f"_MASKED=_lengths is not None, _WIDE=_wide({args}), _RESIDENT={resident}, "
              f"num_warps={num_warps(scan.name)})")
        for b in self.kernel.used:
            if b.role == Role.PARAM_GRAD:
                w(f"{b.name} += _{b.name}_part.sum(0)")
        for cin, cout in scan.carries:
            w(f"{cin} = _{cout}_pp[_T % 2].clone()   # the carry after the last step")


def render(program, scans, w):
    params = [b.name for b in program.forward.buffers if b.role == Role.PARAM]   # (not a tangent's)
    kernels = [StepKernel(scan, w, params) for scan in scans]
    if any(k.resident for k in kernels):
        for line in SPLIT_DOT.splitlines():
            w(line)
        w()
    if any(k.fused for k in kernels):
        for line in TILES.splitlines():
            w(line)
        w()
    if any(k.joined for k in kernels):
        for line in JOINS.splitlines():
            w(line)
        w()
    start = len(w.lines)
    for k in kernels:
        k.kernel()
        w()
    # the pointwise functions' helpers (functions.py) that the kernels call, ahead of them
    called = "\n".join(w.lines[start:])
    w.lines[start:start] = [line for f in FUNCTIONS if f.triton_helper and f.triton.split("(")[0] + "(" in called
                            for line in (*f.triton_helper.splitlines(), "", "")]
    for scan, k in zip(scans, kernels):
        Host(program, scan, w, k).function()
        w()
    return w.text()

