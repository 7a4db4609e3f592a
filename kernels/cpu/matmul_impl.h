// Internal to kernels/cpu: the per-instruction-set bodies behind matmul and dot. Each
// matmul_rows_* computes output rows [row_begin, row_end) for all tokens; matmul
// (matmul.cpp) picks the instruction set and splits rows over threads. The vector entry
// points exist on x86-64 only and may be called only when active_isa() allows them.
#pragma once

#include <cstdint>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul.h"

namespace moeserve::kernels::internal {

void matmul_rows_scalar(const WeightView& w, const float* x, int64_t tokens, float* y,
                        int64_t row_begin, int64_t row_end);
float dot_scalar(const float* a, const float* b, int64_t n);

#if MOESERVE_X86_SIMD
void matmul_rows_avx2(const WeightView& w, const float* x, int64_t tokens, float* y,
                      int64_t row_begin, int64_t row_end);
float dot_avx2(const float* a, const float* b, int64_t n);
void softmax_avx2(float* x, int64_t n);
void silu_mul_avx2(const float* gate, const float* up, int64_t n, float* out);
void attention_scores_avx2(const float* q, int64_t q_stride, int64_t heads,
                           const float* const* rows, int64_t n, int64_t dim, float scale,
                           float* scores, int64_t score_stride);
void attention_values_avx2(const float* p, int64_t p_stride, int64_t heads,
                           const float* const* rows, int64_t n, int64_t dim, float* out,
                           int64_t out_stride);
void matmul_rows_avx512(const WeightView& w, const float* x, int64_t tokens, float* y,
                        int64_t row_begin, int64_t row_end);
float dot_avx512(const float* a, const float* b, int64_t n);
void softmax_avx512(float* x, int64_t n);
void silu_mul_avx512(const float* gate, const float* up, int64_t n, float* out);
void attention_scores_avx512(const float* q, int64_t q_stride, int64_t heads,
                             const float* const* rows, int64_t n, int64_t dim, float scale,
                             float* scores, int64_t score_stride);
void attention_values_avx512(const float* p, int64_t p_stride, int64_t heads,
                             const float* const* rows, int64_t n, int64_t dim, float* out,
                             int64_t out_stride);
// Up to this many tokens the VBMI kernel (matmul_avx512_vbmi.cpp) handles 64-byte aligned
// BF16 weights itself (at 4 tokens it measured no faster than the generic kernel); other
// calls, FP8 included, it passes to matmul_rows_avx512.
inline constexpr int kDirectTokensVbmi = 2;
void matmul_rows_avx512_vbmi(const WeightView& w, const float* x, int64_t tokens, float* y,
                             int64_t row_begin, int64_t row_end);
// The BF16 dot-product kernel (matmul_avx512_bf16.cpp) handles BF16 and FP8 weights on
// 64-byte lines with whole 64-column chunks, up to this many tokens one row at a time and
// more in tiles of rows x tokens; other weights it passes to matmul_rows_avx512_vbmi.
inline constexpr int kDirectTokensBf16 = 1;
void matmul_rows_avx512_bf16(const WeightView& w, const float* x, int64_t tokens, float* y,
                             int64_t row_begin, int64_t row_end);
#endif

// The high and low bytes of the BF16 value of each E4M3 magnitude code 0..127 (exact for
// every code, subnormals included; code 0x7f, NaN, gives a NaN), for the vpermi2b
// look-ups of the BF16 kernel.
struct Fp8Bf16Tables {
  alignas(64) uint8_t hi[128];
  alignas(64) uint8_t lo[128];
};
const Fp8Bf16Tables& fp8_bf16_tables();

// A per-thread, 64-byte aligned float buffer of at least `floats` elements (kept between
// calls; a later call may move it). Lives
// outside the vector code so no standard-library template is compiled for a vector target.
float* panel_scratch(int64_t floats);

// Calls fn(r0, r1, scales) for each run [r0, r1) of rows in [row_begin, row_end) that lies in
// one FP8 row block, `scales` being that block's row of w.scale_inv. Plain code: the
// kernels call it from their vector regions with vector work in `fn`.
template <class Fn>
void for_each_fp8_row_block(const WeightView& w, int64_t row_begin, int64_t row_end, Fn&& fn) {
  const int64_t scale_cols = (w.cols + kFp8BlockSize - 1) / kFp8BlockSize;
  for (int64_t r0 = row_begin; r0 < row_end;) {
    const int64_t block = r0 / kFp8BlockSize;
    const int64_t r1 =
        row_end < (block + 1) * kFp8BlockSize ? row_end : (block + 1) * kFp8BlockSize;
    fn(r0, r1, w.scale_inv + block * scale_cols);
    r0 = r1;
  }
}

// Element c of row `row` with its block scale applied (scalar definition).
float weight_element(const WeightView& w, int64_t row, int64_t col);

}  // namespace moeserve::kernels::internal
