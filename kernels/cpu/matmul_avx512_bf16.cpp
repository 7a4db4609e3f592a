// AVX-512 BF16 matmul for BF16 and FP8 weights whose rows start on 64-byte lines and are
// whole 64-weight chunks (other weights go to the VBMI kernel). The weights are widened to
// BF16 (exact for both: FP8 E4M3 through two vpermi2b look-ups on a 128-entry table)
// and multiplied by vdpbf16ps, which does 32 multiply-adds per instruction where the
// float32 kernels do 16 after widening each weight once more to float32.
//   One token (kDirectTokensBf16): one row at a time, front to back, eight dot-product
//   chains; cache-resident (256x1024, one thread) FP8 1.1-1.2x the generic AVX-512
//   kernel's weight bytes, BF16 about 1.2x.
//   More tokens: tiles of up to 4 rows x 4 tokens (gemm_range below). From DRAM, one
//   thread, FP8: 2 tokens 1.09x the one-row kernel at 512x1024 and 2.3x at 2048x7168 (one
//   row at a time, two tokens' split activations of a long row leave L1); 3-16 tokens
//   1.2-1.5x and 64 tokens 1.25-1.7x the generic float32 kernel's row panels.
//
// Activations stay float32-accurate: each is split into x = hi + lo with hi = bf16(x) and
// lo = bf16(x - hi) (once per call, or per 128-row block for FP8, whose block scale is
// folded in first), and every weight is multiplied by both. Products of BF16 values are
// exact in float32, so the only error beyond float32 accumulation is |x - hi - lo| <=
// 2^-18 |x| per product: within the 1e-5 * sum |w x| the matmul tests allow on every ISA.
// vdpbf16ps flushes subnormal inputs and results to zero: an activation whose scaled value
// is below 2^-126 (for FP8 scales of ~1e-3, |x| < ~2^-116) counts as zero, as does a product
// below 2^-126; both are far under that bound relative to any sum a model computes.
//
// Column order: a BF16 chunk is used as loaded (dword j = columns 2j, 2j+1, which
// vdpbf16ps pairs). An FP8 chunk of 64 decodes into two BF16 vectors whose 128-bit lane L
// holds columns 16L..16L+7 (first) and 16L+8..16L+15 (second); the activations are laid out
// the same way when they are split, so the inner loop has no shuffles.
#include "kernels/cpu/isa.h"

#if MOESERVE_X86_SIMD

#include <immintrin.h>

#include "kernels/cpu/convert.h"
#include "kernels/cpu/matmul_impl.h"

namespace moeserve::kernels::internal {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512bf16,avx2,fma,f16c")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

constexpr int64_t kChunk = 64;  // weights per step: two BF16 vectors of 32
// The line 4 KiB ahead is requested, as in the other kernels (rows are read front to back;
// 8 KiB, or into L2 only, measured the same within noise).
constexpr int64_t kPrefetchBytes = 4096;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// x rounded to the nearest BF16 (ties to even), as float32.
inline __m512 round_to_bf16(__m512 x) {
  const __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// The high and low BF16 parts of 32 activations: out[0] = bf16(x), out[1] = bf16(x - out[0]),
// in natural column order (word k = column k; x0 holds columns 0-15, x1 16-31).
inline void split32(__m512 x0, __m512 x1, __m512i* hi, __m512i* lo) {
  const __m512 h0 = round_to_bf16(x0), h1 = round_to_bf16(x1);
  *hi = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(h1, h0));
  *lo =
      reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(_mm512_sub_ps(x1, h1), _mm512_sub_ps(x0, h0)));
}

// One token's split activations: for each 64-column chunk four vectors of 32 BF16 values,
// [hi of first, hi of second, lo of first, lo of second], "first"/"second" being the two
// weight vectors the chunk decodes into (see the file comment); each value times
// scale_of(column), constant over a chunk.
template <class ScaleOf>
void split_bf16_layout(const float* x, int64_t cols, ScaleOf scale_of, __m512i* out) {
  for (int64_t c0 = 0; c0 < cols; c0 += kChunk, out += 4) {
    const __m512 s = _mm512_set1_ps(scale_of(c0));
    split32(_mm512_mul_ps(_mm512_loadu_ps(x + c0), s),
            _mm512_mul_ps(_mm512_loadu_ps(x + c0 + 16), s), &out[0], &out[2]);
    split32(_mm512_mul_ps(_mm512_loadu_ps(x + c0 + 32), s),
            _mm512_mul_ps(_mm512_loadu_ps(x + c0 + 48), s), &out[1], &out[3]);
  }
}

template <class ScaleOf>
void split_fp8_layout(const float* x, int64_t cols, ScaleOf scale_of, __m512i* out) {
  for (int64_t c0 = 0; c0 < cols; c0 += kChunk, out += 4) {
    const __m512 s = _mm512_set1_ps(scale_of(c0));
    __m512i hi01, lo01, hi23, lo23;  // 128-bit lanes: columns 0-7, 8-15, 16-23, 24-31 (+32)
    split32(_mm512_mul_ps(_mm512_loadu_ps(x + c0), s),
            _mm512_mul_ps(_mm512_loadu_ps(x + c0 + 16), s), &hi01, &lo01);
    split32(_mm512_mul_ps(_mm512_loadu_ps(x + c0 + 32), s),
            _mm512_mul_ps(_mm512_loadu_ps(x + c0 + 48), s), &hi23, &lo23);
    out[0] = _mm512_shuffle_i32x4(hi01, hi23, 0x88);  // lanes 0, 2 of each: columns 16L + 0..7
    out[1] = _mm512_shuffle_i32x4(hi01, hi23, 0xdd);  // lanes 1, 3: columns 16L + 8..15
    out[2] = _mm512_shuffle_i32x4(lo01, lo23, 0x88);
    out[3] = _mm512_shuffle_i32x4(lo01, lo23, 0xdd);
  }
}

struct Bf16Weights {
  using Elem = uint16_t;
  void decode(const Elem* p, __m512i* out) const {
    out[0] = _mm512_load_si512(p);
    out[1] = _mm512_load_si512(p + 32);
  }
};

struct Fp8Weights {
  using Elem = uint8_t;
  __m512i hi0, hi1, lo0, lo1;
  __m512i sign = _mm512_set1_epi8(static_cast<char>(0x80));
  Fp8Weights() {
    const Fp8Bf16Tables& t = fp8_bf16_tables();
    hi0 = _mm512_load_si512(t.hi);
    hi1 = _mm512_load_si512(t.hi + 64);
    lo0 = _mm512_load_si512(t.lo);
    lo1 = _mm512_load_si512(t.lo + 64);
  }
  void decode(const Elem* p, __m512i* out) const {
    __m512i v = _mm512_load_si512(p);
    // One load per line: without this GCC reloads v for each look-up (vpermi2b overwrites
    // its index), and from DRAM the extra loads of a line in flight cost ~20 %.
    __asm__("" : "+v"(v));
    __m512i hi = _mm512_permutex2var_epi8(hi0, v, hi1);
    hi = _mm512_ternarylogic_epi32(hi, v, sign, 0xf8);  // hi | (v & 0x80)
    const __m512i lo = _mm512_permutex2var_epi8(lo0, v, lo1);
    out[0] = _mm512_unpacklo_epi8(lo, hi);
    out[1] = _mm512_unpackhi_epi8(lo, hi);
  }
};

inline __m512 dot_step(__m512 acc, __m512i w, __m512i x) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(w), reinterpret_cast<__m512bh>(x));
}

// Adds chunk i of the row (already decoded into wv) times each token's activations into
// acc[t][0..3]: four independent dot-product chains per token.
template <int TT>
inline void accumulate_chunk(const __m512i* wv, const __m512i* xs, int64_t chunks, int64_t i,
                             __m512 (*acc)[4]) {
#pragma GCC unroll 4
  for (int t = 0; t < TT; ++t) {
    const __m512i* xt = xs + (t * chunks + i) * 4;
    acc[t][0] = dot_step(acc[t][0], wv[0], xt[0]);
    acc[t][1] = dot_step(acc[t][1], wv[1], xt[1]);
    acc[t][2] = dot_step(acc[t][2], wv[0], xt[2]);
    acc[t][3] = dot_step(acc[t][3], wv[1], xt[3]);
  }
}

template <class D>
inline void decode_chunk(const D& dec, const typename D::Elem* p, __m512i* wv) {
  // Every line of the chunk (a BF16 chunk spans two).
  for (int64_t line = 0; line < kChunk * static_cast<int64_t>(sizeof(*p)); line += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes + line, _MM_HINT_T0);
  }
  dec.decode(p, wv);
}

// y for row r and TT tokens; xs holds TT tokens' split activations (4 vectors per chunk).
// A dot product's latency is several cycles, so each token needs about eight chains in
// flight: four per chunk, and at one token two chunks per iteration into separate sets.
// Only TT = 1 is used now (kDirectTokensBf16); a rewrite without the token template measured
// 9-12 % slower (GCC scheduled it differently), so this form is kept.
template <class D, int TT>
void gemv(const D& dec, const WeightView& w, int64_t r, const __m512i* xs, float* y) {
  const int64_t chunks = w.cols / kChunk;
  const auto* row = static_cast<const typename D::Elem*>(w.data) + r * w.cols;
  constexpr int kSets = TT == 1 ? 2 : 1;
  __m512 acc[kSets][TT][4];
  for (int s = 0; s < kSets; ++s) {
    for (int t = 0; t < TT; ++t) {
      for (int k = 0; k < 4; ++k) acc[s][t][k] = _mm512_setzero_ps();
    }
  }
  int64_t i = 0;
  for (; i + kSets <= chunks; i += kSets) {
#pragma GCC unroll 2
    for (int s = 0; s < kSets; ++s) {
      __m512i wv[2];
      decode_chunk(dec, row + (i + s) * kChunk, wv);
      accumulate_chunk<TT>(wv, xs, chunks, i + s, acc[s]);
    }
  }
  if (i < chunks) {  // the odd chunk of a one-token row
    __m512i wv[2];
    decode_chunk(dec, row + i * kChunk, wv);
    accumulate_chunk<TT>(wv, xs, chunks, i, acc[0]);
  }
  for (int t = 0; t < TT; ++t) {
    __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[0][t][0], acc[0][t][1]),
                               _mm512_add_ps(acc[0][t][2], acc[0][t][3]));
    if constexpr (kSets > 1) {
      sum = _mm512_add_ps(sum, _mm512_add_ps(_mm512_add_ps(acc[1][t][0], acc[1][t][1]),
                                             _mm512_add_ps(acc[1][t][2], acc[1][t][3])));
    }
    y[t * w.rows + r] = _mm512_reduce_add_ps(sum);
  }
}

template <class D, int TT>
void gemv_n(int64_t tokens, const D& dec, const WeightView& w, int64_t r, const __m512i* xs,
            float* y) {
  if (tokens == TT) {
    gemv<D, TT>(dec, w, r, xs, y);
  } else if constexpr (TT > 1) {
    gemv_n<D, TT - 1>(tokens, dec, w, r, xs, y);
  }
}

template <class D>
void gemv_range(const D& dec, const WeightView& w, int64_t tokens, int64_t r, int64_t end,
                const __m512i* xs, float* y) {
  for (; r < end; ++r) gemv_n<D, kDirectTokensBf16>(tokens, dec, w, r, xs, y);
}

// ---- More tokens: tiles of rows x tokens ---------------------------------------------------
//
// For each block of up to kPanelTokens tokens and column panel of up to kPanelCols columns,
// the tokens' activations are split for the panel's columns (again at each FP8 row block,
// whose scales they carry; they stay in L1/L2 for the whole pass over the rows). Then,
// kTileRows rows at a time, the rows are multiplied by every tile of up to kTileTokens
// tokens: with a few token tiles each tile widens the rows itself, in registers; with more,
// the rows are widened once into a small BF16 panel in L1 that every tile reads. Either way
// the widening of one row tile sits between the dot products of the last, so reading
// weights from memory overlaps the arithmetic (a whole 128-row block widened up front
// measured 1.1-1.2x slower from DRAM at 3-16 tokens).
constexpr int64_t kPanelCols = 1024;
constexpr int64_t kPanelTokens = 64;
constexpr int kTileRows = 4;
constexpr int kTileTokens = 4;
// Up to this many token tiles (16 tokens) each tile widens its rows in registers as it
// runs; past it the rows are widened once into the panel. Widening is cheap next to a
// tile's dot products, storing and reloading the panel is not: from DRAM, FP8 512x1024,
// one thread, in registers measured 1.35x the panel at 3 tokens, 1.25x at 6, 1.13x at 12,
// 1.09x at 16, and the same at 64.
constexpr int64_t kRegisterTiles = 4;

// Element t * 4 + i of the result = the lanes of acc[i][t] added, for a 4 x 4 tile: a tree
// of 15 shuffle pairs instead of 16 separate reductions. So 128-bit block t of the result
// holds rows 0-3 of token t.
inline __m512 reduce_tile(const __m512 (&acc)[4][4]) {
  __m512 half[8];  // 256-bit halves: [acc[2j] summed halves | acc[2j + 1] summed halves]
  for (int j = 0; j < 8; ++j) {
    const __m512 a = acc[(2 * j) / 4][(2 * j) % 4], b = acc[(2 * j + 1) / 4][(2 * j + 1) % 4];
    half[j] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
  }
  __m512 quad[4];  // 128-bit lane L of quad[k]: four partial sums of flat accumulator 4k + L
  for (int k = 0; k < 4; ++k) {
    quad[k] = _mm512_add_ps(_mm512_shuffle_f32x4(half[2 * k], half[2 * k + 1], 0x88),
                            _mm512_shuffle_f32x4(half[2 * k], half[2 * k + 1], 0xdd));
  }
  const __m512 u0 = _mm512_add_ps(_mm512_shuffle_ps(quad[0], quad[1], 0x44),
                                  _mm512_shuffle_ps(quad[0], quad[1], 0xee));
  const __m512 u1 = _mm512_add_ps(_mm512_shuffle_ps(quad[2], quad[3], 0x44),
                                  _mm512_shuffle_ps(quad[2], quad[3], 0xee));
  // Element 4L + m is flat accumulator 4m + L, i.e. row m of token L.
  return _mm512_add_ps(_mm512_shuffle_ps(u0, u1, 0x88), _mm512_shuffle_ps(u0, u1, 0xdd));
}

// Where a tile's weights come from: src.get(i, k, out) puts chunk k of the tile's row i,
// widened to BF16, in out[0..1].
//   PanelWeights: rows already widened into a panel (row stride `stride` vectors).
//   RowWeights: widened from the matrix as the tile runs, each chunk also asking for the
//   same columns at `ahead` (prefetch_rows on; null: none).
struct PanelWeights {
  const __m512i* panel;
  int64_t stride;
  void get(int i, int64_t k, __m512i* out) const {
    out[0] = _mm512_load_si512(panel + i * stride + 2 * k);
    out[1] = _mm512_load_si512(panel + i * stride + 2 * k + 1);
  }
};

template <class D>
struct RowWeights {
  using Elem = typename D::Elem;
  static constexpr int64_t kChunkBytes = kChunk * static_cast<int64_t>(sizeof(Elem));
  const D& dec;
  const Elem* row;  // the tile's first row, at its first column
  int64_t cols;     // the matrix's row stride in elements
  const char* ahead;
  void get(int i, int64_t k, __m512i* out) const {
    if (ahead != nullptr) {
      const char* p = ahead + (i * cols + k * kChunk) * static_cast<int64_t>(sizeof(Elem));
      for (int64_t line = 0; line < kChunkBytes; line += 64) _mm_prefetch(p + line, _MM_HINT_T0);
    }
    dec.decode(row + i * cols + k * kChunk, out);
  }
};

// y[t * y_stride + i] (+)= row i . token t's split activations, for R rows and TT tokens
// over `chunks` chunks; xs: the first token's chunks, 4 vectors each, token stride
// x_stride. Tiles of up to 8 row-token pairs keep the high and low halves in separate
// accumulators, so full tiles have 12-16 dot-product chains in flight.
template <int R, int TT, class W>
void panel_tile(const W& src, const __m512i* xs, int64_t x_stride, int64_t chunks, float* y,
                int64_t y_stride, bool accumulate) {
  constexpr int kSets = R * TT <= 8 ? 2 : 1;
  __m512 acc[kSets][4][4];
  for (int s = 0; s < kSets; ++s) {
    for (int i = 0; i < 4; ++i) {
      for (int t = 0; t < 4; ++t) acc[s][i][t] = _mm512_setzero_ps();
    }
  }
  for (int64_t k = 0; k < chunks; ++k) {
    __m512i wv[R][2];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) src.get(i, k, wv[i]);
#pragma GCC unroll 4
    for (int t = 0; t < TT; ++t) {
      const __m512i* xt = xs + t * x_stride + 4 * k;
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        acc[0][i][t] = dot_step(acc[0][i][t], wv[i][0], xt[0]);
        acc[0][i][t] = dot_step(acc[0][i][t], wv[i][1], xt[1]);
        acc[kSets - 1][i][t] = dot_step(acc[kSets - 1][i][t], wv[i][0], xt[2]);
        acc[kSets - 1][i][t] = dot_step(acc[kSets - 1][i][t], wv[i][1], xt[3]);
      }
    }
  }
  if constexpr (kSets > 1) {
    for (int i = 0; i < R; ++i) {
      for (int t = 0; t < TT; ++t) acc[0][i][t] = _mm512_add_ps(acc[0][i][t], acc[1][i][t]);
    }
  }
  const __m512 sums = reduce_tile(acc[0]);
  const __mmask8 rows = static_cast<__mmask8>((1u << R) - 1);
  for (int t = 0; t < TT; ++t) {
    const __m128 v = t == 0   ? _mm512_castps512_ps128(sums)
                     : t == 1 ? _mm512_extractf32x4_ps(sums, 1)
                     : t == 2 ? _mm512_extractf32x4_ps(sums, 2)
                              : _mm512_extractf32x4_ps(sums, 3);
    float* out = y + t * y_stride;
    _mm_mask_storeu_ps(out, rows, accumulate ? _mm_add_ps(v, _mm_maskz_loadu_ps(rows, out)) : v);
  }
}

template <int R, class W>
void panel_tile_tokens(int tokens, const W& src, const __m512i* xs, int64_t x_stride,
                       int64_t chunks, float* y, int64_t y_stride, bool accumulate) {
  switch (tokens) {
    case 1: return panel_tile<R, 1>(src, xs, x_stride, chunks, y, y_stride, accumulate);
    case 2: return panel_tile<R, 2>(src, xs, x_stride, chunks, y, y_stride, accumulate);
    case 3: return panel_tile<R, 3>(src, xs, x_stride, chunks, y, y_stride, accumulate);
    default: return panel_tile<R, 4>(src, xs, x_stride, chunks, y, y_stride, accumulate);
  }
}

template <class W>
void panel_tile_n(int rows, int tokens, const W& src, const __m512i* xs, int64_t x_stride,
                  int64_t chunks, float* y, int64_t y_stride, bool accumulate) {
  switch (rows) {
    case 1: return panel_tile_tokens<1>(tokens, src, xs, x_stride, chunks, y, y_stride, accumulate);
    case 2: return panel_tile_tokens<2>(tokens, src, xs, x_stride, chunks, y, y_stride, accumulate);
    case 3: return panel_tile_tokens<3>(tokens, src, xs, x_stride, chunks, y, y_stride, accumulate);
    default:
      return panel_tile_tokens<4>(tokens, src, xs, x_stride, chunks, y, y_stride, accumulate);
  }
}

// How many rows ahead a tile asks for the same columns, given panels of `chunks` chunks: at
// least the next tile, and about kTileLeadBytes of weights ahead in the order they are read.
// From DRAM, one thread: BF16 32000x1024 at 4 tokens 1.55x asking 2 rows ahead (4 KiB),
// 16 tokens 1.08x; FP8 2048x7168 at 2 tokens 1.09x; the same at 64 tokens.
constexpr int64_t kTileLeadBytes = 8192;

template <class D>
int64_t prefetch_rows(int64_t chunks) {
  const int64_t bytes = chunks * RowWeights<D>::kChunkBytes;
  const int64_t rows = (kTileLeadBytes + bytes - 1) / bytes;
  return rows > kTileRows ? rows : kTileRows;
}

// Widens rows [r0, r1) x chunks [k0, k0 + chunks) into `panel` (row stride 2 * chunks
// vectors), asking for the same columns prefetch_rows on (below `prefetch_end`).
template <class D>
void decode_panel(const D& dec, const WeightView& w, int64_t r0, int64_t r1, int64_t k0,
                  int64_t chunks, int64_t prefetch_end, __m512i* panel) {
  using Elem = typename D::Elem;
  const int64_t ahead = prefetch_rows<D>(chunks);
  for (int64_t r = r0; r < r1; ++r) {
    const Elem* row = static_cast<const Elem*>(w.data) + r * w.cols + k0 * kChunk;
    const RowWeights<D> src{
        dec, row, w.cols,
        r + ahead < prefetch_end ? reinterpret_cast<const char*>(row + ahead * w.cols) : nullptr};
    for (int64_t k = 0; k < chunks; ++k) src.get(0, k, panel + (r - r0) * 2 * chunks + 2 * k);
  }
}

// Rows [row_begin, row_end) for `tokens` > kDirectTokensBf16 tokens in tiles.
// split(t, c0, c1, r, out) writes token t's split activations of columns [c0, c1) for the
// FP8 row block holding row r.
template <class D, class Split>
void gemm_range(const D& dec, const WeightView& w, int64_t tokens, int64_t row_begin,
                int64_t row_end, Split split, float* y) {
  const int64_t panel_chunks = kPanelCols / kChunk;
  auto* xs = reinterpret_cast<__m512i*>(
      panel_scratch(kPanelTokens * kPanelCols + kTileRows * kPanelCols / 2));
  __m512i* panel = xs + kPanelTokens * panel_chunks * 4;
  for (int64_t t0 = 0; t0 < tokens; t0 += kPanelTokens) {
    const int64_t block_tokens = min64(kPanelTokens, tokens - t0);
    // Token tiles of near-equal size: 6 tokens as 3 + 3, not 4 + 2.
    const int64_t tiles = (block_tokens + kTileTokens - 1) / kTileTokens;
    for (int64_t c0 = 0; c0 < w.cols; c0 += kPanelCols) {
      const int64_t c1 = min64(c0 + kPanelCols, w.cols);
      const int64_t chunks = (c1 - c0) / kChunk;
      for (int64_t r = row_begin, rows = 0; r < row_end; r += rows) {
        // A tile never straddles two FP8 row blocks (matmul hands out rows in fours, so
        // this only matters for other callers).
        rows = min64(min64(kTileRows, row_end - r), (r / kFp8BlockSize + 1) * kFp8BlockSize - r);
        if (r == row_begin || r % kFp8BlockSize == 0) {
          for (int64_t t = 0; t < block_tokens; ++t) {
            split(t0 + t, c0, c1, r, xs + t * chunks * 4);
          }
        }
        // The first tile reads its weights from `first`, the others from `rest`.
        const auto run_tiles = [&](const auto& first, const auto& rest) {
          int64_t t = 0;
          for (int64_t tile = 0; tile < tiles; ++tile) {
            const int64_t n = block_tokens / tiles + (tile < block_tokens % tiles ? 1 : 0);
            panel_tile_n(static_cast<int>(rows), static_cast<int>(n), tile == 0 ? first : rest,
                         xs + t * chunks * 4, chunks * 4, chunks, y + (t0 + t) * w.rows + r, w.rows,
                         c0 > 0);
            t += n;
          }
        };
        if (tiles <= kRegisterTiles) {
          using Elem = typename D::Elem;
          const Elem* row = static_cast<const Elem*>(w.data) + r * w.cols + c0;
          const int64_t ahead = prefetch_rows<D>(chunks);
          const char* next = r + rows + ahead <= row_end
                                 ? reinterpret_cast<const char*>(row + ahead * w.cols)
                                 : nullptr;
          // Only the first tile asks for the rows ahead.
          run_tiles(RowWeights<D>{dec, row, w.cols, next},
                    RowWeights<D>{dec, row, w.cols, nullptr});
        } else {
          decode_panel(dec, w, r, r + rows, c0 / kChunk, chunks, row_end, panel);
          const PanelWeights src{panel, 2 * chunks};
          run_tiles(src, src);
        }
      }
    }
  }
}

}  // namespace

bool bf16_dot_handles(const WeightView& w) {
  if (w.type != WeightType::kBF16 && w.type != WeightType::kFP8E4M3) return false;
  return reinterpret_cast<uintptr_t>(w.data) % 64 == 0 && w.cols % kChunk == 0;
}

void matmul_rows_avx512_bf16(const WeightView& w, const float* x, int64_t tokens, float* y,
                             int64_t row_begin, int64_t row_end) {
  if (!bf16_dot_handles(w)) {
    matmul_rows_avx512_vbmi(w, x, tokens, y, row_begin, row_end);
    return;
  }
  const int64_t cols = w.cols;
  if (tokens > kDirectTokensBf16) {
    if (w.type == WeightType::kBF16) {
      gemm_range(
          Bf16Weights{}, w, tokens, row_begin, row_end,
          [&](int64_t t, int64_t c0, int64_t c1, int64_t, __m512i* out) {
            split_bf16_layout(
                x + t * cols + c0, c1 - c0, [](int64_t) { return 1.0f; }, out);
          },
          y);
    } else {
      const int64_t scale_cols = (cols + kFp8BlockSize - 1) / kFp8BlockSize;
      gemm_range(
          Fp8Weights{}, w, tokens, row_begin, row_end,
          [&](int64_t t, int64_t c0, int64_t c1, int64_t r0, __m512i* out) {
            const float* scales = w.scale_inv + (r0 / kFp8BlockSize) * scale_cols;
            split_fp8_layout(
                x + t * cols + c0, c1 - c0,
                [scales, c0](int64_t c) { return scales[(c0 + c) / kFp8BlockSize]; }, out);
          },
          y);
    }
    return;
  }
  // 4 bytes per column and token: the same as the float32 panel the scratch is sized for.
  auto* xs = reinterpret_cast<__m512i*>(panel_scratch(tokens * cols));
  const int64_t vectors_per_token = cols / kChunk * 4;
  if (w.type == WeightType::kBF16) {
    for (int64_t t = 0; t < tokens; ++t) {
      split_bf16_layout(
          x + t * cols, cols, [](int64_t) { return 1.0f; }, xs + t * vectors_per_token);
    }
    gemv_range(Bf16Weights{}, w, tokens, row_begin, row_end, xs, y);
    return;
  }
  const Fp8Weights dec;
  for_each_fp8_row_block(w, row_begin, row_end, [&](int64_t r0, int64_t r1, const float* scales) {
    for (int64_t t = 0; t < tokens; ++t) {
      split_fp8_layout(
          x + t * cols, cols, [scales](int64_t c) { return scales[c / kFp8BlockSize]; },
          xs + t * vectors_per_token);
    }
    gemv_range(dec, w, tokens, r0, r1, xs, y);
  });
}

#pragma GCC diagnostic pop
#pragma GCC pop_options

}  // namespace moeserve::kernels::internal

#endif  // MOESERVE_X86_SIMD
