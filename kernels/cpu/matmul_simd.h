// Internal to kernels/cpu: the vector bodies of matmul and dot, written once and compiled
// once per instruction set. Deliberately no include guard: matmul_avx2.cpp and
// matmul_avx512.cpp each include it inside an anonymous namespace, within a
// `#pragma GCC target` region, after defining the primitives it uses:
//   Vec, kLanes                    the vector type and its float lanes
//   kTokenTile                     tokens per register tile of the panel path
//   kDirectTokensAnyShape          up to this many tokens use the direct path
//   kDirectTokens, kDirectFp8ActivationBytes
//                                  and FP8 up to kDirectTokens while tokens x cols floats
//                                  fit in this many bytes
//   kValueVectors                  vectors per cache row and pass in attention_values_any
//   vzero, vset1, vload, vstore, vload_first(p, n) (lanes >= n read as 0, never touched),
//   vfma(a, b, c) = a * b + c, vmul, vsum (horizontal add), vsum8(v, out): out[i] = vsum(v[i])
//                                  for eight vectors
//   vmax, vmax_lanes (horizontal max), vsub, vdiv, vexp (exp of each lane, exp_poly.h)
//   vload_bf16(p), vload_fp8_scaled(p): kLanes weights decoded; FP8 comes out as
//                                        value * 2^-8 (the binary16 trick, see matmul_avx2.cpp)
//   vload_fp8_bits(p): kLanes FP8 weights as value * 2^-120 (the E4M3 bits moved into a
//                                        float32's fields, see matmul_avx2.cpp)
// It must not instantiate standard-library templates (those would be compiled for the
// target and could be shared with code that runs on any CPU), hence the small helpers.
//
// Direct path (tokens <= kDirectTokens, decode-sized batches): one row at a time is decoded
// into registers and multiplied with every token (see gemv_rows for why not four rows);
// FP8 block scales are folded into a scaled copy of the activations once per 128-row
// block. Panel path (more tokens): four rows x up to kPanelCols columns are decoded (scales
// applied) into a float panel that stays in L1, then every token is multiplied against it,
// kTokenTile tokens at a time. Either way weight bytes are read and decoded once per batch.

constexpr int64_t kRows = 4;
constexpr int64_t kPanelCols = 1024;  // a multiple of the FP8 block and of kLanes
constexpr float kFp8VectorScale = 256.0f;
constexpr int kFp8BitsBias = 120;          // vload_fp8_bits gives value * 2^-120
constexpr float kFp8BitsUnit = 0x1p-120f;  // 2^-kFp8BitsBias
constexpr int64_t kPrefetchBytes = 4096;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

struct F32Format {
  using Elem = float;
  static constexpr bool kBlockScaled = false;
  static constexpr float kVectorScale = 1.0f;
  static Vec load(const Elem* p) { return vload(p); }
  static Vec load_direct(const Elem* p) { return load(p); }
  static float scalar(Elem v) { return v; }
};

struct Bf16Format {
  using Elem = uint16_t;
  static constexpr bool kBlockScaled = false;
  static constexpr float kVectorScale = 1.0f;
  static Vec load(const Elem* p) { return vload_bf16(p); }
  static Vec load_direct(const Elem* p) { return load(p); }
  static float scalar(Elem v) { return bf16_to_f32(v); }
};

struct Fp8Format {
  using Elem = uint8_t;
  static constexpr bool kBlockScaled = true;
  static constexpr float kVectorScale = kFp8VectorScale;
  static Vec load(const Elem* p) { return vload_fp8_scaled(p); }
  // The direct path's decode: value * 2^-kFp8BitsBias (vload_fp8_bits).
  static Vec load_direct(const Elem* p) { return vload_fp8_bits(p); }
  static float scalar(Elem v) { return fp8_e4m3_to_f32(v); }
};

// Columns per scale block: 128 for FP8, the whole row otherwise.
template <class F>
int64_t block_width(const WeightView& w) {
  return F::kBlockScaled ? kFp8BlockSize : (w.cols > 0 ? w.cols : 1);
}

// Scales of the row block holding `row` (null when the format has none).
template <class F>
const float* row_scales(const WeightView& w, int64_t row) {
  if (!F::kBlockScaled) return nullptr;
  return w.scale_inv + (row / kFp8BlockSize) * ((w.cols + kFp8BlockSize - 1) / kFp8BlockSize);
}

// The activations the direct path multiplies by, and what each token's sums are multiplied
// by afterwards. BF16/F32: x as it is, and 1. FP8 (decoded as value * 2^-120 by
// vload_fp8_bits, exact for every code, subnormals included): x times the column-block
// scales of row block `row_block` times 2^k, written to `buffer`, and 2^(120 - k) after.
// k is chosen per token so that the largest scaled activation is about 2^64: products and
// sums then stay far inside float32's normal range (a fixed 2^120 would overflow at
// |x * scale| >= 256, a fixed 2^64 underflow below ~2^-60), which keeps the float32
// accuracy for |x * scale| from 2^128 down to about 2^-110. Powers of two are exact, so
// the result is what x * scale . value gives with the same float32 sums.
struct DirectActivations {
  const float* x;
  double out_scale[kDirectTokens];
};

// k for the largest |x * scale| of a token (0 when it is 0, Inf or NaN: nothing to keep).
inline int direct_exponent(float max_abs) {
  if (!(max_abs > 0.0f) || !__builtin_isfinite(max_abs)) return 0;
  const int k = 64 - __builtin_ilogbf(max_abs);
  return k < -64 ? -64 : (k > kFp8BitsBias ? kFp8BitsBias : k);
}

template <class F>
DirectActivations direct_activations(const WeightView& w, const float* x, int64_t tokens,
                                     int64_t row_block, float* buffer) {
  DirectActivations out{x, {}};
  for (int64_t t = 0; t < kDirectTokens; ++t) out.out_scale[t] = 1.0;
  if (!F::kBlockScaled) return out;
  const float* scales = row_scales<F>(w, row_block * kFp8BlockSize);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* xt = x + t * w.cols;
    float* bt = buffer + t * w.cols;
    Vec max_v = vzero();
    float max_abs = 0.0f;
    for (int64_t c0 = 0; c0 < w.cols; c0 += kFp8BlockSize) {
      const float scale = scales[c0 / kFp8BlockSize];
      const Vec scale_v = vset1(scale);
      const int64_t c1 = min64(c0 + kFp8BlockSize, w.cols);
      int64_t c = c0;
      for (; c + kLanes <= c1; c += kLanes) {
        const Vec v = vmul(vload(xt + c), scale_v);
        vstore(bt + c, v);
        max_v = vmax(max_v, vmax(v, vsub(vzero(), v)));
      }
      for (; c < c1; ++c) {
        bt[c] = xt[c] * scale;
        const float a = bt[c] < 0.0f ? -bt[c] : bt[c];
        max_abs = a > max_abs ? a : max_abs;
      }
    }
    const float vector_max = vmax_lanes(max_v);
    const int k = direct_exponent(vector_max > max_abs ? vector_max : max_abs);
    const Vec shift = vset1(__builtin_ldexpf(1.0f, k));
    int64_t c = 0;
    for (; c + kLanes <= w.cols; c += kLanes) vstore(bt + c, vmul(vload(bt + c), shift));
    for (; c < w.cols; ++c) bt[c] *= __builtin_ldexpf(1.0f, k);
    out.out_scale[t] = __builtin_ldexp(1.0, kFp8BitsBias - k);
  }
  out.x = buffer;
  return out;
}

// y for row r and TT tokens, decoding straight from the weight row into registers (each
// weight is decoded once and used for every token). xs comes from direct_activations for
// the row block holding r. Rows are read one at a time, front to back, so a matrix is one
// sequential stream with the line kPrefetchBytes ahead requested: four interleaved row
// streams measured 1.2-1.5x slower from DRAM. kSets independent accumulators per token
// keep enough FMA chains in flight when TT is small.
template <class F, int TT>
void gemv_rows(const WeightView& w, int64_t r, const DirectActivations& a, float* y) {
  const float* xs = a.x;
  using Elem = typename F::Elem;
  // Four sets at one token, two past it (at 3-4 tokens one set left each token waiting on
  // its own sums: 13.2 -> 16.4 GB/s with two, AVX-512 FP8 at 4 tokens from DRAM; eight
  // chains at 1-2 tokens measured slower than four).
  constexpr int kSets = TT == 1 ? 4 : 2;
  const int64_t cols = w.cols;
  const Elem* row = static_cast<const Elem*>(w.data) + r * cols;
  Vec acc[TT][kSets];
  for (int t = 0; t < TT; ++t) {
    for (int s = 0; s < kSets; ++s) acc[t][s] = vzero();
  }
  int64_t c = 0;
  for (; c + kSets * kLanes <= cols; c += kSets * kLanes) {
    for (int64_t line = 0; line < kSets * kLanes * static_cast<int64_t>(sizeof(Elem)); line += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(row + c) + kPrefetchBytes + line, _MM_HINT_T0);
    }
    Vec wv[kSets];
#pragma GCC unroll 8
    for (int s = 0; s < kSets; ++s) wv[s] = F::load_direct(row + c + s * kLanes);
#pragma GCC unroll 8
    for (int t = 0; t < TT; ++t) {
#pragma GCC unroll 8
      for (int s = 0; s < kSets; ++s) {
        acc[t][s] = vfma(wv[s], vload(xs + t * cols + c + s * kLanes), acc[t][s]);
      }
    }
  }
  for (; c + kLanes <= cols; c += kLanes) {
    const Vec wv = F::load_direct(row + c);
    for (int t = 0; t < TT; ++t) acc[t][0] = vfma(wv, vload(xs + t * cols + c), acc[t][0]);
  }
  float tail[TT] = {};
  for (; c < cols; ++c) {
    const float weight = F::scalar(row[c]) * (F::kBlockScaled ? kFp8BitsUnit : 1.0f);
    for (int t = 0; t < TT; ++t) tail[t] += weight * xs[t * cols + c];
  }
  for (int t = 0; t < TT; ++t) {
    Vec sum = acc[t][0];
    for (int s = 1; s < kSets; ++s) sum = vadd(sum, acc[t][s]);
    y[t * w.rows + r] = static_cast<float>((vsum(sum) + tail[t]) * a.out_scale[t]);
  }
}

// gemv_rows for n <= TT tokens, n known only at run time.
template <class F, int TT>
void gemv_rows_n(int64_t n, const WeightView& w, int64_t r, const DirectActivations& a, float* y) {
  if (n == TT) {
    gemv_rows<F, TT>(w, r, a, y);
  } else if constexpr (TT > 1) {
    gemv_rows_n<F, TT - 1>(n, w, r, a, y);
  }
}

// Decodes columns [c0, c1) of rows r .. r+count-1 into `panel` (row stride kPanelCols) with
// scales applied; rows past `count` and columns past c1 (to a multiple of kLanes) are zero.
template <class F>
void decode_panel(const WeightView& w, int64_t r, int64_t count, int64_t c0, int64_t c1,
                  float* panel) {
  using Elem = typename F::Elem;
  const int64_t padded = (c1 - c0 + kLanes - 1) / kLanes * kLanes;
  const int64_t block = block_width<F>(w);
  for (int64_t i = 0; i < kRows; ++i) {
    float* out = panel + i * kPanelCols;  // out[k] holds column c0 + k
    int64_t filled = 0;
    if (i < count) {
      const Elem* row = static_cast<const Elem*>(w.data) + (r + i) * w.cols;
      const float* scales = row_scales<F>(w, r + i);
      for (int64_t b0 = c0; b0 < c1; b0 += block) {
        const int64_t b1 = min64(b0 + block, c1);
        const float scale = scales != nullptr ? scales[b0 / kFp8BlockSize] : 1.0f;
        const Vec vector_scale = vset1(scale * F::kVectorScale);
        int64_t c = b0;
        for (; c + kLanes <= b1; c += kLanes) {
          // The four rows are four streams from DRAM: asking for each 4 KiB ahead measured
          // 1.4x faster at 6 tokens, 1.25x at 16, 1.1x at 64 (bench/kernels.cpp shapes).
          _mm_prefetch(reinterpret_cast<const char*>(row + c) + kPrefetchBytes, _MM_HINT_T0);
          const Vec v = F::load(row + c);
          vstore(out + (c - c0), F::kBlockScaled ? vmul(v, vector_scale) : v);
        }
        for (; c < b1; ++c) out[c - c0] = F::scalar(row[c]) * scale;
      }
      filled = c1 - c0;
    }
    for (int64_t k = filled; k < padded; ++k) out[k] = 0.0f;
  }
}

// out[i * kTokenTile + t] = panel row i . x row t over `width` columns, for TT tokens.
template <int TT>
void panel_tile(const float* panel, int64_t width, const float* x, int64_t x_stride, float* out) {
  Vec acc[kRows][TT];
  for (int i = 0; i < kRows; ++i) {
    for (int t = 0; t < TT; ++t) acc[i][t] = vzero();
  }
  int64_t c = 0;
  for (; c + kLanes <= width; c += kLanes) {
    Vec wv[kRows];
    for (int i = 0; i < kRows; ++i) wv[i] = vload(panel + i * kPanelCols + c);
#pragma GCC unroll 8
    for (int t = 0; t < TT; ++t) {
      const Vec xv = vload(x + t * x_stride + c);
      for (int i = 0; i < kRows; ++i) acc[i][t] = vfma(wv[i], xv, acc[i][t]);
    }
  }
  if (c < width) {
    Vec wv[kRows];
    for (int i = 0; i < kRows; ++i) wv[i] = vload(panel + i * kPanelCols + c);
    for (int t = 0; t < TT; ++t) {
      const Vec xv = vload_first(x + t * x_stride + c, width - c);
      for (int i = 0; i < kRows; ++i) acc[i][t] = vfma(wv[i], xv, acc[i][t]);
    }
  }
  for (int i = 0; i < kRows; ++i) {
    for (int t = 0; t < TT; ++t) out[i * kTokenTile + t] = vsum(acc[i][t]);
  }
}

// panel_tile for n <= TT tokens, n known only at run time.
template <int TT>
void panel_tile_n(int64_t n, const float* panel, int64_t width, const float* x, int64_t x_stride,
                  float* out) {
  if (n == TT) {
    panel_tile<TT>(panel, width, x, x_stride, out);
  } else if constexpr (TT > 1) {
    panel_tile_n<TT - 1>(n, panel, width, x, x_stride, out);
  }
}

// Rows r .. r+count-1 (count <= 4) for all tokens through the decoded panel.
template <class F>
void panel_rows(const WeightView& w, const float* x, int64_t tokens, float* y, int64_t r,
                int64_t count, float* panel) {
  for (int64_t c0 = 0; c0 < w.cols; c0 += kPanelCols) {
    const int64_t c1 = min64(c0 + kPanelCols, w.cols);
    decode_panel<F>(w, r, count, c0, c1, panel);
    for (int64_t t0 = 0; t0 < tokens; t0 += kTokenTile) {
      const int64_t n = min64(kTokenTile, tokens - t0);
      float out[kRows * kTokenTile];
      panel_tile_n<kTokenTile>(n, panel, c1 - c0, x + t0 * w.cols + c0, w.cols, out);
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t i = 0; i < count; ++i) {
          float& dst = y[(t0 + t) * w.rows + r + i];
          dst = (c0 == 0 ? 0.0f : dst) + out[i * kTokenTile + t];
        }
      }
    }
  }
}

template <class F>
void matmul_rows_simd(const WeightView& w, const float* x, int64_t tokens, float* y,
                      int64_t row_begin, int64_t row_end) {
  const bool direct =
      tokens <= kDirectTokensAnyShape ||
      (F::kBlockScaled && tokens <= kDirectTokens &&
       tokens * w.cols * static_cast<int64_t>(sizeof(float)) <= kDirectFp8ActivationBytes);
  float* panel = panel_scratch(kRows * kPanelCols + (direct ? tokens * w.cols : 0));
  int64_t r = row_begin;
  if (direct) {
    float* scaled_x = panel + kRows * kPanelCols;
    int64_t prepared_block = -1;
    DirectActivations xs{x, {}};
    for (; r < row_end; ++r) {
      const int64_t block = r / kFp8BlockSize;
      if (block != prepared_block) {
        xs = direct_activations<F>(w, x, tokens, block, scaled_x);
        prepared_block = block;
      }
      gemv_rows_n<F, kDirectTokens>(tokens, w, r, xs, y);
    }
  }
  for (; r < row_end; r += kRows) {
    panel_rows<F>(w, x, tokens, y, r, min64(kRows, row_end - r), panel);
  }
}

void matmul_rows_any(const WeightView& w, const float* x, int64_t tokens, float* y,
                     int64_t row_begin, int64_t row_end) {
  switch (w.type) {
    case WeightType::kF32: return matmul_rows_simd<F32Format>(w, x, tokens, y, row_begin, row_end);
    case WeightType::kBF16:
      return matmul_rows_simd<Bf16Format>(w, x, tokens, y, row_begin, row_end);
    case WeightType::kFP8E4M3:
      return matmul_rows_simd<Fp8Format>(w, x, tokens, y, row_begin, row_end);
  }
}

float dot_any(const float* a, const float* b, int64_t n) {
  Vec acc[4] = {vzero(), vzero(), vzero(), vzero()};
  int64_t i = 0;
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
    for (int j = 0; j < 4; ++j) {
      acc[j] = vfma(vload(a + i + kLanes * j), vload(b + i + kLanes * j), acc[j]);
    }
  }
  for (; i + kLanes <= n; i += kLanes) acc[0] = vfma(vload(a + i), vload(b + i), acc[0]);
  if (i < n) acc[1] = vfma(vload_first(a + i, n - i), vload_first(b + i, n - i), acc[1]);
  return vsum(vadd(vadd(acc[0], acc[1]), vadd(acc[2], acc[3])));
}

// Attention for a tile of H heads over n cache rows (ops.h attention_scores and
// attention_values): each row is loaded once for all H heads, instead of once per head.
constexpr int kHeadTile = 8;  // vsum8 reduces a tile

template <int H>
void attention_scores_tile(const float* q, int64_t q_stride, const float* const* rows, int64_t n,
                           int64_t dim, float scale, float* scores, int64_t score_stride) {
  for (int64_t j = 0; j < n; ++j) {
    const float* row = rows[j];
    Vec acc[H];
    for (int h = 0; h < H; ++h) acc[h] = vzero();
    int64_t c = 0;
    for (; c + kLanes <= dim; c += kLanes) {
      const Vec r = vload(row + c);
#pragma GCC unroll 8
      for (int h = 0; h < H; ++h) acc[h] = vfma(vload(q + h * q_stride + c), r, acc[h]);
    }
    if (c < dim) {
      const Vec r = vload_first(row + c, dim - c);
      for (int h = 0; h < H; ++h) {
        acc[h] = vfma(vload_first(q + h * q_stride + c, dim - c), r, acc[h]);
      }
    }
    Vec all[kHeadTile];
    for (int h = 0; h < kHeadTile; ++h) all[h] = h < H ? acc[h] : vzero();
    float sums[kHeadTile];
    vsum8(all, sums);
    for (int h = 0; h < H; ++h) scores[h * score_stride + j] = sums[h] * scale;
  }
}

template <int H>
void attention_values_tile(const float* p, int64_t p_stride, const float* const* rows, int64_t n,
                           int64_t dim, float* out, int64_t out_stride) {
  constexpr int64_t kWidth = kValueVectors * kLanes;
  for (int64_t c0 = 0; c0 < dim; c0 += kWidth) {
    const int64_t width = min64(kWidth, dim - c0);
    Vec acc[H][kValueVectors];
    for (int h = 0; h < H; ++h) {
      for (int k = 0; k < kValueVectors; ++k) acc[h][k] = vzero();
    }
    for (int64_t j = 0; j < n; ++j) {
      Vec r[kValueVectors];
      for (int k = 0; k < kValueVectors; ++k) {
        const int64_t left = width - k * kLanes;
        r[k] = left >= kLanes ? vload(rows[j] + c0 + k * kLanes)
                              : (left > 0 ? vload_first(rows[j] + c0 + k * kLanes, left) : vzero());
      }
#pragma GCC unroll 8
      for (int h = 0; h < H; ++h) {
        const Vec weight = vset1(p[h * p_stride + j]);
        for (int k = 0; k < kValueVectors; ++k) acc[h][k] = vfma(weight, r[k], acc[h][k]);
      }
    }
    for (int h = 0; h < H; ++h) {
      for (int k = 0; k < kValueVectors; ++k) {
        float* dst = out + h * out_stride + c0 + k * kLanes;
        const int64_t left = width - k * kLanes;
        if (left >= kLanes) {
          vstore(dst, acc[h][k]);
        } else if (left > 0) {
          float lanes[kLanes];
          vstore(lanes, acc[h][k]);
          for (int64_t i = 0; i < left; ++i) dst[i] = lanes[i];
        }
      }
    }
  }
}

// Runs TILE<H> over heads in tiles of kHeadTile, the last tile with the heads left.
template <int H, class Run>
void for_head_tiles(int64_t heads, Run run) {
  if constexpr (H == kHeadTile) {
    for (; heads >= kHeadTile; heads -= kHeadTile) run.template operator()<kHeadTile>();
  }
  if (heads == H) {
    run.template operator()<H>();
  } else if constexpr (H > 1) {
    for_head_tiles<H - 1>(heads, run);
  }
}

void attention_scores_any(const float* q, int64_t q_stride, int64_t heads, const float* const* rows,
                          int64_t n, int64_t dim, float scale, float* scores,
                          int64_t score_stride) {
  int64_t h0 = 0;
  for_head_tiles<kHeadTile>(heads, [&]<int H>() {
    attention_scores_tile<H>(q + h0 * q_stride, q_stride, rows, n, dim, scale,
                             scores + h0 * score_stride, score_stride);
    h0 += H;
  });
}

void attention_values_any(const float* p, int64_t p_stride, int64_t heads, const float* const* rows,
                          int64_t n, int64_t dim, float* out, int64_t out_stride) {
  int64_t h0 = 0;
  for_head_tiles<kHeadTile>(heads, [&]<int H>() {
    attention_values_tile<H>(p + h0 * p_stride, p_stride, rows, n, dim, out + h0 * out_stride,
                             out_stride);
    h0 += H;
  });
}

// ops.h softmax: the max, then exp(x - max) in place with the sum (float lanes over at
// most kSumChunk vectors, then double), then the scaling. The tail shorter than a vector
// takes expf.
void softmax_any(float* x, int64_t n) {
  if (n <= 0) return;
  const int64_t full = n / kLanes * kLanes;
  float max_value = x[0];
  if (full > 0) {
    Vec m = vload(x);
    for (int64_t i = kLanes; i < full; i += kLanes) m = vmax(m, vload(x + i));
    max_value = vmax_lanes(m);
  }
  for (int64_t i = full; i < n; ++i) max_value = x[i] > max_value ? x[i] : max_value;
  const Vec shift = vset1(max_value);
  constexpr int64_t kSumChunk = 16 * kLanes;
  double sum = 0.0;
  for (int64_t c0 = 0; c0 < full; c0 += kSumChunk) {
    const int64_t c1 = min64(full, c0 + kSumChunk);
    Vec partial = vzero();
    for (int64_t i = c0; i < c1; i += kLanes) {
      const Vec e = vexp(vsub(vload(x + i), shift));
      vstore(x + i, e);
      partial = vadd(partial, e);
    }
    sum += static_cast<double>(vsum(partial));
  }
  for (int64_t i = full; i < n; ++i) {
    x[i] = __builtin_expf(x[i] - max_value);
    sum += static_cast<double>(x[i]);
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
  const Vec scale = vset1(inv_sum);
  for (int64_t i = 0; i < full; i += kLanes) vstore(x + i, vmul(vload(x + i), scale));
  for (int64_t i = full; i < n; ++i) x[i] *= inv_sum;
}

// ops.h silu_mul: gate / (1 + exp(-gate)) * up; the tail takes expf.
void silu_mul_any(const float* gate, const float* up, int64_t n, float* out) {
  const int64_t full = n / kLanes * kLanes;
  const Vec one = vset1(1.0f), zero = vzero();
  for (int64_t i = 0; i < full; i += kLanes) {
    const Vec g = vload(gate + i);
    const Vec silu = vdiv(g, vadd(one, vexp(vsub(zero, g))));
    vstore(out + i, vmul(silu, vload(up + i)));
  }
  for (int64_t i = full; i < n; ++i) out[i] = gate[i] / (1.0f + __builtin_expf(-gate[i])) * up[i];
}
