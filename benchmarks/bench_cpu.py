"""CPU benchmarks of the cpp backend against its peers, side by side in one process with the same weights.

    python benchmarks/bench_cpu.py                 # everything (over 5 minutes on 2 cores; tables as they finish)
    python benchmarks/bench_cpu.py --only lstm     # one section: lstm, stacked, gru, lltm, modern, build, memory,
                                                   # gflops, denormal, hoist, split, bf16

Every time is the median of interleaved repeats (each repeat runs every contender once, in turn), so a noisy
neighbour slows all of them alike; the ratios are what to read. Forward runs under torch.no_grad();
forward+backward is one forward and a backward of out.sum() (plus the final states' sums).
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
from torch import nn

import symcell
import eager
from eager import saved_bytes
from measure import cpu_model, timed
from symcell.cells import GRU, LLTM, LSTM


def race(contenders, repeats, warmup=2):
    """contenders: {name: (forward_fn, forward_backward_fn)} -> {name: (fwd_ms, fwdbwd_ms)} medians."""
    for _ in range(warmup):
        for f, fb in contenders.values():
            f()
            fb()
    times = {n: ([], []) for n in contenders}
    for _ in range(repeats):
        for n, (f, fb) in contenders.items():
            times[n][0].append(timed(f))
            times[n][1].append(timed(fb))
    return {n: (statistics.median(a) * 1e3, statistics.median(b) * 1e3) for n, (a, b) in times.items()}


def contenders_for(kind, B, T, I, H):
    """symcell (cpp), the torch module (oneDNN) where there is one, and the eager loop, with the same weights."""
    torch.manual_seed(0)
    x = torch.randn(T, B, I, requires_grad=True)
    if kind == "lltm":
        cell = LLTM(I, H, backend="cpp")
        ref = None
    else:
        cell = (LSTM if kind == "lstm" else GRU)(I, H, backend="cpp")
        ref = (nn.LSTM if kind == "lstm" else nn.GRU)(I, H)
        ref.load_state_dict(cell.state_dict())
    params = list(cell.parameters())
    zeros = lambda: torch.zeros(B, H)  # noqa: E731
    loop = {"lstm": lambda: eager.lstm(x, zeros(), zeros(), *params),
            "gru": lambda: eager.gru(x, zeros(), *params),
            "lltm": lambda: eager.lltm(x, zeros(), zeros(), *params)}[kind]

    def pair(run):
        def f():
            with torch.no_grad():
                run()

        def fb():
            out, state = run()
            (out.sum() + sum(s.sum() for s in state)).backward()
        return f, fb

    c = Contenders({"symcell-cpp": pair(lambda: cell(x))})
    if ref is not None:
        c[f"nn.{kind.upper()}"] = pair(lambda: ref(x) if kind == "lstm" else (lambda o: (o[0], (o[1],)))(ref(x)))
    c["eager loop"] = pair(loop)   # shares the symcell cell's parameters
    c.modules = [cell] + ([ref] if ref is not None else [])
    return c


class Contenders(dict):
    """name -> (forward, forward_backward); .modules: the modules whose weights they use"""


def table(title, results, base, lines):
    lines.append(f"\n{title}")
    lines.append(f"| contender | forward ms | fwd+bwd ms | forward vs {base} | fwd+bwd vs {base} |")
    lines.append("|---|---:|---:|---:|---:|")
    bf, bfb = results[base]
    for n, (f, fb) in results.items():
        lines.append(f"| {n} | {f:.2f} | {fb:.2f} | {f / bf:.2f} | {fb / bfb:.2f} |")


# issue 13's sizes: streaming inference (B=1), small, mid and large batches, and a small cell
RNN_SIZES = [(1, 100, 256, 256), (4, 100, 256, 256), (32, 100, 256, 256), (64, 100, 256, 256), (16, 50, 32, 128)]


def section_rnn(kind, lines, repeats):
    base, summary = f"nn.{kind.upper()}", []
    for B, T, I, H in RNN_SIZES:
        r = race(contenders_for(kind, B, T, I, H), repeats if B * H <= 4096 else max(5, repeats // 2))
        table(f"{kind.upper()} B={B} T={T} I={I} H={H}", r, base, lines)
        summary.append(f"| B={B} T={T} I={I} H={H} | {r['symcell-cpp'][0] / r[base][0]:.2f} | "
                       f"{r['symcell-cpp'][1] / r[base][1]:.2f} |")
    lines += [f"\nsymcell-cpp / {base}", "| size | forward | fwd+bwd |", "|---|---:|---:|", *summary]


def section_hoist(lines, repeats):
    """The cpp backend's choice of running a step matmul's input term before the loop (sc::hoist): the LSTM with
    it forced off and on (SYMCELL_HOIST, read every call, so the repeats interleave) against nn.LSTM."""
    lines.append("\nLSTM T=100 I=H=256, the input term in the loop (hoist 0) or before it (hoist 1); ms and / nn.LSTM")
    lines.append("| B | hoist 0 forward | hoist 1 forward | hoist 0 fwd+bwd | hoist 1 fwd+bwd | chosen |")
    lines.append("|---:|---:|---:|---:|---:|---|")
    threads = torch.get_num_threads()
    for B in (1, 4, 8, 16, 32, 64):
        c = contenders_for("lstm", B, 100, 256, 256)
        sc, ref = c["symcell-cpp"], c["nn.LSTM"]

        r = race({"0": forced(sc, "SYMCELL_HOIST", "0"), "1": forced(sc, "SYMCELL_HOIST", "1"), "nn": ref},
                 max(5, repeats // 2))
        cell = lambda k, i: f"{r[k][i]:.2f} ({r[k][i] / r['nn'][i]:.2f})"  # noqa: E731
        lines.append(f"| {B} | {cell('0', 0)} | {cell('1', 0)} | {cell('0', 1)} | {cell('1', 1)} | "
                     f"{1 if B < 16 * threads else 0} |")


def forced(fns, variable, value):
    """a contender's (forward, forward_backward) with a code path forced by a variable sc.h reads every call"""
    def run(fn):
        os.environ[variable] = value
        try:
            fn()
        finally:
            os.environ.pop(variable)
    return (lambda: run(fns[0]), lambda: run(fns[1]))


# (H = I, B, T): weights of 2 MiB (H=256), 4.5 (384), 8 (512), 12.5 (640), 18 (768) and 32 (1024), at few and
# many rows a thread
SPLIT_SIZES = [(256, 8, 100), (256, 32, 100), (384, 16, 100), (512, 8, 100), (512, 16, 100), (640, 8, 100),
               (768, 16, 50), (1024, 8, 50), (1024, 32, 20), (1024, 64, 10)]


def section_split(lines, repeats):
    """The cpp backend's choice of sharing each step across threads (sc::scan_columns: a GEMM's panels and a
    region's rows, a barrier each) or giving each thread all steps of its own rows: the LSTM with each forced
    (SYMCELL_SCAN_COLUMNS) against nn.LSTM. Only with 2 threads or more, and B >= 4 threads (else one way only)."""
    from symcell.backends.cpp import scan_columns
    lines.append("\nLSTM, each thread its rows (columns 0) or each step shared (columns 1); ms and / nn.LSTM")
    lines.append("| H = I | B | T | weights MiB | columns 0 forward | columns 1 forward | columns 0 fwd+bwd | "
                 "columns 1 fwd+bwd | 1 / 0 forward | 1 / 0 fwd+bwd | chosen |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for H, B, T in SPLIT_SIZES:
        c = contenders_for("lstm", B, T, H, H)
        sc, ref = c["symcell-cpp"], c["nn.LSTM"]
        r = race({"0": forced(sc, "SYMCELL_SCAN_COLUMNS", "0"), "1": forced(sc, "SYMCELL_SCAN_COLUMNS", "1"),
                  "nn": ref}, max(5, repeats // 2))
        cell = lambda k, i: f"{r[k][i]:.2f} ({r[k][i] / r['nn'][i]:.2f})"  # noqa: E731
        weights = 8 * H * H * 4
        lines.append(f"| {H} | {B} | {T} | {weights / 2**20:.1f} | {cell('0', 0)} | {cell('1', 0)} | "
                     f"{cell('0', 1)} | {cell('1', 1)} | {r['1'][0] / r['0'][0]:.2f} | {r['1'][1] / r['0'][1]:.2f} | "
                     f"{int(scan_columns(weights))} |")


def section_bf16(lines, repeats):
    """A bfloat16 LSTM: symcell's (state and sums in float32) with its GEMMs' products in bfloat16 (sc.h's
    products16, where oneDNN has bfloat16 kernels for this CPU) or in float32 (SYMCELL_BF16_PRODUCTS=0), against
    nn.LSTM in bfloat16 with the same weights."""
    lines.append("\nLSTM in bfloat16, products in float32 (0) or bfloat16 (1); ms and / nn.LSTM in bfloat16")
    lines.append("| B | T | I | H | 0 forward | 1 forward | 0 fwd+bwd | 1 fwd+bwd |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for B, T, I, H in [(1, 100, 256, 256), (4, 100, 256, 256), (32, 100, 256, 256), (64, 100, 256, 256),
                       (16, 50, 32, 128), (8, 50, 1024, 1024)]:
        c = contenders_for("lstm", B, T, I, H)
        for m in c.modules:
            m.bfloat16()
        x = torch.randn(T, B, I, dtype=torch.bfloat16, requires_grad=True)
        cell, ref = c.modules

        def pair(module):
            def f():
                with torch.no_grad():
                    module(x)

            def fb():
                out, (h, cc) = module(x)
                (out.float().sum() + h.float().sum() + cc.float().sum()).backward()
            return f, fb
        r = race({"0": forced(pair(cell), "SYMCELL_BF16_PRODUCTS", "0"),
                  "1": forced(pair(cell), "SYMCELL_BF16_PRODUCTS", "1"), "nn": pair(ref)}, max(5, repeats // 2))
        cell_ = lambda k, i: f"{r[k][i]:.2f} ({r[k][i] / r['nn'][i]:.2f})"  # noqa: E731
        lines.append(f"| {B} | {T} | {I} | {H} | {cell_('0', 0)} | {cell_('1', 0)} | {cell_('0', 1)} | {cell_('1', 1)} |")


def section_stacked(lines, repeats):
    """The LSTM benchmark at num_layers=2, bidirectional: four fused scans against oneDNN's stacked LSTM; and
    the same on a PackedSequence of random lengths (nn.LSTM skips the padding, symcell masks it in its loops)."""
    from torch.nn.utils.rnn import pack_padded_sequence
    for B, T, I, H in [(32, 100, 256, 256), (16, 50, 32, 128)]:
        torch.manual_seed(0)
        cell = LSTM(I, H, num_layers=2, bidirectional=True, backend="cpp")
        ref = nn.LSTM(I, H, num_layers=2, bidirectional=True)
        ref.load_state_dict(cell.state_dict())
        x = torch.randn(T, B, I, requires_grad=True)
        lengths = torch.randint(T // 2, T + 1, (B,))
        lengths[0] = T

        def pair(m, packed):
            def run():
                return m(pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x)

            def f():
                with torch.no_grad():
                    run()

            def fb():
                out, (h, c) = run()
                ((out.data if packed else out).sum() + h.sum() + c.sum()).backward()
            return f, fb
        c = {"symcell-cpp": pair(cell, False), "nn.LSTM": pair(ref, False),
             "symcell-cpp packed": pair(cell, True), "nn.LSTM packed": pair(ref, True)}
        r = race(c, repeats if B == 16 else max(5, repeats // 2))
        table(f"LSTM num_layers=2 bidirectional B={B} T={T} I={I} H={H} (packed: lengths uniform in "
              f"[{T // 2}, {T}], mean {lengths.float().mean():.0f})", r, "nn.LSTM", lines)
        lines.append(f"packed: symcell-cpp / nn.LSTM packed = {r['symcell-cpp packed'][0] / r['nn.LSTM packed'][0]:.2f} "
                     f"forward, {r['symcell-cpp packed'][1] / r['nn.LSTM packed'][1]:.2f} fwd+bwd")


def section_lltm(lines, repeats):
    B, T, F, S = 16, 100, 32, 128
    r = race(contenders_for("lltm", B, T, F, S), repeats)
    table(f"LLTM B={B} T={T} F={F} S={S}", r, "eager loop", lines)


def section_modern(lines, repeats):
    """Issue 14's cells against their eager loops (symcell.cells.*_reference), B=32 T=100 I=H=256: the sLSTM with
    4 heads (block-diagonal recurrent weights, a maximum for its stabiliser) and the LayerNorm-LSTM (means and
    variances over each row's features)."""
    from symcell.cells import SLSTM, LayerNormLSTM, layernorm_lstm_reference, slstm_reference
    B, T, I, H = 32, 100, 256, 256
    for name, make, step, n_states in [("sLSTM 4 heads", lambda: SLSTM(I, H, num_heads=4, backend="cpp"),
                                        slstm_reference, 4),
                                       ("LayerNorm-LSTM", lambda: LayerNormLSTM(I, H, backend="cpp"),
                                        layernorm_lstm_reference, 2)]:
        torch.manual_seed(0)
        cell, x = make(), torch.randn(T, B, I, requires_grad=True)
        params = list(cell.parameters())
        zeros = [torch.zeros(B, H) for _ in range(n_states)]

        def pair(run):
            def f():
                with torch.no_grad():
                    run()

            def fb():
                out, state = run()
                (out.sum() + sum(s.sum() for s in state)).backward()
            return f, fb
        r = race({"symcell-cpp": pair(lambda: cell(x)),
                  "eager loop": pair(lambda: eager.loop(step, x, zeros, params))}, max(5, repeats // 2))
        table(f"{name} B={B} T={T} I={I} H={H}", r, "eager loop", lines)


def section_gflops(lines, repeats):
    """Achieved GFLOP/s of the LSTM fwd+bwd (3x the forward's 2*T*B*(I+H)*4H) against a large sgemm."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    B, T, I, H = 32, 100, 256, 256
    c = contenders_for("lstm", B, T, I, H)
    c["sgemm 2048^3"] = (lambda: torch.mm(a, b), lambda: torch.mm(a, b))
    r = race(c, max(5, repeats // 2))
    flops_fb = 3 * 2 * T * B * (I + H) * 4 * H
    lines.append(f"\nAchieved GFLOP/s, LSTM fwd+bwd at B={B} T={T} I=H={H} ({flops_fb / 1e9:.2f} GFLOP)")
    lines.append("| contender | GFLOP/s | share of sgemm |")
    lines.append("|---|---:|---:|")
    peak = 2 * 2048 ** 3 / (r["sgemm 2048^3"][0] / 1e3) / 1e9
    for n in ("symcell-cpp", "nn.LSTM"):
        g = flops_fb / (r[n][1] / 1e3) / 1e9
        lines.append(f"| {n} | {g:.0f} | {g / peak:.0%} |")
    lines.append(f"| sgemm 2048x2048x2048 | {peak:.0f} | 100% |")


def section_memory(lines):
    lines.append("\nWhat training keeps for backward (bytes per step and batch row, float32, parameters and the "
                 "input excluded)")
    lines.append("| cell | size | symcell-cpp | nn module | eager loop |")
    lines.append("|---|---|---:|---:|---:|")
    for kind in ("lstm", "gru"):
        for B, T, I, H in [(32, 100, 256, 256), (16, 50, 32, 128)]:
            torch.manual_seed(0)
            xin = torch.randn(T, B, I, requires_grad=True)
            cell = (LSTM if kind == "lstm" else GRU)(I, H, backend="cpp")
            ref = (nn.LSTM if kind == "lstm" else nn.GRU)(I, H)
            zeros = lambda: torch.zeros(B, H)  # noqa: E731
            loop = (lambda: eager.lstm(xin, zeros(), zeros(), *cell.parameters())) if kind == "lstm" else \
                (lambda: eager.gru(xin, zeros(), *cell.parameters()))
            per = T * B
            s, r, e = (saved_bytes(lambda: cell(xin), [xin, *cell.parameters()]) / per,
                       saved_bytes(lambda: ref(xin), [xin, *ref.parameters()]) / per,
                       saved_bytes(loop, [xin, *cell.parameters()]) / per)
            lines.append(f"| {kind.upper()} | B={B} T={T} I={I} H={H} | {s:.0f} ({s / 4 / H:.1f} H floats) | "
                         f"{r:.0f} ({r / 4 / H:.1f} H floats) | {e:.0f} ({e / 4 / H:.1f} H floats) |")


def section_denormal(lines, repeats):
    """Saturated cells: the input gate shut hard (sigmoid(-100) ~ 4e-44 is itself subnormal) and a small forget
    gate, so c decays into subnormal numbers within ~25 steps. Slowdown = time saturated / time normal."""
    B, T, I, H = 16, 100, 32, 128
    both = {}
    for saturated in (False, True):   # both weight sets in one race, so their repeats interleave
        c = contenders_for("lstm", B, T, I, H)
        for m in c.modules if saturated else ():
            with torch.no_grad():
                for name, p in m.named_parameters():
                    if name.startswith("bias"):
                        p.zero_()
                        p[0:H] = -50.0           # i: each of the two biases, -100 in all
                        p[H:2 * H] = -1.5        # f: sigmoid(-3) ~ 0.05
        both.update({(n, saturated): fns for n, fns in c.items()})
    r = race(both, max(5, repeats // 2))
    lines.append(f"\nSubnormal numbers: LSTM B={B} T={T} I={I} H={H}, saturated gates vs normal weights "
                 "(symcell's kernels flush subnormals to zero; some CPUs pay 10-100x for them, others nothing)")
    lines.append("| contender | normal fwd+bwd ms | saturated fwd+bwd ms | slowdown |")
    lines.append("|---|---:|---:|---:|")
    for n in dict.fromkeys(k for k, _ in both):
        a, b = r[(n, False)][1], r[(n, True)][1]
        lines.append(f"| {n} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")


_BUILD_SNIPPET = textwrap.dedent("""
    import time, torch
    t0 = time.perf_counter()
    import symcell
    from symcell import sigmoid, tanh, softplus, split
    @symcell.define(inputs={"x": "I"}, state={"h": "H", "c": "H"},
                    params={"W": ("4*H", "I"), "U": ("4*H", "H"), "b": ("4*H",)})
    def Fresh%(tag)s(x, h, c, W, U, b):
        i, f, g, o = split(W @ x + U @ h + b, 4)
        c = sigmoid(f) * c + sigmoid(i) * tanh(g) * %(tag)s.0
        h = sigmoid(o) * tanh(softplus(c))
        return h, c
    cell = Fresh%(tag)s(I=16, H=32, backend="cpp")
    x = torch.randn(5, 4, 16, requires_grad=True)
    t1 = time.perf_counter()
    cell(x)[0].sum().backward()
    t2 = time.perf_counter()
    cell.double()(x.double())[0].sum().backward()   # (float64's library: a dtype a library, built at its first call)
    print(t2 - t1, t1 - t0, time.perf_counter() - t2)
""")


def section_build(lines):
    """Cold build of a cell nobody built before (empty cache), then its warm load in a new process, then another
    new cell once the first build's precompiled sc.h is ready (every build after the first in a cache)."""
    tag = str(int(time.time() * 1000) % 100000)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, SYMCELL_CACHE_DIR=cache)
        code = _BUILD_SNIPPET % {"tag": tag}
        # (run in the cache's folder: `python -c` puts its folder first on sys.path, and one run from a checkout
        # imported that checkout's symcell whatever PYTHONPATH named)
        cold = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                              cwd=cache)
        warm = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                              cwd=cache)
        deadline = time.time() + 300
        while not list(Path(cache).glob("pch-*/complete")) and time.time() < deadline:
            time.sleep(0.5)
        pch = subprocess.run([sys.executable, "-c", _BUILD_SNIPPET % {"tag": tag + "1"}], env=env,
                             capture_output=True, text=True, check=True, cwd=cache)
    (cold_s, cold_import, cold64), (warm_s, warm_import, warm64), (pch_s, pch_import, pch64) = (
        map(float, r.stdout.split()) for r in (cold, warm, pch))
    lines.append("\nBuild (a new cell's forward and backward in float32, then in float64: a library each)")
    lines.append("| | first call, s | import + define, s | then its first float64 call, s |")
    lines.append("|---|---:|---:|---:|")
    lines.append(f"| cold: empty cache, builds | {cold_s:.2f} | {cold_import:.2f} | {cold64:.2f} |")
    lines.append(f"| warm: new process, loads the cached library | {warm_s:.2f} | {warm_import:.2f} | {warm64:.2f} |")
    lines.append(f"| another new cell, with sc.h precompiled | {pch_s:.2f} | {pch_import:.2f} | {pch64:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["lstm", "stacked", "gru", "lltm", "modern", "build", "memory", "gflops",
                                       "denormal", "hoist", "split", "bf16"])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    lines = [f"machine: {cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, symcell {symcell.__version__}, "
             f"date {time.strftime('%Y-%m-%d %H:%M')}"]
    run = [args.only] if args.only else ["lstm", "stacked", "gru", "lltm", "modern", "gflops", "denormal", "memory",
                                         "build"]
    print("\n".join(lines), flush=True)
    shown = len(lines)
    for name in run:
        print(f"... {name}", file=sys.stderr, flush=True)
        if name in ("lstm", "gru"):
            section_rnn(name, lines, args.repeats)
        elif name == "stacked":
            section_stacked(lines, args.repeats)
        elif name == "lltm":
            section_lltm(lines, args.repeats)
        elif name == "modern":
            section_modern(lines, args.repeats)
        elif name == "hoist":
            section_hoist(lines, args.repeats)
        elif name == "split":
            section_split(lines, args.repeats)
        elif name == "bf16":
            section_bf16(lines, args.repeats)
        elif name == "gflops":
            section_gflops(lines, args.repeats)
        elif name == "memory":
            section_memory(lines)
        elif name == "denormal":
            section_denormal(lines, args.repeats)
        else:
            section_build(lines)
        print("\n".join(lines[shown:]), flush=True)   # (each section's table when it ends: a run stopped early
        shown = len(lines)                              # keeps what it measured)


if __name__ == "__main__":
    main()
