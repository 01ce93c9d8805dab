// sc.h: the hand-written runtime of symcell's generated C++ (the cpp backend). Every generated kernel includes
// it: what a kernel inlines is here (the pointwise functions, the loops' helpers), the rest is declared here and
// compiled once in sc.cpp. The texts of both are part of the build cache's key. The pointwise functions'
// derivative rules are in symcell/functions.py, which also says how each is spelt here.
#pragma once
// Only the torch headers a generated unit needs: the Tensor class, at::parallel_for. ATen's ops (at::empty) and
// torch/library.h (the registration) instantiate their templates in every unit that includes them, precompiled or
// not: 1.0-1.2 s of a unit's build, each of a cell's two (an empty unit 1.2 -> 0.4 s on the Xeon). They are used in
// sc.cpp, compiled once: sc::empty and sc::zeros, sc::Operators.
#include <ATen/Config.h>
#include <ATen/core/Tensor.h>
#include <ATen/Parallel.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
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

extern "C" {  // Fortran BLAS and thread counts of the MKL inside libtorch_cpu (Fortran's interface: arguments by
              // address; the C names it exports take them so too there, unlike MKL's C header)
#if AT_MKL_ENABLED()
int mkl_get_max_threads_();
int mkl_set_num_threads_local_(const int*);
#endif
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*);
}

#include <bit>
#include <type_traits>
#include <immintrin.h>

// The pointwise functions are inlined whatever the size of the loop they are in: a call left out of line keeps
// the whole `omp simd` region scalar (a 16-output sLSTM region ran its exp_f32 as calls)
#define SC_INLINE inline __attribute__((always_inline))

// Hidden: every library symcell builds has its own copy of these functions and of their statics (a thread's
// workspace, brgemm_ok's result). Exported, the dynamic loader bound them across libraries (a function-local
// static is a unique symbol process-wide), so a library built from another version of this header read one
// object as two layouts: a process that loaded deployed programs saved by two symcell versions crashed.
namespace sc __attribute__((visibility("hidden"))) {
// float e^x in plain arithmetic, so `omp simd` loops vectorize it without a library call:
// e^x = 2^n e^r, n = round(x log2 e), r = x - n ln2 (ln2 in two parts), |r| <= ln2/2, e^r by Taylor to r^7
// (truncation r^8/8! < 6e-9, under half an ulp). 2^n is built in the exponent bits as 2^(n-1) * 2 so that
// n = 128 (x up to 88.72) stays finite. Below -86.6 the result is flushed to 0 (true value < 2.4e-38).
SC_INLINE float exp_f32(float x) {
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
SC_INLINE float tanh_f32(float x) {
  const float a = std::fabs(x), x2 = x * x;
  const float small = x * (1.0f + x2 * (-0.333333333f + x2 * (0.133333333f + x2 * (-0.0539682540f +
                                                                                   x2 * 0.0218694885f))));
  const float big = std::copysign(1.0f - 2.0f / (exp_f32(2.0f * a) + 1.0f), x);
  return a < 0.3f ? small : big;
}

// the pointwise functions; derivative rules are in symcell/functions.py. float uses the arithmetic versions
// above; double uses libm (vectorized by libmvec where available), where accuracy is what matters
template <typename T> SC_INLINE T exp(T x) {
  if constexpr (std::is_same_v<T, float>) return exp_f32(x); else return std::exp(x);
}
// (the kernels read a subnormal number as 0, their comparisons too: its log is -inf, as 0's. glibc's vector log
// read the subnormal's bits instead, and gave -103.97 for 1e-40 in float, where torch gives -92.10)
template <typename T> SC_INLINE T log(T x) { return x == T(0) ? -std::numeric_limits<T>::infinity() : std::log(x); }
template <typename T> SC_INLINE T sigmoid(T x) { return T(1) / (T(1) + sc::exp(-x)); }   // exp(1e4) = inf -> 0
template <typename T> SC_INLINE T tanh(T x) {
  if constexpr (std::is_same_v<T, float>) return tanh_f32(x); else return std::tanh(x);
}
template <typename T> SC_INLINE T relu(T x) { return x < T(0) ? T(0) : x; }               // NaN stays NaN
template <typename T> SC_INLINE T step(T x) { return x > T(0) ? T(1) : T(0); }            // relu'(0) = 0
template <typename T> SC_INLINE T elu(T x) { return x > T(0) ? x : std::expm1(x); }
template <typename T> SC_INLINE T elu_grad(T x) { return x > T(0) ? T(1) : sc::exp(x < T(0) ? x : T(0)); }
// log(1 + u) for float u in [0, 1] in plain arithmetic (libm's log1pf does not vectorize): 2 atanh(s) with
// s = u / (2 + u) in [0, 1/3], by its odd series to s^15 (the next term is under 1e-9 of the result); exact
// for tiny u, where 1 + u would round
SC_INLINE float log1p_unit_f32(float u) {
  const float s = u / (2.0f + u), s2 = s * s;
  float p = 1.0f / 15.0f;
  p = p * s2 + 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}
template <typename T> SC_INLINE T softplus(T x) {   // above 20, x: torch's threshold
  if constexpr (std::is_same_v<T, float>)        // log(1 + e^x) = max(x, 0) + log(1 + e^-|x|)
    return x > 20.0f ? x : (x > 0.0f ? x : 0.0f) + log1p_unit_f32(exp_f32(-std::fabs(x)));
  else return x > T(20) ? x : std::log1p(sc::exp(x));
}
template <typename T> SC_INLINE T silu(T x) { return x * sc::sigmoid(x); }
template <typename T> SC_INLINE T gelu(T x) { return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752))); }
template <typename T> SC_INLINE T sign(T x) { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)); }   // sign(0) = 0
template <typename T> SC_INLINE T hardtanh(T x) { return x < T(-1) ? T(-1) : (x > T(1) ? T(1) : x); }
template <typename T> SC_INLINE T hardsigmoid(T x) {
  return x <= T(-3) ? T(0) : (x >= T(3) ? T(1) : (x + T(3)) / T(6));
}
// Functions of two or three operands, one of which may be an integer literal (maximum(x, 0)): they compute in
// the operands' common type. A condition is 0 or 1 in that type, as the derivative rules read it.
template <typename A, typename B> using num_t = std::common_type_t<A, B>;
template <typename A, typename B> SC_INLINE num_t<A, B> gt(A a, B b) { return a > b ? 1 : 0; }
template <typename A, typename B> SC_INLINE num_t<A, B> ge(A a, B b) { return a >= b ? 1 : 0; }
template <typename A, typename B> SC_INLINE num_t<A, B> lt(A a, B b) { return a < b ? 1 : 0; }
template <typename A, typename B> SC_INLINE num_t<A, B> le(A a, B b) { return a <= b ? 1 : 0; }
template <typename A, typename B> SC_INLINE num_t<A, B> eq(A a, B b) { return a == b ? 1 : 0; }
template <typename C, typename A, typename B> SC_INLINE std::common_type_t<C, A, B> where(C c, A a, B b) {
  return c != C(0) ? std::common_type_t<C, A, B>(a) : std::common_type_t<C, A, B>(b);
}
// NaN in either operand is NaN out, as torch.maximum / torch.minimum
template <typename A, typename B> SC_INLINE num_t<A, B> maximum(A a, B b) { return a > b || a != a ? a : b; }
template <typename A, typename B> SC_INLINE num_t<A, B> minimum(A a, B b) { return a < b || a != a ? a : b; }
template <typename A, typename B> SC_INLINE num_t<A, B> clamp_min(A x, B lo) { return x < lo ? lo : x; }
template <typename A, typename B> SC_INLINE num_t<A, B> clamp_max(A x, B hi) { return x > hi ? hi : x; }

// What every operator sets up first: the calling thread's count of threads, as torch keeps it. ATen's
// at::parallel_for is inline, and with it the per-thread flag that says a thread's OpenMP count is set up
// (at::internal::lazy_init_num_threads): this library has its own copy of the flag (libtorch's is hidden in
// libtorch), so its first parallel_for in a thread set the thread's count again, to torch's process-wide one,
// mid-call. A thread kept at 2 while another set 8 (a backward on autograd's or a server's thread) sized its
// per-thread partial sums for 2, then ran 8: heap corruption, a gradient's partials lost; and every first call
// in a thread changed the thread's count, where nn.LSTM's leaves it. So the flag is set here, first, and the
// thread's own count put back.
// (at::init_num_threads also sets MKL's count for the thread, mkl_set_num_threads_local: put back too, or the
// thread's BLAS calls, this library's and torch's, ran with torch's global count)
struct ThreadCount {
  ThreadCount() {
#ifdef _OPENMP
    // (once a thread: the flag stays set after, and later calls, a cell's every step among them, need nothing)
    static thread_local bool set_up = false;
    if (set_up) return;
    set_up = true;
    const int n = static_cast<int>(at::get_num_threads());   // this thread's, set up by libtorch as torch does
#if AT_MKL_ENABLED()
    const int blas = mkl_get_max_threads_();
#endif
    at::internal::lazy_init_num_threads();                     // this library's flag: may reset the counts
    omp_set_num_threads(n);
#if AT_MKL_ENABLED()
    mkl_set_num_threads_local_(&blas);
#endif
#endif
  }
};
// denormals make saturated cells 10-100x slower; every thread that computes flushes them to zero
struct FlushDenormals {
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }   // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved); }
};

// C[M,N] (+)= A[M,K] @ B[K,N], all row-major; K = 0 (every term left out) adds nothing, or assigns zeros
template <typename T> inline bool mm_empty(int64_t M, int64_t N, int64_t K, bool acc, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return true;
  if (K > 0) return false;
  if (!acc)
    for (int64_t r = 0; r < M; ++r) std::memset(C + r * ldc, 0, sizeof(T) * N);
  return true;
}
// rows [0, R) of a pointwise region, split across threads only when there is enough work to pay for it
template <typename F> inline void rows(int64_t R, int64_t n, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 2048 / std::max<int64_t>(n, 1));
  at::parallel_for(0, R, grain, [&](int64_t r0, int64_t r1) { FlushDenormals ftz; f(r0, r1); });
}
// A code path a variable forces: 1 (or true, on, yes, any case) or 0 (false, off, no); -1 where it is unset or
// empty. Any other value is refused, naming the variable.
int forced(const char* variable);
// every switch read at each operator call, whether or not this cell's code reaches it: a bad value is refused alike
void check_switches();
// ---- bfloat16 products -----------------------------------------------------------------------------------------
// A bfloat16 module's scan runs in float32 (its state, every sum and every pointwise value). Where its operator is
// told so (_bf16: every parameter is bfloat16, so its weights are exact in bfloat16), its float32 GEMMs over many
// rows (a step's, and those over all T*B rows) multiply their operands rounded to bfloat16, accumulating in
// float32, through oneDNN's bfloat16 brgemm, which reads B in pairs of rows (VNNI): twice float32's rate on an
// AVX512-BF16 CPU, more with AMX. nn.LSTM's bfloat16 kernels round so too (and keep h itself in bfloat16).
// SYMCELL_BF16_PRODUCTS=0 keeps such a scan's products in float32 (read at each call).
using bf16 = at::BFloat16;
// Whether this thread's GEMMs multiply in bfloat16: the operator sets it for its call (SetFlag), scan_rows in
// the threads it runs the loop on. Read where a GEMM is called, never inside the body of an at::parallel_for (its
// other threads have their own: a GEMM decides before it splits).
inline bool& products16_flag() {
  static thread_local bool on = false;
  return on;
}
inline bool products16() { return products16_flag(); }
// a thread's flag (products16_flag, in_loop) set for a scope, and put back after it
struct SetFlag {
  bool& flag;
  bool before;
  SetFlag(bool& f, bool on) : flag(f), before(f) { f = on; }
  ~SetFlag() { flag = before; }
};
// whether a call's GEMMs multiply in bfloat16: a bfloat16 module's scan, SYMCELL_BF16_PRODUCTS not 0, torch's
// oneDNN on, and its bfloat16 brgemm working here
bool products16_wanted(bool bf16_scan);
// Whether a cell's weights are too many for each thread to stream them all every step: then the threads share each
// step's work (a GEMM's panels, a region's rows; a barrier each) rather than each running all steps of its own
// rows. weight_bytes: all the cell's weight matrices, in the scalar type the kernel runs (a measure of what a step
// streams, which is less: the recurrent weights alone where the input term runs before the loop, none that only a
// phase reads; the same for all of a cell's scans, and simple for the row order to mirror). On the AVX-512 EPYC (L2
// 1 MiB a core, L3 32 MiB; bench_cpu.py --only split), the LSTM's time with each step shared over its time with
// the rows split: forward 0.84-0.88 and forward+backward 0.89-0.94 at H=1024 (32 MiB of weights, B=8-64), 0.92-1.01
// at 12.5-18 MiB, but 0.92-1.04 at 8 MiB and 1.04-1.17 at 2-4.5 MiB (the barriers cost more than they save). On
// an Intel Xeon with AMX (L2 2 MiB a core): 0.75-1.02 forward and 0.83-0.98 forward+backward at 8 MiB (B=8-64),
// 0.97-0.99 / 0.94-0.95 at 4.5-6 MiB, 0.99-1.02 / 0.96-1.03 at 2 MiB. So from 8 MiB (an LSTM at H = I = 512 in
// float32), where the EPYC is even and the Xeon gains; below, the EPYC loses more than the Xeon would gain.
// SYMCELL_SCAN_COLUMNS=0 or 1 forces it (read every call; CppBackend.row_order reads it too).
constexpr int64_t SCAN_COLUMNS_FROM = int64_t(8) << 20;   // bytes: this many or more shares each step
inline bool scan_columns(int64_t weight_bytes) {
  const int on = forced("SYMCELL_SCAN_COLUMNS");
  return on >= 0 ? on == 1 : weight_bytes >= SCAN_COLUMNS_FROM;
}
// Whether this thread runs a time loop's step: a step's GEMMs, however many rows, never pack weights per call (the
// tall blocks' way), which every step would repeat
inline bool& in_loop() {
  static thread_local bool on = false;
  return on;
}
// the time loop over batch rows [b0, b1): rows never interact in a recurrence, so with enough rows each thread
// runs the whole sequence on its own slice (no synchronisation per step, its GEMM outputs stay in its cache);
// with few rows, or weights too many for each thread to stream them every step (scan_columns), one thread runs
// the loop and the GEMMs and regions inside split their work instead. (The row order for mixed lengths,
// CppBackend.row_order in symcell/backends/cpp/__init__.py, follows the same rule.)
template <typename F> inline void scan_rows(int64_t B, int64_t weight_bytes, const F& f) {
  const int64_t nt = at::get_num_threads();
  if (nt > 1 && B >= 4 * nt && !scan_columns(weight_bytes)) {
    const bool p16 = products16();
    at::parallel_for(0, B, (B + nt - 1) / nt, [&](int64_t b0, int64_t b1) {
      FlushDenormals ftz;
      SetFlag products(products16_flag(), p16), loop(in_loop(), true);
      f(b0, b1);
    });
  } else {
    SetFlag loop(in_loop(), true);
    f(0, B);
  }
}
// The recurrence's weights in panels: the (K, N) operand of a step's GEMM stored as ceil(N / PANEL) panels of
// PANEL columns, panel p a contiguous (K, w_p) block at Bp + p * ldp (w_p = PANEL but the last; ldp >= K * PANEL
// leaves room for the largest K of the matmul's terms). The microkernel then streams contiguous rows of its
// panel instead of rows 4 KiB apart: 2.2-2.7x one thread's rate at a step's shapes on the AVX2 EPYC
// (benchmarks/bench_brgemm_layout.py). 32 columns are two AVX-512 or four AVX2 registers wide.
constexpr int64_t PANEL = 32;
inline int64_t panel_width(int64_t N, int64_t p) { return std::min(PANEL, N - p * PANEL); }
template <typename T> inline void zero(T* p, int64_t n) { if (n > 0) std::memset(p, 0, sizeof(T) * n); }
// ---- compiled once, in sc.cpp (where each says what it does and why) ------------------------------------------
// The GEMMs, row-major: C[M,N] (+)= A[M,K] @ B[K,N] (mm_kn: a step's, or a phase's over all T*B rows);
// C[M,N] (+)= A[K,M]^T @ B[K,N] (mm_tn: a weight's gradient); C[M,N] = A[M,K] @ W[N,K]^T (mm_nt: W as stored, the
// phases before the loop); C (+)= A @ W^T, W as stored (mm_stored: a call that reads its weights so, direct);
// C (+)= A @ B, B rows [k0, k0 + K) of a step's panels (mm_panels).
void mm_kn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, bool acc,
           float* C, int64_t ldc);
void mm_kn(int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, const double* B, int64_t ldb, bool acc,
           double* C, int64_t ldc);
template <typename T> void mm_tn(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
                                 bool acc, T* C, int64_t ldc);
template <typename T> void mm_nt(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* W, int64_t ldw,
                                 T* C, int64_t ldc);
template <typename T> void mm_stored(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* W,
                                     int64_t ldw, bool acc, T* C, int64_t ldc);
template <typename T> void mm_panels(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* Bp,
                                     int64_t ldp, int64_t k0, bool acc, T* C, int64_t ldc);
// ---- 16-bit weights read as stored -----------------------------------------------------------------------------
// A bfloat16 or float16 module's call hands the forward and the backward its weight matrices in its dtype where they
// read them only as a matmul's (a transposed matmul's) weights (sequence.py's _weights16, Kernel.weights16; every
// other tensor is a float32 copy). A call on its weights as stored (direct, direct_grads) multiplies them so, as
// they are read (mm_stored16, mm_kn16: half float32's bytes from memory, and no float32 copy made first, which took
// more time than the step). A longer call makes the copies its GEMMs read from them: in bfloat16 products the
// panels' pairs of rows and its tall GEMMs' straight from a bfloat16 weight, else float panels converted from its
// values as they are made (transpose_step_panels16, copy_step_panels16, mm_nt16, mm_kn16). Their sums are float32's;
// their products bfloat16 ones where the call's are (products16: the other operand rounded, as the panels' GEMMs
// round it), else float32's.
struct Ptr16 {   // a 16-bit weight's values: bfloat16, or float16 where `is_half` (two bytes each: offsets alike)
  const void* p;
  bool is_half;
  explicit operator bool() const { return p != nullptr; }
  Ptr16 operator+(int64_t off) const { return {p ? static_cast<const uint16_t*>(p) + off : nullptr, is_half}; }
  template <typename F> void visit(const F& f) const {   // f(the values, typed)
    if (is_half) f(static_cast<const at::Half*>(p));
    else f(static_cast<const bf16*>(p));
  }
};
template <typename T> struct Stored {   // a weight matrix (from a column on) as a GEMM reads it as stored
  const T* p;                           // float weights, or
  Ptr16 p16;                            // 16-bit ones (p null)
  Stored operator+(int64_t off) const { return {p ? p + off : nullptr, p16 + off}; }
};
// a weight argument as the GEMMs read it: as given (a 16-bit one where T is float: expect_weight refuses it else)
template <typename T> Stored<T> weight(const at::Tensor& t);
inline bool is16(const at::Tensor& t) { return t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf; }
template <typename W>
void mm_stored16(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const W* w, int64_t ldw, bool acc,
                 float* C, int64_t ldc);
template <typename T> inline void mm_stored(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, Stored<T> W,
                                            int64_t ldw, bool acc, T* C, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    if (W.p16) return W.p16.visit([&](const auto* w) { mm_stored16(M, N, K, A, lda, w, ldw, acc, C, ldc); });
  }
  mm_stored(M, N, K, A, lda, W.p, ldw, acc, C, ldc);
}
template <typename W>
void mm_kn16(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const W* w, int64_t ldw, bool acc,
             float* C, int64_t ldc);
// C[M,N] (+)= A[M,K] @ W[K,N], W as stored (a backward's transposed matmul: mm_kn)
template <typename T> inline void mm_kn(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, Stored<T> W,
                                        int64_t ldw, bool acc, T* C, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    if (W.p16) return W.p16.visit([&](const auto* w) { mm_kn16(M, N, K, A, lda, w, ldw, acc, C, ldc); });
  }
  mm_kn(M, N, K, A, lda, W.p, ldw, acc, C, ldc);
}
// A weight given in bfloat16 or float16 gets its gradient in its dtype where one GEMM assigns each range of its
// columns (the renderer's grads16), as nn's 16-bit modules write theirs: C[M,N] = A[K,M]^T @ B[K,N] into C's
// dtype, B's K0 + K1 rows from two places (a state's: its initial rows, then those after each step but the last).
// Without it a short call's backward wrote float32 gradients (from MKL's sgemm, which zeroed them first) that
// autograd then rounded in a pass of its own (a bfloat16 GRU's training step at H=1024 B=4 T=1: 2.6x nn.GRU's,
// 1.3x now).
struct Out16 {   // a 16-bit gradient's values: C.p, of dtype C.type
  void* p;
  at::ScalarType type;
  Out16 operator+(int64_t off) const { return {p ? static_cast<uint16_t*>(p) + off : nullptr, type}; }
};
inline Out16 out16(const at::Tensor& t) { return {is16(t) ? t.data_ptr() : nullptr, t.scalar_type()}; }
void mm_tn16f(int64_t M, int64_t N, const float* A, int64_t lda, int64_t K0, const float* B0, int64_t ldb0,
              int64_t K1, const float* B1, int64_t ldb1, Out16 C, int64_t ldc);
template <typename T> inline void mm_tn16(int64_t M, int64_t N, const T* A, int64_t lda, int64_t K0, const T* B0,
                                          int64_t ldb0, int64_t K1, const T* B1, int64_t ldb1, Out16 C, int64_t ldc) {
  // (a float64 scan takes no 16-bit weight: expect_weight refuses it)
  if constexpr (std::is_same_v<T, float>) mm_tn16f(M, N, A, lda, K0, B0, ldb0, K1, B1, ldb1, C, ldc);
  else TORCH_CHECK(false, "symcell: a ", C.type, " weight gradient of a ", c10::CppTypeToScalarType<T>::value, " scan");
}
template <typename W>
void mm_nt16(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const W* w, int64_t ldw, float* C,
             int64_t ldc);
template <typename T> inline void mm_nt(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, Stored<T> W,
                                        int64_t ldw, T* C, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    if (W.p16) return W.p16.visit([&](const auto* w) { mm_nt16(M, N, K, A, lda, w, ldw, C, ldc); });
  }
  mm_nt(M, N, K, A, lda, W.p, ldw, C, ldc);
}
// The weights as a GEMM's operand: dst[k, n] = src[n, k] (transpose); a step's panels from the transpose of an
// (N, K) block at rows [k0, k0 + K) (transpose_step_panels) or from a (K, N) block as it is (copy_step_panels),
// with their pairs of rows where the products are bfloat16; the floats those take (step_panels_numel); a term's
// last row's lane of the pairs zero where its product runs before the loop (clear_last_pairs)
template <typename T> void transpose(const T* src, int64_t lds, int64_t N, int64_t K, T* dst, int64_t ldd);
template <typename T> void transpose_step_panels(const T* src, int64_t lds, int64_t N, int64_t K, T* dst,
                                                 int64_t ldp, int64_t k0);
template <typename T> void copy_step_panels(const T* src, int64_t lds, int64_t K, int64_t N, T* dst);
int64_t step_panels_numel(int64_t Kt, int64_t N);
template <typename T> void clear_last_pairs(const T* Bp, int64_t ldp, int64_t N, int64_t k0, int64_t K);
// ... and from a weight a call takes in 16 bits as stored (weight): a bfloat16 one's pairs of rows alone where the
// step's GEMMs multiply pairs, straight from its values, the float panels left unwritten (a first-order scan's step
// GEMMs, the whole of it or from a hoisted term's end, read the pairs alone: mm_panels); else float panels from its
// values (transpose_step_panels16, copy_step_panels16); a plain transpose (transpose16) likewise
template <typename W>
void transpose_step_panels16(const W* src, int64_t lds, int64_t N, int64_t K, float* dst, int64_t ldp, int64_t k0);
template <typename W> void copy_step_panels16(const W* src, int64_t lds, int64_t K, int64_t N, float* dst);
void transpose16(Ptr16 src, int64_t lds, int64_t N, int64_t K, float* dst, int64_t ldd);
template <typename T> inline void transpose_step_panels(Stored<T> src, int64_t lds, int64_t N, int64_t K, T* dst,
                                                        int64_t ldp, int64_t k0) {
  if constexpr (std::is_same_v<T, float>) {
    if (src.p16)
      return src.p16.visit([&](const auto* s) { transpose_step_panels16(s, lds, N, K, dst, ldp, k0); });
  }
  transpose_step_panels(src.p, lds, N, K, dst, ldp, k0);
}
template <typename T> inline void copy_step_panels(Stored<T> src, int64_t lds, int64_t K, int64_t N, T* dst) {
  if constexpr (std::is_same_v<T, float>) {
    if (src.p16) return src.p16.visit([&](const auto* s) { copy_step_panels16(s, lds, K, N, dst); });
  }
  copy_step_panels(src.p, lds, K, N, dst);
}
template <typename T> inline void transpose(Stored<T> src, int64_t lds, int64_t N, int64_t K, T* dst, int64_t ldd) {
  if constexpr (std::is_same_v<T, float>) {
    if (src.p16) return transpose16(src.p16, lds, N, K, dst, ldd);
  }
  transpose(src.p, lds, N, K, dst, ldd);
}
// The code paths a call takes, by its sizes (each forced by a SYMCELL_* variable, read every call): the input
// terms before the loop (hoist), the weights as stored (direct, direct_grads)
bool hoist(int64_t B);
bool direct(int64_t steps, int64_t batch, bool weights16 = false);
bool direct_grads(int64_t steps, int64_t batch, int64_t row_bytes, bool weights16 = false);
// a per-thread buffer reused across calls, freed when its thread ends
at::Tensor& workspace(int slot, int64_t numel, const at::TensorOptions& opt);
// The operator's arguments, checked as its kernel reads them (a deployed program calls it with nothing in
// between): a tensor's sizes, dtype and layout (`origin` says where the sizes' T and B come from), the lengths,
// an argument list's entries; a strided tensor made contiguous, integer lengths int64; an int[] read off the stack
template <typename scalar_t>
void expect(const at::Tensor& t, at::IntArrayRef sizes, const char* what, const char* origin = "",
            bool low_too = false);
// (a weight matrix the forward may take in bfloat16 or float16, as well as in its dtype, where that is float: weight)
template <typename scalar_t>
inline void expect_weight(const at::Tensor& t, at::IntArrayRef sizes, const char* what) {
  expect<scalar_t>(t, sizes, what, "", true);
}
void expect_lengths(const at::Tensor& lengths, int64_t batch, int64_t steps);
std::vector<at::Tensor> contiguous(std::vector<at::Tensor> ts);
at::Tensor as_lengths(const at::Tensor& t);
inline bool flag(at::IntArrayRef flags, size_t k) { return k < flags.size() && flags[k] != 0; }
// a generated unit's tensors: at::empty and at::zeros, out of line
at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options);
at::Tensor zeros(at::IntArrayRef sizes, const at::TensorOptions& options);
// ---- the operators ----------------------------------------------------------------------------------------------
// A generated library's operators are boxed kernels whose plumbing is the same for every cell, so compiled once
// (sc.cpp): the arguments read off the stack and checked, the thread count, subnormals flushed, bfloat16 products
// chosen, the scan run on its dtype's tensors, its result pushed back (it was 1.3 of the ~4 s of a small cell's
// build). A generated unit only says what each operator is (Operator) and registers them (Operators).
struct Call {
  std::vector<std::vector<at::Tensor>> lists;   // the scan's argument lists, in its order, each made contiguous
  std::vector<int64_t> dims, skip;
  bool save = false;                            // (a scan with the flag: whether it keeps its residuals)
  at::Tensor lengths;
};
struct ListArg {
  const char* name;   // for messages: "xs"
  size_t count;       // the tensors its kernel reads
};
struct Operator {
  const char* schema;                 // "forward(Tensor[] _xs, ...) -> Tensor[]": its name, its arguments
  std::vector<ListArg> lists;         // its argument lists; then come dims, save (where `has_save`), bf16, lengths, skip
  bool has_save;
  std::pair<size_t, size_t> first;    // the list and index of the tensor whose dtype the scan computes in
  std::vector<at::Tensor> (*scan)(const Call&);
};
// A library's operators, registered in namespace `ns` (the build key's, SYMCELL_NS) for CPU tensors of `dtype`
// while this object lives: a static of the generated unit, so from when the library is loaded, as TORCH_LIBRARY
// and TORCH_LIBRARY_IMPL would (whose templates cost every build 1 s: see the includes above). A second library
// of the same namespace in a process is refused by torch, as TORCH_LIBRARY's would be. n_dims: the cell's
// dimensions, which every call's `dims` must hold; file and line: where torch's messages say it registered.
class Operators {
 public:
  Operators(const char* ns, at::ScalarType dtype, size_t n_dims, std::vector<Operator> ops, const char* file,
            uint32_t line);
  ~Operators();
  Operators(const Operators&) = delete;
  Operators& operator=(const Operators&) = delete;
 private:
  struct Libraries;
  std::unique_ptr<Libraries> libraries_;
};
#define SC_STRING_(x) #x
#define SC_STRING(x) SC_STRING_(x)
template <typename T> inline T* ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; }
// a vector parameter's gradient sums over rows that several threads compute at once: each thread adds into its
// own row of a (threads, n) partial (no lock), and the rows are summed into the gradient once, at the end.
// The OpenMP thread number, not at::get_thread_num(): at::parallel_for nested in a parallel region (a region's
// rows inside sc::scan_rows) runs inline and reports thread 0 there, which two threads would share
inline int64_t threads() {
#ifdef _OPENMP
  return std::max<int64_t>(omp_get_max_threads(), at::get_num_threads());
#else
  return 1;
#endif
}
template <typename T> inline T* partial(const at::Tensor& parts, int64_t n) {
#ifdef _OPENMP
  // (a team larger than the partials were sized for would write past them: ThreadCount keeps it from growing)
  TORCH_CHECK(omp_get_thread_num() < parts.size(0), "symcell operator: thread ", omp_get_thread_num(),
              " of a team larger than the ", parts.size(0), " its partial sums were sized for");
  return ptr<T>(parts) + omp_get_thread_num() * n;
#else
  return ptr<T>(parts);
#endif
}
template <typename T> inline void sum_partials(const at::Tensor& parts, int64_t n, T* out) {
  const T* p = ptr<T>(parts);
  for (int64_t k = 0; k < parts.size(0); ++k)
    for (int64_t j = 0; j < n; ++j) out[j] += p[k * n + j];
}
}  // namespace sc
