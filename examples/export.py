"""Trace a model with a symcell cell at one sequence length and run it at others; save it, load it in a fresh
process (after `import symcell`), and export it with torch.export.

    python examples/export.py [--out DIR]

A Python loop over time cannot be traced this way (the trace would unroll it for the one length it saw); a
symcell cell is one operator per sequence (`symcell::scan`), so the trace generalizes.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import warnings

import torch
from torch import nn

from symcell.cells import GRU


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = GRU(8, 16, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        out, h = self.rnn(x)
        return self.head(h[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="folder for the saved model (default: a temporary one)")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = Classifier().eval()
    out = args.out or tempfile.mkdtemp(prefix="symcell-export-")
    os.makedirs(out, exist_ok=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # torch.jit.trace is deprecated upstream, still used
        # the modules' size checks read sizes as Python ints, which torch warns "might not generalize": right for
        # the example, and the cell's operator checks them again at any size (the loop below runs other T)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, torch.randn(4, 10, 8))
    for T in (10, 11, 50):
        x = torch.randn(4, T, 8)
        err = (traced(x) - model(x)).abs().max().item()
        print(f"traced at T=10, run at T={T}: max |difference| from the module {err:.1e}")
    path = os.path.join(out, "classifier.pt")
    traced.save(path)
    x = torch.randn(2, 23, 8)
    torch.save((x, model(x)), os.path.join(out, "check.pt"))
    code = textwrap.dedent(f"""
        import torch, symcell
        m = torch.jit.load({path!r})
        x, y = torch.load({os.path.join(out, 'check.pt')!r})
        print("fresh process: max |difference|", (m(x) - y).abs().max().item())
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    print(r.stdout.strip() or r.stderr)
    if r.returncode:
        sys.exit(r.returncode)

    ep = torch.export.export(model, (torch.randn(4, 10, 8),))
    print("torch.export graph calls:", sorted({str(n.target) for n in ep.graph.nodes if n.op == "call_function"}))
    x = torch.randn(4, 10, 8)
    print(f"exported program: max |difference| {(ep.module()(x) - model(x)).abs().max().item():.1e}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
