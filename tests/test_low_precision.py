"""bfloat16 and float16: a cell whose parameters and inputs are in a 16-bit float dtype runs with its state and
every accumulation in float32 and returns results in that dtype; under torch.autocast it runs in autocast's
dtype, as nn.LSTM and nn.GRU do. Against the eager loop in float64 on the same (rounded) weights and inputs."""
import os

import pytest
import torch
from torch import nn

import symcell
from symcell.cells import GRU, LLTM, LSTM, GRUCell, LSTMCell
from zoo import CASES, eager_scan, random_inputs, rel_err

DEVICE = {"cpp": "cpu", "triton": "cuda" if torch.cuda.is_available() else "cpu"}
BACKENDS = ["reference"] + [b for b in ["cpp", "triton"] if symcell.backends.get(b).usable(torch.device(DEVICE[b]))]
LOW = [torch.bfloat16, torch.float16]
# results are rounded once to the 16-bit dtype (8 or 11 significant bits): the documented tolerance, relative to
# the largest value, is a few units in the last place of that dtype
TOL = {torch.bfloat16: 2e-2, torch.float16: 4e-3}


def outs_and_grads(cell, xs, states, params, step=None, outputs=None):
    if step is None:
        ys, fin = symcell.scan(cell, tuple(xs), tuple(states))
    else:
        ys, fin = eager_scan(step, xs, states, params, outputs)
    outs = (*(ys if isinstance(ys, tuple) else (ys,)), *fin)
    g = torch.Generator().manual_seed(3)
    cots = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in outs]
    wrt = [*xs, *states, *params]
    grads = torch.autograd.grad(sum((o.double() * c.to(o.device)).sum() for o, c in zip(outs, cots)), wrt)
    return outs, grads


# triton (the interpreter without a GPU) on two cells: the cast is the same code for every backend
CELL_BACKENDS = [(n, b) for n in sorted(CASES) for b in BACKENDS if b != "triton" or n in ("LSTM", "GRU")]


# (the cpp backend's bfloat16 scans multiply their GEMMs' operands rounded to bfloat16 where the CPU can, sc.h's
# products16; "float32 products" is the same scan with SYMCELL_BF16_PRODUCTS=0)
CELL_CASES = [(n, b, d, p) for n, b in CELL_BACKENDS for d in LOW
              for p in (["float32 products", "bfloat16 products"] if b == "cpp" and d == torch.bfloat16 else [""])]
# A layer norm's backward subtracts nearly equal sums, so the rounding of its gradient to bfloat16 for the GEMM
# behind it shows, relative to that gradient (the initial h's, at H = 4: 4.5e-2; 4e-3 with float32 products)
PRODUCTS_TOL = {"LayerNormLSTM": 6e-2}


@pytest.mark.parametrize("name,backend,dtype,products", CELL_CASES, ids=str)
def test_a_16_bit_cell_computes_in_float32_and_answers_in_its_dtype(name, backend, dtype, products, monkeypatch):
    if products:
        monkeypatch.setenv("SYMCELL_BF16_PRODUCTS", "1" if products.startswith("bfloat16") else "0")
    factory, step, outputs = CASES[name]
    dev = DEVICE.get(backend, "cpu")
    torch.manual_seed(4)
    cell = factory(backend=backend).to(dev, dtype)
    xs, states = random_inputs(cell, T=5, B=9, dtype=dtype, seed=1)
    xs, states = ([t.detach().to(dev).requires_grad_() for t in ts] for ts in (xs, states))
    params = list(cell.parameters())
    outs, grads = outs_and_grads(cell, xs, states, params)
    for t in (*outs, *grads):
        assert t.dtype == dtype and t.device.type == torch.device(dev).type
    # the eager loop in float64 on the same rounded values
    up = [[t.detach().double().cpu().requires_grad_() for t in ts] for ts in (xs, states, params)]
    r_outs, r_grads = outs_and_grads(None, *up, step=step, outputs=outputs)
    tol = PRODUCTS_TOL.get(name, TOL[dtype]) if products.startswith("bfloat16") else TOL[dtype]
    for a, b in zip(outs + grads, r_outs + r_grads):
        assert rel_err(a.float(), b) < tol


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_state_between_steps_stays_float32(backend):
    """a float32 state carried across 200 steps of h = h + x (x = 1/3 rounded): bf16 steps would stall at 256"""
    @symcell.define(inputs={"x": "H"}, state={"h": "H"}, params={"w": ("H",)})
    def Counter(x, h, w):
        return h + w * x

    dev = DEVICE.get(backend, "cpu")
    cell = Counter(H=3, backend=backend).to(dev, torch.bfloat16)
    with torch.no_grad():
        cell.w.fill_(1.0)
    x = torch.full((800, 2, 3), 1 / 3, dtype=torch.bfloat16, device=dev)
    ys, (h,) = symcell.scan(cell, (x,), None)
    want = 800 * float(torch.tensor(1 / 3, dtype=torch.bfloat16))    # 266.5 in float32; bf16 steps: 256
    assert h.dtype == torch.bfloat16
    assert abs(float(h[0, 0].detach()) - want) <= want * 2 ** -8


@pytest.mark.cpp
@pytest.mark.parametrize("Module,Ref", [(LSTM, nn.LSTM), (GRU, nn.GRU)])
@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_autocast_runs_the_cell_in_its_dtype_as_nn_does(Module, Ref, dtype):
    """Linear -> cell under torch.autocast("cpu"): the cell's results come out in autocast's dtype, its
    float32 parameters get float32 gradients, and the values are the eager loop's on the rounded weights."""
    torch.manual_seed(0)
    lin, cell = nn.Linear(6, 8), Module(8, 16, num_layers=2)
    x = torch.randn(7, 3, 6)
    with torch.autocast("cpu", dtype=dtype):
        out, state = cell(lin(x))
    state = state if isinstance(state, tuple) else (state,)
    assert out.dtype == dtype and all(s.dtype == dtype for s in state)
    (out.double().sum() + sum(s.double().sum() for s in state)).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in [*cell.parameters(), *lin.parameters()])
    # the same model in float64 on weights and Linear outputs rounded to autocast's dtype
    ref = Ref(8, 16, num_layers=2).double()
    ref.load_state_dict({k: v.to(dtype).double() for k, v in cell.state_dict().items()})
    with torch.autocast("cpu", dtype=dtype):
        y = lin(x)
    want, want_state = ref(y.detach().double())
    assert rel_err(out.float(), want) < TOL[dtype]
    if dtype == torch.bfloat16:   # nn's own module under autocast (oneDNN has no float16 RNN on CPU)
        nn_ref = Ref(8, 16, num_layers=2)
        nn_ref.load_state_dict(cell.state_dict())
        with torch.autocast("cpu", dtype=dtype):
            nn_out, _ = nn_ref(lin(x))
        assert nn_out.dtype == out.dtype and rel_err(out.float(), nn_out.float()) < 3 * TOL[dtype]


def test_a_packed_sequence_runs_in_float32_under_cpu_autocast_as_nn_lstms():
    """nn.LSTM's packed operator is not on the CPU's autocast list (its padded one is): a float32 PackedSequence
    gives float32 results under CPU autocast; symcell's LSTM gave bfloat16. Computed as the cells' float32 input
    (README: float32, where nn's matmuls run in autocast's dtype). A user cell's stack still casts."""
    from torch.nn.utils.rnn import pack_padded_sequence
    torch.manual_seed(0)
    ref, cell = nn.LSTM(3, 4), LSTM(3, 4, backend="reference")
    cell.load_state_dict(ref.state_dict())
    packed = pack_padded_sequence(torch.randn(5, 2, 3), [5, 3])
    want, _ = ref(packed)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (nn_out, _), (out, (h, c)) = ref(packed), cell(packed)
        padded, _ = cell(torch.randn(5, 2, 3))
        stacked, _ = symcell.RNN(symcell.cells.LLTM, F=3, S=4, backend="reference")(packed)
        gru_out, gru_h = GRU(3, 4, backend="reference")(packed)   # (nn.GRU: off the CPU's list, packed or not)
    assert nn_out.data.dtype == out.data.dtype == h.dtype == c.dtype == torch.float32
    assert gru_out.data.dtype == gru_h.dtype == torch.float32
    assert torch.allclose(out.data, want.data, atol=1e-6)
    assert padded.dtype == stacked.data.dtype == torch.bfloat16


@pytest.mark.cpp
def test_autocast_off_inside_the_scan_and_after_it():
    """a float32 model outside autocast is unchanged; autocast for another device type leaves the cell alone, and
    so does CPU autocast a float64 cell"""
    torch.manual_seed(0)
    cell = LSTM(4, 5)
    x = torch.randn(3, 2, 4)
    plain, _ = cell(x)
    with torch.autocast("cuda", dtype=torch.float16, enabled=torch.cuda.is_available()):
        other, _ = cell(x)
    assert other.dtype == torch.float32 and torch.equal(plain, other)
    with torch.autocast("cpu", dtype=torch.bfloat16):   # float64 is not autocast's to cast, nor ours
        out, _ = cell.double()(x.double())
    assert out.dtype == torch.float64


@pytest.mark.cpp
def test_mixed_16_bit_and_float32_tensors_are_refused_clearly():
    cell = LSTM(4, 5).bfloat16()
    with pytest.raises(TypeError, match="input .* has dtype torch.float32 but the parameters have dtype torch.bfloat16"):
        cell(torch.randn(3, 2, 4))


def test_the_one_16_bit_parameter_that_makes_a_cell_16_bit_is_named():
    """a 16-bit parameter among float32 ones (a partial load) makes the cell 16-bit: the message said "the
    parameters have dtype torch.float16" of a module whose parameters were all float32 but that one"""
    m = LSTM(4, 5, 2, backend="reference")
    m.weight_hh_l0 = torch.nn.Parameter(m.weight_hh_l0.detach().half())
    with pytest.raises(TypeError, match=r"^LSTM: input 'x' has dtype torch.float32 but parameter 'weight_hh_l0' has "
                                        r"dtype torch.float16, which makes the cell's dtype torch.float16 \(its other "
                                        r"parameters may be float32\)$"):
        m(torch.randn(3, 2, 4))
    cell = LSTMCell(4, 5, backend="reference")
    cell.bias_hh = torch.nn.Parameter(cell.bias_hh.detach().bfloat16())
    with pytest.raises(TypeError, match=r"^LSTMCell: state 'c' has dtype torch.float32 but parameter 'bias_hh' has "
                                        r"dtype torch.bfloat16"):
        cell(torch.randn(2, 4).bfloat16(), (torch.zeros(2, 5).bfloat16(), torch.zeros(2, 5)))


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
def test_a_cells_float32_state_stays_float32_under_cpu_autocast_as_nns(kind):
    """nn's cells are off the CPU's autocast list: given a 16-bit input (a Linear's under autocast) and a float32
    state, their matmuls run in autocast's dtype and the state stays float32 from step to step. symcell cast the
    state to bfloat16 at every step: an LSTM's c growing 0.3 a step stalled at 128 (nn: 180.5 after 600 steps)"""
    torch.manual_seed(0)
    theirs = getattr(nn, kind)(3, 2)
    ours = getattr(symcell.cells, kind)(3, 2, backend="reference")
    with torch.no_grad():
        theirs.weight_ih.zero_()
        theirs.weight_hh.zero_()
        theirs.bias_hh.zero_()
        # LSTM: i, f saturated, g = tanh(0.31): c grows ~0.3 a step; GRU: z ~ 0.99, h drifts slowly to tanh(3)
        theirs.bias_ih.copy_(torch.tensor([20., 20., 20., 20., 0.31, 0.31, 0., 0.] if kind == "LSTMCell" else
                                          [0., 0., 4.6, 4.6, 3., 3.]))
    ours.load_state_dict(theirs.state_dict())
    x = torch.zeros(1, 3, dtype=torch.bfloat16)
    results = []
    for cell in (theirs, ours):
        state = (torch.zeros(1, 2), torch.zeros(1, 2)) if kind == "LSTMCell" else torch.zeros(1, 2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            for _ in range(600):
                state = cell(x, state)
        results.append(state[-1] if kind == "LSTMCell" else state)
    nn_state, our_state = results
    assert our_state.dtype == nn_state.dtype == torch.float32
    # (nn's products are bfloat16's: 2.6e-3 from the float64 answer for the GRU; symcell's float32 on the rounded
    # operands; bfloat16 states stalled 30% and 0.2 away)
    torch.testing.assert_close(our_state, nn_state, rtol=5e-3, atol=0)
    # and the other way round: a 16-bit state (an encoder's under autocast) with a float32 input, as nn's
    state = tuple(torch.zeros(1, 2, dtype=torch.bfloat16) for _ in range(2 if kind == "LSTMCell" else 1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ours(torch.zeros(1, 3), state if kind == "LSTMCell" else state[0])
        want = theirs(torch.zeros(1, 3), state if kind == "LSTMCell" else state[0])
    for a, b in zip(got if kind == "LSTMCell" else (got,), want if kind == "LSTMCell" else (want,)):
        assert a.dtype == b.dtype == torch.bfloat16    # (was a DtypeError)
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)


def test_autocast_to_another_16_bit_dtype_and_its_dtype_errors():
    """a bfloat16 GRU stack under float16 autocast failed inside torch.stack ("Unexpected floating ScalarType in
    at::autocast::prioritize"); a dtype error under autocast named the dtypes autocast made, without a word"""
    gru = GRU(4, 5, num_layers=2, bidirectional=True, backend="reference").bfloat16()
    with torch.autocast("cpu", dtype=torch.float16):
        out, h = gru(torch.randn(3, 2, 4).bfloat16())
    assert out.shape == (3, 2, 10) and h.shape == (4, 2, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(symcell.DtypeError, match=r"input 'x' has dtype torch.bfloat16 but the parameters have "
                                                     r"dtype torch.float64 \(under torch.autocast\('cpu', "
                                                     r"dtype=torch.bfloat16\), as autocast cast the tensors passed"):
            LSTM(4, 5, backend="reference").double()(torch.randn(3, 2, 4))


def _bfloat16_products_expected():
    """where sc.h's brgemm16_ok must find oneDNN's bfloat16 brgemm: a CPU with bfloat16 instructions, torch's oneDNN
    on, and oneDNN not held to an older ISA (ONEDNN_MAX_CPU_ISA)"""
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        return False
    return (("avx512_bf16" in flags or "amx_bf16" in flags) and torch.backends.mkldnn.enabled
            and "ONEDNN_MAX_CPU_ISA" not in os.environ and "DNNL_MAX_CPU_ISA" not in os.environ)


class _Products16(torch.autograd.Function):
    """a @ W.T with both operands rounded to bfloat16 and exact products and sums (float64): the forward's GEMMs of
    a bfloat16 scan with bfloat16 products; its backward rounds the incoming gradient so too (d_a = g16 @ W16,
    d_W = g16.T @ a16), as the scan's backward GEMMs do"""
    @staticmethod
    def forward(ctx, a, W):
        r = lambda t: t.to(torch.bfloat16).double()  # noqa: E731
        ctx.save_for_backward(r(a), r(W))
        return r(a) @ r(W).T

    @staticmethod
    def backward(ctx, g):
        a16, W16 = ctx.saved_tensors
        g16 = g.to(torch.bfloat16).double()
        return g16 @ W16, g16.T @ a16


def _lstm_loop(x, h, c, W_ih, W_hh, b_ih, b_hh, mm):
    ys = []
    for t in range(x.shape[0]):
        i, f, g, o = (mm(x[t], W_ih) + mm(h, W_hh) + b_ih + b_hh).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), h, c


@pytest.mark.cpp
@pytest.mark.parametrize("threads", [2], indirect=True)
@pytest.mark.parametrize("hoist,columns,I,H", [("0", "0", 48, 64), ("1", "0", 48, 64), ("0", "1", 48, 64),
                                               ("1", "0", 47, 63), ("0", "0", 47, 64)])
def test_a_bfloat16_lstm_multiplies_in_bfloat16_where_the_cpu_can(hoist, columns, I, H, threads, monkeypatch):
    """A bfloat16 module's cpp scan multiplies its GEMMs' operands rounded to bfloat16 (float32 sums and state) on a
    CPU whose oneDNN has bfloat16 kernels (sc.h's products16), else in float32. The float32 results the kernels
    give, before rounding to bfloat16 (scan_op with computing_for), against a float64 loop whose matmuls round their
    operands as the kernels' do, and against one that does not: outputs, final states and every gradient. Each
    GEMM path: the step's rows split across threads or each step shared (sc::scan_columns), the input term in the
    step or before the loop (sc::hoist), the gradients over all rows after it; odd sizes (a step's product from an
    odd row of the stacked weights, over an odd number of them). (A GEMM of few rows a thread, as a weight
    gradient's part from the initial state at B < 16 threads, stays in float32: B = 32 here.)"""
    from symcell.sequence import scan_op
    monkeypatch.setenv("SYMCELL_HOIST", hoist)
    monkeypatch.setenv("SYMCELL_SCAN_COLUMNS", columns)
    T, B = 20, 32
    torch.manual_seed(11)
    cell = LSTM(I, H, backend="cpp").bfloat16()
    params = [p.detach().float().requires_grad_() for p in cell.parameters()]   # exact: bfloat16 values
    x = torch.randn(T, B, I).bfloat16().float().requires_grad_()
    h0, c0 = (torch.randn(B, H).bfloat16().float().requires_grad_() for _ in range(2))
    key = cell._bindings[0].kernel_key(torch.device("cpu"))
    (ys,), (h, c) = scan_op(key, (x,), (h0, c0), tuple(params), None, computing_for=torch.bfloat16)
    outs = (ys, h, c)
    cots = [torch.randn_like(t) for t in outs]
    grads = torch.autograd.grad(sum((t * k).sum() for t, k in zip(outs, cots)), [x, h0, c0, *params])

    def loop(mm):
        wide = [t.detach().double().requires_grad_() for t in (x, h0, c0, *params)]
        r = _lstm_loop(*wide, mm)
        g = torch.autograd.grad(sum((t * k.double()).sum() for t, k in zip(r, cots)), wide)
        return r + g
    exact = loop(lambda a, W: a @ W.T)
    rounded = loop(_Products16.apply)
    got = outs + grads
    monkeypatch.setenv("SYMCELL_BF16_PRODUCTS", "0")   # (float32 products, whatever the CPU)
    (ys32,), (h32, c32) = scan_op(key, (x,), (h0, c0), tuple(params), None, computing_for=torch.bfloat16)
    assert all(rel_err(a, b) < 2e-6 for a, b in zip((ys32, h32, c32), exact))
    if torch.equal(ys, ys32):   # the kernel found no bfloat16 brgemm: float32 products, where that is expected
        assert not _bfloat16_products_expected()
        assert all(rel_err(a, e) < 2e-5 for a, e in zip(got, exact)), [rel_err(a, e) for a, e in zip(got, exact)]
        return
    # (the kernels' float32 sums and states differ from the loop's float64 in the last bits, so that now and then
    # an operand rounds to its other neighbour: up to 1e-5 apart for the outputs, 2e-4 for the gradients here, which
    # sum over the steps, more at other sizes; the exact products' results are 3e-4 to 2e-3 away)
    for a, r, e in zip(got, rounded, exact):
        assert rel_err(a, r) < 1e-3 and rel_err(a, r) < rel_err(a, e) / 2, (rel_err(a, r), rel_err(a, e))


@pytest.mark.cpp
@pytest.mark.parametrize("threads", [2], indirect=True)
@pytest.mark.parametrize("T,B", [(1, 4), (3, 9), (8, 16), (1, 100)])
def test_a_bfloat16_call_on_its_weights_as_stored_multiplies_in_bfloat16_where_the_cpu_can(T, B, threads):
    """A bfloat16 LSTM's call without a graph, on its weight matrices as given (bfloat16) and as stored (sc.h's
    direct: up to 128 rows in all where the products are bfloat16, mm_stored16), rounds the state and input to
    bfloat16 for its products as a longer call's panels do: its float32 results (before rounding to bfloat16)
    against a float64 loop whose matmuls round their operands so, and one that does not; float32 products where
    the CPU has no bfloat16 ones."""
    from symcell.sequence import scan_op
    I, H = 48, 64
    torch.manual_seed(17)
    cell = LSTM(I, H, backend="cpp").bfloat16()
    params16 = [p.detach() for p in cell.parameters()]
    given = tuple(p if p.dim() == 2 else p.float() for p in params16)
    x = torch.randn(T, B, I).bfloat16().float()
    h0, c0 = torch.randn(B, H), torch.randn(B, H)
    key = cell._bindings[0].kernel_key(torch.device("cpu"))
    with torch.no_grad():
        (ys,), (h, c) = scan_op(key, (x,), (h0, c0), given, None, computing_for=torch.bfloat16)
    wide = [t.double() for t in (x, h0, c0, *params16)]
    exact = _lstm_loop(*wide, lambda a, W: a @ W.T)
    rounded = _lstm_loop(*wide, _Products16.apply)
    if not _bfloat16_products_expected():
        assert all(rel_err(a, e) < 2e-5 for a, e in zip((ys, h, c), exact))
        return
    for a, r, e in zip((ys, h, c), rounded, exact):
        assert rel_err(a, r) < 1e-4 and rel_err(a, r) < rel_err(a, e) / 2, (rel_err(a, r), rel_err(a, e))


@pytest.mark.cpp
@pytest.mark.parametrize("threads", [2], indirect=True)
def test_a_bfloat16_scan_with_torchs_onednn_off_multiplies_in_float32(threads, monkeypatch):
    """torch.backends.mkldnn.enabled = False after a bfloat16 call: the next runs float32 products, as the float32
    GEMMs then run BLAS (the bfloat16 brgemm raised, its self-test's answer kept from the first call); and on again,
    bfloat16 products again (the self-test was not spoiled by a call made while it was off)"""
    from symcell.sequence import scan_op
    torch.manual_seed(12)
    cell = LSTM(32, 64, backend="cpp").bfloat16()
    params = tuple(p.detach().float() for p in cell.parameters())
    x, h0, c0 = torch.randn(6, 32, 32).bfloat16().float(), torch.zeros(32, 64), torch.zeros(32, 64)
    key = cell._bindings[0].kernel_key(torch.device("cpu"))

    def run():
        return scan_op(key, (x,), (h0, c0), params, None, computing_for=torch.bfloat16)[0][0]
    before = torch.backends.mkldnn.enabled
    try:
        torch.backends.mkldnn.enabled = False
        off_first = run()
        torch.backends.mkldnn.enabled = True
        on = run()
        torch.backends.mkldnn.enabled = False
        off = run()
    finally:
        torch.backends.mkldnn.enabled = before
    monkeypatch.setenv("SYMCELL_BF16_PRODUCTS", "0")
    float_products = run()
    assert rel_err(off, float_products) < 1e-6 and rel_err(off_first, float_products) < 1e-6
    assert _bfloat16_products_expected() is not torch.equal(on, float_products)


def _calls_of_the_forward(monkeypatch):
    """the parameters' dtypes of every forward the kernels run (Kernel.forward), in order"""
    from symcell.backends import base
    seen, forward = [], base.Kernel.forward

    def spy(self, xs, inits, params, *args, **kwargs):
        seen.append([p.dtype for p in params])
        return forward(self, xs, inits, params, *args, **kwargs)
    monkeypatch.setattr(base.Kernel, "forward", spy)
    return seen


@pytest.mark.cpp
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_16_bit_call_hands_the_cpp_forward_its_weights_as_they_are(name, dtype, monkeypatch):
    """A bfloat16 or float16 module's call, recorded or not, short (up to 128 rows: the kernels multiply them as
    stored) or long (a bfloat16 one's make their panels from them, a float16 one's copy them), hands the cpp forward
    the weight matrices it reads only as matmuls' weights in its dtype (Kernel.weights16: no float32 copy of them
    made by Python per call), every other tensor in float32; a call under forward mode (a dual level) hands it
    float32 copies of all. A second call of the same signature (its plan, replay.py) likewise. The forward's
    float32 results on the weights as given, in a call that multiplies them as stored (T=1, B=4: sc::mm_stored16)
    and in one that does not (T=3, B=50; in float32 products), against the same kernel on float32 copies: the same
    products, summed in another order."""
    from symcell import registry, sequence
    factory = CASES[name][0]
    torch.manual_seed(5)
    cell = factory(backend="cpp").to(dtype)
    binding = cell._binding
    key = binding.kernel_key(torch.device("cpu"), torch.float32)
    kept = registry.kernel_for(key).weights16
    assert kept   # (every zoo cell multiplies some weight matrix)
    seen = _calls_of_the_forward(monkeypatch)
    for T, B in ((1, 4), (3, 50)):
        seen.clear()
        xs, states = random_inputs(cell, T=T, B=B, dtype=dtype, seed=2, requires_grad=False)
        with torch.no_grad():
            first = symcell.scan(cell, tuple(xs), tuple(states))
            again = symcell.scan(cell, tuple(xs), tuple(states))
        recorded = symcell.scan(cell, tuple(xs), tuple(states[:-1]) + (states[-1].requires_grad_(),))
        with torch.autograd.forward_ad.dual_level():
            dual = symcell.scan(cell, tuple(xs), tuple(states))
        assert len(seen) == 4
        for dtypes in seen[:3]:
            assert {k for k, d in enumerate(dtypes) if d == dtype} == kept, dtypes
            assert all(d == torch.float32 for k, d in enumerate(dtypes) if k not in kept)
        assert all(d == torch.float32 for d in seen[3])
        flat = [torch.utils._pytree.tree_leaves(r) for r in (first, again, recorded, dual)]
        for a, b, c, d in zip(*flat):
            assert torch.equal(a, b) and torch.equal(a, c.detach()) and rel_err(a.float(), d.float()) <= 2 ** -7
        # the float32 results, before rounding, in float32 products (a CPU without MKL's AVX-512 kernels runs a short
        # call on float32 copies in panels, whose bfloat16 products would round h: sc.h's direct)
        monkeypatch.setenv("SYMCELL_BF16_PRODUCTS", "0")
        wide = [t.float() for t in xs]
        inits = [*(t.float() for t in states), *(torch.zeros(B, n) for n in binding.hidden_sizes.values())]
        params = list(cell.parameters())
        as_given = sequence._kernel_params(binding, key, params, dtype, True)
        floats = sequence._kernel_params(binding, key, params, dtype, False)
        with torch.no_grad():
            got = sequence.scan_op(key, wide, inits, as_given, None, dtype)
            ref = sequence.scan_op(key, wide, inits, floats, None, dtype)
        for a, b in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(ref)):
            assert rel_err(a, b) < 1e-6
        monkeypatch.delenv("SYMCELL_BF16_PRODUCTS")


@pytest.mark.cpp
@pytest.mark.parametrize("threads", [2], indirect=True)
@pytest.mark.parametrize("direct", ["", "0", "1"])
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("Cell", [LSTM, GRU])
def test_the_cpp_forward_multiplies_16_bit_weights_as_stored_exactly(Cell, dtype, direct, threads, monkeypatch):
    """sc::mm_stored16 on bfloat16 and float16 weights against float32 BLAS on the same values: tiles of 4 (AVX2: 2)
    of W's rows and of up to 4 of A's, with each remainder (B from 1 to 17 rows, W's 63 rows for a GRU of H=21), K
    over 16 columns and not a multiple of 8 or 16 (I=37, H=21); T=1 and 3; the call's way as its sizes choose it
    (direct up to 128 rows in all), and each forced (SYMCELL_DIRECT: where not direct, the kernel's float32 copy of
    the weights). In float32 products (SYMCELL_BF16_PRODUCTS=0): a GEMM of more rows (T=3, B=16, forced direct)
    would round float32 weights' operands to bfloat16 where the CPU multiplies it, and mm_stored16 does not."""
    from symcell.sequence import scan_op
    monkeypatch.setenv("SYMCELL_BF16_PRODUCTS", "0")
    if direct:
        monkeypatch.setenv("SYMCELL_DIRECT", direct)
    torch.manual_seed(13)
    cell = Cell(37, 21, backend="cpp").to(dtype)
    key = cell._bindings[0].kernel_key(torch.device("cpu"), torch.float32)
    params16 = [p.detach() for p in cell.parameters()]
    as_given = tuple(p if p.dim() == 2 else p.float() for p in params16)
    floats = tuple(p.float() for p in params16)
    for T in (1, 3):
        for B in (1, 2, 3, 4, 5, 7, 8, 16, 17):
            x = torch.randn(T, B, 37)
            states = tuple(torch.randn(B, 21) for _ in cell.state_sizes)
            got = scan_op(key, (x,), states, as_given, None, dtype)
            ref = scan_op(key, (x,), states, floats, None, dtype)
            for a, b in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(ref)):
                assert rel_err(a, b) < 1e-6, (T, B)


@pytest.mark.cpp
@pytest.mark.parametrize("threads", [2], indirect=True)
@pytest.mark.parametrize("direct", ["", "0", "1"])
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("Cell", [LSTM, GRU])
def test_the_cpp_backward_multiplies_16_bit_weights_as_stored_exactly(Cell, dtype, direct, threads, monkeypatch):
    """sc::mm_kn16 (d_h += d_gates @ W_hh in the step, d_x after the loop) on bfloat16 and float16 weights against
    the same backward on float32 copies: 64-column tiles of W (AVX2: 16) with a narrower last one (H=21, I=37: 21 and
    37 columns; H=70: 64 + 6) and up to 4 of d_gates' rows, each remainder (B from 1 to 17), T=1 and 3; the call's
    way as its sizes choose it (as stored up to 128 rows in all) and each forced (SYMCELL_DIRECT). Every gradient,
    float32 products and sums; a 16-bit weight's in its dtype (sc::mm_tn16), the float32 one rounded."""
    monkeypatch.setenv("SYMCELL_BF16_PRODUCTS", "0")
    if direct:
        monkeypatch.setenv("SYMCELL_DIRECT", direct)
    torch.manual_seed(15)
    for I, H in ((37, 21), (70, 70)):
        cell = Cell(I, H, backend="cpp").to(dtype)
        key = cell._bindings[0].kernel_key(torch.device("cpu"), torch.float32)
        kernel = symcell.registry.kernel_for(key).for_dtype(dtype)
        params16 = [p.detach() for p in cell.parameters()]
        as_given = [p if p.dim() == 2 else p.float() for p in params16]
        floats = [p.float() for p in params16]
        for T in (1, 3):
            for B in (1, 2, 3, 4, 5, 8, 16, 17):
                xs, inits = [torch.randn(T, B, I)], [torch.randn(B, H) for _ in cell.state_sizes]
                ys, finals, res = kernel.forward(xs, inits, floats, True)
                d_ys, d_fin = [torch.randn_like(y) for y in ys], [torch.randn_like(f) for f in finals]
                got = kernel.backward(d_ys, d_fin, xs, inits, as_given, ys, res)
                ref = kernel.backward(d_ys, d_fin, xs, inits, floats, ys, res)
                for a, b, p in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(ref),
                                   [None] * (len(xs) + len(inits)) + as_given):
                    if p is not None and p.dtype == dtype:   # the float32 gradient, rounded
                        assert a.dtype == dtype and _rounded_from(a, b), (I, H, T, B)
                    else:   # (2e-6: a CPU without AVX-512 sums each column down K in turn, 1.01e-6 off at worst)
                        assert a.dtype == torch.float32 and rel_err(a, b) < 2e-6, (I, H, T, B)


def _rounded_from(a, b):
    """whether 16-bit `a` is float32 `b` rounded to a's dtype, b as a kernel gives it: where the sums' order differs
    by CPU (2e-6 of the largest apart, the test above), now and then the other neighbour (at most 2% of places)"""
    ulp = torch.finfo(a.dtype).eps / 2   # (half a unit in the last place, relative)
    rounded = b.to(a.dtype).double()
    a, b = a.double(), b.double()
    near = (a - b).abs() <= ulp * b.abs() + 2e-6 * b.abs().max()
    return bool(near.all()) and (a == rounded).double().mean() >= 0.98


_WIDE = {"LSTM-37x45": lambda **kw: LSTMCell(37, 45, **kw), "GRU-37x45": lambda **kw: GRUCell(37, 45, **kw),
         "LLTM-21x33": lambda **kw: LLTM(21, 33, **kw)}


@pytest.mark.cpp
@pytest.mark.parametrize("threads", [2], indirect=True)
@pytest.mark.parametrize("hoist,columns", [("0", "0"), ("1", "1")])
@pytest.mark.parametrize("name", sorted(CASES) + sorted(_WIDE))
def test_a_long_bfloat16_call_makes_its_panels_from_its_weights_as_given(name, hoist, columns, threads, monkeypatch):
    """Past 128 rows in bfloat16 products (a CPU with them), a call on bfloat16 weight matrices makes the pairs of
    rows its GEMMs read straight from them (sc::transpose_step_pairs16, copy_step_pairs16, and the tall GEMMs'
    mm_nt16, mm_kn16) where it made them from a float32 copy before: the same pairs, so the same results bit for
    bit, forward and backward, as the same kernels on float32 copies of the weights; a weight's gradient, which
    the call writes in bfloat16, to bfloat16's rounding (on float32 copies its sums' part from the initial state, a
    GEMM of B rows, multiplies in float32, where on the weights as given both parts round their operands:
    test_a_bfloat16_weights_gradient_is_written_in_bfloat16). Every zoo cell; odd sizes (the stacked weights' rows
    from an odd one, rows an odd number of values apart: pairs of values at 2-byte offsets), the input term in the
    step or before the loop, the step's rows split across threads or each step shared (sc::scan_columns); sizes
    whose words the 8 x 8 tiles move, and the rest (_WIDE: 37 inputs, 45 units, 21 and 33). Both
    calls through the panels (SYMCELL_DIRECT=0: a short float32 call's backward multiplies the weights as stored,
    in float32 products)."""
    from symcell import sequence
    monkeypatch.setenv("SYMCELL_DIRECT", "0")
    monkeypatch.setenv("SYMCELL_HOIST", hoist)
    monkeypatch.setenv("SYMCELL_SCAN_COLUMNS", columns)
    factory = _WIDE[name] if name in _WIDE else CASES[name][0]
    torch.manual_seed(21)
    cell = factory(backend="cpp").bfloat16()
    binding = cell._binding
    key = binding.kernel_key(torch.device("cpu"), torch.float32)
    kernel = symcell.registry.kernel_for(key).for_dtype(torch.bfloat16)
    params = [p.detach() for p in cell.parameters()]
    as_given = list(sequence._kernel_params(binding, key, params, torch.bfloat16, True))
    floats = list(sequence._kernel_params(binding, key, params, torch.bfloat16, False))
    assert any(p.dtype == torch.bfloat16 for p in as_given)
    for T, B in ((3, 50), (2, 67)):
        xs, states = random_inputs(cell, T=T, B=B, dtype=torch.bfloat16, seed=4, requires_grad=False)
        xs = [x.float() for x in xs]
        inits = [*(t.float() for t in states), *(torch.randn(B, n) for n in binding.hidden_sizes.values())]
        ys, finals, res = kernel.forward(xs, inits, floats, True)
        got = kernel.forward(xs, inits, as_given, True)
        for a, b in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves((ys, finals, res))):
            assert torch.equal(a, b), (T, B)
        d_ys, d_fin = [torch.randn_like(y) for y in ys], [torch.randn_like(f) for f in finals]
        got = kernel.backward(d_ys, d_fin, xs, inits, as_given, ys, res)
        ref = kernel.backward(d_ys, d_fin, xs, inits, floats, ys, res)
        for a, b, p in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(ref),
                           [None] * (len(xs) + len(inits)) + as_given):
            if p is not None and p.dtype == torch.bfloat16:   # (its part from the initial state: see above)
                assert a.dtype == torch.bfloat16 and rel_err(a.float(), b) < 2 ** -7, (T, B)
            else:
                assert torch.equal(a, b), (T, B)


@pytest.mark.cpp
@pytest.mark.parametrize("threads", [2], indirect=True)
def test_a_call_after_one_on_nan_weights_reads_no_stale_nan(threads, monkeypatch):
    """A step's panels live in a thread's workspace, reused by the next call. A bfloat16 call whose stacked weights'
    rows are odd (I=13 + H=40, the input term in the step) multiplies the pair past its last row by zeros of the
    other operand: that lane must be zero (sc.cpp zeroes it), not what the call before left there, which after a
    module whose weights went NaN (a diverged run, evaluated first) is NaN: 0 x NaN. Its outputs against the same
    call made before the NaN one."""
    monkeypatch.setenv("SYMCELL_HOIST", "0")

    def call(I, nan):
        torch.manual_seed(22)
        cell = LSTMCell(I, 40, backend="cpp").bfloat16()
        if nan:
            with torch.no_grad():
                for p in cell.parameters():
                    p.fill_(float("nan"))
        x, h = torch.randn(3, 50, I).bfloat16(), torch.zeros(50, 40).bfloat16()
        with torch.no_grad():
            return symcell.scan(cell, (x,), (h, h))[0]
    want = call(13, False)
    assert torch.isfinite(want).all()
    for I in (12, 16):   # (the NaN pairs of an even number of rows, laid out across the odd one's lanes)
        assert torch.isnan(call(I, True)).all()
        assert torch.equal(call(13, False), want), I


@symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "H+I"), "b": ("H",)})
def _Affine(x, h, W, b):   # (one matrix, read from a column on for x's part)
    return (W @ symcell.cat(h, x) + b,)


@symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W_hh": ("H", "H"), "W_ih": ("H", "I")})
def _Affine2(x, h, W_hh, W_ih):   # (two matrices)
    return (W_hh @ h + W_ih @ x,)


@pytest.mark.cpp
@pytest.mark.parametrize("threads", [2], indirect=True)
@pytest.mark.parametrize("Cell", [_Affine, _Affine2])
def test_a_short_bfloat16_call_on_its_weights_rounds_the_other_operand(Cell, threads, monkeypatch):
    """Where a bfloat16 module's products are bfloat16 (sc.h's products16: a CPU with them), its calls on the
    weights as stored (sc::mm_stored16 forward, sc::mm_kn16 backward; vdpbf16ps on an AVX512-BF16 CPU) round the
    other operand to bfloat16 as the panels' GEMMs do: a step of an affine cell (whose GEMMs' other operands are
    the state and input, forward, and the incoming gradient, backward) on arbitrary float32 values gives what
    float32 products give on those values rounded beforehand, to the sums' order. Where it has none, float32
    products of the values as they are. Every tile's remainder: K = 58, 140, 103 forward (32-value pairs), 21
    (odd), 70 and 100 backward, 3 to 100 columns (64 and 32 a tile), B = 1-17 rows (4 a tile; forced as stored)."""
    monkeypatch.setenv("SYMCELL_DIRECT", "1")
    torch.manual_seed(16)
    rounded = _bfloat16_products_expected()
    r16 = lambda t: t.bfloat16().float()  # noqa: E731
    for I, H in ((37, 21), (70, 70), (3, 100)):
        cell = Cell(I=I, H=H, backend="cpp").bfloat16()
        key = cell._binding.kernel_key(torch.device("cpu"), torch.float32)
        kernel = symcell.registry.kernel_for(key).for_dtype(torch.bfloat16)
        given = [p.detach() if p.dim() == 2 else p.detach().float() for p in cell.parameters()]
        for B in range(1, 18):
            xs, inits, d_fin = [torch.randn(1, B, I)], [torch.randn(B, H)], [torch.randn(B, H)]

            def step(xs, inits, d_fin):
                ys, finals, res = kernel.forward(xs, inits, given, True)
                d_xs, d_inits, _ = kernel.backward([torch.zeros_like(ys[0])], d_fin, xs, inits, given, ys, res)
                return ys + finals + d_xs + d_inits
            got = step(xs, inits, d_fin)
            if rounded:
                xs, inits, d_fin = [r16(xs[0])], [r16(inits[0])], [r16(d_fin[0])]
            monkeypatch.setenv("SYMCELL_BF16_PRODUCTS", "0")
            want = step(xs, inits, d_fin)
            monkeypatch.delenv("SYMCELL_BF16_PRODUCTS")
            for a, b in zip(got, want):
                assert rel_err(a, b) < 1e-6, (I, H, B, rel_err(a, b))


@pytest.mark.cpp
@pytest.mark.parametrize("threads", [2], indirect=True)
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("Cell", [_Affine, _Affine2])
def test_a_16_bit_weights_gradient_is_written_in_its_dtype(Cell, dtype, threads, monkeypatch):
    """A backward handed a weight matrix in bfloat16 (float16) writes its gradient in bfloat16 (float16;
    sc::mm_tn16: one GEMM a range of its columns; a state's operand from its initial rows, then the states after
    each step but the last). Where the products are bfloat16 (a bfloat16 scan on a CPU with them), the operands
    rounded to bfloat16 and float32 sums, as nn's bfloat16 GEMMs compute it; else float32 products; either way
    rounded once. An affine cell whose recurrent weights are zero, so the GEMMs' operands are what the test hands in
    (the incoming gradient) and what the forward gave (the states): its gradients against float64 products of
    those, rounded or not, then rounded to the dtype. Both cells' weights (_Affine: one matrix, two ranges of columns
    written apart; _Affine2: two matrices); T x B from 1 x 1 to 5 x 30 (150 rows: past sc.cpp's ROWS16, the weights
    in panels, and the sums rounded, not the operands: sums of fewer places than the operands'; from 4 x 32 here)."""
    torch.manual_seed(18)
    rounded = dtype == torch.bfloat16 and _bfloat16_products_expected()
    r = (lambda t: t.bfloat16().double()) if rounded else (lambda t: t.double())
    I, H = 37, 70
    cell = Cell(I=I, H=H, backend="cpp").to(dtype)
    with torch.no_grad():
        (cell.W if Cell is _Affine else cell.W_hh)[:, :H] = 0
    key = cell._binding.kernel_key(torch.device("cpu"), torch.float32)
    kernel = symcell.registry.kernel_for(key).for_dtype(dtype)
    given = [p.detach() if p.dim() == 2 else p.detach().float() for p in cell.parameters()]
    for T, B in ((1, 1), (1, 17), (3, 5), (4, 32), (5, 30)):
        xs, inits = [torch.randn(T, B, I)], [torch.randn(B, H)]
        ys, finals, res = kernel.forward(xs, inits, given, True)
        d_ys = [torch.randn_like(ys[0])]
        _, _, d_params = kernel.backward(d_ys, [torch.zeros(B, H)], xs, inits, given, ys, res)
        g = r(d_ys[0]).reshape(T * B, H).T
        d_h = g @ r(torch.cat([inits[0][None], ys[0][:-1]])).reshape(T * B, H)   # (states entering each step)
        d_x = g @ r(xs[0]).reshape(T * B, I)
        want = [torch.cat([d_h, d_x], 1)] if Cell is _Affine else [d_h, d_x]
        got = [d for d, p in zip(d_params, given) if p.dim() == 2]
        for a, e in zip(got, want):
            assert a.dtype == dtype
            # (float32 sums in another order than float64's: now and then the other neighbour)
            assert (a == e.to(dtype)).double().mean() > 0.97, (T, B, (a == e.to(dtype)).double().mean())
            torch.testing.assert_close(a.double(), e, rtol=torch.finfo(dtype).eps, atol=1e-6)


@pytest.mark.cpp
@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_a_bfloat16_weights_gradient_ignores_an_autocast_around_the_backward(scale):
    """sc::mm_tn16's bfloat16 GEMM is ATen's (a dispatched op): an autocast to float16 around the backward must not
    cast it (at::mm for a range of a weight's columns was: that weight's gradient NaN at 1e6, underflowed at 1e-6)"""
    torch.manual_seed(19)
    cell = _Affine(I=5, H=7, backend="cpp").bfloat16()
    x = torch.randn(3, 4, 5).bfloat16()

    def grads(autocast):
        cell.zero_grad()
        ys, _ = cell(x)
        with torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
            (ys.float() * scale).sum().backward()
        return cell.W.grad.clone()
    want, got = grads(False), grads(True)
    assert want.dtype == torch.bfloat16 and torch.isfinite(want).all() and torch.equal(got, want)


@pytest.mark.cpp
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_16_bit_modules_gradients_on_its_weights_as_they_are(name, dtype, monkeypatch):
    """A recorded bfloat16 (float16) call's forward and plain backward read the weight matrices as given; its
    gradients (in the parameters' dtype: the weight matrices' written so by the kernel, the others rounded by
    autograd) equal those of the same call on float32 copies of them (sequence._weights16 off) to the dtype's
    rounding, T=1 B=4, T=4 B=4 and T=5 B=20 (as stored) and T=3 B=50 (not); and create_graph's gradients too (their
    scans on float32 copies). In float32 products: bfloat16 ones (where the CPU has them) round a GEMM's operands,
    which mm_kn16 does not."""
    from symcell import sequence
    monkeypatch.setenv("SYMCELL_BF16_PRODUCTS", "0")
    factory = CASES[name][0]
    torch.manual_seed(6)
    cell = factory(backend="cpp").to(dtype)
    params = list(cell.parameters())
    for T, B in ((1, 4), (4, 4), (5, 20), (3, 50)):
        xs, states = random_inputs(cell, T=T, B=B, dtype=dtype, seed=3)

        def grads(create_graph=False):
            ys, final = symcell.scan(cell, tuple(xs), tuple(states))
            outs = torch.utils._pytree.tree_leaves((ys, final))
            g = torch.Generator().manual_seed(1)
            loss = sum((o.float() * torch.randn(o.shape, generator=g)).sum() for o in outs)
            return torch.autograd.grad(loss, [*xs, *states, *params], create_graph=create_graph)
        got, twice = grads(), grads(create_graph=True)
        with monkeypatch.context() as m:
            m.setattr(sequence, "_weights16", lambda *a: False)
            want = grads()
        tol = torch.finfo(dtype).eps
        for a, b, c in zip(got, want, twice):
            assert a.dtype == b.dtype == c.dtype == dtype
            torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=1e-5)
            torch.testing.assert_close(c.float(), b.float(), rtol=tol, atol=1e-5)


@pytest.mark.cpp
@pytest.mark.parametrize("dtype", LOW)
def test_the_cpp_forward_takes_only_its_weight_matrices_in_16_bits(dtype):
    """A bias in bfloat16 (float16), or such weights for a float64 scan, is refused by the operator, naming the
    tensor"""
    torch.manual_seed(14)
    cell = LSTM(5, 6, backend="cpp")
    forward = cell._bindings[0].kernel_key(torch.device("cpu"), torch.float64)
    entry = symcell.registry.kernel_for(forward)._entries["forward"]
    x, h, c = torch.randn(2, 3, 5), torch.zeros(3, 6), torch.zeros(3, 6)
    W_ih, W_hh, b_ih, b_hh = (p.detach() for p in cell.parameters())
    none = torch.empty(0, dtype=torch.int64)
    name = {torch.bfloat16: "BFloat16", torch.float16: "Half"}[dtype]
    with pytest.raises(TypeError, match=r"params\[2\] \(bias_ih\) must have the first sequence's dtype Float, got "
                                        + name):
        entry.op(torch.float32)([x], [h, c], [W_ih.to(dtype), W_hh.to(dtype), b_ih.to(dtype), b_hh],
                                entry.dims, False, True, none, [])
    with pytest.raises(TypeError, match=r"params\[0\] \(weight_ih\) must have the first sequence's dtype Double, "
                                        r"got " + name):
        entry.op(torch.float64)([x.double()], [h.double(), c.double()],
                                [W_ih.to(dtype), W_hh.double(), b_ih.double(), b_hh.double()], entry.dims, False,
                                False, none, [])
