"""Second derivatives and forward mode on CPU: symcell's cpp LSTM against its own first-order costs and against
nn.LSTM's double backward, side by side in one process with the same weights.

    python benchmarks/bench_second_order.py                  # LSTM B=32 T=100 I=H=256, float32
    python benchmarks/bench_second_order.py --batch 16 --seq 50 --size 128 --repeats 5

Contenders (each timed as a whole, from the input to the result):
    forward          out = lstm(x) under no_grad
    fwd+bwd          out = lstm(x); out.sum().backward() (gradients of x and every parameter)
    HVP params       the Hessian-vector product of L = sum(out^2)/2 wrt the parameters by double backward:
                     g = grad(L, params, create_graph=True); grad(<g, v>, params)
    HVP input        the same wrt the input x
    JVP input        forward mode: torch.func.jvp of x -> out, with a tangent of x
    JVP all          forward mode with tangents of x and of every parameter
Every time is the median of interleaved repeats (each repeat runs every contender once, in turn), so a noisy
neighbour slows all of them alike; the ratios are what to read.
"""
import argparse
import datetime
import statistics
import time

import torch
from torch import nn
from torch.func import functional_call, jvp

from measure import cpu_model, timed
from symcell.cells import LSTM


def race(contenders, repeats, warmup=2):
    """{name: fn} -> {name: median ms}, the repeats interleaved"""
    for _ in range(warmup):
        for f in contenders.values():
            f()
    times = {n: [] for n in contenders}
    for _ in range(repeats):
        for n, f in contenders.items():
            times[n].append(timed(f))
    return {n: statistics.median(t) * 1e3 for n, t in times.items()}


def contenders(module, x, names):
    params = tuple(p.detach() for p in module.parameters())
    v = tuple(torch.randn_like(p) for p in params)
    vx = torch.randn_like(x)

    def loss(x_, ps):
        out, _ = functional_call(module, dict(zip(names, ps)), (x_,))
        return (out ** 2).sum() / 2

    def forward():
        with torch.no_grad():
            module(x)

    def fwd_bwd():
        xg = x.detach().requires_grad_()
        out, _ = module(xg)
        out.sum().backward()

    def hvp_params():
        ps = tuple(p.detach().requires_grad_() for p in params)
        g = torch.autograd.grad(loss(x, ps), ps, create_graph=True)
        torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), ps)

    def hvp_input():
        xg = x.detach().requires_grad_()
        (g,) = torch.autograd.grad(loss(xg, params), xg, create_graph=True)
        torch.autograd.grad((g * vx).sum(), xg)

    def jvp_input():
        jvp(lambda x_: functional_call(module, dict(zip(names, params)), (x_,))[0], (x,), (vx,))

    def jvp_all():
        jvp(lambda x_, ps: functional_call(module, dict(zip(names, ps)), (x_,))[0], (x, params), (vx, v))

    return {"forward": forward, "fwd+bwd": fwd_bwd, "HVP params": hvp_params, "HVP input": hvp_input,
            "JVP input": jvp_input, "JVP all": jvp_all}


def supported(fn):
    try:
        fn()
        return None
    except (RuntimeError, NotImplementedError) as e:
        return str(e).splitlines()[0][:120]


def gemm_rate(M, K, N, repeats=300):
    """GFLOP/s of one thread's (M, K) @ (K, N) float32 GEMM, the shape of one thread's step of a recurrence"""
    a, w, c = torch.randn(M, K), torch.randn(K, N), torch.empty(M, N)
    for _ in range(20):
        torch.mm(a, w, out=c)
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, w, out=c)
    return 2 * M * K * N * repeats / (time.perf_counter() - t0) / 1e9


def jvp_floor(B, H):
    """A JVP forms W x' and W h' besides the forward's W x and W h: twice its GEMM FLOPs. The most a kernel can
    win back is running them as one GEMM of twice the rows per thread ([h; h'] stacked): the floor of JVP /
    forward, for a GEMM-bound forward, is 2 * rate(M) / rate(2M) at M = the rows of one thread's step."""
    threads = torch.get_num_threads()
    M = max(1, B // threads)
    torch.set_num_threads(1)
    try:
        one, two = gemm_rate(M, H, 4 * H), gemm_rate(2 * M, H, 4 * H)
    finally:
        torch.set_num_threads(threads)
    return M, one, two, 2 * one / two


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=100)
    ap.add_argument("--size", type=int, default=256, help="input and hidden size")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    B, T, H = args.batch, args.seq, args.size
    torch.manual_seed(0)
    ours = LSTM(H, H, backend="cpp")
    theirs = nn.LSTM(H, H)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, H)
    names = [n for n, _ in ours.named_parameters()]
    mine, nn_ = contenders(ours, x, names), contenders(theirs, x, names)
    race_of = {f"symcell {n}": f for n, f in mine.items()}
    skipped = {}
    for n, f in nn_.items():
        why = supported(f)
        if why is None:
            race_of[f"nn.LSTM {n}"] = f
        else:
            skipped[f"nn.LSTM {n}"] = why
    r = race(race_of, args.repeats)
    print(f"## Second order: LSTM B={B} T={T} I=H={H}, float32, CPU\n")
    print(f"`python benchmarks/bench_second_order.py --batch {B} --seq {T} --size {H} --repeats {args.repeats}`, "
          f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{datetime.date.today()}; medians of {args.repeats} interleaved repeats\n")
    print("| contender | ms | vs symcell forward | vs symcell fwd+bwd | vs nn.LSTM, same |")
    print("|---|---:|---:|---:|---:|")
    for n, ms in r.items():
        kind = n.split(" ", 1)[1]
        peer = r.get(f"nn.LSTM {kind}")
        vs_nn = f"{ms / peer:.2f}" if peer and n.startswith("symcell") else ""
        print(f"| {n} | {ms:.1f} | {ms / r['symcell forward']:.2f} | {ms / r['symcell fwd+bwd']:.2f} | {vs_nn} |")
    for n, why in skipped.items():
        print(f"| {n} | raises: {why} | | | |")
    print(f"\nsymcell HVP params / symcell fwd+bwd = {r['symcell HVP params'] / r['symcell fwd+bwd']:.2f} "
          f"(target <= 3); HVP input / fwd+bwd = {r['symcell HVP input'] / r['symcell fwd+bwd']:.2f}")
    if "nn.LSTM HVP params" in r:
        print(f"symcell HVP params / nn.LSTM HVP params = {r['symcell HVP params'] / r['nn.LSTM HVP params']:.2f} "
              f"(target < 1); input: {r['symcell HVP input'] / r['nn.LSTM HVP input']:.2f}")
    print(f"symcell JVP input / symcell forward = {r['symcell JVP input'] / r['symcell forward']:.2f} (target <= 1.5);"
          f" JVP all / forward = {r['symcell JVP all'] / r['symcell forward']:.2f}")
    M, one, two, floor = jvp_floor(B, H)
    print(f"\nThe floor of JVP / forward on this CPU (twice the GEMM FLOPs, at best as one GEMM of twice the rows): "
          f"one thread's ({M} x {H}) @ ({H} x {4 * H}) sgemm runs at {one:.1f} GFLOP/s, ({2 * M} x {H}) at {two:.1f}: "
          f"a JVP costs at least {floor:.2f}x a GEMM-bound forward")


if __name__ == "__main__":
    main()
