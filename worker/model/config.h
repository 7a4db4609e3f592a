// ModelConfig: the architecture of a DeepSeek-V2/V3-family checkpoint, parsed from the
// Hugging Face `config.json` of a model folder.
//
// Supported architectures: DeepseekV3ForCausalLM (model_type deepseek_v3) and
// DeepseekV2ForCausalLM (deepseek_v2). A field absent from config.json takes the
// default of the model's own Hugging Face configuration class (DeepseekV3Config or
// DeepseekV2Config). Every error names the field: "config.json: n_group must divide
// n_routed_experts (n_group 3, n_routed_experts 16)". Parsing is pure; ModelConfig is a
// plain value, safe to copy and share between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace moeserve::model {

enum class Architecture { kDeepseekV3, kDeepseekV2 };

// How routed experts are selected (HF `topk_method`).
enum class TopkMethod {
  kGreedy,              // top-k over all experts (V2 "greedy", also its default "gready")
  kGroupLimitedGreedy,  // V2: groups scored by their best expert, keep topk_group groups
  kNoauxTc,             // V3: selection on scores + e_score_correction_bias; groups scored
                        // by the sum of their two best biased scores
};

enum class ScoringFunc { kSoftmax, kSigmoid };

// YaRN context extension (rope_scaling with type "yarn"). Absent rope_scaling leaves
// `enabled` false and plain RoPE applies.
struct RopeScaling {
  bool enabled = false;
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

// quantization_config of an FP8 checkpoint: weights in float8_e4m3fn with one F32
// `<name>_scale_inv` per block of block_rows x block_cols (the real value is the FP8
// value times its block's scale_inv).
struct QuantizationConfig {
  bool fp8 = false;  // true when config.json has quantization_config (quant_method fp8)
  std::string fmt = "e4m3";
  std::string activation_scheme = "dynamic";
  int64_t block_rows = 128;
  int64_t block_cols = 128;
};

struct ModelConfig {
  Architecture architecture = Architecture::kDeepseekV3;
  std::string architecture_name;  // e.g. "DeepseekV3ForCausalLM"
  std::string model_type;         // "deepseek_v3" or "deepseek_v2"
  std::string torch_dtype;        // informational, e.g. "bfloat16"

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;      // dense MLP layers
  int64_t moe_intermediate_size = 0;  // each routed expert; shared experts use
                                      // moe_intermediate_size * n_shared_experts
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // informational for MLA (every head has its own K/V)

  // MLA. q_lora_rank 0 means no query compression (q_proj instead of q_a/q_b).
  int64_t q_lora_rank = 0;
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;

  // MoE. n_routed_experts 0 means a dense model.
  int64_t n_routed_experts = 0;
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  TopkMethod topk_method = TopkMethod::kGreedy;
  ScoringFunc scoring_func = ScoringFunc::kSoftmax;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;

  int64_t num_nextn_predict_layers = 0;  // MTP layers, stored as model.layers.<L + k>

  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 0;

  int64_t bos_token_id = -1;  // -1: none
  std::vector<int64_t> eos_token_ids;
  bool tie_word_embeddings = false;

  QuantizationConfig quantization;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool has_q_lora() const { return q_lora_rank > 0; }
  // Whether decoder layer `layer` (0-based; MTP layers continue the numbering) has a
  // DeepSeekMoE block rather than a dense MLP: the Hugging Face rule, layer >=
  // first_k_dense_replace and layer % moe_layer_freq == 0, in a model with routed experts.
  // The one definition of an MoE layer; everything else asks this or moe_layers().
  bool is_moe_layer(int64_t layer) const;
  // The MoE layers among the num_hidden_layers decoder layers (MTP layers excluded),
  // ascending: the layers the engine routes, the expert-load account covers and an
  // expert placement has one entry for.
  std::vector<int64_t> moe_layers() const;
  // Intermediate size of the fused shared-experts MLP.
  int64_t shared_intermediate_size() const { return moe_intermediate_size * n_shared_experts; }
};

// Parses config.json text. `source` names the file in error messages.
StatusOr<ModelConfig> parse_config(std::string_view json_text,
                                   std::string_view source = "config.json");
// Reads and parses `<dir>/config.json`.
StatusOr<ModelConfig> load_config(const std::string& dir);

std::string_view topk_method_name(TopkMethod method);
std::string_view scoring_func_name(ScoringFunc func);

}  // namespace moeserve::model
