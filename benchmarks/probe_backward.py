"""Where the time of the triton backend's backward step goes: the LSTM's generated backward, edited one thing at a
time, each variant timed on its own (the backward alone, from one forward's saved values).

    python benchmarks/probe_backward.py                 # needs a CUDA GPU; one line a variant as it finishes
    python benchmarks/probe_backward.py --forward       # the same for the forward step's fixed costs
    TRITON_INTERPRET=1 python benchmarks/probe_backward.py --check   # the edits apply and keep the answer, on CPU

The source is the backend's own (`LSTM(...).source("cuda")`), so the probe follows the renderer; each edit is a
text substitution (or the renderer's own code with a setting changed: REDUCTION_SHARES, TRANSPOSED_GRADS; or a
launch setting: RESIDENT_WEIGHTS), and a variant whose edit finds nothing to change says so rather than time the
unedited kernel. Variants that keep the answer are checked against the unedited backward; the ones that drop
work (the barrier, the matmul) give a wrong answer and say what that work costs (--check: that the edit changed
the answer, so it reached the code that runs). By default the backward is a bfloat16 module's (as bench_gpu.py
--issue runs it); --float32 makes it a float32 module's.
"""
import argparse
import re
import sys
import time

import torch

from bench_gpu import kernel_rendered_with, kernel_with_shares
import symcell.backends.triton as tb
from symcell.cells import LSTM


def _no_grid_barrier(src, cell=None):
    return src.replace("while _seen < _goal:", "while _seen < 0:")


def _no_split_dots(src, acc):
    """the resident slices' dots into `acc` left out (RESIDENT_WEIGHTS: one line a chunk, the carry's parts
    split by the reader or by the writer)"""
    return re.sub(rf"\n\s*{acc}(_s\d+, {acc}_s\d+)? = _(split|pair)_dots?\(.*", "", src)


def _no_matmul(src, cell=None):
    """the d_h matmul left out: its loop over d_gates' columns (weights streamed), its resident chunks, or (run
    transposed) the partial products and their sums"""
    src = re.sub(r"for _n0 in range\(0, \d+, _BKG\):", "for _n0 in range(0, 0, _BKG):", src)
    src = re.sub(r"\n\s*tl\.store\(_pw \+ .*", "", src).replace("for _p0 in range(0, _P, 16):",
                                                                  "for _p0 in range(0, 0, 16):")
    return _no_split_dots(src, "_acc")


def _shared(src, cell):
    """the renderer's own backward with d_h's reduction shared over two programs a tile (render.REDUCTION_SHARES,
    split.SplitReduction: twice the programs, one barrier a step more, atomic adds)"""
    return kernel_with_shares(cell, torch.device("cuda"), 2)[1].source


def _not_transposed(src, cell):
    """the renderer's own backward with d_h from all of d_gates against the program's resident columns of W_hh
    (render.TRANSPOSED_GRADS off)"""
    return kernel_rendered_with(cell, torch.device("cuda"), TRANSPOSED_GRADS=False)[1].source


def _loads_at_step_start(src, cell):
    """the renderer's own backward with the region's read-only values loaded at the step's start, after the sums
    of the step before, instead of a step ahead (render.LOADS_A_STEP_AHEAD off)"""
    return kernel_rendered_with(cell, torch.device("cuda"), LOADS_A_STEP_AHEAD=False)[1].source


def _split_by_readers(src, cell):
    """(the forward) the renderer's own kernels with h split into its bfloat16 parts by each program that reads it
    for the matmul, not once by the one that writes it (render.SPLIT_AT_WRITE off)"""
    return kernel_rendered_with(cell, torch.device("cuda"), SPLIT_AT_WRITE=False)[1].source


def _partials_joined(src, cell):
    """the renderer's own backward with the transposed partials of the d_gates tiles joined into one operand, not a
    product a tile (render.PARTIALS_BY_TILE off)"""
    return kernel_rendered_with(cell, torch.device("cuda"), PARTIALS_BY_TILE=False)[1].source


def _chunks_of_128(src, cell):
    """the renderer's own kernels with the resident slices in chunks of 128 columns, not 64 (render.RESIDENT_CHUNK:
    at H=768 ptxas counts 26 and 24 block barriers a step, forward and backward, for 40 and 36, the same number of
    instructions within 6%, no spills, 108 KiB of shared memory; benchmarks/sass_step.py)"""
    return kernel_rendered_with(cell, torch.device("cuda"), RESIDENT_CHUNK=128)[1].source


def _one_sum(src, cell):
    """(the forward) the renderer's own kernels with the resident matmul's products in one sum, not four
    (render.DOT_SUMS=1: each warp's 192 tensor-core instructions a step two chains of 96 dependent ones, not eight of
    24; benchmarks/sass_step.py)"""
    return kernel_rendered_with(cell, torch.device("cuda"), DOT_SUMS=1)[1].source


def _no_gates_matmul(src, cell=None):
    """(the forward) the step's matmul over h left out (streamed or resident): the gates are the input terms alone"""
    return _no_split_dots(re.sub(r"for _k0 in range\(0, \d+, _BK\):", "for _k0 in range(0, 0, _BK):", src), "_acc4")


def _streamed(src, cell=None):
    """(a setting, not an edit) the weights streamed from L2 every step: RESIDENT_WEIGHTS off"""
    return src


def _no_gates_reload(src, cell=None):
    """(the forward, weights streamed) the pointwise region's loads of the gates the matmul stored, zeros instead:
    at most what the resident kernel's accumulator read in registers saves (render.StepKernel.fused)"""
    return re.sub(r"tl\.load\(_r_gates \+ \(\d+ \+ _cj\)\[None, :\], mask=_m2, other=0\.0\)",
                  "tl.zeros((_BB, _BN), dtype=tl.float32)", src)


# a variant's answer: True the same as the rendered one's (checked), False any, CHANGES another (checked by --check:
# the edit reached the code that runs; barriers are launch boundaries under the interpreter, so not those)
CHANGES = "changes"

FORWARD_VARIANTS = [   # (--forward: the forward step's fixed costs, BENCHMARKS.md's model)
    ("as rendered (slices on chip, the gates from registers)", [], True),
    ("no grid barrier", [_no_grid_barrier], False),
    ("no matmul over h", [_no_gates_matmul], CHANGES),
    ("no matmul, no barrier", [_no_gates_matmul, _no_grid_barrier], CHANGES),
    ("h split by each reader, not by its writer (SPLIT_AT_WRITE off)", [_split_by_readers], True),
    ("slices in chunks of 128 columns, not 64 (RESIDENT_CHUNK=128)", [_chunks_of_128], False),
    ("products in one sum, not four (DOT_SUMS=1)", [_one_sum], False),
    ("weights streamed from L2 every step (RESIDENT_WEIGHTS off)", [_streamed], True),
    ("weights streamed, gates not read back from memory (zeros)", [_streamed, _no_gates_reload], CHANGES),
]

VARIANTS = [   # (name, edits, the answer: True, False or CHANGES)
    ("as rendered", [], True),
    ("weights streamed from L2 every step (RESIDENT_WEIGHTS off)", [_streamed], True),
    # (without lengths the step's += into d_gates, d_c and d_h are stores and d_h, d_c are not zeroed: the probe's
    # earlier "plain stores" and "no zeroing" variants are the rendering now)
    ("no grid barrier", [_no_grid_barrier], False),
    ("no d_h matmul", [_no_matmul], CHANGES),
    ("no d_h matmul, no barrier", [_no_matmul, _no_grid_barrier], CHANGES),
    ("d_h matmul's reduction shared by 2 programs a tile", [_shared], True),
    ("d_h matmul not transposed (each program reads all of d_gates)", [_not_transposed], True),
    ("gates, c, cotangent loaded at the step's start, not a step ahead", [_loads_at_step_start], True),
    ("partials of the d_gates tiles joined into one operand (PARTIALS_BY_TILE off)", [_partials_joined], True),
    ("slices in chunks of 128 columns, not 64 (RESIDENT_CHUNK=128)", [_chunks_of_128], False),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="small sizes, check the edits only (interpreter)")
    ap.add_argument("--dot", default="tf32", help="FLOAT32_DOT, with --float32")
    ap.add_argument("--float32", action="store_true", help="a float32 module's backward; by default a bfloat16 "
                    "module's (its values, its weights read as bfloat16, LOW_PRECISION_DOT, BFLOAT16_GEMMS)")
    ap.add_argument("--forward", action="store_true", help="the forward (training: residuals saved) instead")
    args = ap.parse_args()
    dev = "cpu" if args.check else "cuda"
    B, T, H = (4, 3, 32) if args.check else (16, 1024, 768)
    if not args.check and not torch.cuda.is_available():
        sys.exit("probe_backward.py needs a CUDA GPU (or --check under TRITON_INTERPRET=1)")
    tb.FLOAT32_DOT = args.dot
    torch.manual_seed(0)
    cell = LSTM(H, H, backend="triton")
    base = cell.source("cuda")
    params = [p.detach().to(dev) for p in (cell.weight_ih_l0, cell.weight_hh_l0, cell.bias_ih_l0, cell.bias_hh_l0)]
    x = torch.randn(T, B, H, device=dev)
    if not args.float32:   # as the scan of a bfloat16 module runs: its values in float32, computing for bfloat16
        params, x = [p.bfloat16().float() for p in params], x.bfloat16().float()
        tb.COMPUTING_FOR.set(torch.bfloat16)
    inits = [torch.zeros(B, H, device=dev), torch.zeros(B, H, device=dev)]
    g = torch.Generator(dev).manual_seed(1)
    d_ys = [torch.randn(T, B, H, device=dev, generator=g)]
    d_finals = [torch.zeros(B, H, device=dev), torch.zeros(B, H, device=dev)]
    scope = tb.load("LSTM", base)
    h_seq, _, _, gates, c_seq = scope["forward"]([x], inits, params, True)

    def run(s):
        if args.forward:
            return s["forward"]([x], inits, params, True)
        return s["backward"](d_ys, d_finals, [x], inits, params, [h_seq], [gates, c_seq])

    expected = run(scope)
    if not args.check:
        from triton.testing import do_bench
        print(f"GPU: {torch.cuda.get_device_name()}, LSTM {'forward' if args.forward else 'backward'} B={B} T={T} "
              f"H={H}, "
              f"{f'float32, {args.dot}' if args.float32 else 'a bfloat16 module'}, "
              f"date {time.strftime('%Y-%m-%d %H:%M')}")
    print("| variant | max abs err vs as rendered | ms | us a step |\n|---|---:|---:|---:|", flush=True)
    for name, edits, exact in FORWARD_VARIANTS if args.forward else VARIANTS:
        src, missing = base, None
        tb.RESIDENT_WEIGHTS = _streamed not in edits
        for e in (e for e in edits if e is not _streamed):
            edited = e(src, cell)
            if edited == src:   # an edit that finds nothing to change: that work is not in this source
                missing = e.__name__
                break
            src = edited
        if missing:
            print(f"| {name} | ({missing} finds nothing to edit) | - | - |", flush=True)
            continue
        s = tb.load("LSTM", src)
        err = max((a - b).abs().max().item() for a, b in zip(run(s), expected))
        if args.check:
            # (a changed answer may be NaN: a variant without the partials' stores sums what the buffer held)
            ok = err < 1e-5 if exact is True else not err <= 1e-3 if exact == CHANGES else True
            why = "EDIT CHANGED THE ANSWER" if exact is True else "EDIT DID NOT REACH THE CODE THAT RUNS"
            print(f"| {name} | {err:.1e} | - | - |{'' if ok else '  ' + why}", flush=True)
            if not ok:
                sys.exit(1)
            continue
        t = do_bench(lambda: run(s), warmup=5, rep=100)
        print(f"| {name} | {err:.1e} | {t:.2f} | {1000 * t / T:.1f} |", flush=True)


if __name__ == "__main__":
    main()
