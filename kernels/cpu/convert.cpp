#include "kernels/cpu/convert.h"

#include <bit>
#include <cmath>

namespace moeserve::kernels {
namespace {

constexpr uint8_t kFp8SignBit = 0x80;
constexpr uint8_t kFp8MaxFinite = 0x7e;  // 448
constexpr uint8_t kFp8Nan = 0x7f;
constexpr float kFp8MaxValue = 448.0f;
constexpr float kFp8MinNormal = 0.015625f;  // 2^-6

}  // namespace

float bf16_to_f32(uint16_t v) { return std::bit_cast<float>(static_cast<uint32_t>(v) << 16); }

uint16_t f32_to_bf16(float v) {
  const uint32_t bits = std::bit_cast<uint32_t>(v);
  if (std::isnan(v)) return static_cast<uint16_t>((bits >> 16) | 0x40);
  const uint32_t lsb = (bits >> 16) & 1;
  return static_cast<uint16_t>((bits + 0x7fff + lsb) >> 16);
}

float fp8_e4m3_to_f32(uint8_t v) {
  const float sign = (v & kFp8SignBit) ? -1.0f : 1.0f;
  const int exponent = (v >> 3) & 0xf;
  const int mantissa = v & 0x7;
  if (exponent == 0xf && mantissa == 0x7) return std::copysign(NAN, sign);
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -9);
  return sign * std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
}

uint8_t f32_to_fp8_e4m3(float v) {
  const uint8_t sign = std::signbit(v) ? kFp8SignBit : 0;
  if (std::isnan(v)) return sign | kFp8Nan;
  const float magnitude = std::fabs(v);
  if (magnitude >= kFp8MaxValue) return sign | kFp8MaxFinite;
  if (magnitude < kFp8MinNormal) {
    // Subnormal range: the code is the number of 2^-9 steps; 8 steps is the smallest
    // normal, whose code is also 8.
    return sign | static_cast<uint8_t>(std::nearbyint(magnitude * 512.0f));
  }
  int exponent = 0;
  const float fraction = std::frexp(magnitude, &exponent);  // magnitude = fraction * 2^exponent
  int biased = exponent - 1 + 7;
  int mantissa = static_cast<int>(std::nearbyint(fraction * 16.0f - 8.0f));
  if (mantissa == 8) {
    mantissa = 0;
    ++biased;
  }
  const int code = (biased << 3) | mantissa;
  return sign | static_cast<uint8_t>(code > kFp8MaxFinite ? kFp8MaxFinite : code);
}

}  // namespace moeserve::kernels
