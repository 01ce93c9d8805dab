"""The Triton kernels' variants and launches: features split over programs that meet at grid barriers, the
64-bit variant for buffers of 2^31 elements or more, one compile whatever T and B, a model on a device other than
the current one. (The kernels' values and gradients on every cell: test_backends.py and the zoo, through the
interpreter without a GPU; compiled for sm_80/sm_90 without one: test_triton_aot.py.)"""
import collections
import importlib
import re

import pytest
import torch

from symcell import cat, define, mean, pipeline, registry, tanh
from symcell.backends import triton as triton_backend
from symcell.backends.triton import split
from symcell.cells import LLTM, LSTM, SLSTM, GRUCell, LayerNormLSTM, LSTMCell
from zoo import CASES, outputs_and_grads, random_inputs, rel_err

RENDER = importlib.import_module("symcell.backends.triton.render")

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"   # (CPU tensors: Triton's interpreter)


@pytest.mark.parametrize("backend", ["triton"])
@pytest.mark.parametrize("name", ["LSTM", "PeepholeLSTM"])
def test_the_64_bit_variant_is_exact(monkeypatch, backend, name):
    """Buffers of 2^31 elements need tens of GiB; the variant they get runs here on every size (WIDE_AT = 0):
    forward, backward and lengths against the reference backend"""
    monkeypatch.setattr(triton_backend, "WIDE_AT", 0)
    factory = CASES[name][0]
    torch.manual_seed(0)
    cell = factory(backend=backend).to(DEVICE)
    ref = factory(backend="reference").to(DEVICE)
    ref.load_state_dict(cell.state_dict())
    x = torch.randn(6, 5, cell.dims["I"], device=DEVICE, requires_grad=True)
    lengths = torch.tensor([6, 2, 5, 1, 6])
    for kw in ({}, {"lengths": lengths}):
        y, r = cell(x, **kw)[0], ref(x, **kw)[0]
        torch.testing.assert_close(y, r, rtol=1e-4, atol=1e-5)
        g = torch.autograd.grad(y.square().sum(), [x, *cell.parameters()])
        gr = torch.autograd.grad(r.square().sum(), [x, *ref.parameters()])
        for a, b in zip(g, gr):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def compiled_variants(cell, device):
    """the compiled variants of each triton kernel of a cell, or of an LSTM/GRU's first layer"""
    key = cell._bindings[0].kernel_key(device) if hasattr(cell, "_bindings") else cell._kernel_key(device)
    kernel = registry.kernel_for(key)
    return {name: len(kernel._entries[name].jit.device_caches[device.index][0]) for name in ("forward", "backward")}


@pytest.mark.triton
@pytest.mark.gpu
@needs_gpu
def test_the_kernels_compile_once_whatever_t_and_b():
    """Triton specialises integer arguments equal to 1 or divisible by 16 unless told not to: T, B and the strides
    are run-time values, so new lengths and batch sizes reuse the compiled kernels"""
    dev = torch.device("cuda", torch.cuda.current_device())
    for H in (16, 48):   # one program a batch tile; three, meeting at grid barriers (a cooperative launch)
        cell = LSTM(8, H, backend="triton").to(dev)
        ref = LSTM(8, H, backend="reference").to(dev)
        ref.load_state_dict(cell.state_dict())
        counts = None
        for T, B in [(16, 16), (1, 1), (5, 3), (33, 32), (2, 17)]:
            x = torch.randn(T, B, 8, device=dev)
            y, _ = cell(x)
            y.sum().backward()
            torch.testing.assert_close(y, ref(x)[0], rtol=1e-4, atol=1e-5)
            counts = counts or compiled_variants(cell, dev)
            assert compiled_variants(cell, dev) == counts, (H, T, B)


@pytest.mark.triton
@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_model_on_another_device_than_the_current_one():
    torch.cuda.set_device(0)
    cell = LSTM(8, 16, backend="triton").to("cuda:1")
    ref = LSTM(8, 16, backend="reference")
    ref.load_state_dict({k: v.cpu() for k, v in cell.state_dict().items()})
    x = torch.randn(7, 5, 8)
    y, (h, c) = cell(x.to("cuda:1"))
    assert y.device == torch.device("cuda:1")
    torch.testing.assert_close(y.cpu(), ref(x)[0], rtol=1e-4, atol=1e-5)


# --- the split: P programs a batch tile, each owning some hidden units of every buffer (split.py) ------------

def plan_of(cell, scan, tile):
    """the Split of a cell's scan at a feature tile, from its lowered program (nothing is built)"""
    h, dims, _ = registry.parse(cell._kernel_key(torch.device("cpu")))
    program = pipeline.backend_program(registry.lowered(h, dims), triton_backend.TritonBackend())
    monkey = RENDER.TILE
    try:
        RENDER.TILE = tile
        return RENDER.StepKernel(getattr(program, scan), None).split
    finally:
        RENDER.TILE = monkey


def test_an_lstm_and_a_gru_step_wait_once_a_step_each_way():
    """A program owns the same hidden units of every buffer, so the four gates of its units are its own: the
    forward waits only for h_{t-1} (all units, for the matmul), the backward only for d_gates (all of them, for
    d_h's matmul)"""
    for cell in (LSTMCell(48, 48, backend="reference"), GRUCell(48, 48, backend="reference")):
        for scan in ("forward", "backward"):
            s = plan_of(cell, scan, 16)
            assert (s.units, s.aligned, s.most_programs, s.barriers) == (48, True, 3, 1), (cell, scan, s)
    s = plan_of(LSTMCell(48, 48, backend="reference"), "forward", 16)
    assert [[type(st).__name__ for st in p] for p in s.phases] == [["MatMul", "Pointwise", "HoldEnded"]]
    assert s.first_barrier   # before the matmul: h_{t-1}, written by every program at the step before


def test_units_that_are_no_multiple_of_the_tile_are_dealt_round_robin():
    """H = 40 with 16-feature tiles: no access is aligned, so a barrier wherever a value crosses statements"""
    s = plan_of(LSTMCell(8, 40, backend="reference"), "forward", 16)
    assert (s.units, s.aligned, s.most_programs) == (40, False, 3)
    # h_{t-1} before the matmul, the gates before the pointwise region, h_t and c_t before HoldEnded rewrites them
    assert s.barriers == 3


def test_a_step_starts_without_a_barrier_when_its_last_phase_left_nothing_to_wait_for():
    """The sLSTM's backward: what its last phase leaves pending conflicts with nothing in its first phase, though
    the step's earlier phases would; the cut is found from what a step's end really leaves pending"""
    s = plan_of(SLSTM(8, 32, num_heads=2, backend="reference"), "backward", 16)
    assert (len(s.phases), s.first_barrier, s.barriers) == (3, False, 2), s


def test_a_sum_over_features_runs_on_one_program():
    """a layer norm's mean and variance: the region that sums runs whole on program 0 (its reference is None),
    and whoever reads the sums waits"""
    cell = LayerNormLSTM(8, 32, backend="reference")
    s = plan_of(cell, "forward", 16)
    sums = [st for p in s.phases for st in p if split.reference(st) is None]
    assert sums and s.barriers >= 2, s


def test_the_interpreter_launches_each_stretch_between_two_barriers():
    """((step, phase) first, (step, phase) last) of each launch: a barrier before every phase but the first, and
    before the first when the plan says so; with none at a step's start, a stretch runs on into the next step"""
    stretches = triton_backend._stretches
    assert stretches(3, 1, True) == [((0, 0), (0, 0)), ((1, 0), (1, 0)), ((2, 0), (2, 0))]    # an LSTM forward
    assert stretches(3, 2, False) == [((0, 0), (0, 0)), ((0, 1), (1, 0)), ((1, 1), (2, 0)), ((2, 1), (2, 1))]
    assert stretches(2, 2, True) == [((0, 0), (0, 0)), ((0, 1), (0, 1)), ((1, 0), (1, 0)), ((1, 1), (1, 1))]
    assert stretches(3, 1, False) == [((0, 0), (2, 0))]   # no barrier at all: one launch, as on a GPU
    assert stretches(0, 2, True) == []


@pytest.fixture
def split_kernels(monkeypatch):
    """use(tile): fresh triton kernels with `tile` features a tile; returns the list each launch appends its P to"""
    def use(tile):
        monkeypatch.setattr(RENDER, "TILE", tile)
        monkeypatch.setattr(registry, "_KERNELS", collections.OrderedDict())
        launches, real = [], triton_backend._launch

        def spy(kernel, grid, *args, **meta):
            launches.append(grid[1])
            return real(kernel, grid, *args, **meta)
        monkeypatch.setattr(triton_backend, "_launch", spy)
        return launches
    return use


def check_against_reference(cell, ref, T, B, lengths=None, seed=0):
    """values and first-order gradients of a scan (float32) against the reference backend's"""
    xs, states = random_inputs(cell, T, B, dtype=torch.float32, seed=seed)
    xs, states = ([t.detach().to(DEVICE).requires_grad_() for t in ts] for ts in (xs, states))
    outs, grads, cots = outputs_and_grads(cell, xs, states, lengths=lengths)
    outs_ref, grads_ref, _ = outputs_and_grads(ref, xs, states, cots, lengths=lengths)
    for a, b in zip((*outs, *grads), (*outs_ref, *grads_ref)):
        assert rel_err(a, b) < 1e-4, (cell, rel_err(a, b))


# cells whose units are one tile of 2 (Readout: h and its readout of 2 features) or whose states share no unit
# (LSTM-proj: h of 2, c of 5): one program a batch tile
NOT_SPLIT = {"Readout", "LSTM-proj"}
# lengths add the same two statements to every cell (HoldEnded, PassEnded): run here on an aligned plan and a
# round-robin one (the 16-feature test below adds sums over features); test_split_races.py replays every plan
WITH_LENGTHS = {"LSTM", "LLTM"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a tile of 2 features is the interpreter's (tl.dot on a GPU "
                                                      "wants 16); test_the_split_at_16_features_... runs there")
@pytest.mark.parametrize("backend", ["triton"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_zoo_cell_split_over_programs_is_exact(split_kernels, backend, name):
    """Tiles of 2 features split the zoo's 3 to 5 hidden units over 2 or 3 programs: every statement kind, the
    sums over features, heads, several states, lengths; exact against the reference backend"""
    launches = split_kernels(2)
    torch.manual_seed(0)
    cell, ref = CASES[name][0](backend=backend), CASES[name][0](backend="reference")
    ref.load_state_dict(cell.state_dict())
    check_against_reference(cell, ref, T=4, B=3)
    if name in WITH_LENGTHS:
        check_against_reference(cell, ref, T=4, B=3, lengths=torch.tensor([4, 1, 3]), seed=1)
    assert max(launches) == 1 if name in NOT_SPLIT else max(launches) > 1, launches


@pytest.mark.parametrize("backend", ["triton"])
def test_the_split_at_16_features_a_tile_is_exact(split_kernels, monkeypatch, backend):
    """The GPU's tile: H = 48 is 3 programs a batch tile (the LSTM with B = 17: two batch tiles, 6 programs),
    H = 40 the round-robin fallback (a GRU), the layer-norm LSTM (sums over features) at H = 32"""
    launches = split_kernels(16)
    torch.manual_seed(0)
    for make, B in ((lambda b: LSTMCell(8, 48, backend=b), 17), (lambda b: GRUCell(8, 40, backend=b), 5),
                    (lambda b: LayerNormLSTM(8, 32, backend=b), 5)):
        cell, ref = make(backend).to(DEVICE), make("reference").to(DEVICE)
        ref.load_state_dict(cell.state_dict())
        check_against_reference(cell, ref, T=3, B=B, lengths=torch.tensor([3, 1, 2, 3, 2] * 3 + [3, 1])[:B])
    assert set(launches) == {2, 3}, launches
    # capped at one program a batch tile (benchmarks/bench_gpu.py times the kernels so): the same kernels, no split
    monkeypatch.setattr(triton_backend, "PROGRAMS_AT_MOST", 1)
    launches.clear()
    check_against_reference(cell, ref, T=3, B=5)
    assert set(launches) == {1}, launches


# cells whose backward shares out an operand's gradient (REDUCTION_SHARES): a matmul on a state (LSTM, GRU),
# with peepholes, with a sum over features (LayerNormLSTM), with the step number (TimeStep)
SHARED = ["GRU", "LSTM", "LayerNormLSTM", "PeepholeLSTM", "TimeStep"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a tile of 2 features is the interpreter's")
@pytest.mark.parametrize("backend", ["triton"])
@pytest.mark.parametrize("name", SHARED)
def test_a_reduction_shared_over_programs_is_exact(split_kernels, monkeypatch, backend, name):
    """split.SplitReduction: the backward's d_h += d_gates @ W_hh, each tile of d_h from two shares of the
    reduction on two programs added atomically (twice the programs of the forward), against the reference"""
    monkeypatch.setattr(RENDER, "REDUCTION_SHARES", 2)
    launches = split_kernels(2)
    # a reduction tile of 2: the zoo's 12-20 columns of d_gates in several trips a share (with 64, share 0 would
    # take them all and share 1 none)
    monkeypatch.setattr(triton_backend, "LAUNCH", {"_BKG": 2})
    torch.manual_seed(0)
    cell, ref = CASES[name][0](backend=backend), CASES[name][0](backend="reference")
    ref.load_state_dict(cell.state_dict())
    check_against_reference(cell, ref, T=4, B=3, lengths=torch.tensor([4, 1, 3]))
    forward, backward = launches[0], launches[1]
    assert backward == min(2 * forward, triton_backend.INTERPRETER_PROGRAMS) > forward, launches
    assert "tl.atomic_add(_r_d_" in cell.source("cpu")
    if name == "LSTM":   # and second order (tangent.py's scans: not shared, each share would want a barrier)
        xs, states = random_inputs(cell, 3, 3, dtype=torch.float32, seed=2)
        xs, states = ([t.detach().to(DEVICE).requires_grad_() for t in ts] for ts in (xs, states))
        got = []
        for c in (cell, ref):
            out = c(*xs, states[0] if len(states) == 1 else tuple(states))[0]
            (g,) = torch.autograd.grad(out.square().sum(), [xs[0]], create_graph=True)
            got.append(torch.autograd.grad(g.square().sum(), list(c.parameters())))
        assert max(rel_err(a, b) for a, b in zip(*got)) < 1e-4


@pytest.mark.parametrize("backend", ["triton"])
def test_a_reduction_shared_at_16_features_and_never_when_deterministic(split_kernels, monkeypatch, backend):
    """at the GPU's tile (H = 32: two programs of 16 units, four in the backward); under
    torch.use_deterministic_algorithms each tile's reduction stays on its program (the same kernel, P = 2: no
    atomic adds of shares, whose order varies)"""
    monkeypatch.setattr(RENDER, "REDUCTION_SHARES", 2)
    launches = split_kernels(16)
    torch.manual_seed(0)
    cell, ref = LSTMCell(8, 32, backend=backend).to(DEVICE), LSTMCell(8, 32, backend="reference").to(DEVICE)
    ref.load_state_dict(cell.state_dict())
    check_against_reference(cell, ref, T=3, B=5, lengths=torch.tensor([3, 1, 2, 3, 2]))
    assert launches[:2] == [2, 4], launches
    launches.clear()
    torch.use_deterministic_algorithms(True)
    try:
        check_against_reference(cell, ref, T=3, B=5)
    finally:
        torch.use_deterministic_algorithms(False)
    assert set(launches) == {2}, launches


def without_barriers_between_phases(s):
    return split.Split(s.units, s.tile, (tuple(st for p in s.phases for st in p),), s.first_barrier, s.shares)


def without_the_barrier_at_the_steps_start(s):
    return split.Split(s.units, s.tile, s.phases, False, s.shares)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU a missing barrier is a race, not a sure failure")
@pytest.mark.parametrize("backend", ["triton"])
@pytest.mark.parametrize("mutation", [without_barriers_between_phases, without_the_barrier_at_the_steps_start])
def test_a_missing_barrier_is_caught_by_these_tests(split_kernels, monkeypatch, backend, mutation):
    """The controls: the interpreter runs each stretch between two barriers as one launch, its programs one after
    another, so a plan short of a barrier makes a program read what programs after it have not written yet: the
    LSTM's backward its d_gates (between phases), its forward h_{t-1} (at the step's start)"""
    split_kernels(2)
    real = RENDER.plan
    monkeypatch.setattr(RENDER, "plan", lambda *args: mutation(real(*args)))
    torch.manual_seed(0)
    cell, ref = CASES["LSTM"][0](backend=backend), CASES["LSTM"][0](backend="reference")
    ref.load_state_dict(cell.state_dict())
    with pytest.raises(AssertionError):
        check_against_reference(cell, ref, T=4, B=3)


# --- float32 matmul precision: symcell.backends.triton.FLOAT32_DOT --------------------------------------------

def split_lstm_within(tol, backend):
    """a split LSTM's outputs and its gradients (input and parameters) against the reference backend's"""
    torch.manual_seed(0)
    cell, ref = LSTMCell(8, 48, backend=backend).to(DEVICE), LSTMCell(8, 48, backend="reference").to(DEVICE)
    ref.load_state_dict(cell.state_dict())
    xs, _ = random_inputs(cell, 3, 5, dtype=torch.float32)
    y, y_ref = cell(xs[0].to(DEVICE))[0], ref(xs[0].to(DEVICE))[0]
    assert rel_err(y, y_ref) < tol
    g = torch.autograd.grad(y.square().sum(), [xs[0], *cell.parameters()])
    g_ref = torch.autograd.grad(y_ref.square().sum(), [xs[0], *ref.parameters()])
    assert max(rel_err(a, b) for a, b in zip(g, g_ref)) < tol


@pytest.mark.parametrize("backend", ["triton"])
@pytest.mark.parametrize("dot,tol", [("ieee", 1e-4), ("tf32x3", 1e-4), ("tf32", 3e-2)])
def test_each_float32_matmul_precision_within_its_tolerance(split_kernels, monkeypatch, backend, dot, tol):
    """ieee and tf32x3 to float32's tolerance, tf32 (10-bit mantissas) to a few parts in 100, on a split LSTM;
    under the interpreter every one is float32 (what a GPU's tensor cores do is tested where there is one)"""
    split_kernels(16)
    monkeypatch.setattr(triton_backend, "FLOAT32_DOT", dot)
    split_lstm_within(tol, backend)


@pytest.mark.parametrize("backend", ["triton"])
def test_launch_settings_change_the_compile_not_the_answer(split_kernels, monkeypatch, backend):
    """symcell.backends.triton.LAUNCH, what benchmarks/tune_gpu.py sweeps: a reduction tile wider than the
    matmuls' 48 (masked) and other warps, the same values and gradients"""
    split_kernels(16)
    monkeypatch.setattr(triton_backend, "LAUNCH", {"_BK": 64, "num_warps": 8})
    split_lstm_within(1e-4, backend)


@pytest.mark.parametrize("backend", ["triton"])
def test_settings_out_of_range_are_refused_naming_them(split_kernels, monkeypatch, backend):
    """PROGRAMS_AT_MOST = 0 launched no program (the results were whatever memory held: 0.39 off, or 8e22), -1
    gave NaN; a LAUNCH value Triton cannot take raised Triton's own error, and an unknown key was ignored"""
    split_kernels(16)
    cell = LSTMCell(8, 16, backend=backend).to(DEVICE)
    x = torch.randn(2, 3, 8, device=DEVICE)
    for value in (0, -1, True, "2", 2.5):
        monkeypatch.setattr(triton_backend, "PROGRAMS_AT_MOST", value)
        with pytest.raises(ValueError, match=rf"PROGRAMS_AT_MOST must be a positive int, got {re.escape(repr(value))}"):
            cell(x)
    monkeypatch.setattr(triton_backend, "PROGRAMS_AT_MOST", 2)
    want = LSTMCell(8, 16, backend="reference").to(DEVICE)
    want.load_state_dict(cell.state_dict())
    assert rel_err(cell(x)[0], want(x)[0]) < 1e-4
    for launch, message in (({"_BK": 3}, r"LAUNCH\['_BK'\] must be a power of two, got 3"),
                            ({"_BKG": 24}, r"LAUNCH\['_BKG'\] must be a power of two, got 24"),
                            ({"num_warps": 0}, r"LAUNCH\['num_warps'\] must be a power of two, got 0"),
                            ({"block": 64}, r"LAUNCH: unknown key 'block'; the keys are \['_BK', '_BKG', 'num_warps', "
                                            r"'num_stages', 'num_ctas', 'maxnreg'\]")):
        monkeypatch.setattr(triton_backend, "LAUNCH", launch)
        with pytest.raises(ValueError, match=message):
            cell(x)


@pytest.mark.parametrize("backend", ["triton"])
def test_an_unknown_float32_matmul_precision_is_refused(split_kernels, monkeypatch, backend):
    split_kernels(16)
    monkeypatch.setattr(triton_backend, "FLOAT32_DOT", "fp16")
    cell = LSTMCell(8, 16, backend=backend).to(DEVICE)
    with pytest.raises(ValueError, match=r"FLOAT32_DOT must be one of \('ieee', 'tf32x3', 'tf32'\), got 'fp16'"):
        cell(torch.randn(2, 3, 8, device=DEVICE))


@pytest.mark.parametrize("backend", ["triton"])
def test_a_16_bit_module_multiplies_as_LOW_PRECISION_DOT_says_in_every_derivative(split_kernels, monkeypatch,
                                                                                    backend):
    """bfloat16 and float16 modules scan in float32 with tf32 matmuls (LOW_PRECISION_DOT), float32 modules with
    FLOAT32_DOT: in the forward, in the backward (autograd runs it after the module's call returned) and in a
    second derivative; LOW_PRECISION_DOT = None gives 16-bit modules FLOAT32_DOT too"""
    split_kernels(16)
    seen, launch = [], triton_backend._launch

    def spy(*args, **meta):
        seen.append(triton_backend.dot_precision())
        return launch(*args, **meta)
    monkeypatch.setattr(triton_backend, "_launch", spy)
    torch.manual_seed(0)
    for low, dtype, want in (("tf32", torch.bfloat16, "tf32"), ("tf32", torch.float16, "tf32"),
                             ("tf32", torch.float32, "ieee"), (None, torch.bfloat16, "ieee")):
        monkeypatch.setattr(triton_backend, "LOW_PRECISION_DOT", low)
        cell = LSTMCell(8, 16, backend=backend).to(DEVICE, dtype)
        x = torch.randn(3, 2, 8, device=DEVICE, dtype=dtype, requires_grad=True)
        seen.clear()
        (g,) = torch.autograd.grad(cell(x)[0].float().square().sum(), [x], create_graph=True)
        assert seen == [want, want], (dtype, low, seen)   # forward, backward
        g.float().sum().backward()
        assert len(seen) > 2 and set(seen) == {want}, (dtype, low, seen)   # and the second-order scans
    assert triton_backend.dot_precision() == "ieee"   # nothing left set after the calls


def test_a_bfloat16_modules_host_gemms_take_bfloat16_operands_and_sum_in_float32(monkeypatch):
    """_mm, the host code's GEMMs (before and after the loop): for a bfloat16 scan its operands rounded to
    bfloat16, float32 products and sums (cuBLAS's out_dtype on a GPU); torch.mm itself for float32 and float16
    scans, and with BFLOAT16_GEMMS off"""
    torch.manual_seed(0)
    a, b = torch.randn(40, 24, device=DEVICE), torch.randn(8, 24, device=DEVICE).t()   # b: a transposed view

    def mm_for(dtype):
        token = triton_backend.COMPUTING_FOR.set(dtype)
        try:
            return triton_backend._mm(a, b)
        finally:
            triton_backend.COMPUTING_FOR.reset(token)
    got = mm_for(torch.bfloat16)
    assert got.dtype == torch.float32
    assert rel_err(got, a.bfloat16().double() @ b.bfloat16().double()) < 1e-6
    assert rel_err(got, a.double() @ b.double()) > 1e-4   # (the operands were rounded)
    for dtype in (None, torch.float16):
        assert torch.equal(mm_for(dtype), torch.mm(a, b))
    monkeypatch.setattr(triton_backend, "BFLOAT16_GEMMS", False)
    assert torch.equal(mm_for(torch.bfloat16), torch.mm(a, b))


@pytest.mark.parametrize("backend", ["triton"])
def test_a_bfloat16_modules_host_gemms_compute_for_it_in_every_derivative(split_kernels, monkeypatch, backend):
    """the GEMMs of the forward (x @ W_ih^T) and of the backward (d_x, d_W_ih, d_W_hh) and those of the
    second-order scans run with the module's dtype in COMPUTING_FOR, which _mm reads (above)"""
    split_kernels(16)
    seen, mm = [], triton_backend._mm

    def spy(a, b):
        seen.append(triton_backend.COMPUTING_FOR.get())
        return mm(a, b)
    monkeypatch.setattr(triton_backend, "_mm", spy)
    torch.manual_seed(0)
    for dtype, want in ((torch.bfloat16, torch.bfloat16), (torch.float32, None)):
        cell = LSTMCell(8, 16, backend=backend).to(DEVICE, dtype)
        x = torch.randn(3, 2, 8, device=DEVICE, dtype=dtype, requires_grad=True)
        seen.clear()
        (g,) = torch.autograd.grad(cell(x)[0].float().square().sum(), [x], create_graph=True)
        assert seen == [want] * 4, (dtype, seen)   # the forward's one, the backward's three
        g.float().sum().backward()
        assert len(seen) > 4 and set(seen) == {want}, (dtype, seen)


@pytest.mark.parametrize("backend", ["triton"])
def test_a_16_bit_modules_kernels_read_its_weights_in_its_dtype_and_compute_the_same(split_kernels, monkeypatch,
                                                                                      backend):
    """LOW_PRECISION_WEIGHTS: the weights only the in-loop matmuls read (W_hh) reach the kernels in the module's
    16-bit dtype, forward, backward and second order; their values are exact there, so every result is the same
    bit for bit as with float32 copies. A float32 module's stay float32."""
    split_kernels(16)
    seen, launch = [], triton_backend._launch

    def spy(kernel, grid, T, B, like, *args, **meta):
        names = kernel.arg_names[7:7 + len(args)]   # (after _T, _B, _I0, _I1, _K0, _K1, _P)
        seen.extend(a.dtype for n, a in zip(names, args) if n.startswith("_w_"))
        return launch(kernel, grid, T, B, like, *args, **meta)
    monkeypatch.setattr(triton_backend, "_launch", spy)

    def run(dtype):
        torch.manual_seed(0)
        cell = LSTMCell(8, 16, backend=backend).to(DEVICE, dtype)
        x = torch.randn(3, 2, 8, device=DEVICE, dtype=dtype, requires_grad=True)
        seen.clear()
        h = cell(x)[0]
        (g,) = torch.autograd.grad(h.float().square().sum(), [x], create_graph=True)
        first = list(seen)
        (gg,) = torch.autograd.grad(g.float().square().sum(), [cell.weight_hh])
        return (h, g, gg), first, seen[len(first):]
    monkeypatch.setattr(triton_backend, "RESIDENT_WEIGHTS", False)   # (the slices' own arithmetic: tests below)
    for dtype in (torch.bfloat16, torch.float16):
        ours, first, second = run(dtype)
        assert first == [dtype, dtype] and len(second) >= 2 and set(second) == {dtype}, (dtype, first, second)
        monkeypatch.setattr(triton_backend, "LOW_PRECISION_WEIGHTS", False)
        theirs, first, _ = run(dtype)
        monkeypatch.setattr(triton_backend, "LOW_PRECISION_WEIGHTS", True)
        assert first == [torch.float32, torch.float32]
        for a, b in zip(ours, theirs):
            assert a.dtype == dtype and torch.equal(a, b)
    _, first, second = run(torch.float32)
    assert set(first + second) == {torch.float32}


@pytest.mark.triton
def test_the_split_dot_of_a_resident_slice_keeps_16_bits_of_the_float32_operand():
    """render.SPLIT_DOT: b @ w for float32 b and bfloat16 w as two bfloat16 products (b's first 8 significant bits
    and the next 8): within 2^-15 of the float64 product, where rounding b to bfloat16 (cuDNN's) is off by ~2^-9
    and tf32 (LOW_PRECISION_DOT's) by ~2^-12"""
    import triton
    import triton.language as tl
    import tempfile
    kernel = RENDER.SPLIT_DOT + """
@triton.jit
def kernel(B, W, O, _BF16_DOT: tl.constexpr):
    r, k = tl.arange(0, 16), tl.arange(0, 64)
    acc = tl.load(O + r[:, None] * 16 + r[None, :])
    b = tl.load(B + r[:, None] * 64 + k[None, :])
    w = tl.load(W + k[:, None] * 16 + r[None, :])
    tl.store(O + r[:, None] * 16 + r[None, :], _split_dot(acc, b, w, _BF16_DOT))
"""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:   # (triton.jit reads its file)
        f.write(kernel)
    scope = {"triton": triton, "tl": tl, "__file__": f.name}
    exec(compile(kernel, f.name, "exec"), scope)  # noqa: S102 - the renderer's own text
    kernel = scope["kernel"]
    torch.manual_seed(0)
    b = torch.randn(16, 64, device=DEVICE)
    w = torch.randn(64, 16, device=DEVICE).bfloat16()
    acc = torch.randn(16, 16, device=DEVICE)
    want = acc.double() + b.double() @ w.double()
    out = acc.clone()
    kernel[(1,)](b, w, out, torch.cuda.is_available() and not triton_backend.interpreted())
    scale = (b.double().abs() @ w.double().abs()).max()
    assert (out.double() - want).abs().max() / scale < 2 ** -15
    rounded = acc.double() + b.bfloat16().double() @ w.double()
    assert (rounded - want).abs().max() / scale > 2 ** -11   # (what the split keeps)


# (feature tile, RESIDENT_CHUNK, H) of the resident tests: 3 programs of one tile each, slices of several chunks (on
# the CPU with a masked last one); on a GPU tiles and chunks of 16, the least tl.dot takes there
ON_CHIP = (16, 16, 48) if torch.cuda.is_available() else (2, 4, 6)


def resident_launches(monkeypatch):
    """the _RESIDENT of each kernel launch from now on, in order"""
    seen, launch = [], triton_backend._launch

    def spy(kernel, grid, *args, **meta):
        seen.append(meta["_RESIDENT"])
        return launch(kernel, grid, *args, **meta)
    monkeypatch.setattr(triton_backend, "_launch", spy)
    return seen


@pytest.fixture
def resident_vs_streamed(split_kernels, monkeypatch):
    """compare(make, T, B, seed, lengths=None): the values and first-order gradients of a bfloat16 cell `make()`
    with its weight slices on chip (RESIDENT_WEIGHTS) and streamed, at ON_CHIP's tile and chunk: ((ours, each
    launch's _RESIDENT), (theirs, the same)); compare.programs: each launch's P"""
    tile, chunk, _ = ON_CHIP
    programs = split_kernels(tile)
    monkeypatch.setattr(RENDER, "RESIDENT_CHUNK", chunk)
    # (the streamed kernels multiply in float32: on a GPU tf32's 11 bits would round differently more often)
    monkeypatch.setattr(triton_backend, "LOW_PRECISION_DOT", "ieee")
    seen = resident_launches(monkeypatch)

    def run(on, make, T, B, seed, lengths):
        monkeypatch.setattr(triton_backend, "RESIDENT_WEIGHTS", on)
        torch.manual_seed(0)
        cell = make().to(DEVICE, torch.bfloat16)
        xs, states = random_inputs(cell, T, B, dtype=torch.bfloat16, seed=seed)
        xs, states = ([t.detach().to(DEVICE).requires_grad_() for t in ts] for ts in (xs, states))
        seen.clear()
        outs, grads, _ = outputs_and_grads(cell, xs, states, lengths=lengths)
        return [t.float() for t in (*outs, *grads)], list(seen)

    def compare(make, T, B, seed, lengths=None):
        return run(True, make, T, B, seed, lengths), run(False, make, T, B, seed, lengths)
    compare.programs = programs
    return compare


def assert_as_streamed(ours, theirs):
    for a, b in zip(ours, theirs):
        assert rel_err(a, b) <= 2 ** -7, rel_err(a, b)                  # a bfloat16 rounding at most
        assert (a == b).float().mean() > 0.9, (a == b).float().mean()    # and mostly none


@define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I + H")})
def XFirst(x, h, W):
    """a cell whose recurrent weights are columns I.. of W (cat(x, h)): a resident slice off the weight's start"""
    return tanh(W @ cat(x, h))


@define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "H"), "U": ("H", "I")})
def Normed(x, h, W, U):
    """a cell with a mean over its features (program 0's) whose region reads the carry h"""
    a = tanh(W @ h + U @ x) + h
    return a / (1 + mean(a * a))


@pytest.mark.parametrize("backend", ["triton"])
@pytest.mark.parametrize("name", ["LSTM", "GRU", "LLTM", "XFirst", "Normed", "LayerNormLSTM", "SLSTM"])
def test_a_bfloat16_modules_weight_slices_stay_on_chip_and_compute_as_when_streamed(resident_vs_streamed, backend,
                                                                                  name):
    """RESIDENT_WEIGHTS: where each program does one tile of each block of units (P >= U / tile), a bfloat16
    module's forward and backward kernels read their slices of W_hh once, before the time loop, and multiply them
    with 16 bits of the float32 state (SPLIT_DOT): the values and gradients of the kernels that stream them every
    step, to bfloat16's rounding, with lengths too (ON_CHIP: 3 programs; several chunks a slice, the last one
    masked)"""
    H = ON_CHIP[2]
    make = {"LSTM": LSTMCell, "GRU": GRUCell, "LLTM": LLTM, "XFirst": lambda i, h, **kw: XFirst(I=i, H=h, **kw),
            "Normed": lambda i, h, **kw: Normed(I=i, H=h, **kw),
            "LayerNormLSTM": LayerNormLSTM, "SLSTM": lambda i, h, **kw: SLSTM(i, h, num_heads=2, **kw)}[name]
    # (lengths on the five smaller cells: the two larger ones' interpreted runs take half a minute each)
    for lengths in (None, torch.tensor([5, 2, 4])) if name not in ("LayerNormLSTM", "SLSTM") else (None,):
        (ours, launched), (theirs, streamed) = resident_vs_streamed(lambda: make(3, H, backend=backend), 5, 3, 1,
                                                                    lengths)
        assert launched[:2] == [True, True] and not any(streamed), (launched, streamed)
        assert_as_streamed(ours, theirs)


@pytest.mark.parametrize("backend", ["triton"])
@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_a_resident_matmuls_independent_sums_add_up_as_one_sum(resident_vs_streamed, monkeypatch, backend, name):
    """DOT_SUMS: the resident matmul's products go into independent sums (the high parts' and the low parts' of
    every other chunk: four at ON_CHIP's two chunks), added after the last chunk; the values and gradients of one
    sum, but for float32's rounding in another order: the same bfloat16 values nearly everywhere (the low parts'
    sums left out, a relative error of ~2.6e-3 in the products, changes a good part of them)"""
    make = {"LSTM": LSTMCell, "GRU": GRUCell}[name]
    results = []
    for sums in (4, 1):
        monkeypatch.setattr(RENDER, "DOT_SUMS", sums)
        monkeypatch.setattr(registry, "_KERNELS", collections.OrderedDict())   # (rendered again)
        source = make(3, ON_CHIP[2], backend=backend).source("cuda")
        assert ("_acc4_s3 = tl.zeros_like(_acc4)" in source and "+= (_acc4_s0 + _acc4_s1) + (_acc4_s2 + _acc4_s3)"
                in source) == (sums == 4), source
        (ours, launched), _ = resident_vs_streamed(lambda: make(3, ON_CHIP[2], backend=backend), 5, 3, 2)
        assert launched == [True, True], launched
        results.append(ours)
    for a, b in zip(*results):
        assert rel_err(a, b) <= 2 ** -7 and (a == b).float().mean() >= 0.97, (rel_err(a, b), (a == b).float().mean())


@pytest.mark.parametrize("backend", ["triton"])
@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_resident_values_kept_in_registers_across_phases_in_one_launch(resident_vs_streamed, backend, name):
    """H = one tile: one program a batch tile (P = 1), so the interpreter too runs the whole sequence as one
    launch, as a GPU does: the values the resident kernels keep in registers from one phase or step to a later one
    (the sums of d_h for the next step, carried_sums; the LSTM's d_c, carried_regions; a GRU region's part of d_h
    for the sums after the barrier, added_onto; the backward's values loaded a step ahead, prefetch_next), which
    where P > 1 the interpreter's launch per barrier reads back from memory or loads again, are the ones used"""
    make = {"LSTM": LSTMCell, "GRU": GRUCell}[name]
    (ours, launched), (theirs, _) = resident_vs_streamed(lambda: make(3, ON_CHIP[0], backend=backend), 5, 3, 3)
    programs = resident_vs_streamed.programs
    assert launched == [True, True] and set(programs) == {1}, (launched, programs)   # (one program a batch tile)
    assert_as_streamed(ours, theirs)


@pytest.mark.parametrize("backend", ["triton"])
@pytest.mark.parametrize("name, H", [("LSTM", ON_CHIP[2]), ("GRU", ON_CHIP[0]), ("XFirst", ON_CHIP[2]),
                                     ("Normed", ON_CHIP[2])])
def test_a_carry_split_by_its_writer_multiplies_as_split_by_its_readers(resident_vs_streamed, monkeypatch, backend,
                                                                        name, H):
    """SPLIT_AT_WRITE: the carry a resident matmul multiplies (h) is split into its two bfloat16 parts by the
    program that writes it, and stored beside it for the others; the products are those of the parts each reader
    split itself, bit for bit: values and gradients, over several programs (each reads the others' parts) and one
    (GRU at one tile: one launch, as on a GPU), the first step's parts the host's (_parts)"""
    make = {"LSTM": LSTMCell, "GRU": GRUCell, "XFirst": lambda i, h, **kw: XFirst(I=i, H=h, **kw),
            "Normed": lambda i, h, **kw: Normed(I=i, H=h, **kw)}[name]
    cell = lambda: make(3, H, backend=backend)   # noqa: E731
    results = []
    for at_write in (True, False):
        monkeypatch.setattr(RENDER, "SPLIT_AT_WRITE", at_write)
        monkeypatch.setattr(registry, "_KERNELS", collections.OrderedDict())   # (rendered again)
        source = cell().source("cuda")
        assert (bool(re.search(r"= _pair_dots?\(_acc", source)) and "_rs_h + " in source
                and "_parts(_h" in source) == at_write
        (ours, launched), _ = resident_vs_streamed(cell, 5, 3, 5)
        assert launched == [True, True], launched
        results.append(ours)
    for a, b in zip(*results):
        assert torch.equal(a, b), rel_err(a, b)


@pytest.mark.parametrize("backend", ["triton"])
def test_resident_sums_of_the_partials_of_more_than_16_programs(resident_vs_streamed, monkeypatch, backend):
    """P = 17: the sums of the transposed d_h's partials (16 programs' at a time, unrolled over the most programs
    the host launches) take a second, masked batch, as on a GPU (48 programs at H=768)"""
    monkeypatch.setattr(triton_backend, "INTERPRETER_PROGRAMS", 17)
    (ours, launched), (theirs, _) = resident_vs_streamed(lambda: LSTMCell(3, 17 * ON_CHIP[0], backend=backend), 3, 2, 4)
    programs = resident_vs_streamed.programs
    assert launched == [True, True] and set(programs) == {17}, (launched, programs)
    assert_as_streamed(ours, theirs)


@pytest.mark.parametrize("backend", ["triton"])
def test_resident_weight_slices_with_two_batch_tiles(resident_vs_streamed, backend):
    """B = 20: two batch tiles of programs, each with its own partials (the transposed d_h) and barrier counter,
    as with the weights streamed"""
    (ours, launched), (theirs, _) = resident_vs_streamed(lambda: LSTMCell(3, ON_CHIP[2], backend=backend), 4, 20, 2)
    assert launched == [True, True], launched
    assert_as_streamed(ours, theirs)


@pytest.mark.parametrize("backend", ["triton"])
def test_a_carry_is_loaded_ahead_of_the_barrier_where_its_own_program_wrote_it(backend):
    """prefetched_leaves (with resident slices): an LSTM forward's cell state c, and Normed's h (whose mean over
    features program 0 computes, but whose every column its owner writes), each program wrote itself the step
    before: they are loaded at the step's start, before the barrier, with the parameters before the time loop
    (the interpreter runs a barrier as a launch boundary, where loading too early would not show: this is the
    renderer's decision, read from its source; the values are tested above)"""
    lstm = LSTMCell(3, 32, backend=backend).source("cuda")
    normed = Normed(I=3, H=32, backend=backend).source("cuda")
    assert "_x_c = tl.load(_r_c " in lstm and "c = _x_c if _RESIDENT else" in lstm
    assert "_x_bias_hh_0 = tl.load(" in lstm.split("for _i in range(")[0]   # (before the time loop)
    assert "_x_h = tl.load(_r_h " in normed and "h = _x_h if _RESIDENT else" in normed


@pytest.mark.parametrize("backend", ["triton"])
def test_resident_weight_slices_in_second_derivatives(split_kernels, monkeypatch, backend):
    """the second-order kernels' resident slices (a tangent backward reads one slice of W_hh for d_h and its
    tangent, held once): a bfloat16 LSTM's double backward as with streamed weights, to bfloat16's rounding"""
    tile, chunk, H = ON_CHIP
    split_kernels(tile)
    monkeypatch.setattr(RENDER, "RESIDENT_CHUNK", chunk)
    # (the streamed kernels multiply in float32: on a GPU tf32's 11 bits would round differently more often)
    monkeypatch.setattr(triton_backend, "LOW_PRECISION_DOT", "ieee")
    seen = resident_launches(monkeypatch)

    def run(on):
        monkeypatch.setattr(triton_backend, "RESIDENT_WEIGHTS", on)
        torch.manual_seed(0)
        cell = LSTMCell(3, H, backend=backend).to(DEVICE, torch.bfloat16)
        x = torch.randn(5, 2, 3, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
        seen.clear()
        (g,) = torch.autograd.grad(cell(x)[0].float().square().sum(), [x], create_graph=True)
        gg = torch.autograd.grad(g.float().square().sum(), [x, cell.weight_hh])
        return [t.float() for t in (g, *gg)], list(seen)
    (ours, launched), (theirs, _) = run(True), run(False)
    assert len(launched) > 4 and launched.count(True) > 2, launched   # (the second order's too)
    for a, b in zip(ours, theirs):
        assert rel_err(a, b) <= 2 ** -7, rel_err(a, b)


@pytest.mark.parametrize("backend", ["triton"])
def test_weight_slices_stay_on_chip_only_where_a_program_has_one_tile_and_they_are_bfloat16(split_kernels,
                                                                                            monkeypatch, backend):
    """_resident_slices: a float32 or float16 module streams its weights, and so does a bfloat16 one whose programs
    have several tiles each (P < U / tile: a large batch, PROGRAMS_AT_MOST) or with RESIDENT_WEIGHTS off"""
    tile, _, H = ON_CHIP
    split_kernels(tile)
    seen = resident_launches(monkeypatch)

    def launched(dtype):
        torch.manual_seed(0)
        cell = LSTMCell(3, H, backend=backend).to(DEVICE, dtype)   # (3 tiles of units: P = 3)
        seen.clear()
        h = cell(torch.randn(4, 2, 3, device=DEVICE, dtype=dtype, requires_grad=True))[0]
        h.float().sum().backward()
        return seen[:2]
    assert launched(torch.bfloat16) == [True, True]
    assert launched(torch.float32) == launched(torch.float16) == [False, False]
    monkeypatch.setattr(triton_backend, "PROGRAMS_AT_MOST", 2)
    assert launched(torch.bfloat16) == [False, False]
    monkeypatch.setattr(triton_backend, "PROGRAMS_AT_MOST", None)
    monkeypatch.setattr(triton_backend, "RESIDENT_WEIGHTS", False)
    assert launched(torch.bfloat16) == [False, False]


@pytest.mark.parametrize("backend", ["triton"])
def test_a_16_bit_copy_of_a_weight_has_a_name_of_its_own(backend):
    """the host's 16-bit copy of a weight (`_<weight>_w16`) cannot take the name of another host variable: a
    weight named new_pp beside a state k, whose carry's slots are `_k_new_pp`"""
    @define(inputs={"x": "I"}, state={"k": "H"}, params={"new_pp": ("H", "H"), "U": ("H", "I")})
    def Clash(x, k, new_pp, U):
        return tanh(new_pp @ k + U @ x)
    torch.manual_seed(0)
    cell, ref = Clash(I=3, H=4, backend=backend).to(DEVICE), Clash(I=3, H=4, backend="reference").to(DEVICE)
    ref.load_state_dict(cell.state_dict())
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        x = torch.randn(5, 2, 3, device=DEVICE, dtype=dtype)
        assert rel_err(cell.to(dtype)(x)[0].float(), ref.to(dtype)(x)[0].float()) < tol, dtype


@pytest.mark.parametrize("backend", ["triton"])
def test_a_module_with_a_float32_parameter_among_16_bit_ones_is_not_rounded_to_16_bits(monkeypatch, backend):
    """LOW_PRECISION_WEIGHTS and BFLOAT16_GEMMS round what is exact in the module's dtype: a float32 weight_hh in a
    bfloat16 module is not, so its scan computes as float32 (the same results with both settings off)"""
    torch.manual_seed(0)
    cell = LSTMCell(8, 16, backend=backend).to(DEVICE, torch.bfloat16)
    cell.weight_hh.data = torch.randn(64, 16, device=DEVICE) * 0.3
    x = torch.randn(20, 4, 8, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)

    def run(on):
        monkeypatch.setattr(triton_backend, "LOW_PRECISION_WEIGHTS", on)
        monkeypatch.setattr(triton_backend, "BFLOAT16_GEMMS", on)
        h, c = cell(x)[1]
        return (h, c, *torch.autograd.grad((h.float() + c.float()).square().sum(), [x, cell.weight_ih]))
    for a, b in zip(run(True), run(False)):
        assert torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the probe's --check is the interpreter's dry run")
@pytest.mark.parametrize("which", [[], ["--forward"]], ids=["backward", "forward"])
def test_the_gpu_sessions_probe_applies_its_edits(which):
    """benchmarks/probe_backward.py, which a GPU session runs for its few minutes: every edit finds its text in
    today's rendering, and those meant to keep the answer keep it (--check exits 1 otherwise)"""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": root}
    r = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "probe_backward.py"), "--check", *which],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("| ") and not ln.startswith("| variant")]
    # (slices in chunks of 128 render as chunks of 64 at --check's H=32: the one variant that may not apply there)
    assert len(rows) >= 5 and not any("finds nothing to edit" in ln for ln in rows
                                      if "bias" not in ln and "chunks of 128" not in ln), r.stdout
