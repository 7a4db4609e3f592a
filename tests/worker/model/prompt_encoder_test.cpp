// PromptEncoder on a generated tiny model folder: the BOS rule of tokenizer_config.json,
// the chat template from the same file, both read once at load.
#include "worker/model/prompt_encoder.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"
#include "tools/fixtures/tiny_model.h"

namespace moeserve::model {
namespace {

class PromptEncoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fixtures::write_tiny_model(dir_.path(), fixtures::TinyModelOptions{}).ok());
    auto config = load_config(dir_.path());
    ASSERT_TRUE(config.ok()) << config.status().to_string();
    config_ = *config;
    auto tokenizer = Tokenizer::load(dir_.file("tokenizer.json"));
    ASSERT_TRUE(tokenizer.ok());
    body_ = tokenizer->encode("hello world");
  }

  // Rewrites tokenizer_config.json with `edit` applied.
  void edit_tokenizer_config(const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json tc =
        nlohmann::json::parse(moeserve::testing::read_file(dir_.file("tokenizer_config.json")));
    edit(tc);
    moeserve::testing::write_file(dir_.file("tokenizer_config.json"), tc.dump());
  }

  moeserve::testing::TempDir dir_;
  ModelConfig config_;
  std::vector<int32_t> body_;  // the tokenizer's ids of "hello world"
};

TEST_F(PromptEncoderTest, AddsTheBosTokenAndKeepsEncodingAfterTheFilesAreGone) {
  auto encoder = PromptEncoder::load(dir_.path(), config_);
  ASSERT_TRUE(encoder.ok()) << encoder.status().to_string();
  std::vector<int32_t> want = {*encoder->tokenizer().token_to_id("<｜begin▁of▁sentence｜>")};
  want.insert(want.end(), body_.begin(), body_.end());
  ASSERT_TRUE(encoder->chat_template().ok()) << encoder->chat_template().status().to_string();
  std::filesystem::remove(dir_.file("tokenizer_config.json"));
  std::filesystem::remove(dir_.file("tokenizer.json"));
  EXPECT_EQ(encoder->encode("hello world"), want);
  EXPECT_EQ(encoder->bos_prefix(), std::vector<int32_t>(want.begin(), want.begin() + 1));
}

TEST_F(PromptEncoderTest, NoBosWithoutAddBosTokenOrWithoutTheFile) {
  edit_tokenizer_config([](nlohmann::json& tc) { tc["add_bos_token"] = false; });
  auto without_flag = PromptEncoder::load(dir_.path(), config_);
  ASSERT_TRUE(without_flag.ok());
  EXPECT_EQ(without_flag->encode("hello world"), body_);

  std::filesystem::remove(dir_.file("tokenizer_config.json"));
  auto without_file = PromptEncoder::load(dir_.path(), config_);
  ASSERT_TRUE(without_file.ok());
  EXPECT_EQ(without_file->encode("hello world"), body_);
  EXPECT_FALSE(without_file->chat_template().ok());
}

TEST_F(PromptEncoderTest, AnUnknownBosTokenFallsBackToTheConfigIdElseFails) {
  edit_tokenizer_config([](nlohmann::json& tc) { tc["bos_token"] = "<no such token>"; });
  config_.bos_token_id = 7;
  auto fallback = PromptEncoder::load(dir_.path(), config_);
  ASSERT_TRUE(fallback.ok());
  EXPECT_EQ(fallback->bos_prefix(), std::vector<int32_t>{7});

  config_.bos_token_id = -1;
  auto refused = PromptEncoder::load(dir_.path(), config_);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("tokenizer_config.json: add_bos_token is set"),
            std::string::npos)
      << refused.status().message();
}

TEST_F(PromptEncoderTest, AFolderWithoutATokenizerIsAFailedPrecondition) {
  std::filesystem::remove(dir_.file("tokenizer.json"));
  auto encoder = PromptEncoder::load(dir_.path(), config_);
  ASSERT_FALSE(encoder.ok());
  EXPECT_EQ(encoder.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(encoder.status().message().find("tokenizer.json is missing"), std::string::npos);
}

}  // namespace
}  // namespace moeserve::model
