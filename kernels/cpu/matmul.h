// Matrix multiplication of float32 activations by a weight stored the way Hugging Face
// checkpoints store a Linear layer: row-major [rows = out_features, cols = in_features] in
// F32, BF16, or FP8 E4M3 with float32 128x128 block scales (DeepSeek-V3's `weight` plus
// `weight_scale_inv`). Weights stay in their stored format; FP8 and BF16 are decoded inside
// the kernels, never expanded to a float copy. Accumulation is float32.
//
// matmul is vectorised (AVX2/FMA, chosen at run time, see isa.h) and splits the output rows
// over the ThreadPool. With several tokens each weight row is decoded once and used for
// every token, so a batch costs little more weight traffic than a single token.
// All functions are thread-safe for distinct outputs; pointers must not alias outputs.
#pragma once

#include <cstdint>
#include <span>

namespace moeserve::kernels {

class ThreadPool;

enum class WeightType { kF32, kBF16, kFP8E4M3 };

// The block edge of FP8 scales: scale_inv is [ceil(rows/128), ceil(cols/128)], edge blocks
// may be partial.
inline constexpr int64_t kFp8BlockSize = 128;

// A non-owning view of a weight. For kFP8E4M3 the real value of W[r][c] is
// fp8(W[r][c]) * scale_inv[(r / 128) * ceil(cols / 128) + c / 128]; scale_inv is unused
// (may be null) for the other types.
struct WeightView {
  WeightType type;
  const void* data;
  const float* scale_inv;
  int64_t rows;
  int64_t cols;
};

// Bytes of weight data (without scales) the view covers: rows * cols * element size.
int64_t weight_bytes(const WeightView& w);

// y[t * rows + r] = sum_c x[t * cols + c] * W[r][c] for t < tokens. `pool` may be null
// (single-threaded). FP8 NaN codes (0x7f/0xff) are not supported in weights.
void matmul(const WeightView& w, const float* x, int64_t tokens, float* y, ThreadPool* pool);

// One matmul of a batch that matmul_all runs: y = x W^T for `tokens` rows of x, as matmul.
struct MatmulTask {
  WeightView w;
  const float* x;
  int64_t tokens;
  float* y;
};

// Runs independent matmuls in one pool dispatch, so the small matmuls of a layer that read
// the same input (q_a and kv_a; an MLP's gate and up; every expert of a decode step) share
// one barrier instead of one each. Their row groups, in task order, are cut into chunks of
// work (rows x cols x tokens) that shrink from first to last, which the threads claim as
// they finish (matmul is matmul_all of one task). Each task's
// output is exactly what matmul would write (rows are computed the same way, only by other
// threads). Outputs must not alias each other or any task's input.
void matmul_all(std::span<const MatmulTask> tasks, ThreadPool* pool);

// The definition, for tests: a plain scalar loop over the element-wise conversions of
// convert.h, accumulating in double (so it is at least as accurate as matmul).
void matmul_reference(const WeightView& w, const float* x, int64_t tokens, float* y);

// Row `row` of W as float32 (block scale applied), `out` has w.cols elements. Used for
// embedding lookups.
void dequantize_row(const WeightView& w, int64_t row, float* out);

}  // namespace moeserve::kernels
