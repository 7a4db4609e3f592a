// Rotary position embedding as DeepSeek-V2/V3 use it: adjacent pairs (x0, x1), (x2, x3), ...
// of the rope part of q and k are rotated as complex numbers by position * inv_freq[i],
// inv_freq[i] = theta^(-2i/dim), with optional YaRN frequency scaling
// (rope_scaling {"type": "yarn", factor, original_max_position_embeddings, beta_fast,
// beta_slow, mscale, mscale_all_dim}).
//
// YaRN follows the published formulas (DeepSeek-V3 inference/model.py precompute_freqs_cis
// and Hugging Face's DeepseekV3YarnRotaryEmbedding, which agree on the frequencies):
//   correction_dim(rot) = dim * ln(original_max_position / (rot * 2 pi)) / (2 ln theta)
//   low = max(floor(correction_dim(beta_fast)), 0), high = min(ceil(correction_dim(beta_slow)),
//   dim-1) ramp[i] = clamp((i - low) / (high - low), 0, 1)   (high += 0.001 when equal), i < dim/2
//   inv_freq[i] = freq[i] / factor * ramp[i] + freq[i] * (1 - ramp[i])
// Magnitude scaling follows the Hugging Face convention, which the engine and its Python
// reference use: cos and sin are multiplied by
//   cos_sin_scale = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
// and the attention softmax scale is multiplied by
//   attention_scale_multiplier = yarn_mscale(factor, mscale_all_dim)^2,
// with yarn_mscale(s, m) = 0.1 * m * ln(s) + 1 for s > 1, else 1. (DeepSeek's own reference
// leaves cos/sin unscaled and multiplies the softmax scale by yarn_mscale(factor, mscale)^2;
// for the released configs, mscale == mscale_all_dim, the two agree.)
// factor <= 1 means no YaRN: plain RoPE, both scales 1.
//
// Angles are computed in double and stored as float cos/sin for positions below
// max_positions; later positions are computed on the fly. Immutable after construction,
// so apply is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace moeserve::kernels {

struct RopeConfig {
  int64_t dim;  // rotated elements per head (qk_rope_head_dim); even
  double theta;
  double factor = 1;
  int64_t original_max_position = 4096;
  double beta_fast = 32;
  double beta_slow = 1;
  double mscale = 1;
  double mscale_all_dim = 0;
};

// yarn_get_mscale of the reference implementations.
double yarn_mscale(double factor, double mscale);

class RopeTable {
 public:
  RopeTable(const RopeConfig& config, int64_t max_positions);

  // Rotates x (config.dim elements) in place for `position` >= 0.
  void apply(float* x, int64_t position) const;

  // Multiplier for the attention softmax scale (1 without YaRN).
  double attention_scale_multiplier() const { return attention_scale_multiplier_; }
  // The factor folded into cos and sin (1 without YaRN).
  double cos_sin_scale() const { return cos_sin_scale_; }
  // The rotation frequency of pair i < dim/2, after YaRN.
  double inv_freq(int64_t i) const { return inv_freq_[static_cast<size_t>(i)]; }
  int64_t dim() const { return dim_; }

 private:
  int64_t dim_;
  int64_t max_positions_;
  double cos_sin_scale_ = 1;
  double attention_scale_multiplier_ = 1;
  std::vector<double> inv_freq_;  // dim / 2
  std::vector<float> cos_;        // [max_positions][dim / 2], scaled by cos_sin_scale_
  std::vector<float> sin_;
};

}  // namespace moeserve::kernels
