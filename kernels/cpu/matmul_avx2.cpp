// AVX2/FMA/F16C bodies of matmul and dot. Every function carries the target attribute
// instead of the file being compiled with -mavx2, so nothing here leaks into code that runs
// on CPUs without AVX2; isa.cpp decides at run time whether these may be called.
//
// Weight decoding happens in registers:
//   F32   plain loads;
//   BF16  zero-extend to 32 bits and shift left 16;
//   FP8   sign-extend each byte to 16 bits, shift left 7 and clear bit 14: the result is a
//         binary16 whose value is exactly the E4M3 value * 2^-8 (exponent bias 15 vs 7, and
//         E4M3 subnormals land on binary16 subnormals), converted by vcvtph2ps. The 2^8 is
//         folded into the block scale. NaN codes decode as 480, see matmul.h.
// One token (GEMV): four rows at a time share each activation load; the FP8 block scale is
// applied once per 128-column block per row. Several tokens: four rows x up to 1024 columns
// are decoded (scales applied) into a small float panel that stays in L1, then every token
// is multiplied against it, three tokens at a time, so weight bytes are read and decoded
// once per batch.
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/convert.h"
#include "kernels/cpu/matmul_impl.h"

#define MOESERVE_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace moeserve::kernels::internal {
namespace {

constexpr int64_t kRows = 4;
constexpr int kTokenTile = 3;
constexpr int64_t kPanelCols = 1024;  // a multiple of the FP8 block and of 8
constexpr float kFp8VectorScale = 256.0f;

struct F32Format {
  using Elem = float;
  static constexpr bool kBlockScaled = false;
  static constexpr float kVectorScale = 1.0f;
  MOESERVE_AVX2 static __m256 load8(const Elem* p) { return _mm256_loadu_ps(p); }
  static float scalar(Elem v) { return v; }
};

struct Bf16Format {
  using Elem = uint16_t;
  static constexpr bool kBlockScaled = false;
  static constexpr float kVectorScale = 1.0f;
  MOESERVE_AVX2 static __m256 load8(const Elem* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float scalar(Elem v) { return bf16_to_f32(v); }
};

struct Fp8Format {
  using Elem = uint8_t;
  static constexpr bool kBlockScaled = true;
  static constexpr float kVectorScale = kFp8VectorScale;
  MOESERVE_AVX2 static __m256 load8(const Elem* p) {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    const __m128i halves = _mm_and_si128(_mm_slli_epi16(_mm_cvtepi8_epi16(bytes), 7),
                                         _mm_set1_epi16(static_cast<int16_t>(0xbf80)));
    return _mm256_cvtph_ps(halves);
  }
  static float scalar(Elem v) { return fp8_e4m3_to_f32(v); }
};

MOESERVE_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lanes [0, n) set, n in [0, 8].
MOESERVE_AVX2 inline __m256i lane_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

int64_t block_width(const WeightView& w, bool block_scaled) {
  return block_scaled ? kFp8BlockSize : std::max<int64_t>(w.cols, 1);
}

// Scales of the row block holding `row` (null when the format has none).
const float* row_scales(const WeightView& w, int64_t row, bool block_scaled) {
  if (!block_scaled) return nullptr;
  return w.scale_inv + (row / kFp8BlockSize) * ((w.cols + kFp8BlockSize - 1) / kFp8BlockSize);
}

// y[r .. r+3] for one token, decoding straight from the weight rows.
template <class F>
MOESERVE_AVX2 void gemv_4rows(const WeightView& w, int64_t r, const float* x, float* y) {
  using Elem = typename F::Elem;
  const int64_t cols = w.cols;
  const Elem* rows[kRows];
  for (int i = 0; i < kRows; ++i) rows[i] = static_cast<const Elem*>(w.data) + (r + i) * cols;
  const int64_t block = block_width(w, F::kBlockScaled);
  const float* scales = row_scales(w, r, F::kBlockScaled);
  __m256 acc[kRows];
  float tail[kRows] = {};
  for (int i = 0; i < kRows; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t c0 = 0; c0 < cols; c0 += block) {
    const int64_t c1 = std::min(c0 + block, cols);
    __m256 partial[kRows];
    for (int i = 0; i < kRows; ++i) partial[i] = _mm256_setzero_ps();
    int64_t c = c0;
    for (; c + 8 <= c1; c += 8) {
      const __m256 xv = _mm256_loadu_ps(x + c);
#pragma GCC unroll 4
      for (int i = 0; i < kRows; ++i) {
        partial[i] = _mm256_fmadd_ps(F::load8(rows[i] + c), xv, partial[i]);
      }
    }
    const float scale = scales != nullptr ? scales[c0 / kFp8BlockSize] : 1.0f;
    const __m256 vector_scale = _mm256_set1_ps(scale * F::kVectorScale);
    for (int i = 0; i < kRows; ++i) acc[i] = _mm256_fmadd_ps(partial[i], vector_scale, acc[i]);
    for (; c < c1; ++c) {
      for (int i = 0; i < kRows; ++i) tail[i] += F::scalar(rows[i][c]) * scale * x[c];
    }
  }
  for (int i = 0; i < kRows; ++i) y[r + i] = hsum(acc[i]) + tail[i];
}

// Decodes columns [c0, c1) of rows r .. r+count-1 into `panel` (row stride kPanelCols) with
// scales applied; rows past `count` and columns past c1 (to a multiple of 8) are zero.
template <class F>
MOESERVE_AVX2 void decode_panel(const WeightView& w, int64_t r, int64_t count, int64_t c0,
                                int64_t c1, float* panel) {
  using Elem = typename F::Elem;
  const int64_t padded = (c1 - c0 + 7) / 8 * 8;
  const int64_t block = block_width(w, F::kBlockScaled);
  for (int64_t i = 0; i < kRows; ++i) {
    float* out = panel + i * kPanelCols;  // out[k] holds column c0 + k
    if (i >= count) {
      std::fill(out, out + padded, 0.0f);
      continue;
    }
    const Elem* row = static_cast<const Elem*>(w.data) + (r + i) * w.cols;
    const float* scales = row_scales(w, r + i, F::kBlockScaled);
    for (int64_t b0 = c0; b0 < c1; b0 += block) {
      const int64_t b1 = std::min(b0 + block, c1);
      const float scale = scales != nullptr ? scales[b0 / kFp8BlockSize] : 1.0f;
      const __m256 vector_scale = _mm256_set1_ps(scale * F::kVectorScale);
      int64_t c = b0;
      for (; c + 8 <= b1; c += 8) {
        const __m256 v = F::load8(row + c);
        _mm256_storeu_ps(out + (c - c0), F::kBlockScaled ? _mm256_mul_ps(v, vector_scale) : v);
      }
      for (; c < b1; ++c) out[c - c0] = F::scalar(row[c]) * scale;
    }
    std::fill(out + (c1 - c0), out + padded, 0.0f);
  }
}

// out[i][t] = panel row i . x row t over `width` columns, for TT tokens.
template <int TT>
MOESERVE_AVX2 void panel_tile(const float* panel, int64_t width, const float* x, int64_t x_stride,
                              float (*out)[kTokenTile]) {
  __m256 acc[kRows][TT];
  for (int i = 0; i < kRows; ++i) {
    for (int t = 0; t < TT; ++t) acc[i][t] = _mm256_setzero_ps();
  }
  int64_t c = 0;
  for (; c + 8 <= width; c += 8) {
    __m256 wv[kRows];
    for (int i = 0; i < kRows; ++i) wv[i] = _mm256_loadu_ps(panel + i * kPanelCols + c);
#pragma GCC unroll 4
    for (int t = 0; t < TT; ++t) {
      const __m256 xv = _mm256_loadu_ps(x + t * x_stride + c);
      for (int i = 0; i < kRows; ++i) acc[i][t] = _mm256_fmadd_ps(wv[i], xv, acc[i][t]);
    }
  }
  if (c < width) {
    const __m256i mask = lane_mask(width - c);
    __m256 wv[kRows];
    for (int i = 0; i < kRows; ++i) wv[i] = _mm256_loadu_ps(panel + i * kPanelCols + c);
    for (int t = 0; t < TT; ++t) {
      const __m256 xv = _mm256_maskload_ps(x + t * x_stride + c, mask);
      for (int i = 0; i < kRows; ++i) acc[i][t] = _mm256_fmadd_ps(wv[i], xv, acc[i][t]);
    }
  }
  for (int i = 0; i < kRows; ++i) {
    for (int t = 0; t < TT; ++t) out[i][t] = hsum(acc[i][t]);
  }
}

// Rows r .. r+count-1 (count <= 4) for all tokens through the decoded panel.
template <class F>
MOESERVE_AVX2 void panel_rows(const WeightView& w, const float* x, int64_t tokens, float* y,
                              int64_t r, int64_t count) {
  thread_local std::vector<float> panel_storage;
  panel_storage.resize(kRows * kPanelCols);
  float* panel = panel_storage.data();
  for (int64_t c0 = 0; c0 < w.cols; c0 += kPanelCols) {
    const int64_t c1 = std::min(c0 + kPanelCols, w.cols);
    decode_panel<F>(w, r, count, c0, c1, panel);
    for (int64_t t0 = 0; t0 < tokens; t0 += kTokenTile) {
      const int64_t n = std::min<int64_t>(kTokenTile, tokens - t0);
      const float* xt = x + t0 * w.cols + c0;
      float out[kRows][kTokenTile];
      if (n == 3) {
        panel_tile<3>(panel, c1 - c0, xt, w.cols, out);
      } else if (n == 2) {
        panel_tile<2>(panel, c1 - c0, xt, w.cols, out);
      } else {
        panel_tile<1>(panel, c1 - c0, xt, w.cols, out);
      }
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t i = 0; i < count; ++i) {
          float& dst = y[(t0 + t) * w.rows + r + i];
          dst = (c0 == 0 ? 0.0f : dst) + out[i][t];
        }
      }
    }
  }
}

template <class F>
MOESERVE_AVX2 void matmul_rows(const WeightView& w, const float* x, int64_t tokens, float* y,
                               int64_t row_begin, int64_t row_end) {
  int64_t r = row_begin;
  if (tokens == 1) {
    for (; r + kRows <= row_end; r += kRows) {
      const bool straddles = r / kFp8BlockSize != (r + kRows - 1) / kFp8BlockSize;
      if (F::kBlockScaled && straddles) {
        panel_rows<F>(w, x, tokens, y, r, kRows);
      } else {
        gemv_4rows<F>(w, r, x, y);
      }
    }
  }
  for (; r < row_end; r += kRows) {
    panel_rows<F>(w, x, tokens, y, r, std::min(kRows, row_end - r));
  }
}

}  // namespace

MOESERVE_AVX2 void matmul_rows_avx2(const WeightView& w, const float* x, int64_t tokens, float* y,
                                    int64_t row_begin, int64_t row_end) {
  switch (w.type) {
    case WeightType::kF32: return matmul_rows<F32Format>(w, x, tokens, y, row_begin, row_end);
    case WeightType::kBF16: return matmul_rows<Bf16Format>(w, x, tokens, y, row_begin, row_end);
    case WeightType::kFP8E4M3: return matmul_rows<Fp8Format>(w, x, tokens, y, row_begin, row_end);
  }
}

MOESERVE_AVX2 float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int j = 0; j < 4; ++j) {
      acc[j] =
          _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8 * j), _mm256_loadu_ps(b + i + 8 * j), acc[j]);
    }
  }
  for (; i + 8 <= n; i += 8) {
    acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc[0]);
  }
  if (i < n) {
    const __m256i mask = lane_mask(n - i);
    acc[1] =
        _mm256_fmadd_ps(_mm256_maskload_ps(a + i, mask), _mm256_maskload_ps(b + i, mask), acc[1]);
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

}  // namespace moeserve::kernels::internal

#else  // not x86: isa.cpp never selects the AVX2 path; these keep the link complete.

#include "kernels/cpu/matmul_impl.h"

namespace moeserve::kernels::internal {

void matmul_rows_avx2(const WeightView& w, const float* x, int64_t tokens, float* y,
                      int64_t row_begin, int64_t row_end) {
  matmul_rows_scalar(w, x, tokens, y, row_begin, row_end);
}

float dot_avx2(const float* a, const float* b, int64_t n) { return dot_scalar(a, b, n); }

}  // namespace moeserve::kernels::internal

#endif
