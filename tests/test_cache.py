"""The build cache under faults: concurrent builds, corrupt and half-written entries, no compiler. (Who may
write into it: test_cache_trust.py.)"""
import collections
import os
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

import symcell
from symcell import cache, tanh
from symcell.backends.cpp import compiler_works

needs_compiler = pytest.mark.skipif(not compiler_works(), reason="needs a C++ compiler and ninja (cpp backend)")

# a cell of its own, so these tests build a library no other test has cached
SCRIPT = textwrap.dedent("""
    import torch, symcell
    from symcell import tanh, sigmoid
    @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I"), "U": ("H", "H")})
    def CacheProbe(x, h, W, U):
        return tanh(W @ x) * sigmoid(U @ h) + 0.125 * h
    torch.manual_seed(0)
    cell = CacheProbe(I=3, H=4, backend=%(backend)r)
    ref = CacheProbe(I=3, H=4, backend="reference")
    ref.load_state_dict(cell.state_dict())
    x = torch.randn(5, 2, 3)
    assert torch.allclose(cell(x)[0], ref(x)[0], atol=1e-6), "wrong result"
    print(cell._kernel_key(torch.device("cpu")).split(":")[-1])   # the backend that ran it
""")


def run(cache_dir, backend="cpp", env_extra=None, wait=True):
    env = dict(os.environ, SYMCELL_CACHE_DIR=str(cache_dir), **(env_extra or {}))
    env.pop("CXX", None)   # (torch's compiler is c++ then, as the messages tested say)
    cmd = [sys.executable, "-c", SCRIPT % {"backend": backend}]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def assert_all_private(folder):
    """everything symcell made in the cache is this user's only (links aside: the precompiled header's)"""
    for dirpath, _, names in os.walk(folder):
        for p in [dirpath, *(os.path.join(dirpath, n) for n in names)]:
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode):
                assert st.st_uid == os.geteuid() and st.st_mode & 0o077 == 0, f"{p}: {oct(st.st_mode & 0o7777)}"


def entries(cache_dir):
    """the cells' libraries (not the precompiled header's folder, the kept derivations, cache.memo, nor the runtime's
    object: runtime)"""
    return [p for p in cache_dir.iterdir() if p.is_dir() and p.name != "memo"
            and not p.name.startswith(("pch-", "runtime-"))]


def runtime(cache_dir):
    """the cpp backend's runtime, the object every cell's library links (build.py): its folder"""
    (folder,) = cache_dir.glob("runtime-*/")
    return folder


@needs_compiler
@pytest.mark.cpp
@pytest.mark.slow
def test_two_processes_building_the_same_cell_both_succeed(tmp_path):
    # (no precompiled header: its compile in the background, 30-40 s of a core, is not what this tests)
    procs = [run(tmp_path, env_extra={"SYMCELL_PCH": "0"}, wait=False) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == "cpp"
    assert len(entries(tmp_path)) == 1           # one build, the other process waited for it
    assert (entries(tmp_path)[0] / "complete").exists()
    assert_all_private(tmp_path)


@needs_compiler
@pytest.mark.cpp
@pytest.mark.slow
def test_corrupt_or_half_written_entries_are_rebuilt_and_later_builds_link_the_precompiled_header(tmp_path):
    """one cache through its life (each build of a fresh cache costs CI 10-15 s, so the stages share them)"""
    import time
    assert run(tmp_path, env_extra={"SYMCELL_PCH": "0"}).returncode == 0
    assert not list(tmp_path.glob("pch-*"))      # turned off: none made
    (entry,) = entries(tmp_path)
    lib = next(entry.glob("*.so"))
    lib.write_bytes(b"not a shared library")     # corrupt: rebuilt (and sc.h starts precompiling, in the background)
    r = run(tmp_path)
    assert r.returncode == 0, r.stderr
    assert lib.stat().st_size > 1000
    deadline = time.time() + 240
    while not list(tmp_path.glob("pch-*/complete")) and time.time() < deadline:
        time.sleep(1)
    (pch,) = tmp_path.glob("pch-*/sc.h.gch")
    (entry / "complete").unlink()                # a build killed before it finished: rebuilt, with the header
    r = run(tmp_path)
    assert r.returncode == 0, r.stderr
    assert (entry / "complete").exists()
    assert (entry / "sc.h.gch").resolve() == pch.resolve()   # same results: the script checks them
    lib.write_bytes(lib.read_bytes()[:4096])     # cut short after it was finished: rebuilt, not a SIGBUS on load
    # ... and the runtime's object, which every cell's build links, damaged with its length unchanged: built again
    # before this cell links it (linked, its damage would be the cell's)
    obj = runtime(tmp_path) / "sc.o"
    damaged = obj.read_bytes()[:-64] + b"\0" * 64
    obj.write_bytes(damaged)
    r = run(tmp_path)
    assert r.returncode == 0, r.stderr
    assert lib.stat().st_size > 4096
    assert obj.read_bytes() != damaged and cache._complete(obj.parent, obj, obj.parent / "complete")
    # the precompiled header cut short on disk: the build that links it fails, runs again without it and removes
    # it (the run again was no build: torch's cpp_extension skipped a build it had run in the process, and every
    # later build in the cache failed with "Could not load this library")
    pch.write_bytes(pch.read_bytes()[:100_000])
    (entry / "complete").unlink()
    r = run(tmp_path)
    assert r.returncode == 0, r.stderr
    assert (entry / "complete").exists() and not (entry / "sc.h.gch").exists()
    assert not pch.exists() or pch.stat().st_size > 100_000     # removed (or precompiled again since)
    assert_all_private(tmp_path)                 # the libraries, torch's build files, the header, the derivations


@pytest.mark.slow
def test_without_a_compiler_auto_warns_and_uses_the_reference_backend(tmp_path):
    # PATH without a compiler or ninja; the interpreter is called by its full path
    r = run(tmp_path, backend="auto", env_extra={"PATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "reference"
    assert r.stderr.count("backend='auto' uses the reference backend on CPU (slower): no compiler 'c++' on PATH "
                          "(torch builds with $CXX, else c++); no ninja on PATH") == 1


@needs_compiler
@pytest.mark.cpp
def test_auto_picks_cpp_for_cpu_tensors():
    assert symcell.backends.resolve("auto", torch.device("cpu")) == "cpp"


@pytest.mark.slow
def test_explicit_cpp_without_a_compiler_is_a_clear_error(tmp_path):
    r = run(tmp_path, backend="cpp", env_extra={"PATH": str(tmp_path)})
    assert r.returncode != 0
    assert "backend='cpp' needs a C++ compiler and ninja: no compiler 'c++' on PATH" in r.stderr
    assert "backend='auto'" not in r.stderr   # (it warned of auto's fallback, which this call does not take)


def test_the_compiler_is_torchs_cxx_and_the_cache_key_knows_it(tmp_path, monkeypatch):
    """torch.utils.cpp_extension builds with $CXX, else c++: symcell looked for c++ or g++ only (with a toolchain
    on $CXX alone, a conda one, cpp said there was no compiler), and its cache key asked c++ for its version
    whatever $CXX was (a library built by one compiler was loaded under another)"""
    from symcell.backends.cpp import build as cpp_build
    gxx = sys.executable   # (which finds it: a compiler as far as the check goes, and a --version of its own)
    import ninja   # (its own program, not a shim such as pyenv's, which needs its PATH)
    (tmp_path / "ninja").symlink_to(os.path.join(ninja.BIN_DIR, "ninja"))

    def lacking(path, cxx):
        monkeypatch.setattr(cpp_build, "_missing", [])
        monkeypatch.setenv("PATH", path)
        if cxx is None:
            monkeypatch.delenv("CXX", raising=False)
        else:
            monkeypatch.setenv("CXX", cxx)
        return cpp_build.missing()
    assert lacking(str(tmp_path), gxx) is None     # no c++ on PATH, $CXX a compiler: buildable
    assert lacking(str(tmp_path), None) == "no compiler 'c++' on PATH (torch builds with $CXX, else c++)"
    assert lacking(str(tmp_path), "/nowhere/g++") == ("$CXX is '/nowhere/g++', which is no program on PATH (torch runs "
                                                      "it whole: a compiler's path, no arguments)")
    assert lacking(str(tmp_path), f"{gxx} -O2") is not None and lacking(str(tmp_path), "") is not None
    assert lacking("/nowhere", gxx) == "no ninja on PATH (pip install ninja)"
    monkeypatch.setenv("PATH", os.environ["PATH"])
    ids = []
    for cxx in (gxx, "/nowhere/c++"):
        monkeypatch.setenv("CXX", cxx)
        cache._toolchain_id.cache_clear()
        ids.append(cache._toolchain_id())
    cache._toolchain_id.cache_clear()
    assert "no-compiler" in ids[1] and ids[0] != ids[1]


def test_an_unwritable_cache_dir_falls_back_to_a_temporary_one_with_a_warning(monkeypatch):
    from symcell import cache
    monkeypatch.setattr(cache, "_roots", {})   # as in a fresh process: the root not chosen yet
    monkeypatch.setenv("SYMCELL_CACHE_DIR", "/proc/symcell-cache")   # not writable, even for root
    with pytest.warns(UserWarning, match=r"the cache directory /proc/symcell-cache cannot be used \(not writable: "):
        d = cache.cache_dir()
    assert d.is_dir() and "symcell-cache" in d.name
    (d / "probe").write_text("ok")


def test_a_cache_dir_that_is_a_file_or_no_home_falls_back_and_a_tilde_is_expanded(tmp_path, monkeypatch):
    """a file named as the cache was refused as untrusted (chown, chmod 700: which cannot fix it); a process with
    no home directory (a container's --user uid) failed every call, the reference backend's too, with "Could not
    determine home directory"; SYMCELL_CACHE_DIR='~/x' made a folder named ~ in the working directory"""
    from pathlib import Path

    from symcell import cache
    monkeypatch.setattr(cache, "_roots", {})
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("SYMCELL_CACHE_DIR", str(tmp_path / "a-file"))
    with pytest.warns(UserWarning, match=r"a-file cannot be used \(a file, not a folder\); using "):
        assert cache.cache_dir().is_dir()
    monkeypatch.delenv("SYMCELL_CACHE_DIR")

    def no_home():
        raise RuntimeError("Could not determine home directory.")
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with pytest.warns(UserWarning, match=r"~/.cache/symcell cannot be used \(no home directory; set "
                                         r"SYMCELL_CACHE_DIR\); using "):
        assert cache.cache_dir().is_dir()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SYMCELL_CACHE_DIR", "~/tilde-cache")
    assert cache.cache_dir() == (tmp_path / "tilde-cache").resolve()


def test_symcell_debug_derives_again_rather_than_load_a_kept_derivation(tmp_path, monkeypatch, capsys):
    """SYMCELL_DEBUG=1 prints each stage as the pipeline makes it: with the derivation kept on disk by an earlier
    process, it printed none of them"""
    from symcell import pipeline, registry
    monkeypatch.setattr(cache, "_roots", {})
    monkeypatch.setenv("SYMCELL_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SYMCELL_DEBUG", raising=False)
    h = symcell.cells.LLTM.spec.hash
    monkeypatch.setattr(registry, "_LOWERED", collections.OrderedDict())   # (as in a fresh process)
    made = registry.lowered(h)
    monkeypatch.setattr(registry, "_LOWERED", collections.OrderedDict())
    lower = pipeline.lower
    monkeypatch.setattr(pipeline, "lower", lambda *a: pytest.fail("the kept derivation was not loaded"))
    assert registry.lowered(h).program.name == made.program.name          # kept
    monkeypatch.setattr(pipeline, "lower", lower)
    monkeypatch.setenv("SYMCELL_DEBUG", "1")
    monkeypatch.setattr(registry, "_LOWERED", collections.OrderedDict())
    capsys.readouterr()
    registry.lowered(h)                                                    # made again, so its stages print
    assert "--- symcell " in capsys.readouterr().err


def test_a_derivation_kept_on_disk_renders_what_a_fresh_one_does(tmp_path, monkeypatch):
    """cache.memo keeps a cell's lowering and second-order scans for the next process: loaded back, every zoo
    cell renders the same source on every backend, first and second order, as when derived afresh (rendering
    only, no build). A symbolic backend (sizes as arguments) and a bound one lower differently: both are kept."""
    from symcell import pipeline, registry
    from zoo import CASES
    monkeypatch.setenv("SYMCELL_CACHE_DIR", str(tmp_path))
    backends = [symcell.backends.get(b) for b in ("reference", "cpp", "triton")]
    for name, (factory, _, _) in CASES.items():
        cell = factory(backend="reference")
        h = registry.register(cell.spec.ir)
        for at in {None if b.symbolic else tuple(sorted(cell._binding.dims.items())) for b in backends}:
            at = None if at is None else dict(at)
            fresh = pipeline.lower(cell.spec.ir, at)
            where = f"{h}-{registry._dims_id(at)}"   # (the LSTM and its projected form share a cell, not dims)
            assert registry.cache.memo(f"test-{where}", lambda: fresh, fresh=True) is fresh      # written
            kept = registry.cache.memo(f"test-{where}", lambda: pytest.fail("the kept lowering was not loaded"))
            assert kept is not fresh
            second = registry.cache.memo(f"test2-{where}", lambda: pipeline.second_order(fresh.program))
            kept2 = registry.cache.memo(f"test2-{where}", lambda: pytest.fail("the kept scans were not loaded"))
            assert kept2 is not second
            for b in backends:
                if (at is None) != b.symbolic:
                    continue
                assert b.render(kept.program, (kept.program.forward, kept.program.backward)) == \
                    b.render(fresh.program, (fresh.program.forward, fresh.program.backward)), (name, b.name)
                assert b.render(fresh.program, kept2) == b.render(fresh.program, second), (name, b.name)


def _build_with_a_precompiled_header(tmp_path, monkeypatch, header, load):
    """cpp build._build of a stand-in cell (float32) with a finished precompiled header holding `header`, cache.load
    replaced by `load(source, ..., links=)`: -> (what build returned, the header's folder)"""
    from types import SimpleNamespace

    from symcell.backends.cpp import build as cpp_build
    pch = tmp_path / "pch-x"
    pch.mkdir()
    (pch / "sc.h.gch").write_bytes(header)
    (pch / "complete").touch()
    monkeypatch.setattr(cpp_build, "_precompiled", lambda *a: pch)
    monkeypatch.setattr(cpp_build, "_precompile", lambda *a: None)
    monkeypatch.setattr(cpp_build.cache, "trusted_file", lambda p: True)
    monkeypatch.setattr(cpp_build.cache, "load", load)
    monkeypatch.setattr(cpp_build, "compiler_works", lambda: True)
    return cpp_build._build(SimpleNamespace(name="X", dims=[]), "source", torch.float32), pch


def test_a_precompiled_header_that_fails_a_build_is_removed_and_the_build_runs_without_it(tmp_path, monkeypatch):
    """a .gch cut short on disk made every later build fail ("while reading precompiled header") until removed
    by hand: the build that fails with it removes it and builds again without it"""
    calls = []

    def load(source, *args, links=None, **kwargs):
        calls.append(links)
        if links:
            raise cache.BuildError("symcell: building the C++ kernel failed: while reading precompiled header")
        return "symcell_X_key"
    built, pch = _build_with_a_precompiled_header(tmp_path, monkeypatch, b"cut short", load)
    assert built == "symcell_X_key"
    assert calls == [{"sc.h.gch": pch / "sc.h.gch"}, None] and not pch.exists()


def test_a_build_its_source_fails_leaves_the_precompiled_header_to_the_others(tmp_path, monkeypatch):
    """a source gcc refuses (not the header) fails with and without the precompiled header: the header stays,
    the error is the build's"""
    calls = []

    def load(source, *args, links=None, **kwargs):
        calls.append(links)
        raise cache.BuildError("symcell: building the C++ kernel failed: expected unqualified-id")
    with pytest.raises(cache.BuildError, match="expected unqualified-id"):
        _build_with_a_precompiled_header(tmp_path, monkeypatch, b"a good header", load)
    pch = tmp_path / "pch-x"
    assert calls == [{"sc.h.gch": pch / "sc.h.gch"}, None] and (pch / "sc.h.gch").exists()


def test_threads_opening_the_cache_at_once_all_get_the_configured_root(tmp_path, monkeypatch):
    """a threaded server's first calls: a thread that found the remembered root taken out by another opened it
    again, and two threads' write probes shared one file name (one's unlink failed): a writable root was called
    unwritable, and calls got the temporary fallback (a warning, libraries built again there)"""
    import threading
    import warnings
    monkeypatch.setenv("SYMCELL_CACHE_DIR", str(tmp_path))
    cache.cache_dir()
    seen = []

    def work(barrier):
        barrier.wait()
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # (the fallback warns)
            seen.append(cache.cache_dir())
    for _ in range(50):
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=work, args=(barrier,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(seen) == 200 and set(seen) == {tmp_path.resolve()}, set(seen)


def test_a_marker_without_the_librarys_length_is_a_build_to_do_again(tmp_path):
    """a marker with no `bytes N` line (empty, or written before lengths were) skipped the length check: a library
    cut short on disk beside it killed the process that mapped it (SIGBUS), where the README promises a rebuild"""
    entry = tmp_path / "entry"
    cache.private_dir(entry)
    lib, marker = entry / "x.so", entry / "complete"
    for path, data in ((lib, b"\0" * 4096), (marker, b"built in 1.00 s\n")):
        path.write_bytes(data)
        os.chmod(path, 0o600)
    assert not cache._complete(entry, lib, marker)
    marker.write_bytes(b"built in 1.00 s\nbytes 4096\n")
    assert cache._complete(entry, lib, marker)
    lib.write_bytes(b"\0" * 100)                   # cut short
    assert not cache._complete(entry, lib, marker)
    # with the digest a build writes: a library damaged in the middle, its length unchanged (a SIGSEGV, SIGILL)
    lib.write_bytes(b"\0" * 4096)
    marker.write_bytes(f"built in 1.00 s\nbytes 4096\nsha256 {cache._digest(lib)}\n".encode())
    assert cache._complete(entry, lib, marker)
    lib.write_bytes(b"\0" * 2048 + b"\1" + b"\0" * 2047)
    assert not cache._complete(entry, lib, marker)


def test_a_kept_object_is_linked_only_while_whole_and_this_users(tmp_path, monkeypatch):
    """the cpp backend's runtime is an object that every cell's library links (cache.keep_object): damaged, every
    later cell would link the damage; writable by others, it would run their code in every cell"""
    monkeypatch.setenv("SYMCELL_CACHE_DIR", str(tmp_path / "cache"))
    built = tmp_path / "x.o"
    built.write_bytes(b"\1" * 4096)
    assert cache.kept_object("runtime-k", "x.o") is None
    cache.keep_object("runtime-k", built)
    obj = cache.kept_object("runtime-k", "x.o")
    assert obj == tmp_path / "cache" / "runtime-k" / "x.o" and obj.read_bytes() == built.read_bytes()
    assert_all_private(tmp_path / "cache")
    obj.write_bytes(b"\1" * 2048 + b"\0" + b"\1" * 2047)   # damaged, its length unchanged
    assert cache.kept_object("runtime-k", "x.o") is None
    cache.keep_object("runtime-k", built)                  # replaced
    assert cache.kept_object("runtime-k", "x.o").read_bytes() == built.read_bytes()
    os.chmod(obj, 0o620)                                   # writable by the group
    assert cache.kept_object("runtime-k", "x.o") is None
    os.chmod(obj, 0o600)
    os.chmod(obj.parent, 0o707)                            # its folder writable by others: replaced, with a warning
    assert cache.kept_object("runtime-k", "x.o") is None
    with pytest.warns(UserWarning, match=r"the cache entry .*runtime-k is writable by others .*: not linked; kept "
                                         r"again"):
        cache.keep_object("runtime-k", built)
    assert cache.kept_object("runtime-k", "x.o") == obj
    assert_all_private(tmp_path / "cache")


def test_a_precompile_killed_long_ago_is_started_again(tmp_path):
    """a precompile killed before it finished (a reboot, out of memory) left `started` without `complete`, and no
    later build in that cache precompiled the header again"""
    import time

    from symcell.backends.cpp import build as cpp_build
    built = tmp_path / "cell"
    built.mkdir()
    (built / "build.ninja").write_text("# a form without the compiler's line: nothing is compiled\n")
    folder = tmp_path / "pch-x"
    cache.private_dir(folder)
    started = folder / "started"
    started.touch()
    partial = folder / "sc.h.gch.123-456.tmp"      # its half-written output (killed: never renamed nor removed)
    partial.write_bytes(b"\0" * 1000)
    recent = time.time() - 60
    os.utime(started, (recent, recent))
    cpp_build._precompile(folder, built)           # one started a minute ago is running: left to it
    assert started.stat().st_mtime == recent and partial.exists()
    old = time.time() - cpp_build.PCH_GIVEN_UP_AFTER_S - 60
    os.utime(started, (old, old))
    cpp_build._precompile(folder, built)           # started again, the killed one's output removed
    assert started.stat().st_mtime > recent and not partial.exists()
    (folder / "complete").touch()
    os.utime(started, (old, old))
    cpp_build._precompile(folder, built)           # finished: never again
    assert started.stat().st_mtime == old


@needs_compiler
@pytest.mark.cpp
def test_a_full_disk_is_a_build_error_and_auto_falls_back(tmp_path, monkeypatch):
    """writing a cache entry's sources on a full disk raised a bare OSError (ENOSPC), from outside the build's
    error handling, and backend='auto' did not fall back; it is a BuildError naming the entry, not remembered as
    lasting (space may be freed), and auto uses the reference backend"""
    import errno
    import pathlib

    from symcell import module
    monkeypatch.setattr(cache, "_roots", {})
    monkeypatch.setattr(cache, "_loaded", {})
    monkeypatch.setenv("SYMCELL_CACHE_DIR", str(tmp_path))
    cache.cache_dir()

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pathlib.Path, "write_text", full)
    with pytest.raises(cache.BuildError, match=rf"cannot write the build cache entry {tmp_path}/\w+: No space left "
                                               r"on device; free space there, or set SYMCELL_CACHE_DIR") as e:
        cache.load("int unused;", files={"sc.h": "// header"})
    assert e.value.lasting is False

    @symcell.define(inputs={"x": "I"}, state={"h": "H"}, params={"W": ("H", "I")})
    def DiskFull(x, h, W):
        return tanh(W @ x) + 0.5 * h
    monkeypatch.setattr(module, "_fallback_warned", set())
    cell = DiskFull(I=3, H=4, backend="auto")
    x = torch.randn(5, 2, 3)
    with pytest.warns(UserWarning, match=r"the cpp backend could not be built \(symcell: cannot write the build cache "
                                         r"entry .*No space left on device"):
        y, _ = cell(x)
    ref = DiskFull(I=3, H=4, backend="reference")
    ref.load_state_dict(cell.state_dict())
    torch.testing.assert_close(y, ref(x)[0])
    assert cell._binding.keys["cpp"] not in module._unbuildable   # (a later call builds again, once space is freed)
