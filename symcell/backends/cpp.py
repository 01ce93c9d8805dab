"""The C++ CPU backend: the whole-sequence forward and backward as one native call each.

The renderer prints C++ from the *symbolic* schedule, so dimensions, T and B are runtime arguments and one
build serves every size of a cell. Matmuls call MKL's sgemm_/dgemm_ (exported by libtorch_cpu) directly into
preallocated buffers; each pointwise region is one loop over rows x features, `omp simd` so that glibc's
vector math library (libmvec) evaluates exp/tanh/log eight or sixteen lanes at a time, rows split across
threads with at::parallel_for when there is enough work.
"""
import ctypes.util
import sys
import warnings

import sympy
import torch

from .. import cache
from ..autodiff import MatMulGrad, RegionGrad
from ..plan import plan
from ..printing import Writer, cpp_str, size_str
from ..schedule import MatMul
from . import register

_PRELUDE = r"""
#include <ATen/core/Tensor.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#if SYMCELL_MVEC
// glibc's libmvec has vector variants of these; declaring them `simd` lets `omp simd` loops call them
extern "C" {
float expf(float) __attribute__((simd("notinbranch")));
float logf(float) __attribute__((simd("notinbranch")));
float tanhf(float) __attribute__((simd("notinbranch")));
float expm1f(float) __attribute__((simd("notinbranch")));
float log1pf(float) __attribute__((simd("notinbranch")));
double exp(double) __attribute__((simd("notinbranch")));
double log(double) __attribute__((simd("notinbranch")));
double tanh(double) __attribute__((simd("notinbranch")));
double expm1(double) __attribute__((simd("notinbranch")));
double log1p(double) __attribute__((simd("notinbranch")));
}
#endif

extern "C" {  // Fortran BLAS from the MKL inside libtorch_cpu
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*);
}

#include <bit>
#include <type_traits>
#include <immintrin.h>

namespace sc {
// float e^x in plain arithmetic, so `omp simd` loops vectorize it without a library call:
// e^x = 2^n e^r, n = round(x log2 e), r = x - n ln2 (ln2 in two parts), |r| <= ln2/2, e^r by Taylor to r^7
// (truncation r^8/8! < 6e-9, under half an ulp). 2^n is built in the exponent bits as 2^(n-1) * 2 so that
// n = 128 (x up to 88.72) stays finite. Below -86.6 the result is flushed to 0 (true value < 2.4e-38).
inline float exp_f32(float x) {
  const float xc = x < -86.6f ? -86.6f : (x > 88.72f ? 88.72f : x);
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   // round to nearest, |.| < 2^22
  const float r = (xc - n * 0.693145751953125f) - n * 1.4286068203094172e-06f;
  float p = 1.98412698e-4f;
  p = p * r + 1.38888889e-3f;
  p = p * r + 8.33333333e-3f;
  p = p * r + 4.16666667e-2f;
  p = p * r + 1.66666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float half_scale = std::bit_cast<float>((static_cast<int32_t>(n) + 126) << 23);
  float y = p * half_scale * 2.0f;
  y = x > 88.72f ? INFINITY : y;
  y = x < -86.6f ? 0.0f : y;
  return x != x ? x : y;   // NaN stays NaN
}
// tanh(x): odd Taylor series for |x| < 0.3 (next term < 2e-8 relative); else 1 - 2/(e^{2|x|} + 1) with x's sign
inline float tanh_f32(float x) {
  const float a = std::fabs(x), x2 = x * x;
  const float small = x * (1.0f + x2 * (-0.333333333f + x2 * (0.133333333f + x2 * (-0.0539682540f +
                                                                                   x2 * 0.0218694885f))));
  const float big = std::copysign(1.0f - 2.0f / (exp_f32(2.0f * a) + 1.0f), x);
  return a < 0.3f ? small : big;
}

// the pointwise functions; derivative rules are in symcell/functions.py. float uses the arithmetic versions
// above; double uses libm (vectorized by libmvec where available), where accuracy is what matters
template <typename T> inline T exp(T x) {
  if constexpr (std::is_same_v<T, float>) return exp_f32(x); else return std::exp(x);
}
template <typename T> inline T log(T x) { return std::log(x); }
template <typename T> inline T sigmoid(T x) { return T(1) / (T(1) + sc::exp(-x)); }   // exp(1e4) = inf -> 0
template <typename T> inline T tanh(T x) {
  if constexpr (std::is_same_v<T, float>) return tanh_f32(x); else return std::tanh(x);
}
template <typename T> inline T relu(T x) { return x < T(0) ? T(0) : x; }               // NaN stays NaN
template <typename T> inline T step(T x) { return x > T(0) ? T(1) : T(0); }            // relu'(0) = 0
template <typename T> inline T elu(T x) { return x > T(0) ? x : std::expm1(x); }
template <typename T> inline T elu_grad(T x) { return x > T(0) ? T(1) : sc::exp(x < T(0) ? x : T(0)); }
template <typename T> inline T softplus(T x) { return x > T(20) ? x : std::log1p(sc::exp(x)); }  // torch's threshold

// denormals make saturated cells 10-100x slower; every thread that computes flushes them to zero
struct FlushDenormals {
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }   // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved); }
};

// row-major GEMMs through column-major BLAS: C = op(A) op(B) in row-major is C^T = op(B)^T op(A)^T
inline void blas(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  int M = m, N = n, K = k, LA = lda, LB = ldb, LC = ldc;
  sgemm_(&ta, &tb, &M, &N, &K, &alpha, a, &LA, b, &LB, &beta, c, &LC);
}
inline void blas(char ta, char tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                 const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  int M = m, N = n, K = k, LA = lda, LB = ldb, LC = ldc;
  dgemm_(&ta, &tb, &M, &N, &K, &alpha, a, &LA, b, &LB, &beta, c, &LC);
}
// C[M,N] += A[K,M]^T @ B[K,N]
template <typename T> inline void mm_tn(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                                        int64_t ldb, T* C, int64_t ldc) {
  if (M == 0 || N == 0 || K == 0) return;
  blas('N', 'T', N, M, K, T(1), B, ldb, A, lda, T(1), C, ldc);
}
// oneDNN's batch-reduce GEMM microkernel (through ATen) keeps both cores busy on the small-M GEMMs of the
// recurrence, where a BLAS call runs at half the rate; used once a self-test shows it works on this machine
inline bool brgemm_ok() {
  static const bool ok = [] {
    try {
      float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 2, 1, 0, 1}, c[4] = {0, 0, 0, 0};
      at::native::cpublas::brgemm(2, 2, 3, 3, 2, 2, false, a, b, c, false);   // [2,3] @ [3,2]
      return c[0] == 5 && c[1] == 5 && c[2] == 14 && c[3] == 11;
    } catch (...) {
      return false;
    }
  }();
  return ok;
}
// C[M,N] (+)= A[M,K] @ B[K,N], all row-major
inline void mm_kn(int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, const double* B, int64_t ldb,
                  bool acc, double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  blas('N', 'N', N, M, K, 1.0, B, ldb, A, lda, acc ? 1.0 : 0.0, C, ldc);
}
inline void mm_kn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                  bool acc, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0 || !brgemm_ok()) {
    blas('N', 'N', N, M, K, 1.0f, B, ldb, A, lda, acc ? 1.0f : 0.0f, C, ldc);
    return;
  }
  const int64_t nt = std::max<int64_t>(1, at::get_num_threads());
  if (M >= 64 * nt) {   // tall: each thread its rows
    at::parallel_for(0, M, (M + nt - 1) / nt, [&](int64_t r0, int64_t r1) {
      FlushDenormals ftz;
      at::native::cpublas::brgemm(r1 - r0, N, K, lda, ldb, ldc, acc, A + r0 * lda, B, C + r0 * ldc, false);
    });
  } else {              // short (the recurrence): each thread a block of columns, multiples of 16
    const int64_t blocks = (N + 15) / 16, per = (blocks + nt - 1) / nt;
    at::parallel_for(0, nt, 1, [&](int64_t t0, int64_t t1) {
      FlushDenormals ftz;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n0 = std::min(N, t * per * 16), n1 = std::min(N, (t + 1) * per * 16);
        if (n1 > n0)
          at::native::cpublas::brgemm(M, n1 - n0, K, lda, ldb, ldc, acc, A, B + n0, C + n0, false);
      }
    });
  }
}
// rows [0, R) of a pointwise region, split across threads only when there is enough work to pay for it
template <typename F> inline void rows(int64_t R, int64_t n, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 2048 / std::max<int64_t>(n, 1));
  at::parallel_for(0, R, grain, [&](int64_t r0, int64_t r1) { FlushDenormals ftz; f(r0, r1); });
}
// the time loop over batch rows [b0, b1): rows never interact in a recurrence, so with enough rows each thread
// runs the whole sequence on its own slice (no synchronisation per step, its GEMM outputs stay in its cache);
// with few rows one thread runs the loop and the GEMMs and regions inside split their work instead
template <typename F> inline void scan_rows(int64_t B, const F& f) {
  const int64_t nt = at::get_num_threads();
  if (nt > 1 && B >= 4 * nt) {
    at::parallel_for(0, B, (B + nt - 1) / nt, [&](int64_t b0, int64_t b1) { FlushDenormals ftz; f(b0, b1); });
  } else {
    f(0, B);
  }
}
// dst[k, n] = src[n, k] for an (N, K) block of src (row stride lds) into dst (row stride ldd): the weights as
// the (K, N) operand of mm_kn, once per call. 8 x 8 tiles through AVX registers for float: at the sizes of a
// cell's weights, a transposing copy through ATen costs as much as a few steps of the recurrence
inline void transpose8x8(const float* s, int64_t lds, float* d, int64_t ldd) {
  __m256 r0 = _mm256_loadu_ps(s + 0 * lds), r1 = _mm256_loadu_ps(s + 1 * lds), r2 = _mm256_loadu_ps(s + 2 * lds),
         r3 = _mm256_loadu_ps(s + 3 * lds), r4 = _mm256_loadu_ps(s + 4 * lds), r5 = _mm256_loadu_ps(s + 5 * lds),
         r6 = _mm256_loadu_ps(s + 6 * lds), r7 = _mm256_loadu_ps(s + 7 * lds);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
         t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
         t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
         u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
         u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
         u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(d + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(d + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}
template <typename T> inline void transpose(const T* src, int64_t lds, int64_t N, int64_t K, T* dst,
                                           int64_t ldd) {
  int64_t n8 = 0, k8 = 0;
  if constexpr (std::is_same_v<T, float>) {
    n8 = N / 8 * 8;
    k8 = K / 8 * 8;
    // each task writes whole rows of dst in order (rows of dst lie ldd apart: writing down a column of tiles
    // would touch 8 far-apart lines per tile); large weights split across threads
    at::parallel_for(0, k8 / 8, N * K >= (1 << 17) ? 1 : k8 / 8 + 1, [&](int64_t i0, int64_t i1) {
      for (int64_t k = i0 * 8; k < i1 * 8; k += 8)
        for (int64_t n = 0; n < n8; n += 8) transpose8x8(src + n * lds + k, lds, dst + k * ldd + n, ldd);
    });
  }
  for (int64_t n = 0; n < N; ++n)        // what the tiles did not cover: the right columns and bottom rows
    for (int64_t k = (n < n8 ? k8 : 0); k < K; ++k) dst[k * ldd + n] = src[n * lds + k];
}
// a per-thread buffer reused across calls (64-byte aligned by torch's allocator, which brgemm's loads want);
// never freed, so no destructor runs after torch at exit
inline at::Tensor& workspace(int slot, int64_t numel, const at::TensorOptions& opt) {
  static thread_local std::vector<at::Tensor>* ws = new std::vector<at::Tensor>();
  if (ws->size() <= static_cast<size_t>(slot)) ws->resize(slot + 1);
  at::Tensor& t = (*ws)[slot];
  if (!t.defined() || t.numel() < numel || t.dtype() != opt.dtype()) t = at::empty({numel}, opt);
  return t;
}
template <typename T> inline T* ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; }
template <typename T> inline void zero(T* p, int64_t n) { if (n > 0) std::memset(p, 0, sizeof(T) * n); }
}  // namespace sc
"""


class _Renderer:
    def __init__(self, schedule, backward):
        self.s, self.b, self.ir = schedule, backward, schedule.ir
        self.p = plan(schedule, backward)
        self.kind = {v.name: v.kind for v in schedule.values}
        self.stage = {v.name: v.stage for v in schedule.values}
        self.size = {v.name: v.size for v in schedule.values if v.size is not None}
        self.inputs = [n for n, _ in self.ir.inputs]
        self.states = [n for n, _ in self.ir.states]
        self.params = [n for n, _ in self.ir.params]
        self.outputs = list(self.ir.outputs)
        self.new = dict(zip(self.states, schedule.new_states))

    # --- small helpers ------------------------------------------------------------------------------
    def n(self, v):
        return f"_n_{v}"

    def cols(self, w):
        return size_str(self.ir.param_shape(w)[1])

    def at(self, ptr, v, start):
        """pointer to element `start` of row 0 of value v."""
        off = size_str(start)
        return ptr if off == "0" else f"{ptr} + {off}"

    def dims_and_sizes(self, w):
        for k, d in enumerate(self.ir.dims):
            w(f"const int64_t _dim_{d} = _dims[{k}];")
        for v in self.s.values:
            if v.size is not None:
                w(f"const int64_t {self.n(v.name)} = {size_str(v.size)};")
        for p, shape in self.ir.params:
            if len(shape) == 2:
                w(f"const int64_t _ld_{p} = {size_str(shape[1])};  // {p} is ({size_str(shape[0])}, "
                  f"{size_str(shape[1])})")

    def preamble(self, w):
        """What the forward and the backward both start with: sizes, the sequence's shape, the lengths."""
        self.dims_and_sizes(w)
        w("const int64_t _steps = _xs[0].size(0), _batch = _xs[0].size(1);")
        w("// per-row sequence lengths (int64), or none: every row runs all _steps")
        w("const int64_t* _len = _lengths.numel() > 0 ? _lengths.data_ptr<int64_t>() : nullptr;")
        w("const auto _opt = _xs[0].options();")

    def region(self, w, region, rows, grads=None):
        """One fused loop over rows x features. Forward: outputs = exprs; backward (grads=RegionGrad): the
        cotangents of the outputs in, the leaves' gradients accumulated (a vector parameter's summed over rows)."""
        dest0 = region.outputs[0][0]
        width = size_str(dest0.stop - dest0.start)
        if grads is None:
            temps, exprs = sympy.cse([e for _, e in region.outputs], symbols=sympy.numbered_symbols("_e"))
            cots = []
            stores = [(f"_r_{d.value}", d, e, "=") for (d, _), e in zip(region.outputs, exprs)]
            accs = []
            simd = True  # outputs are new buffers, never read in the same region
        else:
            temps, cots = grads.temps, grads.cotangents
            stores = [(f"_rd_{v.value}", v, e, "+=") for v, e in grads.grads if self.kind[v.value] != "param"]
            accs = [(v, e) for v, e in grads.grads if self.kind[v.value] == "param"]
            simd = self._no_overlap([v for _, v, _, _ in stores])
        read_rows = sorted({v.value for _, v in region.leaves if self.kind[v.value] != "param"})
        read_params = sorted({v.value for _, v in region.leaves if self.kind[v.value] == "param"})
        cot_rows = sorted({d.value for _, d in cots})
        write_rows = sorted({name for name, *_ in stores})

        def idx(view):
            off = size_str(view.start)
            return "_j" if off == "0" else f"{off} + _j"

        w(f"{{  // fused region: {len(region.outputs)} output(s), {width} features per row")
        with w.block():
            w(f"const int64_t _n = {width};")
            w(f"sc::rows({rows}, _n, [&](int64_t _r0, int64_t _r1) {{")
            with w.block():
                for k, (v, _) in enumerate(accs):
                    w(f"std::vector<scalar_t> _acc_{k}(_n, scalar_t(0));  // d_{v.value}, summed over rows")
                with w.block("for (int64_t _r = _r0; _r < _r1; ++_r) {", "}"):
                    for val in read_rows:
                        w(f"const scalar_t* _r_{val} = {val} + _r * {self.n(val)};")
                    for val in read_params:  # the same row for every r: a vector parameter broadcasts
                        w(f"const scalar_t* _r_{val} = {val};")
                    for val in cot_rows:
                        w(f"const scalar_t* _rd_{val} = d_{val} + _r * {self.n(val)};")
                    for name in write_rows:
                        val = name[len("_rd_"):] if grads else name[len("_r_"):]
                        w(f"scalar_t* {name} = {'d_' if grads else ''}{val} + _r * {self.n(val)};")
                    if simd:
                        w("#pragma omp simd")
                    with w.block("for (int64_t _j = 0; _j < _n; ++_j) {", "}"):
                        for sym, v in region.leaves:
                            w(f"const scalar_t {sym.name} = _r_{v.value}[{idx(v)}];")
                        for g, d in cots:
                            w(f"const scalar_t {g.name} = _rd_{d.value}[{idx(d)}];")
                        for sym, e in temps:
                            w(f"const scalar_t {sym} = {cpp_str(e)};")
                        for name, v, e, op in stores:
                            w(f"{name}[{idx(v)}] {op} {cpp_str(e)};")
                        for k, (v, e) in enumerate(accs):
                            w(f"_acc_{k}[_j] += {cpp_str(e)};")
                for k, (v, _) in enumerate(accs):
                    off = size_str(v.start)
                    w(f"{{ std::lock_guard<std::mutex> g(_acc_lock); "
                      f"for (int64_t _j = 0; _j < _n; ++_j) d_{v.value}[{'' if off == '0' else off + ' + '}_j] "
                      f"+= _acc_{k}[_j]; }}")
            w("});")
        w("}")

    def _no_overlap(self, views):
        """`omp simd` promises no dependence between lanes: false when two different views of one gradient
        buffer overlap (lane _j of one would update what lane _j' of the other reads)."""
        by_val = {}
        for v in views:
            by_val.setdefault(v.value, set()).add((v.start, v.stop))
        for spans in by_val.values():
            spans = sorted(spans, key=lambda s: sympy.default_sort_key(s))
            for i, (a0, a1) in enumerate(spans):
                for b0, b1 in spans[i + 1:]:
                    if not (sympy.simplify(a1 - b0).is_nonpositive or sympy.simplify(b1 - a0).is_nonpositive):
                        return False
        return True

    def matmul_fwd(self, w, mm, rows, row0):
        w(f"// {mm.out} = " + " + ".join(f"{t.operand.value}[{size_str(t.operand.start)}:"
                                         f"{size_str(t.operand.stop)}] @ {t.weight}[:, {size_str(t.col_start)}:"
                                         f"{size_str(t.col_stop)}].T" for t in mm.terms))
        if len(mm.terms) == 1:
            op = mm.terms[0].operand
            w(f"sc::mm_kn({rows}, {self.n(mm.out)}, {size_str(op.stop - op.start)}, "
              f"{self.at(op.value, op.value, op.start)}, {self.n(op.value)}, {self.wt(mm)}, {self.n(mm.out)}, false, "
              f"{mm.out}, {self.n(mm.out)});")
            return
        # the operands side by side in one row block, then one GEMM over K = the sum of their widths against
        # the stacked weights: half the accumulator traffic of one GEMM per term
        K = self.k_total(mm)
        w(f"{{ scalar_t* _cat = sc::ptr<scalar_t>(_operands_{mm.out}) + ({row0}) * {K};")
        with w.block():
            w(f"for (int64_t _r = 0; _r < {rows}; ++_r) {{")
            with w.block():
                off = sympy.Integer(0)
                for t in mm.terms:
                    op = t.operand
                    w(f"std::memcpy(_cat + _r * {K} + {size_str(off)}, {self.at(op.value, op.value, op.start)} + "
                      f"_r * {self.n(op.value)}, sizeof(scalar_t) * {size_str(op.stop - op.start)});")
                    off = off + (op.stop - op.start)
            w("}")
            w(f"sc::mm_kn({rows}, {self.n(mm.out)}, {K}, _cat, {K}, {self.wt(mm)}, {self.n(mm.out)}, false, "
              f"{mm.out}, {self.n(mm.out)});")
        w("}")

    def wt(self, mm):
        return f"_wt_{mm.out}"

    def k_total(self, mm):
        return f"({size_str(sum((t.operand.stop - t.operand.start for t in mm.terms), sympy.Integer(0)))})"

    def pre_d_seq(self):
        """pre-loop values whose gradient is a (_steps, _batch, _n) sequence filled by the loop or the deferred GEMMs"""
        return [v.name for v in self.s.values if v.stage == "pre" and
                (v.name in self.p.pre_in_loop or v.name in self.p.deferred_ops)]

    def transposed_weights(self, w, stmts):
        """Forward matmuls read W[:, c0:c1] as (K, N): transposed once per call, not once per step. The terms of
        a matmul are stacked along K, so the whole sum is one GEMM over the operands side by side. The buffer is
        a per-thread workspace reused across calls: a fresh multi-megabyte allocation would page-fault on every
        call (it is rewritten every call, so it never holds stale weights)."""
        for slot, mm in enumerate(st for st in stmts if isinstance(st, MatMul)):
            if isinstance(mm, MatMul):
                K, N = self.k_total(mm), self.n(mm.out)
                w(f"scalar_t* {self.wt(mm)} = sc::ptr<scalar_t>(sc::workspace({slot}, {K} * {N}, _opt));")
                off = sympy.Integer(0)
                for t in mm.terms:
                    width = t.col_stop - t.col_start
                    w(f"sc::transpose({self.at(t.weight, t.weight, t.col_start)}, _ld_{t.weight}, {N}, "
                      f"{size_str(width)}, {self.wt(mm)} + ({size_str(off)}) * {N}, {N});")
                    off = off + width

    def matmul_bwd_operand(self, w, mm, t, rows, dout, dop):
        op = t.operand
        w(f"// d_{op.value} += d_{mm.out} @ {t.weight}[:, {size_str(t.col_start)}:{size_str(t.col_stop)}]")
        w(f"sc::mm_kn({rows}, {size_str(op.stop - op.start)}, {self.n(mm.out)}, {dout}, "
          f"{self.n(mm.out)}, {self.at(t.weight, t.weight, t.col_start)}, _ld_{t.weight}, true, "
          f"{self.at(dop, op.value, op.start)}, {self.n(op.value)});")

    def matmul_bwd_weight(self, w, mm, t, rows, dout, operand_ptr):
        op = t.operand
        w(f"sc::mm_tn<scalar_t>({self.n(mm.out)}, {size_str(op.stop - op.start)}, {rows}, {dout}, "
          f"{self.n(mm.out)}, {operand_ptr}, {self.n(op.value)}, "
          f"{self.at('d_' + t.weight, t.weight, t.col_start)}, _ld_{t.weight});")

    # --- forward ---------------------------------------------------------------------------------------
    def forward(self, w):
        p = self.p
        w("template <typename scalar_t>")
        w("static std::vector<at::Tensor> forward_impl(at::TensorList _xs, at::TensorList _inits, "
          "at::TensorList _params, at::IntArrayRef _dims, bool _save, const at::Tensor& _lengths) {")
        with w.block():
            self.preamble(w)
            for k, n in enumerate(self.inputs):
                w(f"const scalar_t* _seq_{n} = sc::ptr<scalar_t>(_xs[{k}]);")
            for k, s in enumerate(self.states):
                w(f"const scalar_t* _init_{s} = sc::ptr<scalar_t>(_inits[{k}]);")
            for k, n in enumerate(self.params):
                w(f"const scalar_t* {n} = sc::ptr<scalar_t>(_params[{k}]);")
            self.transposed_weights(w, self.s.pre + self.s.loop)
            pre_vals = [v.name for v in self.s.values if v.stage == "pre"]
            for st in self.s.pre:
                if isinstance(st, MatMul) and len(st.terms) > 1:
                    w(f"at::Tensor _operands_{st.out} = at::empty({{_steps * _batch, {self.k_total(st)}}}, _opt);")
            if self.s.pre:
                w("// before the loop: everything that depends on no state, over all _steps*_batch rows at once")
                for v in pre_vals:
                    w(f"at::Tensor _t_{v} = at::empty({{_steps, _batch, {self.n(v)}}}, _opt);")
                    w(f"scalar_t* _seq_{v} = sc::ptr<scalar_t>(_t_{v});")
                w("{")
                with w.block():
                    for n in self.inputs:
                        w(f"const scalar_t* {n} = _seq_{n};")
                    for v in pre_vals:
                        w(f"scalar_t* {v} = _seq_{v};")
                    self.stmts_fwd(w, self.s.pre, "_steps * _batch")
                w("}")
            w("// sequences: outputs always, residuals for the backward only when saving")
            for s in self.outputs:
                w(f"at::Tensor _ys_{s} = at::empty({{_steps, _batch, {self.n(s)}}}, _opt);")
            for v in p.res_loop + p.res_states:
                # with lengths, the rows a step skips are never written: zeros, for the GEMMs after the backward loop
                w(f"at::Tensor _res_{v} = !_save ? at::Tensor() : _len != nullptr ? "
                  f"at::zeros({{_steps, _batch, {self.n(v)}}}, _opt) : at::empty({{_steps, _batch, {self.n(v)}}}, _opt);")
            w("// per-step scratch for what is not kept")
            loop_vals = [v.name for v in self.s.values if v.stage == "loop" and v.kind in ("matmul", "pw", "cat")]
            for v in loop_vals:
                w(f"at::Tensor _buf_{v} = at::empty({{_batch, {self.n(v)}}}, _opt);")
            for st in self.s.loop:
                if isinstance(st, MatMul) and len(st.terms) > 1:
                    w(f"at::Tensor _operands_{st.out} = at::empty({{_batch, {self.k_total(st)}}}, _opt);")
            for s in self.states:
                if s not in self.outputs:
                    w(f"at::Tensor _pingpong_{s} = at::empty({{2, _batch, {self.n(s)}}}, _opt);")
            w("// the time loop, on batch rows [_b0, _b1) (see sc::scan_rows)")
            w("sc::scan_rows(_batch, [&](int64_t _b0, int64_t _b1) {")
            with w.block():
                w("const int64_t _nb = _b1 - _b0;")
                for s_ in self.states:
                    w(f"const scalar_t* {s_} = _init_{s_} + _b0 * {self.n(s_)};")
                w("for (int64_t _t = 0; _t < _steps; ++_t) {")
                with w.block():
                    for n in sorted(p.loop_reads):
                        if self.kind[n] == "input" or self.stage[n] == "pre":
                            w(f"const scalar_t* {n} = _seq_{n} + (_t * _batch + _b0) * {self.n(n)};")
                    for v in loop_vals:
                        if v in p.res_loop:
                            w(f"scalar_t* {v} = (_save ? sc::ptr<scalar_t>(_res_{v}) + _t * _batch * {self.n(v)} : "
                              f"sc::ptr<scalar_t>(_buf_{v})) + _b0 * {self.n(v)};")
                        else:
                            w(f"scalar_t* {v} = sc::ptr<scalar_t>(_buf_{v}) + _b0 * {self.n(v)};")
                    for s_ in self.states:
                        w(f"scalar_t* {self.new[s_]} = {self.new_state_buffer(s_, '_t')} + _b0 * {self.n(s_)};")
                    self.live_rows(w)
                    self.stmts_fwd(w, self.s.loop, "_na", "_b0")
                    w("if (_len != nullptr) {  // rows past their own length keep their state")
                    with w.block():
                        with w.block("for (int64_t _r = 0; _r < _nb; ++_r) {", "}"):
                            with w.block("if (_t >= _len[_b0 + _r]) {", "}"):
                                for s_ in self.states:
                                    n = self.n(s_)
                                    w(f"std::memcpy({self.new[s_]} + _r * {n}, {s_} + _r * {n}, sizeof(scalar_t) * {n});")
                    w("}")
                    for s_ in self.states:
                        w(f"{s_} = {self.new[s_]};")
                w("}")
            w("});")
            for s_ in self.states:
                w(f"const scalar_t* _last_{s_} = _steps > 0 ? {self.new_state_buffer(s_, '_steps - 1')} : _init_{s_};")
            w("std::vector<at::Tensor> _out;")
            for s in self.outputs:
                w(f"_out.push_back(_ys_{s});")
            for s in self.states:
                w(f"{{ at::Tensor _f = at::empty({{_batch, {self.n(s)}}}, _opt); "
                  f"if (_batch * {self.n(s)} > 0) std::memcpy(sc::ptr<scalar_t>(_f), _last_{s}, sizeof(scalar_t) * _batch * "
                  f"{self.n(s)}); _out.push_back(_f); }}")
            w("if (_save) {")
            with w.block():
                for v in p.res_pre:
                    w(f"_out.push_back(_t_{v});")
                for v in p.res_loop + p.res_states:
                    w(f"_out.push_back(_res_{v});")
            w("}")
            w("return _out;")
        w("}")

    def live_rows(self, w):
        """_na: the step computes rows [0, _na) of the slice, those up to its last row that has not ended; the rows
        after it only hold their state. With rows sorted by length (symcell.scan sorts them) that is exactly the
        live rows, so a batch of mixed lengths costs what its live rows cost."""
        w("int64_t _na = _nb;")
        w("if (_len != nullptr) while (_na > 0 && _len[_b0 + _na - 1] <= _t) --_na;")

    def new_state_buffer(self, s, t):
        """Where the new value of state s at step _t lives (row 0): the output sequence, the residual sequence
        when saving, else one of two ping-pong buffers (never the one the step reads)."""
        n = self.n(s)
        if s in self.outputs:
            return f"(sc::ptr<scalar_t>(_ys_{s}) + ({t}) * _batch * {n})"
        pingpong = f"sc::ptr<scalar_t>(_pingpong_{s}) + (({t}) & 1) * _batch * {n}"
        if s in self.p.res_states:
            return f"(_save ? sc::ptr<scalar_t>(_res_{s}) + ({t}) * _batch * {n} : {pingpong})"
        return f"({pingpong})"

    def stmts_fwd(self, w, stmts, rows, row0="0"):
        for st in stmts:
            if isinstance(st, MatMul):
                self.matmul_fwd(w, st, rows, row0)
            else:
                self.region(w, st, rows)

    # --- backward --------------------------------------------------------------------------------------
    def backward(self, w):
        p = self.p
        w("template <typename scalar_t>")
        w("static std::vector<at::Tensor> backward_impl(at::TensorList _d_ys, at::TensorList _d_finals, "
          "at::TensorList _xs, at::TensorList _inits, at::TensorList _params, at::TensorList _ys, "
          "at::TensorList _res, at::IntArrayRef _dims, const at::Tensor& _lengths) {")
        with w.block():
            self.preamble(w)
            for k, n in enumerate(self.inputs):
                w(f"const scalar_t* _seq_{n} = sc::ptr<scalar_t>(_xs[{k}]);")
                w(f"at::Tensor _dt_{n} = at::zeros({{_steps, _batch, {self.n(n)}}}, _opt);")
                w(f"scalar_t* _dseq_{n} = sc::ptr<scalar_t>(_dt_{n});")
            for k, s in enumerate(self.states):
                w(f"const scalar_t* _init_{s} = sc::ptr<scalar_t>(_inits[{k}]);")
            for k, n in enumerate(self.params):
                w(f"const scalar_t* {n} = sc::ptr<scalar_t>(_params[{k}]);")
                w(f"at::Tensor _dt_{n} = at::zeros(_params[{k}].sizes(), _opt);")
                w(f"scalar_t* d_{n} = sc::ptr<scalar_t>(_dt_{n});")
            for k, s in enumerate(self.outputs):
                w(f"const scalar_t* _seq_{s} = sc::ptr<scalar_t>(_ys[{k}]);")
                w(f"const scalar_t* _dys_{s} = sc::ptr<scalar_t>(_d_ys[{k}]);")
            for k, v in enumerate(p.residuals):
                w(f"const scalar_t* _seq_{v} = sc::ptr<scalar_t>(_res[{k}]);")
            for v in self.pre_d_seq() + list(p.loop_mm):
                w(f"at::Tensor _dt_{v} = at::zeros({{_steps, _batch, {self.n(v)}}}, _opt);")
                w(f"scalar_t* _dseq_{v} = sc::ptr<scalar_t>(_dt_{v});")
            scratch = [v.name for v in self.s.values if v.stage == "loop" and v.kind in ("pw", "cat")]
            for v in scratch:
                w(f"at::Tensor _dt_{v} = at::empty({{_batch, {self.n(v)}}}, _opt);")
            w("// the carried cotangent of each state: two buffers, swapped each step")
            for k, s in enumerate(self.states):
                w(f"at::Tensor _dcarry_{s} = at::empty({{2, _batch, {self.n(s)}}}, _opt);")
                w(f"if (_batch * {self.n(s)} > 0) std::memcpy(sc::ptr<scalar_t>(_dcarry_{s}), "
                  f"sc::ptr<scalar_t>(_d_finals[{k}]), sizeof(scalar_t) * _batch * {self.n(s)});")
            w("std::mutex _acc_lock;  // vector-parameter gradients are summed across threads")
            w("// the reverse time loop, on batch rows [_b0, _b1) (see sc::scan_rows)")
            w("sc::scan_rows(_batch, [&](int64_t _b0, int64_t _b1) {")
            with w.block():
                w("const int64_t _nb = _b1 - _b0;")
                w("int _cur = 0;")
                w("for (int64_t _t = _steps - 1; _t >= 0; --_t) {")
                with w.block():
                    for n in sorted(p.bwd_loop_reads):
                        k = self.kind[n]
                        if k == "state":
                            w(f"const scalar_t* {n} = _t > 0 ? _seq_{n} + ((_t - 1) * _batch + _b0) * {self.n(n)} : "
                              f"_init_{n} + _b0 * {self.n(n)};")
                        elif k == "input" or self.stage[n] == "pre" or n in p.res_loop:
                            w(f"const scalar_t* {n} = _seq_{n} + (_t * _batch + _b0) * {self.n(n)};")
                    for s_ in self.states:
                        nv = self.new[s_]
                        w(f"scalar_t* d_{nv} = sc::ptr<scalar_t>(_dcarry_{s_}) + (_cur * _batch + _b0) * {self.n(s_)};")
                        w(f"scalar_t* d_{s_} = sc::ptr<scalar_t>(_dcarry_{s_}) + ((_cur ^ 1) * _batch + _b0) * "
                          f"{self.n(s_)};")
                        w(f"sc::zero(d_{s_}, _nb * {self.n(s_)});")
                        if s_ in self.outputs:
                            w(f"{{ const scalar_t* _dy = _dys_{s_} + (_t * _batch + _b0) * {self.n(s_)}; "
                              f"for (int64_t _i = 0; _i < _nb * {self.n(s_)}; ++_i) d_{nv}[_i] += _dy[_i]; }}")
                    w("if (_len != nullptr) {  // ended rows: the carried cotangent passes to the previous state,")
                    with w.block():
                        w("// the step sees none (the backward of holding the state)")
                        with w.block("for (int64_t _r = 0; _r < _nb; ++_r) {", "}"):
                            with w.block("if (_t >= _len[_b0 + _r]) {", "}"):
                                for s_ in self.states:
                                    n, nv = self.n(s_), self.new[s_]
                                    w(f"std::memcpy(d_{s_} + _r * {n}, d_{nv} + _r * {n}, sizeof(scalar_t) * {n});")
                                    w(f"sc::zero(d_{nv} + _r * {n}, {n});")
                    w("}")
                    self.live_rows(w)
                    for n in self.inputs:
                        w(f"scalar_t* d_{n} = _dseq_{n} + (_t * _batch + _b0) * {self.n(n)};")
                    for v in list(p.pre_in_loop) + list(p.loop_mm):
                        w(f"scalar_t* d_{v} = _dseq_{v} + (_t * _batch + _b0) * {self.n(v)};")
                    for v in scratch:
                        w(f"scalar_t* d_{v} = sc::ptr<scalar_t>(_dt_{v}) + _b0 * {self.n(v)};")
                        w(f"sc::zero(d_{v}, _nb * {self.n(v)});")
                    for st in self.b.loop:
                        if isinstance(st, RegionGrad):
                            self.region(w, st.region, "_na", grads=st)
                            continue
                        for t in st.matmul.terms:
                            if t.operand.value not in p.deferred_ops:   # needed by the next step: in the loop
                                self.matmul_bwd_operand(w, st.matmul, t, "_na", f"d_{st.matmul.out}",
                                                        f"d_{t.operand.value}")
                    w("_cur ^= 1;")
                w("}")
            w("});")
            w("const int _cur = _steps % 2;  // every row slice flipped its buffers _steps times")
            deferred = [(st.matmul, t) for st in self.b.loop if isinstance(st, MatMulGrad) for t in st.matmul.terms]
            if deferred:
                w("// after the loop, one GEMM each over all steps: the weight gradients of the in-loop matmuls,")
                w("// and the gradients of their operands that depend on no state")
                w("if (_steps > 0) {")
                with w.block():
                    for mm, t in deferred:
                        op = t.operand
                        w(f"// d_{t.weight}[:, {size_str(t.col_start)}:{size_str(t.col_stop)}] += "
                          f"d_{mm.out}.T @ {op.value}")
                        if self.kind[op.value] == "state":
                            self.matmul_bwd_weight(w, mm, t, "_batch", f"_dseq_{mm.out}",
                                                   self.at(f"_init_{op.value}", op.value, op.start))
                            self.matmul_bwd_weight(w, mm, t, "(_steps - 1) * _batch",
                                                   f"_dseq_{mm.out} + _batch * {self.n(mm.out)}",
                                                   self.at(f"_seq_{op.value}", op.value, op.start))
                        else:
                            self.matmul_bwd_weight(w, mm, t, "_steps * _batch", f"_dseq_{mm.out}",
                                                   self.at(f"_seq_{op.value}", op.value, op.start))
                        if op.value in p.deferred_ops:
                            self.matmul_bwd_operand(w, mm, t, "_steps * _batch", f"_dseq_{mm.out}", f"_dseq_{op.value}")
                w("}")
            if self.b.pre:
                w("// backward of what ran before the loop, over all _steps*_batch rows")
                w("{")
                with w.block():
                    keep = []
                    for n in self.inputs:
                        w(f"const scalar_t* {n} = _seq_{n};")
                        w(f"scalar_t* d_{n} = _dseq_{n};")
                    for v in self.s.values:
                        if v.stage != "pre":
                            continue
                        if v.name in p.bwd_pre_reads:
                            w(f"const scalar_t* {v.name} = _seq_{v.name};")
                        if v.name in self.pre_d_seq():
                            w(f"scalar_t* d_{v.name} = _dseq_{v.name};")
                        else:
                            keep.append(v.name)
                            w(f"at::Tensor _dt_{v.name} = at::zeros({{_steps, _batch, {self.n(v.name)}}}, _opt);")
                            w(f"scalar_t* d_{v.name} = sc::ptr<scalar_t>(_dt_{v.name});")
                    for st in self.b.pre:
                        if isinstance(st, RegionGrad):
                            self.region(w, st.region, "_steps * _batch", grads=st)
                            continue
                        mm = st.matmul
                        for t in mm.terms:
                            self.matmul_bwd_operand(w, mm, t, "_steps * _batch", f"d_{mm.out}", f"d_{t.operand.value}")
                            self.matmul_bwd_weight(w, mm, t, "_steps * _batch", f"d_{mm.out}",
                                                   self.at(t.operand.value, t.operand.value, t.operand.start))
                w("}")
            w("std::vector<at::Tensor> _out;")
            for n in self.inputs:
                w(f"_out.push_back(_dt_{n});")
            for s in self.states:
                w(f"_out.push_back(_dcarry_{s}.select(0, _cur).clone());")
            for n in self.params:
                w(f"_out.push_back(_dt_{n});")
            w("return _out;")
        w("}")

    def render(self):
        w = Writer("  ")
        w(f"// symcell cpp backend: {self.ir.name}")
        w(f"// _dims: {', '.join(self.ir.dims)}; inputs: {', '.join(self.inputs)}; states: {', '.join(self.states)}; "
          f"_params: {', '.join(self.params)}")
        for line in _PRELUDE.strip("\n").splitlines():
            w(line)
        w()
        w("namespace {")
        self.forward(w)
        w()
        self.backward(w)
        w()
        w("std::vector<at::Tensor> forward(at::TensorList _xs, at::TensorList _inits, at::TensorList _params, "
          "at::IntArrayRef _dims, bool _save, const at::Tensor& _lengths) {")
        with w.block():
            w("sc::FlushDenormals _ftz;")
            w("if (_xs[0].scalar_type() == at::kDouble) return forward_impl<double>(_xs, _inits, _params, _dims, _save, _lengths);")
            w("return forward_impl<float>(_xs, _inits, _params, _dims, _save, _lengths);")
        w("}")
        w("std::vector<at::Tensor> backward(at::TensorList _d_ys, at::TensorList _d_finals, at::TensorList _xs, "
          "at::TensorList _inits, at::TensorList _params, at::TensorList _ys, at::TensorList _res, "
          "at::IntArrayRef _dims, const at::Tensor& _lengths) {")
        with w.block():
            w("sc::FlushDenormals _ftz;")
            w("if (_xs[0].scalar_type() == at::kDouble) "
              "return backward_impl<double>(_d_ys, _d_finals, _xs, _inits, _params, _ys, _res, _dims, _lengths);")
            w("return backward_impl<float>(_d_ys, _d_finals, _xs, _inits, _params, _ys, _res, _dims, _lengths);")
        w("}")
        w("}  // namespace")
        w()
        w("TORCH_LIBRARY(SYMCELL_NS, m) {")
        with w.block():
            w('m.def("forward(Tensor[] _xs, Tensor[] _inits, Tensor[] _params, int[] _dims, bool _save, Tensor _lengths) -> Tensor[]");')
            w('m.def("backward(Tensor[] _d_ys, Tensor[] _d_finals, Tensor[] _xs, Tensor[] _inits, Tensor[] _params, '
              'Tensor[] _ys, Tensor[] _res, int[] _dims, Tensor _lengths) -> Tensor[]");')
        w("}")
        w("TORCH_LIBRARY_IMPL(SYMCELL_NS, CPU, m) {")
        with w.block():
            w('m.impl("forward", &forward);')
            w('m.impl("backward", &backward);')
        w("}")
        return w.text()


def _flags():
    mvec = sys.platform.startswith("linux") and ctypes.util.find_library("mvec") is not None
    # -fopenmp: at::parallel_for is inlined from ATen's OpenMP header; the library then uses the libgomp that
    # torch already loaded (same soname), so there is one thread pool
    cflags = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
              f"-DSYMCELL_MVEC={int(mvec)}", "-w"]
    ldflags = ["-fopenmp"] + (["-lmvec"] if mvec else [])
    return cflags, ldflags


_NO_LENGTHS = torch.empty(0, dtype=torch.int64)   # every row runs all steps


class CppKernel:
    def __init__(self, source, ns, dims, counts):
        self.source, self.ns, self.dims = source, ns, list(dims)
        self.n_out, self.n_states = counts

    def forward(self, xs, inits, params, save, lengths=None):
        outs = getattr(torch.ops, self.ns).forward(list(xs), list(inits), list(params), self.dims, save,
                                                   _NO_LENGTHS if lengths is None else lengths)
        ys = tuple(outs[:self.n_out])
        finals = tuple(outs[self.n_out:self.n_out + self.n_states])
        return ys, finals, tuple(outs[self.n_out + self.n_states:])

    def backward(self, d_ys, d_finals, xs, inits, params, ys, res, lengths=None):
        outs = getattr(torch.ops, self.ns).backward(list(d_ys), list(d_finals), list(xs), list(inits),
                                                    list(params), list(ys), list(res), self.dims,
                                                    _NO_LENGTHS if lengths is None else lengths)
        n_in, n_st = len(xs), len(inits)
        return tuple(outs[:n_in]), tuple(outs[n_in:n_in + n_st]), tuple(outs[n_in + n_st:])


_built = {}  # ir -> (source, namespace)
_warned = []


@register("cpp")
class CppBackend:
    symbolic = True    # rendered from the symbolic schedule: one build for all sizes
    @staticmethod
    def usable(device):
        return device.type == "cpu" and compiler_works()

    def build(self, spec, dims):
        if not compiler_works():
            raise cache.BuildError("symcell: backend='cpp' needs a C++ compiler (c++ or g++) and ninja on PATH; "
                                   "install them, or use backend='reference'")
        ir = spec.ir
        if ir not in _built:  # one build per cell: dimensions, T and B are runtime arguments
            schedule, backward = spec.symbolic_schedule()
            source = _Renderer(schedule, backward).render()
            cflags, ldflags = _flags()
            _built[ir] = (source, cache.load(source, cflags, ldflags))
        source, ns = _built[ir]
        return CppKernel(source, ns, [dims[d] for d in ir.dims], (len(ir.outputs), len(ir.states)))


_compiler_ok = []


def compiler_works():
    """True when a C++ compiler and ninja are on this machine; warns once when not."""
    if not _compiler_ok:
        import shutil
        ok = shutil.which("c++") is not None or shutil.which("g++") is not None
        try:
            from torch.utils.cpp_extension import verify_ninja_availability
            verify_ninja_availability()
        except (RuntimeError, ImportError):
            ok = False
        if not ok:
            warnings.warn("symcell: no working C++ compiler or ninja found; backend='auto' uses the reference "
                          "backend on CPU (slower). Install g++ and ninja for the cpp backend.", stacklevel=3)
        _compiler_ok.append(ok)
    return _compiler_ok[0]
