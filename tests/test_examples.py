"""Every example runs as documented, with tiny settings."""
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.cpp, pytest.mark.slow]   # the examples run backend="auto": cpp on CPU


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run(name, *args):
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_compare_lstm():
    for cell in ("lstm", "gru", "lltm"):
        out = run("compare_lstm.py", "--cell", cell, "--batch", "3", "--seq", "4", "--input", "5", "--hidden",
                  "6", "--repeats", "1")
        assert "MISMATCH" not in out and "fwd+bwd ms" in out and "training memory MiB" in out
        # every other runner against symcell's (nn's module where there is one, and the eager loop)
        assert sum(line.endswith("  ok") for line in out.splitlines()) == (1 if cell == "lltm" else 2), out


def test_char_rnn_trains_checkpoints_and_samples(tmp_path):
    ck = str(tmp_path / "ck.pt")
    out = run("char_rnn.py", "--steps", "60", "--hidden", "32", "--seq", "16", "--batch", "8", "--sample", "40",
              "--save", ck)
    first, last = (float(v) for v in out.split("loss ")[-1].split(" after")[0].split(" -> "))
    assert last < first - 0.3                       # the loss falls visibly
    out = run("char_rnn.py", "--load", ck, "--steps", "0", "--sample", "30")   # (the checkpoint's cell and sizes)
    assert "loaded" in out and "Shall I" in out
    for cell in ("gru", "lltm", "peephole"):
        run("char_rnn.py", "--cell", cell, "--steps", "3", "--hidden", "16", "--seq", "8", "--batch", "4",
            "--sample", "10", "--embed", "8", "--save", str(tmp_path / f"{cell}.pt"))


def test_lltm():
    out = run("lltm.py", "--batch", "3", "--features", "4", "--state", "5", "--seq", "6", "--repeats", "1")
    assert "outputs and gradients agree" in out


def test_custom_cell():
    out = run("custom_cell.py", "--steps", "2", "--hidden", "4", "--show-source")
    assert "backward, each step in reverse time" in out and "step    0" in out


def test_export(tmp_path):
    out = run("export.py", "--out", str(tmp_path))
    assert "fresh process: max |difference| 0.0" in out and "symcell.scan.default" in out


def test_second_order():
    out = run("second_order.py", "--batch", "2", "--seq", "3", "--input", "3", "--hidden", "4", "--steps", "2")
    diffs = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if "max relative difference" in line]
    assert len(diffs) == 4 and max(diffs) < 1e-8, out
