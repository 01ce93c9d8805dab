"""Building rendered C++ into a library of torch operators, and calling them.

The library registers `forward` and `backward` in a namespace of its own (TORCH_LIBRARY(SYMCELL_NS, ...), one
namespace per build key, see cache.py); a Kernel calls them through torch.ops. sc.h, the hand-written runtime,
is built beside the source and is part of the key.
"""
import ctypes.util
import shutil
import sys
import warnings
from pathlib import Path

import torch

from ... import cache

HEADER = Path(__file__).with_name("sc.h")
_NO_LENGTHS = torch.empty(0, dtype=torch.int64)   # every row runs all steps


def flags():
    mvec = sys.platform.startswith("linux") and ctypes.util.find_library("mvec") is not None
    # -fopenmp: at::parallel_for is inlined from ATen's OpenMP header; the library then uses the libgomp that
    # torch already loaded (same soname), so there is one thread pool
    cflags = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
              f"-DSYMCELL_MVEC={int(mvec)}", "-w"]
    ldflags = ["-fopenmp"] + (["-lmvec"] if mvec else [])
    return cflags, ldflags


class Entry:
    """An operator of a built library, called with the cell's dimensions (run-time values) after the scan's
    arguments and flag, and an empty tensor for no lengths."""

    def __init__(self, ns, scan, dims):
        self.ns, self.op, self.dims = ns, getattr(getattr(torch.ops, ns), scan.name), list(dims)
        self.flags = 1 if scan.save else 0

    def __call__(self, *args):   # the scan's argument lists, its save flag if it has one, the lengths
        groups, flags, lengths = args[:-1 - self.flags], args[len(args) - 1 - self.flags:-1], args[-1]
        return self.op(*groups, self.dims, *flags, _NO_LENGTHS if lengths is None else lengths)


def build(program, scans, source, dims):
    if not compiler_works():
        raise cache.BuildError("symcell: backend='cpp' needs a C++ compiler (c++ or g++) and ninja on PATH; "
                               "install them, or use backend='reference'")
    cflags, ldflags = flags()
    ns = cache.load(source, cflags, ldflags, files={HEADER.name: HEADER.read_text()})   # once per source
    return {s.name: Entry(ns, s, [dims[d] for d in program.dims]) for s in scans}


_compiler_ok = []


def compiler_works():
    """True when a C++ compiler and ninja are on this machine; warns once when not."""
    if not _compiler_ok:
        ok = shutil.which("c++") is not None or shutil.which("g++") is not None
        try:
            from torch.utils.cpp_extension import verify_ninja_availability
            verify_ninja_availability()
        except (RuntimeError, ImportError):
            ok = False
        if not ok:
            warnings.warn("symcell: no working C++ compiler or ninja found; backend='auto' uses the reference "
                          "backend on CPU (slower). Install g++ and ninja for the cpp backend.", stacklevel=3)
        _compiler_ok.append(ok)
    return _compiler_ok[0]
