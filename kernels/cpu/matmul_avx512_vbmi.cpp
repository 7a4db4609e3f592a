// AVX-512 VBMI decode-sized matmul (tokens <= kDirectTokensVbmi) for BF16 weights whose
// rows start on 64-byte lines: fewer instructions per weight than the generic AVX-512 path
// (cache-resident about 1.05-1.25x; bench-kernels prints it). Larger batches, F32, FP8 and
// unaligned weights go to matmul_rows_avx512.
//
// BF16 weights are widened to float32 exactly and multiplied with float32 activations (the
// same products as the reference; only the summation order differs). 32 weights per load:
// dword j holds columns 2j (low half) and 2j+1 (high half); vpslld 16 gives the even
// columns, vpandd 0xffff0000 the odd ones, and the activations are permuted the same way
// once per call (act_bf16), so the inner loop has no shuffles.
//
// FP8 used to be widened here through two vpermi2b look-ups into BF16; the generic kernel's
// float32 bit placement (matmul_avx2.cpp) does it in three integer ops per 16 weights and
// measured faster (cache-resident 1 token 29.8 vs 32.9 GB/s of weights; from DRAM at 2
// tokens 23.2 vs 24.7), so FP8 goes there.
#include "kernels/cpu/isa.h"

#if MOESERVE_X86_SIMD

#include <immintrin.h>

#include "kernels/cpu/convert.h"
#include "kernels/cpu/matmul_impl.h"

namespace moeserve::kernels::internal {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vbmi,avx2,fma,f16c")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

constexpr int64_t kBf16Chunk = 32;  // weights per 64-byte load
// Rows are read one at a time, front to back, so a matrix is one sequential stream (four
// interleaved row streams, sharing each activation load, measured 1.2-1.5x slower from
// DRAM; bench/kernels.cpp), with the line 4 KiB ahead requested (1 KiB: up to 1.4x slower).
constexpr int64_t kPrefetchBytes = 4096;

// The permuted activations of one token: for each full chunk, the float vectors in the order
// the decode produces them (even columns, then odd), then the tail columns as they are.
void act_bf16(const float* x, int64_t cols, float* out) {
  const int64_t full = cols / kBf16Chunk * kBf16Chunk;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t c0 = 0; c0 < full; c0 += kBf16Chunk) {
    const __m512 a = _mm512_loadu_ps(x + c0), b = _mm512_loadu_ps(x + c0 + 16);
    _mm512_storeu_ps(out + c0, _mm512_permutex2var_ps(a, even, b));
    _mm512_storeu_ps(out + c0 + 16, _mm512_permutex2var_ps(a, odd, b));
  }
  for (int64_t c = full; c < cols; ++c) out[c] = x[c];
}

struct Bf16Decode {
  using Elem = uint16_t;
  static constexpr int64_t kChunk = kBf16Chunk;
  static constexpr int kVectors = 2;
  __m512i high_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  void decode(const Elem* p, __m512* out) const {
    const __m512i v = _mm512_loadu_si512(p);
    out[0] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    out[1] = _mm512_castsi512_ps(_mm512_and_si512(v, high_mask));
  }
  static float scalar(Elem v) { return bf16_to_f32(v); }
};

// y for row r and TT tokens; xs holds TT permuted activation rows of `cols`.
template <class D, int TT>
void gemv(const D& dec, const WeightView& w, int64_t r, const float* xs, float* y) {
  using Elem = typename D::Elem;
  const int64_t cols = w.cols;
  const int64_t full = cols / D::kChunk * D::kChunk;
  const Elem* row = static_cast<const Elem*>(w.data) + r * cols;
  // Two accumulator sets when few tokens, so enough FMA chains are in flight.
  constexpr int kSets = TT >= 8 ? 1 : 2;
  __m512 acc[TT][kSets];
  for (int t = 0; t < TT; ++t) {
    for (int s = 0; s < kSets; ++s) acc[t][s] = _mm512_setzero_ps();
  }
  for (int64_t c = 0; c < full; c += D::kChunk) {
    _mm_prefetch(reinterpret_cast<const char*>(row + c) + kPrefetchBytes, _MM_HINT_T0);
    __m512 wv[D::kVectors];
    dec.decode(row + c, wv);
#pragma GCC unroll 4
    for (int t = 0; t < TT; ++t) {
      const float* xt = xs + t * cols + c;
#pragma GCC unroll 4
      for (int k = 0; k < D::kVectors; ++k) {
        acc[t][k % kSets] = _mm512_fmadd_ps(wv[k], _mm512_loadu_ps(xt + 16 * k), acc[t][k % kSets]);
      }
    }
  }
  for (int t = 0; t < TT; ++t) {
    float tail = 0.0f;
    for (int64_t c = full; c < cols; ++c) tail += D::scalar(row[c]) * xs[t * cols + c];
    __m512 sum = acc[t][0];
    if constexpr (kSets > 1) sum = _mm512_add_ps(sum, acc[t][1]);
    y[t * w.rows + r] = _mm512_reduce_add_ps(sum) + tail;
  }
}

template <class D, int TT>
void gemv_n(int64_t tokens, const D& dec, const WeightView& w, int64_t r, const float* xs,
            float* y) {
  if (tokens == TT) {
    gemv<D, TT>(dec, w, r, xs, y);
  } else if constexpr (TT > 1) {
    gemv_n<D, TT - 1>(tokens, dec, w, r, xs, y);
  }
}

// Rows [r, end), one at a time, all with the same activations.
template <class D>
void gemv_range(const D& dec, const WeightView& w, int64_t tokens, int64_t r, int64_t end,
                const float* xs, float* y) {
  for (; r < end; ++r) gemv_n<D, kDirectTokensVbmi>(tokens, dec, w, r, xs, y);
}

}  // namespace

// The loads here are whole 64-byte lines: a weight matrix whose rows do not start on a
// line would split every load in two, which measured slower than the generic kernel, so
// such matrices (and batches above kDirectTokensVbmi, and FP8) take matmul_rows_avx512.
bool vbmi_handles(const WeightView& w, int64_t tokens) {
  if (tokens > kDirectTokensVbmi || w.type != WeightType::kBF16) return false;
  return reinterpret_cast<uintptr_t>(w.data) % 64 == 0 && (w.cols * 2) % 64 == 0;
}

void matmul_rows_avx512_vbmi(const WeightView& w, const float* x, int64_t tokens, float* y,
                             int64_t row_begin, int64_t row_end) {
  if (!vbmi_handles(w, tokens)) {
    matmul_rows_avx512(w, x, tokens, y, row_begin, row_end);
    return;
  }
  const int64_t cols = w.cols;
  float* xs = panel_scratch(tokens * cols);
  for (int64_t t = 0; t < tokens; ++t) {
    act_bf16(x + t * cols, cols, xs + t * cols);
  }
  gemv_range(Bf16Decode{}, w, tokens, row_begin, row_end, xs, y);
}

#pragma GCC diagnostic pop
#pragma GCC pop_options

}  // namespace moeserve::kernels::internal

#endif  // MOESERVE_X86_SIMD
