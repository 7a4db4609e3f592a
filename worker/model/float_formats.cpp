#include "worker/model/float_formats.h"

#include <cmath>
#include <cstring>

namespace moeserve::model {
namespace {

constexpr uint8_t kSign = 0x80;
constexpr uint8_t kMaxFiniteCode = 0x7e;  // 448
constexpr uint8_t kNanCode = 0x7f;
constexpr int kBias = 7;
constexpr int kMinNormalExponent = 1 - kBias;  // 2^-6
constexpr int kMantissaSteps = 8;              // 3 mantissa bits

}  // namespace

float bf16_to_float(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float out;
  std::memcpy(&out, &wide, sizeof(out));
  return out;
}

uint16_t float_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x40);
  const uint32_t round = 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + round) >> 16);
}

float fp8_e4m3_to_float(uint8_t code) {
  const int exponent = (code >> 3) & 0xf;
  const int mantissa = code & 0x7;
  float magnitude;
  if (exponent == 0xf && mantissa == 0x7) {
    magnitude = NAN;
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), kMinNormalExponent - 3);
  } else {
    magnitude = std::ldexp(1.0f + static_cast<float>(mantissa) / kMantissaSteps, exponent - kBias);
  }
  return (code & kSign) ? -magnitude : magnitude;
}

uint8_t float_to_fp8_e4m3(float value) {
  const uint8_t sign = std::signbit(value) ? kSign : 0;
  if (std::isnan(value)) return sign | kNanCode;
  const float magnitude = std::fabs(value);
  // 448 is the largest finite code; everything above saturates (ties at 464 round to
  // 448, whose mantissa is even, and 480 would be NaN's code).
  if (magnitude >= 448.0f) return sign | kMaxFiniteCode;
  if (magnitude < std::ldexp(1.0f, kMinNormalExponent)) {
    // Subnormals: the code is the number of 2^-9 steps (scaling by 512 is exact; 8
    // steps is the smallest normal, whose code is also 8).
    return sign | static_cast<uint8_t>(std::nearbyint(magnitude * 512.0f));
  }
  // Normal: keep 3 of float's 23 mantissa bits, rounding to nearest even on the bit
  // pattern (a carry into the exponent is the correct next binade), then rebias the
  // exponent from 127 to 7.
  uint32_t bits;
  std::memcpy(&bits, &magnitude, sizeof(bits));
  const uint32_t kept_lsb = (bits >> 20) & 1;
  const uint32_t rounded = (bits + 0x7ffff + kept_lsb) >> 20;
  const uint32_t code = rounded - ((127 - kBias) << 3);
  return sign | static_cast<uint8_t>(code > kMaxFiniteCode ? kMaxFiniteCode : code);
}

}  // namespace moeserve::model
