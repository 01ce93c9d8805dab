"""What one step of a resident kernel issues, from its machine code, without a GPU: the kernel compiled ahead of
time as the JIT compiles it for a bfloat16 module at B <= 16 (benchmarks/triton_aot.py; pointers 16-byte aligned,
as torch allocates them), disassembled with the nvdisasm of the Triton wheel, and the instructions of its time
loop (the longest backward branch) counted by opcode.

    python benchmarks/sass_step.py                               # LSTM, GRU, LLTM at 768 for sm_90
    python benchmarks/sass_step.py --cells LSTM --arch 80 --set SPLIT_AT_WRITE=False

A program runs 4 warps, one on each of an SM's four schedulers, and each warp runs every instruction of the step
(its share of each tile): a scheduler issues at most one instruction a cycle, so a step takes at least its count
of cycles (BENCHMARKS.md's model). Also: "chain", the longest chain of tensor-core instructions a warp issues
each on the one before's result (each waits for the one before to finish), and "LDSM KB", what a warp's
ldmatrix instructions read from shared memory a step (the SM's four warps share its 128 bytes a cycle).
`--set NAME=VALUE` sets a renderer's setting (render.py) first, to compare.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

sys.path[:0] = [os.path.dirname(__file__), os.path.join(os.path.dirname(__file__), "..", "tests")]

import triton_aot  # noqa: E402 (first: it leaves Triton's interpreter off)
import importlib  # noqa: E402

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from symcell.backends.triton.render import num_warps  # noqa: E402
from zoo import CASES  # noqa: E402

NVDISASM = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
INSTRUCTION = re.compile(r"/\*([0-9a-f]+)\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")
LABEL = re.compile(r"^(\.L_x_\d+):")


def time_loop(sass):
    """[(address, opcode)] of the longest loop (a branch back to a label before it): the time loop"""
    code, labels, address = [], {}, 0
    for line in sass.splitlines():
        m = LABEL.match(line.strip())
        if m:
            labels[m.group(1)] = address
            continue
        m = INSTRUCTION.search(line)
        if m:
            address = int(m.group(1), 16)
            code.append((address, m.group(2), m.group(3)))
    loops = []
    for a, op, operands in code:
        target = re.search(r"`\((\.L_x_\d+)\)", operands)
        if op == "BRA" and target and labels.get(target.group(1), a + 1) < a:
            loops.append((labels[target.group(1)], a))
    start, end = max(loops, key=lambda p: p[1] - p[0])
    return [(a, op, operands) for a, op, operands in code if start <= a <= end]


def longest_chain(loop):
    """the most tensor-core instructions (HMMA) in one chain, each accumulating onto the one before it (its C
    operand the registers the one before wrote, nothing else writing them between), in the loop's order: each
    waits for the one before it to finish"""
    depth, longest = {}, 0   # register -> the chain length of the HMMA that last wrote it (0: another instruction)
    for _, op, operands in loop:
        regs = re.findall(r"\bR(\d+|Z)\b", operands)
        if op.startswith("HMMA"):
            d, c = regs[0], regs[3]
            n = depth.get(c, 0) + 1
            for k in range(4):   # (a 16 x 8 float32 accumulator: 4 registers from d)
                depth[str(int(d) + k)] = n
            longest = max(longest, n)
        elif regs:
            depth[regs[0]] = 0
    return longest


def ldsm_bytes(loop):
    """bytes the loop's ldmatrix instructions (LDSM) read from shared memory, a warp: 128 a matrix of 8 x 8
    16-bit values, 1, 2 or 4 an instruction"""
    matrices = [re.search(r"\.([24])$", op) for _, op, _ in loop if op.startswith("LDSM")]
    return sum(128 * (int(m.group(1)) if m else 1) for m in matrices)


def compile_aligned(fn, arch):
    sig, constexprs = triton_aot.signature(fn, False, False, "tf32", "bf16", True)
    attrs = {(fn.arg_names.index(p),): [["tt.divisibility", 16]] for p, t in sig.items() if t.startswith("*")}
    scan = fn.__name__[1:-len("_kernel")]
    return triton.compile(ASTSource(fn, sig, constexprs, attrs), target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": num_warps(scan)})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", default=["LSTM", "GRU", "LLTM"], choices=sorted(CASES))
    p.add_argument("--size", type=int, default=768)
    p.add_argument("--arch", type=int, default=90)
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE")
    args = p.parse_args(argv)
    render = importlib.import_module("symcell.backends.triton.render")
    for setting in args.set:
        name, value = setting.split("=")
        setattr(render, name, eval(value))  # noqa: S307 - a developer's command line
    print(f"sm_{args.arch}, H=I={args.size}, bfloat16, resident, without lengths; {' '.join(args.set) or 'defaults'}")
    print(f"{'cell':8} {'kernel':10} {'regs':>5} {'smem':>7} {'a step':>7} {'chain':>6} {'LDSM KB':>8}  "
          "most frequent (a warp, a step)")
    for name in args.cells:
        cell = CASES[name][0](backend="reference")
        with tempfile.TemporaryDirectory() as folder:
            for fn in triton_aot.kernels(cell._spec, {k: args.size for k in cell.dims}, folder, False):
                k = compile_aligned(fn, args.arch)
                path = os.path.join(folder, "kernel.cubin")
                with open(path, "wb") as f:
                    f.write(k.asm["cubin"])
                sass = subprocess.run([NVDISASM, "-c", path], capture_output=True, text=True, check=True).stdout
                loop = time_loop(sass)
                ops = collections.Counter(op.split(".")[0] for _, op, _ in loop)
                regs, _ = triton_aot.resources(k, folder)
                top = " ".join(f"{op}:{n}" for op, n in ops.most_common(8))
                print(f"{name:8} {fn.__name__[1:-7]:10} {regs:>5} {k.metadata.shared:>7} {len(loop):>7} "
                      f"{longest_chain(loop):>6} {ldsm_bytes(loop) / 1024:>8.1f}  {top}")


if __name__ == "__main__":
    main()
