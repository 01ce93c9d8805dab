"""The tall GEMMs of the cpp backend (over all T*B rows, before or after the loop): MKL's sgemm against sc.h's
brgemm blocks, on the CPU's own ISA and with oneDNN held to AVX2.

    python benchmarks/bench_tall_gemm.py              # both ISAs (each in its own process), about a minute
    python benchmarks/bench_tall_gemm.py --this-isa   # this process's only

An LSTM's phases, float32, at B*T = 6400 rows: the input term before the loop (x @ W_ih^T: sc::mm_nt), the
operand gradient after it (d_x = d_gates @ W_ih: sc::mm_kn) and a weight gradient (dW_ih = d_gates^T @ x:
sc::mm_tn). MKL's sgemm (the cpp backend's path for these before) is called through the same Fortran entry point
sc.h uses; sc.h's functions are compiled here from the package's own sc.h with torch's cpp_extension (once, a
minute). MKL takes its AVX2 code path on an AMD CPU whatever the ISA; oneDNN's brgemm chooses by the ISA, which
ONEDNN_MAX_CPU_ISA=AVX2 caps (what an AVX2-only CPU would run, at this CPU's clock and caches).
"""
import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.cpp_extension import load_inline

from measure import cpu_model, timed

HEADER = Path(__file__).resolve().parent.parent / "symcell" / "backends" / "cpp"

SOURCE = r"""
#include "sc.cpp"   // (sc.h and its compiled half, where sc::blas is)
// C = A @ W^T (A: (M, K), W: (N, K)), by MKL or sc.h
void nt(torch::Tensor A, torch::Tensor W, torch::Tensor C, bool mkl) {
  const int64_t M = A.size(0), K = A.size(1), N = W.size(0);
  if (mkl) sc::blas('T', 'N', N, M, K, 1.f, W.data_ptr<float>(), K, A.data_ptr<float>(), K, 0.f, C.data_ptr<float>(), N);
  else sc::mm_nt(M, N, K, A.data_ptr<float>(), K, W.data_ptr<float>(), K, C.data_ptr<float>(), N);
}
// C = G @ W (G: (M, K), W: (K, N))
void kn(torch::Tensor G, torch::Tensor W, torch::Tensor C, bool mkl) {
  const int64_t M = G.size(0), K = G.size(1), N = W.size(1);
  if (mkl) sc::blas('N', 'N', N, M, K, 1.f, W.data_ptr<float>(), N, G.data_ptr<float>(), K, 0.f, C.data_ptr<float>(), N);
  else sc::mm_kn(M, N, K, G.data_ptr<float>(), K, W.data_ptr<float>(), N, false, C.data_ptr<float>(), N);
}
// C += G^T @ X (G: (R, M), X: (R, N))
void tn(torch::Tensor G, torch::Tensor X, torch::Tensor C, bool mkl) {
  const int64_t R = G.size(0), M = G.size(1), N = X.size(1);
  if (mkl) sc::blas('N', 'T', N, M, R, 1.f, X.data_ptr<float>(), N, G.data_ptr<float>(), M, 1.f, C.data_ptr<float>(), N);
  else sc::mm_tn<float>(M, N, R, G.data_ptr<float>(), M, X.data_ptr<float>(), N, C.data_ptr<float>(), N);
}
"""


def build():
    folder = Path(tempfile.gettempdir()) / "symcell-bench-tall"
    folder.mkdir(exist_ok=True)
    return load_inline("symcell_bench_tall", cpp_sources=SOURCE, functions=["nt", "kn", "tn"],
                       build_directory=str(folder), extra_include_paths=[str(HEADER)],
                       extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"])


def table(repeats):
    ext = build()
    torch.manual_seed(0)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "the CPU's own")
    lines = [f"ISA for oneDNN: {isa}; {torch.get_num_threads()} threads", "",
             "| GEMM (LSTM phase) | M x K x N | MKL ms | sc.h ms | MKL GFLOP/s | sc.h GFLOP/s | MKL / sc.h |",
             "|---|---|---:|---:|---:|---:|---:|"]
    rows = 6400
    for H, I in ((256, 256), (1024, 1024)):
        x, w, g = torch.randn(rows, I), torch.randn(4 * H, I), torch.randn(rows, 4 * H)
        cases = [
            ("x @ W_ih^T (mm_nt)", (rows, I, 4 * H), lambda mkl, c: ext.nt(x, w, c, mkl), (rows, 4 * H), x @ w.T),
            ("d_gates @ W_ih (mm_kn)", (rows, 4 * H, I), lambda mkl, c: ext.kn(g, w, c, mkl), (rows, I), g @ w),
            ("d_gates^T @ x (mm_tn)", (4 * H, rows, I), lambda mkl, c: ext.tn(g, x, c, mkl), (4 * H, I), g.T @ x),
        ]
        for name, (m, k, n), run, shape, want in cases:
            outs = {mkl: torch.zeros(shape) for mkl in (True, False)}
            for mkl, c in outs.items():   # both must give the product (tn adds into its zeros)
                run(mkl, c)
                torch.testing.assert_close(c, want, rtol=1e-3, atol=1e-3 * want.abs().max().item())
            times = {True: [], False: []}
            for _ in range(repeats):       # interleaved
                for mkl in (True, False):
                    times[mkl].append(timed(lambda: run(mkl, outs[mkl])))
            t = {mkl: statistics.median(v) * 1e3 for mkl, v in times.items()}
            flop = 2 * m * k * n / 1e9
            lines.append(f"| {name} | {m} x {k} x {n} | {t[True]:.2f} | {t[False]:.2f} | {flop / t[True] * 1e3:.0f} | "
                         f"{flop / t[False] * 1e3:.0f} | {t[True] / t[False]:.2f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--this-isa", action="store_true", help="only this process's ISA (no subprocess)")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    if args.this_isa:
        print(table(args.repeats), flush=True)
        return
    print(f"## The tall GEMMs: MKL's sgemm against sc.h's brgemm blocks\n\n`python benchmarks/bench_tall_gemm.py`, "
          f"{cpu_model()}, torch {torch.__version__}, {datetime.date.today()}; float32, medians of {args.repeats} "
          f"interleaved repeats\n", flush=True)
    for isa in (None, "AVX2"):
        env = dict(os.environ)
        env.pop("ONEDNN_MAX_CPU_ISA", None)
        if isa:
            env["ONEDNN_MAX_CPU_ISA"] = isa
        subprocess.run([sys.executable, __file__, "--this-isa", "--repeats", str(args.repeats)], env=env, check=True)
        print(flush=True)


if __name__ == "__main__":
    main()
