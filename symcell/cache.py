"""Native code built once and cached on disk, keyed by what determines the binary.

    key = sha256(source, the files built beside it (sc.h), compiler flags, torch / python / compiler
                 versions, CPU features)
    $SYMCELL_CACHE_DIR (default ~/.cache/symcell)/<key>/symcell_<key>.so, with its sources and those files

    $SYMCELL_CACHE_DIR/memo/<name>-<hash of symcell's code>.pkl: the symbolic derivation of a cell (memo)

An entry counts only once its marker file `complete` exists, written after the library built and loaded, so
a build killed halfway is rebuilt rather than loaded. Two processes building the same key take turns on a lock
file; the second finds the first one's library. A library that fails to load is deleted and rebuilt.
"""
import fcntl
import hashlib
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch

_loaded = {}  # key -> namespace of the ops, for libraries this process already loaded


def cache_dir():
    root = Path(os.environ.get("SYMCELL_CACHE_DIR") or Path.home() / ".cache" / "symcell")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        return root
    except OSError as e:
        fallback = Path(tempfile.gettempdir()) / f"symcell-cache-{os.getuid()}"
        fallback.mkdir(parents=True, exist_ok=True)
        warnings.warn(f"symcell: the cache directory {root} is not writable ({e.strerror}); using {fallback}",
                      stacklevel=3)
        return fallback


@lru_cache(maxsize=None)
def _toolchain_id():
    try:
        cc = subprocess.run(["c++", "--version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    except (OSError, subprocess.SubprocessError):
        cc = "no-compiler"
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        flags = platform.processor()
    return f"{cc}|{torch.__version__}|{sys.version_info[:2]}|{platform.machine()}|{flags}"


def cache_key(source, cflags, ldflags, files=None):
    h = hashlib.sha256()
    extra = [f"{name}\0{text}" for name, text in sorted((files or {}).items())]
    for part in (source, *extra, " ".join(cflags), " ".join(ldflags), _toolchain_id()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


@contextmanager
def _locked(path):
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load(source, cflags=(), ldflags=(), files=None, links=None, units=None):
    """Build (or find) the library for `source`, load it into this process, return its op namespace.

    The source must register its ops with TORCH_LIBRARY(SYMCELL_NS, m); SYMCELL_NS is defined per key.
    `files` ({name: text}) are written beside it (headers it includes by name); `links` ({name: path}) are
    linked beside it when it is built (a precompiled header: it changes how fast, not what, is built, so it is
    not part of the key). `units` ({file name: lines put before the source}, default one main.cpp): the
    translation units the source is compiled as (ninja builds them in parallel); the key covers them.
    """
    units = units or {"main.cpp": ""}
    key = cache_key(source, cflags, ldflags, {**(files or {}), **{f"unit:{k}": v for k, v in units.items()}})
    if key in _loaded:
        return _loaded[key]
    ns = f"symcell_{key}"
    root = cache_dir()
    entry = root / key
    lib, marker = entry / f"{ns}.so", entry / "complete"
    if marker.exists() and _try_load(lib):
        _loaded[key] = ns
        return ns
    with _locked(root / f"{key}.lock"):
        if marker.exists() and _try_load(lib):   # another process built it while we waited
            _loaded[key] = ns
            return ns
        shutil.rmtree(entry, ignore_errors=True)  # missing, incomplete or corrupt: start over
        entry.mkdir(parents=True)
        t0 = time.perf_counter()
        for name, text in (files or {}).items():
            (entry / name).write_text(text)
        for name, target in (links or {}).items():
            try:
                os.symlink(target, entry / name)
            except OSError:   # a file system without links: built without it, as fast as before
                pass
        _build(ns, source, list(cflags), list(ldflags), entry, units)  # builds and loads
        marker.write_text(f"built in {time.perf_counter() - t0:.2f} s\n")
    _loaded[key] = ns
    return ns


@lru_cache(maxsize=None)
def _code_id():
    """What the pipeline's products depend on besides the cell: symcell's own code, sympy and python."""
    import sympy
    h = hashlib.sha256(f"{sympy.__version__}|{sys.version_info[:2]}".encode())
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def memo(name, make):
    """make(), kept on disk under `name` (which must name everything the result depends on besides symcell's
    code) and loaded by the next process: the symbolic derivation of a cell is most of a warm start (0.2 s of
    0.3 for an LSTM). A file that fails to load is made again; a result that cannot be pickled is not kept."""
    path = cache_dir() / "memo" / f"{name}-{_code_id()}.pkl"
    try:
        return pickle.loads(path.read_bytes())
    except Exception:   # absent, partial or from an incompatible build: make it again
        pass
    value = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(value))
        os.replace(tmp, path)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        pass
    return value


def entry_dir(ns):
    """The folder of a built library, from its namespace."""
    return cache_dir() / ns[len("symcell_"):]


def source_file(folder, name, source):
    """A source file in the cache, under a name with the hash of its text (for code that must be imported from a
    file, as Triton reads a kernel's source from its module): written once, atomically."""
    folder = cache_dir() / folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_{cache_key(source, [], [])}.py"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)
    return path


def _try_load(lib):
    try:
        torch.ops.load_library(str(lib))
        return True
    except (OSError, RuntimeError):
        (lib.parent / "complete").unlink(missing_ok=True)
        return False


class BuildError(RuntimeError):
    pass


def _build(ns, source, cflags, ldflags, folder, units):
    from torch.utils import cpp_extension
    paths = []
    for name, defines in units.items():
        (folder / name).write_text(f"#define SYMCELL_NS {ns}\n{defines}" + source)
        paths.append(str(folder / name))
    try:
        cpp_extension.load(
            name=ns, sources=paths, extra_cflags=cflags, extra_ldflags=ldflags,
            build_directory=str(folder), is_python_module=False, verbose=False)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        raise BuildError(f"symcell: building the C++ kernel failed: {e}") from e
