"""The C++ CPU backend: render.py prints a kernel program as C++ over sc.h, build.py builds and calls it."""
import torch

from ..base import Backend
from . import build as _build
from .build import compiler_works, forced  # noqa: F401
from . import render as renderer   # (the module stays symcell.backends.cpp.render: its function is renderer.render)


class CppBackend(Backend):
    name, devices, priority = "cpp", ("cpu",), 2
    symbolic = True    # one build per cell: dimensions, T and B are run-time values
    weights16 = True

    def usable(self, device):
        return device.type == "cpu" and compiler_works()

    def render(self, program, scans):
        return renderer.render(program, scans)

    def build(self, program, scans, source, dims):
        return _build.build(program, scans, source, dims)

    def row_order(self, lengths, weight_bytes):
        """Longest first, as packing sorts them, so that a step stops at its last running row (`_na` in the
        generated loop); and where sc::scan_rows gives each thread a slice of the rows (B >= 4 threads, and
        weights few enough for every thread to stream them each step: the same rule as in sc.h), dealt round-robin
        over the slices, so every slice holds long and short rows alike and no thread idles while another finishes
        the longest."""
        B, k = lengths.shape[0], max(1, torch.get_num_threads())
        ranked = torch.argsort(lengths, descending=True, stable=True)
        if scan_columns(weight_bytes) or B < 4 * k or k == 1:     # one slice: longest first is enough
            return ranked
        r = torch.arange(B, device=lengths.device)   # ranks 0, k, 2k, ... first, then 1, k + 1, ...
        return ranked[torch.argsort((r % k) * B + r // k)]


SCAN_COLUMNS_FROM = 8 << 20   # bytes: sc.h's constant of the same name


def scan_columns(weight_bytes):
    """sc::scan_columns: whether the loop shares each step across threads rather than splitting the rows"""
    on = forced("SYMCELL_SCAN_COLUMNS")
    return on == 1 if on >= 0 else weight_bytes >= SCAN_COLUMNS_FROM

