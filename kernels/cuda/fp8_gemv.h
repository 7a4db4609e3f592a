// FP8 (E4M3) block-scaled GEMV on Hopper: y = W x with W stored as DeepSeek-V3
// checkpoints store it: 1 byte per weight, row-major [rows, cols], and a float32
// scale_inv of shape [ceil(rows/128), ceil(cols/128)] multiplied into each 128x128 block.
// All pointers are device pointers; the call is asynchronous on `stream`.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace moeserve::kernels::cuda {

cudaError_t fp8_block_gemv(const uint8_t* weight, const float* scale_inv, const float* x, float* y,
                           int rows, int cols, cudaStream_t stream);

}  // namespace moeserve::kernels::cuda
