#include "worker/model/active_bytes.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "tests/support/test_util.h"
#include "tools/fixtures/tiny_model.h"
#include "worker/model/weights.h"

namespace moeserve::model {
namespace {

int64_t norm_bytes(const std::vector<float>& norm) {
  return static_cast<int64_t>(norm.size() * sizeof(float));
}

int64_t mlp_bytes(const Mlp& mlp) {
  return static_cast<int64_t>(mlp.gate_proj.bytes() + mlp.up_proj.bytes() + mlp.down_proj.bytes());
}

// The oracle: the same account summed over the tensors a loaded model actually holds
// (Linear::bytes() of every bound matrix, norms as the float vectors they are).
ActiveWeightBytes bound_bytes(const ModelConfig& config, const ModelWeights& weights) {
  ActiveWeightBytes b;
  for (const DecoderLayer& layer : weights.layers) {
    const Attention& a = layer.self_attn;
    for (const Linear* l :
         {&a.q_a_proj, &a.q_b_proj, &a.q_proj, &a.kv_a_proj_with_mqa, &a.kv_b_proj, &a.o_proj}) {
      b.attention += static_cast<int64_t>(l->bytes());
    }
    b.norms += norm_bytes(layer.input_layernorm) + norm_bytes(layer.post_attention_layernorm) +
               norm_bytes(a.q_a_layernorm) + norm_bytes(a.kv_a_layernorm);
    if (!layer.is_moe) {
      b.dense_mlp += mlp_bytes(layer.mlp);
      continue;
    }
    b.router += static_cast<int64_t>(layer.moe.gate.bytes()) +
                norm_bytes(layer.moe.e_score_correction_bias);
    if (layer.moe.has_shared_experts()) b.shared_experts += mlp_bytes(layer.moe.shared_experts);
    int64_t all_experts = 0;
    for (const Mlp& e : layer.moe.experts) all_experts += mlp_bytes(e);
    b.routed_experts +=
        all_experts / static_cast<int64_t>(layer.moe.experts.size()) * config.num_experts_per_tok;
  }
  b.norms += norm_bytes(weights.norm);
  b.embedding_row = static_cast<int64_t>(weights.embed_tokens.bytes()) / config.vocab_size;
  b.lm_head = static_cast<int64_t>(weights.lm_head.bytes());
  return b;
}

void expect_same(const ActiveWeightBytes& got, const ActiveWeightBytes& want,
                 const std::string& what) {
  EXPECT_EQ(got.attention, want.attention) << what;
  EXPECT_EQ(got.dense_mlp, want.dense_mlp) << what;
  EXPECT_EQ(got.shared_experts, want.shared_experts) << what;
  EXPECT_EQ(got.routed_experts, want.routed_experts) << what;
  EXPECT_EQ(got.router, want.router) << what;
  EXPECT_EQ(got.norms, want.norms) << what;
  EXPECT_EQ(got.embedding_row, want.embedding_row) << what;
  EXPECT_EQ(got.lm_head, want.lm_head) << what;
  EXPECT_EQ(got.total(), want.total()) << what;
}

struct Case {
  const char* name;
  Architecture architecture;
  WeightPrecision precision;
  int64_t num_hidden_layers;  // 0: the preset's
  int64_t moe_layer_freq;
};

// The config-only count equals the bytes of the bound tensors exactly, for both
// architectures, both precisions (FP8 with partial edge blocks) and interleaved dense
// and MoE layers.
TEST(ActiveWeightBytesTest, ConfigCountEqualsTheBytesOfTheLoadedWeights) {
  for (const Case& c :
       {Case{"v3 bf16", Architecture::kDeepseekV3, WeightPrecision::kBf16, 0, 1},
        Case{"v3 fp8", Architecture::kDeepseekV3, WeightPrecision::kFp8, 0, 1},
        Case{"v2 bf16", Architecture::kDeepseekV2, WeightPrecision::kBf16, 0, 1},
        Case{"v2 fp8", Architecture::kDeepseekV2, WeightPrecision::kFp8, 0, 1},
        Case{"v3 fp8 freq 2", Architecture::kDeepseekV3, WeightPrecision::kFp8, 5, 2}}) {
    testing::TempDir dir;
    fixtures::TinyModelOptions options;
    options.architecture = c.architecture;
    options.precision = c.precision;
    options.num_hidden_layers = c.num_hidden_layers;
    options.moe_layer_freq = c.moe_layer_freq;
    ASSERT_TRUE(fixtures::write_tiny_model(dir.path(), options).ok()) << c.name;
    auto loaded = load_model(dir.path(), {.load_mtp = false, .prefault = false});
    ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
    EXPECT_EQ(weight_precision(loaded->config), c.precision) << c.name;
    expect_same(active_weight_bytes(loaded->config, c.precision),
                bound_bytes(loaded->config, loaded->weights), c.name);
  }
}

TEST(ActiveWeightBytesTest, CountsOneEmbeddingRowTopKExpertsAndEveryAttentionMatrix) {
  auto parsed = parse_config(fixtures::tiny_model_config_json({}).dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  const ModelConfig& c = *parsed;
  const ActiveWeightBytes b = active_weight_bytes(c, WeightPrecision::kBf16);
  EXPECT_EQ(b.embedding_row, c.hidden_size * 2);
  EXPECT_EQ(b.lm_head, c.vocab_size * c.hidden_size * 2);
  const int64_t moe_layers = c.num_hidden_layers - c.first_k_dense_replace;
  EXPECT_EQ(b.routed_experts,
            moe_layers * c.num_experts_per_tok * 3 * c.moe_intermediate_size * c.hidden_size * 2);
  EXPECT_EQ(b.dense_mlp, c.first_k_dense_replace * 3 * c.intermediate_size * c.hidden_size * 2);
  const int64_t qk = c.qk_head_dim();
  const int64_t attention_params =
      c.q_lora_rank * c.hidden_size + c.num_attention_heads * qk * c.q_lora_rank +
      (c.kv_lora_rank + c.qk_rope_head_dim) * c.hidden_size +
      c.num_attention_heads * (c.qk_nope_head_dim + c.v_head_dim) * c.kv_lora_rank +
      c.hidden_size * c.num_attention_heads * c.v_head_dim;
  EXPECT_EQ(b.attention, c.num_hidden_layers * attention_params * 2);
}

// FP8 halves the projections (plus a 4-byte scale per 128x128 block) and leaves the
// embedding row, lm_head, router and norms as they are.
TEST(ActiveWeightBytesTest, Fp8ReadsOneBytePerProjectionWeightPlusBlockScales) {
  auto parsed = parse_config(fixtures::tiny_model_config_json({}).dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  const ModelConfig& c = *parsed;
  const ActiveWeightBytes bf16 = active_weight_bytes(c, WeightPrecision::kBf16);
  const ActiveWeightBytes fp8 = active_weight_bytes(c, WeightPrecision::kFp8);
  // A routed expert of the tiny preset: gate and up [96, 160] and down [160, 96], two
  // 128x128 blocks each; 4 of them in each of the 2 MoE layers.
  const int64_t expert_weights = 3 * 96 * 160;
  EXPECT_EQ(bf16.routed_experts, 2 * 4 * expert_weights * 2);
  EXPECT_EQ(fp8.routed_experts, 2 * 4 * (expert_weights + 3 * 2 * 4));
  EXPECT_LT(fp8.attention, bf16.attention);
  EXPECT_EQ(fp8.embedding_row, bf16.embedding_row);
  EXPECT_EQ(fp8.lm_head, bf16.lm_head);
  EXPECT_EQ(fp8.router, bf16.router);
  EXPECT_EQ(fp8.norms, bf16.norms);
}

}  // namespace
}  // namespace moeserve::model
