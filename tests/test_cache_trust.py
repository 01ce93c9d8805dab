"""The build cache lets no one else in: a cache root, a fallback folder, an entry or an artefact that someone other
than this user could have written is refused or replaced, and what it holds is never loaded.

Each planted artefact would leave a mark if it ran (a library's constructor, a pickle's reduce); the tests assert
the mark never appears, and, as a control, that it does when the same artefact is this user's and private (so
the plant itself works). Another owner needs root (`chown`; CI runs as root); the mode cases run as anyone.
"""
import os
import pickle
import stat
import subprocess
import tempfile
import warnings

import pytest

from symcell import cache
from symcell.backends.cpp import compiler_works

UID = os.geteuid()
OTHER = 65534   # nobody
needs_root = pytest.mark.skipif(UID != 0, reason="giving a folder to another user needs root (CI runs as root)")
needs_compiler = pytest.mark.skipif(not compiler_works(), reason="needs a C++ compiler (to build the planted library)")


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """as in a new process: no cache root chosen yet, no library loaded"""
    monkeypatch.setattr(cache, "_roots", {})
    monkeypatch.setattr(cache, "_loaded", {})


@pytest.fixture
def root(tmp_path, monkeypatch):
    """a fresh cache root for this test"""
    monkeypatch.setenv("SYMCELL_CACHE_DIR", str(tmp_path / "cache"))
    return cache.cache_dir()


def give_away(path):
    for dirpath, _, names in os.walk(path):
        os.chown(dirpath, OTHER, OTHER)
        for n in names:
            os.chown(os.path.join(dirpath, n), OTHER, OTHER)
    os.chown(path, OTHER, OTHER)


def assert_private(path):
    st = os.lstat(path)
    assert st.st_uid == UID and not stat.S_ISLNK(st.st_mode), path
    assert st.st_mode & 0o077 == 0, f"{path}: mode {oct(st.st_mode & 0o7777)}"


def test_the_cache_root_symcell_creates_is_private(root):
    assert_private(root)
    assert os.lstat(root).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("fault, message", [
    pytest.param("owner", r"owned by uid 65534, not by this user", marks=needs_root),
    ("mode", r"writable by group and others \(mode 0o777\)"),
    ("group", r"writable by group \(mode 0o770\)"),
    ("parent", r"its parent .*shared is writable by group or others and not sticky"),
    pytest.param("parent owner", r"its parent .*shared is owned by uid 65534", marks=needs_root),
])
def test_a_cache_root_someone_else_could_write_is_refused(tmp_path, monkeypatch, fault, message):
    folder = tmp_path / "shared" / "cache"
    folder.mkdir(parents=True, mode=0o700)
    if fault == "owner":
        os.chown(folder, OTHER, OTHER)
    elif fault == "mode":
        os.chmod(folder, 0o777)
    elif fault == "group":
        os.chmod(folder, 0o770)
    elif fault == "parent":
        os.chmod(folder.parent, 0o777)
    else:
        os.chown(folder.parent, OTHER, OTHER)
    monkeypatch.setenv("SYMCELL_CACHE_DIR", str(folder))
    with pytest.raises(cache.UntrustedCacheError, match=message) as e:
        cache.cache_dir()
    assert str(folder) in str(e.value) and "SYMCELL_CACHE_DIR" in str(e.value)


def test_the_default_root_that_fails_the_rule_falls_back_to_a_temporary_one(tmp_path, monkeypatch):
    """~/.cache made group-writable (a umask of 002, usual with user-private groups) refused every backend, the
    reference one included: the default root, which nobody chose, falls back with a warning as an unwritable one
    does; a root chosen with $SYMCELL_CACHE_DIR is still refused (above)"""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir(mode=0o700)
    home = tmp_path / "home"
    (home / ".cache").mkdir(parents=True)
    os.chmod(home / ".cache", 0o775)
    monkeypatch.delenv("SYMCELL_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(home))
    with pytest.warns(UserWarning, match=r"the cache directory .*home/.cache/symcell cannot be used \(its parent "
                                         r".*\.cache is writable by group or others and not sticky \(mode 0o775\); "
                                         r"chmod go-w the folder named, or set SYMCELL_CACHE_DIR\); using .*tmp/symcell-cache-"):
        d = cache.cache_dir()
    assert d == tmp_path / "tmp" / f"symcell-cache-{UID}"
    # a ~/.cache symcell makes itself is private whatever the umask (mkdir's parents=True gave 0775 under 002, which
    # then failed the rule in every process)
    fresh = tmp_path / "fresh-home"
    fresh.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(fresh))
    monkeypatch.setattr(cache, "_roots", {})
    old = os.umask(0o002)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cache.cache_dir() == fresh / ".cache" / "symcell"
    finally:
        os.umask(old)
    assert os.stat(fresh / ".cache").st_mode & 0o777 == 0o700


def test_without_a_cache_to_keep_them_in_derivations_are_made_in_the_process(tmp_path, monkeypatch):
    """the memo of derivations (cache.memo) is a saving, not a need: a refused root (or a full disk) made the
    reference backend raise too; it now warns once and derives in the process"""
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    monkeypatch.setenv("SYMCELL_CACHE_DIR", str(folder))
    monkeypatch.setattr(cache, "_memo_warned", [])
    with pytest.warns(UserWarning, match=r"the symbolic derivations are not kept on disk \(no usable cache directory: "
                                         r"symcell: refusing the "
                                         r"build cache"):
        assert cache.memo("probe", lambda: 42) == 42
    assert cache.memo("probe", lambda: 43) == 43 and not (folder / "memo").exists()


def test_a_sticky_shared_parent_like_tmp_is_fine(tmp_path, monkeypatch):
    os.chmod(tmp_path, 0o1777)
    monkeypatch.setenv("SYMCELL_CACHE_DIR", str(tmp_path / "cache"))
    assert cache.cache_dir() == (tmp_path / "cache").resolve()


def test_a_root_opened_to_others_after_first_use_is_refused_at_the_next(root):
    os.chmod(root, 0o777)
    with pytest.raises(cache.UntrustedCacheError, match="writable by group and others"):
        cache.cache_dir()


@pytest.mark.parametrize("squat", [pytest.param("owner", marks=needs_root), "mode", "link"])
def test_a_squatted_temporary_fallback_is_replaced_by_a_fresh_private_folder(tmp_path, monkeypatch, squat):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("SYMCELL_CACHE_DIR", "/proc/symcell-cache")   # not writable, even for root
    base = tmp_path / f"symcell-cache-{UID}"
    if squat == "link":   # a link to a folder of this user's: planted all the same
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        base.symlink_to(tmp_path / "elsewhere")
    else:
        base.mkdir()
        os.chown(base, OTHER, OTHER) if squat == "owner" else os.chmod(base, 0o777)
    # what the squatter left for us: a derivation that would run code when unpickled
    mark = tmp_path / "ran"
    planted = base / "memo" / f"planted-{cache._code_id()}.pkl"
    planted.parent.mkdir(exist_ok=True)
    planted.write_bytes(pickle.dumps(Mark(mark)))
    with pytest.warns(UserWarning, match=r"the fallback .* not used; using a fresh private folder"):
        fresh = cache.cache_dir()
    assert fresh.parent == tmp_path and fresh.name.startswith(f"symcell-cache-{UID}-") and fresh != base
    assert_private(fresh)
    assert cache.memo("planted", lambda: "made afresh") == "made afresh"
    assert not mark.exists()


def test_a_private_fallback_of_this_user_is_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("SYMCELL_CACHE_DIR", "/proc/symcell-cache")
    with pytest.warns(UserWarning, match=r"cannot be used \(not writable: .*\); using .*symcell-cache-\d+$"):
        d = cache.cache_dir()
    assert d == tmp_path / f"symcell-cache-{UID}"
    assert_private(d)


# --- planted artefacts inside a trusted root ---

class Mark:
    """unpickled, makes the folder `path`: proof that a pickle ran"""
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


SOURCE = "// a library symcell never builds: planted under its key\n"


def plant_library(root, tmp_path):
    """a library at the key cache.load(SOURCE) asks for, marked complete, whose constructor makes `mark`"""
    key = cache.library_key(SOURCE)
    entry = root / key
    entry.mkdir(mode=0o700)
    mark = tmp_path / "ran"
    c = entry / "planted.cpp"
    c.write_text('#include <sys/stat.h>\n'
                 f'__attribute__((constructor)) static void planted() {{ mkdir("{mark}", 0700); }}\n')
    lib = entry / f"symcell_{key}.so"
    subprocess.run(["c++", "-shared", "-fPIC", str(c), "-o", str(lib)], check=True, timeout=120)
    (entry / "complete").write_text(f"bytes {lib.stat().st_size}\n")   # (as cache.load writes it)
    for p in entry.iterdir():
        os.chmod(p, 0o700)
    return entry, lib, mark


class Rebuilt(Exception):
    pass


def no_build(*args):
    raise Rebuilt


@needs_compiler
@pytest.mark.parametrize("fault", [
    pytest.param("entry owner", marks=needs_root), pytest.param("library owner", marks=needs_root),
    "entry mode", "library mode", "library link"])
def test_a_planted_library_is_never_loaded(root, tmp_path, monkeypatch, fault):
    entry, lib, mark = plant_library(root, tmp_path)
    if fault == "entry owner":
        give_away(entry)
    elif fault == "library owner":
        os.chown(lib, OTHER, OTHER)
    elif fault == "entry mode":
        os.chmod(entry, 0o777)
    elif fault == "library mode":
        os.chmod(lib, 0o722)
    else:   # the library's name is a link to a library elsewhere
        os.rename(lib, tmp_path / "elsewhere.so")
        lib.symlink_to(tmp_path / "elsewhere.so")
    monkeypatch.setattr(cache, "_build", no_build)
    with pytest.warns(UserWarning, match=rf"the cache entry {entry} .*: not loaded; built again"):
        with pytest.raises(Rebuilt):   # it builds afresh, in an emptied private folder
            cache.load(SOURCE)
    assert not mark.exists(), "the planted library ran"
    assert_private(entry)
    assert not lib.exists()


@needs_compiler
def test_control_the_same_library_private_and_this_users_is_loaded(root, tmp_path, monkeypatch):
    entry, lib, mark = plant_library(root, tmp_path)
    monkeypatch.setattr(cache, "_build", no_build)
    assert cache.load(SOURCE) == f"symcell_{entry.name}"
    assert mark.exists(), "the plant does not work, so the tests above prove nothing"


@pytest.mark.parametrize("fault", [pytest.param("owner", marks=needs_root), "mode", "folder mode", "link"])
def test_a_planted_derivation_is_never_unpickled(root, tmp_path, fault):
    mark = tmp_path / "ran"
    path = cache.private_dir(root / "memo") / f"planted-{cache._code_id()}.pkl"
    (tmp_path / "elsewhere.pkl").write_bytes(pickle.dumps(Mark(mark)))
    os.chmod(tmp_path / "elsewhere.pkl", 0o600)
    if fault == "link":
        path.symlink_to(tmp_path / "elsewhere.pkl")
    else:
        os.rename(tmp_path / "elsewhere.pkl", path)
        if fault == "owner":
            os.chown(path, OTHER, OTHER)
        elif fault == "mode":
            os.chmod(path, 0o606)
        else:
            os.chmod(path.parent, 0o777)
    if fault == "folder mode":
        with pytest.warns(UserWarning, match="memo is writable by group and others .*: not used; removed"):
            assert cache.memo("planted", lambda: "made afresh") == "made afresh"
    else:
        assert cache.memo("planted", lambda: "made afresh") == "made afresh"
    assert not mark.exists(), "the planted pickle ran"
    assert_private(path.parent)
    assert_private(path)
    assert cache.memo("planted", lambda: pytest.fail("not kept")) == "made afresh"   # and kept, privately


def test_control_a_private_derivation_of_this_user_is_unpickled(root, tmp_path):
    mark = tmp_path / "ran"
    path = cache.private_dir(root / "memo") / f"planted-{cache._code_id()}.pkl"
    path.write_bytes(pickle.dumps(Mark(mark)))
    os.chmod(path, 0o600)
    cache.memo("planted", lambda: pytest.fail("the kept file was not loaded"))
    assert mark.exists()


@pytest.mark.parametrize("fault", [pytest.param("owner", marks=needs_root), "mode", "folder mode", "link"])
def test_a_planted_triton_source_is_replaced_by_the_kernels_own(root, tmp_path, fault):
    """Triton reads a kernel's source from its file (and its interpreter runs what it reads): the file must hold
    symcell's text, whatever was there before"""
    source = "def kernel():\n    pass\n"
    folder = cache.private_dir(root / "triton")
    path = folder / f"k_{cache.cache_key(source, [], [])}.py"
    planted = f"import os\nos.mkdir({str(tmp_path / 'ran')!r})\n"
    if fault == "link":
        (tmp_path / "elsewhere.py").write_text(planted)
        path.symlink_to(tmp_path / "elsewhere.py")
    else:
        path.write_text(planted)
        if fault == "owner":
            os.chown(path, OTHER, OTHER)
        elif fault == "mode":
            os.chmod(path, 0o666)
        else:
            os.chmod(path, 0o600)
            os.chmod(folder, 0o777)
    if fault == "folder mode":
        with pytest.warns(UserWarning, match="triton is writable by group and others"):
            got = cache.source_file("triton", "k", source)
    else:
        got = cache.source_file("triton", "k", source)
    assert got == path and path.read_text() == source
    assert_private(path)
    assert_private(folder)
    if fault == "link":
        assert (tmp_path / "elsewhere.py").read_text() == planted   # replaced the link, wrote nothing through it


def test_a_foreign_folder_that_cannot_be_removed_is_a_clear_error(root, monkeypatch):
    (root / "memo").mkdir(mode=0o777)
    os.chmod(root / "memo", 0o777)
    monkeypatch.setattr(cache.shutil, "rmtree", lambda *a, **k: None)   # as if it were someone else's, in a sticky root
    with pytest.warns(UserWarning), pytest.raises(cache.UntrustedCacheError, match="cannot be removed"):
        cache.private_dir(root / "memo")
