#include "worker/model/tiny_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"
#include "worker/model/chat_template.h"
#include "worker/model/float_formats.h"
#include "worker/model/safetensors.h"
#include "worker/model/tiny_tokenizer.h"
#include "worker/model/tokenizer.h"
#include "worker/model/weights.h"

namespace moeserve::model {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

json read_json(const std::string& path) { return json::parse(file_bytes(path)); }

TEST(FloatFormatsTest, Fp8CodesRoundTripExactly) {
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(static_cast<uint8_t>(code))));
      continue;
    }
    const float value = fp8_e4m3_to_float(static_cast<uint8_t>(code));
    EXPECT_EQ(float_to_fp8_e4m3(value), code) << code << " " << value;
  }
}

TEST(FloatFormatsTest, Fp8KnownValuesRoundingAndSaturation) {
  EXPECT_EQ(float_to_fp8_e4m3(1.0f), 0x38);
  EXPECT_EQ(fp8_e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(float_to_fp8_e4m3(1000.0f), 0x7e);               // saturates
  EXPECT_EQ(float_to_fp8_e4m3(-1000.0f), 0xfe);
  EXPECT_EQ(float_to_fp8_e4m3(1.0625f), 0x38);  // tie between 1 and 1.125: even mantissa
  EXPECT_EQ(float_to_fp8_e4m3(1.1875f), 0x3a);  // tie between 1.125 and 1.25: even
  EXPECT_EQ(float_to_fp8_e4m3(1.07f), 0x39);
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(1.5f, -10)), 0x01);  // 0.75 subnormal steps
  EXPECT_EQ(float_to_fp8_e4m3(0.0f), 0x00);
  EXPECT_EQ(float_to_fp8_e4m3(1.96f), 0x40);  // rounds up into the next binade: 2.0
}

TEST(FloatFormatsTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even (1.0).
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(float_to_bf16(-2.5f), 0xc020);
}

TEST(TinyTokenizerTest, HasDeepSeekShapeAndUsesEveryIdOnce) {
  auto tokenizer = make_tiny_tokenizer(512);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().to_string();
  const auto& tj = tokenizer->tokenizer_json;
  EXPECT_EQ(tj["model"]["type"], "BPE");
  EXPECT_EQ(tokenizer->merges, 240);
  EXPECT_EQ(tj["model"]["merges"].size(), 240u);
  const auto& steps = tj["pre_tokenizer"]["pretokenizers"];
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(steps[0]["pattern"]["Regex"], "\\p{N}{1,3}");
  EXPECT_EQ(steps[1]["pattern"]["Regex"], "[一-龥぀-ゟ゠-ヿ]+");
  EXPECT_EQ(steps[3]["type"], "ByteLevel");
  EXPECT_EQ(tj["decoder"]["type"], "ByteLevel");

  std::set<int64_t> ids;
  for (const auto& [token, id] : tj["model"]["vocab"].items())
    EXPECT_TRUE(ids.insert(id.get<int64_t>()).second);
  for (const auto& added : tj["added_tokens"])
    EXPECT_TRUE(ids.insert(added["id"].get<int64_t>()).second);
  ASSERT_EQ(ids.size(), 512u);
  EXPECT_EQ(*ids.begin(), 0);
  EXPECT_EQ(*ids.rbegin(), 511);
  EXPECT_EQ(tj["added_tokens"][0]["content"], "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(tj["added_tokens"][1]["content"], "<｜end▁of▁sentence｜>");
  // Common words of the training text became single tokens.
  for (const char* word : {"Ġthe", "Ġmodel", "Ġtoken", "Ġexperts"}) {
    EXPECT_TRUE(tj["model"]["vocab"].contains(word)) << word;
  }
  EXPECT_EQ(tokenizer->tokenizer_config_json["chat_template"], kTinyChatTemplate);
}

TEST(TinyTokenizerTest, SmallVocabularyIsFilledWithPlaceholders) {
  auto tokenizer = make_tiny_tokenizer(300);
  ASSERT_TRUE(tokenizer.ok());
  EXPECT_EQ(tokenizer->merges, 300 - 3 - 256 - 13);
  EXPECT_FALSE(make_tiny_tokenizer(100).ok());
}

class TinyModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir;
    TinyModelOptions options;
    options.precision = WeightPrecision::kFp8;
    options.seed = 3;
    ASSERT_TRUE(write_tiny_model(dir_->path(), options).ok());
  }
  static void TearDownTestSuite() { delete dir_; }
  static testing::TempDir* dir_;
};
testing::TempDir* TinyModelTest::dir_ = nullptr;

TEST_F(TinyModelTest, WritesTheHuggingFaceLayout) {
  for (const char* name :
       {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "model.safetensors.index.json", "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors"}) {
    EXPECT_TRUE(std::filesystem::exists(dir_->file(name))) << name;
  }
  const json config = read_json(dir_->file("config.json"));
  EXPECT_EQ(config["quantization_config"]["weight_block_size"], json({128, 128}));
  EXPECT_EQ(config["rope_scaling"]["type"], "yarn");
  EXPECT_EQ(read_json(dir_->file("generation_config.json"))["eos_token_id"], 1);

  auto checkpoint = SafetensorsCheckpoint::open(dir_->path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().to_string();
  const json index = read_json(dir_->file("model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], checkpoint->total_bytes());
  std::vector<std::string> indexed;
  for (const auto& [name, file] : index["weight_map"].items()) indexed.push_back(name);
  EXPECT_EQ(indexed, checkpoint->names());
  for (const char* name :
       {"model.layers.3.enorm.weight", "model.layers.3.hnorm.weight",
        "model.layers.3.eh_proj.weight", "model.layers.3.shared_head.norm.weight",
        "model.layers.3.shared_head.head.weight",
        "model.layers.3.self_attn.kv_b_proj.weight_scale_inv",
        "model.layers.3.mlp.experts.15.down_proj.weight",
        "model.layers.1.mlp.gate.e_score_correction_bias"}) {
    EXPECT_NE(checkpoint->find(name), nullptr) << name;
  }
  EXPECT_EQ(checkpoint->find("model.layers.1.mlp.gate.e_score_correction_bias")->dtype,
            DType::kF32);
  EXPECT_EQ(checkpoint->find("model.norm.weight")->dtype, DType::kBF16);
  EXPECT_EQ(checkpoint->find("model.layers.3.eh_proj.weight_scale_inv"), nullptr);
  EXPECT_EQ(checkpoint->find("lm_head.weight_scale_inv"), nullptr);
}

TEST_F(TinyModelTest, ParameterCountsMatchTheWrittenTensors) {
  auto config = load_config(dir_->path());
  auto checkpoint = SafetensorsCheckpoint::open(dir_->path());
  ASSERT_TRUE(config.ok() && checkpoint.ok());
  int64_t main = 0;
  int64_t mtp = 0;
  for (const std::string& name : checkpoint->names()) {
    if (name.ends_with("_scale_inv")) continue;
    (name.starts_with("model.layers.3.") ? mtp : main) += checkpoint->find(name)->numel();
  }
  const ParameterCounts counts = count_parameters(*config);
  EXPECT_EQ(counts.total, main);
  EXPECT_EQ(counts.mtp, mtp);
  // Active: everything but the embedding table (one row) and 12 of 16 experts in the two
  // MoE layers (3 matrices of 96 x 160 each).
  const int64_t idle_experts = 2 * 12 * 3 * 96 * 160;
  EXPECT_EQ(counts.active_per_token, main - 512 * 160 + 160 - idle_experts);
  EXPECT_LT(counts.active_bytes_fp8, counts.active_bytes_bf16);
}

TEST_F(TinyModelTest, SameSeedSameBytesOtherSeedOtherWeights) {
  testing::TempDir again;
  testing::TempDir other;
  TinyModelOptions options;
  options.precision = WeightPrecision::kFp8;
  options.seed = 3;
  ASSERT_TRUE(write_tiny_model(again.path(), options).ok());
  options.seed = 4;
  ASSERT_TRUE(write_tiny_model(other.path(), options).ok());
  for (const char* name : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                           "tokenizer.json", "config.json"}) {
    EXPECT_EQ(file_bytes(dir_->file(name)), file_bytes(again.file(name))) << name;
  }
  EXPECT_NE(file_bytes(dir_->file("model-00001-of-00002.safetensors")),
            file_bytes(other.file("model-00001-of-00002.safetensors")));
}

TEST_F(TinyModelTest, TokenizerAndChatTemplateLoadWithTheProjectTokenizer) {
  auto tokenizer = Tokenizer::load(dir_->file("tokenizer.json"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().to_string();
  EXPECT_EQ(tokenizer->vocab_size(), 512);
  const std::vector<int32_t> ids = tokenizer->encode(" the model");
  EXPECT_EQ(ids, (std::vector<int32_t>{*tokenizer->token_to_id("Ġthe"),
                                       *tokenizer->token_to_id("Ġmodel")}));
  EXPECT_EQ(tokenizer->decode(tokenizer->encode("Hello, 12345 experts!\n")),
            "Hello, 12345 experts!\n");

  const json config = read_json(dir_->file("tokenizer_config.json"));
  auto chat = ChatTemplate::from_tokenizer_config(config);
  ASSERT_TRUE(chat.ok()) << chat.status().to_string();
}

// Routing must differ from token to token: different embeddings pick different experts.
TEST_F(TinyModelTest, RouterSpreadsTokensOverExperts) {
  testing::TempDir bf16_dir;
  TinyModelOptions options;
  options.seed = 3;
  ASSERT_TRUE(write_tiny_model(bf16_dir.path(), options).ok());
  auto model = load_model(bf16_dir.path(), {.load_mtp = false, .prefault = false});
  ASSERT_TRUE(model.ok());
  const Linear& embed = model->weights.embed_tokens;
  const Moe& moe = model->weights.layers[1].moe;
  auto at = [](const Linear& w, int64_t r, int64_t c) {
    uint16_t bits;
    std::memcpy(&bits, w.data + (r * w.cols + c) * 2, 2);
    return bf16_to_float(bits);
  };
  std::set<std::vector<int>> choices;
  std::set<int> used;
  for (int64_t token = 0; token < 64; ++token) {
    std::vector<float> x(160);
    double square = 0;
    for (int64_t i = 0; i < 160; ++i) {
      x[i] = at(embed, token * 7 + 3, i);
      square += x[i] * x[i];
    }
    for (float& v : x) v /= static_cast<float>(std::sqrt(square / 160));
    std::vector<std::pair<float, int>> scores;
    for (int e = 0; e < 16; ++e) {
      double logit = 0;
      for (int64_t i = 0; i < 160; ++i) logit += at(moe.gate, e, i) * x[i];
      scores.emplace_back(
          1.0f / (1.0f + std::exp(-static_cast<float>(logit))) + moe.e_score_correction_bias[e], e);
    }
    std::partial_sort(scores.begin(), scores.begin() + 4, scores.end(), std::greater<>());
    std::vector<int> top;
    for (int k = 0; k < 4; ++k) top.push_back(scores[k].second);
    std::sort(top.begin(), top.end());
    used.insert(top.begin(), top.end());
    choices.insert(top);
  }
  EXPECT_GE(choices.size(), 32u);
  EXPECT_EQ(used.size(), 16u);
}

TEST(TinyModelFlagsTest, ParsesFlagValuesAndNamesTheFlagOnError) {
  EXPECT_EQ(*parse_architecture_flag("deepseek_v2"), Architecture::kDeepseekV2);
  EXPECT_EQ(*parse_precision_flag("fp8"), WeightPrecision::kFp8);
  EXPECT_EQ(*parse_preset_flag("bench-1b"), TinyPreset::kBench1b);
  EXPECT_THAT(parse_precision_flag("int4").status().message(), HasSubstr("--precision"));
  EXPECT_THAT(parse_architecture_flag("llama").status().message(), HasSubstr("--arch"));
}

TEST(TinyModelFlagsTest, Bench1bPresetIsAboutOneBillionParameters) {
  TinyModelOptions options;
  options.preset = TinyPreset::kBench1b;
  auto config = parse_config(tiny_model_config_json(options).dump());
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  const ParameterCounts counts = count_parameters(*config);
  EXPECT_GT(counts.total + counts.mtp, 900'000'000);
  EXPECT_LT(counts.total + counts.mtp, 1'200'000'000);
  EXPECT_LT(counts.active_per_token * 4, counts.total);  // a modest fraction is active
}

}  // namespace
}  // namespace moeserve::model
