"""Where the time of a persistent split LSTM step goes on a GPU: a stand-alone Triton kernel shaped like the triton
backend's LSTM forward, timed in variants that change one thing at a time.

    python benchmarks/probe_step.py              # needs a CUDA GPU; one line a variant, printed as it finishes
    TRITON_INTERPRET=1 python benchmarks/probe_step.py --check   # the kernel's indexing, one step, on CPU

The kernel: B rows, H hidden units split over P = H / BN programs (program p owns units p*BN..p*BN+BN-1 and the
four gate rows of W for them), the input part of the gates precomputed (as the backend hoists it), h in two
slots that alternate, c in registers, one grid barrier a step (an int64 counter: release add, acquire spin, as the
backend's). Each variant is checked against a float64 torch loop, then timed with triton.testing.do_bench. What
varies: the four gates as four matmuls (as the backend) or one of 4*BN columns; the reduction tile BK; the
matmul's precision (ieee float32, tf32, bf16 operands with W stored in bf16); W loaded once and kept in registers
for all steps; the barrier left out (a wrong answer, but its cost); warps and pipelining stages.
"""
import argparse
import sys
import time

import torch
import triton
import triton.language as tl


@triton.jit
def _dot(a, w, acc, DOT: tl.constexpr):
    if DOT == "bf16":
        return tl.dot(a.to(tl.bfloat16), w.to(tl.bfloat16), acc)
    else:
        return tl.dot(a, w, acc, input_precision=DOT)


@triton.jit
def _matmul(src, w, rows, rmask, cols, acc, H: tl.constexpr, BK: tl.constexpr, DOT: tl.constexpr):
    """acc + h[rows, :] @ W[cols, :].T, a K loop of BK-wide tiles streamed from memory"""
    for k0 in range(0, H, BK):
        ck = k0 + tl.arange(0, BK)
        a = tl.load(src + rows[:, None] * H + ck[None, :], mask=rmask[:, None], other=0.0)
        wt = tl.load(w + cols[None, :] * H + ck[:, None])
        acc = _dot(a, wt, acc, DOT)
    return acc


@triton.jit
def lstm_steps(pre, w, hbuf, gates, out, sync, T, B, H: tl.constexpr, HP: tl.constexpr, BB: tl.constexpr,
               BN: tl.constexpr, BK: tl.constexpr, FUSED: tl.constexpr, RESIDENT: tl.constexpr,
               BARRIER: tl.constexpr, DOT: tl.constexpr):
    pb, pf, P = tl.program_id(0), tl.program_id(1), tl.num_programs(1)
    rows = pb * BB + tl.arange(0, BB)
    rmask = rows < B
    cu = pf * BN + tl.arange(0, BN)                                       # this program's units
    c4 = tl.arange(0, 4 * BN)
    cg = (c4 // BN) * H + pf * BN + c4 % BN                               # their four gates' rows of W
    c = tl.zeros((BB, BN), dtype=tl.float32)
    if RESIDENT:   # W's slice [HP, 4 BN] loaded once, kept for all steps
        kk = tl.arange(0, HP)
        wr = tl.load(w + cg[None, :] * H + kk[:, None], mask=(kk < H)[:, None], other=0.0)
    for i in range(T):
        src = hbuf + (i % 2) * B * H
        dst = hbuf + ((i + 1) % 2) * B * H
        pre_i = pre + tl.cast(i, tl.int64) * B * 4 * H
        if FUSED:    # one matmul of 4*BN columns
            acc = tl.load(pre_i + rows[:, None] * 4 * H + cg[None, :], mask=rmask[:, None], other=0.0)
            if RESIDENT:
                kk = tl.arange(0, HP)
                a = tl.load(src + rows[:, None] * H + kk[None, :], mask=rmask[:, None] & (kk < H)[None, :], other=0.0)
                acc = _dot(a, wr, acc, DOT)
            else:
                acc = _matmul(src, w, rows, rmask, cg, acc, H, BK, DOT)
            tl.store(gates + rows[:, None] * 4 * H + cg[None, :], acc, mask=rmask[:, None])
        else:        # four matmuls of BN columns, as the backend renders an LSTM
            for g in tl.static_range(4):
                cn = g * H + cu
                acc = tl.load(pre_i + rows[:, None] * 4 * H + cn[None, :], mask=rmask[:, None], other=0.0)
                acc = _matmul(src, w, rows, rmask, cn, acc, H, BK, DOT)
                tl.store(gates + rows[:, None] * 4 * H + cn[None, :], acc, mask=rmask[:, None])
        tl.debug_barrier()
        r = gates + rows[:, None] * 4 * H + cu[None, :]
        ig = tl.sigmoid(tl.load(r, mask=rmask[:, None], other=0.0))
        fg = tl.sigmoid(tl.load(r + H, mask=rmask[:, None], other=0.0))
        gg = 2.0 * tl.sigmoid(2.0 * tl.load(r + 2 * H, mask=rmask[:, None], other=0.0)) - 1.0
        og = tl.sigmoid(tl.load(r + 3 * H, mask=rmask[:, None], other=0.0))
        c = fg * c + ig * gg
        h = og * (2.0 * tl.sigmoid(2.0 * c) - 1.0)
        tl.store(dst + rows[:, None] * H + cu[None, :], h, mask=rmask[:, None])
        tl.store(out + tl.cast(i, tl.int64) * B * H + rows[:, None] * H + cu[None, :], h, mask=rmask[:, None])
        if BARRIER:
            tl.debug_barrier()
            tl.atomic_add(sync + pb, 1, sem="release", scope="gpu")
            goal = (tl.cast(i, tl.int64) + 1) * P
            seen = tl.atomic_add(sync + pb, 0, sem="acquire", scope="gpu")
            while seen < goal:
                seen = tl.atomic_add(sync + pb, 0, sem="acquire", scope="gpu")
            tl.debug_barrier()


def reference(pre, w, h0, T, B, H):
    h = h0.double()
    c = torch.zeros_like(h)
    outs = []
    for i in range(T):
        g = pre[i].double() + h @ w.double().t()
        ig, fg, gg, og = g.chunk(4, 1)
        c = fg.sigmoid() * c + ig.sigmoid() * gg.tanh()
        h = og.sigmoid() * c.tanh()
        outs.append(h)
    return torch.stack(outs)


def launch(pre, w, h0, T, B, H, BN=16, BK=16, fused=False, resident=False, barrier=True, dot="ieee", **meta):
    dev = pre.device
    HP = triton.next_power_of_2(H)
    hbuf = torch.stack([h0, torch.zeros_like(h0)])
    gates = torch.empty(B, 4 * H, device=dev)
    out = torch.empty(T, B, H, device=dev)
    sync = torch.zeros(triton.cdiv(B, 16), dtype=torch.int64, device=dev)
    grid = (triton.cdiv(B, 16), H // BN)
    if barrier and dev.type == "cuda":
        meta["launch_cooperative_grid"] = True
    lstm_steps[grid](pre, w, hbuf, gates, out, sync, T, B, H, HP, 16, BN, BK, fused, resident, barrier, dot, **meta)
    return out


VARIANTS = [   # (what, launch keywords)
    ("as the backend: 4 matmuls, BK=16, ieee", {}),
    ("  the same, no barrier", dict(barrier=False)),
    ("  the same, num_warps=8", dict(num_warps=8)),
    ("  the same, num_stages=1", dict(num_stages=1)),
    ("one matmul of 4 gates, BK=16, ieee", dict(fused=True)),
    ("one matmul, BK=64, ieee", dict(fused=True, BK=64)),
    ("4 matmuls, BK=16, tf32", dict(dot="tf32")),
    ("one matmul, BK=64, tf32", dict(fused=True, BK=64, dot="tf32")),
    ("one matmul, BK=128, tf32", dict(fused=True, BK=128, dot="tf32")),
    ("one matmul, BK=64, bf16 (W bf16)", dict(fused=True, BK=64, dot="bf16", bf16=True)),
    ("one matmul, BK=128, bf16 (W bf16)", dict(fused=True, BK=128, dot="bf16", bf16=True)),
    ("one matmul, BK=256, bf16 (W bf16)", dict(fused=True, BK=256, dot="bf16", bf16=True)),
    ("  the same, num_warps=8", dict(fused=True, BK=256, dot="bf16", bf16=True, num_warps=8)),
    ("  the same, no barrier", dict(fused=True, BK=256, dot="bf16", bf16=True, barrier=False)),
    ("W resident, bf16", dict(fused=True, resident=True, dot="bf16", bf16=True)),
    ("W resident, bf16, num_warps=8", dict(fused=True, resident=True, dot="bf16", bf16=True, num_warps=8)),
    ("W resident, bf16, no barrier", dict(fused=True, resident=True, dot="bf16", bf16=True, barrier=False)),
    ("4 matmuls, BK=64, bf16, num_warps=8", dict(BK=64, dot="bf16", bf16=True, num_warps=8)),
    ("BN=32 (half the programs), one matmul, BK=128, bf16", dict(BN=32, fused=True, BK=128, dot="bf16", bf16=True)),
    ("one matmul, BK=256, tf32", dict(fused=True, BK=256, dot="tf32")),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="one step of each variant under the interpreter")
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--H", type=int, default=768)
    args = ap.parse_args()
    check = args.check
    if not check and not torch.cuda.is_available():
        sys.exit("probe_step.py needs a CUDA GPU (or --check under TRITON_INTERPRET=1)")
    dev = torch.device("cpu" if check else "cuda")
    T, B, H = (1, 4, 256) if check else (args.T, args.B, args.H)
    torch.manual_seed(0)
    pre = torch.randn(T, B, 4 * H, device=dev)
    w = torch.randn(4 * H, H, device=dev) / H ** 0.5
    w16 = w.to(torch.bfloat16)
    h0 = torch.randn(B, H, device=dev)
    if not check:
        from triton.testing import do_bench
        print(f"GPU: {torch.cuda.get_device_name()}, triton {triton.__version__}, B={B} T={T} H={H}, "
              f"date {time.strftime('%Y-%m-%d %H:%M')}")
    print("| variant | max abs err | ms | us a step |")
    print("|---|---:|---:|---:|", flush=True)
    expected = reference(pre, w, h0, T, B, H)
    expected16 = reference(pre, w16.float(), h0, T, B, H)
    for what, kw in VARIANTS:
        kw = dict(kw)
        bf16 = kw.pop("bf16", False)
        if check:
            kw.pop("num_warps", None), kw.pop("num_stages", None)
            kw["barrier"] = False    # (the interpreter runs programs one after another: one step needs none)
        ww, ref = (w16, expected16) if bf16 else (w, expected)
        try:
            err = (launch(pre, ww, h0, T, B, H, **kw).double() - ref).abs().max().item()
            ms = float("nan") if check else do_bench(lambda: launch(pre, ww, h0, T, B, H, **kw), warmup=5, rep=40)
        except Exception as e:   # a variant that does not compile or launch: say so and go on
            print(f"| {what} | failed: {type(e).__name__}: {str(e).splitlines()[0][:160]} | | |", flush=True)
            continue
        print(f"| {what} | {err:.1e} | {ms:.2f} | {1000 * ms / T:.1f} |", flush=True)


if __name__ == "__main__":
    main()
