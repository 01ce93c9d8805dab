"""Compile the triton backend's kernels ahead of time for NVIDIA GPUs, without a GPU: Triton's own pipeline down
to PTX, then the ptxas that ships with the Triton wheel for registers, spills and shared memory per kernel.

    python benchmarks/triton_aot.py                         # LSTM and GRU at H=16 and 256, sm_80 and sm_90
    python benchmarks/triton_aot.py --cells lstm --sizes 768 --archs 90

The interpreter CI runs the kernels with accepts code a GPU compiler may not; this is how to know the kernels
compile, and what they cost in registers. Exits non-zero when a kernel does not compile.
"""
import argparse
import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys
import tempfile

os.environ.pop("TRITON_INTERPRET", None)   # real @triton.jit functions, not the interpreter's

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import symcell  # noqa: E402
from symcell import pipeline  # noqa: E402
from symcell.backends.triton.render import BB, TILE, dot_constants, num_warps  # noqa: E402
from symcell.cells import GRUCell, LSTMCell  # noqa: E402

CELLS = {"lstm": LSTMCell.spec, "gru": GRUCell.spec}
# the wheel's ptxas builds; the newer one reads the newer PTX that Triton writes for sm_90
PTXAS = [os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", p) for p in ("ptxas", "ptxas-blackwell")]


def kernels(spec, dims, folder, second=True):
    """The @triton.jit kernels of a cell's scans, first order (forward, backward) and second order (their
    tangents) unless `second` is false, imported from a file (triton.jit reads its source)."""
    lowered = pipeline.lower(spec.ir, dims)
    backend = symcell.backends.get("triton")
    program = pipeline.backend_program(lowered, backend)   # (what the backend runs: its passes applied)
    scans = (program.forward, program.backward, *(pipeline.second_order(program) if second else ()))
    source = backend.render(program, scans)
    path = os.path.join(folder, f"{spec.ir.name}_{'_'.join(f'{k}{v}' for k, v in sorted(dims.items()))}.py")
    with open(path, "w") as f:
        f.write("import torch, triton\nimport triton.language as tl\n" + source)
    module_spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return [getattr(module, f"_{scan.name}_kernel") for scan in scans]


def signature(fn, masked, wide=False, dot="ieee", weights="fp32", resident=False):
    """Argument types as the host code passes them on a GPU: sizes, strides, steps, phases and programs i32,
    lengths and barrier counters i64, buffers fp32 (`wide`: the variant for buffers of 2^31 elements or more;
    `dot`: the float32 matmul precision, symcell.backends.triton.FLOAT32_DOT; `weights`: the type of the
    matmuls' weights `_w_*`, "bf16" or "fp16" for a 16-bit module's, LOW_PRECISION_WEIGHTS; `resident`: the
    variant that keeps their slices on chip, for bf16 weights, RESIDENT_WEIGHTS)."""
    sig, constexprs = {}, {}
    for p in fn.arg_names:
        if p in ("_BB", "_BN", "_BK", "_BKG", "_MASKED", "_WIDE", "_PHASED", "_DOT", "_RESIDENT", "_BF16_DOT"):
            sig[p] = "constexpr"
            constexprs[p] = {"_BB": BB, "_BN": TILE, "_MASKED": masked, "_WIDE": wide, "_PHASED": False,
                             "_RESIDENT": resident, "_BF16_DOT": True, **dot_constants(dot)}[p]
        elif p in ("_T", "_B", "_I0", "_I1", "_K0", "_K1", "_P") or p.startswith("_ts_"):
            sig[p] = "i32"
        elif p in ("_len_ptr", "_sync_ptr"):
            sig[p] = "*i64"
        else:
            sig[p] = f"*{weights}" if p.startswith("_w_") else "*bf16" if p.startswith("_ps_") else "*fp32"
    return sig, constexprs


def compile(fn, sig, constexprs, arch):
    """the kernel as the host code launches it (its scan's warps), for an NVIDIA GPU of compute capability `arch`;
    with `ptxas_log`, the report of the ptxas -v that Triton ran (resources() reads it: running ptxas again was a
    tenth of a compile)"""
    scan = fn.__name__[1:-len("_kernel")]   # (_forward_kernel -> forward)
    nvidia = getattr(getattr(triton, "knobs", None), "nvidia", None)
    report = io.StringIO()
    before = getattr(nvidia, "dump_ptxas_log", None)
    if before is not None:
        nvidia.dump_ptxas_log = True          # (Triton prints the log of its ptxas run)
    try:
        with contextlib.redirect_stdout(report):
            kernel = triton.compile(ASTSource(fn, sig, constexprs), target=GPUTarget("cuda", arch, 32),
                                    options={"num_warps": num_warps(scan)})
    finally:
        if before is not None:
            nvidia.dump_ptxas_log = before
    kernel.ptxas_log = report.getvalue()
    return kernel


def resources(kernel, folder):
    """registers and (spill stores, spill loads) in bytes of a compiled kernel, as ptxas -v reports them: Triton's
    own run of it where compile() caught its report, else ptxas run again on the kernel's PTX (a kernel from
    Triton's cache: no ptxas ran)"""
    log = getattr(kernel, "ptxas_log", None)
    if not log or "Used" not in log:
        ptx = kernel.asm["ptx"]
        path = os.path.join(folder, "kernel.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        target = re.search(r"\.target (sm_\w+)", ptx).group(1)   # Triton targets sm_90a on Hopper
        for ptxas in PTXAS:
            r = subprocess.run([ptxas, "-v", f"--gpu-name={target}", path, "-o", path + ".cubin"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
        log = r.stderr
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return (int(regs.group(1)) if regs else None), (tuple(map(int, spills.groups())) if spills else None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", nargs="+", default=sorted(CELLS), choices=sorted(CELLS))
    ap.add_argument("--sizes", nargs="+", type=int, default=[16, 256])
    ap.add_argument("--archs", nargs="+", type=int, default=[80, 90])
    args = ap.parse_args(argv)
    print(f"triton {triton.__version__}; every kernel with _MASKED (lengths) on, ieee; BB={BB} BN={TILE} "
          f"BK={dot_constants('ieee')['_BK']} BKG={dot_constants('ieee')['_BKG']}, "
          f"warps: {num_warps('forward')} first order, {num_warps('tangent_forward')} second")
    print("| cell | H = I | kernel | target | registers | spill stores / loads (bytes) | shared memory (bytes) |")
    print("|---|---:|---|---|---:|---|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.cells:
            for size in args.sizes:
                for fn in kernels(CELLS[name], {"I": size, "H": size}, folder):
                    for arch in args.archs:
                        sig, constexprs = signature(fn, True)
                        k = compile(fn, sig, constexprs, arch)
                        regs, spills = resources(k, folder)
                        print(f"| {name} | {size} | {fn.__name__} | sm_{arch} | {regs} | "
                              f"{'/'.join(map(str, spills)) if spills else '?'} | {k.metadata.shared} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
