"""Every compiled backend against the reference backend: values and all gradients, float64 and float32,
and gradcheck in float64, for every cell of the zoo."""
import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import symcell
from symcell import log, registry, sigmoid, sqrt, tanh
from zoo import CASES, eager_scan_lengths, gradcheck_scan, outputs_and_grads, random_inputs, rel_err

DEVICE = {"cpp": "cpu", "triton": "cuda" if torch.cuda.is_available() else "cpu"}
BACKENDS = [b for b in ["cpp", "triton"] if symcell.backends.get(b).usable(torch.device(DEVICE[b]))]
# (backend, dtype, relative tolerance): cpp computes in the tensors' dtype; triton is float32 only
CASES_DTYPE = [(b, d, tol) for b in BACKENDS for d, tol in
               ([(torch.float64, 1e-9), (torch.float32, 1e-5)] if b == "cpp" else [(torch.float32, 1e-4)])]


@pytest.mark.parametrize("backend,dtype,tol", CASES_DTYPE)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(backend, dtype, tol, name):
    factory = CASES[name][0]
    dev = DEVICE[backend]
    torch.manual_seed(5)
    ref = factory(backend="reference").to(dtype)
    cell = factory(backend=backend).to(device=dev, dtype=dtype)
    cell.load_state_dict(ref.state_dict())
    # B = 9 splits the batch across threads in cpp; B = 17 spans two programs in triton (16 rows each)
    for T, B in [(6, 3), (1, 1), (4, 9)] + ([(3, 17)] if backend == "triton" else []):
        xs, states = random_inputs(cell, T=T, B=B, dtype=dtype, seed=T)
        outs_r, grads_r, cots = outputs_and_grads(ref, xs, states)
        on_dev = [t.detach().to(dev).requires_grad_() for t in xs + states]
        outs_c, grads_c, _ = outputs_and_grads(cell, on_dev[:len(xs)], on_dev[len(xs):], [c.to(dev) for c in cots])
        for a, b in zip(outs_c, outs_r):
            assert a.shape == b.shape and a.dtype == dtype
            assert rel_err(a.cpu(), b) < tol
        for a, b in zip(grads_c, grads_r):
            assert rel_err(a.cpu(), b) < tol


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "cpp"])   # gradcheck needs float64
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(backend, name):
    factory = CASES[name][0]
    torch.manual_seed(3)
    cell = factory(backend=backend).double()
    xs, states = random_inputs(cell, T=3, B=2, seed=4)
    assert gradcheck_scan(cell, xs, states)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "cpp"])   # triton: sizes are constexpr
def test_no_rebuild_for_new_sizes_and_lengths(backend):
    from zoo import Gated
    a = Gated(I=5, H=4, backend=backend)
    b = Gated(I=7, H=6, backend=backend)
    a(torch.randn(3, 2, 5))
    b(torch.randn(9, 5, 7), lengths=[9, 2, 0, 5, 9])
    assert a.source() == b.source()   # one build for the cell, whatever its sizes
    ka, kb = a._kernel(torch.device("cpu")), b._kernel(torch.device("cpu"))
    # one library, one operator namespace (the float32 one: a dtype a library, built when a call first needs it)
    assert ka._entries["forward"].ns(torch.float32) == kb._entries["forward"].ns(torch.float32)


@pytest.mark.cpp
def test_a_cell_builds_a_library_for_each_dtype_it_runs_in_and_each_refuses_the_others(monkeypatch):
    """float32 calls build the float32 library only, float64 calls another (half the code each, build.py); an
    operator called with the other dtype (as a deployed program could be) says which it computes in"""
    from zoo import Gated
    # a kernel of its own: the registry shares one Gated(I=3, H=4) per process, and a test run before in this
    # worker may have built its float64 library already
    monkeypatch.setattr(registry, "_KERNELS", collections.OrderedDict())
    cell = Gated(I=3, H=4, backend="cpp")
    forward = cell._kernel(torch.device("cpu"))._entries["forward"]
    built = forward.library._namespaces
    x = torch.randn(5, 2, 3)
    cell(x)
    assert set(built) == {torch.float32}
    ref = Gated(I=3, H=4, backend="reference").double()
    ref.load_state_dict(cell.state_dict())
    cell.double()
    torch.testing.assert_close(cell(x.double()), ref(x.double()), rtol=1e-12, atol=1e-12)
    assert set(built) == {torch.float32, torch.float64} and built[torch.float32] != built[torch.float64]
    op = forward.op(torch.float32)
    h = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"forward: xs\[0\] is Double but this library computes in Float"):
        op([x.double()], [h], [p.detach() for p in cell.parameters()], forward.dims, False, False,
           torch.empty(0, dtype=torch.int64), [])
    # (and the other tensors of a call in the library's dtype are checked against its first sequence's)
    with pytest.raises(TypeError, match=r"inits\[0\] \(h\) must have the first sequence's dtype Float, got Double"):
        op([x], [h], [p.detach().float() for p in cell.parameters()], forward.dims, False, False,
           torch.empty(0, dtype=torch.int64), [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_length_and_no_grad(backend):
    dev = DEVICE[backend]
    cell = CASES["LSTM"][0](backend=backend).to(dev)
    out, (h, c) = cell(torch.randn(0, 2, 3, device=dev))
    assert out.shape == (0, 2, 4) and torch.equal(h.cpu(), torch.zeros(2, 4))
    with torch.no_grad():
        out, _ = cell(torch.randn(4, 2, 3, device=dev))
    assert out.grad_fn is None


# cpp runs a step matmul's input term before the loop or in it (sc::hoist, by the rows a thread has), its step
# matmuls on the weights in panels or as stored (sc::direct and direct_grads, by the call's steps and rows), and its
# loop on each thread's rows or each step shared by the threads (sc::scan_columns, by the weights): every way
LOOP_CASES = [("reference", None, None, None)] + [
    (b, h, d, c) for b in BACKENDS
    for h, d, c in ([(h, d, "0") for h in "01" for d in "01"] + [("0", "0", "1"), ("1", "1", "1")] if b == "cpp" else
                    [(None, None, None)])]


@pytest.mark.parametrize("backend,hoist,direct,columns", LOOP_CASES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_lengths_hold_the_state_inside_the_loop(backend, hoist, direct, columns, name, monkeypatch):
    """`lengths=`, forward and reverse, against each row run alone over its own steps: outputs, final states
    and every gradient (the masking runs inside each backend's fused loop); and with initial states that need no
    gradient (the cpp backward leaves its last step's transposed matmuls into theirs out: skips.LAST)."""
    if hoist is not None:
        monkeypatch.setenv("SYMCELL_HOIST", hoist)
        monkeypatch.setenv("SYMCELL_DIRECT", direct)
        monkeypatch.setenv("SYMCELL_SCAN_COLUMNS", columns)
    factory, step, outputs = CASES[name]
    dev = DEVICE.get(backend, "cpu")
    dtype, tol = (torch.float32, 1e-4) if backend == "triton" else (torch.float64, 1e-9)
    torch.manual_seed(6)
    cell = factory(backend=backend).to(dev, dtype)
    lengths = [5, 0, 3, 1, 5, 2, 4, 5, 1]        # B = 9: the cpp scan splits rows across threads
    for reverse, states_grad in ((False, True), (True, True), (False, False), (True, False)):
        xs, states = random_inputs(cell, T=5, B=9, dtype=dtype, seed=int(reverse))
        xs = [t.detach().to(dev).requires_grad_() for t in xs]
        states = [t.detach().to(dev).requires_grad_(states_grad) for t in states]
        ys, fin = symcell.scan(cell, tuple(xs), tuple(states), reverse=reverse,
                               lengths=torch.tensor(lengths, device=dev))
        outs = (*(ys if isinstance(ys, tuple) else (ys,)), *fin)
        params = list(cell.parameters())
        r_ys, r_fin = eager_scan_lengths(step, xs, states, params, outputs, lengths, reverse)
        refs = (*r_ys, *r_fin)
        cots = [torch.randn_like(o) for o in outs]
        wrt = [*xs, *(states if states_grad else ()), *params]
        g = torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs, cots)), wrt)
        g_r = torch.autograd.grad(sum((o * c).sum() for o, c in zip(refs, cots)), wrt)
        for a, b in zip(outs + g, refs + g_r):
            assert rel_err(a.cpu(), b.cpu()) < tol


@pytest.mark.cpp
@pytest.mark.parametrize("threads", [2], indirect=True)
@pytest.mark.parametrize("hoist,columns", [("0", "0"), ("1", "0"), ("0", "1"), ("1", "1")])
@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_gemms_over_all_rows(hoist, columns, name, threads, monkeypatch):
    """T*B = 320 rows in float32 on 2 threads: the cpp backend's GEMMs over all rows (an input term before the
    loop, the gradients after it) run in oneDNN brgemm blocks, several a thread (sc::mm_tall_*), mixed lengths
    and all; and its loop gives each thread 16 rows, or shares each step's 32 (sc::scan_columns, forced: the
    sizes that choose it by itself take seconds a call). Against each row run alone by the eager loop in float64."""
    monkeypatch.setenv("SYMCELL_HOIST", hoist)
    monkeypatch.setenv("SYMCELL_SCAN_COLUMNS", columns)
    factory, step, outputs = CASES[name]
    torch.manual_seed(7)
    cell = factory(backend="cpp").float()
    lengths = [int(n) for n in torch.randint(0, 11, (32,))]
    xs, states = random_inputs(cell, T=10, B=32, dtype=torch.float32, seed=8)
    xs, states = ([t.detach().requires_grad_() for t in ts] for ts in (xs, states))
    ys, fin = symcell.scan(cell, tuple(xs), tuple(states), lengths=torch.tensor(lengths))
    outs = (*(ys if isinstance(ys, tuple) else (ys,)), *fin)
    params = list(cell.parameters())
    wide = [t.detach().double().requires_grad_() for t in (*xs, *states, *params)]
    r_ys, r_fin = eager_scan_lengths(step, wide[:len(xs)], wide[len(xs):len(xs) + len(states)],
                                     wide[len(xs) + len(states):], outputs, lengths, False)
    refs = (*r_ys, *r_fin)
    cots = [torch.randn_like(o) for o in outs]
    g = torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs, cots)), [*xs, *states, *params])
    g_r = torch.autograd.grad(sum((o * c.double()).sum() for o, c in zip(refs, cots)), wide)
    for a, b in zip(outs + g, refs + g_r):
        assert rel_err(a, b) < 1e-4


@pytest.fixture
def uninitialised_nan():
    """torch.empty's memory filled with NaN (torch's deterministic mode; at::empty in the generated code too): a
    result some path leaves unwritten, which fresh pages would hold as zeros, shows"""
    before = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    assert torch.empty(2).isnan().all()
    yield
    torch.use_deterministic_algorithms(before[0])
    torch.utils.deterministic.fill_uninitialized_memory = before[1]


@pytest.mark.cpp
@pytest.mark.parametrize("name", sorted(CASES))
def test_weight_gradients_assigned_into_uninitialised_memory(name, uninitialised_nan):
    """A weight gradient's first GEMMs assign it (kernel.weight_grads_assigned: every zoo cell's matrices, one
    range of columns or two), the backward allocates it uninitialised (zeros only where no steps run): with NaN
    there, the gradients against the reference backend's, T = 0, 1, 3 and B = 0, 1, 5 (a PREV operand's first
    rows are its initial state: at B = 0 a GEMM of no rows assigns zeros)"""
    factory = CASES[name][0]
    torch.manual_seed(5)
    ref = factory(backend="reference").double()
    cell = factory(backend="cpp").double()
    cell.load_state_dict(ref.state_dict())
    for T, B in [(0, 1), (1, 0), (1, 1), (3, 5), (3, 0)]:
        xs, states = random_inputs(cell, T=T, B=B, seed=T)
        _, grads_r, cots = outputs_and_grads(ref, xs, states)
        _, grads_c, _ = outputs_and_grads(cell, xs, states, cots)
        for a, b in zip(grads_c, grads_r):
            assert a.shape == b.shape and not a.isnan().any() and rel_err(a, b) < 1e-9, (T, B)


@pytest.mark.cpp
@pytest.mark.parametrize("threads,onednn", [(1, True), (2, True), (2, False)], indirect=["threads"])
@pytest.mark.parametrize("T,B,I,H", [(6, 24, 40, 300), (40, 1, 1030, 20), (3, 50, 9, 33)])
def test_float32_lstm_gemms_in_blocks_against_nn(T, B, I, H, threads, onednn, uninitialised_nan):
    """The GEMMs over all T*B rows cut their reduction into blocks past 1024 (4H = 1200 for d_x; I = 1030 before
    the loop), their rows into blocks that do not divide T*B, their columns into panels of 32 with a narrower last
    one, a weight gradient's T*B rows into blocks of 128 with the last padded (the first assigned: the weight
    gradients are uninitialised memory, NaN here): nn.LSTM in float64 with the same weights. On 1 and 2 threads,
    and with torch's oneDNN off (BLAS instead)."""
    torch.manual_seed(9)
    cell = symcell.cells.LSTM(I, H, backend="cpp")
    ref = torch.nn.LSTM(I, H).double()
    ref.load_state_dict({k: v.double() for k, v in cell.state_dict().items()})
    x = torch.randn(T, B, I, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = onednn   # (its flags() context warns about Intel GPUs)
    try:
        out, (h, c) = cell(x)
        out_r, (h_r, c_r) = ref(x64)
        cots = [torch.randn_like(t) for t in (out, h, c)]
        sum((t * k).sum() for t, k in zip((out, h, c), cots)).backward()
        sum((t * k.double()).sum() for t, k in zip((out_r, h_r, c_r), cots)).backward()
    finally:
        torch.backends.mkldnn.enabled = before
    pairs = [(out, out_r), (h, h_r), (c, c_r), (x.grad, x64.grad)]
    pairs += [(p.grad, q.grad) for p, q in zip(cell.parameters(), ref.parameters())]
    for a, b in pairs:
        assert rel_err(a, b) < 1e-5


@pytest.mark.parametrize("threads", [2], indirect=True)
def test_cpp_row_order_follows_how_its_loop_splits(threads, monkeypatch):
    """The cpp loop gives each thread a slice of the rows (from B >= 4 threads), unless the cell's weights are more
    than each thread can stream every step (sc::scan_columns, from 8 MiB): then one thread runs the loop, and each
    step shares its work. The row order symcell.scan chooses follows: longest first with one slice, dealt
    round-robin over the slices so each holds long and short rows alike. The rule's bound is sc.h's constant, in
    bytes as the kernel runs (float32 for a 16-bit module)."""
    from symcell.backends import cpp
    from symcell.sequence import row_order
    sc_h = (Path(cpp.__file__).parent / "sc.h").read_text()
    assert f"SCAN_COLUMNS_FROM = int64_t({cpp.SCAN_COLUMNS_FROM >> 20}) << 20;" in sc_h
    assert "weight_bytes >= SCAN_COLUMNS_FROM;" in sc_h and "weight_bytes >= SCAN_COLUMNS_FROM\n" in \
        Path(cpp.__file__).read_text()   # (the mirror compares as sc.h does: from the bound on)
    monkeypatch.delenv("SYMCELL_SCAN_COLUMNS", raising=False)
    lengths = torch.tensor([3, 9, 1, 7, 9, 2, 5, 8])            # B = 8: two slices of 4 rows
    longest_first = torch.argsort(lengths, descending=True, stable=True)
    dealt = longest_first[[0, 2, 4, 6, 1, 3, 5, 7]]               # slice 0: ranks 0, 2, 4, 6; slice 1: 1, 3, 5, 7
    small = symcell.cells.LSTM(64, 64, backend="cpp")             # 8 * 64 * 64 * 4 bytes = 128 KiB
    large = symcell.cells.LSTM(512, 512, backend="cpp")           # 4 * 512 * (512 + 512) elements: 8 MiB float32
    under = symcell.cells.LSTM(511, 512, backend="cpp")           # 4 * 512 * (511 + 512): 8 MiB less 8 KiB
    assert large._bindings[0].weight_elements == 4 * 512 * (512 + 512) == (8 << 20) // 4
    assert torch.equal(row_order(small._bindings[0], lengths, torch.float32), dealt)
    assert torch.equal(row_order(under._bindings[0], lengths, torch.float32), dealt)
    assert torch.equal(row_order(large._bindings[0], lengths, torch.float32), longest_first)   # (from the bound on)
    assert torch.equal(row_order(large._bindings[0], lengths, torch.bfloat16), longest_first)
    # symcell.RNN's layers, one order for all: the widest's
    assert torch.equal(row_order([small._bindings[0], large._bindings[0]], lengths, torch.float32), longest_first)
    monkeypatch.setenv("SYMCELL_SCAN_COLUMNS", "1")
    assert torch.equal(row_order(small._bindings[0], lengths, torch.float32), longest_first)
    monkeypatch.setenv("SYMCELL_SCAN_COLUMNS", "0")
    assert torch.equal(row_order(large._bindings[0], lengths, torch.float64), dealt)
    torch.set_num_threads(1)
    monkeypatch.delenv("SYMCELL_SCAN_COLUMNS")
    assert torch.equal(row_order(small._bindings[0], lengths, torch.float32), longest_first)


@pytest.mark.parametrize("backend", ["reference"] + BACKENDS)
def test_the_operator_takes_lengths_in_any_row_order(backend):
    """symcell.scan sorts rows longest first (the cpp kernel then skips ended rows); the operator itself must be
    right for any order: permuting the rows permutes its results and gradients."""
    from symcell.sequence import scan_op
    dev = DEVICE.get(backend, "cpu")
    dtype, tol = (torch.float32, 1e-5) if backend == "triton" else (torch.float64, 1e-12)
    cell = CASES["Gated"][0](backend=backend).to(dev, dtype)
    key = cell._kernel_key(torch.device(dev))
    xs, states = random_inputs(cell, T=5, B=9, dtype=dtype)
    lengths = torch.tensor([1, 5, 0, 3, 5, 2, 4, 1, 5])
    order = torch.argsort(lengths, descending=True, stable=True)

    def run(perm):
        x = xs[0].detach()[:, perm].to(dev).requires_grad_()
        st = [s.detach()[perm].to(dev).requires_grad_() for s in states]
        params = [p.detach().requires_grad_() for p in cell.parameters()]
        (ys,), fin = scan_op(key, (x,), tuple(st), tuple(params), lengths[perm].to(dev))
        outs = (ys, *fin)
        g = torch.Generator().manual_seed(2)
        cots = [torch.randn(o.shape, generator=g, dtype=dtype).to(dev) for o in outs]
        cots = [c[:, perm] if c.dim() == 3 else c[perm] for c in cots]
        grads = torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs, cots)), [x, *st, *params])
        return outs, grads

    (outs_a, grads_a), (outs_b, grads_b) = run(torch.arange(9)), run(order)
    for a, b in zip(outs_a + grads_a[:1 + len(states)], outs_b + grads_b[:1 + len(states)]):
        b = b.index_select(1 if b.dim() == 3 else 0, torch.argsort(order).to(b.device))
        assert rel_err(a.cpu(), b.cpu()) < tol
    for a, b in zip(grads_a[1 + len(states):], grads_b[1 + len(states):]):
        assert rel_err(a.cpu(), b.cpu()) < tol


@pytest.mark.parametrize("backend", ["reference"] + BACKENDS)
@pytest.mark.parametrize("name", ["LSTM", "TwoInputs"])
def test_padding_that_is_not_finite_reaches_no_gradient(backend, name):
    """NaN and inf past a row's length (log-features of zero-padded audio): outputs and every gradient as with
    zeros there, and the padding's own gradient zero, as packing gives (they made every gradient NaN: a kernel
    computes the ended rows' steps, or a GEMM after the loop multiplies them by zeros)"""
    dev = DEVICE.get(backend, "cpu")
    dtype = torch.float32 if backend == "triton" else torch.float64
    cell = CASES[name][0](backend=backend).to(dev, dtype)
    lengths = torch.tensor([5, 2, 0, 4], device=dev)
    padded = (torch.arange(5, device=dev)[:, None] >= lengths[None, :])[:, :, None]
    xs, states = random_inputs(cell, T=5, B=4, dtype=dtype, requires_grad=False)
    v = torch.randn_like(xs[0]).to(dev)
    # the second order too (the masking is the Kernel's, the same on every backend: the interpreter's takes 10 s)
    second = name == "LSTM" and backend != "triton"
    for reverse in (False, True):
        results = []
        for fill in (0.0, float("nan"), float("-inf")):
            x_ = [x.to(dev).masked_fill(padded, fill).requires_grad_() for x in xs]
            s_ = [s.to(dev).requires_grad_() for s in states]

            def loss(*x_):
                ys, fin = symcell.scan(cell, tuple(x_), tuple(s_), reverse=reverse, lengths=lengths)
                outs = (*(ys if isinstance(ys, tuple) else (ys,)), *fin)
                return sum(o.square().sum() for o in outs), outs
            total, outs = loss(*x_)
            wrt = [*x_, *s_, *cell.parameters()]
            g = torch.autograd.grad(total, wrt, create_graph=second)
            assert all(not gx.masked_select(padded).any() for gx in g[:len(x_)])
            if second:   # (its tangent scans), with the padding of the vector too
                v_ = v.masked_fill(padded, fill)
                g = (*g, *torch.autograd.grad(g[0], wrt, v_, retain_graph=True),   # (Hessian-vector products)
                     *torch.autograd.grad(sum(gi.square().sum() for gi in g), wrt),
                     torch.func.jvp(torch.func.grad(lambda x: loss(x)[0]), (x_[0].detach(),), (v_,))[1])
            results.append(outs + g)
        for other in results[1:]:
            for a, b in zip(other, results[0]):
                assert torch.equal(a, b)



@symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I"), "U": ("H", "H")})
def LogFeatures(x, h, W, U):
    """log of the input into a matmul (the cpp backend runs that term before the loop: symcell's hoisting)"""
    return tanh(W @ log(x) + U @ h)


def log_features_step(x, h, W, U):
    return (torch.tanh(torch.log(x) @ W.T + h @ U.T),)


@symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I")})
def RootFeatures(x, h, W):
    """the matmul on the input alone: every backend runs it over all T*B rows, before the loop and after it"""
    return tanh(W @ sqrt(x) + h)


def root_features_step(x, h, W):
    return (torch.tanh(torch.sqrt(x) @ W.T + h),)


@symcell.define(inputs={"x": "H"}, state={"h": "H", "c": "H"}, params={"W": ("2*H", "2*H"), "a": ("H",)})
def RootGate(x, h, c, W, a):
    """log and sqrt of the input in a matmul on a concatenation and beside it, a vector parameter's gradient"""
    i, z = symcell.split(W @ symcell.cat(log(x), h), 2)
    c = c + sigmoid(i) * tanh(z) + a * sqrt(x)
    return tanh(c) / x, c


def root_gate_step(x, h, c, W, a):
    i, z = (torch.cat([torch.log(x), h], -1) @ W.T).chunk(2, -1)
    c = c + torch.sigmoid(i) * torch.tanh(z) + a * torch.sqrt(x)
    return torch.tanh(c) / x, c


@pytest.mark.parametrize("backend,hoist,direct,columns", LOOP_CASES)
@pytest.mark.parametrize("Cell,step,dims", [(LogFeatures, log_features_step, {"I": 3, "H": 4}),
                                            (RootFeatures, root_features_step, {"I": 3, "H": 4}),
                                            (RootGate, root_gate_step, {"H": 4})])
def test_an_ended_rows_steps_add_nothing_where_the_padding_is_outside_the_cells_domain(
        backend, hoist, direct, columns, Cell, step, dims, monkeypatch):
    """A cell of log(x), sqrt(x), 1/x on positive inputs: the zeros that lengths= and packing put past a row's
    length give -inf and inf there (log(0), sqrt's derivative at 0, 1/0). Every result as each row run alone, the
    padding's gradient zero (an ended row's step wrote -inf into a residual, a GEMM over all T*B rows multiplied
    it by a zero cotangent: NaN weight gradients)"""
    if hoist is not None:
        monkeypatch.setenv("SYMCELL_HOIST", hoist)
        monkeypatch.setenv("SYMCELL_DIRECT", direct)
        monkeypatch.setenv("SYMCELL_SCAN_COLUMNS", columns)
    dev = DEVICE.get(backend, "cpu")
    dtype, tol = (torch.float32, 1e-4) if backend == "triton" else (torch.float64, 1e-9)
    torch.manual_seed(6)
    cell = Cell(**dims, backend=backend).to(dev, dtype)
    lengths = [5, 0, 3, 1, 5, 2, 4, 5, 1]
    padded = (torch.arange(5)[:, None] >= torch.tensor(lengths)[None, :])[:, :, None].to(dev)
    for reverse in (False, True):
        xs, states = random_inputs(cell, T=5, B=9, dtype=dtype, seed=int(reverse))
        xs = [(x.detach().abs() + 0.5).to(dev).masked_fill(padded, 0).requires_grad_() for x in xs]
        states = [s.detach().to(dev).requires_grad_() for s in states]
        ys, fin = symcell.scan(cell, tuple(xs), tuple(states), reverse=reverse,
                               lengths=torch.tensor(lengths, device=dev))
        outs, params = (ys, *fin), list(cell.parameters())
        r_ys, r_fin = eager_scan_lengths(step, xs, states, params, [0], lengths, reverse)
        refs = (*r_ys, *r_fin)
        cots = [torch.randn_like(o) for o in outs]
        wrt = [*xs, *states, *params]
        second = backend != "triton"   # (and the tangent scans: second derivatives, where they run in seconds)
        g = torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs, cots)), wrt, create_graph=second)
        g_r = torch.autograd.grad(sum((o * c).sum() for o, c in zip(refs, cots)), wrt, create_graph=second)
        assert not g[0].masked_select(padded).any()
        for a, b in zip(outs + g, refs + g_r):
            assert rel_err(a.cpu(), b.cpu()) < tol
        if second:   # a Hessian-vector product, the padding's part of the vector NaN
            vs = [torch.randn_like(a) for a in wrt]
            vs[0] = vs[0].masked_fill(padded, float("nan"))
            hv = torch.autograd.grad(g, wrt, vs)
            vs[0] = vs[0].masked_fill(padded, 0)   # (the eager loop never reads the padding: its part is 0)
            hv_r = torch.autograd.grad(g_r, wrt, vs)
            assert not hv[0].masked_select(padded).any()
            for a, b in zip(hv, hv_r):
                assert rel_err(a.cpu(), b.cpu()) < tol
    # the operator itself, on rows in the order given (symcell.scan sorts them longest first: the cpp step then
    # stops at its last running row, and with another order it computes ended rows before it)
    from symcell.sequence import scan_op
    (ys,), fin = scan_op(cell._kernel_key(torch.device(dev)), tuple(xs), tuple(states), tuple(params),
                         torch.tensor(lengths, device=dev))
    ys = ys.masked_fill(padded, 0)   # (its outputs past a row's length are the held state: symcell.scan's zeros)
    r_ys, r_fin = eager_scan_lengths(step, xs, states, params, [0], lengths)
    g = torch.autograd.grad(sum((o * c).sum() for o, c in zip((ys, *fin), cots)), wrt)
    g_r = torch.autograd.grad(sum((o * c).sum() for o, c in zip((*r_ys, *r_fin), cots)), wrt)
    assert not g[0].masked_select(padded).any()
    for a, b in zip((ys, *fin, *g), (*r_ys, *r_fin, *g_r)):
        assert rel_err(a.cpu(), b.cpu()) < tol

def test_the_backends_this_machine_must_test_are_usable():
    """.ci/run names the backends CI must test (SYMCELL_REQUIRE_BACKENDS=cpp,triton): a machine that lost its
    compiler or Triton would otherwise turn their tests into empty parametrizations, and pass."""
    import os
    for name in filter(None, os.environ.get("SYMCELL_REQUIRE_BACKENDS", "").split(",")):
        assert name in BACKENDS, f"backend {name!r} must be tested here (SYMCELL_REQUIRE_BACKENDS) but is not usable"


def test_an_installed_triton_is_tested():
    # the triton tests are parametrized over usable backends: an installed Triton that cannot run (e.g. its
    # interpreter missing numpy) would otherwise drop them silently
    import importlib.util
    if importlib.util.find_spec("triton") is not None:
        assert "triton" in BACKENDS, "triton is installed but its backend is not usable here"


@pytest.mark.triton
@pytest.mark.skipif("triton" not in BACKENDS, reason="needs triton (a GPU, or the interpreter)")
def test_triton_rejects_other_dtypes_clearly():
    cell = CASES["GRU"][0](backend="triton").to(DEVICE["triton"]).double()
    with pytest.raises(symcell.DtypeError, match=r"backend='triton' computes in float32; got torch.float64 \(the "
                                                 r"input, the states and the parameters: one dtype\)"):
        cell(torch.randn(3, 2, 3, dtype=torch.float64, device=DEVICE["triton"]))


@symcell.define(inputs={"x": "I"}, state={"h": "H"},
                params={"B": ("H", "I"), "T": ("H", "H"), "n": ("H",), "r": ("H",), "j": ("H",), "BB": ("H",)})
def Crowded(x, h, B, T, n, r, j, BB):
    """parameter names that the generated code's own names could shadow"""
    return tanh(B @ x + T @ (h * r)) * n + j * BB


@symcell.define(inputs={"x": "I"}, state={"h": "H"},
                params={"h_seq": ("H", "I"), "h_init": ("H", "H"), "x_t": ("H",), "acc_0": ("H",), "h_ys": ("H",),
                        "h_res": ("H",), "h_last": ("H",)})
def Suffixed(x, h, h_seq, h_init, x_t, acc_0, h_ys, h_res, h_last):
    """parameter names that are other names plus the suffixes generated code once appended to them"""
    return tanh(h_seq @ x + h_init @ h) * x_t + acc_0 * h + h_ys * h_res - h_last


@symcell.define(inputs={"x": "I"}, state={"h": "H", "EIO": "H"},
                params={"M_PI": ("3*H", "I"), "U": ("3*H", "H"), "stdout": ("H",), "linux": ("H",), "M_PIl": ("H",)})
def Macros(x, h, EIO, M_PI, U, stdout, linux, M_PIl):
    """names that the headers of the cpp code define as macros (M_PI, and M_PI_2 of a block of it; M_PIl; EIO;
    stdout; linux in GNU C++): the preprocessor expanded them and the build failed at the first call"""
    a, b, c = symcell.split(M_PI @ x + U @ h, 3)
    return tanh(a + EIO) * stdout + linux * M_PIl, EIO * sigmoid(b) + c * (symcell.split(M_PI, 3)[2] @ x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("Cell", [Crowded, Suffixed, Macros])
def test_user_names_never_collide_with_generated_names(backend, Cell):
    dev = DEVICE[backend]
    torch.manual_seed(0)
    ref = Cell(I=3, H=5, backend="reference")
    cell = Cell(I=3, H=5, backend=backend).to(dev)
    cell.load_state_dict(ref.state_dict())
    xs, states = random_inputs(ref, T=4, B=9, dtype=torch.float32)
    outs_r, grads_r, cots = outputs_and_grads(ref, xs, states)
    on_dev = [t.detach().to(dev).requires_grad_() for t in xs + states]
    outs_c, grads_c, _ = outputs_and_grads(cell, on_dev[:1], on_dev[1:], [c.to(dev) for c in cots])
    for a, b in zip(outs_c + grads_c, outs_r + grads_r):
        assert rel_err(a.cpu(), b) < 1e-4
    if backend == "cpp":   # the macros a value's name would meet are undefined after the headers, only they
        undefined = sorted(line[7:] for line in cell.source().splitlines() if line.startswith("#undef "))
        # (M_PI, a weight the first-order scans read only as a matmul's, is named there only inside _w_M_PI, its
        # sc::Stored, and _ld_M_PI: no macro to undefine)
        want = {"Macros": ["EIO", "EIO_new", "M_PI_2_x", "M_PIl", "linux", "stdout"],
                "Crowded": ["BB"]}.get(Cell.__name__, [])
        assert undefined == want, undefined


@symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I + H")})
def SplitAtSizes(x, h, W):
    """cat(h, x) split at 1 and re-joined: a matmul's operand copied in pieces whose widths are size expressions
    (H + I - 1; the C++ copied sizeof(scalar_t) * _dim_H + _dim_I - 1 bytes a row, into the next row)"""
    p, q = symcell.split(symcell.cat(h, x), [1, "H + I - 1"])
    return tanh(W @ symcell.cat(p, q))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_matmul_operand_in_pieces_of_size_expressions(backend):
    """against an eager loop with torch autograd, repeatedly (rows split over threads: a row's copy that ran into
    the next row's was overwritten or not as the threads ran), values and gradients"""
    dev, dtype = DEVICE[backend], (torch.float64 if backend == "cpp" else torch.float32)
    torch.manual_seed(0)
    cell = SplitAtSizes(I=3, H=3, backend=backend).to(dev, dtype)
    W = cell.W.detach().clone().requires_grad_()
    x = torch.randn(6, 40, 3, dtype=dtype, device=dev, requires_grad=True)
    h0 = torch.randn(40, 3, dtype=dtype, device=dev, requires_grad=True)
    h, ys = h0, []
    for t in range(6):
        h = torch.tanh(torch.cat([h, x[t]], -1) @ W.T)
        ys.append(h)
    want = torch.stack(ys)
    cot = torch.randn_like(want)
    grads = torch.autograd.grad(want, (x, h0, W), cot)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for _ in range(10):
        got, _ = cell(x, h0)
        assert rel_err(got, want) < tol
    for a, b in zip(torch.autograd.grad(got, (x, h0, cell.W), cot), grads):
        assert rel_err(a, b) < tol


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_no_steps_and_no_rows_together_with_gradients(backend):
    """T = 0 and B = 0: the final state is the initial one, an empty tensor, which no data pointer tells from its
    input (backends/base.py unaliased): autograd refused a result that was its own input"""
    cell = symcell.cells.LSTM(3, 4, backend=backend).to(DEVICE.get(backend, "cpu"))
    x = torch.randn(0, 0, 3, device=DEVICE.get(backend, "cpu"), requires_grad=True)
    y, (h, c) = cell(x)
    assert y.shape == (0, 0, 4) and h.shape == (1, 0, 4)
    (y.sum() + h.sum() + c.sum()).backward()
    assert x.grad.shape == x.shape


def test_the_plain_torch_references_take_a_batch_of_none():
    """slstm_reference reshaped to (B, -1), which a batch of 0 rows cannot infer"""
    from zoo import eager_scan
    for name, (make, reference, outputs) in CASES.items():
        cell = make(backend="reference")
        xs, states = random_inputs(cell, T=2, B=0, dtype=torch.float32)
        ys, finals = eager_scan(reference, xs, states, cell._param_list(), outputs)
        want, got_finals = symcell.scan(cell, xs, states)
        assert [y.shape for y in ys] == [y.shape for y in (want if isinstance(want, tuple) else (want,))], name
        assert [f.shape for f in finals] == [f.shape for f in got_finals], name


@pytest.mark.cpp
def test_a_cell_of_a_long_name_builds():
    """the library's file name carried the whole cell name: 240 characters failed the build, "File name too long\""""
    Long = symcell.define(inputs={"x": "H"}, state={"h": "H"}, name="A" * 240)(lambda x, h: tanh(x + 0.5 * h))
    x = torch.randn(2, 1, 3)
    torch.testing.assert_close(Long(H=3, backend="cpp")(x)[0], Long(H=3, backend="reference")(x)[0])


THREAD_COUNT = r"""
import threading, torch
from symcell.cells import LSTM
torch.manual_seed(0)
m = LSTM(7, 33, backend="cpp")
x = torch.randn(20, 64, 7)
def grads(loss):
    return torch.autograd.grad(loss, [m.bias_ih_l0, m.weight_hh_l0])
torch.set_num_threads(2)
y, _ = m(x)
want = grads((y * y).sum())
out, go = {}, threading.Event()
def worker():
    torch.get_num_threads()     # this thread's count: 2, torch's then
    go.wait()
    out["g"] = grads(out["loss"])   # its first call into the library: a backward
    out["count"] = torch.get_num_threads()
t = threading.Thread(target=worker)
t.start()
y, _ = m(x)
out["loss"] = (y * y).sum()
torch.set_num_threads(8)        # torch's count, not the worker's
go.set()
t.join()
for a, b in zip(out["g"], want):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
print("count", out["count"])
"""


@pytest.mark.cpp
def test_a_threads_own_count_holds_through_its_first_call():
    """A backward on a thread kept at 2 threads while torch was set to 8 elsewhere: the library's own copy of
    ATen's per-thread init flag set the thread to 8 mid-call, after its per-thread partial sums were sized for
    2 (segfault or heap corruption, a bias gradient's partials lost), and left the thread at 8. In a child
    process, as a crash would take the test run with it."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    run = subprocess.run([sys.executable, "-c", THREAD_COUNT], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-1] == "2"    # the worker's count, as nn.LSTM leaves it


@pytest.mark.cpp
def test_the_cpp_switches_take_true_and_false_and_refuse_what_they_do_not_understand(monkeypatch):
    """SYMCELL_HOIST, _DIRECT, _SCAN_COLUMNS and _BF16_PRODUCTS: 1, true, on, yes or 0, false, off, no (any case);
    unset or empty leaves the choice to the kernel. They read the first character only: "false" (and "off", "no")
    forced nothing, silently, and "flase" or "2" were taken too. Refused by every cell's operator, also one whose
    code reads no such switch (a GRU's step has no input term to hoist)"""
    gru = symcell.cells.GRU(8, 16, backend="cpp")
    monkeypatch.setenv("SYMCELL_HOIST", "flase")
    with pytest.raises(ValueError, match="SYMCELL_HOIST='flase' is not understood"):
        gru(torch.randn(5, 3, 8))
    monkeypatch.delenv("SYMCELL_HOIST")
    cell = symcell.cells.LSTM(8, 16, backend="cpp")
    x, lengths = torch.randn(5, 12, 8), torch.tensor([5, 3, 1, 4, 5, 2, 2, 1, 5, 3, 4, 1])
    want, _ = cell(x, lengths=lengths)
    for variable in ("SYMCELL_HOIST", "SYMCELL_DIRECT", "SYMCELL_SCAN_COLUMNS", "SYMCELL_BF16_PRODUCTS"):
        for value in ("true", "FALSE", "On", "off", "yes", "no", "1", "0", ""):
            monkeypatch.setenv(variable, value)
            torch.testing.assert_close(cell(x, lengths=lengths)[0], want)
        for value in ("flase", "2", " 0"):
            monkeypatch.setenv(variable, value)
            with pytest.raises(ValueError, match=f"{variable}='{value}' is not understood"):
                cell(x, lengths=lengths)
        monkeypatch.delenv(variable)
    # and they do what they say: bfloat16 products off with "false" (on this CPU, where they are on by default)
    from symcell.sequence import scan_op
    low = symcell.cells.LSTM(32, 64, backend="cpp").bfloat16()
    key, params = low._bindings[0].kernel_key(torch.device("cpu")), tuple(p.detach().float() for p in low.parameters())
    xs, h0 = torch.randn(6, 32, 32).bfloat16().float(), torch.zeros(32, 64)

    def run(value):
        monkeypatch.setenv("SYMCELL_BF16_PRODUCTS", value)
        return scan_op(key, (xs,), (h0, h0), params, None, computing_for=torch.bfloat16)[0][0]
    assert torch.equal(run("false"), run("0")) and torch.equal(run("ON"), run("1"))


@pytest.mark.triton
@pytest.mark.skipif("triton" not in BACKENDS, reason="needs triton (a GPU, or the interpreter)")
def test_triton_leaves_out_the_gemms_after_the_loop_that_nobody_needs():
    """The triton backward's GEMMs after its loop (cuBLAS on a GPU) that skips.py says nobody needs are not run: a
    first layer's d_x, a frozen weight's gradient (FlopCounterMode counts the host code's torch.mm; the kernels'
    matmuls are not counted). The gradients asked for are the reference backend's."""
    from torch.utils.flop_counter import FlopCounterMode
    T, B, I, H = 3, 2, 5, 4
    dev = DEVICE["triton"]
    torch.manual_seed(0)
    ref = symcell.cells.LSTM(I, H, backend="reference")
    cell = symcell.cells.LSTM(I, H, backend="triton").to(dev)
    cell.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)

    def run(m, x_grad, frozen):
        for n, p in m.named_parameters():
            p.requires_grad_(n != frozen)
            p.grad = None
        xs = x.to(next(m.parameters()).device).requires_grad_(x_grad)
        with FlopCounterMode(display=False) as fc:
            m(xs)[0].sum().backward()
        return fc.get_total_flops(), [t.grad for t in (xs, *m.parameters())]
    gemm = T * B * 2 * I * 4 * H   # d_x, or the gradient of weight_ih: (T*B, 4H) by (4H, I)
    counts = {}
    for x_grad, frozen in ((True, None), (False, None), (False, "weight_ih_l0")):
        counts[x_grad, frozen], got = run(cell, x_grad, frozen)
        _, want = run(ref, x_grad, frozen)
        for a, b in zip(got, want):
            assert (a is None) == (b is None)
            if a is not None:
                assert rel_err(a.cpu(), b) < 1e-4
    assert counts[True, None] - counts[False, None] == gemm
    assert counts[False, None] - counts[False, "weight_ih_l0"] == gemm
