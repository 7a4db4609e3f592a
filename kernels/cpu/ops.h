// Element-wise and reduction kernels of the forward pass, on float32 vectors of length n.
// Pure functions of their inputs, thread-safe; `out` may alias `x` where noted. dot uses
// AVX2/FMA when active (isa.h), as do the attention kernels, softmax and silu_mul (their
// exp is a polynomial within 2 ulp of expf; see exp_poly.h); the others are plain loops
// the compiler vectorises.
#pragma once

#include <cstdint>

namespace moeserve::kernels {

// out = x / sqrt(mean(x^2) + eps) * weight (the sum of squares is accumulated in double).
// out may alias x.
void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out);

// out = silu(gate) * up = gate / (1 + exp(-gate)) * up. out may alias gate or up.
void silu_mul(const float* gate, const float* up, int64_t n, float* out);

// In place, numerically stable: exp(x - max) / sum. Entries equal to -inf become 0 (a fully
// masked row of all -inf gives NaN, as the mathematical softmax is undefined there).
void softmax(float* x, int64_t n);

// The k largest entries in descending order, ties broken towards the lower index; NaN
// ranks below every number. Requires 0 <= k <= n.
void top_k(const float* x, int64_t n, int64_t k, int64_t* indices, float* values);

// y += x.
void add(float* y, const float* x, int64_t n);
// y += a * x.
void scale_add(float* y, const float* x, float a, int64_t n);
// sum_i a[i] * b[i], float32 accumulation in several independent partial sums.
float dot(const float* a, const float* b, int64_t n);

// Attention of `heads` queries over the same n rows (MLA's absorbed decode: every head of
// a token reads the same latent cache entries); rows[j] points at row j. Each row is read
// once per tile of heads rather than once per head. Vectorised where dot is.
//   scores[h * score_stride + j] = scale * sum_{c < dim} q[h * q_stride + c] * rows[j][c]
void attention_scores(const float* q, int64_t q_stride, int64_t heads, const float* const* rows,
                      int64_t n, int64_t dim, float scale, float* scores, int64_t score_stride);
//   out[h * out_stride + c] = sum_{j < n} p[h * p_stride + j] * rows[j][c]   for c < dim
// (n = 0 writes zeros). out must not alias p or the rows.
void attention_values(const float* p, int64_t p_stride, int64_t heads, const float* const* rows,
                      int64_t n, int64_t dim, float* out, int64_t out_stride);

}  // namespace moeserve::kernels
