#include "kernels/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul_impl.h"

namespace moeserve::kernels {

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double partial[4] = {};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) partial[j] += static_cast<double>(x[i + j]) * x[i + j];
  }
  for (; i < n; ++i) partial[0] += static_cast<double>(x[i]) * x[i];
  const double mean = (partial[0] + partial[1] + partial[2] + partial[3]) / static_cast<double>(n);
  const float inv_rms = static_cast<float>(1.0 / std::sqrt(mean + eps));
  for (int64_t k = 0; k < n; ++k) out[k] = x[k] * inv_rms * weight[k];
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
#if MOESERVE_X86_SIMD
  const Isa isa = active_isa();
  if (isa >= Isa::kAvx512) return internal::silu_mul_avx512(gate, up, n, out);
  if (isa == Isa::kAvx2) return internal::silu_mul_avx2(gate, up, n, out);
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
#if MOESERVE_X86_SIMD
  const Isa isa = active_isa();
  if (isa >= Isa::kAvx512) return internal::softmax_avx512(x, n);
  if (isa == Isa::kAvx2) return internal::softmax_avx2(x, n);
#endif
  const float max_value = *std::max_element(x, x + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_value);
    sum += x[i];
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv_sum;
}

void top_k(const float* x, int64_t n, int64_t k, int64_t* indices, float* values) {
  k = std::clamp<int64_t>(k, 0, n);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  const auto key = [x](int64_t i) {
    return std::isnan(x[i]) ? -std::numeric_limits<float>::infinity() : x[i];
  };
  // NaN and -inf compare equal here and fall back to index order, which keeps this a strict
  // weak ordering.
  const auto before = [&](int64_t a, int64_t b) {
    const float ka = key(a);
    const float kb = key(b);
    if (ka != kb) return ka > kb;
    const bool nan_a = std::isnan(x[a]);
    const bool nan_b = std::isnan(x[b]);
    if (nan_a != nan_b) return nan_b;
    return a < b;
  };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
  for (int64_t i = 0; i < k; ++i) {
    indices[i] = order[static_cast<size_t>(i)];
    values[i] = x[indices[i]];
  }
}

void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void scale_add(float* y, const float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

float dot(const float* a, const float* b, int64_t n) {
#if MOESERVE_X86_SIMD
  const Isa isa = active_isa();
  if (isa >= Isa::kAvx512) return internal::dot_avx512(a, b, n);
  if (isa == Isa::kAvx2) return internal::dot_avx2(a, b, n);
#endif
  return internal::dot_scalar(a, b, n);
}

void attention_scores(const float* q, int64_t q_stride, int64_t heads, const float* const* rows,
                      int64_t n, int64_t dim, float scale, float* scores, int64_t score_stride) {
#if MOESERVE_X86_SIMD
  const Isa isa = active_isa();
  if (isa >= Isa::kAvx512) {
    return internal::attention_scores_avx512(q, q_stride, heads, rows, n, dim, scale, scores,
                                             score_stride);
  }
  if (isa == Isa::kAvx2) {
    return internal::attention_scores_avx2(q, q_stride, heads, rows, n, dim, scale, scores,
                                           score_stride);
  }
#endif
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t j = 0; j < n; ++j) {
      scores[h * score_stride + j] = internal::dot_scalar(q + h * q_stride, rows[j], dim) * scale;
    }
  }
}

void attention_values(const float* p, int64_t p_stride, int64_t heads, const float* const* rows,
                      int64_t n, int64_t dim, float* out, int64_t out_stride) {
#if MOESERVE_X86_SIMD
  const Isa isa = active_isa();
  if (isa >= Isa::kAvx512) {
    return internal::attention_values_avx512(p, p_stride, heads, rows, n, dim, out, out_stride);
  }
  if (isa == Isa::kAvx2) {
    return internal::attention_values_avx2(p, p_stride, heads, rows, n, dim, out, out_stride);
  }
#endif
  for (int64_t h = 0; h < heads; ++h) {
    float* o = out + h * out_stride;
    std::fill_n(o, dim, 0.0f);
    for (int64_t j = 0; j < n; ++j) scale_add(o, rows[j], p[h * p_stride + j], dim);
  }
}

}  // namespace moeserve::kernels
