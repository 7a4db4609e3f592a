#include "kernels/cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace moeserve::kernels {
namespace {

double correction_dim(double rotations, const RopeConfig& c) {
  return static_cast<double>(c.dim) *
         std::log(static_cast<double>(c.original_max_position) /
                  (rotations * 2 * std::numbers::pi)) /
         (2 * std::log(c.theta));
}

std::vector<double> rope_inv_freq(const RopeConfig& c) {
  const int64_t half = c.dim / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    inv_freq[static_cast<size_t>(i)] =
        1.0 / std::pow(c.theta, static_cast<double>(2 * i) / static_cast<double>(c.dim));
  }
  if (c.factor <= 1) return inv_freq;
  const double low = std::max(std::floor(correction_dim(c.beta_fast, c)), 0.0);
  double high = std::min(std::ceil(correction_dim(c.beta_slow, c)), static_cast<double>(c.dim - 1));
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    double& f = inv_freq[static_cast<size_t>(i)];
    f = f / c.factor * ramp + f * (1 - ramp);
  }
  return inv_freq;
}

}  // namespace

double yarn_mscale(double factor, double mscale) {
  return factor <= 1 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

RopeTable::RopeTable(const RopeConfig& config, int64_t max_positions)
    : dim_(config.dim),
      max_positions_(std::max<int64_t>(max_positions, 0)),
      inv_freq_(rope_inv_freq(config)) {
  if (config.factor > 1) {
    cos_sin_scale_ = yarn_mscale(config.factor, config.mscale) /
                     yarn_mscale(config.factor, config.mscale_all_dim);
    const double m = yarn_mscale(config.factor, config.mscale_all_dim);
    attention_scale_multiplier_ = m * m;
  }
  const size_t half = inv_freq_.size();
  cos_.resize(static_cast<size_t>(max_positions_) * half);
  sin_.resize(cos_.size());
  for (int64_t p = 0; p < max_positions_; ++p) {
    for (size_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(p) * inv_freq_[i];
      cos_[static_cast<size_t>(p) * half + i] =
          static_cast<float>(std::cos(angle) * cos_sin_scale_);
      sin_[static_cast<size_t>(p) * half + i] =
          static_cast<float>(std::sin(angle) * cos_sin_scale_);
    }
  }
}

void RopeTable::apply(float* x, int64_t position) const {
  const size_t half = inv_freq_.size();
  const bool cached = position < max_positions_;
  const float* cos_row = cached ? cos_.data() + static_cast<size_t>(position) * half : nullptr;
  const float* sin_row = cached ? sin_.data() + static_cast<size_t>(position) * half : nullptr;
  for (size_t i = 0; i < half; ++i) {
    float c;
    float s;
    if (cached) {
      c = cos_row[i];
      s = sin_row[i];
    } else {
      const double angle = static_cast<double>(position) * inv_freq_[i];
      c = static_cast<float>(std::cos(angle) * cos_sin_scale_);
      s = static_cast<float>(std::sin(angle) * cos_sin_scale_);
    }
    const float x0 = x[2 * i];
    const float x1 = x[2 * i + 1];
    x[2 * i] = x0 * c - x1 * s;
    x[2 * i + 1] = x0 * s + x1 * c;
  }
}

}  // namespace moeserve::kernels
