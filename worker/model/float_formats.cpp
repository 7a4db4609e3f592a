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
  const double magnitude = std::fabs(static_cast<double>(value));
  // Quantum of the binade holding `magnitude` (subnormals share the smallest binade's).
  int exponent = std::ilogb(magnitude);
  if (magnitude == 0.0 || exponent < kMinNormalExponent) exponent = kMinNormalExponent;
  const double quantum = std::ldexp(1.0, exponent - 3);
  // nearbyint rounds ties to even in the default rounding mode; steps counts quanta.
  const double steps = std::nearbyint(magnitude / quantum);
  const double rounded = steps * quantum;
  if (rounded > 448.0) return sign | kMaxFiniteCode;
  if (rounded < std::ldexp(1.0, kMinNormalExponent)) {
    return sign | static_cast<uint8_t>(steps);  // subnormal: code = m
  }
  const int e = std::ilogb(rounded);
  const int m = static_cast<int>(rounded / std::ldexp(1.0, e - 3)) - kMantissaSteps;
  return sign | static_cast<uint8_t>(((e + kBias) << 3) | m);
}

}  // namespace moeserve::model
