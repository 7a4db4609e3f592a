#include "worker/model/config.h"

#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"

namespace moeserve::model {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// DeepSeek-V3's published config.json (auto_map and a few informational fields omitted).
json deepseek_v3_config() {
  return json::parse(R"({
    "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": false,
    "attention_dropout": 0.0, "aux_loss_alpha": 0.001, "bos_token_id": 0, "eos_token_id": 1,
    "ep_size": 1, "first_k_dense_replace": 3, "hidden_act": "silu", "hidden_size": 7168,
    "initializer_range": 0.02, "intermediate_size": 18432, "kv_lora_rank": 512,
    "max_position_embeddings": 163840, "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256,
    "n_shared_experts": 1, "norm_topk_prob": true, "num_attention_heads": 128,
    "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1, "pretraining_tp": 1, "q_lora_rank": 1536,
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                            "quant_method": "fp8", "weight_block_size": [128, 128]},
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                     "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                     "type": "yarn"},
    "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid",
    "seq_aux": true, "tie_word_embeddings": false, "topk_group": 4, "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16", "use_cache": true, "v_head_dim": 128, "vocab_size": 129280
  })");
}

// DeepSeek-V2-Lite's config.json shape: no query compression, softmax greedy routing.
json deepseek_v2_lite_config() {
  return json::parse(R"({
    "architectures": ["DeepseekV2ForCausalLM"], "bos_token_id": 100000,
    "eos_token_id": 100001, "first_k_dense_replace": 1, "hidden_act": "silu",
    "hidden_size": 2048, "intermediate_size": 10944, "kv_lora_rank": 512,
    "max_position_embeddings": 163840, "model_type": "deepseek_v2",
    "moe_intermediate_size": 1408, "moe_layer_freq": 1, "n_group": 1, "n_routed_experts": 64,
    "n_shared_experts": 2, "norm_topk_prob": false, "num_attention_heads": 16,
    "num_experts_per_tok": 6, "num_hidden_layers": 27, "num_key_value_heads": 16,
    "q_lora_rank": null, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
                     "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096,
                     "type": "yarn"},
    "rope_theta": 10000, "routed_scaling_factor": 1.0, "scoring_func": "softmax",
    "tie_word_embeddings": false, "topk_group": 1, "topk_method": "greedy",
    "torch_dtype": "bfloat16", "v_head_dim": 128, "vocab_size": 102400
  })");
}

TEST(ConfigTest, ParsesDeepSeekV3Config) {
  auto config = parse_config(deepseek_v3_config().dump());
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->architecture, Architecture::kDeepseekV3);
  EXPECT_EQ(config->architecture_name, "DeepseekV3ForCausalLM");
  EXPECT_EQ(config->vocab_size, 129280);
  EXPECT_EQ(config->hidden_size, 7168);
  EXPECT_EQ(config->q_lora_rank, 1536);
  EXPECT_TRUE(config->has_q_lora());
  EXPECT_EQ(config->qk_head_dim(), 192);
  EXPECT_EQ(config->n_routed_experts, 256);
  EXPECT_EQ(config->n_group, 8);
  EXPECT_EQ(config->topk_group, 4);
  EXPECT_EQ(config->topk_method, TopkMethod::kNoauxTc);
  EXPECT_EQ(config->scoring_func, ScoringFunc::kSigmoid);
  EXPECT_TRUE(config->norm_topk_prob);
  EXPECT_DOUBLE_EQ(config->routed_scaling_factor, 2.5);
  EXPECT_EQ(config->num_nextn_predict_layers, 1);
  EXPECT_TRUE(config->rope_scaling.enabled);
  EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 40.0);
  EXPECT_EQ(config->rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(config->rope_scaling.mscale_all_dim, 1.0);
  EXPECT_TRUE(config->quantization.fp8);
  EXPECT_EQ(config->quantization.block_rows, 128);
  EXPECT_EQ(config->bos_token_id, 0);
  EXPECT_EQ(config->eos_token_ids, std::vector<int64_t>{1});
  EXPECT_EQ(config->shared_intermediate_size(), 2048);
  EXPECT_FALSE(config->is_moe_layer(2));
  EXPECT_TRUE(config->is_moe_layer(3));
  EXPECT_TRUE(config->is_moe_layer(61));  // the MTP layer is a MoE layer
}

TEST(ConfigTest, ParsesV2LiteWithNullQueryRank) {
  auto config = parse_config(deepseek_v2_lite_config().dump());
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->architecture, Architecture::kDeepseekV2);
  EXPECT_EQ(config->q_lora_rank, 0);
  EXPECT_FALSE(config->has_q_lora());
  EXPECT_EQ(config->topk_method, TopkMethod::kGreedy);
  EXPECT_EQ(config->scoring_func, ScoringFunc::kSoftmax);
  EXPECT_FALSE(config->norm_topk_prob);
  EXPECT_EQ(config->shared_intermediate_size(), 2 * 1408);
  EXPECT_DOUBLE_EQ(config->rope_scaling.mscale, 0.707);
  EXPECT_FALSE(config->quantization.fp8);
  EXPECT_EQ(config->num_nextn_predict_layers, 0);
  EXPECT_FALSE(config->is_moe_layer(0));
  EXPECT_TRUE(config->is_moe_layer(1));
}

ModelConfig moe_shape(int64_t layers, int64_t first_k_dense, int64_t freq) {
  ModelConfig c;
  c.num_hidden_layers = layers;
  c.num_nextn_predict_layers = 1;
  c.n_routed_experts = 8;
  c.first_k_dense_replace = first_k_dense;
  c.moe_layer_freq = freq;
  return c;
}

TEST(ConfigTest, MoeLayersAreTheDecoderLayersPastTheDenseOnesEveryFreq) {
  // Hugging Face: layer >= first_k_dense_replace and layer % moe_layer_freq == 0 (the
  // frequency counts from layer 0, not from the first MoE layer).
  EXPECT_EQ(moe_shape(6, 0, 1).moe_layers(), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(moe_shape(6, 2, 1).moe_layers(), (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(moe_shape(6, 0, 2).moe_layers(), (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(moe_shape(6, 1, 2).moe_layers(), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(moe_shape(7, 3, 3).moe_layers(), (std::vector<int64_t>{3, 6}));
  EXPECT_EQ(moe_shape(6, 6, 1).moe_layers(), std::vector<int64_t>{});
}

TEST(ConfigTest, MoeLayersAgreeWithIsMoeLayerAndLeaveOutTheMtpLayers) {
  for (const ModelConfig& c : {moe_shape(9, 1, 2), moe_shape(9, 3, 1), moe_shape(9, 0, 4)}) {
    std::vector<int64_t> want;
    for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
      if (c.is_moe_layer(layer)) want.push_back(layer);
    }
    EXPECT_EQ(c.moe_layers(), want);
  }
  ModelConfig with_mtp = moe_shape(4, 1, 1);
  EXPECT_TRUE(with_mtp.is_moe_layer(4));  // the MTP layer
  EXPECT_EQ(with_mtp.moe_layers(), (std::vector<int64_t>{1, 2, 3}));
}

TEST(ConfigTest, ADenseModelHasNoMoeLayers) {
  ModelConfig dense = moe_shape(4, 0, 1);
  dense.n_routed_experts = 0;
  EXPECT_TRUE(dense.moe_layers().empty());
}

TEST(ConfigTest, DeepSeekV3HasFiftyEightMoeLayersAfterThreeDense) {
  auto config = parse_config(deepseek_v3_config().dump());
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  const std::vector<int64_t> layers = config->moe_layers();
  ASSERT_EQ(layers.size(), 58u);
  EXPECT_EQ(layers.front(), 3);
  EXPECT_EQ(layers.back(), 60);
}

TEST(ConfigTest, AbsentFieldsTakeTheV3ClassDefaults) {
  auto config = parse_config(R"({"architectures": ["DeepseekV3ForCausalLM"]})");
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->model_type, "deepseek_v3");
  EXPECT_EQ(config->hidden_size, 7168);
  EXPECT_EQ(config->num_hidden_layers, 61);
  EXPECT_EQ(config->q_lora_rank, 1536);
  EXPECT_EQ(config->kv_lora_rank, 512);
  EXPECT_EQ(config->n_routed_experts, 256);
  EXPECT_EQ(config->num_key_value_heads, 128);
  EXPECT_EQ(config->topk_method, TopkMethod::kNoauxTc);
  EXPECT_EQ(config->first_k_dense_replace, 3);
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(config->rope_theta, 10000.0);
  EXPECT_FALSE(config->rope_scaling.enabled);
  EXPECT_FALSE(config->quantization.fp8);
  EXPECT_FALSE(config->tie_word_embeddings);
}

TEST(ConfigTest, AbsentFieldsTakeTheV2ClassDefaultsWhereMoeIsOff) {
  // DeepSeek-V2's configuration class defaults the MoE fields to None: a dense model,
  // and its topk_method default is spelled "gready".
  auto config = parse_config(R"({"model_type": "deepseek_v2", "intermediate_size": 64,
                                 "topk_method": "gready"})");
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->architecture, Architecture::kDeepseekV2);
  EXPECT_EQ(config->n_routed_experts, 0);
  EXPECT_FALSE(config->is_moe_layer(5));
  EXPECT_EQ(config->topk_method, TopkMethod::kGreedy);
  EXPECT_EQ(config->bos_token_id, 100000);
}

TEST(ConfigTest, RopeScalingDefaultsFollowDeepSeekYarn) {
  json c = deepseek_v3_config();
  c["rope_scaling"] = {{"type", "yarn"}, {"factor", 8}};
  auto config = parse_config(c.dump());
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 8.0);
  EXPECT_EQ(config->rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(config->rope_scaling.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(config->rope_scaling.beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(config->rope_scaling.mscale, 1.0);
  EXPECT_DOUBLE_EQ(config->rope_scaling.mscale_all_dim, 0.0);
}

TEST(ConfigTest, EosMayBeAList) {
  json c = deepseek_v3_config();
  c["eos_token_id"] = {1, 7};
  auto config = parse_config(c.dump());
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{1, 7}));
}

struct InvalidCase {
  const char* name;
  json patch;  // merged into the V3 config (a null value removes nothing: it sets null)
  const char* message;
};

class InvalidConfigTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(InvalidConfigTest, IsRejectedWithAMessageNamingTheField) {
  json c = deepseek_v3_config();
  c.merge_patch(GetParam().patch);
  auto config = parse_config(c.dump());
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, InvalidConfigTest,
    ::testing::Values(
        InvalidCase{"group",
                    {{"n_group", 3}},
                    "config.json: n_group must divide n_routed_experts (n_group 3, "
                    "n_routed_experts 256)"},
        InvalidCase{"arch",
                    {{"architectures", {"LlamaForCausalLM"}}},
                    "config.json: architectures: unsupported architecture \"LlamaForCausalLM\""},
        InvalidCase{
            "type", {{"hidden_size", "7168"}}, "config.json: hidden_size: expected an integer"},
        InvalidCase{"negative", {{"hidden_size", -1}}, "config.json: hidden_size must be positive"},
        InvalidCase{"topk",
                    {{"num_experts_per_tok", 300}},
                    "num_experts_per_tok must be between 1 and n_routed_experts"},
        InvalidCase{"topk_group", {{"topk_group", 9}}, "topk_group must be between 1 and n_group"},
        InvalidCase{"too_few_groups",
                    {{"topk_group", 1}, {"num_experts_per_tok", 40}},
                    "num_experts_per_tok must not exceed topk_group * experts per group"},
        InvalidCase{"method", {{"topk_method", "random"}}, "topk_method: unsupported value"},
        InvalidCase{"scoring", {{"scoring_func", "relu"}}, "scoring_func: unsupported value"},
        InvalidCase{"rope",
                    {{"rope_scaling", {{"type", "linear"}, {"factor", 2}}}},
                    "rope_scaling.type: unsupported rope scaling \"linear\""},
        InvalidCase{"fmt",
                    {{"quantization_config", {{"fmt", "e5m2"}}}},
                    "quantization_config.fmt: unsupported \"e5m2\""},
        InvalidCase{"block",
                    {{"quantization_config", {{"weight_block_size", {64, 64}}}}},
                    "quantization_config.weight_block_size: unsupported [64, 64]"},
        InvalidCase{"model_type",
                    {{"model_type", "deepseek_v2"}},
                    "model_type: \"deepseek_v2\" does not match DeepseekV3ForCausalLM"},
        InvalidCase{"act", {{"hidden_act", "gelu"}}, "hidden_act: unsupported \"gelu\""},
        InvalidCase{
            "rope_dim", {{"qk_rope_head_dim", 63}}, "qk_rope_head_dim must be positive and even"},
        InvalidCase{"dense",
                    {{"first_k_dense_replace", 62}},
                    "first_k_dense_replace must be between 0 and num_hidden_layers"},
        InvalidCase{
            "noaux_groups", {{"n_group", 256}, {"topk_group", 8}}, "each group needs at least 2"}),
    [](const ::testing::TestParamInfo<InvalidCase>& info) { return info.param.name; });

TEST(ConfigTest, RejectsTextThatIsNotJson) {
  auto config = parse_config("{\"architectures\": [", "x/config.json");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("x/config.json: not valid JSON"));
}

TEST(ConfigTest, RejectsConfigWithoutArchitectureOrModelType) {
  auto config = parse_config(R"({"hidden_size": 16})");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("architectures: missing"));
}

TEST(ConfigTest, LoadConfigReadsTheFolderAndNamesThePath) {
  testing::TempDir dir;
  auto missing = load_config(dir.path());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(dir.file("config.json")));

  std::ofstream(dir.file("config.json")) << deepseek_v2_lite_config().dump();
  auto config = load_config(dir.path());
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->n_routed_experts, 64);

  json bad = deepseek_v2_lite_config();
  bad["n_group"] = 5;
  bad["topk_method"] = "group_limited_greedy";
  std::ofstream(dir.file("config.json")) << bad.dump();
  auto invalid = load_config(dir.path());
  ASSERT_FALSE(invalid.ok());
  EXPECT_THAT(invalid.status().message(),
              HasSubstr(dir.file("config.json") + ": n_group must divide n_routed_experts"));
}

}  // namespace
}  // namespace moeserve::model
