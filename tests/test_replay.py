"""Plans (symcell/replay.py): a call like an earlier one runs that call's kernel without its checks. Each test
runs the planned calls against what they must equal (nn's modules with the same weights, or a fresh module that
has kept no plan) and counts the full checks (Binding.check), so that a plan that is never used, or used where
it must not be, fails."""
import pytest
import torch
from torch import nn

import symcell
from symcell import module, registry, replay
from symcell.cache import BuildError
from symcell.cells import GRUCell, LSTMCell

CPU_BACKENDS = [b for b in ("reference", "cpp") if symcell.backends.get(b).usable(torch.device("cpu"))]


def needs_cpp(test):
    """a test of the cpp backend itself (its fallback): the cpp tier, skipped where no C++ compiler is (CI requires
    one: SYMCELL_REQUIRE_BACKENDS)"""
    return pytest.mark.cpp(pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="needs a C++ compiler for the "
                                                                            "cpp backend")(test))


@pytest.fixture
def full_checks(monkeypatch):
    """the number of calls that took the full path (Binding.check), as a one-item list"""
    count, check = [0], module.Binding.check

    def counted(self, *args, **kwargs):
        count[0] += 1
        return check(self, *args, **kwargs)
    monkeypatch.setattr(module.Binding, "check", counted)
    return count


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
def test_a_decoder_loop_checks_its_first_step_only_and_matches_nn(kind, backend, full_checks):
    torch.manual_seed(0)
    ours = getattr(symcell.cells, kind)(5, 7, backend=backend)
    theirs = getattr(nn, kind)(5, 7)
    theirs.load_state_dict(ours.state_dict())
    x0 = torch.randn(3, 5, requires_grad=True)
    proj = torch.randn(7, 5)

    def decode(cell):
        state, x, out = None, x0, 0
        for _ in range(12):
            state = cell(x, state)
            h = state[0] if isinstance(state, tuple) else state
            x, out = torch.tanh(h @ proj), out + h.sum() * 0.1
        return out
    want = decode(theirs)
    got = decode(ours)
    # the first step without a state, the second with one: two full calls; the other ten ran the second's plan
    assert full_checks[0] == 2 and len(ours._binding.plans) == 2
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    g_ours = torch.autograd.grad(got, [x0, *ours.parameters()])
    g_theirs = torch.autograd.grad(want, [x0, *theirs.parameters()])
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():   # (no graph: the same plan, the kernel without autograd)
        torch.testing.assert_close(decode(ours), want.detach(), rtol=1e-5, atol=1e-6)
    assert full_checks[0] == 2


def _error(call):
    with pytest.raises(Exception) as e:
        call()
    return type(e.value), str(e.value)


@pytest.mark.cpp   # (backend='auto' on the CPU)
def test_a_call_unlike_the_planned_one_is_checked_in_full():
    """after calls that planned, each bad call raises what a module that never planned raises"""
    torch.manual_seed(0)
    planned, fresh = LSTMCell(4, 6), LSTMCell(4, 6)
    fresh.load_state_dict(planned.state_dict())
    x, s = torch.randn(2, 4), (torch.randn(2, 6), torch.randn(2, 6))
    for _ in range(3):
        planned(x, s), planned(x), planned(x, list(s))
    assert len(planned._binding.plans) == 2   # (a state as a list signs as the tuple of it)
    torch.testing.assert_close(planned(x), fresh(x))
    torch.testing.assert_close(planned(x, s), fresh(x, s))
    fresh._binding.plans = replay.Plans()
    bad = [
        lambda m: m(torch.randn(2, 5), s),                                  # input features
        lambda m: m(x, (torch.zeros(3, 6), torch.zeros(3, 6))),             # state rows
        lambda m: m(x, (torch.zeros(2, 6),)),                               # one state of two
        lambda m: m(x, ()),                                                  # none
        lambda m: m(x.double(), s),                                          # dtype
        lambda m: m(x, (s[0], s[1].double())),
        lambda m: m(x, (s[0], 3.0)),                                         # not a tensor
        lambda m: m(x.to_sparse(), s),                                       # layout
        lambda m: m(x, torch.zeros(2, 6)),                                   # a tensor for a tuple of two
        lambda m: m(x.to("meta"), s),                                        # device
    ]
    for call in bad:
        assert _error(lambda: call(planned)) == _error(lambda: call(fresh))
    # a parameter swapped for one of another shape, as `.data =` does (its identity unchanged)
    for m in (planned, fresh):
        m.weight_hh.data = torch.randn(24, 5)
    assert _error(lambda: planned(x, s)) == _error(lambda: fresh(x, s))


@pytest.mark.cpp   # (backend='auto' on the CPU)
def test_modes_that_change_what_a_call_runs_take_the_full_path(full_checks):
    torch.manual_seed(0)
    cell = LSTMCell(4, 6)
    x, s = torch.randn(2, 4), (torch.randn(2, 6), torch.randn(2, 6))
    want = cell(x, s)
    cell(x, s)
    assert full_checks[0] == 1 and len(cell._binding.plans) == 1
    # autocast: an LSTM runs in bfloat16 on the CPU, as nn.LSTM does, though it planned in float32
    lstm, ref = symcell.cells.LSTM(4, 6), nn.LSTM(4, 6)
    ref.load_state_dict(lstm.state_dict())
    xs = torch.randn(3, 2, 4)
    lstm(xs), lstm(xs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = lstm(xs)
        try:
            theirs = ref(xs)
        except RuntimeError as e:   # (nn.LSTM's bfloat16 kernel is oneDNN's, which an AVX2 CPU lacks: it raises)
            if "primitive descriptor" not in str(e):
                raise
            theirs = None
    assert got[0].dtype == torch.bfloat16 and (theirs is None or theirs[0].dtype == torch.bfloat16)
    # jit.trace records the registered operator, which runs without symcell's Python
    traced = torch.jit.trace(lstm, (xs,), check_trace=False)
    assert "symcell::scan" in str(traced.inlined_graph)
    # the profiler: a row for the cell's operator
    with torch.profiler.profile() as prof:
        cell(x, s)
    assert any(e.name.startswith("symcell.LSTM[") for e in prof.events())
    # forward mode and vmap
    t = torch.randn(2, 4)
    _, tangent = torch.func.jvp(lambda x: cell(x, s)[0], (x,), (t,))
    eps = 1e-3
    torch.testing.assert_close(tangent, (cell(x + eps * t, s)[0] - cell(x - eps * t, s)[0]) / (2 * eps),
                               rtol=1e-2, atol=1e-3)
    batched = torch.func.vmap(lambda x: cell(x, s)[0])(torch.stack([x, 2 * x]))
    torch.testing.assert_close(batched[1], cell(2 * x, s)[0])
    # fake tensors: shapes, no values
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake = cell(mode.from_tensor(x), tuple(map(mode.from_tensor, s)))
    assert fake[0].shape == (2, 6)
    full = full_checks[0]
    torch.testing.assert_close(cell(x, s), want)
    assert full_checks[0] == full   # (and after them, the plan again)


@pytest.mark.cpp   # (backend='auto' on the CPU)
def test_scans_plan_too_reversed_batch_first_and_in_bfloat16(full_checks):
    torch.manual_seed(0)
    lstm = symcell.cells.LSTM(4, 6, batch_first=True, bidirectional=True, num_layers=2)
    ref = nn.LSTM(4, 6, batch_first=True, bidirectional=True, num_layers=2)
    ref.load_state_dict(lstm.state_dict())
    x = torch.randn(3, 5, 4)
    for _ in range(3):
        got, want = lstm(x), ref(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert full_checks[0] == 4   # (a layer and direction each: their first call)
    cell = symcell.cells.LSTMCell(4, 6)
    xs = torch.randn(5, 3, 4)
    for _ in range(2):   # (the forward scan runs no reversed one's plan, nor that one the forward's)
        backward, forward = symcell.scan(cell, xs, reverse=True), symcell.scan(cell, xs.flip(0))
        torch.testing.assert_close(backward[0], forward[0].flip(0))
        torch.testing.assert_close(backward[1], forward[1])
    half = LSTMCell(4, 6, dtype=torch.bfloat16)
    x16 = torch.randn(2, 4, dtype=torch.bfloat16)
    once = half(x16)
    fresh = LSTMCell(4, 6, dtype=torch.bfloat16)
    fresh.load_state_dict(half.state_dict())
    again = half(x16)
    assert [t.dtype for t in again] == [torch.bfloat16] * 2 and len(half._binding.plans) == 1
    torch.testing.assert_close(again, once, rtol=0, atol=0)
    torch.testing.assert_close(again, fresh(x16), rtol=0, atol=0)


@pytest.mark.cpp   # (backend='auto' on the CPU)
def test_plans_are_few_whatever_the_shapes():
    cell = GRUCell(3, 4)
    for B in range(1, 40):
        cell(torch.randn(B, 3))
    assert 0 < len(cell._binding.plans) <= cell._binding.plans.most


@needs_cpp
def test_a_fallback_a_later_call_tries_again_keeps_no_plan(monkeypatch):
    """backend='auto' runs the reference backend where the cpp build failed; after a full disk (not lasting) a later
    call builds again, so no plan keeps the reference kernel"""
    cell = LSTMCell(3, 4)
    built, tried = registry.kernel_for, []

    def full_disk(key):
        tried.append(key)
        if key == cell._binding.keys["cpp"]:
            error = BuildError("no space left on device")
            error.lasting = False
            raise error
        return built(key)
    monkeypatch.setattr(registry, "kernel_for", full_disk)
    monkeypatch.setattr(module, "_fallback_warned", {"cpp"})
    x = torch.randn(2, 3)
    for _ in range(2):
        cell(x)
    assert tried.count(cell._binding.keys["cpp"]) == 2 and not len(cell._binding.plans)
    monkeypatch.setattr(registry, "kernel_for", built)
    cell(x), cell(x)
    assert len(cell._binding.plans) == 1


@pytest.mark.cpp
def test_the_cpp_scans_return_what_they_allocate_each_once():
    """the cpp entry points say `fresh` (backends/base.py), so Kernel.run does not look for results that share
    memory with an argument or with each other: every scan of every zoo cell returns buffers its code allocates
    (a final state is a copy of the carry: render.py's `returns`), each once"""
    from zoo import CASES

    from symcell.kernel import Role
    assert symcell.backends.cpp.build.Entry.fresh
    for name, (make, _, _) in CASES.items():
        key = make(backend="cpp")._binding.keys["cpp"]
        program = registry.program_for(key)
        # (the second-order scans of a few: deriving them all took 10 s)
        second = registry.second_order(registry.parse(key)[0], None, symcell.backends.get("cpp")) \
            if name in ("LSTM", "GRU", "TwoScale") else ()
        for scan in (program.forward, program.backward, *second):
            names = [b for r in scan.returns for b in r.buffers]
            assert len(names) == len(set(names)), (name, scan.name, names)
            passed = [b for b in names if scan.arg_of(b) and scan.buffer(b).role != Role.CARRY_IN]
            assert not passed, (name, scan.name, passed)


def test_a_16_bit_parameter_used_whole_and_in_blocks_gets_the_full_paths_gradient():
    """the plan took the parameters' blocks before their float32 copies, so a bfloat16 W used whole and split had
    its parts' gradients rounded to bfloat16 before they were added (twice the full path's error)"""
    @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("2*H", "H"), "A": ("H", "I")})
    def Both(x, h, W, A):
        a, b = symcell.split(W, 2)
        g1, g2 = symcell.split(W @ h, 2)
        return symcell.tanh(a @ h + A @ x) * symcell.sigmoid(g1) + 0.5 * (b @ h) * g2
    torch.manual_seed(0)
    cell = Both(I=3, H=4, backend="reference", dtype=torch.bfloat16)
    xs = torch.randn(7, 3, 3, dtype=torch.bfloat16)
    grads = []
    for _ in range(2):   # the full path, then its plan
        cell.W.grad = None
        cell(xs)[0].float().sum().backward()
        grads.append(cell.W.grad)
    assert len(cell._binding.plans) == 1
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)


@needs_cpp
def test_a_planned_kernel_let_go_and_not_built_again_falls_back_as_the_full_path_does(monkeypatch):
    """a plan names its kernel by key; where the kernel was let go (a sweep over many cells) and building it again
    fails, the call takes the full path, which falls back to the reference backend (backend='auto'), as before"""
    cell, ref = LSTMCell(3, 4), LSTMCell(3, 4, backend="reference")
    ref.load_state_dict(cell.state_dict())
    x = torch.randn(2, 3)
    cell(x), cell(x)
    assert len(cell._binding.plans) == 1
    built = registry.kernel_for

    def full_disk(key):
        if key == cell._binding.keys["cpp"]:
            error = BuildError("no space left on device")
            error.lasting = False
            raise error
        return built(key)
    monkeypatch.setattr(registry, "_KERNELS", type(registry._KERNELS)())
    monkeypatch.setattr(registry, "kernel_for", full_disk)
    monkeypatch.setattr(module, "_fallback_warned", set())
    with pytest.warns(UserWarning, match=r"the cpp backend could not be built \(no space left on device\)"):
        got = cell(x)
    torch.testing.assert_close(got, ref(x))
    assert not len(cell._binding.plans)
