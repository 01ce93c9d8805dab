"""Define a cell nobody has written before, read its derived gradients and generated code, and train it.

    python examples/custom_cell.py                  # prints the equations, trains on a toy task
    python examples/custom_cell.py --show-source    # also prints the generated kernel source

The cell: a gated unit with two states of different sizes (a fast state h and a slow memory m of twice its
size), a matmul on a pointwise function of the state, and a learned per-feature decay. The task: predict the
running mean of a noisy sine, which needs memory over many steps.
"""
import argparse

import torch
from torch import nn

import symcell
from symcell import cat, sigmoid, softplus, split, tanh


@symcell.define(inputs={"x": "I"}, state={"h": "H", "m": "2*H"},
                params={"W": ("3*H", "I+H"), "U": ("2*H", "H"), "b": ("3*H",), "decay": ("2*H",)})
def SlowFast(x, h, m, W, U, b, decay):
    r, z, n = split(W @ cat(x, h) + b, 3)
    keep = 1 / (1 + softplus(decay))              # per-feature decay in (0, 1)
    m = keep * m + (1 - keep) * tanh(U @ (sigmoid(r) * h))
    a, c = split(m, 2)
    h = sigmoid(z) * tanh(n + a) + (1 - sigmoid(z)) * c
    return h, m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--show-source", action="store_true")
    args = ap.parse_args(argv)
    torch.manual_seed(0)

    print(SlowFast.gradients())
    cell = SlowFast(I=1, H=args.hidden)
    head = nn.Linear(args.hidden, 1)
    if args.show_source:
        print(cell.source())
    opt = torch.optim.Adam([*cell.parameters(), *head.parameters()], lr=1e-2)
    T, B = 60, 32
    for step in range(args.steps + 1):
        t = torch.linspace(0, 12, T)[:, None] + 6 * torch.rand(1, B)
        x = (torch.sin(t) + 0.3 * torch.randn(T, B))[..., None]
        target = torch.cumsum(x, 0) / torch.arange(1, T + 1)[:, None, None]   # the running mean
        ys, _ = cell(x)
        loss = nn.functional.mse_loss(head(ys), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
