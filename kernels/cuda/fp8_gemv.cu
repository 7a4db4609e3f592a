#include "kernels/cuda/fp8_gemv.h"

#include <cuda_fp8.h>

namespace moeserve::kernels::cuda {
namespace {

constexpr int kBlock = 128;
constexpr int kWarp = 32;
constexpr int kRowsPerCta = 8;  // one warp per row

// One warp computes one output row; each lane walks the row in strides of 32 and
// folds the block scale in once per 128-column block.
__global__ void fp8_block_gemv_kernel(const uint8_t* __restrict__ weight,
                                      const float* __restrict__ scale_inv,
                                      const float* __restrict__ x, float* __restrict__ y, int rows,
                                      int cols) {
  const int row = blockIdx.x * kRowsPerCta + threadIdx.y;
  if (row >= rows) return;
  const int lane = threadIdx.x;
  const int scale_cols = (cols + kBlock - 1) / kBlock;
  const uint8_t* w_row = weight + static_cast<size_t>(row) * cols;
  const float* s_row = scale_inv + static_cast<size_t>(row / kBlock) * scale_cols;
  float acc = 0.f;
  for (int block = 0; block < scale_cols; ++block) {
    const int begin = block * kBlock;
    const int end = min(begin + kBlock, cols);
    float partial = 0.f;
    for (int c = begin + lane; c < end; c += kWarp) {
      __nv_fp8_e4m3 w;
      w.__x = w_row[c];
      partial += static_cast<float>(w) * x[c];
    }
    acc += partial * s_row[block];
  }
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    acc += __shfl_down_sync(0xffffffffu, acc, offset);
  }
  if (lane == 0) y[row] = acc;
}

}  // namespace

cudaError_t fp8_block_gemv(const uint8_t* weight, const float* scale_inv, const float* x, float* y,
                           int rows, int cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaErrorInvalidValue;
  dim3 block(kWarp, kRowsPerCta);
  dim3 grid((rows + kRowsPerCta - 1) / kRowsPerCta);
  fp8_block_gemv_kernel<<<grid, block, 0, stream>>>(weight, scale_inv, x, y, rows, cols);
  return cudaGetLastError();
}

}  // namespace moeserve::kernels::cuda
