"""Second derivatives through a fused symcell scan, checked against the same LSTM as an eager torch loop.

    python examples/second_order.py                 # CPU, B=8 T=20 I=16 H=32, float64
    python examples/second_order.py --steps 50 --backend reference

1. Training with a gradient penalty (as WGAN-GP does): loss = task loss + |d task / d input|^2, which needs the
   gradient of a gradient (create_graph=True); the penalty's parameter gradients are compared with the eager
   loop's.
2. Hessian-vector products of the loss with respect to the parameters (torch.autograd.functional.hvp, the
   double-backward trick) and forward-over-reverse with torch.func (jvp of grad), against the eager loop.
3. Forward mode: torch.func.jvp of the whole sequence.
"""
import argparse
import time

import torch
from torch.func import functional_call

from symcell.cells import LSTM, lstm_reference


def eager_lstm(params, x, H):
    """the same LSTM as a Python loop over time of its plain torch step"""
    h = c = x.new_zeros(x.shape[1], H)
    out = []
    for t in range(x.shape[0]):
        h, c = lstm_reference(x[t], h, c, *params)
        out.append(h)
    return torch.stack(out)


def max_rel(a, b):
    return max(((u - v).abs().max() / v.abs().max().clamp_min(1e-30)).item() for u, v in zip(a, b))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=20)
    ap.add_argument("--input", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20, help="gradient-penalty training steps")
    ap.add_argument("--backend", default="auto")
    args = ap.parse_args(argv)
    if min(args.batch, args.seq, args.input, args.hidden, args.steps) < 1:
        ap.error("--batch, --seq, --input, --hidden and --steps must be at least 1")
    torch.manual_seed(0)
    B, T, I, H = args.batch, args.seq, args.input, args.hidden
    model = LSTM(I, H, backend=args.backend).double()
    names = [n for n, _ in model.named_parameters()]
    x = torch.randn(T, B, I, dtype=torch.float64)
    target = torch.randn(T, B, H, dtype=torch.float64)

    def loss_of(out):
        return ((out - target) ** 2).mean()

    # 1. gradient-penalty training, the first step checked against the eager loop
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    t0 = time.perf_counter()
    for step in range(args.steps):
        xi = x.clone().requires_grad_()
        out, _ = model(xi)
        task = loss_of(out)
        (g,) = torch.autograd.grad(task, xi, create_graph=True)
        loss = task + 10.0 * (g ** 2).sum()
        opt.zero_grad()
        loss.backward()
        if step == 0:
            params = [p.detach().clone().requires_grad_() for p in model.parameters()]
            xe = x.clone().requires_grad_()
            task_e = loss_of(eager_lstm(params, xe, H))
            (ge,) = torch.autograd.grad(task_e, xe, create_graph=True)
            (task_e + 10.0 * (ge ** 2).sum()).backward()
            err = max_rel([p.grad for p in model.parameters()], [q.grad for q in params])
            print(f"gradient penalty: parameter gradients vs the eager loop, max relative difference {err:.1e}")
            first = loss.item()
        opt.step()
    print(f"trained {args.steps} steps with the penalty in {time.perf_counter() - t0:.2f} s: loss {first:.4f} -> "
          f"{loss.item():.4f}")

    # 2. Hessian-vector products with respect to the parameters
    params = tuple(p.detach() for p in model.parameters())
    v = tuple(torch.randn_like(p) for p in params)

    def f(*ps):
        return loss_of(functional_call(model, dict(zip(names, ps)), (x,))[0])

    def f_eager(*ps):
        return loss_of(eager_lstm(ps, x, H))
    _, hv = torch.autograd.functional.hvp(f, params, v)
    _, hv_e = torch.autograd.functional.hvp(f_eager, params, v)
    print(f"Hessian-vector product (double backward): max relative difference {max_rel(hv, hv_e):.1e}")
    _, hv_fr = torch.func.jvp(torch.func.grad(lambda ps: f(*ps)), (params,), (v,))
    print(f"Hessian-vector product (forward over reverse, torch.func): max relative difference "
          f"{max_rel(hv_fr, hv_e):.1e}")

    # 3. forward mode: the tangent of the whole output sequence
    dx = torch.randn_like(x)
    _, tangent = torch.func.jvp(lambda x_: model(x_)[0], (x,), (dx,))
    _, tangent_e = torch.func.jvp(lambda x_: eager_lstm(params, x_, H), (x,), (dx,))
    print(f"forward mode (torch.func.jvp): max relative difference {max_rel([tangent], [tangent_e]):.1e}")


if __name__ == "__main__":
    main()
