"""Save a model with symcell cells for the C++ example, then compare what run_model wrote with Python's outputs.

    python examples/deploy/check.py save <folder>        # folder/model.pt (TorchScript), folder/symcell_*.so
    python examples/deploy/check.py package <folder>     # folder/model.pt2 (AOTInductor), folder/symcell_*.so
    build/deploy/run_model <folder>/model.pt 8 5 23       # the C++ program (README, "Deploying without Python")
    python examples/deploy/check.py compare <folder>/model.pt 5 23
"""
import sys
from pathlib import Path

import torch
from torch import nn

import symcell
from symcell.cells import LSTM

I, B = 8, 2


class Tagger(nn.Module):
    """a two-layer symcell LSTM and a Linear head: per-step scores"""

    def __init__(self):
        super().__init__()
        self.rnn = LSTM(I, 16, num_layers=2)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def inputs(T):
    """the C++ program's inputs: x[t, b, i] = sin(0.1 * k), k = (t * B + b) * I + i"""
    return torch.sin(0.1 * torch.arange(T * B * I, dtype=torch.float32)).reshape(T, B, I)


def model():
    torch.manual_seed(0)
    return Tagger().eval()


def main(argv):
    if len(argv) < 2 or argv[0] not in ("save", "package", "compare"):
        print(__doc__.strip())
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    what, path = argv[0], Path(argv[1])
    if what == "save":
        print("saved", symcell.deploy.save(model(), inputs(7), path))
        return 0
    if what == "package":   # every input size dynamic: the package runs at any length and batch size
        print("saved", symcell.deploy.package(model(), inputs(7), path))
        return 0
    worst = 0.0
    for T in [int(t) for t in argv[2:]]:
        with torch.no_grad():
            want = model()(inputs(T))
        got = torch.load(path.parent / f"cpp_{path.name}_T{T}.pt")
        worst = max(worst, (got - want).abs().max().item())
        print(f"T={T}: C++ {tuple(got.shape)}, max |C++ - Python| = {(got - want).abs().max().item():.2e}")
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
