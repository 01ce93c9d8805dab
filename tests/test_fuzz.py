"""Property tests: random valid cells (tests/fuzz.py) against an eager torch loop with autograd, on every backend,
over whole sequences and with per-row lengths, forward and reverse: values and gradients, and (second order)
the double backward of a random projection and forward mode's JVP.

CI runs a fixed budget with a fixed seed (derandomized); SYMCELL_FUZZ_EXAMPLES=N runs N cells per backend with
fresh random draws, e.g. SYMCELL_FUZZ_EXAMPLES=5000 python -m pytest -q tests/test_fuzz.py -k reference; SYMCELL_FUZZ_MAX_OPS=N
makes longer steps (default 8 operations).
The cpp backend builds one library per cell (seconds each), so CI gives it fewer cells than the reference
backend, which renders from the same derived backward.
"""
import itertools
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.func import functional_call, jvp

import symcell
from fuzz import Program, define, eager_step, programs
from zoo import double_backward, eager_scan, eager_scan_lengths

LONG = int(os.environ.get("SYMCELL_FUZZ_EXAMPLES", "0"))
MAX_OPS = int(os.environ.get("SYMCELL_FUZZ_MAX_OPS", "8"))   # operations per random step
_names = itertools.count()
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# backend -> (CI examples, dtype, relative tolerance, device)
BACKENDS = {"reference": (200, torch.float64, 1e-8, "cpu"), "cpp": (8, torch.float64, 1e-8, "cpu"),
            "triton": (30, torch.float32, 2e-3, DEVICE)}
# second order, backend -> CI examples (cpp builds two more libraries per cell, the second-order scans)
SECOND = {"reference": 60, "cpp": 2, "triton": 8}


def _err(a, b):
    """max |a - b| relative to max |b|, absolute below 1: a random cell may compute a value that is exactly 0
    symbolically and rounding noise eagerly (e.g. (s + (x - s)) - x), where a relative error means nothing"""
    a, b = a.detach().cpu(), b.detach().cpu()
    return (a - b).abs().max().item() / max(b.abs().max().item(), 1.0) if b.numel() else 0.0


def _check(prog, backend, lengths=None, reverse=False):
    """values and all gradients of the program's cell against the eager loop; with `lengths` (and `reverse`),
    against each row run alone over its own steps"""
    _, dtype, tol, dev = BACKENDS[backend]
    Cell = define(prog, f"Fuzz{next(_names)}")
    dims = {d: v for d, v in {"I": 3, "H": 2}.items() if d in Cell.spec.ir.dims}
    cell = Cell(**dims, backend=backend).to(dev, dtype)
    g = torch.Generator().manual_seed(0)
    T, B = 4, 3
    x = torch.randn(T, B, 3, generator=g, dtype=dtype).to(dev).requires_grad_()
    states = [(0.5 * torch.randn(B, n, generator=g, dtype=dtype)).to(dev).requires_grad_()
              for n in cell.state_sizes.values()]
    ys, fin = symcell.scan(cell, x, tuple(states), reverse=reverse, lengths=lengths)
    params = list(cell.parameters())
    if lengths is None and not reverse:
        ys_r, fin_r = eager_scan(eager_step(prog), [x], states, params, prog.ys_index())
    else:
        ys_r, fin_r = eager_scan_lengths(eager_step(prog), [x], states, params, prog.ys_index(),
                                         [T] * B if lengths is None else lengths, reverse)
    outs, refs = (*_tuple(ys), *fin), (*ys_r, *fin_r)
    for a, b in zip(outs, refs):
        assert torch.isfinite(b).all(), f"the reference is not finite: {prog}"
        assert _err(a, b) < tol, f"values differ: {prog}\n{cell.gradients()}"
    cots = [torch.randn(o.shape, generator=g, dtype=dtype).to(dev) for o in outs]
    wrt = [x, *states, *params]
    ga = torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs, cots)), wrt, allow_unused=True)
    gb = torch.autograd.grad(sum((o * c).sum() for o, c in zip(refs, cots)), wrt, allow_unused=True)
    for what, a, b in zip(["x", *[f"s{k}" for k in range(len(states))], *[n for n, _ in prog.params]], ga, gb):
        a = torch.zeros_like(wrt[0]) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        assert _err(a, b) < tol, f"d{what} differs: {prog}\n{cell.gradients()}"


def _tuple(ys):
    return ys if isinstance(ys, tuple) else (ys,)


class _Scanned(torch.nn.Module):
    def __init__(self, cell, reverse, lengths):
        super().__init__()
        self.cell, self.reverse, self.lengths = cell, reverse, lengths

    def forward(self, x, states):
        ys, fin = symcell.scan(self.cell, x, states, reverse=self.reverse, lengths=self.lengths)
        return (*_tuple(ys), *fin)


def _check_second(prog, backend, lengths=None, reverse=False):
    """the double backward (random projections) and forward mode's JVP (random tangents) of the program's cell,
    wrt x, the states and the parameters, against the eager loop differentiated twice by torch autograd"""
    _, dtype, tol, dev = BACKENDS[backend]
    Cell = define(prog, f"Fuzz{next(_names)}")
    dims = {d: v for d, v in {"I": 3, "H": 2}.items() if d in Cell.spec.ir.dims}
    cell = Cell(**dims, backend=backend).to(dev, dtype)
    g = torch.Generator().manual_seed(0)
    T, B, n_s = 4, 3, len(cell.state_sizes)
    x = torch.randn(T, B, 3, generator=g, dtype=torch.float64)
    states = [0.5 * torch.randn(B, n, generator=g, dtype=torch.float64) for n in cell.state_sizes.values()]
    names = [f"cell.{n}" for n, _ in cell.named_parameters()]
    args = [t.to(dev, dtype) for t in (x, *states, *cell.parameters())]
    module = _Scanned(cell, reverse, lengths)

    def ours(*a):
        return functional_call(module, dict(zip(names, a[1 + n_s:])), (a[0], tuple(a[1:1 + n_s])))

    def theirs(*a):
        kw = {"lengths": [T] * B if lengths is None else lengths, "reverse": reverse}
        ys, fin = eager_scan_lengths(eager_step(prog), [a[0]], a[1:1 + n_s], a[1 + n_s:], prog.ys_index(), **kw)
        return (*ys, *fin)

    ref = [a.detach().cpu().double().requires_grad_() for a in args]
    got = double_backward(ours, [a.detach().requires_grad_() for a in args])
    want = double_backward(theirs, ref)
    what = ["x", *[f"s{k}" for k in range(n_s)], *[n for n, _ in prog.params]]
    for w, a, b, r in zip(what, got, want, ref):
        a = torch.zeros_like(r) if a is None else a.double()
        b = torch.zeros_like(r) if b is None else b
        assert _err(a, b) < tol, f"second derivative wrt {w} differs: {prog}"
    tangents = [torch.randn(a.shape, generator=g, dtype=torch.float64) for a in args]
    _, t_got = jvp(ours, tuple(a.detach() for a in args), tuple(t.to(dev, dtype) for t in tangents))
    _, t_want = jvp(theirs, tuple(r.detach() for r in ref), tuple(tangents))
    for k, (a, b) in enumerate(zip(t_got, t_want)):
        assert _err(a.double(), b) < tol, f"forward-mode tangent of output {k} differs: {prog}"


# bfloat16: backend -> CI examples (the scan runs in float32 on the rounded values: sequence.py)
LOW = {"reference": 40, "cpp": 2, "triton": 4}


def _check_low(prog, backend, dtype=torch.bfloat16):
    """a bfloat16 cell's values and gradients against the eager loop in float64 on the same rounded values; the
    cotangents are bfloat16 numbers too, so the one rounding left is each result's own"""
    dev = BACKENDS[backend][3]
    Cell = define(prog, f"Fuzz{next(_names)}")
    dims = {d: v for d, v in {"I": 3, "H": 2}.items() if d in Cell.spec.ir.dims}
    cell = Cell(**dims, backend=backend).to(dev, dtype)
    g = torch.Generator().manual_seed(0)
    T, B = 4, 3
    x = torch.randn(T, B, 3, generator=g).to(dev, dtype).requires_grad_()
    states = [(0.5 * torch.randn(B, n, generator=g)).to(dev, dtype).requires_grad_() for n in cell.state_sizes.values()]
    params = list(cell.parameters())
    ys, fin = symcell.scan(cell, x, tuple(states))
    up = [t.detach().cpu().double().requires_grad_() for t in (x, *states, *params)]
    ys_r, fin_r = eager_scan(eager_step(prog), [up[0]], up[1:1 + len(states)], up[1 + len(states):], prog.ys_index())
    outs, refs = (*_tuple(ys), *fin), (*ys_r, *fin_r)
    for a, b in zip(outs, refs):
        assert a.dtype == dtype and torch.isfinite(b).all(), f"the reference is not finite: {prog}"
        assert _err(a.double(), b) < 2e-2, f"bfloat16 values differ: {prog}"
    cots = [torch.randn(o.shape, generator=g).to(dtype).double() for o in outs]
    ga = torch.autograd.grad(sum((o.double() * c.to(dev)).sum() for o, c in zip(outs, cots)), [x, *states, *params],
                             allow_unused=True)
    gb = torch.autograd.grad(sum((o * c).sum() for o, c in zip(refs, cots)), up, allow_unused=True)
    for a, b, r in zip(ga, gb, up):
        a = torch.zeros_like(r) if a is None else a.double()
        b = torch.zeros_like(r) if b is None else b
        assert _err(a, b) < 2e-2, f"bfloat16 gradients differ: {prog}"


def _settings(backend, n=None):
    n = LONG or n or BACKENDS[backend][0]
    return settings(max_examples=n, derandomize=not LONG, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def _usable(backend):
    return symcell.backends.get(backend).usable(torch.device(BACKENDS[backend][3]))


@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.slow) if b != "reference" else b
                                     for b in BACKENDS if _usable(b)])
def test_random_cells_match_autograd(backend):
    checked = []

    @_settings(backend)
    @given(programs(max_ops=MAX_OPS), st.sampled_from([None, [4, 1, 3], [0, 4, 2]]), st.booleans())
    def check(prog, lengths, reverse):
        _check(prog, backend, lengths, reverse)
        checked.append(prog)
    check()
    print(f"{backend}: {len(checked)} random cells checked")
    # hypothesis stops early when it runs out of distinct examples: the budget must really be spent
    assert len(checked) >= 0.9 * (LONG or BACKENDS[backend][0])


@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.slow) if b != "reference" else b
                                     for b in BACKENDS if _usable(b)])
def test_random_cells_second_order_match_autograd(backend):
    checked = []

    @_settings(backend, SECOND[backend])
    @given(programs(max_ops=MAX_OPS), st.sampled_from([None, [4, 1, 3], [0, 4, 2]]), st.booleans())
    def check(prog, lengths, reverse):
        _check_second(prog, backend, lengths, reverse)
        checked.append(prog)
    check()
    print(f"{backend}: {len(checked)} random cells checked to second order")
    assert len(checked) >= 0.9 * (LONG or SECOND[backend])


# what the fuzzer found, kept as regression tests (each was a failure before its fix)
REGRESSIONS = [
    # (s + (x - s)) - x: exactly 0 symbolically, rounding noise eagerly; a purely relative comparison failed
    # (a test bug, fixed in _err; kept so that the comparison stays meaningful near 0)
    Program(states=["I"], ops=[("binary", "sub", 0, 1), ("binary", "add", 1, 2), ("binary", "sub", 3, 0)],
            sizes=["I", "I", "I", "I", "I"], params=[], new_states=[4]),
    # tanh(x - x): sympy folds the argument to 0 and kept tanh(0) as a call on an int, which the reference
    # backend printed as torch.tanh(0) (fixed: the functions evaluate numbers, symcell/functions.py)
    Program(states=["H"], ops=[("binary", "sub", 1, 1), ("unary", "tanh", 2), ("unary", "sigmoid", 3),
                               ("binary", "mul", 4, 1)], sizes=["I", "H", "H", "H", "H", "H"],
            params=[], new_states=[5]),
    # maximum(h - h, h): sympy folds h - h to 0, and the derivative's tie test eq(0, h) reached torch.eq with a
    # Python number first, which it refuses (fixed: the torch helpers compare with the operators)
    Program(states=["H"], ops=[("unary", "sigmoid", 1), ("binary", "sub", 1, 1), ("binary", "maximum", 3, 1),
                               ("unary", "sigmoid", 0)], sizes=["I", "H", "H", "H", "H", "I"],
            params=[], new_states=[4]),
]


@pytest.mark.parametrize("backend", [b for b in BACKENDS if _usable(b)])
@pytest.mark.parametrize("case", range(len(REGRESSIONS)))
def test_what_the_fuzzer_found(backend, case):
    _check(REGRESSIONS[case], backend)


@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.slow) if b != "reference" else b
                                     for b in BACKENDS if _usable(b)])
def test_random_cells_in_bfloat16_match_autograd(backend):
    checked = []

    @_settings(backend, LOW[backend])
    @given(programs(max_ops=MAX_OPS))
    def check(prog):
        _check_low(prog, backend)
        checked.append(prog)
    check()
    assert len(checked) >= 0.9 * (LONG or LOW[backend])
