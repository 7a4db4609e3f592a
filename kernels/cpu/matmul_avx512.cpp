// AVX-512 (F + BW) instantiation of matmul_simd.h: the same algorithm as matmul_avx2.cpp
// with 16 lanes, so decoding FP8/BF16 weights costs half the instructions per weight and
// twice as many tokens fit a register tile. FP8 uses the same binary16 trick on 16 bytes at
// a time (vpmovsxbw ymm, vcvtph2ps zmm). Selected at run time by isa.cpp.
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
constexpr int kTokenTile = 6;     // 4 rows x 6 tokens = 24 accumulators of 32 registers
constexpr int kDirectTokens = 4;  // 4 rows x 4 tokens + 4 weights registers

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
inline Vec vload_bf16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
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

#pragma GCC diagnostic pop
#pragma GCC pop_options

}  // namespace moeserve::kernels::internal

#endif  // MOESERVE_X86_SIMD
