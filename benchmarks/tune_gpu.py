"""Sweep the triton kernels' launch parameters on a GPU: symcell.backends.triton.LAUNCH ("_BK", "_BKG" the
matmuls' reduction tiles, "num_warps", "num_stages") and FLOAT32_DOT, for LSTM and GRU against cuDNN side by side.

    python benchmarks/tune_gpu.py            # needs a CUDA GPU; one line a variant, printed as it finishes

Each variant is first checked against cuDNN with TF32 off (max relative error of the output and of every
gradient), then timed with triton.testing.do_bench (median, CUDA events): forward under no_grad and
forward+backward of out.sum(). cuDNN is timed before and after the variants of a case (clock drift shows).
"""
import sys
import time

import torch
from torch import nn

from symcell.backends import triton as triton_backend
from symcell.cells import GRU, LSTM

# (kind, B, T, H, LAUNCH, FLOAT32_DOT), most telling first: a run cut short still says what matters. (The sweep
# of 2026-12-04 in BENCHMARKS.md is this file at commit e548dda, over the kernels before the one-dot matmul.)
VARIANTS = [
    ("lstm", 16, 1024, 768, {}, "ieee"),
    ("lstm", 16, 1024, 768, {}, "tf32"),
    ("lstm", 16, 1024, 768, {"_BK": 64}, "tf32"),
    ("lstm", 16, 1024, 768, {"_BKG": 128}, "tf32"),
    ("lstm", 16, 1024, 768, {"_BKG": 32}, "tf32"),
    ("lstm", 16, 1024, 768, {"num_warps": 8}, "tf32"),
    ("lstm", 16, 1024, 768, {}, "tf32x3"),
    ("gru", 16, 1024, 768, {}, "ieee"),
    ("gru", 16, 1024, 768, {}, "tf32"),
    ("lstm", 64, 512, 256, {}, "ieee"),
    ("lstm", 64, 512, 256, {}, "tf32"),
]


def ms(fn):
    from triton.testing import do_bench
    return do_bench(fn, warmup=10, rep=60)


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def case(kind, B, T, H):
    torch.manual_seed(0)
    dev = torch.device("cuda")
    cell = (LSTM if kind == "lstm" else GRU)(H, H, backend="triton").to(dev)
    ref = (nn.LSTM if kind == "lstm" else nn.GRU)(H, H).to(dev)
    ref.load_state_dict(cell.state_dict())
    x = torch.randn(T, B, H, device=dev, requires_grad=True)
    return cell, ref, x


def grads(m, x):
    out = m(x)[0]
    cot = torch.randn(out.shape, device=out.device, generator=torch.Generator(out.device).manual_seed(1))
    g = torch.autograd.grad((out * cot).sum(), [x, *m.parameters()])
    return [out.detach(), *g]


def timings(m, x):
    def fwd():
        with torch.no_grad():
            m(x)

    def fb():
        m(x)[0].sum().backward()
    return ms(fwd), ms(fb)


def main():
    if not torch.cuda.is_available():
        sys.exit("tune_gpu.py needs a CUDA GPU")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, date {time.strftime('%Y-%m-%d %H:%M')}")
    print("| case | LAUNCH | dot | max rel err vs cuDNN | forward ms | fwd+bwd ms | cuDNN fwd / fwd+bwd ms |")
    print("|---|---|---|---:|---:|---:|---|", flush=True)
    last, ref_ms, expected = None, None, None
    for kind, B, T, H, launch, dot in VARIANTS:
        if (kind, B, T, H) != last:
            last = (kind, B, T, H)
            cell, ref, x = case(kind, B, T, H)
            expected = grads(ref, x)
            ref_ms = timings(ref, x)
        triton_backend.LAUNCH, triton_backend.FLOAT32_DOT = dict(launch), dot
        try:
            t0 = time.time()
            err = max(rel(a, b) for a, b in zip(grads(cell, x), expected))
            compile_s = time.time() - t0
            f, fb = timings(cell, x)
        except Exception as e:   # a variant that does not compile or launch: say so and go on
            print(f"| {kind} B={B} T={T} H={H} | {launch} | {dot} | failed: {type(e).__name__}: {str(e)[:200]} |||",
                  flush=True)
            continue
        finally:
            triton_backend.LAUNCH, triton_backend.FLOAT32_DOT = {}, "ieee"
        print(f"| {kind} B={B} T={T} H={H} | {launch} | {dot} | {err:.1e} | {f:.2f} | {fb:.2f} | "
              f"{ref_ms[0]:.2f} / {ref_ms[1]:.2f} (first call {compile_s:.1f} s) |", flush=True)


if __name__ == "__main__":
    main()
