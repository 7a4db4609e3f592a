// Internal to kernels/cpu: the per-instruction-set bodies behind matmul and dot. Each
// computes output rows [row_begin, row_end) for all tokens; matmul (matmul.cpp) picks the
// instruction set and splits rows over threads. The AVX2 entry points may only be called
// when active_isa() is Isa::kAvx2.
#pragma once

#include <cstdint>

#include "kernels/cpu/matmul.h"

namespace moeserve::kernels::internal {

void matmul_rows_scalar(const WeightView& w, const float* x, int64_t tokens, float* y,
                        int64_t row_begin, int64_t row_end);
void matmul_rows_avx2(const WeightView& w, const float* x, int64_t tokens, float* y,
                      int64_t row_begin, int64_t row_end);

float dot_scalar(const float* a, const float* b, int64_t n);
float dot_avx2(const float* a, const float* b, int64_t n);

// Element c of row `row` with its block scale applied (scalar definition).
float weight_element(const WeightView& w, int64_t row, int64_t col);

}  // namespace moeserve::kernels::internal
