"""Render-only snapshots: the LSTM's and the GRU's generated source on every backend, rendered without a
compiler or a GPU, compared line by line with tests/snapshots/. A change to a renderer, the op table, a printer
or a pass shows up here as a diff to read, before any build.

When a change is meant: SYMCELL_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_render.py, then read the diff of
tests/snapshots/ (git diff) as part of the change. (The snapshots depend on sympy's printing and CSE, so a sympy
upgrade may need the same.)
"""
import difflib
import os
from pathlib import Path

import pytest

import symcell
from symcell import pipeline
from symcell.cells import GRUCell, LSTMCell

SNAPSHOTS = Path(__file__).with_name("snapshots")
CELLS = {"lstm": LSTMCell.spec, "gru": GRUCell.spec}
DIMS = {"I": 8, "H": 16}
FILE = {"reference": "{}.reference.py", "cpp": "{}.cpp", "triton": "{}.triton.py"}


def rendered(spec, backend, second_order=False):
    b = symcell.backends.get(backend)
    lowered = pipeline.lower(spec.ir, None if b.symbolic else DIMS)
    program = pipeline.backend_program(lowered, b)
    scans = pipeline.second_order(program) if second_order else (program.forward, program.backward)
    return b.render(program, scans)


@pytest.mark.parametrize("backend", sorted(FILE))
@pytest.mark.parametrize("cell", sorted(CELLS) + ["lstm-second-order"])
def test_generated_source_matches_its_snapshot(cell, backend):
    """the first-order scans of the LSTM and the GRU, and the second-order scans (tangent.py) of the LSTM"""
    path = SNAPSHOTS / FILE[backend].format(cell)
    text = rendered(CELLS[cell.split("-")[0]], backend, second_order=cell.endswith("second-order"))
    if os.environ.get("SYMCELL_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    want = path.read_text()
    if text != want:
        diff = "".join(list(difflib.unified_diff(want.splitlines(True), text.splitlines(True), str(path), "rendered"))[:80])
        pytest.fail(f"the {backend} source of {cell} differs from {path.name} (SYMCELL_UPDATE_SNAPSHOTS=1 to accept "
                    f"a meant change):\n{diff}")


def test_rendering_needs_no_build():
    """The snapshots above render from the pipeline's program alone: nothing is compiled or cached."""
    from symcell import registry
    before = dict(registry._KERNELS)
    rendered(CELLS["lstm"], "cpp")
    assert registry._KERNELS == before
