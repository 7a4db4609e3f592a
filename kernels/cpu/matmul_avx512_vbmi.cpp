// AVX-512 VBMI decode-sized matmul (tokens <= kDirectTokensVbmi) for BF16 and FP8 weights
// whose rows start on 64-byte lines: fewer instructions per weight than the generic AVX-512
// path (cache-resident FP8 at 1 token: 1.45x; BF16 about 1.05x; bench-kernels prints it).
// Larger batches, F32 and unaligned weights go to matmul_rows_avx512.
//
// Weights are widened to float32 exactly and multiplied with float32 activations (the same
// products as the reference; only the summation order differs). The widening leaves
// columns in a fixed permuted order inside each 64-byte load, and the activations are
// permuted the same way once per call (act_* below), so the inner loop has no shuffles:
//   BF16, 32 weights per load: dword j holds columns 2j (low half) and 2j+1 (high half);
//     vpslld 16 gives the even columns, vpandd 0xffff0000 the odd ones.
//   FP8, 64 weights per load: two vpermi2b look-ups on the low 7 bits give the high and low
//     byte of each weight's BF16 value (a 128-entry table of the E4M3 magnitudes, exact for
//     every code, subnormals included; 0x7f is NaN), vpternlogd merges the sign bit,
//     vpunpck{l,h}bw pairs the bytes into BF16 words (columns 16L+q and 16L+8+q of lane L)
//     and the BF16 split above turns each into two float vectors.
// FP8 block scales are folded into the permuted activations once per 128-row block.
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
constexpr int64_t kFp8Chunk = 64;
// Rows are read one at a time, front to back, so a matrix is one sequential stream (four
// interleaved row streams, sharing each activation load, measured 1.2-1.5x slower from
// DRAM; bench/kernels.cpp), with the line 4 KiB ahead requested (1 KiB: up to 1.4x slower).
constexpr int64_t kPrefetchBytes = 4096;

// The permuted activations of one token: for each full chunk, the float vectors in the order
// the decode produces them, then the tail columns in natural order; each value times
// `scale_of(column)` (constant over a chunk: a chunk lies inside one 128-column block).
template <class ScaleOf>
void act_bf16(const float* x, int64_t cols, ScaleOf scale_of, float* out) {
  const int64_t full = cols / kBf16Chunk * kBf16Chunk;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t c0 = 0; c0 < full; c0 += kBf16Chunk) {
    const __m512 s = _mm512_set1_ps(scale_of(c0));
    const __m512 a = _mm512_loadu_ps(x + c0), b = _mm512_loadu_ps(x + c0 + 16);
    _mm512_storeu_ps(out + c0, _mm512_mul_ps(_mm512_permutex2var_ps(a, even, b), s));
    _mm512_storeu_ps(out + c0 + 16, _mm512_mul_ps(_mm512_permutex2var_ps(a, odd, b), s));
  }
  for (int64_t c = full; c < cols; ++c) out[c] = x[c] * scale_of(c);
}

// FP8 chunk of 64 columns: vector A holds columns 16L+2k at 4L+k, B 16L+2k+1, C 16L+8+2k,
// D 16L+9+2k. Each pair of source vectors (lanes L, L+1) gives half of A and B (or C and D)
// with one two-source permute; 128-bit lane shuffles join the halves.
template <class ScaleOf>
void act_fp8(const float* x, int64_t cols, ScaleOf scale_of, float* out) {
  const int64_t full = cols / kFp8Chunk * kFp8Chunk;
  const __m512i ab = _mm512_setr_epi32(0, 2, 4, 6, 16, 18, 20, 22, 1, 3, 5, 7, 17, 19, 21, 23);
  const __m512i cd = _mm512_add_epi32(ab, _mm512_set1_epi32(8));
  for (int64_t c0 = 0; c0 < full; c0 += kFp8Chunk) {
    const __m512 s = _mm512_set1_ps(scale_of(c0));
    const __m512 v0 = _mm512_loadu_ps(x + c0), v1 = _mm512_loadu_ps(x + c0 + 16);
    const __m512 v2 = _mm512_loadu_ps(x + c0 + 32), v3 = _mm512_loadu_ps(x + c0 + 48);
    const __m512 ab01 = _mm512_permutex2var_ps(v0, ab, v1);
    const __m512 ab23 = _mm512_permutex2var_ps(v2, ab, v3);
    const __m512 cd01 = _mm512_permutex2var_ps(v0, cd, v1);
    const __m512 cd23 = _mm512_permutex2var_ps(v2, cd, v3);
    _mm512_storeu_ps(out + c0, _mm512_mul_ps(_mm512_shuffle_f32x4(ab01, ab23, 0x44), s));
    _mm512_storeu_ps(out + c0 + 16, _mm512_mul_ps(_mm512_shuffle_f32x4(ab01, ab23, 0xee), s));
    _mm512_storeu_ps(out + c0 + 32, _mm512_mul_ps(_mm512_shuffle_f32x4(cd01, cd23, 0x44), s));
    _mm512_storeu_ps(out + c0 + 48, _mm512_mul_ps(_mm512_shuffle_f32x4(cd01, cd23, 0xee), s));
  }
  for (int64_t c = full; c < cols; ++c) out[c] = x[c] * scale_of(c);
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

struct Fp8Decode {
  using Elem = uint8_t;
  static constexpr int64_t kChunk = kFp8Chunk;
  static constexpr int kVectors = 4;
  __m512i hi0, hi1, lo0, lo1;
  __m512i sign = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i high_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  Fp8Decode() {
    const Fp8Bf16Tables& t = fp8_bf16_tables();
    hi0 = _mm512_load_si512(t.hi);
    hi1 = _mm512_load_si512(t.hi + 64);
    lo0 = _mm512_load_si512(t.lo);
    lo1 = _mm512_load_si512(t.lo + 64);
  }
  void decode(const Elem* p, __m512* out) const {
    __m512i v = _mm512_loadu_si512(p);
    // One load per line (see matmul_avx512_bf16.cpp): GCC would otherwise reload v for
    // each look-up.
    __asm__("" : "+v"(v));
    __m512i hi = _mm512_permutex2var_epi8(hi0, v, hi1);
    hi = _mm512_ternarylogic_epi32(hi, v, sign, 0xf8);  // hi | (v & 0x80)
    const __m512i lo = _mm512_permutex2var_epi8(lo0, v, lo1);
    const __m512i words_lo = _mm512_unpacklo_epi8(lo, hi);
    const __m512i words_hi = _mm512_unpackhi_epi8(lo, hi);
    out[0] = _mm512_castsi512_ps(_mm512_slli_epi32(words_lo, 16));
    out[1] = _mm512_castsi512_ps(_mm512_and_si512(words_lo, high_mask));
    out[2] = _mm512_castsi512_ps(_mm512_slli_epi32(words_hi, 16));
    out[3] = _mm512_castsi512_ps(_mm512_and_si512(words_hi, high_mask));
  }
  static float scalar(Elem v) { return fp8_e4m3_to_f32(v); }
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
// such matrices (and batches above kDirectTokensVbmi) take matmul_rows_avx512.
bool vbmi_handles(const WeightView& w, int64_t tokens) {
  if (tokens > kDirectTokensVbmi) return false;
  if (w.type != WeightType::kBF16 && w.type != WeightType::kFP8E4M3) return false;
  const int64_t row_bytes = w.cols * (w.type == WeightType::kBF16 ? 2 : 1);
  return reinterpret_cast<uintptr_t>(w.data) % 64 == 0 && row_bytes % 64 == 0;
}

void matmul_rows_avx512_vbmi(const WeightView& w, const float* x, int64_t tokens, float* y,
                             int64_t row_begin, int64_t row_end) {
  if (!vbmi_handles(w, tokens)) {
    matmul_rows_avx512(w, x, tokens, y, row_begin, row_end);
    return;
  }
  const int64_t cols = w.cols;
  float* xs = panel_scratch(tokens * cols);
  if (w.type == WeightType::kBF16) {
    for (int64_t t = 0; t < tokens; ++t) {
      act_bf16(
          x + t * cols, cols, [](int64_t) { return 1.0f; }, xs + t * cols);
    }
    gemv_range(Bf16Decode{}, w, tokens, row_begin, row_end, xs, y);
    return;
  }
  const Fp8Decode dec;
  for_each_fp8_row_block(w, row_begin, row_end, [&](int64_t r0, int64_t r1, const float* scales) {
    for (int64_t t = 0; t < tokens; ++t) {
      act_fp8(
          x + t * cols, cols, [scales](int64_t c) { return scales[c / kFp8BlockSize]; },
          xs + t * cols);
    }
    gemv_range(dec, w, tokens, r0, r1, xs, y);
  });
}

#pragma GCC diagnostic pop
#pragma GCC pop_options

}  // namespace moeserve::kernels::internal

#endif  // MOESERVE_X86_SIMD
