"""Saving a model with symcell cells so that it runs without Python symcell: in a C++ program linked against
libtorch, or in a Python process that only has torch.

    symcell.deploy.save(model, example_inputs, "out/")      # out/model.pt (TorchScript), out/symcell_<cell>_<key>.so
    symcell.deploy.package(model, example_inputs, "out/")   # out/model.pt2 (torch.export + AOTInductor), same libraries
    symcell.deploy.export(model, example_inputs, "out/")    # out/exported.pt2 (torch.export.save), same libraries

Inside `save`, `package` and `export` each fused scan is recorded as a call of its cell's own C++ operator,
`symcell_<cell>_<key>::forward` (the operator the cpp backend builds for every cell, registered by its
library when loaded, as TORCH_LIBRARY registers), instead of `symcell::scan`, whose implementation is Python. The libraries are
copied beside the program. To run it, load them, then the program:

    Python:  for lib in sorted(glob.glob("out/symcell_*.so")): torch.ops.load_library(lib)
             model = torch.jit.load("out/model.pt")    # or torch._inductor.aoti_load_package("out/model.pt2"),
                                                       # torch.export.load("out/exported.pt2").module()
    C++:     dlopen("out/symcell_<cell>_<key>.so", RTLD_NOW | RTLD_GLOBAL) for each, then torch::jit::load or
             torch::inductor::AOTIModelPackageLoader (examples/deploy/main.cpp)

Load each cell's library once a process: programs saved with one cell in one dtype ship the same library (its
name, the cell's key, is the same whatever its sizes; a dtype has a library of its own, and its operator refuses
tensors of another dtype by name), and a second copy's registration aborts the process; load one file a name.

Every saved program runs at every sequence length and batch size (one operator per sequence, not an unrolled
loop). The libraries are built for this machine's CPU (-march=native): deploy to a machine with the same
instruction set extensions, or save there. Only the forward is saved (inference), on CPU tensors.
"""
import contextlib
import shutil
import threading
import warnings
import zipfile
from pathlib import Path

import torch

from . import ops, registry
from .cache import entry_dir, registered
from .warn import warn

__all__ = ["save", "package", "export", "load"]

# while save/export runs: (its thread, the list of library files its operators live in). One list for all threads,
# each entry its thread's: another thread's trace or save running meanwhile recorded the deploy operators (which
# have no autograd) or put its libraries in this save's folder
_recording = []
_lock = threading.Lock()
_faked = set()      # the per-cell operators given a fake implementation (torch.export traces with fake tensors)


@contextlib.contextmanager
def native():
    """Within: traced and exported programs call each cell's C++ operator (see the module docstring); yields the
    list of the library files they need, filled as the model runs."""
    entry = (threading.get_ident(), [])
    with _lock:
        _recording.append(entry)
    try:
        yield entry[1]
    finally:
        with _lock:   # (this one: another of this thread's may be equal)
            del _recording[next(k for k, e in enumerate(_recording) if e is entry)]


def recording():
    # (never while torch.compile traces: its guards would keep one thread's answer for another's calls, and a new
    # saving thread's id recompile every compiled model; torch.export's non-strict tracing, save's, is not dynamo)
    return not torch.compiler.is_dynamo_compiling() and bool(_recording) and _mine() is not None


def _mine():
    """this thread's list of libraries while it saves or exports, else None"""
    me = threading.get_ident()
    return next((libraries for t, libraries in reversed(_recording) if t == me), None)


def forward(key, xs, inits, params, lengths):
    """The forward scan of a cell as a call of its C++ operator (no residuals): ys, finals."""
    name = registry.parse(key)[2]
    if name != "cpp":
        raise RuntimeError(f"symcell.deploy saves the C++ operators of the cpp backend; this cell runs on backend "
                           f"{name!r} (its tensors are on {xs[0].device}). Deploy from CPU tensors with "
                           "backend='cpp' or 'auto' (and a C++ compiler on this machine)")
    entry = registry.kernel_for(key)._scan("forward")
    ns = entry.ns(xs[0].dtype)   # (the library of the model's dtype: the one its program calls)
    library = entry_dir(ns) / f"{ns}.so"
    libraries = _mine()
    if library not in libraries:
        libraries.append(library)
    _fake(ns, key)
    no_lengths = torch.empty(0, dtype=torch.int64, device=xs[0].device)
    return entry.op(xs[0].dtype)(list(xs), list(inits), list(params), entry.dims, False, False,
                                 no_lengths if lengths is None else lengths, [])


def _fake(ns, key):
    """torch.export runs the operator on fake tensors: its result shapes, from the kernel program."""
    if ns in _faked:
        return
    _faked.add(ns)

    def fake(xs, inits, params, dims, save, bf16, lengths, skip):
        return [xs[0].new_empty(s) for s in ops._shapes(key, xs[0].shape[0], xs[0].shape[1], save)]
    torch.library.register_fake(f"{ns}::forward", fake)


def _inputs(example_inputs):
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def _copy_libraries(libraries, folder):
    if not libraries:
        raise ValueError("symcell.deploy: the model ran no symcell cell on the example inputs; nothing to deploy "
                         "beside torch.jit.trace / torch.export themselves")
    for lib in libraries:
        shutil.copyfile(lib, folder / lib.name)
    return [folder / lib.name for lib in libraries]


def save(model, example_inputs, folder, name="model.pt"):
    """Trace `model` (as it is: call .eval() first) on `example_inputs` (a tensor or a tuple, on CPU) with each scan
    recorded as its C++ operator; save the TorchScript program as folder/name and the cells' libraries beside it.
    -> the program's path."""
    _warn_if_training(model, "save")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with native() as libraries, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # torch.jit.trace is deprecated upstream, still used
        # the modules' size checks read sizes as Python ints: right for the example, checked again by the operator
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, _inputs(example_inputs), check_trace=False)
    _copy_libraries(libraries, folder)
    traced.save(str(folder / name))
    return folder / name


def _dynamic(example_inputs, dynamic_shapes):
    """torch.export's dynamic_shapes; None: every size of every input tensor may vary (Dim.AUTO: export keeps a
    size dynamic unless the model fixes it, as a feature size fixed by a weight's shape)."""
    if dynamic_shapes is not None:
        return dynamic_shapes
    return tuple({d: torch.export.Dim.AUTO for d in range(x.dim())} if isinstance(x, torch.Tensor) else None
                 for x in example_inputs)


def _export(model, example_inputs, dynamic_shapes, libraries, what):
    _warn_if_training(model, what)
    example_inputs = _inputs(example_inputs)
    with native() as found:
        program = torch.export.export(model, example_inputs, dynamic_shapes=_dynamic(example_inputs, dynamic_shapes))
    if dynamic_shapes is None:
        _refuse_sizes_fixed_at_one(program, example_inputs)
    libraries.extend(found)
    return program


def _warn_if_training(model, what):
    """a model in training mode is saved as it is: its dropout drawn at every call of the program"""
    if isinstance(model, torch.nn.Module) and any(m.training for m in model.modules()):
        warn(f"symcell.deploy.{what}: the model is in training mode (dropout acts in the saved program); call "
             ".eval() first to save it for inference")


def _refuse_sizes_fixed_at_one(program, example_inputs):
    """torch.export takes an example's sizes of 0 and 1 as constants (Dim.AUTO): a program exported on T = 1 or B = 1
    runs at that size only, and an AOTInductor package given another reads its inputs wrongly, without an error
    (a T = 1 example's package answered step 0's output for the last step's). Refused where the program fixed such
    a size; a size the model fixes itself (a feature size of 1) is stated with dynamic_shapes."""
    values = [n.meta.get("val") for n in program.graph.nodes
              if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    tensors = [x for x in example_inputs if isinstance(x, torch.Tensor)]
    for k, (x, v) in enumerate(zip(tensors, values)):
        for d, size in enumerate(x.shape):
            if size in (0, 1) and isinstance(getattr(v, "shape", (None,) * x.dim())[d], int):
                varying = "(" + ", ".join("{" + ", ".join(f"{j}: Dim.AUTO" for j, s in enumerate(t.shape) if s > 1)
                                          + "}" for t in tensors) + ",)"
                raise ValueError(
                    f"symcell.deploy: example input {k} has size {size} in dimension {d}, which torch.export takes as "
                    f"a constant: the program would run at that size only (a package given another reads its inputs "
                    f"wrongly, without an error). Give an example whose sequence length and batch are 2 or more; "
                    f"where the model fixes that size itself (a feature size of 1), say which sizes vary: "
                    f"dynamic_shapes={varying}")


def export(model, example_inputs, folder, name="exported.pt2", dynamic_shapes=None):
    """torch.export.export of `model` on `example_inputs`, each scan its cell's C++ operator; saved as folder/name
    (torch.export.save) with the cells' libraries beside it. dynamic_shapes as torch.export's (None: every input
    size may vary, so the program runs at any sequence length and batch size).
    -> the ExportedProgram"""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    libraries = []
    program = _export(model, example_inputs, dynamic_shapes, libraries, "export")
    _copy_libraries(libraries, folder)
    torch.export.save(program, str(folder / name))
    return program


def package(model, example_inputs, folder, name="model.pt2", dynamic_shapes=None):
    """torch.export, then AOTInductor (torch._inductor.aoti_compile_and_package): the model as a compiled package,
    folder/name, which calls each cell's C++ operator from the library beside it. Load it in C++ with
    torch::inductor::AOTIModelPackageLoader (examples/deploy/main.cpp) or in Python with
    torch._inductor.aoti_load_package, after the libraries. -> the package's path"""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    libraries = []
    program = _export(model, example_inputs, dynamic_shapes, libraries, "package")
    _copy_libraries(libraries, folder)
    return Path(torch._inductor.aoti_compile_and_package(program, package_path=str(folder / name)))


def load(folder, name="model.pt"):
    """What a deployed process does, in Python (it needs only torch): load the libraries, then the program:
    TorchScript (save), an ExportedProgram (export) or an AOTInductor package (package), told apart by content."""
    folder = Path(folder)
    for lib in sorted(folder.glob("symcell_*.so")):
        if not registered(lib.stem):   # a second library registering one namespace aborts the process
            torch.ops.load_library(str(lib))
    path = str(folder / name)
    try:   # (each is a zip archive: TorchScript's holds its code, an AOTInductor package its compiled model)
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, IsADirectoryError):
        names = None
    if names is None or any("/code/__torch__" in f for f in names):
        return torch.jit.load(path)   # (and its error, for a file that is none of these)
    if any("/aotinductor/" in f for f in names):
        return torch._inductor.aoti_load_package(path)
    return torch.export.load(path).module()
