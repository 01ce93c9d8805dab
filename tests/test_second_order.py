"""Second derivatives and forward mode through the fused scan (tangent.py, autograd.py), on every backend:
gradgradcheck in float64, and against an eager torch loop differentiated by torch autograd (float64, relative
error < 1e-8): gradient penalties, Hessian-vector products, Hessians, a MAML step, forward mode, torch.func."""
import pytest
import torch
from torch.func import functional_call

import symcell
from symcell.cells import LSTM, lstm_reference
from zoo import (CASES, double_backward, eager_scan, eager_scan_lengths, random_inputs, rel_err,
                 second_order_cases)

DEVICE = {"reference": "cpu", "cpp": "cpu", "triton": "cuda" if torch.cuda.is_available() else "cpu"}
BACKENDS = [b for b in ("reference", "cpp", "triton") if symcell.backends.get(b).usable(torch.device(DEVICE[b]))]
DTYPE = {"reference": torch.float64, "cpp": torch.float64, "triton": torch.float32}
TOL = {"reference": 1e-8, "cpp": 1e-8, "triton": 2e-3}


class _Scanned(torch.nn.Module):
    def __init__(self, cell, reverse, lengths):
        super().__init__()
        self.cell, self.reverse, self.lengths = cell, reverse, lengths

    def forward(self, xs, states):
        return symcell.scan(self.cell, xs, states, reverse=self.reverse, lengths=self.lengths)


def _scan_fn(cell, reverse=False, lengths=None):
    """(xs..., states..., params...) -> (ys..., finals...) through symcell.scan with the given parameters"""
    names = [f"cell.{n}" for n, _ in cell.named_parameters()]
    n_x, n_s = len(cell.input_sizes), len(cell.state_sizes)
    module = _Scanned(cell, reverse, lengths)

    def f(*args):
        ys, fin = functional_call(module, dict(zip(names, args[n_x + n_s:])), (args[:n_x], args[n_x:n_x + n_s]))
        return (*(ys if isinstance(ys, tuple) else (ys,)), *fin)
    return f


def _eager_fn(step, outputs, reverse=False, lengths=None, n_x=1, n_s=1):
    def f(*args):
        xs, states, params = args[:n_x], args[n_x:n_x + n_s], args[n_x + n_s:]
        if lengths is None and not reverse:
            ys, fin = eager_scan(step, xs, states, params, outputs)
        else:
            ys, fin = eager_scan_lengths(step, xs, states, params, outputs,
                                         lengths if lengths is not None else [xs[0].shape[0]] * xs[0].shape[1], reverse)
        return (*ys, *fin)
    return f


def _setup(name, backend, T=3, B=2, seed=0):
    factory, step, outputs = CASES[name]
    torch.manual_seed(seed)
    cell = factory(backend=backend).to(DEVICE[backend], DTYPE[backend])
    xs, states = random_inputs(cell, T=T, B=B, dtype=DTYPE[backend], seed=seed)
    inputs = [t.detach().to(DEVICE[backend]).requires_grad_() for t in (*xs, *states)]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    return cell, step, outputs, inputs + params, len(xs), len(states)


@pytest.mark.parametrize("backend,name", second_order_cases([b for b in BACKENDS if b != "triton"]))
def test_gradgradcheck(backend, name):
    cell, _, _, args, n_x, n_s = _setup(name, backend)
    # the full Jacobians on the reference backend; the largest cells' (10-15 s each) are projected, as elsewhere
    full = backend == "reference" and name not in ("LayerNormLSTM", "SLSTM", "LSTM-proj")
    assert torch.autograd.gradgradcheck(_scan_fn(cell), tuple(args), fast_mode=not full)
    # rows of their own lengths, run in reverse: the ended rows' masks have their second derivatives too
    lengths = torch.tensor([3, 1])
    assert torch.autograd.gradgradcheck(_scan_fn(cell, reverse=True, lengths=lengths), tuple(args), fast_mode=True)


@pytest.mark.parametrize("backend,name", second_order_cases(BACKENDS))
@pytest.mark.parametrize("mode", ["plain", "lengths-reverse"])
def test_double_backward_matches_eager_autograd(backend, name, mode):
    cell, step, outputs, args, n_x, n_s = _setup(name, backend, T=4, B=3)
    kw = {} if mode == "plain" else {"reverse": True, "lengths": [4, 1, 2]}
    ours = double_backward(_scan_fn(cell, kw.get("reverse", False), kw.get("lengths")), args)
    ref_args = [a.detach().cpu().double().requires_grad_() for a in args]
    theirs = double_backward(_eager_fn(step, outputs, n_x=n_x, n_s=n_s, **kw), ref_args)
    assert len(ours) == len(theirs) and any(b is not None for b in theirs)
    for a, b in zip(ours, theirs):
        assert (a is None) == (b is None)
        if b is not None:
            assert rel_err(a.cpu().double(), b) < TOL[backend]


@pytest.mark.cpp
@pytest.mark.parametrize("name", ["LSTM", "GRU", "Gated", "TwoInputs"])
def test_cpp_steps_on_the_weights_as_stored(name, monkeypatch):
    """A short cpp call multiplies by the weights as stored, not by copies transposed or in panels (sc::direct,
    direct_grads: a sampler's one-row steps, a decoder's backward): forced here at T = 4, the double backward and
    forward mode with the parameters' tangents zero (the tangent scans then leave those GEMM terms out at run
    time) against eager autograd"""
    if "cpp" not in BACKENDS:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv("SYMCELL_DIRECT", "1")
    cell, step, outputs, args, n_x, n_s = _setup(name, "cpp", T=4, B=3)
    ref_args = [a.detach().double().requires_grad_() for a in args]
    ours = double_backward(_scan_fn(cell), args)
    theirs = double_backward(_eager_fn(step, outputs, n_x=n_x, n_s=n_s), ref_args)
    for a, b in zip(ours, theirs):
        assert (a is None) == (b is None) and (b is None or rel_err(a, b) < 1e-8)
    for nonzero in (n_x + n_s, n_x, 0):   # tangents of the inputs and states, of the inputs alone, none (a GEMM
        # none of whose terms runs assigns zeros)
        tangents = [torch.randn_like(a) if k < nonzero else torch.zeros_like(a) for k, a in enumerate(args)]
        _, jv = torch.func.jvp(_scan_fn(cell), tuple(a.detach() for a in args), tuple(tangents))
        _, jv_r = torch.func.jvp(_eager_fn(step, outputs, n_x=n_x, n_s=n_s), tuple(a.detach() for a in ref_args),
                                 tuple(tangents))
        for a, b in zip(jv, jv_r):
            assert rel_err(a, b) < 1e-8 if nonzero else torch.equal(a, torch.zeros_like(a))
    # float32 (sgemm's NT kernel forward, brgemm on the weights' rows backward) against the float64 eager loop
    cell32 = cell.float()
    args32 = [a.detach().float().requires_grad_() for a in args]
    ours = double_backward(_scan_fn(cell32), args32)
    for a, b in zip(ours, theirs):
        assert (a is None) == (b is None) and (b is None or rel_err(a.double(), b) < 1e-4)


def _lstm(backend):
    torch.manual_seed(0)
    return LSTM(3, 5, backend=backend).to(DEVICE[backend], DTYPE[backend])


def _eager_lstm(params, x):
    """the same LSTM as an eager loop: (ys, (h, c))"""
    (ys,), fin = eager_scan(lstm_reference, [x], [x.new_zeros(x.shape[1], 5)] * 2, params, (0,))
    return ys, fin


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_penalty_trains_with_the_eager_loss_gradients(backend):
    """WGAN-GP style: loss = out.sum() + |d out.sum() / dx|^2; out.sum()'s cotangent is an expanded tensor"""
    m = _lstm(backend)
    dev, dt = DEVICE[backend], DTYPE[backend]
    x = torch.randn(6, 2, 3, dtype=dt, device=dev, requires_grad=True)
    out, _ = m(x)
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    (out.sum() + (g ** 2).sum()).backward()
    params = [p.detach().cpu().double().requires_grad_() for p in m.parameters()]
    xr = x.detach().cpu().double().requires_grad_()
    ys, _ = _eager_lstm(params, xr)
    (gr,) = torch.autograd.grad(ys.sum(), xr, create_graph=True)
    (ys.sum() + (gr ** 2).sum()).backward()
    for p, q in zip(m.parameters(), params):
        assert rel_err(p.grad.cpu().double(), q.grad) < TOL[backend]
    assert rel_err(x.grad.cpu().double(), xr.grad) < TOL[backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_hessian_vector_products_hessian_and_maml(backend):
    m = _lstm(backend)
    dev, dt = DEVICE[backend], DTYPE[backend]
    names = [n for n, _ in m.named_parameters()]
    params = tuple(p.detach() for p in m.parameters())
    x = torch.randn(4, 2, 3, dtype=dt, device=dev)

    def loss(x_, *ps):
        out, (h, c) = functional_call(m, dict(zip(names, ps)), (x_,))
        return (out ** 2).mean() + (c ** 3).sum()

    def ref_loss(x_, *ps):
        ys, (h, c) = _eager_lstm(ps, x_)
        return (ys ** 2).mean() + (c ** 3).sum()

    cpu = [t.cpu().double() for t in (x, *params)]
    v = [torch.randn_like(t) for t in (x, *params)]
    _, hv = torch.autograd.functional.hvp(loss, (x, *params), tuple(t.to(dev, dt) for t in v))
    _, hv_r = torch.autograd.functional.hvp(ref_loss, tuple(cpu), tuple(v))
    for a, b in zip(hv, hv_r):
        assert rel_err(a.cpu().double(), b) < TOL[backend]
    # the Hessian with respect to the input
    xs = x[:2, :1]
    h = torch.autograd.functional.hessian(lambda x_: loss(x_, *params), xs)
    h_r = torch.autograd.functional.hessian(lambda x_: ref_loss(x_, *cpu[1:]), xs.cpu().double())
    assert rel_err(h.cpu().double(), h_r) < TOL[backend]
    # MAML: an inner step with create_graph, the outer gradient through it
    def maml(lossf, ps, x_):
        inner = torch.autograd.grad(lossf(x_, *ps), ps, create_graph=True)
        adapted = [p - 0.1 * g for p, g in zip(ps, inner)]
        return torch.autograd.grad(lossf(x_.flip(0), *adapted), ps)
    outer = maml(loss, [p.clone().requires_grad_() for p in params], x)
    outer_r = maml(ref_loss, [p.clone().requires_grad_() for p in cpu[1:]], cpu[0])
    for a, b in zip(outer, outer_r):
        assert rel_err(a.cpu().double(), b) < TOL[backend]


def _spy_on_skips(monkeypatch):
    """[(scan name, skip flags)] of every cpp entry point called from now on"""
    from symcell.backends.cpp.build import Entry
    calls, call = [], Entry.__call__

    def spy(self, *args, skip=()):
        calls.append((self.name, list(skip)))
        return call(self, *args, skip=skip)
    monkeypatch.setattr(Entry, "__call__", spy)
    return calls


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wrt", ["input", "params"])
def test_a_hessian_vector_product_leaves_out_zero_tangents_and_unwanted_gradients(backend, wrt, monkeypatch):
    """An HVP with respect to the input alone (the parameters' tangents are zero, their second-order gradients
    unwanted) or the parameters alone (the input's tangent is zero): the eager loop's answer, and on cpp the
    entry points are told what they may leave out, which changes nothing but the time."""
    m = _lstm(backend)
    dev, dt = DEVICE[backend], DTYPE[backend]
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(5, 3, 3, dtype=dt, device=dev)
    params = [p.detach() for p in m.parameters()]
    cpu = [t.cpu().double() for t in (x, *params)]

    def hvp(lossf, args, v):
        g = torch.autograd.grad(lossf(*args), args, create_graph=True)
        return torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), args)

    def loss(x_, *ps):
        return (functional_call(m, dict(zip(names, ps)), (x_,))[0] ** 2).sum()

    def ref_loss(x_, *ps):
        return (_eager_lstm(ps, x_)[0] ** 2).sum()

    def split(f, xs, ps):   # the loss with only `wrt` as arguments
        return (lambda x_: f(x_, *ps)) if wrt == "input" else (lambda *ps_: f(xs, *ps_))

    ours_args = [x.requires_grad_()] if wrt == "input" else [p.requires_grad_() for p in params]
    ref_args = [cpu[0].requires_grad_()] if wrt == "input" else [p.requires_grad_() for p in cpu[1:]]
    v = [torch.randn_like(a, dtype=torch.float64, device="cpu") for a in ref_args]
    calls = _spy_on_skips(monkeypatch) if backend == "cpp" else []
    ours = hvp(split(loss, x, params), ours_args, [t.to(dev, dt) for t in v])
    theirs = hvp(split(ref_loss, cpu[0], cpu[1:]), ref_args, v)
    for a, b in zip(ours, theirs):
        assert rel_err(a.cpu().double(), b) < TOL[backend]
    if backend == "cpp":
        flags = {name: skip for name, skip in calls}
        assert any(flags["tangent_forward"]), "a zero tangent goes unsaid"
        if wrt == "input":   # the parameters' gradients: not wanted in the first backward, nor in the second
            assert any(flags["backward"]) and any(flags["tangent_backward"])
        monkeypatch.setattr(symcell.skips, "call_flags", lambda *a: [])
        for a, b in zip(ours, hvp(split(loss, x, params), ours_args, [t.to(dev, dt) for t in v])):
            assert torch.equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backward_leaves_out_the_gradients_nobody_asked_for(backend, monkeypatch):
    """x without requires_grad (a first layer's input), then frozen parameters: the gradients asked for are the
    eager loop's, and on cpp the backward is told which it may leave out"""
    m = _lstm(backend)
    dev, dt = DEVICE[backend], DTYPE[backend]
    x = torch.randn(5, 3, 3, dtype=dt, device=dev)
    calls = _spy_on_skips(monkeypatch) if backend == "cpp" else []
    (m(x)[0] ** 2).sum().backward()
    params = [p.detach().cpu().double().requires_grad_() for p in m.parameters()]
    (_eager_lstm(params, x.cpu().double())[0] ** 2).sum().backward()
    for p, q in zip(m.parameters(), params):
        assert rel_err(p.grad.cpu().double(), q.grad) < TOL[backend]
    m.requires_grad_(False)
    xg = x.clone().requires_grad_()
    (m(xg)[0] ** 2).sum().backward()
    xr = x.cpu().double().requires_grad_()
    (_eager_lstm([p.detach() for p in params], xr)[0] ** 2).sum().backward()
    assert rel_err(xg.grad.cpu().double(), xr.grad) < TOL[backend]
    if backend == "cpp":
        assert [name for name, skip in calls if any(skip)] == ["backward", "backward"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backward_that_records_nothing_runs_no_function_and_one_that_does_records_its_node(backend, monkeypatch):
    """Scan.backward without create_graph calls the backward kernel itself (no ScanBackward node, whose
    derivatives nobody could ask for); with create_graph, under torch.func.grad and inside a dual level it goes
    through ScanBackward, and every way gives the eager loop's gradients"""
    from symcell import autograd as sa
    m = _lstm(backend)
    dev, dt = DEVICE[backend], DTYPE[backend]
    x = torch.randn(4, 2, 3, dtype=dt, device=dev)
    applied = []
    real = sa.ScanBackward.apply
    monkeypatch.setattr(sa.ScanBackward, "apply", lambda *a: applied.append(1) or real(*a))
    params = [p.detach().cpu().double().requires_grad_() for p in m.parameters()]
    want = torch.autograd.grad((_eager_lstm(params, x.cpu().double())[0] ** 2).sum(), params)

    def check(grads):
        for g, w in zip(grads, want):
            assert rel_err(g.detach().cpu().double(), w) < TOL[backend]
    check(torch.autograd.grad((m(x)[0] ** 2).sum(), list(m.parameters())))
    assert applied == []
    grads = torch.autograd.grad((m(x)[0] ** 2).sum(), list(m.parameters()), create_graph=True)
    check(grads)
    assert applied == [1] and all(g.grad_fn is not None for g in grads)
    names = [n for n, _ in m.named_parameters()]

    def loss(*ps):
        return (torch.func.functional_call(m, dict(zip(names, ps)), (x,))[0] ** 2).sum()
    check(torch.func.grad(loss, argnums=tuple(range(len(names))))(*[p.detach() for p in m.parameters()]))
    assert len(applied) > 1
    before = len(applied)
    with torch.autograd.forward_ad.dual_level():
        check(torch.autograd.grad((m(x)[0] ** 2).sum(), list(m.parameters())))
    assert len(applied) > before


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_mode_and_torch_func(backend):
    m = _lstm(backend)
    dev, dt = DEVICE[backend], DTYPE[backend]
    names = [n for n, _ in m.named_parameters()]
    params = tuple(p.detach() for p in m.parameters())
    x = torch.randn(3, 2, 3, dtype=dt, device=dev)
    cpu = [t.cpu().double() for t in (x, *params)]

    def f(x_, *ps):
        return functional_call(m, dict(zip(names, ps)), (x_,))[0]

    def f_ref(x_, *ps):
        return _eager_lstm(ps, x_)[0]

    tangents = [torch.randn_like(t) for t in cpu]
    # torch.func.jvp: inputs and parameters together
    _, jv = torch.func.jvp(f, (x, *params), tuple(t.to(dev, dt) for t in tangents))
    _, jv_r = torch.func.jvp(f_ref, tuple(cpu), tuple(tangents))
    assert rel_err(jv.cpu().double(), jv_r) < TOL[backend]
    # torch.autograd.forward_ad, with no grad mode at all
    import torch.autograd.forward_ad as fwAD
    want = torch.func.jvp(lambda x_: f_ref(x_, *cpu[1:]), (cpu[0],), (tangents[0],))[1]
    with torch.no_grad(), fwAD.dual_level():
        out = f(fwAD.make_dual(x, tangents[0].to(dev, dt)), *params)
        assert rel_err(fwAD.unpack_dual(out).tangent.cpu().double(), want) < TOL[backend]
    small = x[:2, :1]
    for transform in (torch.func.jacrev, torch.func.jacfwd):
        j = transform(lambda x_: f(x_, *params))(small)
        j_r = transform(lambda x_: f_ref(x_, *cpu[1:]))(small.cpu().double())
        assert rel_err(j.cpu().double(), j_r) < TOL[backend], transform.__name__
    hs = torch.func.hessian(lambda x_: (f(x_, *params) ** 3).sum())(small)
    hs_r = torch.func.hessian(lambda x_: (f_ref(x_, *cpu[1:]) ** 3).sum())(small.cpu().double())
    assert rel_err(hs.cpu().double(), hs_r) < TOL[backend]
    g = torch.func.grad(lambda ps: (f(x, *ps) ** 2).sum())(params)
    g_r = torch.func.grad(lambda ps: (f_ref(cpu[0], *ps) ** 2).sum())(tuple(cpu[1:]))
    for a, b in zip(g, g_r):
        assert rel_err(a.cpu().double(), b) < TOL[backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_over_inputs_and_over_stacked_parameters(backend):
    m = _lstm(backend)
    dev, dt = DEVICE[backend], DTYPE[backend]
    names = [n for n, _ in m.named_parameters()]
    params = tuple(p.detach() for p in m.parameters())
    xb = torch.randn(3, 4, 2, 3, dtype=dt, device=dev)          # 3 batches of (T=4, B=2, I=3)
    cpu = [p.cpu().double() for p in params]
    out = torch.func.vmap(lambda x_: m(x_)[0])(xb)
    for k in range(3):
        assert rel_err(out[k].cpu().double(), _eager_lstm(cpu, xb[k].cpu().double())[0]) < TOL[backend]
    stacked = tuple(torch.stack([p, 2 * p]) for p in params)      # two models' parameters, vmapped
    out = torch.func.vmap(lambda *ps: functional_call(m, dict(zip(names, ps)), (xb[0],))[0])(*stacked)
    for k in range(2):
        ref = _eager_lstm([(k + 1) * p for p in cpu], xb[0].cpu().double())[0]
        assert rel_err(out[k].cpu().double(), ref) < TOL[backend]
    # lengths vmapped with the inputs: refused, saying so (before the lengths' check read their values under vmap)
    lengths = torch.tensor([[4, 2], [1, 3], [4, 4]])
    with pytest.raises(NotImplementedError, match="vmap over the lengths of a scan is not supported"):
        torch.func.vmap(lambda x_, n: m(x_, lengths=n)[0])(xb, lengths)


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_mode_over_a_tangent_and_over_a_hessian_vector_product(backend):
    """forward mode in the direction of a tangent (of a jvp) or of the vector of an hvp: both linear in it, and
    supported (the tangent of the point itself would be forward over forward, and raises)"""
    m = _lstm(backend)
    dev, dt = DEVICE[backend], DTYPE[backend]
    names = [n for n, _ in m.named_parameters()]
    params = tuple(p.detach() for p in m.parameters())
    cpu = [p.cpu().double() for p in params]
    x = torch.randn(3, 2, 3, dtype=torch.float64)
    v0, v1 = torch.randn_like(x), torch.randn_like(x)

    def f(x_):
        return functional_call(m, dict(zip(names, params)), (x_,))[0]

    def f_ref(x_):
        return _eager_lstm(cpu, x_)[0]

    def jvp_in_v(fn, dev_=dev, dt_=dt):   # v -> J_f(x) v, differentiated in v in direction v1
        at = lambda t: t.to(dev_, dt_)   # noqa: E731
        return torch.func.jvp(lambda v: torch.func.jvp(fn, (at(x),), (v,))[1], (at(v0),), (at(v1),))[1]

    assert rel_err(jvp_in_v(f).cpu().double(), jvp_in_v(f_ref, "cpu", torch.float64)) < TOL[backend]

    def hvp_in_v(fn, dev_=dev, dt_=dt):   # v -> H v of sum(f^2), differentiated in v in direction v1
        at = lambda t: t.to(dev_, dt_)   # noqa: E731
        loss = lambda x_: (fn(x_) ** 2).sum()   # noqa: E731
        hvp = lambda v: torch.func.jvp(torch.func.grad(loss), (at(x),), (v,))[1]   # noqa: E731
        return torch.func.jvp(hvp, (at(v0),), (at(v1),))[1]

    assert rel_err(hvp_in_v(f).cpu().double(), hvp_in_v(f_ref, "cpu", torch.float64)) < TOL[backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_what_is_not_supported_says_so(backend):
    """third derivatives, and forward mode over forward mode, raise instead of returning a wrong 0"""
    m = _lstm(backend)
    dev, dt = DEVICE[backend], DTYPE[backend]
    x = torch.randn(3, 2, 3, dtype=dt, device=dev, requires_grad=True)
    out, _ = m(x)
    (g,) = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.pow(2).sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="symcell: .* of a scan is not supported"):
        torch.autograd.grad(gg.sum(), x)
    names = [n for n, _ in m.named_parameters()]
    params = tuple(p.detach() for p in m.parameters())
    f = lambda x_: functional_call(m, dict(zip(names, params)), (x_,))[0].sum()   # noqa: E731
    with pytest.raises(NotImplementedError, match="forward mode over forward mode"):
        torch.func.jacfwd(torch.func.jacfwd(f))(x.detach()[:1, :1])
    # autograd's legacy batching (is_grads_batched, functional's vectorize=True) runs the scan's Functions past
    # their vmap rules: symcell's error, not one from inside the kernels (vmap's "aten::add_ is not possible",
    # "Batching rule not implemented for symcell_LSTM_...::backward"), for a backward, a double backward and a jvp
    legacy = "is_grads_batched=True.*vectorize=True.* are not supported through a scan.*use torch.func"
    with pytest.raises(NotImplementedError, match=legacy):
        torch.autograd.grad(out, x, torch.randn(2, *out.shape, dtype=dt, device=dev), is_grads_batched=True,
                            retain_graph=True)
    with pytest.raises(NotImplementedError, match=legacy):
        torch.autograd.grad(g, x, torch.randn(2, *g.shape, dtype=dt, device=dev), is_grads_batched=True,
                            retain_graph=True)
    with pytest.raises(NotImplementedError, match=legacy):
        torch.autograd.functional.jacobian(lambda x_: m(x_)[0], x.detach(), vectorize=True, strategy="forward-mode")


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
def test_double_backward_through_the_registered_operators(backend):
    """a traced program (the operators of ops.py) and torch.compile(backend="eager") train with a gradient
    penalty; torch.compile's default AOTAutograd says it does not support double backward (PyTorch's limit)"""
    torch._dynamo.reset()   # (what an earlier test compiled changes what AOTAutograd says: "donated buffers")
    m = _lstm(backend)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)

    def penalty_grads(model):
        m.zero_grad()
        out, _ = model(x)
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        (out.sum() + (g ** 2).sum()).backward()
        return [p.grad.clone() for p in m.parameters()]
    eager = penalty_grads(m)
    traced = penalty_grads(torch.jit.trace(m, (x,), check_trace=False))
    compiled = penalty_grads(torch.compile(m, backend="eager"))
    for a, b, c in zip(eager, traced, compiled):
        assert rel_err(b, a) < 1e-12 and rel_err(c, a) < 1e-12
    with pytest.raises(RuntimeError, match="does not currently support double backward"):
        penalty_grads(torch.compile(m, backend="aot_eager"))
    torch._dynamo.reset()


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
def test_forward_mode_and_vmap_inside_torch_compile(backend):
    """torch.func.jvp and jacfwd of a compiled model gave tangents of 0 (the registered operator has no forward
    mode rule, and torch took none as zero); vmap raised from torch's internals. They leave the trace for the
    eager path (a graph break), whose rules are exact; against nn.GRU and the uncompiled transforms."""
    from torch.func import jacfwd, jvp, vmap
    torch.manual_seed(0)
    m = symcell.cells.GRU(3, 4, backend=backend).double()
    ref = torch.nn.GRU(3, 4).double()
    ref.load_state_dict(m.state_dict())
    x, v = torch.randn(4, 2, 3, dtype=torch.float64), torch.randn(4, 2, 3, dtype=torch.float64)
    tangent = jvp(lambda x_: ref(x_)[0], (x,), (v,))[1]
    jacobian = jacfwd(lambda x_: ref(x_)[1])(x)
    batched = vmap(lambda x_: m(x_)[0], in_dims=1, out_dims=1)(x)   # (nn.GRU has no batching rule)
    for compiler in ("eager", "aot_eager"):
        got = torch.compile(lambda x_, v_: jvp(lambda y: m(y)[0], (x_,), (v_,))[1], backend=compiler)(x, v)
        assert rel_err(got, tangent) < 1e-12 and tangent.abs().max() > 0.1
        assert rel_err(torch.compile(jacfwd(lambda y: m(y)[1]), backend=compiler)(x), jacobian) < 1e-12
        got = torch.compile(lambda x_: vmap(lambda y: m(y)[0], in_dims=1, out_dims=1)(x_), backend=compiler)(x)
        assert rel_err(got, batched) < 1e-12
    torch._dynamo.reset()
