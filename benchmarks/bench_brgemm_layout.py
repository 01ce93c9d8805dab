"""What the layout of the weights costs the recurrence's GEMM on one CPU thread (issue 13's first finding).

    python benchmarks/bench_brgemm_layout.py

A step of the cpp backend's loop multiplies one thread's rows (M = B / threads) by the weights, transposed once
per call into a (K, N) row-major workspace (render.py's transposed_weights), through oneDNN's batch-reduce GEMM
microkernel (sc::mm_kn -> at::native::cpublas::brgemm), today over all N columns with a row stride of N. This
times that call against the same product with the weights in panels of nb columns, each (K, nb) contiguous (a
brgemm call per panel, row stride nb): the layout a packing transpose could write at no extra cost. The C++ is
compiled here with torch's cpp_extension (a few seconds, once).
"""
import datetime
import os
import tempfile

import torch
from torch.utils.cpp_extension import load_inline

from measure import cpu_model

SOURCE = r"""
#include <ATen/native/CPUBlas.h>
#include <chrono>
// GFLOP/s of C[M,N] = A[M,K] @ B[K,N] by brgemm: B row-major (nb == N) or in panels of nb columns
double rate(int64_t M, int64_t N, int64_t K, int64_t nb, int64_t reps) {
  auto A = torch::randn({M, K}), B = torch::randn({K, N}), C = torch::empty({M, N});
  auto P = B.reshape({K, N / nb, nb}).permute({1, 0, 2}).contiguous();   // panel j: (K, nb)
  const float *a = A.data_ptr<float>(), *b = B.data_ptr<float>(), *p = P.data_ptr<float>();
  float* c = C.data_ptr<float>();
  auto step = [&] {
    if (nb == N) at::native::cpublas::brgemm(M, N, K, K, N, N, false, a, b, c, false);
    else for (int64_t j = 0; j < N / nb; ++j)
      at::native::cpublas::brgemm(M, nb, K, K, nb, N, false, a, p + j * K * nb, c + j * nb, false);
  };
  for (int r = 0; r < 20; ++r) step();
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < reps; ++r) step();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // the two layouts must agree
  auto want = torch::mm(A, B);
  TORCH_CHECK(torch::allclose(C, want, 1e-4, 1e-4), "brgemm layouts disagree");
  return 2.0 * M * N * K * reps / s / 1e9;
}
"""


def main():
    build = os.path.join(tempfile.gettempdir(), "symcell-bench-brgemm")
    os.makedirs(build, exist_ok=True)
    ext = load_inline("symcell_bench_brgemm", cpp_sources=SOURCE, functions=["rate"], build_directory=build,
                      extra_cflags=["-O3", "-march=native"])
    torch.set_num_threads(1)
    panels = (1024, 512, 256, 64, 32, 16)
    print(f"## brgemm: the weights' layout, one thread, float32\n\n`python benchmarks/bench_brgemm_layout.py`, "
          f"{cpu_model()}, torch {torch.__version__}, {datetime.date.today()}; N = 4H = 1024\n")
    print("| M (rows a thread) | K | " + " | ".join("row-major" if nb == 1024 else f"panels of {nb}" for nb in panels)
          + " |")
    print("|---:|---:|" + "---:|" * len(panels))
    for M, K in ((16, 512), (16, 256), (32, 256), (32, 512), (4, 256), (1, 256)):
        rates = [ext.rate(M, 1024, K, nb, max(50, 20000 // M)) for nb in panels]
        print(f"| {M} | {K} | " + " | ".join(f"{r:.1f}" for r in rates) + " |")
    print("\nGFLOP/s; row-major: one call over the columns with row stride N, as sc::mm_kn makes today")


if __name__ == "__main__":
    main()
