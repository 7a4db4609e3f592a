#include "kernels/cpu/convert.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>

namespace moeserve::kernels {
namespace {

// E4M3 (e4m3fn) straight from the format definition: sign, 4 exponent bits with bias 7,
// 3 mantissa bits, subnormals at exponent 0, S.1111.111 is NaN.
double fp8_definition(int code) {
  const int sign = code >> 7;
  const int exponent = (code >> 3) & 15;
  const int mantissa = code & 7;
  const double magnitude = exponent == 0 ? mantissa / 8.0 * std::pow(2.0, -6)
                                         : (1 + mantissa / 8.0) * std::pow(2.0, exponent - 7);
  return sign ? -magnitude : magnitude;
}

// Nearest finite E4M3 code by exhaustive search, ties to the even code, saturating at 448.
uint8_t fp8_nearest(float v) {
  const double magnitude = std::fabs(static_cast<double>(v));
  int best = 0;
  double best_distance = std::numeric_limits<double>::infinity();
  for (int code = 0; code <= 0x7e; ++code) {
    const double distance = std::fabs(fp8_definition(code) - magnitude);
    if (distance < best_distance || (distance == best_distance && code % 2 == 0)) {
      best = code;
      best_distance = distance;
    }
  }
  return static_cast<uint8_t>((std::signbit(v) ? 0x80 : 0) | best);
}

TEST(ConvertTest, Fp8DecodesAll256CodesPerTheFormatDefinition) {
  for (int code = 0; code < 256; ++code) {
    const float value = fp8_e4m3_to_f32(static_cast<uint8_t>(code));
    if ((code & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(value)) << "code " << code;
    } else {
      EXPECT_EQ(value, static_cast<float>(fp8_definition(code))) << "code " << code;
    }
  }
  EXPECT_EQ(fp8_e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(fp8_e4m3_to_f32(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8_e4m3_to_f32(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_TRUE(std::signbit(fp8_e4m3_to_f32(0x80)));
}

TEST(ConvertTest, Fp8EncodeRoundTripsEveryFiniteCode) {
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) continue;
    EXPECT_EQ(f32_to_fp8_e4m3(fp8_e4m3_to_f32(static_cast<uint8_t>(code))), code);
  }
}

TEST(ConvertTest, Fp8EncodeRoundsToNearestEvenAndSaturates) {
  EXPECT_EQ(f32_to_fp8_e4m3(1.0625f), 0x38);  // halfway 1.0 / 1.125: even mantissa 0
  EXPECT_EQ(f32_to_fp8_e4m3(1.1875f), 0x3a);  // halfway 1.125 / 1.25: even mantissa 2
  EXPECT_EQ(f32_to_fp8_e4m3(7.5f * std::ldexp(1.0f, -9)), 0x08);  // subnormal/normal tie
  EXPECT_EQ(f32_to_fp8_e4m3(0.5f * std::ldexp(1.0f, -9)), 0x00);  // tie to zero
  EXPECT_EQ(f32_to_fp8_e4m3(448.0f), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(460.0f), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(1e9f), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(f32_to_fp8_e4m3(std::numeric_limits<float>::quiet_NaN()), 0x7f);
  EXPECT_EQ(f32_to_fp8_e4m3(-std::numeric_limits<float>::quiet_NaN()), 0xff);
  EXPECT_EQ(f32_to_fp8_e4m3(-0.0f), 0x80);
}

TEST(ConvertTest, Fp8EncodeKnownValues) {
  EXPECT_EQ(f32_to_fp8_e4m3(0.0f), 0x00);
  EXPECT_EQ(f32_to_fp8_e4m3(1.0f), 0x38);
  EXPECT_EQ(f32_to_fp8_e4m3(1.07f), 0x39);                  // nearest of 1.0 / 1.125
  EXPECT_EQ(f32_to_fp8_e4m3(1.96f), 0x40);                  // rounds up into the next binade
  EXPECT_EQ(f32_to_fp8_e4m3(std::ldexp(1.5f, -10)), 0x01);  // 0.75 subnormal steps
  EXPECT_EQ(f32_to_fp8_e4m3(1000.0f), 0x7e);                // finite, saturates
  EXPECT_EQ(f32_to_fp8_e4m3(-1000.0f), 0xfe);
}

TEST(ConvertTest, Fp8EncodeMatchesExhaustiveNearestOnRandomValues) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-12.0f, 10.0f);
  std::uniform_int_distribution<int> sign(0, 1);
  for (int i = 0; i < 20000; ++i) {
    const float v = (sign(rng) ? -1.0f : 1.0f) * std::exp2(exponent(rng));
    ASSERT_EQ(f32_to_fp8_e4m3(v), fp8_nearest(v)) << "value " << v;
  }
}

TEST(ConvertTest, Bf16IsTheUpperHalfOfFloat32) {
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-2.5f), 0xc020);
  EXPECT_EQ(bf16_to_f32(0xc040), -3.0f);
  EXPECT_EQ(bf16_to_f32(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(bf16_to_f32(0x7fc1)));
}

TEST(ConvertTest, Bf16EncodeRoundsToNearestEven) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<uint32_t> bits_dist;
  for (int i = 0; i < 20000; ++i) {
    const float v = std::bit_cast<float>(bits_dist(rng));
    // Skip non-finite inputs and the top binade's last step, where rounding up gives infinity.
    if (!std::isfinite(v) || ((std::bit_cast<uint32_t>(v) >> 16) & 0x7fff) == 0x7f7f) continue;
    const uint16_t got = f32_to_bf16(v);
    const uint16_t low = static_cast<uint16_t>(std::bit_cast<uint32_t>(v) >> 16);
    const uint16_t high = static_cast<uint16_t>(low + 1);
    const double d_low = std::fabs(static_cast<double>(bf16_to_f32(low)) - v);
    const double d_high = std::fabs(static_cast<double>(bf16_to_f32(high)) - v);
    const uint16_t want = d_low < d_high   ? low
                          : d_high < d_low ? high
                                           : (low % 2 == 0 ? low : high);
    ASSERT_EQ(got, want) << "value " << v;
  }
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // tie, keeps even
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie, rounds up to even
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
}

}  // namespace
}  // namespace moeserve::kernels
