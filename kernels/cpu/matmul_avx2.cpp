// AVX2/FMA/F16C instantiation of matmul_simd.h. The code sits in a `#pragma GCC target`
// region instead of the file being compiled with -mavx2, so nothing here leaks into code
// that runs on CPUs without AVX2; isa.cpp decides at run time whether it may be called.
//
// Weight decoding in registers:
//   BF16  zero-extend to 32 bits and shift left 16;
//   FP8   sign-extend each byte to 16 bits, shift left 7 and clear bit 14: the result is a
//         binary16 whose value is exactly the E4M3 value * 2^-8 (exponent bias 15 vs 7, and
//         E4M3 subnormals land on binary16 subnormals), converted by vcvtph2ps. The 2^8 is
//         folded into the block scale. NaN codes decode as 480 (matmul.h excludes them).
//         The panel path uses this (vcvtph2ps runs at about one per two cycles here).
//   FP8, direct path: sign-extend each byte to 32 bits, shift left 20 and keep the sign and
//         bits 20-26: a float32 with E4M3's exponent and mantissa in its low exponent and
//         high mantissa bits, exactly value * 2^-120 for every code (E4M3 subnormals land
//         on float32 subnormals, which FMAs take exactly); the activations carry the
//         2^120 (direct_activations). Three integer ops per 8 weights and no conversion:
//         1.5x the binary16 trick's weight bytes per second (bench-matmul, 512x1024).
#include "kernels/cpu/isa.h"

#if MOESERVE_X86_SIMD

#include <immintrin.h>

#include "kernels/cpu/convert.h"
#include "kernels/cpu/matmul_impl.h"

namespace moeserve::kernels::internal {

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

namespace {

using Vec = __m256;
constexpr int64_t kLanes = 8;
constexpr int kTokenTile = 3;  // 4 rows x 3 tokens = 12 accumulators of 16 registers
// The direct path (one row in registers, 2 accumulator sets per token) up to 6 tokens:
// 1.2-1.7x the panel path at 3-6 tokens from DRAM (FP8 1024 and 7168 columns, BF16, F32).
constexpr int kDirectTokens = 6;
constexpr int kDirectTokensAnyShape = 6;
constexpr int64_t kDirectFp8ActivationBytes = 0;  // no FP8-only extension past that
constexpr int kValueVectors = 1;                  // 8 heads x 1 vector of 16 registers

inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vset1(float v) { return _mm256_set1_ps(v); }
inline Vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec vload_first(const float* p, int64_t n) {
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_maskload_ps(p, mask);
}
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec vmul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
inline Vec vadd(Vec a, Vec b) { return _mm256_add_ps(a, b); }
inline float vsum(Vec v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// out[i] = vsum(v[i]) for i < 8, as a transposing tree of horizontal adds.
inline void vsum8(const Vec* v, float* out) {
  const __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h0), _mm256_extractf128_ps(h0, 1)));
  _mm_storeu_ps(out + 4, _mm_add_ps(_mm256_castps256_ps128(h1), _mm256_extractf128_ps(h1, 1)));
}
inline Vec vround(Vec v) {
  return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
#include "kernels/cpu/exp_poly.h"
inline Vec vmax(Vec a, Vec b) { return _mm256_max_ps(a, b); }
inline float vmax_lanes(Vec v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
inline Vec vsub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
inline Vec vdiv(Vec a, Vec b) { return _mm256_div_ps(a, b); }
// exp of each lane (see vexp_poly): 2^n built in the exponent field, so the range is that
// of normal results: below about -87.3 the result is 0 (expf gives subnormals down to
// -103.9), above about 88.38 +inf (expf is finite up to 88.72). NaN stays NaN.
inline Vec vexp(Vec x) {
  const Vec low = vset1(-87.33654f), high = vset1(88.3762626f);
  const Vec clamped = _mm256_min_ps(_mm256_max_ps(x, low), high);
  Vec n;
  const Vec p = vexp_poly(clamped, &n);
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  Vec y = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  y = _mm256_and_ps(y, _mm256_cmp_ps(x, low, _CMP_GE_OQ));
  y = _mm256_blendv_ps(y, vset1(__builtin_inff()), _mm256_cmp_ps(x, high, _CMP_GT_OQ));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
inline Vec vload_bf16(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline Vec vload_fp8_bits(const uint8_t* p) {
  const __m256i d = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(
      _mm256_and_si256(_mm256_slli_epi32(d, 20), _mm256_set1_epi32(static_cast<int>(0x87f00000u))));
}
inline Vec vload_fp8_scaled(const uint8_t* p) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i halves = _mm_and_si128(_mm_slli_epi16(_mm_cvtepi8_epi16(bytes), 7),
                                       _mm_set1_epi16(static_cast<int16_t>(0xbf80)));
  return _mm256_cvtph_ps(halves);
}

#include "kernels/cpu/matmul_simd.h"

}  // namespace

void matmul_rows_avx2(const WeightView& w, const float* x, int64_t tokens, float* y,
                      int64_t row_begin, int64_t row_end) {
  matmul_rows_any(w, x, tokens, y, row_begin, row_end);
}

float dot_avx2(const float* a, const float* b, int64_t n) { return dot_any(a, b, n); }

void softmax_avx2(float* x, int64_t n) { softmax_any(x, n); }

void silu_mul_avx2(const float* gate, const float* up, int64_t n, float* out) {
  silu_mul_any(gate, up, n, out);
}

void attention_scores_avx2(const float* q, int64_t q_stride, int64_t heads,
                           const float* const* rows, int64_t n, int64_t dim, float scale,
                           float* scores, int64_t score_stride) {
  attention_scores_any(q, q_stride, heads, rows, n, dim, scale, scores, score_stride);
}

void attention_values_avx2(const float* p, int64_t p_stride, int64_t heads,
                           const float* const* rows, int64_t n, int64_t dim, float* out,
                           int64_t out_stride) {
  attention_values_any(p, p_stride, heads, rows, n, dim, out, out_stride);
}

#pragma GCC pop_options

}  // namespace moeserve::kernels::internal

#endif  // MOESERVE_X86_SIMD
