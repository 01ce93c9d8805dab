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

from bench_gpu import with_settings
from symcell.cells import GRU, LSTM

# (kind, B, T, H, LAUNCH, FLOAT32_DOT), most telling first: a run cut short still says what matters. (The sweeps
# in BENCHMARKS.md: the first at commit e548dda, over the kernels before the one-dot matmul; the second, this
# list, around the backward's operand-gradient loop, over the kernels of commit 2f89b10.)
VARIANTS = [
    ("lstm", 16, 1024, 768, {}, "tf32"),
    ("lstm", 16, 1024, 768, {"_BKG": 128}, "tf32"),
    ("lstm", 16, 1024, 768, {"_BKG": 256}, "tf32"),
    ("lstm", 16, 1024, 768, {"_BKG": 32}, "tf32"),
    ("lstm", 16, 1024, 768, {"num_stages": 1}, "tf32"),
    ("lstm", 16, 1024, 768, {"num_stages": 2}, "tf32"),
    ("lstm", 16, 1024, 768, {"num_stages": 4}, "tf32"),
    ("lstm", 16, 1024, 768, {"_BKG": 128, "num_stages": 2}, "tf32"),
    ("lstm", 16, 1024, 768, {"_BK": 64}, "tf32"),
    ("lstm", 16, 1024, 768, {"num_warps": 2}, "tf32"),
    ("lstm", 16, 1024, 768, {"num_warps": 8}, "tf32"),
    ("gru", 16, 1024, 768, {}, "tf32"),
    ("gru", 16, 1024, 768, {"_BKG": 128}, "tf32"),
    ("gru", 16, 1024, 768, {"_BKG": 256}, "tf32"),
    ("lstm", 64, 512, 256, {}, "tf32"),
    ("lstm", 64, 512, 256, {"_BKG": 128}, "tf32"),
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
        def measured():
            t0 = time.time()
            err = max(rel(a, b) for a, b in zip(grads(cell, x), expected))
            return (err, time.time() - t0, *timings(cell, x))
        try:
            err, compile_s, f, fb = with_settings(measured, LAUNCH=dict(launch), FLOAT32_DOT=dot)()
        except Exception as e:   # a variant that does not compile or launch: say so and go on
            print(f"| {kind} B={B} T={T} H={H} | {launch} | {dot} | failed: {type(e).__name__}: {str(e)[:200]} |||",
                  flush=True)
            continue
        print(f"| {kind} B={B} T={T} H={H} | {launch} | {dot} | {err:.1e} | {f:.2f} | {fb:.2f} | "
              f"{ref_ms[0]:.2f} / {ref_ms[1]:.2f} (first call {compile_s:.1f} s) |", flush=True)


def profile(kind="lstm", B=16, T=1024, H=768, dot="tf32"):
    """Where fwd+bwd's time goes: CUDA time by kernel (the scans, the GEMMs around them), torch.profiler."""
    from torch.profiler import ProfilerActivity, profile as prof
    cell, _, x = case(kind, B, T, H)

    def traced():
        for _ in range(2):
            cell(x)[0].sum().backward()
        torch.cuda.synchronize()
        with prof(activities=[ProfilerActivity.CUDA]) as p:
            for _ in range(3):
                cell(x)[0].sum().backward()
            torch.cuda.synchronize()
        return p
    p = with_settings(traced, FLOAT32_DOT=dot)()
    print(f"\nprofile: {kind} B={B} T={T} H={H} {dot}, 3 fwd+bwd calls")
    for key in ("device_time_total", "cuda_time_total"):   # the name changed across torch versions
        try:
            print(p.key_averages().table(sort_by=key, row_limit=12, max_name_column_width=60))
            break
        except Exception as e:   # noqa: BLE001 - try the other name
            print(f"sort_by={key}: {e}")


if __name__ == "__main__":
    if torch.cuda.is_available():
        profile()
    main()
