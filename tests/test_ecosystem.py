"""symcell cells inside the PyTorch ecosystem: opcheck, torch.compile, TorchScript tracing, torch.export, DDP."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import symcell
from symcell.cells import LSTM

BACKENDS = [b for b in ("reference", "cpp") if symcell.backends.get(b).usable(torch.device("cpu"))]


class Tagger(nn.Module):
    """an LSTM and a linear head: the kind of model users build"""

    def __init__(self, backend):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = LSTM(3, 8, backend=backend)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        out, (h, c) = self.rnn(x)
        return self.head(out + c)   # c is (1, B, H): every step sees the final cell state


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["LSTM", "CatSplit"])   # CatSplit: a cat the symbolic schedule keeps
def test_opcheck(backend, name):
    from zoo import CASES, random_inputs
    cell = CASES[name][0](backend=backend).double()
    key = cell._kernel_key(torch.device("cpu"))
    xs, states = random_inputs(cell, T=5, B=2)
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    lengths = torch.tensor([5, 2])
    for save in (True, False):
        for lens in (None, lengths):
            torch.library.opcheck(torch.ops.symcell.scan.default, (key, xs, states, params, save, lens))
    # the backward on strided inputs (a batch_first input, a transposed state): its results are contiguous, and
    # its fake says so (a compiled backward checked the fake's strides against them and failed)
    strided = [x.transpose(0, 1).contiguous().transpose(0, 1).detach().requires_grad_() for x in xs]
    with torch.no_grad():   # (the reference kernel's outputs would carry its graph, freed by the first check)
        ys, finals, res = cell._kernel(torch.device("cpu")).forward(strided, states, params, True, None)
    d_ys = [torch.randn_like(y) for y in ys]
    d_fin = [torch.zeros_like(s) for s in states]
    torch.library.opcheck(torch.ops.symcell.scan_backward.default,
                          (key, d_ys, d_fin, strided, states, params, ys, res, None))
    # and told which gradients are wanted (a compiled backward's, from its formula's needs_input_grad): the
    # operator's own autograd formula then returns a gradient for that argument too (None)
    wanted = [False] * (len(xs) + len(states)) + [True] * len(params)
    torch.library.opcheck(torch.ops.symcell.scan_backward.default,
                          (key, d_ys, d_fin, strided, states, params, ys, res, None, wanted))


def test_operator_backward_makes_no_zeros_for_residuals():
    """the operator's backward (what a compiled graph runs) gets None, not zeros, for the residuals' gradients,
    which it never reads: autograd would otherwise allocate and write a zero tensor shaped like each residual"""
    from torch.utils._python_dispatch import TorchDispatchMode
    from zoo import CASES, random_inputs
    cell = CASES["LSTM"][0](backend="reference").double()
    key = cell._kernel_key(torch.device("cpu"))
    xs, states = random_inputs(cell, T=5, B=3)
    x = xs[0].requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    out = torch.ops.symcell.scan(key, [x], states, params, True, None)
    residual_shapes = {tuple(t.shape) for t in out[1 + len(states):]}

    class Zeros(TorchDispatchMode):
        shapes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            r = func(*args, **(kwargs or {}))
            if func in (torch.ops.aten.zeros.default, torch.ops.aten.zeros_like.default):
                self.shapes.append(tuple(r.shape))
            return r

    with Zeros() as zeros:
        out[0].sum().backward()
    assert residual_shapes and not residual_shapes & set(zeros.shapes), (residual_shapes, zeros.shapes)
    ref = x.detach().clone().requires_grad_()
    cell(ref, states)[0].sum().backward()   # the eager path (autograd.py) agrees
    torch.testing.assert_close(x.grad, ref.grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph_forward_and_backward(backend):
    model = Tagger(backend)
    ref = Tagger("reference")
    ref.load_state_dict(model.state_dict())
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    for T in (4, 7):
        x = torch.randn(T, 2, 3)
        out = compiled(x)
        torch.testing.assert_close(out, ref(x), rtol=1e-5, atol=1e-6)
        out.sum().backward()
        ref(x).sum().backward()
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=n)


def test_torch_compile_with_lengths_traces_a_list_and_a_dynamic_length_without_specialising():
    """lengths as a list of ints torch.compile has made symbolic (hasattr on them broke fullgraph), and a dynamic
    T beside a lengths tensor (T's value in the lengths check's message specialised T: ConstraintViolationError
    under mark_dynamic, one graph a sequence length without)"""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    cell = LSTM(3, 4, backend="reference")
    f = torch.compile(lambda x, L: cell(x, lengths=L)[0], fullgraph=True, backend="eager")
    x = torch.randn(6, 3, 3)
    for L in ([6, 3, 6], [3, 0, 2]):
        torch.testing.assert_close(f(x, L), cell(x, lengths=L)[0])
    g = torch.compile(lambda x, L: cell(x, lengths=L)[0], backend="eager")
    x = torch.randn(6, 3, 3)
    torch._dynamo.mark_dynamic(x, 0)
    L = torch.tensor([1, 2, 3])
    torch.testing.assert_close(g(x, L), cell(x, lengths=L)[0])
    graphs = counters["stats"]["unique_graphs"]
    for T in (7, 8, 9):
        x = torch.randn(T, 3, 3)
        torch.testing.assert_close(g(x, L), cell(x, lengths=L)[0])
    assert counters["stats"]["unique_graphs"] == graphs, (graphs, counters["stats"]["unique_graphs"])


def test_torch_compile_fullgraph_on_a_fresh_process_first_call_and_with_lengths():
    """the first call of a process traced with fullgraph: backend="auto" asks whether a C++ compiler is here (a
    stat dynamo cannot trace; the answer is a constant to it now, backends.resolve); lengths, as a tensor or a
    list, whose values a graph cannot branch on (checked when the graph runs)"""
    code = textwrap.dedent("""
        import torch
        from symcell.cells import LSTM, GRUCell
        m, x = LSTM(3, 4), torch.randn(5, 2, 3)
        assert torch.allclose(torch.compile(m, fullgraph=True, backend="aot_eager")(x)[0], m(x)[0])
        f = torch.compile(lambda x, L: m(x, lengths=L), fullgraph=True, backend="aot_eager")
        L = torch.tensor([5, 3])
        assert torch.allclose(f(x, L)[0], m(x, lengths=L)[0])
        g = torch.compile(lambda x: m(x, lengths=[5, 2]), fullgraph=True, backend="aot_eager")
        assert torch.allclose(g(x)[0], m(x, lengths=[5, 2])[0])
        try:
            f(x, torch.tensor([7, 1]))
            raise SystemExit("a length past T ran")
        except RuntimeError as e:
            assert "lengths must lie in [0, T]" in str(e), e
        c = GRUCell(3, 4)
        assert torch.allclose(torch.compile(c, fullgraph=True, backend="aot_eager")(x[0]), c(x[0]))
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(symcell.__file__)),
                                                         os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


def test_import_and_an_eager_call_leave_torch_dynamo_unimported_and_resolve_marked_as_torch_marks():
    """torch.compiler's decorators import torch._dynamo (and Triton with it): made at import they were 0.7 s of
    every `import symcell`. symcell marks backends.resolve as assume_constant_result does, and wraps its eager path
    in torch.compiler.disable only once torch._dynamo is imported (a compiled frame needs it); the fresh-process
    fullgraph test above checks that dynamo takes the mark"""
    code = textwrap.dedent("""
        import sys, torch
        import symcell
        assert "torch._dynamo" not in sys.modules
        m = symcell.cells.LSTM(3, 4, backend="reference")
        y = m(torch.randn(5, 2, 3, requires_grad=True))[0]
        y.sum().backward()
        assert "torch._dynamo" not in sys.modules
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(
                           [os.path.dirname(os.path.dirname(symcell.__file__)), os.environ.get("PYTHONPATH", "")])})
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]

    def marked_by_torch():
        pass
    torch.compiler.assume_constant_result(marked_by_torch)
    # (what symcell's helper sets where torch._dynamo is not yet imported: a torch that marks otherwise fails here)
    assert vars(marked_by_torch) == {"_dynamo_marked_constant": True}
    assert vars(symcell.backends.resolve).get("_dynamo_marked_constant") is True


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_traced_program_checks_the_lengths_it_is_given(backend):
    """jit.trace records no Python check: the operator checks the lengths' count and values itself (the row order
    the cpp backend prefers, recorded at the trace, had fitted 3 rows to 2 lengths and run 2 rows, no error)"""
    from symcell.cells import GRU

    class Padded(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = GRU(3, 5, backend=backend)

        def forward(self, x, lengths):
            return self.gru(x, lengths=lengths)
    model = Padded().eval()
    # (its check runs the model again without grad: the trace must not depend on grad mode)
    traced = torch.jit.trace(model, (torch.randn(6, 4, 3), torch.tensor([3, 6, 2, 5])))
    x, lengths = torch.randn(6, 3, 3), torch.tensor([6, 2, 4])
    for got, want in zip(traced(x, lengths), model(x, lengths)):
        torch.testing.assert_close(got, want)
    for dtype in (torch.int32, torch.uint8, torch.uint16):   # (traced with int64 lengths, it took int64 only)
        for got, want in zip(traced(x, lengths.to(dtype)), model(x, lengths)):
            torch.testing.assert_close(got, want)
    for bad, match in (([1, 2], r"one entry per batch row, shape \(3,\)|3 values"), ([9, 2, 4], r"\[0, T\]"),
                       ([-1, 2, 4], r"\[0, T\]"), ([2.5, 2.0, 4.0], r"must be an integer|int64")):
        with pytest.raises(RuntimeError, match=match):   # (2.5: a trace recorded a conversion, and ran 2 steps)
            traced(x, torch.tensor(bad))
    for dtype in (torch.int32, torch.uint16):   # (a wider unsigned dtype promotes with int64 nowhere in torch)
        traced = torch.jit.trace(model, (torch.randn(6, 4, 3), torch.tensor([3, 6, 2, 5], dtype=dtype)))
        for got, want in zip(traced(x, lengths), model(x, lengths)):
            torch.testing.assert_close(got, want)
    with pytest.raises(RuntimeError, match=r"must be an integer|int64"):   # (made with int32 lengths, one took 2.5)
        traced(x, torch.tensor([2.5, 2.0, 4.0]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_autograd_traces_the_backward_of_an_eager_forward_as_one_graph(backend):
    """compiled autograd traces the backward of an eager forward: the registered operator, recorded whole (the
    kernel's Python in the Function's backward broke the graph 12 times, and fullgraph=True failed)"""
    from torch._dynamo import compiled_autograd
    from torch._dynamo.utils import counters
    from symcell.cells import GRU
    torch.manual_seed(0)
    m = GRU(3, 5, 2, bidirectional=True, backend=backend)
    x = torch.randn(6, 4, 3, requires_grad=True)
    lengths = torch.tensor([6, 2, 5, 1])
    wrt = [x, *m.parameters()]
    want = torch.autograd.grad(m(x, lengths=lengths)[0].square().sum(), wrt)
    torch._dynamo.reset()
    counters.clear()
    try:
        with compiled_autograd._enable(torch.compile(backend="eager", fullgraph=True)):
            m(x, lengths=lengths)[0].square().sum().backward()
    finally:
        torch._dynamo.reset()
    assert not counters["graph_break"]
    for p, g in zip(wrt, want):
        torch.testing.assert_close(p.grad, g)


def test_non_reentrant_checkpoint_gives_the_gradients_of_a_plain_call():
    """torch.utils.checkpoint(use_reentrant=False) lets a backward unpack its saved tensors once"""
    from torch.utils.checkpoint import checkpoint
    from symcell.cells import GRU, GRUCell
    torch.manual_seed(0)
    for m in (LSTM(3, 5, backend="reference"), GRU(3, 5, 2, backend="reference"), GRUCell(3, 5, backend="reference")):
        x = torch.randn(4, 2, 3, requires_grad=True)
        grads = []
        for wrapped in (False, True):
            out = checkpoint(m, x, use_reentrant=False) if wrapped else m(x)
            grads.append(torch.autograd.grad(out[0].square().sum(), [x, *m.parameters()]))
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=pytest.mark.skipif(
    not symcell.backends.get("triton").usable(torch.device("cpu")), reason="triton's interpreter not available"))])
@pytest.mark.parametrize("allow", [False, True])
def test_selective_checkpointing_that_saves_every_op_gives_the_plain_gradients(backend, allow):
    """the reference and triton scans are torch ops on buffers they fill: a policy that saves every op cached a
    buffer the scan then filled ("cached ... has been mutated"), and with allow_cache_entry_mutation=True the
    triton kernel read a cached tensor out of bounds (a segfault under the interpreter). The checkpointing sees the
    scan whole now, as the cpp backend's one operator."""
    import functools

    from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts
    torch.manual_seed(0)
    m = LSTM(4, 8, backend=backend)
    x = torch.randn(5, 3, 4, requires_grad=True)
    want = torch.autograd.grad(m(x)[0].square().sum(), [x, *m.parameters()])
    every = functools.partial(create_selective_checkpoint_contexts, lambda *a, **k: CheckpointPolicy.MUST_SAVE,
                              allow_cache_entry_mutation=allow)
    out = checkpoint(lambda x: m(x)[0].square().sum(), x, use_reentrant=False, context_fn=every)
    for got, ref in zip(torch.autograd.grad(out, [x, *m.parameters()]), want):
        torch.testing.assert_close(got, ref)


@pytest.mark.cpp   # (backend "auto": cpp on a CPU)
def test_jit_trace_of_a_bidirectional_lstm_on_a_strided_input_passes_its_check():
    """jit.trace checks a second trace on copies of the example inputs, which are contiguous: the copy the scan
    made of a strided input was in the first trace only (now inside the operator, backends/base.py)"""
    ref = nn.LSTM(3, 4, bidirectional=True)
    m = LSTM.from_nn(ref)
    x = torch.randn(5, 2, 6)[..., :3]
    traced = torch.jit.trace(m, (x,))
    x2 = torch.randn(7, 3, 3)
    torch.testing.assert_close(traced(x2)[0], ref(x2)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_trace_at_one_length_runs_at_others_and_loads_in_a_fresh_process(backend, tmp_path):
    model = Tagger(backend).eval()
    traced = torch.jit.trace(model, torch.randn(10, 2, 3))
    for T in (11, 3, 25):   # a Python loop over steps would have been unrolled for T = 10
        x = torch.randn(T, 2, 3)
        torch.testing.assert_close(traced(x), model(x))
    path = tmp_path / "tagger.pt"
    traced.save(str(path))
    x = torch.randn(13, 2, 3)
    torch.save(x, tmp_path / "x.pt")
    torch.save(model(x), tmp_path / "y.pt")
    code = textwrap.dedent(f"""
        import torch, symcell
        m = torch.jit.load({str(path)!r})
        x, y = torch.load({str(tmp_path / 'x.pt')!r}), torch.load({str(tmp_path / 'y.pt')!r})
        torch.testing.assert_close(m(x), y)
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_torch_export(tmp_path):
    model = Tagger("reference").eval()
    x = torch.randn(6, 2, 3)
    ep = torch.export.export(model, (x,))
    torch.testing.assert_close(ep.module()(x), model(x))
    assert "symcell.scan" in str(ep.graph)
    # saved and loaded back: a context the stack entered on every call (autocast off, to join its layers) was a
    # graph node torch.export.load refused ("wrap_with_autocast is missing val field")
    torch.export.save(ep, tmp_path / "tagger.pt2")
    torch.testing.assert_close(torch.export.load(tmp_path / "tagger.pt2").module()(x), model(x))


DDP_WORKER = textwrap.dedent("""
    import datetime, sys, torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    sys.path.insert(0, {tests!r})
    from test_ecosystem import Tagger
    rank, world = int(sys.argv[1]), 2
    # a peer that dies makes the other's collectives fail within a minute instead of waiting the default 30
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method={store!r},
                            timeout=datetime.timedelta(seconds=60))
    model = DDP(Tagger({backend!r}))
    x = torch.load({x!r})[:, rank * 2:(rank + 1) * 2]          # each rank half of the batch
    (model(x).sum() / 2).backward()     # DDP averages over the 2 ranks: the gradient of sum / 4 on the batch
    if rank == 0:
        torch.save([p.grad for p in model.module.parameters()], {out!r})
    dist.barrier()
    # the process group torn down by hand, then a normal exit, so a crash in teardown fails the test (it ended
    # without destructors, after a deadlock about 1 run in 40 when the DDP module's release freed the group at exit;
    # this way 150 runs of both backends' pairs of workers ended cleanly)
    del model
    dist.destroy_process_group()
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_ddp_two_processes_give_the_gradients_of_one_process_on_the_whole_batch(backend, tmp_path):
    import socket
    x = torch.randn(5, 4, 3)
    torch.save(x, tmp_path / "x.pt")
    with socket.socket() as s:   # a free port on the loopback interface
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = DDP_WORKER.format(tests=os.path.dirname(__file__), store=f"tcp://127.0.0.1:{port}", backend=backend,
                             x=str(tmp_path / "x.pt"), out=str(tmp_path / "grads.pt"))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(r)], stderr=subprocess.PIPE, text=True)
             for r in range(2)]
    try:
        errs = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for rank, (p, err) in enumerate(zip(procs, errs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{err}"
    ddp_grads = torch.load(tmp_path / "grads.pt")
    model = Tagger(backend)
    (model(x).sum() / 4).backward()
    for g, p in zip(ddp_grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fake_tensors_take_the_operators_fake_implementations(backend):
    """FakeTensorMode (shape and memory estimators, meta-device helpers): the eager path called the cpp backend's
    operator, which has no fake kernel (an AssertionError), and read the lengths' values"""
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        m = LSTM(4, 6, num_layers=2, bidirectional=True, backend=backend)
        x = torch.randn(5, 3, 4, requires_grad=True)
        for lengths in (None, [5, 3, 2], torch.tensor([5, 3, 2])):
            out, (h, c) = m(x, lengths=lengths)
            assert out.shape == (5, 3, 12) and h.shape == c.shape == (4, 3, 6)
        out.sum().backward()
        assert x.grad.shape == x.shape and m.weight_hh_l1_reverse.grad.shape == (24, 6)


@pytest.mark.slow
@pytest.mark.skipif(not symcell.backends.get("triton").usable(torch.device("cpu")), reason="needs Triton")
def test_triton_interpret_set_after_the_import_says_so():
    """import symcell imports triton (through torch._dynamo), which decides then whether its library is
    interpreted: the variable set afterwards failed inside Triton ("Cannot call @triton.jit'd outside of the
    scope of a kernel")"""
    code = textwrap.dedent("""
        import os, torch, symcell
        from symcell.cells import LSTM
        os.environ["TRITON_INTERPRET"] = "1"
        try:
            LSTM(3, 4, backend="triton")(torch.randn(5, 2, 3))
        except RuntimeError as e:
            print(e)
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(symcell.__file__)),
                                                      env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert "TRITON_INTERPRET=1 was set after triton was imported" in r.stdout, r.stdout + r.stderr


def test_fx_symbolic_trace_records_symcell_modules_as_one_call_as_nns():
    """torch.fx's tracer takes nn's RNN modules as leaves (they are in torch.nn); it traced into symcell's, whose
    checks failed on a Proxy ("input must be a tensor ... got Proxy", "Proxy object cannot be iterated"), and so did
    FX quantization's prepare_fx. Now each is one call_module node, and the graph runs as the model does."""
    import torch.fx as fx
    from symcell.cells import GRUCell, LSTMCell

    class Tagger(nn.Module):
        def __init__(self, rnn, cell):
            super().__init__()
            self.rnn, self.cell, self.lin = rnn, cell, nn.Linear(8, 2)

        def forward(self, x, h0, c0):
            out, (h, c) = self.rnn(x, (h0, c0))
            h2 = self.cell(out[-1], h[-1])
            return self.lin(out) + self.lin(h2), c

    torch.manual_seed(0)
    for rnn in (LSTM(4, 8, 2, backend="reference"), symcell.RNN(LSTMCell(4, 8, backend="reference"), 2)):
        m = Tagger(rnn, GRUCell(8, 8, backend="reference"))
        gm = fx.symbolic_trace(m)
        called = [n.target for n in gm.graph.nodes if n.op == "call_module"]
        assert called[:2] == ["rnn", "cell"] and not any(n.op == "call_function" and "scan" in str(n.target)
                                                         for n in gm.graph.nodes)
        args = (torch.randn(5, 3, 4), torch.randn(2, 3, 8), torch.randn(2, 3, 8))
        for a, b in zip(gm(*args), m(*args)):
            assert torch.equal(a, b)
        args7 = (torch.randn(7, 2, 4), torch.randn(2, 2, 8), torch.randn(2, 2, 8))   # another length and batch
        for a, b in zip(gm(*args7), m(*args7)):
            assert torch.equal(a, b)
    with pytest.raises(TypeError, match=r"^torch.fx cannot trace LSTM itself .* trace a module that holds it"):
        fx.symbolic_trace(LSTM(4, 8, backend="reference"))   # (nn's fail too, traced into as the root)

    class Doubled(GRUCell):   # its own forward changes what it passes on: recorded as called, the graph skipped it
        def forward(self, x, hx=None):
            return super().forward(2 * x, hx)

    holder = nn.Sequential(Doubled(8, 8, backend="reference"))
    with pytest.raises(TypeError, match=r"torch.fx cannot trace into Doubled, whose forward overrides symcell's: "
                                        r"trace it as one call with a Tracer whose is_leaf_module"):
        fx.symbolic_trace(holder)

    class Leaves(fx.Tracer):
        def is_leaf_module(self, m, name):
            return isinstance(m, symcell.Cell) or super().is_leaf_module(m, name)
    gm = fx.GraphModule(holder, Leaves().trace(holder))
    x = torch.randn(3, 8)
    assert torch.equal(gm(x), holder(x))
    import warnings
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    with warnings.catch_warnings():   # (FX quantization is deprecated for torchao's; it traces as fx does)
        warnings.simplefilter("ignore")
        prepared = prepare_fx(m, get_default_qconfig_mapping(), args)
        prepared(*args)
        out = convert_fx(prepared)(*args)
    assert out[0].shape == (5, 3, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_make_fx_records_the_scan_as_one_operator_on_every_backend(backend):
    """make_fx in real mode recorded the reference backend's scan unrolled step by step (213 ops at T=5), which
    failed at another length; the cpp scan was one operator. Now both record symcell's operator."""
    from torch.fx.experimental.proxy_tensor import make_fx
    torch.manual_seed(0)
    m = LSTM(4, 8, backend=backend)
    gm = make_fx(lambda x: m(x)[0])(torch.randn(5, 3, 4))
    assert sum(n.op == "call_function" for n in gm.graph.nodes) < 20
    x7 = torch.randn(7, 3, 4)
    torch.testing.assert_close(gm(x7), m(x7)[0], rtol=1e-6, atol=1e-6)


def test_jit_trace_shows_no_warnings_for_symcells_checks():
    """the checks read the example's sizes as Python values, which jit.trace warned about 72 times for a 2-layer
    bidirectional LSTM ("Converting a tensor to a Python boolean"; nn.LSTM's own checks: 7): the trace records none
    of the checks, so the warnings only hid the ones that matter"""
    import warnings
    m = LSTM(3, 4, 2, bidirectional=True, backend="reference")
    x = torch.randn(5, 2, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(m, (x,), check_trace=False)
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    x7 = torch.randn(7, 3, 3)
    torch.testing.assert_close(traced(x7), m(x7))
    # one step of a cell, as nn.LSTMCell is traced (its input check warned twice)
    cell = symcell.cells.LSTMCell(3, 4, backend="reference")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(cell, (torch.randn(2, 3),))
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    x = torch.randn(5, 3)
    torch.testing.assert_close(traced(x), cell(x))
