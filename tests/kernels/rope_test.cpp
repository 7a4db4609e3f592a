#include "kernels/cpu/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "tests/kernels/random_data.h"

namespace moeserve::kernels {
namespace {

using testing::random_floats;

// Rotates adjacent pairs by position * inv_freq[i], scaled by `scale`, in double.
std::vector<double> rotate(const std::vector<float>& x, int64_t position,
                           const std::vector<double>& inv_freq, double scale) {
  std::vector<double> out(x.size());
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const double angle = static_cast<double>(position) * inv_freq[i];
    const double c = std::cos(angle) * scale;
    const double s = std::sin(angle) * scale;
    out[2 * i] = x[2 * i] * c - x[2 * i + 1] * s;
    out[2 * i + 1] = x[2 * i] * s + x[2 * i + 1] * c;
  }
  return out;
}

void expect_rotation(const RopeTable& table, int64_t dim, int64_t position,
                     const std::vector<double>& inv_freq, double scale) {
  const auto x = random_floats(dim, static_cast<uint32_t>(position + 1));
  auto got = x;
  table.apply(got.data(), position);
  const auto want = rotate(x, position, inv_freq, scale);
  for (int64_t i = 0; i < dim; ++i) {
    ASSERT_NEAR(got[i], want[i], 2e-6) << "position " << position << " element " << i;
  }
}

TEST(RopeTest, PlainRopeRotatesAdjacentPairs) {
  const RopeConfig config{.dim = 64, .theta = 10000};
  RopeTable table(config, 128);
  std::vector<double> inv_freq;
  for (int i = 0; i < 32; ++i) inv_freq.push_back(std::pow(10000.0, -2.0 * i / 64));
  for (int64_t position : {0, 1, 5, 127, 128, 5000}) {
    expect_rotation(table, 64, position, inv_freq, 1.0);
  }
  EXPECT_EQ(table.attention_scale_multiplier(), 1.0);
  EXPECT_EQ(table.cos_sin_scale(), 1.0);
}

TEST(RopeTest, YarnFrequenciesMatchDeepSeekV3Config) {
  // DeepSeek-V3: qk_rope_head_dim 64, theta 10000, factor 40, original 4096, beta 32/1,
  // mscale = mscale_all_dim = 1. By hand: the pair index that turns beta_fast = 32 times
  // over the original context is 64 ln(4096 / (2 pi 32)) / (2 ln 10000) = 10.47 -> low 10;
  // beta_slow = 1 gives 22.51 -> high 23. Pairs up to 10 keep their frequency, pairs from
  // 23 are interpolated (divided by 40), pairs in between are blended linearly.
  const RopeConfig config{.dim = 64,
                          .theta = 10000,
                          .factor = 40,
                          .original_max_position = 4096,
                          .beta_fast = 32,
                          .beta_slow = 1,
                          .mscale = 1,
                          .mscale_all_dim = 1};
  RopeTable table(config, 64);
  std::vector<double> inv_freq;
  for (int i = 0; i < 32; ++i) {
    const double base = std::pow(10000.0, -2.0 * i / 64);
    const double ramp = std::clamp((i - 10.0) / 13.0, 0.0, 1.0);
    inv_freq.push_back(base * (1 - ramp) + base / 40 * ramp);
    EXPECT_NEAR(table.inv_freq(i), inv_freq.back(), 1e-15 * base) << i;
  }
  EXPECT_DOUBLE_EQ(table.inv_freq(3), std::pow(10000.0, -6.0 / 64));
  EXPECT_NEAR(table.inv_freq(31), std::pow(10000.0, -62.0 / 64) / 40, 1e-18);
  const double mscale = 0.1 * std::log(40.0) + 1;
  EXPECT_NEAR(table.attention_scale_multiplier(), mscale * mscale, 1e-12);
  EXPECT_NEAR(table.cos_sin_scale(), 1.0, 1e-12);
  for (int64_t position : {0, 3, 63, 64, 100000}) {
    expect_rotation(table, 64, position, inv_freq, 1.0);
  }
}

TEST(RopeTest, YarnMagnitudeScalesFollowTheHuggingFaceConvention) {
  // mscale differing from mscale_all_dim: cos/sin carry their ratio, the softmax scale the
  // square of the mscale_all_dim term.
  const RopeConfig config{.dim = 16,
                          .theta = 500,
                          .factor = 8,
                          .original_max_position = 64,
                          .beta_fast = 32,
                          .beta_slow = 1,
                          .mscale = 0.707,
                          .mscale_all_dim = 0.5};
  RopeTable table(config, 10);
  const double m = 0.1 * 0.707 * std::log(8.0) + 1;
  const double m_all = 0.1 * 0.5 * std::log(8.0) + 1;
  EXPECT_NEAR(table.cos_sin_scale(), m / m_all, 1e-12);
  EXPECT_NEAR(table.attention_scale_multiplier(), m_all * m_all, 1e-12);
  EXPECT_NEAR(yarn_mscale(8, 0.707), m, 1e-12);
  EXPECT_EQ(yarn_mscale(1, 0.707), 1.0);
  std::vector<double> inv_freq;
  for (int i = 0; i < 8; ++i) inv_freq.push_back(table.inv_freq(i));
  for (int64_t position : {1, 9, 10, 77}) {
    expect_rotation(table, 16, position, inv_freq, m / m_all);
  }

  // Without mscale_all_dim (default 0) the softmax multiplier is 1 and cos/sin carry mscale.
  RopeTable defaults(RopeConfig{.dim = 16, .theta = 500, .factor = 8}, 4);
  EXPECT_EQ(defaults.attention_scale_multiplier(), 1.0);
  EXPECT_NEAR(defaults.cos_sin_scale(), 0.1 * std::log(8.0) + 1, 1e-12);
}

TEST(RopeTest, FactorOneMeansNoYarn) {
  RopeTable table(
      RopeConfig{.dim = 8, .theta = 10000, .factor = 1, .mscale = 0.9, .mscale_all_dim = 0.9}, 4);
  for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(table.inv_freq(i), std::pow(10000.0, -2.0 * i / 8));
  EXPECT_EQ(table.attention_scale_multiplier(), 1.0);
  EXPECT_EQ(table.cos_sin_scale(), 1.0);
}

}  // namespace
}  // namespace moeserve::kernels
