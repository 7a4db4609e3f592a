// AVX-512 (F + BW) instantiation of matmul_simd.h: the same algorithm as matmul_avx2.cpp
// with 16 lanes, so decoding FP8/BF16 weights costs half the instructions per weight and
// twice as many tokens fit a register tile. FP8 uses the same two decodes on 16 bytes at a
// time: the float32 bit placement in the direct path (vpmovsxbd zmm, vpslld, vpandd), the
// binary16 trick in the panel path (vpmovsxbw ymm, vcvtph2ps zmm). Selected at run time by
// isa.cpp.
#include "kernels/cpu/isa.h"

#if MOESERVE_X86_SIMD

#include <immintrin.h>

#include "kernels/cpu/convert.h"
#include "kernels/cpu/matmul_impl.h"

namespace moeserve::kernels::internal {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx2,fma,f16c")
// GCC 12's AVX-512 intrinsics build their don't-care operands from self-initialised
// variables (_mm512_undefined_ps), which -Wuninitialized reports once inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

using Vec = __m512;
constexpr int64_t kLanes = 16;
constexpr int kTokenTile = 6;  // 4 rows x 6 tokens = 24 accumulators of 32 registers
// The direct path takes up to 4 tokens of any matrix, and FP8 up to 8 while the tokens'
// activations fit in 48 KiB (L1): from DRAM, FP8 1024x1024 at 6 / 8 tokens 1.4x the panel
// path, 1024x2048 at 6 1.45x; past L1 (8 x 2048, 6 x 7168 columns) 0.8-0.9x, and BF16/F32
// at 8 tokens 0.8-0.95x.
constexpr int kDirectTokens = 8;
constexpr int kDirectTokensAnyShape = 4;
constexpr int64_t kDirectFp8ActivationBytes = 48 << 10;
constexpr int kValueVectors = 2;  // 8 heads x 2 vectors = 16 accumulators

inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vset1(float v) { return _mm512_set1_ps(v); }
inline Vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec vload_first(const float* p, int64_t n) {
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
}
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec vmul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
inline Vec vadd(Vec a, Vec b) { return _mm512_add_ps(a, b); }
inline float vsum(Vec v) { return _mm512_reduce_add_ps(v); }
// out[i] = vsum(v[i]) for i < 8, as a transposing tree of adds (about 20 instructions for
// the eight sums instead of about 60).
inline void vsum8(const Vec* v, float* out) {
  Vec pair[4];
  for (int i = 0; i < 4; ++i) {  // 256-bit halves: [v[2i] half sums | v[2i+1] half sums]
    pair[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                            _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xee));
  }
  Vec quad[2];
  for (int i = 0; i < 2; ++i) {  // 128-bit lane k: four partial sums of v[4i + k]
    quad[i] = _mm512_add_ps(_mm512_shuffle_f32x4(pair[2 * i], pair[2 * i + 1], 0x88),
                            _mm512_shuffle_f32x4(pair[2 * i], pair[2 * i + 1], 0xdd));
  }
  // Lane k: [v[k]: p0+p2, p1+p3, v[k+4]: p0+p2, p1+p3], then each pair summed.
  Vec z = _mm512_add_ps(_mm512_shuffle_ps(quad[0], quad[1], 0x44),
                        _mm512_shuffle_ps(quad[0], quad[1], 0xee));
  z = _mm512_add_ps(z, _mm512_shuffle_ps(z, z, 0xb1));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0);
  _mm256_storeu_ps(out, _mm512_castps512_ps256(_mm512_permutexvar_ps(order, z)));
}
inline Vec vround(Vec v) {
  return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
#include "kernels/cpu/exp_poly.h"
inline Vec vmax(Vec a, Vec b) { return _mm512_max_ps(a, b); }
inline float vmax_lanes(Vec v) { return _mm512_reduce_max_ps(v); }
inline Vec vsub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
inline Vec vdiv(Vec a, Vec b) { return _mm512_div_ps(a, b); }
// exp of each lane (see vexp_poly): 2^n by vscalefps, which rounds to subnormals and to
// 0 and +inf exactly as expf does; below -104 every result is 0, and NaN stays NaN.
inline Vec vexp(Vec x) {
  const Vec clamped = _mm512_min_ps(_mm512_max_ps(x, vset1(-104.0f)), vset1(88.8f));
  Vec n;
  const Vec p = vexp_poly(clamped, &n);
  Vec y = _mm512_scalef_ps(p, n);
  y = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, vset1(-104.0f), _CMP_GE_OQ), y);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);
}
inline Vec vload_bf16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline Vec vload_fp8_bits(const uint8_t* p) {
  const __m512i d = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_slli_epi32(d, 20), _mm512_set1_epi32(static_cast<int>(0x87f00000u))));
}
inline Vec vload_fp8_scaled(const uint8_t* p) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i halves = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(bytes), 7),
                                          _mm256_set1_epi16(static_cast<int16_t>(0xbf80)));
  return _mm512_cvtph_ps(halves);
}

#include "kernels/cpu/matmul_simd.h"

}  // namespace

void matmul_rows_avx512(const WeightView& w, const float* x, int64_t tokens, float* y,
                        int64_t row_begin, int64_t row_end) {
  matmul_rows_any(w, x, tokens, y, row_begin, row_end);
}

float dot_avx512(const float* a, const float* b, int64_t n) { return dot_any(a, b, n); }

void softmax_avx512(float* x, int64_t n) { softmax_any(x, n); }

void silu_mul_avx512(const float* gate, const float* up, int64_t n, float* out) {
  silu_mul_any(gate, up, n, out);
}

void attention_scores_avx512(const float* q, int64_t q_stride, int64_t heads,
                             const float* const* rows, int64_t n, int64_t dim, float scale,
                             float* scores, int64_t score_stride) {
  attention_scores_any(q, q_stride, heads, rows, n, dim, scale, scores, score_stride);
}

void attention_values_avx512(const float* p, int64_t p_stride, int64_t heads,
                             const float* const* rows, int64_t n, int64_t dim, float* out,
                             int64_t out_stride) {
  attention_values_any(p, p_stride, heads, rows, n, dim, out, out_stride);
}

#pragma GCC diagnostic pop
#pragma GCC pop_options

}  // namespace moeserve::kernels::internal

#endif  // MOESERVE_X86_SIMD
