"""The split's plans are race-free, checked column by column without running a kernel.

For every zoo cell's four scans (forward, backward and their tangents), feature tiles of 1 and 2 (and 16 on
larger cells) and every number of programs P the plan allows, a step is replayed four times as the renderer lays it out: which program runs
which tile of each statement (the same rule as render.py's `own`), and which columns of which memory each tile
reads and writes (a carry's slot by the step's parity, a sequence's row block by the step, a kept-or-not STEP
buffer as one block for all steps, the worst case). Two programs touching one column between two grid barriers,
one of them writing, is a race. The interpreter's runs (test_triton_kernels.py) run programs one after another
and so catch a program reading too early, not one writing over what another still reads; this catches both, for
every P. The control: a plan with a barrier taken out has races.
"""
import importlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from symcell import backends, pipeline, registry
from symcell.backends.triton import split
from symcell.cells import SLSTM, GRUCell, LayerNormLSTM, LSTMCell
from symcell.kernel import Accumulate, HoldEnded, OperandGrad, PassEnded, Pointwise, Role
from symcell.schedule import MatMul
from fuzz import define, programs
from test_triton_kernels import without_barriers_between_phases, without_the_barrier_at_the_steps_start
from zoo import CASES

RENDER = importlib.import_module("symcell.backends.triton.render")


def columns(kernel, st, P, i, T):
    """[(program, memory, column, writes)] of statement `st` at step i with P programs, as rendered"""
    scan, s, buf = kernel.scan, kernel.split, kernel.buf
    out_of = dict(scan.carries)
    t = T - 1 - i if scan.reverse else i

    def memory(name):
        b = buf[name]
        return {Role.CARRY_IN: lambda: ("slot", out_of.get(name), i % 2),
                Role.CARRY_OUT: lambda: ("slot", name, (i + 1) % 2),
                Role.STEP: lambda: ("step", name),
                Role.SEQ: lambda: ("seq", name, t),
                Role.PREV: lambda: ("seq", b.seq, t - 1) if t > 0 else None,
                Role.PARAM_GRAD: lambda: ("part", name)}.get(b.role, lambda: None)()

    def owner(a0, j):
        if a0 is None:
            return 0
        return ((a0 + j) % s.units) // s.tile % P if s.aligned else ((a0 + j) // s.tile) % P

    events = []

    def touch(p, name, cols, write, atomic=False):
        m = memory(name)
        if m is not None:
            events.extend((p, m, c, write, atomic) for c in cols)

    def tile(start, j, width):
        return range(start + j, start + min(j + s.tile, width))

    def tiles(width, a0, body):
        for j in range(0, width, s.tile):
            body(owner(a0, j), j)

    if isinstance(st, split.Zero):
        for n in st.names:
            tiles(kernel.n(n), 0, lambda p, j, n=n: touch(p, n, tile(0, j, kernel.n(n)), True))
    elif isinstance(st, MatMul):
        _, hoisted = kernel.hoisted.get(id(st), (None, ()))
        n = kernel.n(st.out)

        def matmul(p, j):
            for term in (t for t in st.terms if t not in hoisted):
                touch(p, term.operand.value, range(int(term.operand.start), int(term.operand.stop)), False)
            touch(p, st.out, tile(0, j, n), False)   # (read when it accumulates: a superset is safe)
            touch(p, st.out, tile(0, j, n), True)
        tiles(n, 0, matmul)
    elif isinstance(st, Pointwise):
        a0, width = split.reference(st), int(st.n)

        def region(p, j):
            for _, v in st.leaves:
                touch(p, v.value, [int(v.start)] if st.broadcast(v) else tile(int(v.start), j, width), False)
            for d, _, _ in st.outputs:
                cols = [int(d.start)] if st.broadcast(d) else tile(int(d.start), j, width)
                touch(p, d.value, cols, False)
                touch(p, d.value, cols, True)
        tiles(width, a0, region)
    elif isinstance(st, OperandGrad):
        K, a0 = int(st.dest.stop - st.dest.start), int(st.dest.start)

        def operand_grad(p, j):
            touch(p, st.src, range(kernel.n(st.src)), False)
            touch(p, st.dest.value, tile(a0, j, K), False)
            touch(p, st.dest.value, tile(a0, j, K), True)
        tiles(K, a0, operand_grad)
    elif isinstance(st, split.SplitReduction):   # as render_SplitReduction deals it out: atomic adds
        g = st.st
        K, a0, nt = int(g.dest.stop - g.dest.start), int(g.dest.start), min(P, s.most_programs)
        for p in range(nt * (P // nt)):
            for j in range((p % nt) * s.tile, K, nt * s.tile):
                touch(p, g.src, range(kernel.n(g.src)), False)   # (its share of the columns: all, a superset)
                touch(p, g.dest.value, tile(a0, j, K), True, atomic=True)
    elif isinstance(st, HoldEnded):   # new = old
        for old, new in st.pairs:
            n = kernel.n(old)
            tiles(n, 0, lambda p, j, old=old, new=new, n=n: [touch(p, old, tile(0, j, n), False),
                                                              touch(p, new, tile(0, j, n), True)])
    elif isinstance(st, PassEnded):   # d_in = d_out, d_out = 0
        for d_in, d_out in st.pairs:
            n = kernel.n(d_in)
            tiles(n, 0, lambda p, j, d_in=d_in, d_out=d_out, n=n: [touch(p, d_out, tile(0, j, n), False),
                                                                    touch(p, d_in, tile(0, j, n), True),
                                                                    touch(p, d_out, tile(0, j, n), True)])
    elif isinstance(st, Accumulate):
        n = kernel.n(st.dest)
        tiles(n, 0, lambda p, j: [touch(p, st.src, tile(0, j, n), False), touch(p, st.dest, tile(0, j, n), False),
                                  touch(p, st.dest, tile(0, j, n), True)])
    else:
        raise TypeError(st)
    return events


def races(kernel, P, T=4):
    """the first few (step, phase, statement, memory, column) where two programs meet between barriers"""
    s, found, seen, epoch = kernel.split, [], {}, 0
    for i in range(T):
        for k, phase in enumerate(s.phases):
            epoch += k > 0 or s.first_barrier
            for st in phase:
                for p, m, c, write, atomic in columns(kernel, st, P, i, T):
                    for p2, write2, atomic2, epoch2 in seen.get((m, c), ()):
                        if epoch2 == epoch and p2 != p and (write or write2) and not (atomic and atomic2):
                            found.append((i, k, type(st).__name__, m, c))
                    seen.setdefault((m, c), []).append((p, write, atomic, epoch))
    return found[:3]


def scans_of(cell, second=True):
    h, dims, _ = registry.parse(cell._kernel_key(torch.device("cpu")))
    triton = backends.get("triton")   # the program as that backend runs it (its passes applied)
    program = pipeline.backend_program(registry.lowered(h, dims), triton)
    return [program.forward, program.backward, *(registry.second_order(h, dims, triton) if second else ())]


def program_counts(s):
    """every P the host may launch a plan with (_programs): up to one a tile, then whole sets of tiles"""
    return [*range(2, s.most_programs + 1), *(s.most_programs * k for k in range(2, s.shares + 1))]


def check(cell, tiles, monkeypatch):
    checked = 0
    for tile in tiles:
        monkeypatch.setattr(RENDER, "TILE", tile)
        for scan in scans_of(cell):
            kernel = RENDER.StepKernel(scan, None)
            for P in program_counts(kernel.split):
                assert not races(kernel, P), (scan.name, tile, P, races(kernel, P))
                checked += 1
    return checked


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_two_programs_meet_between_barriers_on_the_zoo(name, monkeypatch):
    cell = CASES[name][0](backend="reference")
    checked = check(cell, (1, 2), monkeypatch)
    assert checked or name == "LSTM-proj", "no split to check"   # (h of 2 and c of 5 share no unit)


def test_no_two_programs_meet_between_barriers_at_the_gpus_tile(monkeypatch):
    """16 features a tile: aligned (H = 48, 32), round-robin (H = 40), sums over features, heads"""
    for cell in (LSTMCell(8, 48, backend="reference"), GRUCell(8, 40, backend="reference"),
                 LayerNormLSTM(8, 32, backend="reference"), SLSTM(8, 32, num_heads=2, backend="reference")):
        assert check(cell, (16,), monkeypatch)


def test_no_two_programs_meet_between_barriers_on_random_cells(monkeypatch):
    """the fuzzer's random cells (tests/fuzz.py), forward and backward: at 1 feature a tile with H = 4 (aligned,
    up to 4 programs) and at 2 with H = 3 (round-robin). (Few of them have an in-loop operand gradient of whole
    units to share: the shared plans are replayed on the zoo, below.)"""
    checked, split_ones = [], []

    @settings(max_examples=60, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(programs(max_ops=8))
    def replay(prog):
        Cell = define(prog, f"SplitFuzz{len(checked)}")
        for tile, H in ((1, 4), (2, 3)):
            monkeypatch.setattr(RENDER, "TILE", tile)
            cell = Cell(**{d: v for d, v in {"I": 3, "H": H}.items() if d in Cell.spec.ir.dims}, backend="reference")
            for scan in scans_of(cell, second=False):
                kernel = RENDER.StepKernel(scan, None)
                for P in program_counts(kernel.split):
                    assert not races(kernel, P), (str(prog), scan.name, tile, P, races(kernel, P))
                    split_ones.append(prog)
        checked.append(prog)
    replay()
    assert len(checked) >= 54 and len({id(p) for p in split_ones}) >= 40, (len(checked), len(split_ones))


@pytest.mark.parametrize("name", ["GRU", "LSTM", "LayerNormLSTM", "PeepholeLSTM", "TimeStep"])
def test_no_two_programs_meet_between_barriers_with_reductions_shared_out(name, monkeypatch):
    """REDUCTION_SHARES = 3: the operands' gradients' tiles shared by up to 3 programs (atomic adds, which may
    meet); every other access as before. The backward takes one barrier a step more, before the next step reads
    d_h; the control: without it, races (the next step reads d_h while its shares are still being added)."""
    monkeypatch.setattr(RENDER, "TILE", 1)
    cell = CASES[name][0](backend="reference")
    alone = RENDER.StepKernel(scans_of(cell, second=False)[1], None).split.barriers
    monkeypatch.setattr(RENDER, "REDUCTION_SHARES", 3)
    assert check(cell, (1, 2), monkeypatch)
    monkeypatch.setattr(RENDER, "TILE", 1)
    kernel = RENDER.StepKernel(scans_of(cell, second=False)[1], None)
    s, P = kernel.split, kernel.split.most_programs * 2
    assert s.shares == 3 and s.barriers == alone + 1 and not races(kernel, P)
    ours = [k for k in range(len(s.phases) - 1) if not races(kernel, P) and races_without(kernel, k, P)]
    assert ours, "no barrier of the shared plan is needed"


def races_without(kernel, k, P):
    """races(kernel, P) with phases k and k + 1 of its plan merged (the barrier between them left out)"""
    s = kernel.split
    phases = s.phases[:k] + (s.phases[k] + s.phases[k + 1],) + s.phases[k + 2:]
    kernel.split = split.Split(s.units, s.tile, phases, s.first_barrier, s.shares)
    try:
        return races(kernel, P)
    finally:
        kernel.split = s


@pytest.mark.parametrize("drop,scan", [(without_barriers_between_phases, "backward"),
                                       (without_the_barrier_at_the_steps_start, "forward")])
def test_a_plan_short_of_a_barrier_has_races(drop, scan, monkeypatch):
    monkeypatch.setattr(RENDER, "TILE", 2)
    forward, backward = scans_of(CASES["LSTM"][0](backend="reference"))[:2]
    kernel = RENDER.StepKernel(backward if scan == "backward" else forward, None)
    kernel.split = drop(kernel.split)
    assert races(kernel, 2)
