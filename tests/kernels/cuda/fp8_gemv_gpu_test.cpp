// The CUDA FP8 block-scaled GEMV against the CPU reference kernel on random weights with
// partial 128x128 edge blocks. Runs where a GPU is present (CTest label `gpu`); skipped
// elsewhere.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/convert.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cuda/fp8_gemv.h"

namespace moeserve::kernels {
namespace {

bool have_gpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

TEST(CudaFp8Gemv, MatchesTheCpuReference) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const int rows = 300, cols = 400;  // partial edge blocks in both dimensions
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<uint8_t> w(static_cast<size_t>(rows) * cols);
  for (auto& v : w) v = f32_to_fp8_e4m3(normal(rng) * 100.f);
  const int sr = (rows + 127) / 128, sc = (cols + 127) / 128;
  std::vector<float> scale(static_cast<size_t>(sr) * sc);
  for (auto& s : scale) s = 0.01f + std::abs(normal(rng)) * 0.01f;
  std::vector<float> x(cols);
  for (auto& v : x) v = normal(rng);
  std::vector<float> expected(rows);
  WeightView view{WeightType::kFP8E4M3, w.data(), scale.data(), rows, cols};
  matmul_reference(view, x.data(), 1, expected.data());

  uint8_t* dw = nullptr;
  float *ds = nullptr, *dx = nullptr, *dy = nullptr;
  ASSERT_EQ(cudaMalloc(&dw, w.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ds, scale.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dx, x.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dy, rows * 4), cudaSuccess);
  cudaMemcpy(dw, w.data(), w.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(ds, scale.data(), scale.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
  ASSERT_EQ(cuda::fp8_block_gemv(dw, ds, dx, dy, rows, cols, nullptr), cudaSuccess);
  std::vector<float> got(rows);
  ASSERT_EQ(cudaMemcpy(got.data(), dy, rows * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(dw);
  cudaFree(ds);
  cudaFree(dx);
  cudaFree(dy);
  for (int r = 0; r < rows; ++r) {
    // f32 accumulation in another order: relative 1e-5 of the row's magnitude.
    EXPECT_NEAR(got[r], expected[r], 1e-4f + 1e-5f * std::abs(expected[r])) << "row " << r;
  }
}

TEST(CudaFp8Gemv, RejectsEmptyShapes) {
  EXPECT_EQ(cuda::fp8_block_gemv(nullptr, nullptr, nullptr, nullptr, 0, 8, nullptr),
            cudaErrorInvalidValue);
}

}  // namespace
}  // namespace moeserve::kernels
