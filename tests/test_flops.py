"""FLOP counts (torch.utils.flop_counter.FlopCounterMode) of the cpp backend's operators (symcell/flops.py): the
same as the eager loop's matmuls under torch autograd, which the counter sees one by one."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

import symcell
from symcell import registry
from zoo import CASES, eager_scan, random_inputs


CAT_STEPS = {"Activations", "LLTM", "Moments", "Piecewise", "TimeStep"}   # zoo's eager steps of cat(x, h) @ W.T


def counted(fn):
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def _backward(result, wrt):
    ys, finals = result
    outs = [*ys, *finals]
    g = torch.Generator().manual_seed(7)
    cots = [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in outs]
    torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs, cots)), [w for w in wrt if w.requires_grad])


@pytest.mark.cpp
@pytest.mark.parametrize("name", sorted(CASES))
def test_counts_are_the_eager_loops(name):
    make, step, outputs = CASES[name]
    cell = make(backend="cpp").double()
    params = list(cell.parameters())
    xs, states = random_inputs(cell, T=4, B=3)
    ours = lambda xs: symcell.scan(cell, tuple(xs), tuple(states))   # noqa: E731
    eager = lambda xs: eager_scan(step, xs, states, params, outputs)  # noqa: E731
    with torch.no_grad():
        forward = counted(lambda: ours(xs))
        assert forward > 0 and forward == counted(lambda: eager(xs))
    # both ways; then with inputs that need no gradient (the kernel leaves d_x out, as autograd does)
    both = [counted(lambda: _backward(f(xs), [*xs, *states, *params])) for f in (ours, eager)]
    assert both[0] == both[1] > forward, both
    # inputs that need no gradient: the kernel leaves d_x out, as autograd does, except where the eager step
    # multiplies cat(x, h) at once: autograd then computes the whole cat's gradient, x's part too
    xs = [x.detach() for x in xs]
    both = [counted(lambda: _backward(f(xs), [*states, *params])) for f in (ours, eager)]
    assert both[0] < both[1] if name in CAT_STEPS else both[0] == both[1], both
    # initial states that need no gradient: the kernel leaves the last step's (t = 0's) transposed matmul into the
    # initial state's gradient out, as autograd leaves out the first step's product's gradient in h0; where the
    # eager step multiplies cat(x, h), autograd computes h0's part of the cat's gradient too
    xs, states = random_inputs(cell, T=4, B=3)
    states = [s.detach() for s in states]
    both = [counted(lambda: _backward(f(xs), [*xs, *params])) for f in (ours, eager)]
    assert both[0] < both[1] if name in CAT_STEPS else both[0] == both[1], both


@pytest.mark.cpp
def test_forward_mode_counts_the_tangents_it_runs():
    """jvp in the inputs alone: the primal forward, then the tangent scan's input and recurrent terms (the
    weights' tangents are zero: their terms are left out). With tangents in every weight too, those run."""
    T, B, I, H = 4, 3, 5, 6
    cell = symcell.cells.LSTM(I, H, backend="cpp").double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    per_pass = T * B * 2 * (I + H) * 4 * H   # x @ W_ih.T and h @ W_hh.T a row

    def jvp(with_weights):
        with torch.no_grad(), fwAD.dual_level():
            tangents = {n: torch.randn_like(p) for n, p in cell.named_parameters()} if with_weights else {}
            dual = {n: fwAD.make_dual(p, tangents[n]) if n in tangents else p for n, p in cell.named_parameters()}
            out, _ = torch.func.functional_call(cell, dual, (fwAD.make_dual(x, torch.randn_like(x)),))
            assert fwAD.unpack_dual(out).tangent is not None

    assert counted(lambda: jvp(False)) == 2 * per_pass
    assert counted(lambda: jvp(True)) == 3 * per_pass


@pytest.mark.cpp
def test_a_kernel_built_while_counting_is_counted():
    """FlopCounterMode copies the formulas it knows when made: a kernel built in its first call (the usual case:
    counting the first step of a model), or after the mode was made, is added to the mode when it sees a call"""
    T, B, I, H = 3, 2, 4, 5
    cell = symcell.cells.GRU(I, H, backend="cpp")
    x = torch.randn(T, B, I)
    key = cell._bindings[0].kernel_key(torch.device("cpu"))
    op = registry.kernel_for(key)._entries["forward"].op(torch.float32)
    for made_before in (False, True):   # (a counter made before the build, as one in another thread, too)
        registry._KERNELS.pop(key)             # (built again, from the library this process has loaded)
        flop_counter.flop_registry.pop(op)
        mode = FlopCounterMode(display=False)
        if made_before:
            cell(x)
        with torch.no_grad(), mode:
            cell(x)
        assert mode.get_total_flops() == T * B * 2 * (I + H) * 3 * H


@pytest.mark.cpp
def test_an_exported_program_counts_the_operator():
    T, B, I, H = 3, 2, 4, 5
    cell = symcell.cells.LSTM(I, H, backend="cpp")
    x = torch.randn(T, B, I)
    program = torch.export.export(cell, (x,)).module()
    assert counted(lambda: program(x)) == counted(lambda: cell(x)) == T * B * 2 * (I + H) * 4 * H


@pytest.mark.cpp
def test_a_compiled_backward_leaves_out_the_gradients_nobody_wants(monkeypatch):
    """torch.compile's backward (AOTAutograd's graph of symcell::scan_backward) is told which gradients are wanted,
    from the autograd formula's ctx.needs_input_grad: an input and initial states that need none (a first layer's,
    hx omitted) are left out of the kernel's call as in the eager call, with the eager call's parameter gradients.
    (FlopCounterMode cannot run a compiled frame: the kernel's `wanted` is compared, and the operator counted apart.)"""
    from symcell.backends.base import Kernel
    T, B, I, H = 4, 3, 5, 6
    torch.manual_seed(0)
    cell = symcell.cells.LSTM(I, H, backend="cpp").double()
    compiled = torch.compile(cell, fullgraph=True, backend="aot_eager")
    told = []
    backward = Kernel.backward

    def spy(self, d_ys, d_finals, xs, inits, params, ys, residuals, lengths=None, wanted=None):
        told.append(wanted)
        return backward(self, d_ys, d_finals, xs, inits, params, ys, residuals, lengths, wanted)
    monkeypatch.setattr(Kernel, "backward", spy)

    def step(m, x):
        for p in cell.parameters():
            p.grad = None
        m(x)[0].sum().backward()
        return [p.grad for p in cell.parameters()], told.pop()
    try:
        for x_grad in (False, True):
            x = torch.randn(T, B, I, dtype=torch.float64).requires_grad_(x_grad)
            (want, eager), (got, ours) = step(cell, x), step(compiled, x)
            assert list(ours) == list(eager) == [x.requires_grad, False, False, True, True, True, True], (ours, eager)
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b)
    finally:
        torch._dynamo.reset()


@pytest.mark.cpp
def test_the_backward_operator_counts_what_it_is_told_to_leave_out():
    """symcell::scan_backward's count (a compiled backward's) with `wanted`: what its kernel then runs, the weights'
    gradients and the transposed matmuls into h but at t = 0, no d_x (test_counts_are_the_eager_loops: the eager
    call's)"""
    T, B, I, H = 4, 3, 5, 6
    cell = symcell.cells.LSTM(I, H, backend="cpp").double()
    key = cell._bindings[0].kernel_key(torch.device("cpu"))
    params = list(cell.parameters())
    x, h0 = torch.randn(T, B, I, dtype=torch.float64), torch.zeros(B, H, dtype=torch.float64)
    ys, finals, res = registry.kernel_for(key).forward([x], [h0, h0], params, True, None)
    d_ys = [torch.randn_like(y) for y in ys]
    args = (key, d_ys, [torch.zeros_like(h0)] * 2, [x], [h0, h0], params, ys, res, None)
    per_row = 2 * (I + H) * 4 * H   # x @ W_ih.T and h @ W_hh.T, as the backward's transposed matmuls and gradients
    with torch.no_grad():
        assert counted(lambda: torch.ops.symcell.scan_backward(*args)) == 2 * T * B * per_row
        assert counted(lambda: torch.ops.symcell.scan_backward(*args, [False, False, False, True, True, True, True])) \
            == T * B * per_row + (T - 1) * B * 2 * H * 4 * H   # the weights' gradients, d_h but at t = 0
