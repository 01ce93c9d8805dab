"""The forward's resident matmul alone, two ways, counted in machine code without a GPU (as sass_step.py counts
the generated kernels): what a program of 4 warps does each step of the LSTM's forward at H=768, B=16 (the 16 x 64
gates of its 16 units = h (16 x 768, float32, as its two bfloat16 parts) @ its slice of W_hh (768 x 64, bfloat16,
loaded once, on chip), in chunks of 64 columns), then stores the gates.

- "warps over columns" is the renderer's way: each tl.dot is 16 x 64, and Triton gives each warp 16 of the 64
  columns, so each warp reads all of h (both parts) from shared memory, four times over for the program.
- "warps over chunks" (not built in the renderer): a 3-d tl.dot of 4 chunks at once, [4, 16, 64] x [4, 64, 64],
  whose warps Triton lays over the chunks: each warp reads a quarter of h and of the slice, and the 4 partial
  results are summed across warps at the end (tl.sum over the first axis: through shared memory).

    python benchmarks/sass_split_k.py [--arch 90]

Both kernels load h's parts from global memory each step, as the generated forward does.
"""
import argparse
import collections
import os
import subprocess
import sys
import tempfile

sys.path[:0] = [os.path.dirname(__file__)]

import triton_aot  # noqa: E402 (first: it leaves Triton's interpreter off)
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from sass_step import NVDISASM, ldsm_bytes, longest_chain, time_loop  # noqa: E402


@triton.jit
def _by_columns(Hi, Lo, W, G, T):
    r, c = tl.arange(0, 64)[:, None], tl.arange(0, 64)[None, :]
    m = tl.arange(0, 16)[:, None]
    w0 = tl.load(W + (0 + r) * 64 + c)
    w1 = tl.load(W + (64 + r) * 64 + c)
    w2 = tl.load(W + (128 + r) * 64 + c)
    w3 = tl.load(W + (192 + r) * 64 + c)
    w4 = tl.load(W + (256 + r) * 64 + c)
    w5 = tl.load(W + (320 + r) * 64 + c)
    w6 = tl.load(W + (384 + r) * 64 + c)
    w7 = tl.load(W + (448 + r) * 64 + c)
    w8 = tl.load(W + (512 + r) * 64 + c)
    w9 = tl.load(W + (576 + r) * 64 + c)
    w10 = tl.load(W + (640 + r) * 64 + c)
    w11 = tl.load(W + (704 + r) * 64 + c)
    for t in range(T):
        h = Hi + t * 12288 + m * 768 + c
        lo = Lo + t * 12288 + m * 768 + c
        s0 = tl.zeros((16, 64), dtype=tl.float32)   # (four independent sums, as render.DOT_SUMS)
        s1 = tl.zeros((16, 64), dtype=tl.float32)
        s2 = tl.zeros((16, 64), dtype=tl.float32)
        s3 = tl.zeros((16, 64), dtype=tl.float32)
        s0 = tl.dot(tl.load(h + 0), w0, s0)
        s2 = tl.dot(tl.load(lo + 0), w0, s2)
        s1 = tl.dot(tl.load(h + 64), w1, s1)
        s3 = tl.dot(tl.load(lo + 64), w1, s3)
        s0 = tl.dot(tl.load(h + 128), w2, s0)
        s2 = tl.dot(tl.load(lo + 128), w2, s2)
        s1 = tl.dot(tl.load(h + 192), w3, s1)
        s3 = tl.dot(tl.load(lo + 192), w3, s3)
        s0 = tl.dot(tl.load(h + 256), w4, s0)
        s2 = tl.dot(tl.load(lo + 256), w4, s2)
        s1 = tl.dot(tl.load(h + 320), w5, s1)
        s3 = tl.dot(tl.load(lo + 320), w5, s3)
        s0 = tl.dot(tl.load(h + 384), w6, s0)
        s2 = tl.dot(tl.load(lo + 384), w6, s2)
        s1 = tl.dot(tl.load(h + 448), w7, s1)
        s3 = tl.dot(tl.load(lo + 448), w7, s3)
        s0 = tl.dot(tl.load(h + 512), w8, s0)
        s2 = tl.dot(tl.load(lo + 512), w8, s2)
        s1 = tl.dot(tl.load(h + 576), w9, s1)
        s3 = tl.dot(tl.load(lo + 576), w9, s3)
        s0 = tl.dot(tl.load(h + 640), w10, s0)
        s2 = tl.dot(tl.load(lo + 640), w10, s2)
        s1 = tl.dot(tl.load(h + 704), w11, s1)
        s3 = tl.dot(tl.load(lo + 704), w11, s3)
        tl.store(G + t * 1024 + m * 64 + c, (s0 + s1) + (s2 + s3))


@triton.jit
def _by_chunks(Hi, Lo, W, G, T):
    q, r, c = tl.arange(0, 4)[:, None, None], tl.arange(0, 64)[None, :, None], tl.arange(0, 64)[None, None, :]
    m = tl.arange(0, 16)[None, :, None]
    w0 = tl.load(W + (q * 64 + r) * 64 + c)
    w1 = tl.load(W + (256 + q * 64 + r) * 64 + c)
    w2 = tl.load(W + (512 + q * 64 + r) * 64 + c)
    for t in range(T):
        h = Hi + t * 12288 + m * 768 + q * 64 + c   # chunks g, g + 1, g + 2, g + 3: one a warp
        lo = Lo + t * 12288 + m * 768 + q * 64 + c
        s_hi = tl.dot(tl.load(h), w0, tl.zeros((4, 16, 64), dtype=tl.float32))
        s_lo = tl.dot(tl.load(lo), w0, tl.zeros((4, 16, 64), dtype=tl.float32))
        s_hi = tl.dot(tl.load(h + 256), w1, s_hi)
        s_lo = tl.dot(tl.load(lo + 256), w1, s_lo)
        s_hi = tl.dot(tl.load(h + 512), w2, s_hi)
        s_lo = tl.dot(tl.load(lo + 512), w2, s_lo)
        tl.store(G + t * 1024 + tl.arange(0, 16)[:, None] * 64 + tl.arange(0, 64)[None, :],
                 tl.sum(s_hi + s_lo, axis=0))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=int, default=90)
    args = p.parse_args(argv)
    sig = {"Hi": "*bf16", "Lo": "*bf16", "W": "*bf16", "G": "*fp32", "T": "i32"}
    attrs = {(i,): [["tt.divisibility", 16]] for i in range(4)}
    print(f"sm_{args.arch}: a step of h (16 x 768, two bfloat16 parts) @ a resident 768 x 64 slice, 4 warps")
    print(f"{'':20} {'regs':>5} {'smem':>7} {'a step':>7} {'chain':>6} {'LDSM KB':>8}  most frequent (a warp, a step)")
    for name, fn in (("warps over columns", _by_columns), ("warps over chunks", _by_chunks)):
        k = triton.compile(ASTSource(fn, sig, {}, attrs), target=GPUTarget("cuda", args.arch, 32),
                           options={"num_warps": 4})
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "kernel.cubin")
            with open(path, "wb") as f:
                f.write(k.asm["cubin"])
            sass = subprocess.run([NVDISASM, "-c", path], capture_output=True, text=True, check=True).stdout
            regs, _ = triton_aot.resources(k, folder)
        loop = time_loop(sass)
        ops = collections.Counter(op.split(".")[0] for _, op, _ in loop)
        top = " ".join(f"{op}:{n}" for op, n in ops.most_common(8))
        print(f"{name:20} {regs:>5} {k.metadata.shared:>7} {len(loop):>7} {longest_chain(loop):>6} "
              f"{ldsm_bytes(loop) / 1024:>8.1f}  {top}")


if __name__ == "__main__":
    main()
