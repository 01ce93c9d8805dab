// sc.cpp: the compiled half of symcell's C++ runtime (sc.h is the other: what a generated kernel inlines). The
// GEMMs, the packing of weights into panels and the operators' argument checks are the same for every cell, so
// they are compiled once per header text, flags and toolchain into an object that every cell's library links
// (build.py's RUNTIME): each generated unit compiled them again, half or more of a cell's build (an LSTM's units
// held ~95 KB of this code beside 32-90 KB of its own). Its text is part of every cell's cache key.
#include "sc.h"

#include <ATen/Context.h>
#include <ATen/native/CPUBlas.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

namespace sc __attribute__((visibility("hidden"))) {
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
// A step's GEMM too small to share: one thread runs it (waking the others for each step cost more than the
// products: B=1, H=32, T=10000 ran 4.6x slower on 2 threads than on 1, on the AMD EPYC; at H=128 1.2x)
inline bool few(int64_t M, int64_t N, int64_t K) { return M * N * K < (1 << 17); }
void mm_kn(int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, const double* B, int64_t ldb,
           bool acc, double* C, int64_t ldc) {
  if (mm_empty(M, N, K, acc, C, ldc)) return;
  blas('N', 'N', N, M, K, 1.0, B, ldb, A, lda, acc ? 1.0 : 0.0, C, ldc);
}
// A code path a variable forces: 1 (or true, on, yes, any case) or 0 (false, off, no); -1 where it is unset or
// empty. Any other value is refused, naming the variable: "=flase" silently meant neither. (The same rule as
// symcell/backends/cpp/build.py's forced, which reads SYMCELL_SCAN_COLUMNS for the row order.)
int forced(const char* variable) {
  const char* value = std::getenv(variable);
  if (value == nullptr || value[0] == '\0') return -1;
  std::string v(value);
  for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (v == "1" || v == "true" || v == "on" || v == "yes") return 1;
  if (v == "0" || v == "false" || v == "off" || v == "no") return 0;
  TORCH_CHECK_VALUE(false, "symcell: ", variable, "='", value, "' is not understood: set it to 1 (true, on, yes) or ",
                    "0 (false, off, no), or unset it");
  return -1;   // (not reached)
}
// every switch read at each operator call, whether or not this cell's code reaches it (a GRU has no sc::hoist):
// a bad value is refused alike
void check_switches() {
  for (const char* variable : {"SYMCELL_HOIST", "SYMCELL_DIRECT", "SYMCELL_SCAN_COLUMNS", "SYMCELL_BF16_PRODUCTS"})
    forced(variable);
}
// (ATen refuses the bfloat16 kernels where the CPU has no bfloat16 instructions, oneDNN is held to an ISA without
// them, or torch's oneDNN is off: products16_wanted asks only while it is on)
inline bool brgemm16_ok() {
  static const bool ok = [] {
    try {
      // [[1, 2], [3, 4]] @ [[1, 0], [2, 1]], B as a pair of rows: b00 b10 b01 b11
      bf16 a[4] = {1.f, 2.f, 3.f, 4.f}, b[4] = {1.f, 2.f, 0.f, 1.f};
      float c[4] = {0, 0, 0, 0};
      at::native::cpublas::brgemm(2, 2, 2, 2, 2, 2, false, a, b, c, true);
      at::native::cpublas::brgemm_release(true);
      return c[0] == 5 && c[1] == 2 && c[2] == 11 && c[3] == 4;
    } catch (...) {
      return false;
    }
  }();
  return ok;
}
bool products16_wanted(bool bf16_scan) {   // (torch's oneDNN switch read every call, as tall() reads it)
  return bf16_scan && forced("SYMCELL_BF16_PRODUCTS") != 0 && at::globalContext().userEnabledMkldnn() &&
  brgemm16_ok();
}
// dst[k, n] = src[n, k] for an (N, K) block of src (row stride lds) into dst (row stride ldd): the weights as
// the (K, N) operand of mm_kn, once per call. 8 x 8 tiles through AVX registers for float (from float, or from a
// 16-bit weight's values converted as they are read: row8): at the sizes of a cell's weights, a transposing copy
// through ATen costs as much as a few steps of the recurrence. (E: float, or bfloat16 for tiles of words, pairs of
// bfloat16 values, at any alignment: strides in E's)
// (the 8 rows as row(i), the 8 columns put(i, v))
template <typename Row, typename Put> inline void transpose8x8(const Row& row, const Put& put) {
  __m256 r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3), r4 = row(4), r5 = row(5), r6 = row(6), r7 = row(7);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
         t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
         t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
         u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
         u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
         u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  put(0, _mm256_permute2f128_ps(u0, u4, 0x20));
  put(1, _mm256_permute2f128_ps(u1, u5, 0x20));
  put(2, _mm256_permute2f128_ps(u2, u6, 0x20));
  put(3, _mm256_permute2f128_ps(u3, u7, 0x20));
  put(4, _mm256_permute2f128_ps(u0, u4, 0x31));
  put(5, _mm256_permute2f128_ps(u1, u5, 0x31));
  put(6, _mm256_permute2f128_ps(u2, u6, 0x31));
  put(7, _mm256_permute2f128_ps(u3, u7, 0x31));
}
template <typename E> inline void transpose8x8(const E* s, int64_t lds, E* d, int64_t ldd) {
  transpose8x8([&](int64_t i) { return _mm256_loadu_ps(reinterpret_cast<const float*>(s + i * lds)); },
               [&](int64_t i, __m256 v) { _mm256_storeu_ps(reinterpret_cast<float*>(d + i * ldd), v); });
}
// 8 values from p as float32 (exactly: a bfloat16 is a float32's upper half, vcvtph2ps converts a float16)
// (from_bf16, from_half: 8 such values' bits as float32; the AVX2 tiles' conversions too)
inline __m256 from_bf16(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
inline __m256 row8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 row8(const bf16* p) { return from_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
#ifdef __F16C__
inline __m256 from_half(__m128i h) { return _mm256_cvtph_ps(h); }
inline __m256 row8(const at::Half* p) { return from_half(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
#endif
// (whether the 8 x 8 tiles take S: without F16C a float16 weight's transpose converts value by value)
#ifdef __F16C__
template <typename S> constexpr bool tiles8 = true;
#else
template <typename S> constexpr bool tiles8 = !std::is_same_v<S, at::Half>;
#endif
// dst (T) = the transpose of src (S: T, or a 16-bit weight's values where T is float, converted)
template <typename S, typename T> void transpose(const S* src, int64_t lds, int64_t N, int64_t K, T* dst,
                                                int64_t ldd) {
  int64_t n8 = 0, k8 = 0;
  if constexpr (std::is_same_v<T, float> && tiles8<S>) {
    n8 = N / 8 * 8;
    k8 = K / 8 * 8;
    // each task writes whole rows of dst in order (rows of dst lie ldd apart: writing down a column of tiles
    // would touch 8 far-apart lines per tile); large weights split across threads
    at::parallel_for(0, k8 / 8, N * K >= (1 << 17) ? 1 : k8 / 8 + 1, [&](int64_t i0, int64_t i1) {
      for (int64_t k = i0 * 8; k < i1 * 8; k += 8)
        for (int64_t n = 0; n < n8; n += 8) {
          const S* s = src + n * lds + k;
          float* d = dst + k * ldd + n;
          transpose8x8([&](int64_t i) { return row8(s + i * lds); },
                       [&](int64_t i, __m256 v) { _mm256_storeu_ps(d + i * ldd, v); });
        }
    });
  }
  for (int64_t n = 0; n < N; ++n)        // what the tiles did not cover: the right columns and bottom rows
    for (int64_t k = (n < n8 ? k8 : 0); k < K; ++k) {
      if constexpr (std::is_same_v<S, T>) dst[k * ldd + n] = src[n * lds + k];
      else dst[k * ldd + n] = T(static_cast<float>(src[n * lds + k]));   // (a 16-bit value, exactly)
    }
}
template <typename T> void transpose(const T* src, int64_t lds, int64_t N, int64_t K, T* dst, int64_t ldd) {
  transpose<T, T>(src, lds, N, K, dst, ldd);
}
// d[0, n) = s[0, n) as float32 (S: float, or a 16-bit weight's values)
template <typename S> inline void to_float(const S* s, int64_t n, float* d) {
  if constexpr (std::is_same_v<S, float>) return (void)std::memcpy(d, s, sizeof(float) * n);
  int64_t j = 0;
  if constexpr (tiles8<S>)
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(d + j, row8(s + j));
  for (; j < n; ++j) d[j] = static_cast<float>(s[j]);
}
// rows [k0, k0 + K) of the panels of dst = the transpose of the (N, K) block of src (row stride lds; S: T, or a
// 16-bit weight's values for float panels)
template <typename S, typename T> inline void transpose_panels(const S* src, int64_t lds, int64_t N, int64_t K, T* dst,
                                                               int64_t ldp, int64_t k0) {
  const int64_t P = (N + PANEL - 1) / PANEL;
  at::parallel_for(0, P, N * K >= (1 << 17) ? 1 : P + 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t w = panel_width(N, p);
      transpose(src + p * PANEL * lds, lds, w, K, dst + p * ldp + k0 * w, w);
    }
  });
}
// the panels of dst = the (K, N) block of src (row stride lds) as it is: the weights of a transposed matmul;
// each panel Kp >= K rows (dst + p * Kp * PANEL), those past K zero (S: T, or a 16-bit weight's for float panels)
template <typename S, typename T> inline void copy_panels(const S* src, int64_t lds, int64_t K, int64_t N, T* dst,
                                                          int64_t Kp = -1) {
  const int64_t P = (N + PANEL - 1) / PANEL;
  if (Kp < K) Kp = K;
  at::parallel_for(0, P, N * K >= (1 << 17) ? 1 : P + 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t w = panel_width(N, p);
      T* panel = dst + p * Kp * PANEL;
      for (int64_t k = 0; k < K; ++k) {
        if constexpr (std::is_same_v<S, T>) std::memcpy(panel + k * w, src + k * lds + p * PANEL, sizeof(T) * w);
        else to_float(src + k * lds + p * PANEL, w, panel + k * w);
      }
      zero(panel + K * w, (Kp - K) * w);
    }
  });
}
// The tall GEMMs: a phase's, over all T*B rows (an input term before the loop, the operand and weight gradients
// after it). Through brgemm in blocks a core's caches hold, each thread its own blocks of C's rows: 2.0-2.4x the
// rate of MKL's sgemm on the AVX-512 EPYC, whose MKL takes its AVX2 code path on an AMD CPU (oneDNN's kernels
// choose by the ISA), and 1.1-1.2x with oneDNN held to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, the AVX2 EPYC's ISA):
// benchmarks/bench_tall_gemm.py. float64 stays on BLAS, and so does a call with few rows a thread (fewer than
// TALL_ROWS for mm_kn, which a step runs too, and in the time loop always (sc::in_loop); 16 for mm_nt and mm_tn,
// which only phases run), and every call when torch's oneDNN is off (torch.backends.mkldnn.enabled = False:
// ATen's brgemm then runs BLAS a block at a time). A step's mm_panels keeps its own paths (below). Like the
// step's GEMMs, these flush subnormal numbers to zero. The scratch a thread keeps for packed weights holds the
// largest it packed (16 MiB for an LSTM's W_ih at I = H = 1024), as workspace() does.
constexpr int64_t TALL_ROWS = 64;          // rows of A (of C) one brgemm call takes, at most
// whether `rows` (of A, or reduced over) run tall: every thread at least `least` of them
inline bool tall(int64_t rows, int64_t least = TALL_ROWS) {
  return brgemm_ok() && at::globalContext().userEnabledMkldnn() &&
         rows >= least * std::max<int64_t>(1, at::get_num_threads());
}
// the rows of a block: at most TALL_ROWS, in a number of blocks that is a multiple of the threads' (each thread
// a contiguous run of blocks: 130 rows in blocks of 64 gave one of two threads 128 of them), multiples of 8
inline int64_t tall_rows(int64_t M) {
  const int64_t nt = std::max<int64_t>(1, at::get_num_threads());
  const int64_t blocks = (M + TALL_ROWS * nt - 1) / (TALL_ROWS * nt) * nt;
  return std::max<int64_t>(8, ((M + blocks - 1) / blocks + 7) / 8 * 8);
}
// the reduction's block: a (TALL_ROWS, k) block of A and a (k, PANEL) block of a panel stay in L1/L2
inline int64_t tall_k(int64_t K) { return K <= 1024 ? K : 512; }
// a thread's scratch for the tall GEMMs' packed and transposed blocks (apart from workspace's slots, which the
// generated code holds across these calls)
inline float* scratch(int64_t numel) {
  static thread_local at::Tensor t;
  if (!t.defined() || t.numel() < numel) t = at::empty({numel}, at::kFloat);
  return t.data_ptr<float>();
}
// ... and its bfloat16 scratch (products16), two slots: a GEMM's B in pairs of rows, and its rows of A
inline bf16* scratch16(int slot, int64_t numel) {
  static thread_local at::Tensor t[2];
  if (!t[slot].defined() || t[slot].numel() < numel) t[slot] = at::empty({numel}, at::kBFloat16);
  return t[slot].data_ptr<bf16>();
}
inline int64_t even(int64_t k) { return (k + 1) / 2 * 2; }
// rows [0, R) of dst (row stride ldd) = those of src (K floats each, row stride lds) rounded to bfloat16 (to
// nearest, ties to even), then zeros to column Kp
inline void to_bf16(const float* src, int64_t lds, int64_t R, int64_t K, bf16* dst, int64_t ldd, int64_t Kp) {
  for (int64_t r = 0; r < R; ++r) {
    const float* s = src + r * lds;
    bf16* d = dst + r * ldd;
    int64_t k = 0;
#ifdef __AVX512BF16__
    for (; k + 16 <= K; k += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + k), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(s + k)));
#endif
    for (; k < K; ++k) d[k] = bf16(s[k]);
    for (; k < Kp; ++k) d[k] = bf16(0.f);
  }
}
// B for the bfloat16 brgemm (is_vnni): a (K, w) block in pairs of rows, element (k, j) at (k / 2) * 2w + 2j + k % 2
inline int64_t vnni_at(int64_t k, int64_t j, int64_t w) { return (k & ~int64_t(1)) * w + 2 * j + (k & 1); }
// d[2j] = a[j], d[2j + 1] = b[j] rounded to bfloat16, j < w: rows k and k + 1 of a block as a pair
inline void pair_of_rows(const float* a, const float* b, int64_t w, bf16* d) {
  int64_t j = 0;
#ifdef __AVX512BF16__
  for (; j + 16 <= w; j += 16) {   // (each pair one 32-bit lane: a's bits low, b's high)
    const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(a + j)));
    const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(b + j)));
    _mm512_storeu_si512(d + 2 * j, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
#endif
  for (; j < w; ++j) {
    d[2 * j] = bf16(a[j]);
    d[2 * j + 1] = bf16(b[j]);
  }
}
// ... of bfloat16 rows (a bfloat16 weight given as stored): their bits side by side
inline void pair_of_rows(const bf16* a, const bf16* b, int64_t w, bf16* d) {
  int64_t j = 0;
#ifdef __AVX512F__
  for (; j + 16 <= w; j += 16) {
    const __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j)));
    const __m512i hi = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j)));
    _mm512_storeu_si512(d + 2 * j, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
#endif
  for (; j < w; ++j) {
    d[2 * j] = a[j];
    d[2 * j + 1] = b[j];
  }
}
// rows [k0, k1) of a (., w) block (row k at src + k * ld; float or bfloat16) into its pairs of rows at d; a row
// whose partner is outside [k0, k1) is written alone (its partner's lane is another call's, or padding)
template <typename S> inline void pair_block(const S* src, int64_t ld, int64_t k0, int64_t k1, int64_t w, bf16* d) {
  int64_t k = k0;
  auto alone = [&](int64_t r) {
    for (int64_t j = 0; j < w; ++j) d[vnni_at(r, j, w)] = bf16(src[r * ld + j]);
  };
  if (k < k1 && (k & 1)) alone(k++);
  for (; k + 1 < k1; k += 2) pair_of_rows(src + k * ld, src + (k + 1) * ld, w, d + k * w);
  if (k < k1) alone(k);
}
// row r's lane of a block's pairs, zero
inline void zero_lane(int64_t r, int64_t w, bf16* d) {
  for (int64_t j = 0; j < w; ++j) d[vnni_at(r, j, w)] = bf16(0.f);
}
// the rows of a block's pairs from row K (odd: the lane of row K) to Kp, zero
inline void zero_pairs_from(int64_t K, int64_t Kp, int64_t w, bf16* d) {
  if (K & 1) zero_lane(K, w, d);
  zero(d + even(K) * w, (Kp - even(K)) * w);
}
// dst = the (K, N) block of B (row stride ldb; float or bfloat16) in panels of PANEL columns in pairs of rows,
// panel p at dst + p * Kp * PANEL (Kp >= even(K)), its rows from K zero
template <typename S> inline void vnni_panels(const S* B, int64_t ldb, int64_t K, int64_t N, bf16* dst, int64_t Kp = -1) {
  const int64_t P = (N + PANEL - 1) / PANEL;
  if (Kp < even(K)) Kp = even(K);
  at::parallel_for(0, P, N * K >= (1 << 17) ? 1 : P + 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t w = panel_width(N, p);
      pair_block(B + p * PANEL, ldb, 0, K, w, dst + p * Kp * PANEL);
      zero_pairs_from(K, Kp, w, dst + p * Kp * PANEL);
    }
  });
}
// rows [k0, k0 + K) of the panels at Bp (mm_panels' layout: ldp = Kt * PANEL) in pairs of rows at dst (panel p at
// dst + p * even(Kt) * PANEL); the lane past an odd Kt's last row zero
inline void pair_panels(const float* Bp, int64_t ldp, int64_t N, int64_t k0, int64_t K, bf16* dst) {
  const int64_t P = (N + PANEL - 1) / PANEL, Kt = ldp / PANEL;
  at::parallel_for(0, P, N * K >= (1 << 17) ? 1 : P + 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t w = panel_width(N, p);
      bf16* d = dst + p * even(Kt) * PANEL;
      pair_block(Bp + p * ldp, w, k0, k0 + K, w, d);
      if (k0 + K == Kt) zero_pairs_from(Kt, even(Kt), w, d);
    }
  });
}
// A weight given in bfloat16 (sc.h's weight), straight into the pairs of rows a GEMM in bfloat16 products reads:
// without the float32 copy and float panels they were made from before (a bfloat16 GRU's training step at H=1024
// B=64 T=4: 32-33 ms then, 24-29 now; BENCHMARKS.md). Rows [k0, k0 + K) of the pairs (panel p at
// d + p * even(Kt) * PANEL) = the transpose of the (N, K) block at src (row stride lds). Two rows of a pair both in
// the block are two neighbouring values of a row of src, one 32-bit word: those words are transposed 8 x 8 as
// floats' bits; a row alone (k0 odd, or the block's last) is written value by value. The lane past an odd Kt's last
// row zero, where the block ends there: a GEMM multiplies it by a zero column of the other operand, and what an
// earlier call left in the workspace there may be NaN (a module whose weights went NaN: 0 x NaN).
static void transpose_pairs16(const bf16* src, int64_t lds, int64_t N, int64_t K, bf16* d, int64_t Kt, int64_t k0) {
  const int64_t P = (N + PANEL - 1) / PANEL, lead = K > 0 ? k0 & 1 : 0, words = (K - lead) / 2;
  at::parallel_for(0, P, N * K >= (1 << 17) ? 1 : P + 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t w = panel_width(N, p), n8 = w / 8 * 8, c8 = words / 8 * 8;
      const bf16* s = src + p * PANEL * lds;
      bf16* dp = d + p * even(Kt) * PANEL;
      auto alone = [&](int64_t c) {   // src's column c: row k0 + c
        for (int64_t j = 0; j < w; ++j) dp[vnni_at(k0 + c, j, w)] = s[j * lds + c];
      };
      if (lead) alone(0);
      const bf16* s0 = s + lead;             // word c: columns lead + 2c and lead + 2c + 1 of s
      bf16* d0 = dp + (k0 + lead) * w;       // pair row c: at d0 + 2 * c * w, word j at 2 * j
      for (int64_t c = 0; c < c8; c += 8)
        for (int64_t j = 0; j < n8; j += 8) transpose8x8(s0 + j * lds + 2 * c, lds, d0 + 2 * (c * w + j), 2 * w);
      for (int64_t j = 0; j < w; ++j)
        for (int64_t c = j < n8 ? c8 : 0; c < words; ++c) std::memcpy(d0 + 2 * (c * w + j), s0 + j * lds + 2 * c, 4);
      if ((K - lead) & 1) alone(K - 1);
      if (k0 + K == Kt) zero_pairs_from(Kt, even(Kt), w, dp);
    }
  });
}
// C[M,N] (+)= A[M,K] @ B[K,N] in bfloat16 products, tall: B in pairs of rows (vnni_panels, Kp = even(K)); each
// thread rounds its blocks of A's rows
inline void mm_tall_panels16(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const bf16* Bv, bool acc,
                             float* C, int64_t ldc) {
  const int64_t P = (N + PANEL - 1) / PANEL, Ke = even(K), kb = tall_k(Ke), mb = tall_rows(M);
  at::parallel_for(0, (M + mb - 1) / mb, 1, [&](int64_t i0, int64_t i1) {
    FlushDenormals ftz;
    bf16* A16 = scratch16(1, mb * Ke);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r0 = i * mb, r1 = std::min(M, r0 + mb);
      to_bf16(A + r0 * lda, lda, r1 - r0, K, A16, Ke, Ke);
      for (int64_t k = 0; k < Ke; k += kb)
        for (int64_t p = 0; p < P; ++p) {
          const int64_t w = panel_width(N, p);
          at::native::cpublas::brgemm(r1 - r0, w, std::min(kb, Ke - k), Ke, w, ldc, acc || k > 0, A16 + k,
                                      Bv + p * Ke * PANEL + k * w, C + r0 * ldc + p * PANEL, true);
        }
    }
    at::native::cpublas::brgemm_release(true);
  });
}
// C[M,N] (+)= A[M,K] @ B[K,N], B rows [k0, k0 + K) of panels (mm_panels' layout), tall
inline void mm_tall_panels(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* Bp,
                           int64_t ldp, int64_t k0, bool acc, float* C, int64_t ldc) {
  const int64_t P = (N + PANEL - 1) / PANEL, kb = tall_k(K), mb = tall_rows(M);
  at::parallel_for(0, (M + mb - 1) / mb, 1, [&](int64_t i0, int64_t i1) {
    FlushDenormals ftz;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r0 = i * mb, r1 = std::min(M, r0 + mb);
      for (int64_t k = 0; k < K; k += kb)
        for (int64_t p = 0; p < P; ++p) {
          const int64_t w = panel_width(N, p);
          at::native::cpublas::brgemm(r1 - r0, w, std::min(kb, K - k), lda, w, ldc, acc || k > 0, A + r0 * lda + k,
                                      Bp + p * ldp + (k0 + k) * w, C + r0 * ldc + p * PANEL, false);
        }
    }
  });
}
// C[M,N] (+)= A[M,K] @ B[K,N], all row-major: B packed into panels once, then tall
// (in bfloat16 products: B, float or bfloat16, in pairs of rows)
template <typename S> inline void mm_tall_kn16(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                                               const S* B, int64_t ldb, bool acc, float* C, int64_t ldc) {
  bf16* Bv = scratch16(0, (N + PANEL - 1) / PANEL * PANEL * even(K));
  vnni_panels(B, ldb, K, N, Bv);
  mm_tall_panels16(M, N, K, A, lda, Bv, acc, C, ldc);
}
// (B float, or a 16-bit weight's values, converted as its panels are made: mm_kn16; a float16 one's products are
// float32's)
template <typename S> inline void mm_tall_kn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                                             const S* B, int64_t ldb, bool acc, float* C, int64_t ldc) {
  if constexpr (!std::is_same_v<S, at::Half>)
    if (products16()) return mm_tall_kn16(M, N, K, A, lda, B, ldb, acc, C, ldc);
  float* Bp = scratch((N + PANEL - 1) / PANEL * PANEL * K);
  copy_panels(B, ldb, K, N, Bp);
  mm_tall_panels(M, N, K, A, lda, Bp, K * PANEL, 0, acc, C, ldc);
}
// C[M,N] += A[K,M]^T @ B[K,N]: a weight gradient summed over K = T*B rows. brgemm has no transposed A: each
// thread its blocks of C's rows, and for each block of reduction rows it transposes its (kb, mb) blocks of A, and
// copies that block's rows of B into panels (B's rows as they are, 4 KiB apart at N = 1024, ran at half the rate
// with oneDNN held to AVX2), into its scratch (in cache). The last block of rows is padded with zeros to a
// multiple of 16, so a new T*B makes oneDNN generate no new kernel for its remainder (its kernels are cached by
// shape, per thread).
constexpr int64_t TALL_TN_K = 128;   // reduction rows a block holds (64 x 128 floats of A: 32 KiB)
// (products16: A's blocks rounded once transposed, B's rows in pairs)
inline void mm_tall_tn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                       bool acc, float* C, int64_t ldc) {
  const int64_t P = (N + PANEL - 1) / PANEL, mb = tall_rows(M);
  const bool pairs = products16();
  at::parallel_for(0, (M + mb - 1) / mb, 1, [&](int64_t i0, int64_t i1) {
    FlushDenormals ftz;
    float* At = scratch(mb * TALL_TN_K + P * PANEL * TALL_TN_K);
    float* Bp = At + mb * TALL_TN_K;   // (a multiple of 16 floats on: 64-byte aligned)
    bf16* A16 = pairs ? scratch16(1, mb * TALL_TN_K) : nullptr;
    bf16* Bv = pairs ? scratch16(0, P * PANEL * TALL_TN_K) : nullptr;
    for (int64_t k = 0; k < K; k += TALL_TN_K) {
      const int64_t kk = std::min(TALL_TN_K, K - k), kp = (kk + 15) / 16 * 16;
      // panel p: (kp, w) at Bp (Bv) + p * kp * PANEL, rows past kk zero
      if (pairs)
        vnni_panels(B + k * ldb, ldb, kk, N, Bv, kp);
      else
        copy_panels(B + k * ldb, ldb, kk, N, Bp, kp);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t m0 = i * mb, mm = std::min(mb, M - m0);
        transpose(A + k * lda + m0, lda, kk, mm, At, TALL_TN_K);   // At[m, r] = A[k + r, m0 + m]
        for (int64_t m = 0; m < mm; ++m) zero(At + m * TALL_TN_K + kk, kp - kk);
        if (pairs) to_bf16(At, TALL_TN_K, mm, kp, A16, kp, kp);
        const bool add = acc || k > 0;   // (assigning: the first block of reduction rows)
        for (int64_t p = 0; p < P; ++p) {
          const int64_t w = panel_width(N, p);
          if (pairs)
            at::native::cpublas::brgemm(mm, w, kp, kp, w, ldc, add, A16, Bv + p * kp * PANEL, C + m0 * ldc + p * PANEL,
                                        true);
          else
            at::native::cpublas::brgemm(mm, w, kp, TALL_TN_K, w, ldc, add, At, Bp + p * kp * PANEL,
                                        C + m0 * ldc + p * PANEL, false);
        }
      }
    }
    if (pairs) at::native::cpublas::brgemm_release(true);
  });
}
// C[M,N] (+)= A[K,M]^T @ B[K,N]; assigned (acc false), C is not read: a weight gradient's first GEMM writes it
// whole, where zeroing it first cost as much as the GEMM for a step's few rows
template <typename T> void mm_tn(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                                 int64_t ldb, bool acc, T* C, int64_t ldc) {
  if (mm_empty(M, N, K, acc, C, ldc)) return;
  if constexpr (std::is_same_v<T, float>) {
    // (the threads split C's rows: few of them run on BLAS)
    if (tall(K, 16) && tall(M, 16)) return mm_tall_tn(M, N, K, A, lda, B, ldb, acc, C, ldc);
  }
  blas('N', 'T', N, M, K, T(1), B, ldb, A, lda, acc ? T(1) : T(0), C, ldc);
}
// (sc.h says what mm_tn16 is for.) Where the call's products are bfloat16 (products16), one bfloat16 GEMM of the
// operands rounded (as mm_tall_tn rounds them), float32 sums rounded once into C: ATen's, which runs oneDNN's
// bfloat16 GEMM as nn's bfloat16 backward does (benchmarks/bench_weights16.py --train on the AVX512-BF16 EPYC: a
// training step of up to 128 rows 0.33-0.89x its time with float32 gradients for a GRU at H=512-1024, 0.41-0.98x
// for an LSTM). Where the operands rounded would take more memory than C's float32 sums (K(M + N) > 2MN: a long
// call's; at T=1024 B=64 an LSTM's at H=1024 would take 640 MiB), the same products into float32 sums by blocks
// (mm_tall_tn), rounded into C afterwards; so too without bfloat16 products (a float16 C's always), in float32 ones.
void mm_tn16f(int64_t M, int64_t N, const float* A, int64_t lda, int64_t K0, const float* B0, int64_t ldb0,
              int64_t K1, const float* B1, int64_t ldb1, Out16 C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  // (ATen's ops, dispatched, as libtorch exports no bfloat16 GEMM of its own: the caller's autocast is kept out of
  // them, which cast an at::mm under an autocast to float16 around the backward, NaN and zeros; out= variants are
  // not on its list today, and the output's row stride, a range of W's columns, needs one)
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  at::Tensor c = at::from_blob(C.p, {M, N}, {ldc, 1}, C.type);
  const int64_t K = K0 + K1;
  // (rounded as autograd's cast rounded a float32 gradient: ATen's)
  if (!products16() || C.type != at::kBFloat16 || K * (M + N) > 2 * M * N) {
    at::Tensor sums = at::empty({M, N}, at::kFloat);
    float* S = sums.data_ptr<float>();
    // (bfloat16 products: both parts tall, whatever their rows, as mm_tn would run a part of few rows, the
    // initial state's, on BLAS in float32 products)
    auto part = [&](int64_t Kp, const float* Ap, const float* Bp, int64_t ldb, bool acc) {
      if (!products16()) return mm_tn<float>(M, N, Kp, Ap, lda, Bp, ldb, acc, S, N);
      if (!mm_empty(M, N, Kp, acc, S, N)) mm_tall_tn(M, N, Kp, Ap, lda, Bp, ldb, acc, S, N);
    };
    part(K0, A, B0, ldb0, false);
    part(K1, A + K0 * lda, B1, ldb1, true);
    c.copy_(sums);
    return;
  }
  if (K == 0) {
    c.zero_();
    return;
  }
  at::Tensor a = at::empty({K, M}, at::kBFloat16), b = at::empty({K, N}, at::kBFloat16);
  bf16 *a16 = a.data_ptr<bf16>(), *b16 = b.data_ptr<bf16>();
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max(M, N));   // (rows a thread rounds, at least 64K values)
  at::parallel_for(0, K, grain, [&](int64_t k0, int64_t k1) {
    to_bf16(A + k0 * lda, lda, k1 - k0, M, a16 + k0 * M, M, M);
    for (int64_t k = k0; k < k1; ++k)
      to_bf16(k < K0 ? B0 + k * ldb0 : B1 + (k - K0) * ldb1, 0, 1, N, b16 + k * N, N, N);
  });
  at::mm_out(c, a.t(), b);
}
// a thread's float32 copy of a 16-bit weight for BLAS (a GEMM over many rows on it, not tall: mm_nt16, mm_kn16)
inline float* floats16(int64_t numel) {
  static thread_local at::Tensor t;
  if (!t.defined() || t.numel() < numel) t = at::empty({numel}, at::kFloat);
  return t.data_ptr<float>();
}
// rows [0, R) of W (row stride ldw, K values each; S: a 16-bit weight's) as float32, in floats16
template <typename S> inline const float* floats_of(const S* W, int64_t ldw, int64_t R, int64_t K) {
  float* f = floats16(R * K);
  at::parallel_for(0, R, std::max<int64_t>(1, 65536 / std::max<int64_t>(K, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) to_float(W + r * ldw, K, f + r * K);
  });
  return f;
}
// C[M,N] = A[M,K] @ W[N,K]^T: a weight as it is stored (the tall GEMMs before the loop: W transposed into
// panels once, then tall; W float, or a 16-bit weight's values converted as the panels are made, or for BLAS)
template <typename S, typename T> void mm_nt_rows(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
                                                  const S* W, int64_t ldw, T* C, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    if (tall(M, 16)) {
      float* Wp = scratch((N + PANEL - 1) / PANEL * PANEL * K);
      transpose_panels(W, ldw, N, K, Wp, K * PANEL, 0);
      if (products16()) {   // (the float panels, transposed by 8 x 8 tiles, then paired)
        bf16* Wv = scratch16(0, (N + PANEL - 1) / PANEL * PANEL * even(K));
        pair_panels(Wp, K * PANEL, N, 0, K, Wv);
        return mm_tall_panels16(M, N, K, A, lda, Wv, false, C, ldc);
      }
      return mm_tall_panels(M, N, K, A, lda, Wp, K * PANEL, 0, false, C, ldc);
    }
  }
  if constexpr (std::is_same_v<S, T>) blas('T', 'N', N, M, K, T(1), W, ldw, A, lda, T(0), C, ldc);
  else blas('T', 'N', N, M, K, 1.0f, floats_of(W, ldw, N, K), K, A, lda, 0.0f, C, ldc);
}
template <typename T> void mm_nt(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* W,
                                 int64_t ldw, T* C, int64_t ldc) {
  if (mm_empty(M, N, K, false, C, ldc)) return;
  mm_nt_rows(M, N, K, A, lda, W, ldw, C, ldc);
}
void mm_kn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
           bool acc, float* C, int64_t ldc) {
  if (mm_empty(M, N, K, acc, C, ldc)) return;
  if (!brgemm_ok()) {
    blas('N', 'N', N, M, K, 1.0f, B, ldb, A, lda, acc ? 1.0f : 0.0f, C, ldc);
    return;
  }
  const int64_t nt = std::max<int64_t>(1, at::get_num_threads());
  if (M >= TALL_ROWS * nt) {
    // a phase's: tall. A step's many rows a thread (a short call's backward, sc::direct_grads, multiplies by
    // the weights as stored): MKL's sgemm, as before the tall blocks, which would pack the weights every step
    if (!in_loop() && tall(M)) return mm_tall_kn(M, N, K, A, lda, B, ldb, acc, C, ldc);
    blas('N', 'N', N, M, K, 1.0f, B, ldb, A, lda, acc ? 1.0f : 0.0f, C, ldc);
    return;
  }
  // short (the recurrence): each thread a block of columns, multiples of 16
  const int64_t blocks = (N + 15) / 16, per = (blocks + nt - 1) / nt;
  at::parallel_for(0, nt, few(M, N, K) ? nt : 1, [&](int64_t t0, int64_t t1) {
    FlushDenormals ftz;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n0 = std::min(N, t * per * 16), n1 = std::min(N, (t + 1) * per * 16);
      if (n1 > n0) at::native::cpublas::brgemm(M, n1 - n0, K, lda, ldb, ldc, acc, A, B + n0, C + n0, false);
    }
  });
}
// The panels a step's GEMMs read (mm_panels: ldp = Kt * PANEL, (Kt, N) floats in all), where the products are in
// bfloat16 (products16) followed by the same in pairs of rows (panel p at p * even(Kt) * PANEL), from a multiple of
// 16 floats on. The float panels are kept: the GEMMs on an odd row or rows, and a call's first weights, read them.
inline int64_t pairs_from(int64_t Kt, int64_t N) { return (Kt * N + 15) / 16 * 16; }
int64_t step_panels_numel(int64_t Kt, int64_t N) {   // in floats (two bfloat16 a float)
  return products16() ? pairs_from(Kt, N) + ((N + PANEL - 1) / PANEL * PANEL * even(Kt) + 1) / 2 : Kt * N;
}
// (where the generated code wrote the float panels, through a pointer it hands on as const to the GEMMs)
template <typename T> inline bf16* panels16(const T* Bp, int64_t ldp, int64_t N) {
  return reinterpret_cast<bf16*>(const_cast<T*>(Bp) + pairs_from(ldp / PANEL, N));
}
// A term's rows left out of the panels (its product runs before the loop): where the term ends at an odd row, the
// pairs' lane of its last row zero, for a step's GEMM from the next row multiplies it by zero (mm_panels)
template <typename T> void clear_last_pairs(const T* Bp, int64_t ldp, int64_t N, int64_t k0, int64_t K) {
  if constexpr (std::is_same_v<T, float>) {
    const int64_t k = k0 + K - 1, Kt = ldp / PANEL, P = (N + PANEL - 1) / PANEL;
    if (!products16() || K == 0 || (k & 1) == 1) return;   // (an odd row ends a pair: no GEMM reads it alone)
    bf16* area = panels16(Bp, ldp, N);
    for (int64_t p = 0; p < P; ++p) zero_lane(k, panel_width(N, p), area + p * even(Kt) * PANEL);
  }
}
// transpose_panels and copy_panels for a step's panels (their pairs of rows too, where the products are bfloat16;
// S: T, or a 16-bit weight's values for float panels)
template <typename S, typename T> void transpose_step_panels(const S* src, int64_t lds, int64_t N, int64_t K, T* dst,
                                                            int64_t ldp, int64_t k0) {
  transpose_panels(src, lds, N, K, dst, ldp, k0);
  if constexpr (std::is_same_v<T, float>)
    if (products16()) pair_panels(dst, ldp, N, k0, K, panels16(dst, ldp, N));
}
template <typename T> void transpose_step_panels(const T* src, int64_t lds, int64_t N, int64_t K, T* dst,
                                                 int64_t ldp, int64_t k0) {
  transpose_step_panels<T, T>(src, lds, N, K, dst, ldp, k0);
}
template <typename S, typename T> void copy_step_panels(const S* src, int64_t lds, int64_t K, int64_t N, T* dst) {
  copy_panels(src, lds, K, N, dst);
  if constexpr (std::is_same_v<T, float>)
    if (products16()) pair_panels(dst, K * PANEL, N, 0, K, panels16(dst, K * PANEL, N));
}
template <typename T> void copy_step_panels(const T* src, int64_t lds, int64_t K, int64_t N, T* dst) {
  copy_step_panels<T, T>(src, lds, K, N, dst);
}
// C[M,N] (+)= A[M,K] @ B[K,N], B rows [k0, k0 + K) of the panels (sc.h's PANEL), A and C row-major. Short (a
// step): each thread a run of panels; tall: each thread its rows, panel by panel (products16: the pairs of rows
// after the panels, step_panels_numel above)
template <typename T> void mm_panels(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* Bp,
                                     int64_t ldp, int64_t k0, bool acc, T* C, int64_t ldc) {
  if (mm_empty(M, N, K, acc, C, ldc)) return;
  bool brgemm = false, pairs = false;
  const bf16* Bv = nullptr;
  bf16* A16 = nullptr;
  // products16: rows [k0, k0 + K) as whole pairs, from row k0 - lead (lead = 1 where k0 is odd) to Ke: the rows
  // outside the product times zero columns of A, and so finite. An odd k0 comes only from a step's GEMM after a
  // term that ran before the loop (render.py's panel_rest), whose last row's lane clear_last_pairs zeroes; a row
  // past k0 + K is only the zero lane past the panels' last (an odd Kt), so a product ending inside them at an odd
  // row (terms left out at run time: the tangent scans') stays float32
  const int64_t lead = k0 & 1, Ke = even(lead + K);
  if constexpr (std::is_same_v<T, float>) {
    brgemm = brgemm_ok();
    pairs = brgemm && products16() && (Ke == lead + K || k0 + K == ldp / PANEL);
    if (pairs) {
      A16 = scratch16(1, M * Ke);
      to_bf16(A, lda, M, K, A16 + lead, Ke, Ke - lead);
      if (lead)
        for (int64_t r = 0; r < M; ++r) A16[r * Ke] = bf16(0.f);
      Bv = panels16(Bp, ldp, N);
    }
  }
  auto panel = [&](int64_t p, int64_t r0, int64_t r1) {
    const int64_t w = panel_width(N, p);
    const T* b = Bp + p * ldp + k0 * w;
    T* c = C + r0 * ldc + p * PANEL;
    if constexpr (std::is_same_v<T, float>) {
      if (pairs) {
        at::native::cpublas::brgemm(r1 - r0, w, Ke, Ke, w, ldc, acc, A16 + r0 * Ke, Bv + p * even(ldp / PANEL) * PANEL +
                                    (k0 - lead) * w, c, true);
        return;
      }
      if (brgemm) {
        at::native::cpublas::brgemm(r1 - r0, w, K, lda, w, ldc, acc, A + r0 * lda, b, c, false);
        return;
      }
    }
    blas('N', 'N', w, r1 - r0, K, T(1), b, w, A + r0 * lda, lda, acc ? T(1) : T(0), c, ldc);
  };
  // (a step's rows, so the tall blocks are not for them: with weights past a core's L2, every 64-row block
  // would stream them again; the reduction in blocks of 512 was no faster, 3-7% slower at H = 1024)
  const int64_t nt = std::max<int64_t>(1, at::get_num_threads()), P = (N + PANEL - 1) / PANEL;
  if (M >= 64 * nt) {
    at::parallel_for(0, M, (M + nt - 1) / nt, [&](int64_t r0, int64_t r1) {
      FlushDenormals ftz;
      for (int64_t p = 0; p < P; ++p) panel(p, r0, r1);
      if (pairs) at::native::cpublas::brgemm_release(true);
    });
  } else {
    at::parallel_for(0, P, few(M, N, K) ? P : (P + nt - 1) / nt, [&](int64_t p0, int64_t p1) {
      FlushDenormals ftz;
      for (int64_t p = p0; p < p1; ++p) panel(p, 0, M);
      if (pairs) at::native::cpublas::brgemm_release(true);
    });
  }
}
// Whether a step's matmul runs its input terms (those on a sequence argument, x) before the loop, as one GEMM over
// all T*B rows, leaving only the recurrent terms in the step. With few rows a thread, a step's GEMM is bound by
// streaming the weights, and this halves the weights a step reads; with many, the step's GEMM is efficient and
// the hoisted one costs a pass over T*B*N more memory (benchmarks/bench_cpu.py --only hoist measures both). With
// bfloat16 products the step streams half the bytes, and the bound halves: hoisting took 0.81-0.94x the forward's
// time at 1-4 rows a thread, 1.06-1.11x at 8-12 (LSTM H=256-512 on the AVX512-BF16 EPYC, BENCHMARKS.md).
// SYMCELL_HOIST=0 or 1 forces it (read every call: tests and benchmarks set it).
bool hoist(int64_t B) {
  const int on = forced("SYMCELL_HOIST");
  return on >= 0 ? on == 1 : B < (products16() ? 8 : 16) * std::max<int64_t>(1, at::get_num_threads());
}
// Whether a call multiplies by its weights as stored, row-major (N, K), instead of copies made for it: transposed
// (a matmul x @ W^T), and in panels for the step. A copy is a pass over the weights per call that makes each step's
// GEMM faster; for a short call it does not pay. On the AMD EPYC (benchmarks/bench_direct.py, BENCHMARKS.md):
// - direct: a matmul x @ W^T as stored runs on BLAS's NT kernel, which beat the panels only for one row and one
//   step (a sampler's; LSTM B=1 T=1 forward 0.69-0.95x the time at H=64-1024), else it is up to 2.7x slower.
//   Where BLAS is MKL on an Intel CPU with AVX-512 (its own kernels for that CPU: on an AMD CPU MKL takes its AVX2
//   path, whatever the CPU has), the NT kernel beat the panels up to 16 rows in all on the Xeon (LSTM forward,
//   H=256-1024: T=1 B=4-16 0.43-1.04x the time, T=2 B=4-8 0.69-0.92x, T=4 B=4 0.86-0.96x; T=2 B=16 and T=4
//   B=8-16 up to 1.44x, session 32), so there a call of up to 16 rows in all (steps x batch) is direct;
// - direct_grads: a transposed matmul (a backward's d_h += d_gates @ W) as stored runs on the same brgemm, with W's
//   rows apart: faster up to 4 steps of up to 16 rows in all (0.67-0.98x at H=256-1024); with more rows, faster
//   where W's rows lie at most 2 KiB apart (H=256-512 in float32, B=8-64 T=1-4: 0.83-0.99x the backward's time),
//   slower where they lie 4 KiB apart (H=1024: 1.03-1.23x). Beyond 4 steps the copies pay (H=1024 T=16: 1.25x).
// SYMCELL_DIRECT=0 or 1 forces both (read every call: tests and benchmarks set it).
static bool blas_has_avx512_kernels() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool yes = at::hasMKL() && __builtin_cpu_is("intel") && __builtin_cpu_supports("avx512f");
  return yes;
#else
  return false;
#endif
}
// The vectors of the tiles on 16-bit weights as stored (mm_stored16, mm_kn16 below): AVX-512's 16 floats (SC_VEC
// 16: a 16-bit masked load is AVX512BW's and VL's), else AVX2's 8 (with FMA and F16C: an AMD EPYC of Zen 3 has no
// AVX-512; the loops' conversions there, not vectorised, made a bfloat16 call of 64 rows 1.6-2.0x slower than on
// float32 copies), else none (the loops)
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define SC_VEC 16
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define SC_VEC 8
#else
#define SC_VEC 0
#endif
#if SC_VEC == 16 && defined(__AVX512BF16__)
#define SC_DOT16 1
#else
#define SC_DOT16 0
#endif
// A call of up to ROWS16 rows in all on 16-bit weights (sc::weight) is direct, forward (mm_stored16) and backward
// (mm_kn16): it reads them as stored, where a longer one makes the copies its GEMMs read from them (the way before
// for every call: a float32 copy of them first, then those copies). ROWS16 is 128 with AVX-512, measured first up
// to 16 rows on the Xeon (benchmarks/bench_weights16.py, LSTM and GRU at H=256-1024, B=1-16: 0.14-0.92x the
// call's time with float32 copies, session 33); on the AVX512-BF16 EPYC
// (session 35), LSTM and GRU at H=256-1024, B=1-128, T=1-32: a call without a graph 0.43-0.92x the copies' time
// at 128 rows (0.75-1.12x at 256, 1.10-1.27x at 1024), a training step at 32-128 rows 0.53-1.01x the time with
// Python's float32 copies; in float32 products (SYMCELL_BF16_PRODUCTS=0) 0.29-1.06x and 0.73-1.11x. Without it
// 32: on the AVX2 EPYC (Zen 3, session 39; bfloat16 and float16 LSTM and GRU at H=256 and 1024 under no_grad, 16-64
// rows) 0.24-1.14x the copies' time up to 32 rows, 0.69-1.84x at 64, 0.83-1.98x at 128 (its tiles' 6 loads to 8
// FMAs do not keep up with BLAS's packed panels where the rows are many).
constexpr int64_t ROWS16 = SC_VEC == 16 ? 128 : 32;
bool direct(int64_t steps, int64_t batch, bool weights16) {
  const int on = forced("SYMCELL_DIRECT");
  if (on >= 0) return on == 1;
  if (weights16) return steps * batch <= ROWS16;
  return steps * batch <= (blas_has_avx512_kernels() ? 16 : 1);
}
bool direct_grads(int64_t steps, int64_t batch, int64_t row_bytes, bool weights16) {
  const int on = forced("SYMCELL_DIRECT");
  if (on >= 0) return on == 1;
  return weights16 ? steps * batch <= ROWS16 : steps <= 4 && (steps * batch <= 16 || row_bytes <= 2048);
}
// C[M,N] (+)= A[M,K] @ W[N,K]^T, W as stored: a matmul when the call reads its weights so (direct)
template <typename T> void mm_stored(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* W,
                                     int64_t ldw, bool acc, T* C, int64_t ldc) {
  if (mm_empty(M, N, K, acc, C, ldc)) return;
  blas('T', 'N', N, M, K, T(1), W, ldw, A, lda, acc ? T(1) : T(0), C, ldc);
}
// The short GEMMs on 16-bit weights as stored (sc.h's weight: a bfloat16 or float16 module's call on its weights as
// stored): W's values converted to float32 in registers as they are read (a bfloat16 is a float32's upper half, a
// float16 converts exactly: vcvtph2ps), float32 sums. Their products: float32's, or, where the call's products are
// bfloat16 (products16, as a longer call's panels multiply), A's rows rounded to bfloat16 first (rounded_rows), and
// then on an AVX512-BF16 CPU multiplied by vdpbf16ps (two products of bfloat16 pairs into each float32 sum: no
// conversion, half the instructions: SC_DOT16), elsewhere as float32 values, which the products of two bfloat16
// values are exactly. Their tiles (SC_VEC, above) run on AVX-512's or AVX2's vectors, else the loops.
// rows [0, M) of A (row stride lda, K floats) rounded to bfloat16, zero to an even length (the row stride): the
// calling thread's scratch16 slot 1
static const bf16* rounded_rows(int64_t M, int64_t K, const float* A, int64_t lda) {
  bf16* a = scratch16(1, M * even(K));
  to_bf16(A, lda, M, K, a, even(K), even(K));
  return a;
}
// f(a, lda') on A as the call's products want it: rounded (rounded_rows) where they are bfloat16, else as given
// (TW: the weight's element; a float16 weight's products are float32's, so its code takes float rows alone)
template <typename TW, typename F>
static void with_operand(int64_t M, int64_t K, const float* A, int64_t lda, const F& f) {
  if constexpr (std::is_same_v<TW, bf16>)
    if (products16()) return f(rounded_rows(M, K, A, lda), even(K));   // (read here: not in column_blocks' threads)
  f(A, lda);
}
static inline float value(float x) { return x; }
static inline float value(bf16 x) { return float(x); }   // (a bfloat16 is a float32's upper half)
static inline float value(at::Half x) { return float(x); }
// (GCC 12 kept a tile's array of sums on the stack, storing them every step of K, unless the loops over them are
// unrolled before it looks: so they are, explicitly)
#define SC_UNROLL _Pragma("GCC unroll 16")
// A vector's operations, on SC_VEC floats: the first n (any n >= 0) of p's values as float32 (the rest zero:
// load_n), the first n of v stored (store_n)
#if SC_VEC == 16
using vec = __m512;
static inline __mmask16 lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }
static inline vec load_n(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(lanes(n), p); }
static inline __m256i load_n16(const void* p, int64_t n) {
  return _mm256_maskz_loadu_epi16(lanes(n), static_cast<const uint16_t*>(p));
}
static inline void store_n(float* p, int64_t n, vec v) { _mm512_mask_storeu_ps(p, lanes(n), v); }
static inline vec from_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
static inline vec from_half(__m256i h) { return _mm512_cvtph_ps(h); }
static inline vec vzero() { return _mm512_setzero_ps(); }
static inline vec vset(float x) { return _mm512_set1_ps(x); }
static inline vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline vec vadd(vec a, vec b) { return _mm512_add_ps(a, b); }
static inline float vsum(vec v) { return _mm512_reduce_add_ps(v); }
#elif SC_VEC == 8
// (AVX2 has no 16-bit masked load: a row's last values go through a buffer)
using vec = __m256;
static inline vec load_n(const float* p, int64_t n) {
  if (n >= 8) return _mm256_loadu_ps(p);
  alignas(32) float t[8] = {};
  std::memcpy(t, p, sizeof(float) * std::max<int64_t>(n, 0));
  return _mm256_load_ps(t);
}
static inline __m128i load_n16(const void* p, int64_t n) {
  if (n >= 8) return _mm_loadu_si128(static_cast<const __m128i*>(p));
  alignas(16) uint16_t t[8] = {};
  std::memcpy(t, p, 2 * std::max<int64_t>(n, 0));
  return _mm_load_si128(reinterpret_cast<const __m128i*>(t));
}
static inline void store_n(float* p, int64_t n, vec v) {
  if (n >= 8) return _mm256_storeu_ps(p, v);
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  std::memcpy(p, t, sizeof(float) * std::max<int64_t>(n, 0));
}
static inline vec vzero() { return _mm256_setzero_ps(); }
static inline vec vset(float x) { return _mm256_set1_ps(x); }
static inline vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline vec vadd(vec a, vec b) { return _mm256_add_ps(a, b); }
static inline float vsum(vec v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}
#endif
#if SC_VEC
static inline vec load_n(const bf16* p, int64_t n) { return from_bf16(load_n16(p, n)); }
static inline vec load_n(const at::Half* p, int64_t n) { return from_half(load_n16(p, n)); }
// A tile's shape: up to 4 of A's rows by N of W's rows (mm_stored16) or N vectors of W's columns (mm_kn16), 4, its
// MR x N sums in as many chains of additions (each waits for the one before); but on AVX2 where A's rows are more
// than 2, 2, as 4 x 4 sums, 4 of W's vectors and one of A's would not fit in its 16 registers (measured on a Zen 3
// EPYC, a float16 LSTM at H=1024 under no_grad, N=4 against N=2 in one process: B=1 T=8 0.64x the time, B=2-3
// 0.98-1.0x, B=4-32 1.16-1.24x)
static inline int tile_n(int64_t M) { return SC_VEC == 8 && M > 2 ? 2 : 4; }
#endif
// C[M,N] (+)= A[M,K] @ W[N,K]^T, W 16-bit as stored. Each tile of NR of W's rows and up to 4 of A's adds the
// products of SC_VEC of a row's values at a time (32, in 16 pairs, with vdpbf16ps) into SC_VEC float32 sums, each
// reduced once at the end: W is read once for every 4 rows of A, from memory once in all where A's rows are few.
#if SC_VEC
template <int MR, int NR, typename TA, typename TW>
static inline void tile16(const TA* a, int64_t lda, const TW* w, int64_t ldw, int64_t K, bool acc, float* c,
                          int64_t ldc) {
  vec s[MR][NR];
  SC_UNROLL for (int i = 0; i < MR; ++i)
    SC_UNROLL for (int j = 0; j < NR; ++j) s[i][j] = vzero();
#if SC_DOT16
  if constexpr (std::is_same_v<TA, bf16> && std::is_same_v<TW, bf16>) {
    for (int64_t k = 0; k < K; k += 32) {
      const __mmask32 m = K - k >= 32 ? ~__mmask32(0) : __mmask32((uint32_t(1) << (K - k)) - 1);
      __m512bh v[NR];
      SC_UNROLL for (int j = 0; j < NR; ++j) v[j] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + j * ldw + k);
      SC_UNROLL for (int i = 0; i < MR; ++i) {
        const __m512bh x = (__m512bh)_mm512_maskz_loadu_epi16(m, a + i * lda + k);
        SC_UNROLL for (int j = 0; j < NR; ++j) s[i][j] = _mm512_dpbf16_ps(s[i][j], x, v[j]);
      }
    }
  } else
#endif
  {
    for (int64_t k = 0; k < K; k += SC_VEC) {
      vec v[NR];
      SC_UNROLL for (int j = 0; j < NR; ++j) v[j] = load_n(w + j * ldw + k, K - k);
      SC_UNROLL for (int i = 0; i < MR; ++i) {
        const vec x = load_n(a + i * lda + k, K - k);
        SC_UNROLL for (int j = 0; j < NR; ++j) s[i][j] = vfma(x, v[j], s[i][j]);
      }
    }
  }
  SC_UNROLL for (int i = 0; i < MR; ++i)
    SC_UNROLL for (int j = 0; j < NR; ++j) {
      const float r = vsum(s[i][j]);
      c[i * ldc + j] = acc ? c[i * ldc + j] + r : r;
    }
}
#endif
// (W's rows [n0, n1): those of whole tiles; -> where they end)
#if SC_VEC
template <int NR, typename TA, typename TW>
static int64_t stored16_tiles(int64_t M, int64_t n0, int64_t n1, int64_t K, const TA* A, int64_t lda, const TW* W,
                              int64_t ldw, bool acc, float* C, int64_t ldc) {
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) {
    const TW* w = W + n * ldw;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) tile16<4, NR>(A + m * lda, lda, w, ldw, K, acc, C + m * ldc + n, ldc);
    switch (M - m) {
      case 3: tile16<3, NR>(A + m * lda, lda, w, ldw, K, acc, C + m * ldc + n, ldc); break;
      case 2: tile16<2, NR>(A + m * lda, lda, w, ldw, K, acc, C + m * ldc + n, ldc); break;
      case 1: tile16<1, NR>(A + m * lda, lda, w, ldw, K, acc, C + m * ldc + n, ldc); break;
    }
  }
  return n;
}
#endif
// (W's rows [n0, n1))
template <typename TA, typename TW>
static void stored16_rows(int64_t M, int64_t n0, int64_t n1, int64_t K, const TA* A, int64_t lda, const TW* W,
                          int64_t ldw, bool acc, float* C, int64_t ldc) {
  int64_t n = n0;
#if SC_VEC
  if constexpr (SC_VEC == 8)   // (AVX-512's tiles are 4 wide at any M: no code for 2)
    if (tile_n(M) == 2) n = stored16_tiles<2>(M, n0, n1, K, A, lda, W, ldw, acc, C, ldc);
  if (n == n0) n = stored16_tiles<4>(M, n0, n1, K, A, lda, W, ldw, acc, C, ldc);
#endif
  for (; n < n1; ++n) {   // (without AVX2, and the last rows of W: a dot product the compiler vectorises)
    const TW* w = W + n * ldw;
    for (int64_t m = 0; m < M; ++m) {
      const TA* a = A + m * lda;
      float sum = 0;
      #pragma omp simd reduction(+ : sum)
      for (int64_t k = 0; k < K; ++k) sum += value(a[k]) * value(w[k]);
      C[m * ldc + n] = acc ? C[m * ldc + n] + sum : sum;
    }
  }
}
// f(n0, n1) on blocks of `width` of C's N columns across the threads, at least ~64K multiply-adds of an M x K by
// K x width product a task (fewer are not worth a thread's wake-up)
template <typename F> static void column_blocks(int64_t M, int64_t N, int64_t K, int64_t width, const F& f) {
  const int64_t blocks = (N + width - 1) / width;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, width * M * K));
  at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    FlushDenormals ftz;
    f(width * b0, std::min(N, width * b1));
  });
}
template <typename TW>
void mm_stored16(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const TW* W, int64_t ldw, bool acc,
                 float* C, int64_t ldc) {
  if (mm_empty(M, N, K, acc, C, ldc)) return;
  with_operand<TW>(M, K, A, lda, [&](const auto* a, int64_t ld) {
    column_blocks(M, N, K, 4, [&](int64_t n0, int64_t n1) { stored16_rows(M, n0, n1, K, a, ld, W, ldw, acc, C, ldc); });
  });
}
// A phase's GEMMs on a 16-bit weight as stored, over all T*B rows (x @ W^T before the loop: mm_nt16; d_x = d_g @
// W after it: mm_kn16): a bfloat16 one's past ROWS16 rows in bfloat16 products, tall, on the weight's pairs of rows
// made straight from it; up to ROWS16 (a direct call's) as before, the tiles above (their measured range). (A
// float16 weight is kept as stored only where the call is direct: sc::weight.)
static bool tall16(int64_t M, int64_t least) { return M > ROWS16 && products16() && !in_loop() && tall(M, least); }
// ... and where the rows are many but the products are not bfloat16 pairs, the float32 GEMMs' ways on the weight's
// values: converted as the tall GEMMs' panels are made, or a float32 copy for BLAS (floats_of)
template <typename TW> static bool wide16(int64_t M) {
  return M > ROWS16 && !in_loop() && !(std::is_same_v<TW, bf16> && products16());
}
template <typename TW>
void mm_nt16(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const TW* W, int64_t ldw, float* C,
             int64_t ldc) {
  if (mm_empty(M, N, K, false, C, ldc)) return;
  if constexpr (std::is_same_v<TW, bf16>) {
    if (tall16(M, 16)) {
      bf16* Wv = scratch16(0, (N + PANEL - 1) / PANEL * PANEL * even(K));
      transpose_pairs16(W, ldw, N, K, Wv, K, 0);
      return mm_tall_panels16(M, N, K, A, lda, Wv, false, C, ldc);
    }
  }
  if (wide16<TW>(M)) return mm_nt_rows(M, N, K, A, lda, W, ldw, C, ldc);
  mm_stored16(M, N, K, A, lda, W, ldw, false, C, ldc);
}
// A step's panels from a 16-bit weight as stored: a bfloat16 one's pairs of rows alone where mm_panels multiplies
// pairs (products16 and its brgemm; the float panels left unwritten: a first-order scan's step GEMMs, the whole
// of it or from a hoisted term's end, read the pairs alone), made straight from its values; else the float panels
// from its values, converted as they are copied (and paired where the products are bfloat16), where a float32
// copy of the weight was made first
static bool pairs16() { return products16() && brgemm_ok(); }
template <typename TW> void transpose_step_panels16(const TW* src, int64_t lds, int64_t N, int64_t K, float* dst,
                                                    int64_t ldp, int64_t k0) {
  if constexpr (std::is_same_v<TW, bf16>)
    if (pairs16()) return transpose_pairs16(src, lds, N, K, panels16(dst, ldp, N), ldp / PANEL, k0);
  transpose_step_panels(src, lds, N, K, dst, ldp, k0);
}
template <typename TW> void copy_step_panels16(const TW* src, int64_t lds, int64_t K, int64_t N, float* dst) {
  if constexpr (std::is_same_v<TW, bf16>)
    if (pairs16()) return vnni_panels(src, lds, K, N, panels16(dst, K * PANEL, N), even(K));
  copy_step_panels(src, lds, K, N, dst);
}
template void transpose_step_panels16(const bf16*, int64_t, int64_t, int64_t, float*, int64_t, int64_t);
template void transpose_step_panels16(const at::Half*, int64_t, int64_t, int64_t, float*, int64_t, int64_t);
template void copy_step_panels16(const bf16*, int64_t, int64_t, int64_t, float*);
template void copy_step_panels16(const at::Half*, int64_t, int64_t, int64_t, float*);
void transpose16(Ptr16 src, int64_t lds, int64_t N, int64_t K, float* dst, int64_t ldd) {
  src.visit([&](const auto* s) { transpose(s, lds, N, K, dst, ldd); });
}
// C[M,N] (+)= A[M,K] @ W[K,N], W 16-bit as stored: a backward's transposed matmul (d_h += d_gates @ W_hh, and
// d_x after the loop) on the weights a 16-bit module's call handed in as they are. Each tile of up to 4 of A's rows
// and NV vectors of W's columns (64 columns with AVX-512, 16 or 32 with AVX2) keeps its sums in registers while it
// runs down W's K rows, adding the products of a row's values with each of A's rows' value there; W is read once
// for every 4 rows of A.
#if SC_VEC
template <int MR, int NV, typename TA, typename TW>
static inline void tile_kn16(const TA* a, int64_t lda, const TW* w, int64_t ldw, int64_t K, int64_t width, bool acc,
                             float* c, int64_t ldc) {
  vec s[MR][NV];
  int64_t m[NV];   // (the columns of each vector in the tile)
  SC_UNROLL for (int j = 0; j < NV; ++j) {
    m[j] = std::clamp<int64_t>(width - SC_VEC * j, 0, SC_VEC);
    SC_UNROLL for (int i = 0; i < MR; ++i) s[i][j] = vzero();
  }
#if SC_DOT16
  if constexpr (std::is_same_v<TA, bf16> && std::is_same_v<TW, bf16> && NV == 4) {
    // vdpbf16ps multiplies pairs along K: rows k and k + 1 interleaved (unpacklo/hi within each 128-bit lane), so
    // s[i][2h] sums columns 32h + {0-3, 8-11, 16-19, 24-27} and s[i][2h + 1] the other four of each eight; a's
    // pair (a[k], a[k + 1]) one 32-bit value (rounded_rows: an even row length, zero past K)
    __mmask32 m32[2];
    SC_UNROLL for (int h = 0; h < 2; ++h)
      m32[h] = __mmask32((uint64_t(1) << std::clamp<int64_t>(width - 32 * h, 0, 32)) - 1);
    for (int64_t k = 0; k < K; k += 2) {
      const bf16* r0 = w + k * ldw;
      __m512bh v[4];
      SC_UNROLL for (int h = 0; h < 2; ++h) {
        const __m512i x0 = _mm512_maskz_loadu_epi16(m32[h], r0 + 32 * h);
        const __m512i x1 = k + 1 < K ? _mm512_maskz_loadu_epi16(m32[h], r0 + ldw + 32 * h) : _mm512_setzero_si512();
        v[2 * h] = (__m512bh)_mm512_unpacklo_epi16(x0, x1);
        v[2 * h + 1] = (__m512bh)_mm512_unpackhi_epi16(x0, x1);
      }
      SC_UNROLL for (int i = 0; i < MR; ++i) {
        int32_t bits;
        std::memcpy(&bits, a + i * lda + k, sizeof bits);
        const __m512bh x = (__m512bh)_mm512_set1_epi32(bits);
        SC_UNROLL for (int j = 0; j < 4; ++j) s[i][j] = _mm512_dpbf16_ps(s[i][j], x, v[j]);
      }
    }
    const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    SC_UNROLL for (int i = 0; i < MR; ++i)
      SC_UNROLL for (int h = 0; h < 2; ++h) {
        const __m512 lo = s[i][2 * h], hi = s[i][2 * h + 1];
        s[i][2 * h] = _mm512_permutex2var_ps(lo, first, hi);
        s[i][2 * h + 1] = _mm512_permutex2var_ps(lo, second, hi);
      }
  } else
#endif
  {
    for (int64_t k = 0; k < K; ++k) {
      const TW* row = w + k * ldw;
      vec v[NV];
      SC_UNROLL for (int j = 0; j < NV; ++j) v[j] = load_n(row + SC_VEC * j, m[j]);
      SC_UNROLL for (int i = 0; i < MR; ++i) {
        const vec x = vset(value(a[i * lda + k]));
        SC_UNROLL for (int j = 0; j < NV; ++j) s[i][j] = vfma(x, v[j], s[i][j]);
      }
    }
  }
  SC_UNROLL for (int i = 0; i < MR; ++i)
    SC_UNROLL for (int j = 0; j < NV; ++j) {
      float* out = c + i * ldc + SC_VEC * j;
      store_n(out, m[j], acc ? vadd(s[i][j], load_n(out, m[j])) : s[i][j]);
    }
}
#endif
// (W's columns [n0, n1))
#if SC_VEC
template <int NV, typename TA, typename TW>
static void kn16_tiles(int64_t M, int64_t n0, int64_t n1, int64_t K, const TA* A, int64_t lda, const TW* W,
                       int64_t ldw, bool acc, float* C, int64_t ldc) {
  for (int64_t n = n0; n < n1; n += NV * SC_VEC) {
    const int64_t width = std::min<int64_t>(NV * SC_VEC, n1 - n);
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) tile_kn16<4, NV>(A + m * lda, lda, W + n, ldw, K, width, acc, C + m * ldc + n, ldc);
    switch (M - m) {
      case 3: tile_kn16<3, NV>(A + m * lda, lda, W + n, ldw, K, width, acc, C + m * ldc + n, ldc); break;
      case 2: tile_kn16<2, NV>(A + m * lda, lda, W + n, ldw, K, width, acc, C + m * ldc + n, ldc); break;
      case 1: tile_kn16<1, NV>(A + m * lda, lda, W + n, ldw, K, width, acc, C + m * ldc + n, ldc); break;
    }
  }
}
#endif
template <typename TA, typename TW>
static void kn16_columns(int64_t M, int64_t n0, int64_t n1, int64_t K, const TA* A, int64_t lda, const TW* W,
                         int64_t ldw, bool acc, float* C, int64_t ldc) {
#if SC_VEC
  if constexpr (SC_VEC == 8)   // (AVX-512's tiles are 4 wide at any M: no code for 2)
    if (tile_n(M) == 2) return kn16_tiles<2>(M, n0, n1, K, A, lda, W, ldw, acc, C, ldc);
  kn16_tiles<4>(M, n0, n1, K, A, lda, W, ldw, acc, C, ldc);
#else   // (without AVX2: a row of C at a time, W's rows added into it, a loop the compiler vectorises)
  for (int64_t m = 0; m < M; ++m) {
    float* c = C + m * ldc;
    if (!acc) zero(c + n0, n1 - n0);
    for (int64_t k = 0; k < K; ++k) {
      const float a = value(A[m * lda + k]);
      const TW* w = W + k * ldw;
      #pragma omp simd
      for (int64_t n = n0; n < n1; ++n) c[n] += a * value(w[n]);
    }
  }
#endif
}
#undef SC_VEC
#undef SC_DOT16
#undef SC_UNROLL
template <typename TW>
void mm_kn16(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const TW* W, int64_t ldw, bool acc,
             float* C, int64_t ldc) {
  if (mm_empty(M, N, K, acc, C, ldc)) return;
  if constexpr (std::is_same_v<TW, bf16>) {
    if (tall16(M, TALL_ROWS)) return mm_tall_kn16(M, N, K, A, lda, W, ldw, acc, C, ldc);
  }
  if (wide16<TW>(M)) {
    if (!tall(M)) return mm_kn(M, N, K, A, lda, floats_of(W, ldw, K, N), N, acc, C, ldc);
    return mm_tall_kn(M, N, K, A, lda, W, ldw, acc, C, ldc);
  }
  with_operand<TW>(M, K, A, lda, [&](const auto* a, int64_t ld) {
    column_blocks(M, N, K, 64, [&](int64_t n0, int64_t n1) { kn16_columns(M, n0, n1, K, a, ld, W, ldw, acc, C, ldc); });
  });
}
template void mm_stored16(int64_t, int64_t, int64_t, const float*, int64_t, const bf16*, int64_t, bool, float*,
                          int64_t);
template void mm_stored16(int64_t, int64_t, int64_t, const float*, int64_t, const at::Half*, int64_t, bool, float*,
                          int64_t);
template void mm_kn16(int64_t, int64_t, int64_t, const float*, int64_t, const bf16*, int64_t, bool, float*, int64_t);
template void mm_kn16(int64_t, int64_t, int64_t, const float*, int64_t, const at::Half*, int64_t, bool, float*,
                      int64_t);
template void mm_nt16(int64_t, int64_t, int64_t, const float*, int64_t, const bf16*, int64_t, float*, int64_t);
template void mm_nt16(int64_t, int64_t, int64_t, const float*, int64_t, const at::Half*, int64_t, float*, int64_t);
// the weight argument `t` as a scan reads it: in 16 bits as stored where the library's dtype is float (every GEMM
// and panel copy reads it so: mm_stored16, mm_nt16, mm_kn16, transpose_step_panels16, copy_step_panels16, and
// transpose16); else in the library's dtype, a copy where it came in 16 bits (no scan's: expect_weight refuses a
// 16-bit weight of a float64 one). (A float32 copy of each weight, made here for a call not direct where the
// products were float32, took fresh memory twice a training step, forward and backward: a float16 LSTM's step at
// H=1024 B=16 T=4 1.17x its time with Python's copies, made once.)
template <typename T> Stored<T> weight(const at::Tensor& t) {
  if (!is16(t)) return {ptr<T>(t), {nullptr, false}};
  TORCH_CHECK((std::is_same_v<T, float>), "symcell: a ", t.scalar_type(), " weight of a ",
              c10::CppTypeToScalarType<T>::value, " scan");
  return {nullptr, {t.data_ptr(), t.scalar_type() == at::kHalf}};
}
// a per-thread buffer reused across calls (64-byte aligned by torch's allocator, which brgemm's loads want),
// freed when its thread ends: a server's short-lived threads each leaked theirs (held by a pointer never deleted,
// 2 MB a thread at H=256). The main thread's go at exit, before any static object's destructor (C++'s order for
// thread storage), so torch's allocator is still there.
at::Tensor& workspace(int slot, int64_t numel, const at::TensorOptions& opt) {
  static thread_local std::vector<at::Tensor> ws;
  if (ws.size() <= static_cast<size_t>(slot)) ws.resize(slot + 1);
  at::Tensor& t = ws[slot];
  if (!t.defined() || t.numel() < numel || t.dtype() != opt.dtype()) t = at::empty({numel}, opt);
  return t;
}
// An operator's tensor argument must be what its kernel reads: of these sizes, the kernel's dtype, contiguous, on
// the CPU (an undefined tensor, an absent cotangent or residual, passes). symcell's Python checks its inputs before
// any call; a deployed program (symcell.deploy) calls the operator with nothing in between.
template <typename scalar_t>
// (`origin` says where the sizes' T and B come from: the wrong tensor may be that one, the first sequence)
void expect(const at::Tensor& t, at::IntArrayRef sizes, const char* what, const char* origin, bool low_too) {
  if (!t.defined()) return;
  TORCH_CHECK_VALUE(t.sizes() == sizes, "symcell operator: ", what, origin, " must have sizes ", sizes, ", got ",
                    t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == c10::CppTypeToScalarType<scalar_t>::value ||
                   (low_too && std::is_same_v<scalar_t, float> && is16(t)), "symcell operator: ", what,
                   " must have the first sequence's dtype ", c10::CppTypeToScalarType<scalar_t>::value, ", got ",
                   t.scalar_type());
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), "symcell operator: ", what, " must be a contiguous CPU tensor");
}
void expect_lengths(const at::Tensor& lengths, int64_t batch, int64_t steps) {
  TORCH_CHECK_VALUE(lengths.numel() == 0 || (lengths.dim() == 1 && lengths.size(0) == batch && lengths.is_contiguous()
                    && lengths.scalar_type() == at::kLong && lengths.device().is_cpu()),
                    "symcell operator: lengths must be empty or a contiguous int64 CPU tensor of ", batch,
                    " values, got sizes ", lengths.sizes(), " of ", lengths.scalar_type());
  // (a deployed program checks its lengths here: Python's check ran once, when it was traced)
  const int64_t* v = lengths.numel() > 0 ? lengths.data_ptr<int64_t>() : nullptr;
  for (int64_t b = 0; v && b < batch; ++b)
    TORCH_CHECK_VALUE(v[b] >= 0 && v[b] <= steps, "symcell operator: lengths must lie in [0, T] = [0, ", steps,
                      "], got ", v[b], " for row ", b);
}
// The operator's tensors as its kernels read them: row-major, lengths int64. A program torch.export made passes
// a caller's strided input or int32 lengths as they come (it drops the module's .contiguous() and int64
// conversion), which the module itself takes; floats and bools stay, for expect_lengths to refuse.
std::vector<at::Tensor> contiguous(std::vector<at::Tensor> ts) {
  for (auto& t : ts)
    if (t.defined() && t.device().is_cpu()) t = t.contiguous();
  return ts;
}
at::Tensor as_lengths(const at::Tensor& t) {
  bool integral = at::isIntegralType(t.scalar_type(), /*includeBool=*/false);
  return t.numel() > 0 && t.device().is_cpu() && integral ? t.to(at::kLong).contiguous() : t;
}
// An argument list of the operator's must hold as many entries as its kernel reads (called by hand, it may not).
void expect_count(size_t n, size_t want, const char* what) {
  TORCH_CHECK_VALUE(n == want, "symcell operator: ", what, " must hold ", want, " entries, got ", n);
}
// An int[] argument off the operator's stack. AOTInductor's proxy executor hands an empty int[] over as None
// (torch 2.13: `"as_ints": []` in its node table), so None reads as the empty list.
std::vector<int64_t> int_list(const c10::IValue& v) {
  return v.isNone() ? std::vector<int64_t>{} : v.toIntVector();
}
at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) { return at::empty(sizes, options); }
at::Tensor zeros(at::IntArrayRef sizes, const at::TensorOptions& options) { return at::zeros(sizes, options); }

namespace {
// An operator as torch calls it: boxed, its arguments on the stack
struct Boxed final : c10::OperatorKernel {
  Operator op;
  std::string name;   // the schema's, for messages
  at::ScalarType dtype;
  size_t n_dims;
  Boxed(Operator o, at::ScalarType d, size_t n)
      : op(std::move(o)), name(std::string(op.schema).substr(0, std::string(op.schema).find('('))), dtype(d),
        n_dims(n) {}
  void operator()(const c10::OperatorHandle&, c10::DispatchKeySet, torch::jit::Stack* stack) {
    ThreadCount threads;   // (first: sc.h says why)
    check_switches();
    const size_t n = op.lists.size() + (op.has_save ? 5 : 4);
    auto in = torch::jit::last(*stack, n);
    Call call;
    size_t k = 0;
    for (const ListArg& a : op.lists) {
      call.lists.push_back(contiguous(in[k++].toTensorVector()));
      expect_count(call.lists.back().size(), a.count, a.name);
    }
    call.dims = int_list(in[k]);
    expect_count(call.dims.size(), n_dims, "dims");
    if (op.has_save) call.save = in[++k].toBool();
    const bool bf16_scan = in[k + 1].toBool();
    call.lengths = as_lengths(in[k + 2].toTensor());
    call.skip = int_list(in[k + 3]);
    const at::Tensor& t = call.lists[op.first.first][op.first.second];
    // (a call in another dtype is refused by name: its library is another build, as a deployed program ships it)
    TORCH_CHECK_TYPE(t.scalar_type() == dtype, "symcell operator ", name, ": ", op.lists[op.first.first].name, "[",
                     op.first.second, "] is ", t.scalar_type(), " but this library computes in ", dtype,
                     " (symcell builds a cell's library for each dtype it runs in: run or save the model in that "
                     "dtype)");
    FlushDenormals ftz;
    // (_bf16: the float32 tensors of a bfloat16 module's scan, sc.h's products16)
    SetFlag products(products16_flag(), products16_wanted(bf16_scan && t.scalar_type() == at::kFloat));
    std::vector<at::Tensor> out = op.scan(call);
    torch::jit::drop(*stack, n);
    torch::jit::push(*stack, c10::IValue(std::move(out)));
  }
};
}  // namespace

// what TORCH_LIBRARY and TORCH_LIBRARY_IMPL keep: their registrations last as long as the Library objects
struct Operators::Libraries {
  torch::Library defs, impls;
  Libraries(const char* ns, const char* file, uint32_t line)
      : defs(torch::Library::DEF, ns, std::nullopt, file, line),
        impls(torch::Library::IMPL, ns, c10::DispatchKey::CPU, file, line) {}
};
Operators::Operators(const char* ns, at::ScalarType dtype, size_t n_dims, std::vector<Operator> ops,
                     const char* file, uint32_t line)
    : libraries_(std::make_unique<Libraries>(ns, file, line)) {
  for (Operator& op : ops) {
    auto kernel = std::make_unique<Boxed>(std::move(op), dtype, n_dims);
    const std::string name = kernel->name;
    libraries_->defs.def(kernel->op.schema);
    libraries_->impls.impl(name.c_str(), torch::CppFunction::makeFromBoxedFunctor(std::move(kernel)));
  }
}
Operators::~Operators() = default;

// the instantiations generated code calls (float, and double for gradcheck)
#define SC_INSTANTIATE(T)                                                                                          \
  template void transpose<T>(const T*, int64_t, int64_t, int64_t, T*, int64_t);                                  \
  template void mm_tn<T>(int64_t, int64_t, int64_t, const T*, int64_t, const T*, int64_t, bool, T*, int64_t);     \
  template void mm_nt<T>(int64_t, int64_t, int64_t, const T*, int64_t, const T*, int64_t, T*, int64_t);           \
  template void mm_panels<T>(int64_t, int64_t, int64_t, const T*, int64_t, const T*, int64_t, int64_t, bool, T*,  \
                             int64_t);                                                                             \
  template void mm_stored<T>(int64_t, int64_t, int64_t, const T*, int64_t, const T*, int64_t, bool, T*, int64_t); \
  template void clear_last_pairs<T>(const T*, int64_t, int64_t, int64_t, int64_t);                                \
  template void transpose_step_panels<T>(const T*, int64_t, int64_t, int64_t, T*, int64_t, int64_t);             \
  template void copy_step_panels<T>(const T*, int64_t, int64_t, int64_t, T*);                                     \
  template void expect<T>(const at::Tensor&, at::IntArrayRef, const char*, const char*, bool);                   \
  template Stored<T> weight<T>(const at::Tensor&);
SC_INSTANTIATE(float)
SC_INSTANTIATE(double)
#undef SC_INSTANTIATE
}  // namespace sc
