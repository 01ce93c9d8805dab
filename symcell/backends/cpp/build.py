"""Building rendered C++ into a library of torch operators, and calling them.

The library registers `forward` and `backward` in a namespace of its own when it is loaded (sc.h's Operators, as
TORCH_LIBRARY(SYMCELL_NS, ...) would; one namespace per build key, see cache.py; a build a dtype); a Kernel calls
them through torch.ops. sc.h and sc.cpp, the hand-written runtime, are built beside the source and part of the key.
"""
import ctypes.util
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from ... import cache, flops
from ..base import COMPUTING_FOR
from ...warn import warn

HEADER = Path(__file__).with_name("sc.h")
# sc.h's compiled half, the runtime (the GEMMs, the weights' packing, the argument checks): its object is kept in
# the cache once per header and runtime text, flags and toolchain (compiled beside the first cell's units), and
# every cell's library links it (so a deployed library stands alone). Compiled into each of a cell's two units
# instead, it was half or more of each unit's build: a new cell 4.3 s instead of 6.8 on the Xeon (BENCHMARKS.md).
RUNTIME = HEADER.with_name("sc.cpp")
# A cell's source is compiled as two translation units that ninja builds in parallel (2 cores at least): main.cpp,
# and main_2.cpp where the source puts about half its code (render.py). Each parses the torch headers sc.h includes
# (half a unit's build without the precompiled sc.h); with it, the boxed operators and the heavier headers left to
# sc.cpp, a new small cell's first call takes 1.7 s on the Xeon (was 3.3; BENCHMARKS.md).
# The units are compiled for one dtype, SYMCELL_SCALAR: a library a dtype, built when a call first runs the cell
# in it. Both dtypes in one library compiled every scan twice, where a cell mostly runs in one (float32; float64 in
# gradcheck): a new float32 cell now compiles half the code it did (BENCHMARKS.md).
SCALARS = {torch.float32: "float", torch.float64: "double"}


def units(dtype):
    scalar = f"#define SYMCELL_SCALAR {SCALARS[dtype]}\n"
    return {"main.cpp": scalar, "main_2.cpp": "#define SYMCELL_SECOND_UNIT 1\n" + scalar}


def library_dtype(dtype):
    """the dtype of the library that runs `dtype` tensors: float64's, else float32's (whose operators refuse any
    other dtype by name: a 16-bit module's scan runs in float32, sequence.py)"""
    return torch.float64 if dtype == torch.float64 else torch.float32


_NO_LENGTHS = torch.empty(0, dtype=torch.int64)   # every row runs all steps


def flags():
    mvec = sys.platform.startswith("linux") and ctypes.util.find_library("mvec") is not None
    # -fopenmp: at::parallel_for is inlined from ATen's OpenMP header; the library then uses the libgomp that
    # torch already loaded (same soname), so there is one thread pool
    cflags = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
              f"-DSYMCELL_MVEC={int(mvec)}", "-w"]
    ldflags = ["-fopenmp"] + (["-lmvec"] if mvec else [])
    return cflags, ldflags


def forced(variable):
    """sc::forced: 1 or 0 where the variable forces a code path (1, true, on, yes; 0, false, off, no: any case),
    -1 where it is unset or empty; any other value is refused (the SYMCELL_* switches of sc.h, and SYMCELL_PCH)"""
    value = os.environ.get(variable, "")
    if not value:
        return -1
    if value.lower() in ("1", "true", "on", "yes"):
        return 1
    if value.lower() in ("0", "false", "off", "no"):
        return 0
    raise ValueError(f"symcell: {variable}={value!r} is not understood: set it to 1 (true, on, yes) or 0 (false, "
                     "off, no), or unset it")


class Entry:
    """An operator of a cell's library for the dtype it is called with (built then, the first time: Library), called
    with the cell's dimensions (run-time values) after the scan's arguments and flag, and an empty tensor for no
    lengths. It can leave out work (`skip`, see base.py). It takes tensors of any strides and negative views:
    torch's dispatch resolves the latter, the operator makes its tensors contiguous (sc::contiguous), as a deployed
    program needs without Python."""
    skips = True
    any_layout = True
    fresh = True   # (every result is a tensor the generated code allocates: render.py, CppRenderer.returns)

    def __init__(self, library, scan, dims, dim_names):
        self.library, self.scan, self.name, self.dims, self.dim_names = library, scan, scan.name, list(dims), dim_names
        self.flags = 1 if scan.save else 0
        self._first = scan.first_seq_at   # (the tensor whose dtype the operator computes in)
        self._ops = {}

    def ns(self, dtype):
        """the operator namespace of the library that runs `dtype` tensors, built now if it is not yet"""
        return self.library.namespace(dtype)

    def op(self, dtype):
        """the operator that runs `dtype` tensors"""
        found = self._ops.get(dtype)
        if found is None:   # (a dtype that runs in float32's library looks its operator up again: the same one)
            found = self._ops[dtype] = getattr(getattr(torch.ops, self.ns(dtype)), self.name)
            flops.register_entry(found, self.scan, self.dim_names)   # (FlopCounterMode counts its matmuls; once)
        return found

    ready = op   # (Kernel.ready: build for a dtype before the first call)

    def __call__(self, *args, skip=()):   # the scan's argument lists, its save flag if it has one, the lengths
        groups, flags, lengths = args[:-1 - self.flags], args[len(args) - 1 - self.flags:-1], args[-1]
        op = self.op(groups[self._first[0]][self._first[1]].dtype)
        if torch._C._len_torch_dispatch_stack():   # (a FlopCounterMode among them may not know this operator)
            flops.tell_counters(op)
        # (a bfloat16 module's scan: its GEMMs may multiply in bfloat16, sc.h's products16)
        bf16 = COMPUTING_FOR.get() == torch.bfloat16
        return op(*groups, self.dims, *flags, bf16, _NO_LENGTHS if lengths is None else lengths, list(skip))


class Library:
    """A cell's source (some of its scans), built into a library for a dtype the first time a call needs it."""

    def __init__(self, program, source):
        self.program, self.source = program, source
        self._namespaces, self._lock = {}, threading.Lock()

    def namespace(self, dtype):
        dtype = library_dtype(dtype)
        ns = self._namespaces.get(dtype)
        if ns is None:
            with self._lock:   # (two threads' first calls: one build, one load of the library)
                ns = self._namespaces.get(dtype)
                if ns is None:
                    ns = self._namespaces[dtype] = _build(self.program, self.source, dtype)
        return ns


def build(program, scans, source, dims):
    library = Library(program, source)
    return {s.name: Entry(library, s, [dims[d] for d in program.dims], program.dims) for s in scans}


def _build(program, source, dtype):
    """-> the operator namespace of `source` built for `dtype` (float32 or float64)"""
    lacking = missing()
    if lacking:
        raise cache.BuildError(f"symcell: backend='cpp' needs a C++ compiler and ninja: {lacking}; install it, or "
                               "use backend='reference'")
    cflags, ldflags = flags()
    header, runtime = HEADER.read_text(), RUNTIME.read_text()
    # (the runtime's text is among the cell's files, so in its key: the object it links is made from it)
    files = {HEADER.name: header, RUNTIME.name: runtime}
    runtime_key = "runtime-" + cache.cache_key(runtime, cflags, ldflags, {HEADER.name: header})
    kept = []

    def linked():   # only when the cell is built: one found in the cache needs no runtime
        obj = cache.kept_object(runtime_key, RUNTIME.stem + ".o")
        if obj is not None:
            return [obj], []
        kept.append(True)   # the first build in a cache compiles it beside the cell's own units, in parallel
        return [], [RUNTIME.name]
    pch = _precompiled(header, cflags, ldflags)
    gch = pch and pch / (HEADER.name + ".gch")   # linked only when finished and only this user could have written it
    links = {gch.name: gch} if pch and cache.trusted_file(pch / "complete") and cache.trusted_file(gch) else None
    try:
        ns = cache.load(source, cflags, ldflags, files=files, links=links, units=units(dtype), label=program.name,
                        linked=linked)   # once per source and dtype
    except cache.BuildError:
        if links is None:
            raise
        # a precompiled header gcc could not read (cut short on disk, say) fails every build that links it: this
        # build runs again without it, and where that succeeds the header is removed (the next build precompiles
        # it again). Where it fails too, the source was at fault: the header stays (other builds use it).
        links = None
        ns = cache.load(source, cflags, ldflags, files=files, links=None, units=units(dtype), label=program.name,
                        linked=linked)
        shutil.rmtree(pch, ignore_errors=True)
    if kept:
        cache.keep_object(runtime_key, cache.entry_dir(ns) / (RUNTIME.stem + ".o"))
    if pch and links is None:
        _precompile(pch, cache.entry_dir(ns))
    return ns


# A precompiled sc.h (parsing the torch headers it includes is half a unit's build: an LSTM's unit 2.7 -> 1.2 s on the
# Xeon; the .gch is ~165 MB, once per header text, flags and toolchain). gcc uses sc.h.gch found beside
# sc.h when it was compiled with the same flags, and silently ignores it otherwise (clang ignores it): it can make
# a build faster, never different. SYMCELL_PCH=0 turns it off.
def _precompiled(header, cflags, ldflags):
    """the folder of the precompiled header for these flags (None: SYMCELL_PCH=0, or no cache folder)"""
    if forced("SYMCELL_PCH") == 0:
        return None
    try:
        return cache.cache_dir() / f"pch-{cache.cache_key(header, cflags, ldflags)}"
    except OSError:   # (no usable cache folder: none, and cache.load says why)
        return None


PCH_GIVEN_UP_AFTER_S = 1800   # (the precompile takes ~30 s on the 2-core dev machine)


def _precompile(folder, built):
    """Compile sc.h in the background with the flags torch's build of `built` (a cell's folder) used, read from
    its build.ninja, so that they match; the next builds link it. Once per folder (O_EXCL on a marker), again
    where that one has not finished in PCH_GIVEN_UP_AFTER_S."""
    if not (built / "build.ninja").exists():
        return
    try:
        cache.private_dir(folder)
        started = folder / "started"
        # one started long ago and never finished was killed (a reboot, out of memory) or failed: tried again
        if not (folder / "complete").exists() and time.time() - started.stat().st_mtime > PCH_GIVEN_UP_AFTER_S:
            started.unlink()
            for partial in folder.glob(f"{HEADER.name}.gch.*.tmp"):   # (the killed one's half-written output,
                partial.unlink()                                       # up to 165 MB, left for good otherwise)
    except OSError:
        pass
    try:
        os.close(os.open(folder / "started", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:   # another process is on it (or it is done)
        return
    try:   # build.ninja is torch's, not ours: a form we do not know means no precompiled header, not an error
        ninja = (built / "build.ninja").read_text().splitlines()
        # (cxx is a shell word list: torch puts ccache before the compiler where it is on PATH)
        cxx = shlex.split(next(line.split("=", 1)[1] for line in ninja if line.startswith("cxx =")))
        cflags = [f for f in shlex.split(next(line.split("=", 1)[1] for line in ninja if line.startswith("cflags =")))
                  if not f.startswith("-DTORCH_EXTENSION_NAME=")]
        shutil.copy(built / HEADER.name, folder / HEADER.name)
        os.chmod(folder / HEADER.name, 0o600)
    except (OSError, StopIteration, ValueError):
        return
    gch, tmp = folder / (HEADER.name + ".gch"), folder / f"{HEADER.name}.gch.{cache._unique()}.tmp"
    compile_ = shlex.join([*cxx, *cflags, "-x", "c++-header", str(folder / HEADER.name), "-o", str(tmp)])
    # written under a temporary name, renamed when whole; `complete` last: a build links only a finished one
    script = (f"umask 077; {compile_} && mv {shlex.quote(str(tmp))} {shlex.quote(str(gch))} && "
              f"touch {shlex.quote(str(folder / 'complete'))} || rm -f {shlex.quote(str(tmp))}")
    # (sh starts it in the background and returns: nothing of it is left to wait for, nor warned about when
    # Python exits with a child still running)
    subprocess.run(["sh", "-c", f"( {script} ) >/dev/null 2>&1 &"], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, check=False)


_missing = []


def missing():
    """What of the toolchain torch.utils.cpp_extension builds with is not on this machine (None: nothing): the C++
    compiler it calls, $CXX or else c++, and ninja."""
    if not _missing:
        cxx = cache.compiler()
        lacking = None if cxx.strip() and shutil.which(cxx) else (
            f"no compiler {cxx!r} on PATH (torch builds with $CXX, else c++)" if "CXX" not in os.environ else
            f"$CXX is {cxx!r}, which is no program on PATH (torch runs it whole: a compiler's path, no arguments)")
        try:
            from torch.utils.cpp_extension import verify_ninja_availability
            verify_ninja_availability()
        except (RuntimeError, ImportError):
            lacking = "; ".join(filter(None, [lacking, "no ninja on PATH (pip install ninja)"]))
        _missing.append(lacking)
    return _missing[0]


def compiler_works():
    """Whether the cpp backend can build here; backend='auto' asks, and warns once when it cannot."""
    lacking = missing()
    if lacking and not _warned:
        _warned.append(True)
        warn(f"symcell: backend='auto' uses the reference backend on CPU (slower): {lacking}. Install a C++ "
             "compiler and ninja for the cpp backend.")
    return lacking is None


_warned = []
