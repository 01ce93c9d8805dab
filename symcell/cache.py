"""Native code built once and cached on disk, keyed by what determines the binary.

    key = sha256(source, the files built beside it (sc.h), compiler flags, torch / python / compiler
                 versions, CPU features)
    $SYMCELL_CACHE_DIR (default ~/.cache/symcell)/<key>/symcell_<key>.so, with its sources and those files

    $SYMCELL_CACHE_DIR/memo/<name>-<hash of symcell's code>.pkl: the symbolic derivation of a cell (memo)
    $SYMCELL_CACHE_DIR/triton/<name>_<hash>.py: the source of a Triton kernel (source_file)

An entry counts only once its marker file `complete` exists, written after the library built and loaded, so
a build killed halfway is rebuilt rather than loaded. Two processes building the same key take turns on a lock
file; the second finds the first one's library. A library that fails to load is deleted and rebuilt.

Whoever can write into the cache can run code in this process (a library is loaded, a pickle is unpickled, a
Triton source is parsed and run), so nothing is read from it unless only this user could have written it: the
root, each folder on the way to an artefact and the artefact itself must be owned by this user and not writable
by group or others (`_untrusted`), and the root's parents must be owned by this user or root and, when others
can write them, sticky (as /tmp). What symcell creates is private (folders 0700, files 0600, libraries 0700). A
configured root that fails the rule is an error; the temporary fallback, when squatted, is replaced by a fresh
folder with an unpredictable name; an entry or subfolder that fails it is removed and made again (a warning).
"""
import errno
import fcntl
import hashlib
import os
import pickle
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch

from .warn import warn

_loaded = {}  # key -> namespace of the ops, for libraries this process already loaded
_roots = {}   # the configured root -> the folder in use (checked once; the root itself again at every call)
_roots_lock = threading.Lock()


class UntrustedCacheError(RuntimeError):
    """A cache folder or file that someone other than this user could have written: symcell will not use it."""


def _untrusted(path, folder=True):
    """Why `path` cannot be trusted to hold code this process runs (None: it can). Not followed if a link."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if folder != stat.S_ISDIR(st.st_mode) or not (folder or stat.S_ISREG(st.st_mode)):
        return f"is not a {'folder' if folder else 'regular file'}"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        who = {0o022: "group and others", 0o020: "group", 0o002: "others"}[st.st_mode & 0o022]
        return f"is writable by {who} (mode {oct(st.st_mode & 0o7777)})"
    return None


def _untrusted_root(path):
    """_untrusted for a cache root (resolved: a link the user made to their own folder is fine), and its parents:
    each owned by this user or root, and sticky where group or others can write it (anyone could rename it)."""
    why = _untrusted(path)
    if why:
        return f"{path} {why}"
    for parent in path.parents:
        st = os.stat(parent)
        if st.st_uid not in (0, os.geteuid()):
            return f"its parent {parent} is owned by uid {st.st_uid}"
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return (f"its parent {parent} is writable by group or others and not sticky "
                    f"(mode {oct(st.st_mode & 0o7777)})")
    return None


def cache_dir():
    with _roots_lock:   # (threads: one opens the root, the others take it; without, a thread that found the
        return _cache_dir()   # root taken out meanwhile opened it again, and a shared probe file sent it to /tmp)


def _configured():
    """the cache root asked for: $SYMCELL_CACHE_DIR (~ expanded), else ~/.cache/symcell; None where there is no
    home directory (no HOME and no passwd entry, as a container's --user uid has)"""
    if os.environ.get("SYMCELL_CACHE_DIR"):
        return os.path.expanduser(os.environ["SYMCELL_CACHE_DIR"])
    try:
        return str(Path.home() / ".cache" / "symcell")
    except RuntimeError:
        return None


def _cache_dir():
    configured = _configured()
    if configured is None:
        if None not in _roots:
            _roots[None] = _fallback("~/.cache/symcell", "no home directory; set SYMCELL_CACHE_DIR")
        return _roots[None]
    root = _roots.pop(configured, None)
    if root is not None:
        try:
            why = _untrusted(root)
        except OSError:   # removed since: made again below
            why = None
            root = None
        if why:
            raise UntrustedCacheError(_refusal(root, f"{root} {why}"))
    if root is None:
        root = _open_root(Path(configured), chosen=bool(os.environ.get("SYMCELL_CACHE_DIR")))
    _roots[configured] = root
    return root


def _refusal(root, why):
    return (f"symcell: refusing the build cache {root}: {why}. Whoever can write there could run code in this "
            f"process. Make it yours and private (chown, chmod 700), remove it, or set SYMCELL_CACHE_DIR to a "
            f"private folder.")


def _open_root(root, chosen):
    """the root, made if absent; a temporary one (a warning) where it cannot be written, or fails the trust rule and
    is the default, not chosen ($SYMCELL_CACHE_DIR): a ~/.cache made group-writable under a umask of 002 refused
    every backend, the reference one included"""
    try:   # (each folder made private: mkdir's parents=True makes the missing parents by the umask, and a
        for folder in [*reversed(root.parents), root]:   # ~/.cache made 0775 under 002 then failed the rule)
            if not folder.exists():
                try:
                    folder.mkdir(mode=0o700)
                except FileExistsError:   # (made meanwhile)
                    pass
    except OSError as e:
        return _fallback(root, f"not writable: {e.strerror}")
    if not root.is_dir():
        return _fallback(root, "a file, not a folder")
    resolved = root.resolve()
    why = _untrusted_root(resolved)
    if why and chosen:
        raise UntrustedCacheError(_refusal(root, why))
    if why:
        return _fallback(root, f"{why}; chmod go-w the folder named, or set SYMCELL_CACHE_DIR")
    try:
        probe = resolved / f".probe-{_unique()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        return _fallback(root, f"not writable: {e.strerror}")
    return resolved


def _fallback(root, reason):
    """<tmp>/symcell-cache-<uid>, or, when someone else has made that name first, a fresh private folder"""
    uid = os.geteuid()
    base = Path(tempfile.gettempdir()) / f"symcell-cache-{uid}"
    try:
        base.mkdir(mode=0o700)
    except OSError:   # there already (ours from an earlier run, or squatted: see below), or no /tmp
        pass
    try:
        why = _untrusted_root(base)   # not resolved: a link planted under that name is refused
    except OSError as e:
        why = f"cannot be used ({e.strerror})"
    if why is None:
        warn(f"symcell: the cache directory {root} cannot be used ({reason}); using {base}")
        return base
    fresh = Path(tempfile.mkdtemp(prefix=f"symcell-cache-{uid}-"))   # 0700, a name no one could guess
    warn(f"symcell: the cache directory {root} cannot be used ({reason}), and the fallback "
         f"{why}: not used; using a fresh private folder {fresh} (a new, empty cache for this process)")
    return fresh


def private_dir(path):
    """`path`, a folder in the cache that only this user can write: made 0700 if absent; one that fails the rule
    is removed and made again (a warning), or, if it cannot be removed, an UntrustedCacheError."""
    try:
        path.mkdir(mode=0o700)
        return path
    except FileExistsError:
        pass
    why = _untrusted(path)
    if why is None:
        return path
    warn(f"symcell: the cache folder {path} {why}: not used; removed and made again")
    if os.path.islink(path) or not os.path.isdir(path):
        Path(path).unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
    try:
        path.mkdir(mode=0o700)
    except OSError as e:
        raise UntrustedCacheError(f"symcell: the cache folder {path} {why}, and cannot be removed ({e.strerror}); "
                                  f"remove it, or set SYMCELL_CACHE_DIR to a private folder") from None
    return path


def trusted_file(path):
    """an artefact that exists and only this user could have written (in a folder that passes the same rule)"""
    try:
        return _untrusted(path.parent) is None and _untrusted(path, folder=False) is None
    except OSError:
        return False


def _unique():
    """a name part no other process or thread writing now has"""
    return f"{os.getpid()}-{threading.get_ident()}"


def _write_private(path, data):
    """write `data` (bytes) to `path` atomically, readable and writable by this user only"""
    tmp = path.with_name(f"{path.name}.{_unique()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _make_private(folder):
    """what a build left in `folder` (torch's ninja files, objects, the library): this user's only. Links (the
    precompiled header) are left as they are."""
    for dirpath, dirnames, filenames in os.walk(folder):
        os.chmod(dirpath, 0o700)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.lstat(p).st_mode & 0o700)


def compiler():
    """the C++ compiler torch.utils.cpp_extension builds with: $CXX, else c++, one program (torch quotes it whole
    in its build file: a value with arguments is no program; an empty one, none)"""
    return os.environ.get("CXX", "c++")


@lru_cache(maxsize=None)
def _toolchain_id():
    try:
        cc = subprocess.run([compiler(), "--version"], capture_output=True, text=True,
                            timeout=30).stdout.split("\n")[0]
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
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def library_key(source, cflags=(), ldflags=(), files=None, units=None):
    """the key `load` builds `source` under"""
    units = units or {"main.cpp": ""}
    return cache_key(source, cflags, ldflags, {**(files or {}), **{f"unit:{k}": v for k, v in units.items()}})


def load(source, cflags=(), ldflags=(), files=None, links=None, units=None, label="", linked=None):
    """Build (or find) the library for `source`, load it into this process, return its op namespace:
    symcell_<label>_<key> (the label, a cell's name, so that graphs and profiles name the cell), or symcell_<key>.

    The source must register its ops in namespace SYMCELL_NS (TORCH_LIBRARY or as it does), defined per key.
    `files` ({name: text}) are written beside it (headers it includes by name); `links` ({name: path}) are
    linked beside it when it is built (a precompiled header: it changes how fast, not what, is built, so it is
    not part of the key). `units` ({file name: lines put before the source}, default one main.cpp): the
    translation units the source is compiled as (ninja builds them in parallel); the key covers them.
    `linked`: called only when the library is built, returns (objects, sources): object files to link into it,
    and names among `files` to compile as units of their own beside the others (an object's first build, which
    `keep_object` then keeps). Neither is part of the key, which must cover what made them (their sources among
    `files`).
    """
    units = units or {"main.cpp": ""}
    key = library_key(source, cflags, ldflags, files, units)
    if key in _loaded:
        return _loaded[key]
    # a C++ identifier's characters (the key has no "_"), and short: a file name of it with the key and ".so" (a
    # cell named with 220 characters failed to build, "File name too long"); the key keeps it unique
    label = re.sub(r"\W", "", label, flags=re.ASCII)[:64]
    ns = f"symcell_{label}_{key}" if label else f"symcell_{key}"
    if registered(ns):   # its library loaded from elsewhere (a deployed model's copy): the same key, the same code
        _loaded[key] = ns
        return ns
    root = _root_to_build_in()
    entry = root / key
    lib, marker = entry / f"{ns}.so", entry / "complete"
    if _complete(entry, lib, marker) and _try_load(lib):
        _loaded[key] = ns
        return ns
    try:
        with _locked(root / f"{key}.lock"):
            if _complete(entry, lib, marker) and _try_load(lib):   # another process built it while we waited
                _loaded[key] = ns
                return ns
            _start_over(entry, (lib, marker), "not loaded; built again")
            private_dir(entry)
            t0 = time.perf_counter()
            for name, text in (files or {}).items():
                (entry / name).write_text(text)
            for name, target in (links or {}).items():
                try:
                    os.symlink(target, entry / name)
                except OSError:   # a file system without links: built without it, as fast as before
                    pass
            objects, sources = linked() if linked else ((), ())
            _build(ns, source, list(cflags), list(ldflags) + [str(o) for o in objects], entry, units,
                   sources)  # builds and loads
            _make_private(entry)
            _write_private(marker, (f"built in {time.perf_counter() - t0:.2f} s\nbytes {lib.stat().st_size}\n"
                                    f"sha256 {_digest(lib)}\n").encode())
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise _full(entry, e) from e
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


_memo_warned = []


def memo(name, make, fresh=False):
    """make(), kept on disk under `name` (which must name everything the result depends on besides symcell's
    code) and loaded by the next process: the symbolic derivation of a cell is most of a warm start (0.2 s of
    0.3 for an LSTM). A file that fails to load is made again; a result that cannot be pickled is not kept.
    fresh: make it (and keep it) even where a kept one could be loaded."""
    try:
        path = private_dir(cache_dir() / "memo") / f"{name}-{_code_id()}.pkl"
    except (OSError, UntrustedCacheError) as e:   # no cache to keep it in (refused, full, read-only): made here
        if not _memo_warned:
            _memo_warned.append(True)
            warn(f"symcell: the symbolic derivations are not kept on disk (no usable cache directory: {e}); each "
                 "process derives its cells again")
        return make()
    if not fresh and trusted_file(path):   # unpickling runs code: only a file this user wrote
        try:
            return pickle.loads(path.read_bytes())
        except Exception:   # partial or from an incompatible build: make it again
            pass
    value = make()
    try:
        _write_private(path, pickle.dumps(value))
    except (OSError, pickle.PicklingError, TypeError, AttributeError, RecursionError):   # (a step very deep)
        pass
    return value


def kept_object(key, name):
    """The object file keep_object kept under `key` (root/<key>/<name>), where it is whole (its length and sha256
    as kept) and only this user could have written it; else None."""
    entry = _root_to_build_in() / key
    return entry / name if _complete(entry, entry / name, entry / "complete") else None


def keep_object(key, path):
    """Keep a copy of the object file `path` (built beside a library) under `key`, for later builds to link
    (load's `linked`): once, whichever process comes first; one damaged on disk is replaced."""
    root = _root_to_build_in()
    entry = root / key
    try:
        with _locked(root / f"{key}.lock"):
            if kept_object(key, path.name) is not None:
                return
            _start_over(entry, (entry / path.name, entry / "complete"), "not linked; kept again")
            private_dir(entry)
            data = path.read_bytes()
            _write_private(entry / path.name, data)
            _write_private(entry / "complete", f"bytes {len(data)}\nsha256 {hashlib.sha256(data).hexdigest()}\n"
                           .encode())
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise _full(entry, e) from e


def _start_over(entry, files, what):
    """Remove a cache entry that is there but not to be used (incomplete, damaged or someone else's), so that it is
    made afresh; where someone else could have written it or its `files`, warn, saying `what` is done instead."""
    if not os.path.lexists(entry):
        return
    why = _untrusted(entry) or next(filter(None, (_untrusted(p, folder=False) for p in files if os.path.lexists(p))),
                                    None)
    if why:
        warn(f"symcell: the cache entry {entry} {why}: {what}")
    if os.path.islink(entry) or not os.path.isdir(entry):
        entry.unlink()
    else:
        shutil.rmtree(entry, ignore_errors=True)


def entry_dir(ns):
    """The folder of a built library, from its namespace."""
    return cache_dir() / ns.rsplit("_", 1)[1]


def source_file(folder, name, source):
    """A source file in the cache, under a name with the hash of its text (for code that must be imported from a
    file, as Triton reads a kernel's source from its module): written once, atomically."""
    try:
        folder = private_dir(_root_to_build_in() / folder)
        path = folder / f"{name}_{cache_key(source, [], [])}.py"
        if not (trusted_file(path) and path.read_text() == source):   # whatever reads the file reads `source`
            _write_private(path, source.encode())
    except OSError as e:   # (a full disk: backend='auto' runs the reference backend)
        raise BuildError(f"symcell: the source {name} cannot be written to the cache: {e}") from e
    return path


def _root_to_build_in():
    """cache_dir(), where a build needs it: no usable folder (nor a temporary one) is a BuildError, from which
    backend='auto' falls back to the reference backend (the memo does without: memo)"""
    try:
        return cache_dir()
    except OSError as e:
        raise BuildError(f"symcell: no usable cache directory for built code: {e}") from e


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()   # (~0.5 ms for a cell's library)


def _complete(entry, lib, marker):
    """a finished entry (its marker written) that only this user could have written, its library as long as when
    it was built (one cut short on disk killed the process that mapped it: SIGBUS, no error to catch) and with
    its bytes (one damaged in the middle crashed it: SIGSEGV or SIGILL)"""
    try:
        if _untrusted(entry) is not None or any(_untrusted(p, folder=False) is not None for p in (marker, lib)):
            return False
        # (a marker with no length, empty or from before lengths were written, is a build to do again; one with
        # no digest, from before digests were, is taken by its length)
        text = marker.read_text(errors="replace")
        size = re.search(r"^bytes (\d+)$", text, re.MULTILINE)
        if size is None or int(size.group(1)) != lib.stat().st_size:
            return False
        digest = re.search(r"^sha256 ([0-9a-f]{64})$", text, re.MULTILINE)
        return digest is None or digest.group(1) == _digest(lib)
    except OSError:
        return False


def registered(namespace):
    """whether a library of this namespace is loaded already (in the process that built or saved the model, or by
    symcell.deploy.load): a second one registering the namespace would abort the process"""
    try:
        torch._C._dispatch_find_schema_or_throw(f"{namespace}::forward", "")
        return True
    except RuntimeError:
        return False


def _try_load(lib):
    try:
        torch.ops.load_library(str(lib))
        return True
    except (OSError, RuntimeError):
        (lib.parent / "complete").unlink(missing_ok=True)
        return False


class BuildError(RuntimeError):
    lasting = True   # (False: the machine's, as a full disk, which a later build may not meet)


def _full(folder, e):
    """the BuildError of a full disk (or quota) met writing into `folder`: not lasting, space may be freed"""
    error = BuildError(f"symcell: cannot write the build cache entry {folder}: {getattr(e, 'strerror', None) or e}; "
                       "free space there, or set SYMCELL_CACHE_DIR to another folder")
    error.lasting = False
    return error


def _build(ns, source, cflags, ldflags, folder, units, sources=()):
    from torch.utils import cpp_extension
    paths = []
    for name, defines in units.items():
        (folder / name).write_text(f"#define SYMCELL_NS {ns}\n{defines}" + source)
        paths.append(str(folder / name))
    paths += [str(folder / name) for name in sources]
    # (torch remembers each name's sources and flags and skips a build it has already run in this process: a
    # build run again, as without a precompiled header that failed the first, then loaded a library never made)
    versions = getattr(cpp_extension, "JIT_EXTENSION_VERSIONER", None)
    if versions is not None:
        versions.entries.pop(ns, None)
    try:
        cpp_extension.load(
            name=ns, sources=paths, extra_cflags=cflags, extra_ldflags=ldflags,
            build_directory=str(folder), is_python_module=False, verbose=False)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):   # (the compiler's, or ld's)
            raise _full(folder, e) from e
        error = BuildError(f"symcell: building the C++ kernel failed: {e}")
        error.lasting = not isinstance(e, OSError)
        raise error from e
