// Deterministic random inputs for the kernel tests (never all zeros).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace moeserve::kernels::testing {

inline std::vector<float> random_floats(int64_t n, uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace moeserve::kernels::testing
