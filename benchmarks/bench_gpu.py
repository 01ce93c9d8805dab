"""GPU benchmarks of the triton backend against cuDNN and the eager loop, side by side in one process.

    python benchmarks/bench_gpu.py                  # needs a CUDA GPU; prints markdown tables
    python benchmarks/bench_gpu.py --quick          # smaller sizes, for a smoke test
    python benchmarks/bench_gpu.py --issue          # issue 15's case only: LSTM, GRU and LLTM (a cell written in
                                                    # symcell's language) in bfloat16, and their time per FLOP

Times come from triton.testing.do_bench (CUDA events, median of repeats after warm-up), forward under
torch.no_grad() and forward+backward of out.sum(). Contenders are timed in turn, several rounds, and the median
of the rounds is reported, so that clock and thermal drift hit all of them alike. Memory is the peak allocated
during one forward+backward, beyond what was allocated before it.
"""
import argparse
import importlib
import statistics
import sys
import time

import torch
from torch import nn

import eager
from symcell import registry
from symcell.cells import GRU, LLTM, LSTM


def bench(fn, rounds=3):
    from triton.testing import do_bench
    return statistics.median(do_bench(fn, warmup=25, rep=100) for _ in range(rounds))


def peak_mb(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2 ** 20


def with_settings(fn, **settings):
    """fn with symcell.backends.triton's module settings changed while it runs (forward and backward); what was
    set before is set again after"""
    def run():
        from symcell.backends import triton as triton_backend
        before = {k: getattr(triton_backend, k) for k in settings}
        for k, v in settings.items():
            setattr(triton_backend, k, v)
        try:
            return fn()
        finally:
            for k, v in before.items():
                setattr(triton_backend, k, v)
    return run


def contenders(kind, B, T, I, H, dtype, with_eager, with_p1=True, extras=True):
    torch.manual_seed(0)
    dev = torch.device("cuda")
    x = torch.randn(T, B, I, device=dev, dtype=dtype, requires_grad=True)
    if kind == "lltm":
        cell, ref = LLTM(I, H, backend="triton").to(dev), None
    else:
        cell = (LSTM if kind == "lstm" else GRU)(I, H, backend="triton").to(dev)
        ref = (nn.LSTM if kind == "lstm" else nn.GRU)(I, H).to(dev)
        ref.load_state_dict(cell.state_dict())
        ref = ref.to(dtype)
    cell = cell.to(dtype)
    ps = list(cell.parameters())
    zeros = lambda: torch.zeros(B, H, device=dev, dtype=dtype)  # noqa: E731
    loops = {"lstm": lambda: eager.lstm(x, zeros(), zeros(), *ps)[0],
             "gru": lambda: eager.gru(x, zeros(), *ps)[0],
             "lltm": lambda: eager.lltm(x, zeros(), zeros(), *ps)[0]}
    c = {"symcell-triton": lambda: cell(x)[0]}
    if ref is not None:
        c[f"cuDNN nn.{kind.upper()}"] = lambda: ref(x)[0]
    if with_eager:
        c["eager loop"] = loops[kind]

    def pair(run):
        def f():
            with torch.no_grad():
                run()

        def fb():
            run().float().sum().backward()
        return f, fb
    out = {n: pair(r) for n, r in c.items()}
    if not extras:
        return out
    if kind != "lltm" and dtype != torch.float32:
        # a 16-bit model multiplies in tf32 (LOW_PRECISION_DOT); the same in true float32
        out["symcell-triton, ieee"] = tuple(with_settings(f, LOW_PRECISION_DOT=None) for f in out["symcell-triton"])
    if kind != "lltm" and dtype == torch.bfloat16:
        # its GEMMs outside the kernels on bfloat16 operands (BFLOAT16_GEMMS), its W_hh read by the kernels as
        # bfloat16 (LOW_PRECISION_WEIGHTS): each in turn as float32, what it buys
        out["symcell-triton, float32 GEMMs"] = tuple(with_settings(f, BFLOAT16_GEMMS=False)
                                                     for f in out["symcell-triton"])
        out["symcell-triton, float32 weights"] = tuple(with_settings(f, LOW_PRECISION_WEIGHTS=False)
                                                       for f in out["symcell-triton"])
        # each program's slices of W_hh read from L2 every step instead of kept on chip (RESIDENT_WEIGHTS)
        out["symcell-triton, weights streamed"] = tuple(with_settings(f, RESIDENT_WEIGHTS=False)
                                                        for f in out["symcell-triton"])
        # the backward's d_h reduction shared by 2 programs a tile (render.REDUCTION_SHARES, off by default)
        key, shared = kernel_with_shares(cell, dev, 2)
        out["symcell-triton, d_h shared by 2"] = tuple(with_kernel(f, key, shared) for f in out["symcell-triton"])
        # the backward's d_h from all of d_gates against each program's resident columns of W_hh, not transposed
        key, gathered = kernel_rendered_with(cell, dev, TRANSPOSED_GRADS=False)
        out["symcell-triton, d_h not transposed"] = tuple(with_kernel(f, key, gathered) for f in out["symcell-triton"])
    if kind != "lltm" and dtype == torch.float32:
        # the kernels' matmuls on tensor cores: tf32 (cuDNN's default for float32 RNNs) and tf32x3; the same
        # kernels at one program a batch tile (what the split and its barriers buy)
        out["symcell-triton, tf32"] = tuple(with_settings(f, FLOAT32_DOT="tf32") for f in out["symcell-triton"])
        out["symcell-triton, tf32x3"] = tuple(with_settings(f, FLOAT32_DOT="tf32x3") for f in out["symcell-triton"])
        if with_p1:
            out["symcell-triton, P=1"] = tuple(with_settings(f, PROGRAMS_AT_MOST=1) for f in out["symcell-triton"])
    return out


def kernel_rendered_with(cell, dev, **settings):
    """(key, the cell's kernel rendered with these render.py settings), the default one left in place"""
    render = importlib.import_module("symcell.backends.triton.render")
    key = cell._bindings[0].kernel_key(dev)   # (builds the default kernel)
    default, before = registry._KERNELS.pop(key), {k: getattr(render, k) for k in settings}
    for k, v in settings.items():
        setattr(render, k, v)
    try:
        return key, registry.kernel_for(key)
    finally:
        for k, v in before.items():
            setattr(render, k, v)
        registry._KERNELS[key] = default


def kernel_with_shares(cell, dev, shares):
    """(key, the cell's kernel rendered with render.REDUCTION_SHARES = shares)"""
    return kernel_rendered_with(cell, dev, REDUCTION_SHARES=shares)


def with_kernel(fn, key, kernel):
    """fn with `kernel` as the one the registry gives for `key` while it runs (its backward keeps it: the autograd
    node holds the kernel its forward ran)"""
    def run():
        before = registry._KERNELS[key]
        registry._KERNELS[key] = kernel
        try:
            return fn()
        finally:
            registry._KERNELS[key] = before
    return run


def race(c, rounds):
    out = {n: ([], []) for n in c}
    for _ in range(rounds):
        for n, (f, fb) in c.items():
            out[n][0].append(bench(f, 1))
            out[n][1].append(bench(fb, 1))
    mem = {n: peak_mb(fb) for n, (_, fb) in c.items()}
    return {n: (statistics.median(a), statistics.median(b), mem[n]) for n, (a, b) in out.items()}


def table(title, r, base):
    lines = [f"\n{title}",
             f"| contender | forward ms | fwd+bwd ms | fwd+bwd vs {base} | peak fwd+bwd MiB |",
             "|---|---:|---:|---:|---:|"]
    for n, (f, fb, m) in r.items():
        lines.append(f"| {n} | {f:.3f} | {fb:.3f} | {fb / r[base][1]:.2f} | {m:.1f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--issue", action="store_true", help="issue 15's case only (bfloat16, B=16 T=1024 H=768)")
    ap.add_argument("--shares", type=int, default=None, help="render.REDUCTION_SHARES for the kernels (rendered "
                    "once, so for the whole run): the backward's d_h reduction shared by that many programs a tile")
    args = ap.parse_args()
    if args.shares is not None:
        importlib.import_module("symcell.backends.triton.render").REDUCTION_SHARES = args.shares
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU")
    say(f"GPU: {torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).multi_processor_count} SMs), "
        f"torch {torch.__version__}, date {time.strftime('%Y-%m-%d %H:%M')}"
        + (f", REDUCTION_SHARES={args.shares}" if args.shares is not None else ""))
    if args.issue:
        return per_flop(args.rounds)
    big, small = ((16, 1024, 768, 768), (64, 512, 256, 256)) if not args.quick else ((16, 64, 64, 64), (32, 32, 32, 32))
    # the issue's case first (a run cut short by its time limit still reports it), each table printed when done;
    # the P = 1 contender (no split) only at the small size, where one program a batch tile runs in seconds
    cases = [(kind, size, dtype) for size in (big, small) for dtype in (torch.bfloat16, torch.float32, torch.float16)
             for kind in ("lstm", "gru")]
    for kind, (B, T, I, H), dtype in cases:
        name = f"{kind.upper()} B={B} T={T} I=H={H} {str(dtype).split('.')[-1]}"
        try:
            c = contenders(kind, B, T, I, H, dtype, with_eager=(dtype == torch.float32 and T <= 512),
                           with_p1=(B, T, I, H) == small)
            r = race(c, args.rounds)
        except (TypeError, RuntimeError) as e:   # e.g. a dtype the backend does not support yet
            say(f"\n{name}: not measured ({type(e).__name__}: {str(e)[:300]})")
            continue
        say(table(name, r, f"cuDNN nn.{kind.upper()}"))
    B, T, F, S = (16, 100, 32, 128)
    r = race(contenders("lltm", B, T, F, S, torch.float32, with_eager=True), args.rounds)
    say(table(f"LLTM B={B} T={T} F={F} S={S} float32", r, "eager loop"))


# the in-loop matmul's gate rows per hidden unit: its FLOPs are proportional (I = H, so the input GEMM's too)
GATES = {"lstm": 4, "gru": 3, "lltm": 3}


def per_flop(rounds, B=16, T=1024, H=768):
    """Issue 15's case: LSTM and GRU in bfloat16 against cuDNN, and every cell's time per FLOP against the
    LSTM's (the matmuls' FLOPs, 2 * gates * H * (I + H) a row a step forward, twice that backward)"""
    fb = {}
    for kind in ("lstm", "gru", "lltm"):   # (the LSTM with its contenders: what each setting buys)
        r = race(contenders(kind, B, T, H, H, torch.bfloat16, with_eager=False, extras=kind == "lstm"), rounds)
        if kind != "lltm":
            say(table(f"{kind.upper()} B={B} T={T} I=H={H} bfloat16", r, f"cuDNN nn.{kind.upper()}"))
        fb[kind] = r["symcell-triton"][1]
    gflop = {kind: 3 * 2 * GATES[kind] * H * 2 * H * B * T / 1e9 for kind in fb}
    say("\n| cell | gate rows a unit | symcell-triton fwd+bwd ms | GFLOP | ms per GFLOP vs LSTM |\n"
        "|---|---:|---:|---:|---:|")
    for kind, ms in fb.items():
        ratio = (ms / gflop[kind]) / (fb["lstm"] / gflop["lstm"])
        say(f"| {kind.upper()} | {GATES[kind]} | {ms:.2f} | {gflop[kind]:.0f} | {ratio:.2f} |")


def say(text):
    print(text, flush=True)


if __name__ == "__main__":
    main()
