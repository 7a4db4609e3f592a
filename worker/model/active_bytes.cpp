#include "worker/model/active_bytes.h"

namespace moeserve::model {
namespace {

constexpr int64_t kBf16Bytes = 2;
constexpr int64_t kFp8Bytes = 1;
constexpr int64_t kF32Bytes = 4;

int64_t blocks(int64_t size, int64_t block) { return (size + block - 1) / block; }

class ByteCounter {
 public:
  ByteCounter(const ModelConfig& config, WeightPrecision precision)
      : c_(config), fp8_(precision == WeightPrecision::kFp8) {}

  // A projection [rows, cols] at the checkpoint's precision.
  int64_t projection(int64_t rows, int64_t cols) const {
    if (!fp8_) return rows * cols * kBf16Bytes;
    return rows * cols * kFp8Bytes + blocks(rows, c_.quantization.block_rows) *
                                         blocks(cols, c_.quantization.block_cols) * kF32Bytes;
  }

  // SwiGLU: gate and up [intermediate, hidden], down [hidden, intermediate].
  int64_t mlp(int64_t intermediate) const {
    return 2 * projection(intermediate, c_.hidden_size) + projection(c_.hidden_size, intermediate);
  }

  int64_t attention() const {
    const int64_t h = c_.hidden_size;
    const int64_t heads = c_.num_attention_heads;
    const int64_t query = c_.has_q_lora() ? projection(c_.q_lora_rank, h) +
                                                projection(heads * c_.qk_head_dim(), c_.q_lora_rank)
                                          : projection(heads * c_.qk_head_dim(), h);
    return query + projection(c_.kv_lora_rank + c_.qk_rope_head_dim, h) +
           projection(heads * (c_.qk_nope_head_dim + c_.v_head_dim), c_.kv_lora_rank) +
           projection(h, heads * c_.v_head_dim);
  }

  // input, post-attention, q_a (with query compression) and kv_a RMSNorms.
  int64_t layer_norms() const {
    return (2 * c_.hidden_size + (c_.has_q_lora() ? c_.q_lora_rank : 0) + c_.kv_lora_rank) *
           kF32Bytes;
  }

  int64_t router() const {
    const int64_t bias = c_.topk_method == TopkMethod::kNoauxTc ? c_.n_routed_experts : 0;
    return c_.n_routed_experts * c_.hidden_size * kBf16Bytes + bias * kF32Bytes;
  }

 private:
  const ModelConfig& c_;
  bool fp8_;
};

}  // namespace

WeightPrecision weight_precision(const ModelConfig& config) {
  return config.quantization.fp8 ? WeightPrecision::kFp8 : WeightPrecision::kBf16;
}

ActiveWeightBytes active_weight_bytes(const ModelConfig& config, WeightPrecision precision) {
  const ByteCounter count(config, precision);
  ActiveWeightBytes b;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    b.attention += count.attention();
    b.norms += count.layer_norms();
    if (!config.is_moe_layer(layer)) {
      b.dense_mlp += count.mlp(config.intermediate_size);
      continue;
    }
    b.router += count.router();
    if (config.n_shared_experts > 0) {
      b.shared_experts += count.mlp(config.shared_intermediate_size());
    }
    b.routed_experts += config.num_experts_per_tok * count.mlp(config.moe_intermediate_size);
  }
  b.norms += config.hidden_size * kF32Bytes;  // the final norm
  b.embedding_row = config.hidden_size * kBf16Bytes;
  b.lm_head = config.vocab_size * config.hidden_size * kBf16Bytes;
  return b;
}

}  // namespace moeserve::model
