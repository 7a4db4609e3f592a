// Active weight bytes: the bytes of weights one token reads in a decode step, the
// denominator of the decode bandwidth floor (tokens/s <= read bandwidth / these bytes).
// One definition for everything that states the floor: bench/decode.cpp and the
// tiny-model maker's preset table (tools/make_tiny_model.cpp).
//
// Computed from the config alone, for the tensors as the worker holds them
// (worker/model/weights.h): the projection matrices (attention, dense MLPs, shared and
// routed experts) at the given precision, FP8 with one F32 scale_inv per
// quantization block (edge blocks partial); embeddings, lm_head and the router in BF16
// (DeepSeek checkpoints never quantise them); norm vectors and the router's correction
// bias in float32, as bind_weights converts them. A token reads one embedding row,
// num_experts_per_tok routed experts of each MoE layer (ModelConfig::is_moe_layer) and
// everything else of the main layers; MTP layers are not part of a decode step. Pure.
#pragma once

#include <cstdint>

#include "worker/model/config.h"

namespace moeserve::model {

// How a checkpoint stores its projection matrices.
enum class WeightPrecision {
  kBf16,  // BF16: 2 bytes per weight
  kFp8,   // F8_E4M3: 1 byte per weight plus F32 block scales (DeepSeek-V3's FP8)
};

// The precision config.json declares: kFp8 with an FP8 quantization_config, else kBf16.
WeightPrecision weight_precision(const ModelConfig& config);

struct ActiveWeightBytes {
  int64_t attention = 0;  // all MLA projections of all layers (incl. FP8 scales)
  int64_t dense_mlp = 0;  // dense layers' MLPs
  int64_t shared_experts = 0;
  int64_t routed_experts = 0;  // num_experts_per_tok experts per MoE layer
  int64_t router = 0;          // gate matrix and correction bias
  int64_t norms = 0;
  int64_t embedding_row = 0;
  int64_t lm_head = 0;
  int64_t total() const {
    return attention + dense_mlp + shared_experts + routed_experts + router + norms +
           embedding_row + lm_head;
  }
};

// Block sizes for kFp8 come from config.quantization (128 x 128 unless config.json says
// otherwise), so a BF16 config may be asked what its FP8 version would read.
ActiveWeightBytes active_weight_bytes(const ModelConfig& config, WeightPrecision precision);

}  // namespace moeserve::model
