"""symcell.deploy: models with symcell cells saved so that they run where only torch is (a Python process that
never imports symcell, a C++ program linked against libtorch), at any sequence length."""
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import symcell
from symcell import sigmoid, split, tanh

pytestmark = pytest.mark.cpp
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "deploy"
sys.path.insert(0, str(EXAMPLE))
import check  # noqa: E402  (examples/deploy/check.py: the C++ example's model and inputs)


@symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("2*H", "I"), "U": ("2*H", "H"), "b": ("2*H",)})
def Minimal(x, h, W, U, b):
    """a cell of no library: a gated tanh unit"""
    a, z = split(W @ x + U @ h + b, 2)
    z = sigmoid(z)
    return (1 - z) * h + z * tanh(a)


class Scorer(nn.Module):
    """the user's cell over the sequence, bidirectional as two scans, and a head on both"""

    def __init__(self):
        super().__init__()
        self.fwd, self.bwd = Minimal(I=8, H=6, backend="cpp"), Minimal(I=8, H=6, backend="cpp")
        self.head = nn.Linear(12, 2)

    def forward(self, x):
        ys, _ = self.fwd(x)
        back, _ = self.bwd(x.flip(0))
        return self.head(torch.cat([ys, back.flip(0)], -1))


# Runs in a fresh interpreter in which `import symcell` fails: what a deployed process has is torch and the folder
FRESH = textwrap.dedent("""
    import glob, sys, zipfile, torch

    class NoSymcell:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "symcell":
                raise ImportError("symcell is not installed here")
    sys.meta_path.insert(0, NoSymcell())
    for m in [m for m in sys.modules if m.split(".")[0] == "symcell"]:
        del sys.modules[m]

    folder, name = sys.argv[1], sys.argv[2]
    for lib in sorted(glob.glob(folder + "/symcell_*.so")):
        torch.ops.load_library(lib)
    path = folder + "/" + name
    if name.endswith(".pt"):
        model = torch.jit.load(path)
    elif any("/aotinductor/" in f for f in zipfile.ZipFile(path).namelist()):
        model = torch._inductor.aoti_load_package(path)
    else:
        model = torch.export.load(path).module()
    cases = torch.load(folder + "/cases.pt")
    with torch.no_grad():
        for x, want in cases:
            got = model(x)
            assert got.shape == want.shape, (got.shape, want.shape)
            print(x.shape[0], float((got - want).abs().max()))
    assert "symcell" not in sys.modules
""")


def _run_fresh(folder, name, model, lengths):
    with torch.no_grad():
        cases = [(x, model(x)) for x in (check.inputs(T) for T in lengths)]
    torch.save(cases, folder / "cases.pt")
    r = subprocess.run([sys.executable, "-c", FRESH, str(folder), name], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "PYTHONPATH": ""})
    assert r.returncode == 0, r.stderr[-3000:]
    diffs = {int(line.split()[0]): float(line.split()[1]) for line in r.stdout.split("\n") if line.strip()}
    assert set(diffs) == set(lengths) and max(diffs.values()) < 1e-5, diffs
    return diffs


@pytest.mark.parametrize("what", ["tagger", "user cell"])
def test_a_saved_torchscript_model_runs_without_symcell_at_other_lengths(what, tmp_path):
    torch.manual_seed(0)
    model = (check.model() if what == "tagger" else Scorer()).eval()
    path = symcell.deploy.save(model, check.inputs(7), tmp_path)
    assert path == tmp_path / "model.pt"
    libraries = sorted(p.name for p in tmp_path.glob("symcell_*.so"))
    assert len(libraries) == 1, libraries    # one cell, one library, however many layers and directions
    assert libraries[0].startswith("symcell_LSTM_" if what == "tagger" else "symcell_Minimal_")
    # in this process too, the saved program equals the model (symcell's modules are not involved in it)
    loaded = symcell.deploy.load(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(check.inputs(12)), model(check.inputs(12)), rtol=0, atol=1e-6)
    _run_fresh(tmp_path, "model.pt", model, [5, 23])


def test_a_process_that_loaded_a_deployed_program_uses_the_same_cell_through_symcell(tmp_path):
    """symcell.deploy.load loads the cell's library; the same cell run through symcell afterwards takes that
    library, not its cache's copy (a second library of one namespace aborted the process)"""
    from symcell.cells import LSTM
    torch.manual_seed(0)
    lstm = LSTM(4, 6).eval()
    symcell.deploy.save(lstm, torch.randn(5, 2, 4), tmp_path)
    torch.save(lstm.state_dict(), tmp_path / "weights.pt")
    script = textwrap.dedent(f"""
        import torch, symcell
        from symcell.cells import LSTM
        program = symcell.deploy.load({str(tmp_path)!r})
        x = torch.randn(9, 3, 4)
        lstm = LSTM(4, 6).eval()
        lstm.load_state_dict(torch.load({str(tmp_path / "weights.pt")!r}))
        with torch.no_grad():
            print(float((program(x)[0] - lstm(x)[0]).abs().max()))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and float(r.stdout.split()[-1]) < 1e-6, (r.returncode, r.stdout, r.stderr[-2000:])


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils' nm")
def test_a_library_exports_none_of_the_runtimes_functions_or_statics(tmp_path):
    """sc.h's functions and their statics (a thread's workspace) were exported, a function-local static as a
    unique symbol process-wide: the loader bound them across libraries, and a process that loaded programs
    deployed by two symcell versions (sc.h changed between) crashed; each library keeps its own now"""
    from symcell.cells import LSTM
    symcell.deploy.save(LSTM(4, 6).eval(), torch.randn(5, 2, 4), tmp_path)
    (lib,) = tmp_path.glob("symcell_*.so")
    nm = subprocess.run(["nm", "-DC", "--defined-only", str(lib)], capture_output=True, text=True, check=True)
    assert [line for line in nm.stdout.splitlines() if " sc::" in line] == []


@pytest.mark.slow
def test_an_exported_program_runs_without_symcell(tmp_path):
    """(the AOTInductor package: test_the_cpp_example_builds_runs_and_matches_python, which makes one)"""
    torch.manual_seed(1)
    scorer = Scorer().eval()
    program = symcell.deploy.export(scorer, check.inputs(6), tmp_path)
    assert (tmp_path / "exported.pt2").exists() and len(list(tmp_path.glob("symcell_*.so"))) == 1
    # one call per scan, of an operator that names the cell
    assert sum(str(n.target).startswith("symcell_Minimal_") for n in program.graph.nodes) == 2
    _run_fresh(tmp_path, "exported.pt2", scorer, [4, 11])


def test_the_deployed_operator_checks_its_arguments(tmp_path):
    """a deployed program calls the cell's C++ operator with no Python in between: a wrong input is an error
    naming sizes or dtypes, never a read out of bounds"""
    torch.manual_seed(0)
    model = check.model()
    symcell.deploy.save(model, check.inputs(4), tmp_path)
    loaded = symcell.deploy.load(tmp_path)
    with pytest.raises(RuntimeError, match=r"symcell operator: xs\[0\] \(x\) must have sizes \[3, 2, 8\], got "
                                           r"\[3, 2, 5\]"):
        loaded(torch.randn(3, 2, 5))
    # (the program saved in float32 ships the float32 library: a dtype a library)
    with pytest.raises(RuntimeError, match=r"symcell operator forward: xs\[0\] is Double but this library computes "
                                           r"in Float \(symcell builds a cell's library for each dtype it runs in"):
        loaded(torch.randn(3, 2, 8, dtype=torch.float64))
    x = torch.randn(2, 3, 8).transpose(0, 1)   # not contiguous: the traced program makes it so before the call
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-6)


class Lengths(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = symcell.cells.LSTM(4, 6, backend="cpp")

    def forward(self, x, lengths):
        y, (h, c) = self.rnn(x, lengths=lengths)
        return y, h


def test_a_deployed_program_checks_its_lengths_and_its_operator_its_argument_lists(tmp_path):
    """Python's check of lengths ran once, when the program was traced: the operator checks their values (a length
    past T ran as T, a negative one as 0) and dtype (floats were converted); and its argument lists' lengths (an
    empty xs or a dims list one short read past their ends)"""
    model = Lengths().eval()
    symcell.deploy.save(model, (torch.randn(5, 3, 4), torch.tensor([5, 3, 2])), tmp_path)
    loaded = symcell.deploy.load(tmp_path)
    x = torch.randn(4, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, torch.tensor([4, 2, 1]))[1], model(x, torch.tensor([4, 2, 1]))[1])
    for bad, match in ((torch.tensor([9, 2, 1]), r"lengths must lie in \[0, T\] = \[0, 4\], got 9 for row 0"),
                       (torch.tensor([-1, 2, 1]), r"got -1 for row 0"),
                       (torch.tensor([2.5, 2.0, 1.0]), r"Long|int64")):
        with pytest.raises(RuntimeError, match=match):
            loaded(x, bad)
    lib = next(Path(tmp_path).glob("symcell_LSTM_*.so")).stem
    op = getattr(torch.ops, lib).forward
    params = [p.detach() for p in model.rnn.parameters()]
    h = torch.zeros(3, 6)
    with pytest.raises(ValueError, match=r"symcell operator: xs must hold 1 entries, got 0"):
        op([], [h, h], params, [6, 4], False, False, torch.empty(0, dtype=torch.int64), [])
    with pytest.raises(ValueError, match=r"symcell operator: dims must hold 2 entries, got 1"):
        op([x], [h, h], params, [6], False, False, torch.empty(0, dtype=torch.int64), [])


def test_an_exported_program_takes_strided_inputs_and_int32_lengths_as_the_module(tmp_path):
    """torch.export drops the module's .contiguous() and its lengths' int64 conversion: the exported program
    refused a transposed input ("must be a contiguous CPU tensor") and int32 lengths (torch's "expected scalar type
    Long but found Int", naming no argument), which the module and a saved trace take"""
    model = Lengths().eval()
    program = symcell.deploy.export(model, (torch.randn(5, 3, 4), torch.tensor([5, 3, 2])), tmp_path).module()
    x = torch.randn(3, 4, 4).transpose(0, 1)   # (T, B, I) = (4, 3, 4), not contiguous
    lengths = torch.tensor([4, 2, 1], dtype=torch.int32)
    with torch.no_grad():
        for got, want in zip(program(x, lengths), model(x, lengths)):
            torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match=r"lengths must be empty or a contiguous int64 CPU tensor of 3 values, got "
                                         r"sizes \[3\] of Float"):
        program(x.contiguous(), torch.tensor([4.0, 2.0, 1.0]))


def test_load_tells_the_programs_apart_by_content_whatever_their_names(tmp_path):
    """(load went by the .pt2 suffix: a TorchScript program saved as .pt2, an exported one as .pt, met torch's
    "checkpoint file is corrupted" and "error when deserializing")"""
    import warnings
    model = symcell.cells.LSTM(3, 4, backend="cpp").eval()
    x = torch.randn(5, 2, 3)
    symcell.deploy.save(model, (x,), tmp_path, name="traced.pt2")
    symcell.deploy.export(model, (x,), tmp_path, name="exported.pt")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # (torch.export.load warns at a name without .pt2)
        for name in ("traced.pt2", "exported.pt"):
            torch.testing.assert_close(symcell.deploy.load(tmp_path, name)(x)[0], model(x)[0])


def test_deploy_refuses_what_it_cannot_save(tmp_path):
    with pytest.raises(RuntimeError, match="symcell.deploy saves the C\\+\\+ operators of the cpp backend; this "
                                           "cell runs on backend 'reference'"):
        symcell.deploy.save(symcell.cells.LSTM(8, 4, backend="reference"), check.inputs(3), tmp_path)
    with pytest.raises(ValueError, match="the model ran no symcell cell"):
        symcell.deploy.save(nn.Linear(8, 2), check.inputs(3), tmp_path)


def test_a_save_in_one_thread_leaves_another_threads_traces_and_saves_their_own(tmp_path):
    """deploy's recording was one flag for all threads: another thread's jit.trace meanwhile recorded the deploy
    operator (no autograd: its gradients None), and two saves at once swapped their libraries"""
    import threading
    lstm, gru = symcell.cells.LSTM(4, 6).eval(), symcell.cells.GRU(4, 6).eval()
    x = torch.randn(5, 2, 4)
    started, finish, out = threading.Event(), threading.Event(), {}

    def save_slowly():   # the save of one thread, held open while the other works
        with symcell.deploy.native() as libraries:
            torch.jit.trace(lstm, (x,), check_trace=False)
            started.set()
            finish.wait(60)
        out["lstm"] = [p.name for p in libraries]
    saver = threading.Thread(target=save_slowly)
    saver.start()
    try:
        assert started.wait(60)
        traced = torch.jit.trace(gru, (x,), check_trace=False)
        compiled = torch.compile(gru, backend="eager", fullgraph=True)   # (its guards must not keep the saving
        for run in (traced, compiled, compiled):                           # thread's answer for this one's)
            xx = x.clone().requires_grad_()
            run(xx)[0].sum().backward()
            assert xx.grad is not None and xx.grad.abs().sum() > 0
        symcell.deploy.save(gru, x, tmp_path / "gru")
    finally:
        finish.set()
        saver.join(60)
        torch._dynamo.reset()
    saved = [p.name for p in (tmp_path / "gru").glob("*.so")]
    assert len(out["lstm"]) == 1 and "LSTM" in out["lstm"][0]
    assert len(saved) == 1 and "GRU" in saved[0], saved


def test_an_example_of_one_step_or_one_row_is_refused_where_export_would_fix_it(tmp_path):
    """torch.export takes an example's sizes of 0 and 1 as constants: a package exported on T = 1 answered step 0's
    output for the last step's at T = 6, without an error; a feature size of 1 the model fixes is stated so"""
    model = symcell.cells.LSTM(3, 5).eval()
    for deploy, x in ((symcell.deploy.package, torch.randn(1, 2, 3)), (symcell.deploy.export, torch.randn(4, 1, 3))):
        with pytest.raises(ValueError, match=r"example input 0 has size 1 in dimension [01], which torch.export "
                                             r"takes as a constant"):
            deploy(model, x, tmp_path)
    narrow = symcell.cells.LSTM(1, 5).eval()
    with pytest.raises(ValueError, match=r"dynamic_shapes=\(\{0: Dim.AUTO, 1: Dim.AUTO\},\)"):
        symcell.deploy.export(narrow, torch.randn(4, 2, 1), tmp_path)
    program = symcell.deploy.export(narrow, torch.randn(4, 2, 1), tmp_path,
                                    dynamic_shapes=({0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO},))
    x = torch.randn(7, 3, 1)
    torch.testing.assert_close(program.module()(x)[0], narrow(x)[0])


def test_a_model_in_training_mode_is_saved_with_a_warning(tmp_path):
    """deploy.save of a model left in training mode saved its dropout into the program, without a word"""
    import warnings
    model = symcell.cells.LSTM(3, 4, num_layers=2, dropout=0.5)
    with pytest.warns(UserWarning, match=r"symcell.deploy.save: the model is in training mode \(dropout acts in the "
                                         r"saved program\); call .eval\(\) first"):
        symcell.deploy.save(model, torch.randn(5, 2, 3), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        symcell.deploy.save(model.eval(), torch.randn(5, 2, 3), tmp_path)


def _cmake():
    """CMake: on the PATH, or beside this Python's scripts (the test extra installs it with pip)"""
    found = shutil.which("cmake") or shutil.which("cmake", path=sysconfig.get_path("scripts"))
    assert found, "the C++ example is built with CMake: pip install cmake (it is in symcell's test extra)"
    return found


@pytest.mark.slow
def test_the_cpp_example_builds_runs_and_matches_python(tmp_path):
    """README, "Deploying without Python": examples/deploy/ built against this torch's libtorch, run on a saved
    TorchScript model and an AOTInductor package (torch.export + aoti_compile_and_package) at two lengths each,
    its outputs compared with Python's"""
    folder, build = tmp_path / "out", tmp_path / "build"
    subprocess.run([sys.executable, str(EXAMPLE / "check.py"), "save", str(folder)], check=True, timeout=600)
    subprocess.run([sys.executable, str(EXAMPLE / "check.py"), "package", str(folder)], check=True, timeout=600)
    prefix = torch.utils.cmake_prefix_path
    cmake = _cmake()
    for cmd in ([cmake, "-S", str(EXAMPLE), "-B", str(build), f"-DCMAKE_PREFIX_PATH={prefix}"],
                [cmake, "--build", str(build), "-j2"]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for model in ("model.pt", "model.pt2"):
        r = subprocess.run([str(build / "run_model"), str(folder / model), "8", "5", "23"], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert f"{model} T=23 output [23, 2, 3]" in r.stdout, r.stdout
        r = subprocess.run([sys.executable, str(EXAMPLE / "check.py"), "compare", str(folder / model), "5", "23"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.count("max |C++ - Python|") == 2, r.stdout
    # and the package in a Python process without symcell, at two other lengths
    _run_fresh(folder, "model.pt2", check.model(), [3, 19])
