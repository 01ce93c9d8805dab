"""nn's contracts as the spec: LSTM, GRU, LSTMCell and GRUCell are built, called and fail as nn's modules do.

Every case runs nn's module and symcell's on the same arguments: the values (and gradients) must agree, and where
nn raises, symcell raises an exception of nn's type (symcell's may be a subclass of both the ValueError it has
always raised and nn's RuntimeError) with a message that names the argument and the sizes."""
import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import symcell
from symcell.cells import GRU, LSTM, GRUCell, LSTMCell

REF = dict(backend="reference")


def python(*args):
    """a fresh Python process (this interpreter) run with args: its completed process, output captured"""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
CPU_BACKENDS = [b for b in ("reference", "cpp") if symcell.backends.get(b).usable(torch.device("cpu"))]


def _raises_as_nn(make_nn, make_ours, match):
    """nn raises; ours raises an instance of nn's exception type, with a message matching `match`."""
    with pytest.raises(Exception) as theirs:
        make_nn()
    with pytest.raises(type(theirs.value), match=match):
        make_ours()


# --- constructors ------------------------------------------------------------------------------------------
CONSTRUCTOR_CASES = [
    # (kind, args, kwargs, what symcell's message says)
    ("LSTM", (10, 20), dict(batch_first="False"), "batch_first should be of type bool, got: str"),
    ("GRU", (10, 20), dict(batch_first=1), "batch_first should be of type bool, got: int"),
    ("LSTM", (10, 20), dict(bias="True"), "bias should be of type bool, got: str"),
    ("GRU", (10, 20), dict(bias=1), "bias should be of type bool, got: int"),
    ("LSTM", (0, 20), {}, "input_size must be greater than zero, got 0"),
    ("GRU", (10, -1), {}, "hidden_size must be greater than zero, got -1"),
    ("LSTM", (10, 2.5), {}, "hidden_size should be of type int, got: float"),
    ("GRU", (10.0, 20), {}, "input_size should be of type int, got: float"),
    ("LSTM", (10, 20), dict(num_layers=0), "num_layers must be greater than zero, got 0"),
    ("GRU", (10, 20), dict(num_layers=1.5), "num_layers should be of type int, got: float"),
    ("LSTM", (10, 20), dict(proj_size=-1), "proj_size should be a positive integer or zero.*got -1"),
    ("LSTM", (10, 20), dict(proj_size=20), "proj_size has to be smaller than hidden_size; got proj_size=20, "
                                           "hidden_size=20"),
    ("LSTM", (10, 20), dict(proj_size=2.0), "proj_size should be of type int, got: float"),
    ("GRU", (10, 20), dict(proj_size=0), "proj_size argument is only supported for LSTM"),
    ("GRU", (10, 20), dict(proj_size=5), "proj_size argument is only supported for LSTM"),
    ("GRU", (10, 20), dict(dropout=1.5), r"dropout must be a number in \[0, 1\], got 1.5"),
    ("GRU", (10, 20), dict(dropout="0.1"), r"dropout must be a number in \[0, 1\], got '0.1'"),
    ("GRUCell", (10, 2.5), {}, "hidden_size should be of type int, got: float"),
    ("LSTMCell", (10, -1), {}, "hidden_size must be greater than zero, got -1"),
]


@pytest.mark.parametrize("kind, args, kwargs, match", CONSTRUCTOR_CASES,
                         ids=[f"{c[0]}-{'-'.join(f'{k}={v}' for k, v in c[2].items()) or c[1]}"
                              for c in CONSTRUCTOR_CASES])
def test_constructor_errors_are_nns(kind, args, kwargs, match):
    _raises_as_nn(lambda: getattr(nn, kind)(*args, **kwargs),
                  lambda: getattr(symcell.cells, kind)(*args, **kwargs, **REF), match)


def test_cells_take_bias_as_nn_does_and_zero_sizes_are_refused_clearly():
    # nn's cells do not check bias's type: neither do symcell's (a truthy value means biases)
    assert [n for n, _ in LSTMCell(3, 4, bias=1, **REF).named_parameters()] == \
        [n for n, _ in nn.LSTMCell(3, 4, bias=1).named_parameters()]
    assert [n for n, _ in GRUCell(3, 4, bias=0, **REF).named_parameters()] == ["weight_ih", "weight_hh"]
    # nn's cells accept a size of 0; symcell's kernels need a feature (README, "Where symcell differs")
    nn.GRUCell(10, 0)
    with pytest.raises(ValueError, match="GRUCell: hidden_size must be greater than zero, got 0"):
        GRUCell(10, 0, **REF)


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
def test_cells_without_biases_have_them_as_none_and_take_any_integer_size_as_nn(kind):
    """nn's cells register bias_ih and bias_hh as None without biases (code tests `cell.bias_ih is None`; theirs
    were an AttributeError), and take numpy's integers and a 0-d integer tensor as sizes (an int64 was refused)"""
    theirs, ours = getattr(nn, kind)(4, 3, bias=False), getattr(symcell.cells, kind)(4, 3, bias=False, **REF)
    assert theirs.bias_ih is None and theirs.bias_hh is None
    assert ours.bias_ih is None and ours.bias_hh is None
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight_ih", "weight_hh"]
    again = pickle.loads(pickle.dumps(ours))
    assert again.bias_ih is None and [n for n, _ in again.named_parameters()] == ["weight_ih", "weight_hh"]
    h = again(torch.randn(2, 4))
    assert (h[0] if isinstance(h, tuple) else h).shape == (2, 3)
    sized = getattr(symcell.cells, kind)(np.int64(5), torch.tensor(6), **REF)
    assert (sized.input_size, sized.hidden_size) == (5, 6) and type(sized.input_size) is int
    assert repr(sized).startswith(f"{kind}(5, 6")
    getattr(nn, kind)(np.int64(5), 6)
    with pytest.raises(TypeError, match="input_size should be of type int, got: bool"):
        getattr(symcell.cells, kind)(True, 6, **REF)


def test_a_nested_list_as_a_sequences_input_is_named_as_the_wrong_type():
    x = torch.randn(3, 2, 5).tolist()
    with pytest.raises(TypeError, match=r"LSTM: the input must be a tensor \(x\), got a list whose item 0 is of type "
                                        r"list"):
        LSTM(5, 6, **REF)(x)


# --- calls -------------------------------------------------------------------------------------------------
def _lstm_pair(L=2):
    torch.manual_seed(0)
    theirs, ours = nn.LSTM(3, 5, num_layers=L), LSTM(3, 5, num_layers=L, **REF)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


CALL_CASES = [
    # (module, input shape, state shapes, match): nn raises RuntimeError for each
    ("LSTM", (4, 7, 3), [(2, 4, 5), (2, 7, 5)], r"state 'h' must have shape .* = \(2, 7, 5\), got \(2, 4, 5\)"),
    ("LSTM", (4, 7, 3), [(2, 7, 5), (2, 7, 6)], r"state 'c' must have shape .* = \(2, 7, 5\), got \(2, 7, 6\)"),
    ("LSTM", (4, 7, 4), None, r"input 'x' has 4 features \(shape \(4, 7, 4\)\) but the cell expects 3"),
    ("GRU", (4, 7, 3), [(1, 4, 5)], r"state 'h' must have shape .* = \(1, 7, 5\), got \(1, 4, 5\)"),
    ("GRU", (4, 3), [(1, 1, 5)], r"state 'h' must have shape \(num_layers \* directions, 5\) = \(1, 5\), "
                                 r"got \(1, 1, 5\)"),
    ("LSTMCell", (7, 4), None, r"input 'x' has 4 features \(shape \(7, 4\)\) but the cell expects 3"),
    ("LSTMCell", (7,), [(7, 5), (7, 5)], r"input 'x' has 7 features \(shape \(7,\)\) but the cell expects 3; a 1-d "
                                         r"input is one unbatched row: B rows are \(7, 3\)"),
    ("LSTMCell", (7, 3), [(6, 5), (7, 5)], r"state 'h' has shape \(6, 5\) but expected \(B, 5\) = \(7, 5\)"),
    ("LSTMCell", (3,), [(1, 5), (1, 5)], r"unbatched 1-d input the state 'h' must have shape \(5,\), got "
                                         r"\(1, 5\)"),
    ("LSTMCell", (2, 3), [(5,), (5,)], r"state 'h' has shape \(5,\) but expected \(B, 5\) = \(2, 5\)"),
    ("GRUCell", (7, 3), [(7, 6)], r"state 'h' has shape \(7, 6\) but expected \(B, 5\) = \(7, 5\)"),
]


@pytest.mark.parametrize("kind, x_shape, state_shapes, match", CALL_CASES,
                         ids=[f"{c[0]}-x{c[1]}-state{c[2]}" for c in CALL_CASES])
def test_call_errors_are_runtime_errors_as_nns_and_value_errors_as_before(kind, x_shape, state_shapes, match):
    nn_args = (3, 5) + ((2,) if kind == "LSTM" else ())
    x = torch.randn(x_shape)
    state = None if state_shapes is None else tuple(torch.zeros(s) for s in state_shapes)
    if state is not None and kind.startswith("GRU"):
        state = state[0]
    theirs, ours = getattr(nn, kind)(*nn_args), getattr(symcell.cells, kind)(*nn_args, **REF)
    with pytest.raises(RuntimeError):
        theirs(x, state)
    with pytest.raises(symcell.ShapeError, match=match) as err:
        ours(x, state)
    assert isinstance(err.value, RuntimeError) and isinstance(err.value, ValueError)


def test_dtype_and_dimension_errors():
    theirs, ours = _lstm_pair()
    _raises_as_nn(lambda: theirs(torch.randn(4, 7, 3, dtype=torch.float64)),
                  lambda: ours(torch.randn(4, 7, 3, dtype=torch.float64)),
                  "input 'x' has dtype torch.float64 but the parameters have dtype torch.float32")
    cell = LSTMCell(3, 5, **REF)
    with pytest.raises(TypeError, match="float64 but the parameters have dtype torch.float32"):
        cell(torch.randn(7, 3, dtype=torch.float64))
    # nn raises ValueError for input of the wrong rank; symcell's ShapeError is one
    _raises_as_nn(lambda: theirs(torch.randn(4, 7, 3, 1)), lambda: ours(torch.randn(4, 7, 3, 1)),
                  r"input must be \(T, B, features\).*got shape \(4, 7, 3, 1\)")
    with pytest.raises(ValueError, match=r"must be 3-d \(T, B, features\) \(a sequence.*\), got shape \(2, 7, 3, 1\)"):
        cell(torch.randn(2, 7, 3, 1))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
def test_cells_are_called_as_nns_one_step_batched_unbatched_and_without_state(kind, backend):
    torch.manual_seed(1)
    theirs, ours = getattr(nn, kind)(3, 5).double(), getattr(symcell.cells, kind)(3, 5, backend=backend).double()
    ours.load_state_dict(theirs.state_dict())
    lstm = kind == "LSTMCell"
    for batch in [(4,), ()]:
        x = torch.randn(*batch, 3, dtype=torch.float64, requires_grad=True)
        h0 = [torch.randn(*batch, 5, dtype=torch.float64, requires_grad=True) for _ in range(2 if lstm else 1)]
        state = tuple(h0) if lstm else h0[0]
        for hx in (state, None):
            want, got = theirs(x, hx), ours(x, hx)
            want, got = (want, got) if lstm else ((want,), (got,))
            assert all(isinstance(g, torch.Tensor) for g in got)   # GRUCell: a tensor, LSTMCell: (h, c)
            assert [g.shape for g in got] == [w.shape for w in want] == [(*batch, 5)] * len(want)
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w)
            cots = [torch.randn_like(w) for w in want]
            wrt = [x, *theirs.parameters()] + (h0 if hx is not None else [])
            d_want = torch.autograd.grad(want, wrt, cots)
            wrt = [x, *ours.parameters()] + (h0 if hx is not None else [])
            for dg, dw in zip(torch.autograd.grad(got, wrt, cots), d_want):
                torch.testing.assert_close(dg, dw)
    # step() is the same call; GRUCell's returns a tensor as nn.GRUCell does
    x = torch.randn(4, 3, dtype=torch.float64)
    step = ours.step(x, None)
    if lstm:
        torch.testing.assert_close(step, theirs(x))
    else:
        assert isinstance(step, torch.Tensor)
        torch.testing.assert_close(step, theirs(x))
    with pytest.raises(ValueError, match="lengths= applies to sequences"):
        ours(x, None, lengths=[1, 1, 1, 1])


def test_cells_take_zero_rows_and_sequences_still_scan():
    theirs, ours = nn.LSTMCell(3, 5), LSTMCell(3, 5, **REF)
    ours.load_state_dict(theirs.state_dict())
    assert [t.shape for t in ours(torch.randn(0, 3))] == [t.shape for t in theirs(torch.randn(0, 3))]
    xs = torch.randn(6, 2, 3)
    ys, (h, c) = ours(xs)
    state = None
    for t in range(6):
        state = theirs(xs[t], state)
    torch.testing.assert_close(h, state[0])
    torch.testing.assert_close(ys[-1], state[0])


# --- pickle, torch.save, deepcopy --------------------------------------------------------------------------
BACKENDS_HERE = CPU_BACKENDS + (["triton"] if symcell.backends.get("triton").usable(torch.device("cpu")) else [])


@pytest.mark.parametrize("backend", BACKENDS_HERE)
def test_pickle_save_and_deepcopy_after_the_kernels_ran(backend, tmp_path):
    """pickling once failed as soon as a reference kernel (a closure) existed in the process, even for cpp
    modules; triton modules failed to unpickle"""
    torch.manual_seed(2)
    model = nn.Sequential(LSTM(3, 5, backend=backend))
    x = torch.randn(6, 2, 3)
    want = model(x)[0]
    want.sum().backward()   # every kernel of the cell built and run
    symcell.cells.LSTM(3, 5, backend="reference")(x)   # and a reference kernel in the process
    for copied in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        torch.testing.assert_close(copied(x)[0], want)
    torch.save(model, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=False)
    torch.testing.assert_close(loaded(x)[0], want)
    assert loaded[0].backend == backend


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS_HERE)
def test_torch_save_loads_in_a_fresh_process(backend, tmp_path):
    torch.manual_seed(3)
    # (an sLSTM of 3 heads: a cell that slstm_cell(3) makes, which no import defines; it failed in a fresh process,
    # "no cell with kernel key ...", until its spec registered itself when unpickled)
    model = nn.ModuleList([GRU(3, 4, num_layers=2, backend=backend), symcell.cells.SLSTM(3, 6, 3, backend=backend)])
    x = torch.randn(5, 2, 3)
    torch.save({"model": model, "x": x, "y": [m(x)[0] for m in model]}, tmp_path / "m.pt")
    code = ("import torch; d = torch.load(r'%s', weights_only=False); "
            "assert all((m(d['x'])[0] - y).abs().max() < 1e-6 for m, y in zip(d['model'], d['y'])); print('ok')"
            % (tmp_path / "m.pt"))
    out = python("-c", code)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


@pytest.mark.slow
def test_a_saved_module_runs_the_equations_of_the_code_it_loads_with(tmp_path):
    """a module saved whole carried its cell's equations, and a load ran those, not the code it imported (a user's
    change to a cell, a fix to symcell's sLSTM never reached a saved model); nn.Module's load runs its class's
    forward of the day. A cell is pickled as its recipe now (its step's module and name, define's arguments)."""
    cells = tmp_path / "my_cells.py"
    source = ("import symcell\nfrom symcell import tanh, relu\n\n"
              "@symcell.define(inputs={'x': 'I'}, state={'h': 'H'}, params={'W': ('H', 'I'), 'U': ('H', 'H')})\n"
              "def Simple(x, h, W, U):\n    return tanh(W @ x + U @ h)\n")
    cells.write_text(source)
    save = ("import sys, torch, symcell; sys.path.insert(0, %r); import my_cells; torch.manual_seed(0); "
            "torch.save({'cell': my_cells.Simple(I=3, H=4, backend='reference'), 'stack': symcell.RNN("
            "my_cells.Simple, I=3, H=4, num_layers=2, backend='reference'), 'lstm': symcell.cells.LSTM(3, 4), "
            "'x': torch.randn(5, 2, 3)}, %r)" % (str(tmp_path), str(tmp_path / "m.pt")))
    out = python("-c", save)
    assert out.returncode == 0, out.stderr
    cells.write_text(source.replace("return tanh(", "return relu("))   # the cell as the code now has it
    check = ("import sys, torch; sys.path.insert(0, %r); d = torch.load(%r, weights_only=False); x = d['x']\n"
             "def loop(W, U, h, x):\n    ys = []\n    for t in range(len(x)):\n"
             "        h = torch.relu(x[t] @ W.t() + h @ U.t()); ys.append(h)\n    return torch.stack(ys)\n"
             "c, s = d['cell'], d['stack']\n"
             "assert torch.allclose(c(x)[0], loop(c.W, c.U, torch.zeros(2, 4), x))\n"
             "y0 = loop(s.W_l0, s.U_l0, torch.zeros(2, 4), x)\n"
             "assert torch.allclose(s(x)[0], loop(s.W_l1, s.U_l1, torch.zeros(2, 4), y0))\n"
             "assert 'relu' in c.gradients() and d['lstm'](x)[0].shape == (5, 2, 4)\nprint('ok')"
             % (str(tmp_path), str(tmp_path / "m.pt")))
    out = python("-c", check)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


@pytest.mark.slow
def test_saved_modules_of_cells_whose_declarations_changed(tmp_path):
    """what a user's edits between a save and a load did: a stack passed its parameters in the pickled order (a
    declaration reordered to {U, W} put W in U's place, silently); `B = define(...)(step)` with its states
    reordered loaded the old declaration with the new step (neither version's results); a parameter added since
    failed at the first call with a count; a cell renamed by name= could not be pickled at all"""
    cells = tmp_path / "edited.py"
    before = ("import symcell\nfrom symcell import tanh, sigmoid\n\n"
              "@symcell.define(inputs={'x': 'I'}, state={'h': 'H'}, params={'W': ('H', 'I'), 'U': ('H', 'H')})\n"
              "def A(x, h, W, U):\n    return tanh(W @ x + 0.5 * (U @ h))\n\n"
              "def b_step(x, h, c, W):\n    return tanh(W @ x + c), c + h\n\n"
              "B = symcell.define(inputs={'x': 'I'}, state={'h': 'H', 'c': 'H'}, params={'W': ('H', 'I')},\n"
              "                   name='B')(b_step)\n\n"
              "@symcell.define(inputs={'x': 'I'}, state={'h': 'H'}, params={'W': ('H', 'I')}, name='Named')\n"
              "def renamed(x, h, W):\n    return sigmoid(W @ x) * h\n")
    after = (before.replace("params={'W': ('H', 'I'), 'U': ('H', 'H')}", "params={'U': ('H', 'H'), 'W': ('H', 'I')}")
             .replace("def A(x, h, W, U)", "def A(x, h, U, W)")
             .replace("def b_step(x, h, c, W):\n    return tanh(W @ x + c), c + h",
                      "def b_step(x, c, h, W):\n    return c + h, tanh(W @ x + c)")
             .replace("state={'h': 'H', 'c': 'H'}", "state={'c': 'H', 'h': 'H'}, outputs={'h': None}"))
    cells.write_text(before)
    save = ("import sys, torch, symcell; sys.path.insert(0, %r); import edited; torch.manual_seed(0); R = {"
            "'backend': 'reference'}; x = torch.randn(5, 2, 3)\n"
            "m = {'A': symcell.RNN(edited.A, I=3, H=3, **R), 'B': edited.B(I=3, H=3, **R), "
            "'named': edited.renamed(I=3, H=3, **R)}\n"
            "torch.save({'m': m, 'x': x, 'want': {k: v(x)[0].detach() for k, v in m.items()}}, %r)"
            % (str(tmp_path), str(tmp_path / "m.pt")))
    out = python("-c", save)
    assert out.returncode == 0, out.stderr
    cells.write_text(after)
    check = ("import sys, torch; sys.path.insert(0, %r); d = torch.load(%r, weights_only=False)\n"
             "for k, m in d['m'].items():\n    assert torch.allclose(m(d['x'])[0], d['want'][k]), k\nprint('ok')"
             % (str(tmp_path), str(tmp_path / "m.pt")))
    out = python("-c", check)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
    cells.write_text(after.replace("params={'W': ('H', 'I')},\n", "params={'W': ('H', 'I'), 'V': ('H',)},\n")
                     .replace("def b_step(x, c, h, W)", "def b_step(x, c, h, W, V)"))
    out = python("-c", check)
    assert "the saved B has no parameter(s) ['V'], which its cell B declares in the code it loads with" in out.stderr
    # a parameter the code no longer declares: kept, unused, with a warning (the results are today's code's)
    cells.write_text(after.replace("params={'U': ('H', 'H'), 'W': ('H', 'I')}", "params={'W': ('H', 'I')}")
                     .replace("def A(x, h, U, W):\n    return tanh(W @ x + 0.5 * (U @ h))",
                              "def A(x, h, W):\n    return tanh(W @ x + 0.5 * h)"))
    load = ("import sys, torch; sys.path.insert(0, %r); d = torch.load(%r, weights_only=False); a = d['m']['A']\n"
            "h = torch.zeros(2, 3); ys = []\nfor t in range(5):\n"
            "    h = torch.tanh(d['x'][t] @ a.W_l0.t() + 0.5 * h); ys.append(h)\n"
            "assert torch.allclose(a(d['x'])[0], torch.stack(ys)); print('ok')" % (str(tmp_path), str(tmp_path / "m.pt")))
    out = python("-c", load)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
    assert "the saved RNN holds parameter(s) ['U_l0'], which its cell A no longer declares" in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("main", ["__main__", "__mp_main__"])
def test_a_cell_of_a_script_loads_in_another_process(tmp_path, main):
    """a Cell whose class a script defines (__main__) failed to load elsewhere ("Can't get attribute on
    __main__"); a class define made is made again from its equations. A process multiprocessing spawns (a DDP
    worker saving a checkpoint) runs the script as __mp_main__, which was saved by name, and failed so too."""
    script = tmp_path / "train.py"
    script.write_text(
        "import sys, torch, symcell\n"
        "import torch.multiprocessing as mp\n"
        "@symcell.define(inputs={'x': 'I'}, state={'h': 'H'}, params={'W': ('H', 'I')})\n"
        "def MainCell(x, h, W):\n    return symcell.tanh(W @ x + h)\n"
        "def save(path):\n"
        "    m = MainCell(I=3, H=4, backend='reference'); x = torch.randn(5, 2, 3)\n"
        "    r = symcell.RNN(MainCell, I=3, H=4, backend='reference')\n"
        "    torch.save({'m': m, 'r': r, 'x': x, 'y': m(x)[0], 'z': r(x)[0]}, path)\n"
        "if __name__ == '__main__':\n"
        "    if sys.argv[2] == '__main__':\n"
        "        save(sys.argv[1])\n"
        "    else:   # a spawned worker saves, in which this script runs as __mp_main__\n"
        "        p = mp.get_context('spawn').Process(target=save, args=(sys.argv[1],)); p.start(); p.join()\n"
        "        assert p.exitcode == 0\n")
    out = python(str(script), str(tmp_path / "m.pt"), main)
    assert out.returncode == 0, out.stderr
    load = ("import torch; d = torch.load(%r, weights_only=False); assert torch.equal(d['m'](d['x'])[0], d['y']); "
            "assert torch.equal(d['r'](d['x'])[0], d['z']); assert type(d['m']).__name__ == 'MainCell'; print('ok')"
            % str(tmp_path / "m.pt"))
    out = python("-c", load)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_pickled_modules_hold_no_equations_where_an_import_finds_their_cells():
    """every pickle protocol (sympy's objects in the equations needed 2 or higher: protocols 0 and 1 failed in
    sympy for every module); a cell of a function is pickled as its equations, and protocol 0 says why not"""
    torch.manual_seed(0)
    x = torch.randn(4, 2, 3)
    for m in (LSTM(3, 4, num_layers=2, **REF), GRU(3, 4, **REF), LSTMCell(3, 4, **REF),
              symcell.cells.SLSTM(3, 4, 2, **REF), symcell.cells.LayerNormLSTM(3, 4, **REF)):
        want = m(x)[0]
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            data = pickle.dumps(m, protocol=protocol)
            assert b"sympy" not in data and torch.equal(pickle.loads(data)(x)[0], want)
        assert copy.deepcopy(m)._spec is m._spec

    @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I")})
    def Local(x, h, W):
        return symcell.tanh(W @ x + h)
    stack = symcell.RNN(Local, I=3, H=3, **REF)
    assert torch.equal(pickle.loads(pickle.dumps(stack))(x)[0], stack(x)[0])
    with pytest.raises(pickle.PicklingError, match=r"the cell Local is defined where no import finds it .*"
                                                   r"needs pickle protocol 2 or higher; got 0"):
        pickle.dumps(stack, protocol=0)


SCALE = 1.0


def _scaled_step(x, h, W):   # (reads a global a sweep changes between definitions)
    return symcell.tanh(SCALE * (W @ x) + h)


def test_cells_no_import_finds_again_pickle_as_their_equations(monkeypatch):
    """a Cell whose class define made in a function or a loop could not be pickled (pickle found no class by its
    name); a sweep that defines one step anew with another value of a global it reads pickled the first cell as
    a recipe that gives back the last"""
    x = torch.randn(4, 2, 3)

    def make(scale):
        return symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I")})(
            lambda x, h, W: symcell.tanh(scale * (W @ x) + h))
    for cell in (make(0.5)(I=3, H=4, **REF), make(2.0)(I=3, H=4, **REF)):
        assert torch.equal(pickle.loads(pickle.dumps(cell))(x)[0], cell(x)[0])
    swept = []
    for scale in (0.0, 5.0):
        monkeypatch.setattr(sys.modules[__name__], "SCALE", scale)
        Cell = symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I")})(_scaled_step)
        swept.append((Cell(I=3, H=4, **REF), symcell.RNN(Cell, I=3, H=4, **REF)))
    for cell, stack in swept:
        for m in (cell, stack):
            assert torch.equal(pickle.loads(pickle.dumps(m))(x)[0], m(x)[0])


def test_recipes_keep_no_closure_alive_and_loads_make_no_lasting_classes():
    """the recipe held its step function, so every cell a factory made kept the factory's closure for the life of
    the process (4 MB a define in a sweep); each load of a cell defined in a function kept a new class"""
    import gc
    import weakref

    def make():
        payload = torch.zeros(1000)

        @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I")})
        def Closing(x, h, W):
            return symcell.tanh(W @ x + h + 0 * float(payload.sum()))
        return Closing, weakref.ref(payload)
    Closing, payload = make()
    x = torch.randn(3, 2, 3)
    Closing(I=3, H=4, **REF)(x)
    del Closing
    gc.collect()
    assert payload() is None
    m = make()[0](I=3, H=4, **REF)
    for _ in range(5):
        m = pickle.loads(pickle.dumps(m))
    gc.collect()
    assert sum(type(o) is type and o.__name__ == "Closing" for o in gc.get_objects()) <= 2


@pytest.mark.cpp
def test_setting_backend_rebinds_the_module():
    """m.backend = ... on an LSTM, GRU or symcell.RNN was taken and did nothing (a Cell's raised AttributeError):
    a model saved with backend='cpp' could not be moved to 'auto' where no compiler is"""
    from symcell import registry
    x = torch.randn(4, 2, 3)
    for m in (LSTM(3, 4, num_layers=2, backend="cpp"), LSTMCell(3, 4, backend="cpp")):
        want = m(x)[0]
        m.backend = "reference"
        assert m.backend == "reference" and "backend='reference'" in repr(m)
        ran = []
        kernel_for = registry.kernel_for
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(registry, "kernel_for", lambda key: ran.append(key) or kernel_for(key))
            torch.testing.assert_close(m(x)[0], want)
        assert ran and all(k.endswith(":reference") for k in ran)
        with pytest.raises(ValueError, match=r"backend='nonsense' is not available"):
            m.backend = "nonsense"
        assert m.backend == "reference"


# --- script, backends the machine cannot run, profiler names ------------------------------------------------
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_jit_script_names_trace_and_export_as_the_way():
    model = nn.Sequential(nn.Linear(3, 3), LSTMCell(3, 4, **REF))
    with pytest.raises(RuntimeError, match="torch.jit.script cannot compile LSTMCell.*torch.jit.trace or "
                                           "torch.export.*symcell.deploy"):
        torch.jit.script(model)
    with pytest.raises(RuntimeError, match="torch.jit.script cannot compile GRU"):
        torch.jit.script(GRU(3, 4, **REF))


def test_a_backend_the_machine_cannot_run_says_why(monkeypatch):
    from symcell.backends import triton as triton_backend
    monkeypatch.setattr(triton_backend, "interpreted", lambda: False)
    cell = LSTM(3, 4, backend="triton")   # built anywhere (a model may move to a GPU later)
    with pytest.raises(RuntimeError, match="backend='triton' cannot run tensors on cpu.*TRITON_INTERPRET"):
        cell(torch.randn(2, 1, 3))
    with pytest.raises(ValueError, match=r"backend='cuda' is not available; choose one of \["):
        LSTM(3, 4, backend="cuda")


def test_triton_interpret_is_read_as_triton_reads_it(monkeypatch):
    """TRITON_INTERPRET=true (or on, yes) runs Triton's interpreter, where symcell took only 1 and said it was off"""
    from symcell.backends import triton as triton_backend
    try:
        from triton import knobs
    except ImportError:   # (no Triton, or one before knobs, which read only "1")
        knobs = None
    for value, on in (("1", True), ("true", True), ("On", True), ("yes", True), ("0", False), ("false", False)):
        monkeypatch.setenv("TRITON_INTERPRET", value)
        if knobs is not None:
            assert triton_backend.interpreted() is on is bool(knobs.runtime.interpret), value
        else:
            assert triton_backend.interpreted() is (value == "1"), value


@pytest.mark.cpp
def test_profiler_rows_name_the_cell_its_sizes_and_backend():
    cell = LSTM(4, 5, backend="cpp")
    x = torch.randn(3, 2, 4, requires_grad=True)
    cell(x)   # built outside the profile
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        cell(x)[0].sum().backward()
    names = {e.key for e in prof.key_averages()}
    assert {"symcell.LSTM[H=5,I=4].cpp.forward", "symcell.LSTM[H=5,I=4].cpp.backward"} <= names, sorted(names)


def test_a_user_cell_steps_as_nns_cells_with_several_inputs():
    """any cell takes nn's one-step call: a tuple of (B, features) or (features,) inputs, batch_first aside"""
    from zoo import CASES
    cell = CASES["TwoInputs"][0](backend="reference", batch_first=True)
    torch.manual_seed(4)
    x, y = torch.randn(2, 3), torch.randn(2, 2)
    state = (torch.randn(2, 4), torch.randn(2, 4))
    _, want = cell((x.unsqueeze(1), y.unsqueeze(1)), state)   # a scan of one step, batch-first
    got = cell((x, y), state)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    for g, w in zip(cell((x[1], y[1]), tuple(s[1] for s in state)), want):   # unbatched: row 1
        torch.testing.assert_close(g, w[1])
    with pytest.raises(symcell.ShapeError, match=r"all be batched \(2-d\) or all unbatched \(1-d\), got shapes "
                                                 r"\[\(2, 3\), \(2,\)\]"):
        cell((x, y[0]), state)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_autocast_gives_the_dtype_nns_module_gives(kind, dtype):
    """under torch.autocast("cpu"), nn.LSTM's operator runs in autocast's dtype and nn.GRU's, nn.LSTMCell's and
    nn.GRUCell's in the input's (they are on CUDA's autocast list, not the CPU's; their matmuls take the input's
    dtype): ours return what nn's return, for a float32 input and for one in autocast's dtype"""
    one = kind.endswith("Cell")
    theirs, ours = getattr(nn, kind)(3, 4), getattr(symcell.cells, kind)(3, 4, **REF)
    ours.load_state_dict(theirs.state_dict())

    def first(r):
        return r[0] if isinstance(r, tuple) else r
    for x_dtype in (torch.float32, dtype):
        x = (torch.randn(2, 3) if one else torch.randn(5, 2, 3)).to(x_dtype)
        with torch.autocast("cpu", dtype):
            try:
                want = theirs(x)
            except RuntimeError:   # (oneDNN has no float16 LSTM on some CPUs: the dtype autocast lists say)
                want = None
            got = ours(x)
        expected = dtype if kind == "LSTM" else x_dtype
        assert first(got).dtype == expected, (x_dtype, first(got).dtype)
        if want is not None:
            assert first(want).dtype == expected
            torch.testing.assert_close(first(got).float(), first(want).float(), rtol=3e-2, atol=3e-2)


def test_lstm_cell_takes_nns_keyword_names_and_initialises_as_nn_with_a_projection():
    torch.manual_seed(0)
    theirs, ours = nn.LSTMCell(3, 5), LSTMCell(3, 5, **REF)
    ours.load_state_dict(theirs.state_dict())
    x, h, c = torch.randn(2, 3), torch.randn(2, 5), torch.randn(2, 5)
    for got in (ours(x, hx=(h, c)), ours(input=x, hx=(h, c))):
        for g, w in zip(got, theirs(input=x, hx=(h, c))):
            torch.testing.assert_close(g, w)
    # uniform(-1/sqrt(hidden_size), ..) as nn.LSTM's, not 1/sqrt(proj_size) of the projected state
    big = LSTMCell(3, 100, proj_size=1, **REF)
    assert max(p.abs().max().item() for p in big.parameters()) <= 0.1
    assert GRU(3, 4, **REF).proj_size == nn.GRU(3, 4).proj_size == 0


def test_cells_take_nns_positional_device_and_dtype_and_show_bias_as_nn():
    for kind in ("LSTMCell", "GRUCell"):
        ours = getattr(symcell.cells, kind)(3, 5, False, "cpu", torch.float64)
        theirs = getattr(nn, kind)(3, 5, False, "cpu", torch.float64)
        assert [(n, p.dtype) for n, p in ours.named_parameters()] == [(n, p.dtype)
                                                                       for n, p in theirs.named_parameters()]
        assert repr(ours) == repr(theirs) == f"{kind}(3, 5, bias=False)"   # (was LSTMCell(I=3, H=5, ...))
        assert repr(getattr(symcell.cells, kind)(3, 5, backend="reference")) == f"{kind}(3, 5, backend='reference')"


def test_rnns_have_nns_internal_attributes_that_user_code_reads():
    """mode, _all_weights, _flat_weights_names, _flat_weights (weight-dropping wrappers and exporters read them)"""
    for ours, theirs in ((LSTM(3, 5, 2, bidirectional=True, proj_size=2, **REF),
                          nn.LSTM(3, 5, 2, bidirectional=True, proj_size=2)), (GRU(3, 5, bias=False, **REF),
                                                                                nn.GRU(3, 5, bias=False))):
        assert ours.mode == theirs.mode and ours._all_weights == theirs._all_weights
        assert ours._flat_weights_names == theirs._flat_weights_names
        assert all(a is getattr(ours, n) for a, n in zip(ours._flat_weights, ours._flat_weights_names))


def test_conversions_that_swap_the_parameters_work_as_nns():
    """.to() swaps each parameter for the converted one (torch.utils.swap_tensors) under
    set_swap_module_params_on_conversion, and for tensor subclasses: swap_tensors refuses a tensor with a weak
    reference, which the RNNs held to tell when a weight changed (nn drops its own before converting)"""
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    pairs = ((LSTM(3, 5, 2, **REF), nn.LSTM(3, 5, 2)), (GRU(3, 5, **REF), nn.GRU(3, 5)),
             (symcell.RNN(symcell.cells.slstm_cell(1), 2, I=3, H=5, backend="reference"), None))
    for ours, theirs in pairs:   # (loaded before: nn's load_state_dict fails under the flag, as nn's own weak
        if theirs is not None:   # references are not dropped there)
            theirs.load_state_dict(ours.state_dict())
    was = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        for ours, theirs in pairs:
            params = list(ours.parameters())
            ours._flat_weights   # (read once: the list and the references of a model that has run)
            ours.double()
            assert all(p.dtype == torch.float64 for p in ours.parameters())
            assert all(a is b for a, b in zip(ours.parameters(), params))   # the same objects, swapped
            assert all(a is getattr(ours, n) for a, n in zip(ours._flat_weights, ours._flat_weights_names))
            if theirs is not None:
                torch.testing.assert_close(ours(x), theirs.double()(x))
            else:
                ours(x)
            # and load_state_dict (nn's fails under the flag)
            ours.load_state_dict({k: torch.zeros_like(v) for k, v in ours.state_dict().items()})
            assert all(a is b and not a.any() for a, b in zip(ours.parameters(), params))
            assert all(a is getattr(ours, n) for a, n in zip(ours._flat_weights, ours._flat_weights_names))
    finally:
        torch.__future__.set_swap_module_params_on_conversion(was)
    # a load that assigns other objects (assign=True), or a weight set past __setattr__ before a load: the list
    # held before is read anew, not run
    ours, theirs = pairs[0]
    state = {k: torch.randn_like(v) for k, v in ours.state_dict().items()}
    ours._flat_weights
    ours.load_state_dict(state, assign=True)
    theirs.load_state_dict(state)
    torch.testing.assert_close(ours(x), theirs(x))
    for m in (ours, theirs):
        m._flat_weights
        m.register_parameter("weight_hh_l0", nn.Parameter(torch.zeros(20, 5, dtype=torch.float64)))
        m.load_state_dict(m.state_dict())
    torch.testing.assert_close(ours(x), theirs(x))



def test_assigned_flat_weights_run_as_nns_do():
    """AWD-LSTM's weight-dropping wrappers assign the dropped weights to `_flat_weights`, which nn's forward runs
    (symcell's property had no setter: an AttributeError); nn replaces an entry when a weight is assigned by name
    and re-reads the weights after .to()"""
    torch.manual_seed(0)
    theirs = nn.LSTM(3, 4, 2, bidirectional=True).double()
    ours = LSTM(3, 4, 2, bidirectional=True, **REF).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for m in (theirs, ours):
        i = m._flat_weights_names.index("weight_hh_l1_reverse")
        raw = m.weight_hh_l1_reverse
        torch.manual_seed(1)
        dropped = torch.nn.functional.dropout(raw, 0.5)
        m._flat_weights = m._flat_weights[:i] + [dropped] + m._flat_weights[i + 1:]
        assert m._flat_weights[i] is dropped and m.weight_hh_l1_reverse is raw
    (y, (h, c)), (y2, (h2, c2)) = theirs(x), ours(x)
    torch.testing.assert_close((y2, h2, c2), (y, h, c), rtol=1e-12, atol=1e-12)
    g, g2 = (torch.autograd.grad(y.sum(), [m.weight_hh_l1_reverse, m.weight_hh_l0]) for m, y in ((theirs, y), (ours, y2)))
    torch.testing.assert_close(g2, g, rtol=1e-12, atol=1e-12)   # (through the dropout, into the raw weight)
    assert (g2[0] == 0).any()
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)   # (held for the next call)
    for m in (theirs, ours):   # a weight assigned by name: that entry, then the next forward reads all weights
        m.weight_hh_l0 = nn.Parameter(torch.zeros_like(m.weight_hh_l0))
        assert m._flat_weights[m._flat_weights_names.index("weight_hh_l0")] is m.weight_hh_l0
        assert m._flat_weights[m._flat_weights_names.index("weight_hh_l1_reverse")] is not m.weight_hh_l1_reverse
    (y, _), (y2, _) = theirs(x), ours(x)
    torch.testing.assert_close(y2, y, rtol=1e-12, atol=1e-12)
    assert all(a is getattr(ours, n) for a, n in zip(ours._flat_weights, ours._flat_weights_names))
    for m in (theirs, ours):   # moved: its parameters again
        m._flat_weights = [w * 0 for w in m._flat_weights]
        m.float()
        assert all(a is getattr(m, n) for a, n in zip(m._flat_weights, m._flat_weights_names))
    torch.testing.assert_close(ours(x.float()), theirs(x.float()))
    ours._flat_weights = [w * 0 for w in ours._flat_weights]   # copied or saved: its parameters, as nn from its next call
    torch.testing.assert_close(copy.deepcopy(ours)(x.float()), theirs(x.float()))
    with pytest.raises(ValueError, match=r"_flat_weights must hold 16 tensors, one for each of _flat_weights_names, "
                                         r"got 1"):
        ours._flat_weights = [ours.weight_ih_l0]

@pytest.mark.parametrize("kind", ["GRU", "GRUCell", "LSTM", "LSTMCell"])
def test_a_state_that_is_no_tensor_nor_tuple_is_refused_naming_it(kind):
    m = getattr(symcell.cells, kind)(3, 4, **REF)
    x = torch.randn(2, 3) if kind.endswith("Cell") else torch.randn(5, 2, 3)
    for bad in (3.0, "abc"):
        with pytest.raises(TypeError, match=rf"^{kind}: (hx|state) must be a tensor or a tuple of \d tensor\(s\) "
                                            rf".*got {type(bad).__name__}"):
            m(x, bad)


def test_a_cells_unbatched_step_names_the_shapes_the_caller_passed():
    cell = GRUCell(3, 4, **REF)
    with pytest.raises(ValueError, match=r"unbatched 1-d input the state 'h' must have shape \(4,\), got \(5,\)"):
        cell(torch.randn(3), torch.randn(5))
    with pytest.raises(TypeError, match="a cell takes padded sequences .* not a PackedSequence"):
        cell(nn.utils.rnn.pack_padded_sequence(torch.randn(4, 2, 3), [4, 2]))


def test_a_stacks_parameter_errors_name_its_parameters():
    """(they named the cell's parameter, 'bias_hh', and its layer's sizes as the cell's: which of 16?)"""
    x = torch.randn(5, 3, 4)
    s = LSTM(4, 6, num_layers=2, bidirectional=True, **REF)
    s.bias_hh_l1_reverse.data = s.bias_hh_l1_reverse.data.double()
    with pytest.raises(symcell.DtypeError, match=r"parameter 'bias_hh_l1_reverse' has dtype torch.float64 but "
                                                 r"parameter 'weight_ih_l1_reverse' has torch.float32"):
        s(x)
    s = LSTM(4, 6, num_layers=2, bidirectional=True, **REF)
    s.weight_hh_l1_reverse = nn.Parameter(torch.randn(24, 5))
    with pytest.raises(symcell.ShapeError, match=r"parameter 'weight_hh_l1_reverse' has shape \(24, 5\), but its "
                                                 r"layer's dimensions \(I=12, H=6\) make it \(24, 6\)"):
        s(x)
    # a partial load onto the meta device: the parameter left there is the one named (was: the one loaded)
    s = LSTM(4, 6, num_layers=2, device="meta", **REF)
    state = nn.LSTM(4, 6, num_layers=2).state_dict()
    del state["weight_ih_l1"]
    s.load_state_dict(state, strict=False, assign=True)
    with pytest.raises(symcell.DeviceError, match=r"parameter 'weight_ih_l1' is on the meta device, which holds no "
                                                  r"values, but parameter 'weight_hh_l1' is on cpu"):
        s(x)


@pytest.mark.parametrize("which", ["weight_ih_l0", "weight_hh_l0", "bias_hh_l0"])
def test_a_16_bit_module_may_hold_a_float32_parameter_wherever_it_is(which):
    """(the first parameter decided the module's dtype: a float32 weight_ih_l0 in a float16 LSTM was refused,
    with a message that blamed the float16 ones)"""
    torch.manual_seed(0)
    s = LSTM(4, 6, **REF).half()
    getattr(s, which).data = getattr(s, which).data.float()
    x = torch.randn(5, 3, 4).half()
    out, _ = s(x)
    full = LSTM(4, 6, **REF)
    full.load_state_dict({k: v.float() for k, v in s.state_dict().items()})
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), full(x.float())[0], rtol=4e-3, atol=1e-3)


def test_scan_and_step_compute_the_weights_that_pruning_and_weight_norm_compute_in_a_hook():
    """symcell.scan(cell, ...) and cell.step(...) call no module: the pre-hook in which pruning (and the old
    weight_norm and spectral_norm) computes the weight never ran, so after an optimizer step both ran with the
    weight of the module's last call, silently. They compute those weights; a call's other hooks stay a call's
    (torch's module tracker pairs each pre-hook with its forward hook; a subclass's forward that loops over step
    ran an argument-rewriting hook once a step more)."""
    import warnings

    from torch.nn.utils import prune
    from torch.utils.module_tracker import ModuleTracker
    torch.manual_seed(0)
    cell = LSTMCell(4, 6, **REF).double()
    prune.l1_unstructured(cell, "weight_hh", amount=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # (torch.nn.utils.weight_norm is deprecated)
        torch.nn.utils.weight_norm(cell, "weight_ih")
    x, h0 = torch.randn(5, 3, 4, dtype=torch.float64), (torch.randn(3, 6, dtype=torch.float64),) * 2
    opt = torch.optim.SGD(cell.parameters(), lr=1.0)
    cell(x, h0)[0].sum().backward()
    opt.step()                                       # what the hooks compute the weights from changes
    ys, _ = symcell.scan(cell, x, h0)
    h1, _ = cell.step(x[0], h0)
    want = cell(x, h0)[0]                            # a call runs the hooks
    torch.testing.assert_close(ys, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h1, want[0], rtol=1e-12, atol=1e-12)
    # a hook of the user's: a call's only
    gru = GRUCell(4, 6, **REF).double()
    gru.register_forward_pre_hook(lambda m, args: (2 * args[0], *args[1:]))
    plain = GRUCell(4, 6, **REF).double()
    plain.load_state_dict(gru.state_dict())
    h0 = torch.randn(3, 6, dtype=torch.float64)
    torch.testing.assert_close(gru(x[0], h0), plain(2 * x[0], h0), rtol=0, atol=0)
    torch.testing.assert_close(gru.step(x[0], h0), plain(x[0], h0), rtol=0, atol=0)
    torch.testing.assert_close(symcell.scan(gru, x, h0)[0], plain(x, h0)[0], rtol=0, atol=0)
    with ModuleTracker() as tracker:
        gru.step(x[0], h0)
        symcell.scan(gru, x, h0)
        assert not tracker.parents - {"Global"}


@pytest.mark.parametrize("options", [{}, {"num_layers": 2, "dropout": 0.5}, {"bias": False, "batch_first": True},
                                     {"bidirectional": True, "proj_size": 3}])
def test_lstm_and_gru_print_as_nn_does(options):
    """nn's repr names the options that are not the defaults (LSTM(4, 6)); symcell's named every one"""
    assert repr(LSTM(4, 6, **options)) == repr(nn.LSTM(4, 6, **options))
    options.pop("proj_size", None)
    assert repr(GRU(4, 6, **options)) == repr(nn.GRU(4, 6, **options))
    assert repr(GRU(4, 6, backend="reference", **options)) == repr(nn.GRU(4, 6, **options))[:-1] + (
        ", backend='reference')")


def test_a_sparse_parameter_input_or_state_is_refused_by_name():
    """(a sparse weight met torch's "unsupported memory format option Contiguous", naming no argument)"""
    s = LSTM(4, 6, **REF)
    x = torch.randn(5, 3, 4)
    s.weight_hh_l0 = nn.Parameter(s.weight_hh_l0.detach().to_sparse())
    with pytest.raises(TypeError, match=r"LSTM: parameter 'weight_hh_l0' has layout torch.sparse_coo: the kernels "
                                        r"take dense tensors \(torch.strided; to_dense\(\) makes one\)"):
        s(x)
    s = LSTM(4, 6, **REF)
    with pytest.raises(TypeError, match=r"input 'x' has layout torch.sparse_coo"):
        s(x.to_sparse())
    with pytest.raises(TypeError, match=r"state 'h' has layout torch.sparse_coo"):
        s(x, (torch.zeros(1, 3, 6).to_sparse(), torch.zeros(1, 3, 6)))


class _Scaled(LSTM):
    """a subclass with a parameter of its own (a learned output scale)"""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.out_scale = nn.Parameter(torch.ones(()))

    def forward(self, x, state=None):
        ys, state = super().forward(x, state)
        return ys * self.out_scale, state


def test_a_subclass_with_a_parameter_of_its_own_copies_and_loads_without_a_warning():
    """loading (and deep-copying) warned that the cell "no longer declares" the subclass's own parameter and that
    it was "kept, unused": a parameter the cell never declared is the subclass's"""
    import warnings
    m = _Scaled(4, 6, **REF)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = copy.deepcopy(m)
        loaded = pickle.loads(pickle.dumps(m))
    x = torch.randn(5, 3, 4)
    for other in (again, loaded):
        assert torch.equal(other(x)[0], m(x)[0]) and other.out_scale is not m.out_scale


SWEPT = ("import symcell\nfrom symcell import tanh\nALPHA = 0.5\n"
         "DECL = dict(inputs={'x': 'I'}, state={'h': 'H'}, params={'W': ('H', 'I')})\n\n"
         "def step(x, h, W):\n    return ALPHA * h + tanh(W @ x)\n")


def _alpha(m, x):
    """the ALPHA the module's equations hold, from its first two steps"""
    ys, _ = m(x)
    return ((ys[1] - torch.tanh(x[1] @ m.W.t())) / ys[0]).mean().item()


def test_a_saved_cell_of_a_sweep_loads_with_the_equations_it_was_saved_with(tmp_path, monkeypatch):
    """a sweep over a global its step reads: a module saved while ALPHA = 0.25 loaded with ALPHA = 0.1 after the
    sweep's next define, and with the file's 0.5 in a fresh process, silently. In the process it was made in, it
    loads with its own equations; elsewhere with today's code, and a warning says the equations differ."""
    (tmp_path / "swept.py").write_text(SWEPT)
    monkeypatch.syspath_prepend(str(tmp_path))
    import swept
    x = torch.rand(2, 3, 3) + 0.5
    swept.ALPHA = 0.25
    m = symcell.define(**swept.DECL)(swept.step)(I=3, H=2, **REF)
    saved = pickle.dumps(m)
    swept.ALPHA = 0.1
    symcell.define(**swept.DECL)(swept.step)      # the sweep goes on
    assert _alpha(pickle.loads(saved), x) == pytest.approx(0.25)
    (tmp_path / "m.pkl").write_bytes(saved)
    out = python("-c", f"import sys, pickle, torch; sys.path.insert(0, {str(tmp_path)!r})\n"
                       f"m = pickle.loads(open({str(tmp_path / 'm.pkl')!r}, 'rb').read())\n"
                       f"x = torch.rand(2, 3, 3) + 0.5; ys, _ = m(x)\n"
                       f"print(((ys[1] - torch.tanh(x[1] @ m.W.t())) / ys[0]).mean().item())")
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(0.5)
    assert "the saved cell step (swept.step) had other equations when it was saved; it runs today's code" \
        in out.stderr


def test_a_saved_module_whose_cell_renamed_a_dimension_says_what_to_do(tmp_path, monkeypatch):
    """(torch.load raised a bare "Toy() got unexpected argument(s) ['H']")"""
    import gc
    import importlib
    import warnings
    cell = ("import symcell\n@symcell.define(inputs={'x': 'I'}, state={'h': 'H'}, params={'W': ('H', 'I')})\n"
            "def Toy(x, h, W):\n    return symcell.tanh(W @ x) + 0.5 * h\n")
    (tmp_path / "renamed.py").write_text(cell)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)   # (an edit of the same size in the same second: stale)
    import renamed
    saved = pickle.dumps(renamed.Toy(I=3, H=2, **REF))
    (tmp_path / "renamed.py").write_text(cell.replace("'H'", "'S'"))
    importlib.reload(renamed)
    gc.collect()   # (the spec it was saved with, while this process holds it, is what a load gives back)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # (other equations: said, then refused)
        with pytest.raises(pickle.UnpicklingError, match=r"the saved Toy has dimensions \{'I': 3, 'H': 2\}, which "
                                                         r"its cell Toy as the code defines it now does not take .*"
                                                         r"load the saved one's state_dict"):
            pickle.loads(saved)


def test_a_cell_defined_by_exec_with_bare_globals_traces_and_compiles():
    """exec(source, {}) gives functions no module (__module__ None), which torch.compile's and jit.trace's
    handling of the class failed on"""
    scope = {}
    exec("import symcell\n"
         "@symcell.define(inputs={'x': 'I'}, state={'h': 'H'}, params={'W': ('H', 'I')})\n"
         "def Bare(x, h, W):\n    return symcell.tanh(W @ x) + 0.5 * h\n", scope)
    m = scope["Bare"](I=3, H=2, **REF)
    x = torch.randn(4, 2, 3)
    traced = torch.jit.trace(m, (x,), check_trace=False)
    torch.testing.assert_close(traced(x)[0], m(x)[0])
    torch.testing.assert_close(torch.compile(m, backend="eager")(x)[0], m(x)[0])


def test_a_compiled_module_copies_and_saves_as_nn_modules_do():
    """(symcell's pickled state copied the module's attributes whole, the compiled call of module.compile() with
    them: a deep copy ran the original's weights, and torch.save failed, "Can't pickle Module._call_impl")"""
    import io
    try:
        for m in (LSTMCell(3, 4, **REF), LSTM(3, 4, **REF)):
            m.compile(backend="eager")
            again = copy.deepcopy(m)
            with torch.no_grad():
                for p in again.parameters():
                    p.zero_()
            x = torch.randn(2, 1, 3)
            assert again(x)[0].abs().max() == 0
            buf = io.BytesIO()
            torch.save(m, buf)
            buf.seek(0)
            torch.testing.assert_close(torch.load(buf, weights_only=False)(x)[0], m(x)[0])
    finally:   # (dynamo's compiled nn.Module._call_impl outlived the test: a later torch.compile(m, "aot_eager")
        torch._dynamo.reset()   # compiled its backward with donated buffers)


def test_lengths_given_as_a_list_run_under_a_meta_default_device():
    """as nn.LSTM with pack_padded_sequence(x, [5, 2, 3]) does where code builds modules lazily under
    torch.device("meta"): the lengths' tensor was made on the default device, and reading it failed ("Cannot copy
    out of meta tensor")"""
    torch.manual_seed(0)
    m, cell = LSTM(4, 6, bidirectional=True, **REF), GRUCell(4, 6, **REF)
    x = torch.randn(5, 3, 4)
    want = m(x, lengths=torch.tensor([5, 2, 3]))[0], cell(x, lengths=torch.tensor([5, 2, 3]))[0]
    with torch.device("meta"):
        got = m(x, lengths=[5, 2, 3])[0], cell(x, lengths=[5, 2, 3])[0]
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_help_shows_no_private_arguments():
    """help(GRU) showed `**unexpected` (the keywords it refuses as nn.GRU does) and help(symcell.RNN) `_init_size`
    (LSTM's and GRU's argument to it); a subclass with its own __init__ shows its own"""
    import inspect
    assert "unexpected" not in str(inspect.signature(GRU)) and "bidirectional=False" in str(inspect.signature(GRU))
    assert "_init_size" not in str(inspect.signature(symcell.RNN)) and "**dims" in str(inspect.signature(symcell.RNN))

    class Mine(GRU):
        def __init__(self, size):
            super().__init__(size, size)
    assert str(inspect.signature(Mine)) == "(size)"
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        GRU(3, 4, bogus=2)


def test_a_cell_runs_the_weight_an_attribute_set_over_its_parameter_holds():
    """weight-dropping wrappers set the dropped weight over the parameter (object.__setattr__, the parameter still
    registered): getattr finds it first, and so must the cell's call (its parameters are read from _parameters
    directly where nothing else answers to the name)"""
    torch.manual_seed(0)
    ours, theirs = LSTMCell(3, 4, **REF).double(), nn.LSTMCell(3, 4).double()
    theirs.load_state_dict(ours.state_dict())
    x, state = torch.randn(2, 3, dtype=torch.float64), (torch.randn(2, 4, dtype=torch.float64),) * 2
    dropped = torch.nn.functional.dropout(ours.weight_hh, 0.5)
    object.__setattr__(ours, "weight_hh", dropped)
    assert "weight_hh" in ours._parameters
    want = torch._VF.lstm_cell(x, state, theirs.weight_ih, dropped, theirs.bias_ih, theirs.bias_hh)
    torch.testing.assert_close(ours(x, state), want, rtol=1e-12, atol=1e-12)


def test_flat_weights_as_nns_list_item_set_weight_deleted_or_none_and_replicas():
    """an item set in _flat_weights runs (the list the next forward runs, as nn's); a weight a wrapper deleted (it
    sets the attribute in its forward) or set to None moves, copies and loads as nn's (.to() crashed); a
    DataParallel replica's weights go into its own list, not the original's"""
    torch.manual_seed(0)
    theirs, ours = nn.LSTM(3, 4).double(), LSTM(3, 4, **REF).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for m in (theirs, ours):
        m._flat_weights[1] = m.weight_hh_l0 * 0.5
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-12, atol=1e-12)
    for m in (theirs, ours):
        del m._parameters["weight_hh_l0"]   # (a weight-dropping wrapper before its first forward)
        m.to(torch.float32)
        copy.deepcopy(m)
    loaded = pickle.loads(pickle.dumps(ours))
    assert "weight_hh_l0" not in loaded._parameters
    ours = LSTM(3, 4, **REF)
    ours.bias_hh_l0 = None
    ours.double()
    ours._flat_weights   # (read: the list the replica would share)
    replica = ours._replicate_for_data_parallel()
    replica.weight_ih_l0 = nn.Parameter(torch.zeros_like(ours.weight_ih_l0))
    assert replica._flat_weights[0] is replica.weight_ih_l0 and ours._flat_weights[0] is ours.weight_ih_l0


def test_an_rnn_of_a_16_bit_cell_holding_a_float32_parameter_is_16_bit():
    cell = LSTMCell(3, 4, **REF).bfloat16()
    cell.bias_hh = nn.Parameter(cell.bias_hh.detach().float())   # (a 16-bit cell may hold float32 ones)
    x = torch.randn(5, 2, 3).bfloat16()
    assert cell(x)[0].dtype == torch.bfloat16
    stack = symcell.RNN(cell)
    assert stack.weight_hh_l0.dtype == torch.bfloat16 and stack(x)[0].dtype == torch.bfloat16


def test_flat_weights_set_after_torch_compile_traced_run_compiled():
    """a list held in _flat_weights after the first compile was not seen by torch.compile (read from __dict__: no
    guard), and the compiled forward ran the parameters; nn's does run the list"""
    torch.manual_seed(0)
    torch._dynamo.reset()
    try:
        m, x = LSTM(3, 4, **REF), torch.randn(5, 3, 3)
        compiled = torch.compile(m, backend="eager")
        compiled(x)
        m._flat_weights[1] = m.weight_hh_l0 * 0
        torch.testing.assert_close(compiled(x)[0], m(x)[0])
        fresh = LSTM(3, 4, **REF)
        fresh.load_state_dict(m.state_dict())
        assert not torch.allclose(m(x)[0], fresh(x)[0])   # (the item set runs, eager and compiled)
        m._flat_weights = [w * 0.5 for w in m._flat_weights]
        torch.testing.assert_close(compiled(x)[0], m(x)[0])
    finally:
        torch._dynamo.reset()
