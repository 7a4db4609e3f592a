// AVX-512 BF16 decode-sized matmul (tokens <= kDirectTokensBf16) for BF16 and FP8 weights
// whose rows start on 64-byte lines and are whole 64-weight chunks. The weights are widened
// to BF16 (exact for both: FP8 E4M3 through the same two vpermi2b look-ups as the VBMI
// kernel) and multiplied by vdpbf16ps, which does 32 multiply-adds per instruction where
// the float32 kernels do 16 after widening each weight once more to float32. Cache-resident
// (256x1024, one thread) it streams 1.4-1.6x the VBMI kernel's weight bytes at 1 and 2
// tokens. Above two tokens the generic kernel keeps the work: one row at a time, 3-4 tokens'
// split activations of a 7168-column row no longer fit L1 (slower than the generic row
// tiles); tiles of two rows for 3-8 tokens were 1.4-1.8x the generic kernel cache-resident
// but made batch-16 decode of bench-1.2b ~5 % slower in six of six interleaved rounds.
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
#pragma GCC target("avx512f,avx512bw,avx512vbmi,avx512bf16,avx2,fma,f16c")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

constexpr int64_t kChunk = 64;  // weights per step: two BF16 vectors of 32
// The line 4 KiB ahead is requested, as in the VBMI kernel (rows are read front to back;
// 8 KiB, or into L2 only, measured the same within noise).
constexpr int64_t kPrefetchBytes = 4096;

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

}  // namespace

bool bf16_dot_handles(const WeightView& w, int64_t tokens) {
  if (tokens > kDirectTokensBf16) return false;
  if (w.type != WeightType::kBF16 && w.type != WeightType::kFP8E4M3) return false;
  return reinterpret_cast<uintptr_t>(w.data) % 64 == 0 && w.cols % kChunk == 0;
}

void matmul_rows_avx512_bf16(const WeightView& w, const float* x, int64_t tokens, float* y,
                             int64_t row_begin, int64_t row_end) {
  if (!bf16_dot_handles(w, tokens)) {
    matmul_rows_avx512_vbmi(w, x, tokens, y, row_begin, row_end);
    return;
  }
  const int64_t cols = w.cols;
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
