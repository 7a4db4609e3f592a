#include "kernels/cpu/ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/cpu/isa.h"
#include "tests/kernels/random_data.h"

namespace moeserve::kernels {
namespace {

using testing::random_floats;

TEST(OpsTest, RmsNormMatchesDoubleReferenceAndMayRunInPlace) {
  for (int64_t n : {1, 7, 64, 513, 7168}) {
    const auto x = random_floats(n, 1, -3.0f, 3.0f);
    const auto weight = random_floats(n, 2, 0.5f, 1.5f);
    const float eps = 1e-6f;
    double sum = 0;
    for (float v : x) sum += static_cast<double>(v) * v;
    const double inv_rms = 1.0 / std::sqrt(sum / n + eps);
    std::vector<float> out(static_cast<size_t>(n));
    rms_norm(x.data(), weight.data(), n, eps, out.data());
    auto in_place = x;
    rms_norm(in_place.data(), weight.data(), n, eps, in_place.data());
    for (int64_t i = 0; i < n; ++i) {
      const double want = x[i] * inv_rms * weight[i];
      ASSERT_NEAR(out[i], want, 1e-6 * std::fabs(want) + 1e-7) << "n " << n << " i " << i;
      ASSERT_EQ(in_place[i], out[i]);
    }
  }
}

// The kernels that dispatch on the instruction set, run on each one this CPU has.
class PerIsaTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (set_isa_for_testing(GetParam()) != GetParam()) GTEST_SKIP() << "CPU lacks this ISA";
  }
  void TearDown() override { set_isa_for_testing(detected_isa()); }
};

TEST_P(PerIsaTest, SiluMulMatchesDoubleReference) {
  for (int64_t n : {0, 1, 7, 16, 17, 1001}) {
    auto gate = random_floats(n, 3, -20.0f, 20.0f);
    const auto up = random_floats(n, 4, -2.0f, 2.0f);
    // Where exp(-gate) overflows (silu -> -0) or vanishes (silu -> gate).
    const float extremes[] = {-100.0f, -88.5f, -87.0f, 87.0f, 100.0f, 0.0f, -0.0f};
    for (int64_t i = 0; i < n && i < 7; ++i) gate[i * 2 % n] = extremes[i];
    std::vector<float> out(n);
    silu_mul(gate.data(), up.data(), n, out.data());
    for (int64_t i = 0; i < n; ++i) {
      const double g = gate[i];
      const double want = g / (1 + std::exp(-g)) * up[i];
      ASSERT_NEAR(out[i], want, 2e-6 * std::fabs(want) + 1e-12) << "n " << n << " i " << i;
    }
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> gate(20, 1.0f), up(20, 1.0f), out(20);
  gate[3] = nan;
  gate[19] = nan;
  silu_mul(gate.data(), up.data(), 20, out.data());
  EXPECT_TRUE(std::isnan(out[3]));
  EXPECT_TRUE(std::isnan(out[19]));
  EXPECT_NEAR(out[4], 1.0 / (1 + std::exp(-1.0)), 1e-7);
}

TEST_P(PerIsaTest, SoftmaxIsStableForLargeValuesAndZeroesMinusInfinity) {
  std::vector<float> x = {1000.0f, 1001.0f, 999.0f, -std::numeric_limits<float>::infinity()};
  softmax(x.data(), 4);
  const double e0 = std::exp(-1.0);
  const double e2 = std::exp(-2.0);
  const double total = e0 + 1 + e2;
  EXPECT_NEAR(x[0], e0 / total, 1e-7);
  EXPECT_NEAR(x[1], 1 / total, 1e-7);
  EXPECT_NEAR(x[2], e2 / total, 1e-7);
  EXPECT_EQ(x[3], 0.0f);

  // -inf in the vector part and in the tail; a row of only -inf is NaN.
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> masked(37, 0.5f);
  masked[2] = masked[20] = masked[36] = -inf;
  softmax(masked.data(), 37);
  for (int i : {2, 20, 36}) EXPECT_EQ(masked[i], 0.0f) << i;
  EXPECT_NEAR(masked[0], 1.0 / 34, 1e-7);
  std::vector<float> all_masked(19, -inf);
  softmax(all_masked.data(), 19);
  for (float v : all_masked) EXPECT_TRUE(std::isnan(v));

  for (int64_t n : {1, 5, 16, 33, 300, 129280}) {
    const auto original = random_floats(n, 5, -30.0f, 30.0f);
    auto got = original;
    softmax(got.data(), n);
    const double max_value = *std::max_element(original.begin(), original.end());
    double sum = 0;
    for (float v : original) sum += std::exp(v - max_value);
    double got_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double want = std::exp(original[i] - max_value) / sum;
      // float rounding of x - max (half an ulp of |x - max|) dominates the relative error.
      const double tolerance = want * (1e-6 + 1.2e-7 * (max_value - original[i])) + 1e-30;
      ASSERT_NEAR(got[i], want, tolerance) << i;
      got_sum += got[i];
    }
    EXPECT_NEAR(got_sum, 1.0, 1e-5);
  }
}

// Reference: stable sort of all indices by value, descending.
void top_k_reference(const std::vector<float>& x, int64_t k, std::vector<int64_t>& indices) {
  std::vector<int64_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return x[a] > x[b]; });
  indices.assign(order.begin(), order.begin() + k);
}

TEST(OpsTest, TopKIsDescendingWithTiesToTheLowerIndex) {
  // Quantised random values produce many ties.
  auto x = random_floats(300, 6, -5.0f, 5.0f);
  for (auto& v : x) v = std::round(v);
  for (int64_t k : {0, 1, 8, 37, 300}) {
    std::vector<int64_t> indices(k);
    std::vector<float> values(k);
    top_k(x.data(), 300, k, indices.data(), values.data());
    std::vector<int64_t> want;
    top_k_reference(x, k, want);
    EXPECT_EQ(indices, want) << "k " << k;
    for (int64_t i = 0; i < k; ++i) EXPECT_EQ(values[i], x[want[i]]);
  }
  const std::vector<float> tied = {2.0f, 3.0f, 3.0f, 1.0f, 3.0f};
  int64_t idx[3];
  float val[3];
  top_k(tied.data(), 5, 3, idx, val);
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 3), (std::vector<int64_t>{1, 2, 4}));
}

TEST(OpsTest, TopKRanksNanBelowEveryNumber) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {NAN, -inf, 0.5f, NAN, 2.0f};
  int64_t idx[5];
  float val[5];
  top_k(x.data(), 5, 5, idx, val);
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 5), (std::vector<int64_t>{4, 2, 1, 0, 3}));
}

TEST(OpsTest, AddAndScaleAdd) {
  const auto x = random_floats(77, 7);
  const auto y0 = random_floats(77, 8);
  auto y = y0;
  add(y.data(), x.data(), 77);
  for (int i = 0; i < 77; ++i) ASSERT_EQ(y[i], y0[i] + x[i]);
  y = y0;
  scale_add(y.data(), x.data(), 0.37f, 77);
  for (int i = 0; i < 77; ++i) ASSERT_NEAR(y[i], y0[i] + 0.37 * x[i], 1e-6);
}

TEST_P(PerIsaTest, MatchesDoubleReferenceForAllTailLengths) {
  for (int64_t n = 0; n <= 70; ++n) {
    const auto a = random_floats(n, 9 + n);
    const auto b = random_floats(n, 100 + n);
    double want = 0;
    double scale = 0;
    for (int64_t i = 0; i < n; ++i) {
      want += static_cast<double>(a[i]) * b[i];
      scale += std::fabs(static_cast<double>(a[i]) * b[i]);
    }
    ASSERT_NEAR(dot(a.data(), b.data(), n), want, 1e-6 * scale + 1e-30) << "n " << n;
  }
  const auto a = random_floats(7168, 1);
  const auto b = random_floats(7168, 2);
  double want = 0;
  for (int i = 0; i < 7168; ++i) want += static_cast<double>(a[i]) * b[i];
  EXPECT_NEAR(dot(a.data(), b.data(), 7168), want, 1e-3);
}

// attention_scores/_values against double sums, for head counts around the tile of 8, row
// lengths around the vector widths, and rows that are not contiguous (a paged cache).
TEST_P(PerIsaTest, AttentionKernelsMatchDoubleReference) {
  for (int64_t heads : {1, 3, 8, 9, 16, 17}) {
    for (int64_t dim : {1, 7, 16, 40, 64, 200, 320}) {
      for (int64_t n : {0, 1, 5, 33}) {
        const int64_t q_stride = dim + 3, score_stride = n + 2, out_stride = dim + 5;
        const auto q = random_floats(heads * q_stride, 7 + heads + dim);
        const auto storage = random_floats(n * (dim + 11) + 1, 50 + n + dim);
        std::vector<const float*> rows;
        for (int64_t j = n - 1; j >= 0; --j) rows.push_back(storage.data() + j * (dim + 11));
        std::vector<float> scores(heads * score_stride, -1.0f);
        attention_scores(q.data(), q_stride, heads, rows.data(), n, dim, 0.5f, scores.data(),
                         score_stride);
        const auto p = random_floats(heads * score_stride, 3 + n);
        std::vector<float> out(heads * out_stride, 42.0f);
        attention_values(p.data(), score_stride, heads, rows.data(), n, dim, out.data(),
                         out_stride);
        for (int64_t h = 0; h < heads; ++h) {
          for (int64_t j = 0; j < n; ++j) {
            double want = 0, scale = 0;
            for (int64_t c = 0; c < dim; ++c) {
              want += static_cast<double>(q[h * q_stride + c]) * rows[j][c];
              scale += std::fabs(static_cast<double>(q[h * q_stride + c]) * rows[j][c]);
            }
            ASSERT_NEAR(scores[h * score_stride + j], 0.5 * want, 1e-6 * scale + 1e-30)
                << "heads " << heads << " dim " << dim << " n " << n << " h " << h << " j " << j;
          }
          for (int64_t j = n; j < score_stride; ++j) {
            ASSERT_EQ(scores[h * score_stride + j], -1.0f) << "wrote past n";
          }
          for (int64_t c = 0; c < dim; ++c) {
            double want = 0, scale = 0;
            for (int64_t j = 0; j < n; ++j) {
              want += static_cast<double>(p[h * score_stride + j]) * rows[j][c];
              scale += std::fabs(static_cast<double>(p[h * score_stride + j]) * rows[j][c]);
            }
            ASSERT_NEAR(out[h * out_stride + c], want, 1e-6 * scale + 1e-30)
                << "heads " << heads << " dim " << dim << " n " << n << " h " << h << " c " << c;
          }
          for (int64_t c = dim; c < out_stride; ++c) {
            ASSERT_EQ(out[h * out_stride + c], 42.0f) << "wrote past dim";
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, PerIsaTest,
                         ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Vbmi,
                                           Isa::kAvx512Bf16),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

}  // namespace
}  // namespace moeserve::kernels
