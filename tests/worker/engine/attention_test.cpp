#include "worker/engine/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/convert.h"

namespace moeserve::engine {
namespace {

// A random kv_b_proj of `heads` x (nope + v) rows and `latent` columns in `dtype`.
struct KvB {
  std::vector<uint8_t> data;
  std::vector<float> scales;
  model::Linear linear;
};

KvB random_kv_b(model::DType dtype, int64_t heads, int64_t nope, int64_t v, int64_t latent) {
  KvB k;
  const int64_t rows = heads * (nope + v), cols = latent;
  std::mt19937 gen(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t bytes = dtype == model::DType::kF8E4M3 ? 1 : dtype == model::DType::kBF16 ? 2 : 4;
  k.data.resize(rows * cols * bytes);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float x = dist(gen);
    if (dtype == model::DType::kF32) std::memcpy(k.data.data() + 4 * i, &x, 4);
    if (dtype == model::DType::kBF16) {
      const uint16_t b = kernels::f32_to_bf16(x);
      std::memcpy(k.data.data() + 2 * i, &b, 2);
    }
    if (dtype == model::DType::kF8E4M3) k.data[i] = kernels::f32_to_fp8_e4m3(x * 100.0f);
  }
  k.scales.resize(((rows + 127) / 128) * ((cols + 127) / 128));
  for (float& s : k.scales) s = 0.01f * (1.0f + std::fabs(dist(gen)));
  k.linear.dtype = dtype;
  k.linear.data = k.data.data();
  k.linear.scale_inv = dtype == model::DType::kF8E4M3 ? k.scales.data() : nullptr;
  k.linear.rows = rows;
  k.linear.cols = cols;
  return k;
}

struct Layout {
  model::DType dtype;
  int64_t nope, v, latent;
  bool fp8_views_kept;  // FP8 stays FP8 (no float copy) for every head
};

class BindMlaTest : public ::testing::TestWithParam<Layout> {};

// uk_t[h] x = W_uk_h^T x and uv[h] y = W_uv_h y, checked against rows of kv_b decoded one
// by one; both sides decode the same stored values, so only float32 summation order differs.
TEST_P(BindMlaTest, PerHeadAbsorbedViewsEqualTheRowsOfKvB) {
  const Layout p = GetParam();
  const int64_t heads = 3, per_head = p.nope + p.v;
  KvB kv_b = random_kv_b(p.dtype, heads, p.nope, p.v, p.latent);
  model::Attention attention;
  attention.kv_b_proj = kv_b.linear;
  MlaShape shape{.heads = heads, .kv_lora_rank = p.latent, .nope = p.nope, .v = p.v};
  const MlaWeights w = bind_mla(attention, shape);
  ASSERT_EQ(w.uk_t.size(), 3u);
  ASSERT_EQ(w.uv.size(), 3u);

  std::mt19937 gen(9);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> row(p.latent);
  for (int64_t h = 0; h < heads; ++h) {
    if (p.fp8_views_kept) {
      EXPECT_EQ(w.uk_t[h].type, kernels::WeightType::kFP8E4M3);
      EXPECT_EQ(w.uv[h].type, kernels::WeightType::kFP8E4M3);
      // The transposed copy starts on a cache line, so the line-aligned kernels take it.
      EXPECT_EQ(reinterpret_cast<uintptr_t>(w.uk_t[h].data) % 64, 0u) << "head " << h;
    }
    std::vector<float> q(p.nope), q_lat(p.latent), expected_lat(p.latent, 0.0f);
    for (float& x : q) x = dist(gen);
    kernels::matmul(w.uk_t[h], q.data(), 1, q_lat.data(), nullptr);
    for (int64_t d = 0; d < p.nope; ++d) {
      kernels::dequantize_row(w.kv_b, h * per_head + d, row.data());
      for (int64_t c = 0; c < p.latent; ++c) expected_lat[c] += q[d] * row[c];
    }
    std::vector<float> o(p.latent), out(p.v);
    for (float& x : o) x = dist(gen);
    kernels::matmul(w.uv[h], o.data(), 1, out.data(), nullptr);
    for (int64_t c = 0; c < p.latent; ++c) {
      ASSERT_NEAR(q_lat[c], expected_lat[c], 1e-4f * (1.0f + std::fabs(expected_lat[c])))
          << "head " << h << " latent " << c;
    }
    for (int64_t i = 0; i < p.v; ++i) {
      kernels::dequantize_row(w.kv_b, h * per_head + p.nope + i, row.data());
      double expected = 0.0;
      for (int64_t c = 0; c < p.latent; ++c) expected += static_cast<double>(row[c]) * o[c];
      ASSERT_NEAR(out[i], expected, 1e-4 * (1.0 + std::fabs(expected))) << "head " << h;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, BindMlaTest,
    ::testing::Values(Layout{model::DType::kF32, 24, 16, 40, false},
                      Layout{model::DType::kBF16, 24, 16, 40, false},
                      // DeepSeek-V3's 128 + 128 per head, 128-aligned.
                      Layout{model::DType::kF8E4M3, 128, 128, 192, true},
                      // Heads of 64 + 64 rows: two heads per scale block, none straddles.
                      Layout{model::DType::kF8E4M3, 64, 64, 160, true},
                      // 96 + 64: head slices straddle block edges, float copies there.
                      Layout{model::DType::kF8E4M3, 96, 64, 200, false}));

}  // namespace
}  // namespace moeserve::engine
