"""The LLTM of the PyTorch C++ extension tutorial, as a symcell prebuilt cell.

    python examples/lltm.py                  # B=16, F=32, S=128, T=100

Shows one step (as the tutorial's module does), a whole sequence in one call, that the tutorial's weights
load unchanged, and forward/backward timings against the tutorial's module run step by step in Python.
"""
import argparse
import statistics
import time

import torch
from torch import nn

from symcell.cells import LLTM


class TutorialLLTM(nn.Module):
    """The tutorial's Python LLTM: one step per call, `weights` (3S, F+S) applied to cat(h, x)."""

    def __init__(self, input_features, state_size):
        super().__init__()
        self.weights = nn.Parameter(torch.empty(3 * state_size, input_features + state_size))
        self.bias = nn.Parameter(torch.empty(3 * state_size))
        nn.init.uniform_(self.weights, -state_size ** -0.5, state_size ** -0.5)
        nn.init.uniform_(self.bias, -state_size ** -0.5, state_size ** -0.5)

    def forward(self, x, state):
        old_h, old_cell = state
        gates = nn.functional.linear(torch.cat([old_h, x], dim=1), self.weights, self.bias)
        input_gate, output_gate, candidate = gates.chunk(3, dim=1)
        new_cell = old_cell + torch.sigmoid(input_gate) * nn.functional.elu(candidate)
        new_h = torch.tanh(new_cell) * torch.sigmoid(output_gate)
        return new_h, new_cell


def run_tutorial(m, xs, h, c):
    out = []
    for x in xs:
        h, c = m(x, (h, c))
        out.append(h)
    return torch.stack(out), c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--state", type=int, default=128)
    ap.add_argument("--seq", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    B, F, S, T = args.batch, args.features, args.state, args.seq
    tutorial = TutorialLLTM(F, S)
    cell = LLTM(F, S)
    cell.load_state_dict(tutorial.state_dict())       # the same names and layout
    xs = torch.randn(T, B, F, requires_grad=True)
    h0, c0 = torch.zeros(B, S), torch.zeros(B, S)

    h1, c1 = cell.step(xs[0], (h0, c0))               # one step, like the tutorial's module
    th, tc = tutorial(xs[0], (h0, c0))
    print(f"one step: max |difference| {max((h1 - th).abs().max().item(), (c1 - tc).abs().max().item()):.1e}")
    ys, (h, c) = cell(xs, (h0, c0))                    # the whole sequence in one call
    ys_t, c_t = run_tutorial(tutorial, xs, h0, c0)
    g = torch.autograd.grad(ys.sum() + c.sum(), [xs, cell.weights])
    g_t = torch.autograd.grad(ys_t.sum() + c_t.sum(), [xs, tutorial.weights])
    err = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip((ys, *g), (ys_t, *g_t)))
    print(f"sequence of {T}: outputs and gradients agree, max relative difference {err:.1e}")

    def timed(f):
        t0 = time.perf_counter()
        f()
        return (time.perf_counter() - t0) * 1e3
    def symcell_run():
        ys, (_, c) = cell(xs, (h0, c0))
        return ys, c

    runs = {"symcell LLTM": symcell_run, "tutorial, step by step": lambda: run_tutorial(tutorial, xs, h0, c0)}

    def fwd_bwd(f):
        ys, c = f()
        (ys.sum() + c.sum()).backward()

    res = {n: ([], []) for n in runs}
    for _ in range(args.repeats):   # interleaved, so a noisy neighbour slows both alike
        for n, f in runs.items():
            with torch.no_grad():
                res[n][0].append(timed(f))
            res[n][1].append(timed(lambda: fwd_bwd(f)))
    print(f"\nB={B} F={F} S={S} T={T}, medians of {args.repeats}:")
    print(f"  {'':<24} {'forward ms':>10} {'fwd+bwd ms':>11}")
    for n, (f, fb) in res.items():
        print(f"  {n:<24} {statistics.median(f):>10.2f} {statistics.median(fb):>11.2f}")


if __name__ == "__main__":
    main()
