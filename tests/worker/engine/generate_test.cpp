#include "worker/engine/generate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/worker/engine/tiny_engine.h"
#include "worker/model/tokenizer.h"

namespace moeserve::engine {
namespace {

struct CommandResult {
  int code = 0;
  std::string out;
};

CommandResult run_command(const std::vector<std::string>& args) {
  ::testing::internal::CaptureStdout();
  const int code = run_generate_command(args);
  return {code, ::testing::internal::GetCapturedStdout()};
}

class GenerateCommandTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new moeserve::testing::TempDir();
    model_ = testing::make_tiny_model(dir_->path(), model::Architecture::kDeepseekV3,
                                      model::WeightPrecision::kBf16, 21);
  }
  static void TearDownTestSuite() {
    model_.reset();
    delete dir_;
  }
  static moeserve::testing::TempDir* dir_;
  static std::shared_ptr<const model::LoadedModel> model_;
};
moeserve::testing::TempDir* GenerateCommandTest::dir_ = nullptr;
std::shared_ptr<const model::LoadedModel> GenerateCommandTest::model_;

TEST_F(GenerateCommandTest, PromptIdsJsonCarriesTokensTextAndTheLastPromptLogits) {
  ASSERT_NE(model_, nullptr);
  const CommandResult r =
      run_command({"--model", dir_->path(), "--prompt-ids", "5,6,7,8", "--max-tokens", "6",
                   "--threads", "2", "--json", "--logits"});
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt_ids"].get<std::vector<int32_t>>(), (std::vector<int32_t>{5, 6, 7, 8}));

  // The same request through the library: greedy is deterministic.
  auto engine = testing::make_engine(model_);
  GenerateRequest request;
  request.prompt = {5, 6, 7, 8};
  request.max_tokens = 6;
  request.keep_prompt_logits = true;
  for (int64_t eos : model_->config.eos_token_ids) {
    request.sampling.stop_token_ids.push_back(static_cast<int32_t>(eos));
  }
  auto expected = generate(*engine, request);
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(j["tokens"].get<std::vector<int32_t>>(), expected->tokens);
  const auto logits = j["logits"].get<std::vector<float>>();
  ASSERT_EQ(logits.size(), static_cast<size_t>(model_->config.vocab_size));
  for (size_t i = 0; i < logits.size(); ++i) {
    ASSERT_NEAR(logits[i], expected->prompt_logits[i], 1e-5f) << "token " << i;
  }
  ASSERT_TRUE(j.contains("text"));
  auto tokenizer = model::Tokenizer::load(dir_->file("tokenizer.json"));
  ASSERT_TRUE(tokenizer.ok());
  EXPECT_EQ(j["text"].get<std::string>(), tokenizer->decode(expected->tokens, true));
}

TEST_F(GenerateCommandTest, TextPromptIsEncodedWithBosFirst) {
  ASSERT_NE(model_, nullptr);
  const CommandResult r = run_command(
      {"--model", dir_->path(), "--prompt", "hello world", "--max-tokens", "2", "--json"});
  ASSERT_EQ(r.code, 0) << r.out;
  const auto ids = nlohmann::json::parse(r.out)["prompt_ids"].get<std::vector<int32_t>>();
  auto tokenizer = model::Tokenizer::load(dir_->file("tokenizer.json"));
  ASSERT_TRUE(tokenizer.ok());
  std::vector<int32_t> expected = {static_cast<int32_t>(model_->config.bos_token_id)};
  for (int32_t id : tokenizer->encode("hello world")) expected.push_back(id);
  EXPECT_EQ(ids, expected);
}

TEST_F(GenerateCommandTest, PromptIdsWorkWithoutATokenizerAndOmitText) {
  ASSERT_NE(model_, nullptr);
  moeserve::testing::TempDir copy;
  for (const auto& entry : std::filesystem::directory_iterator(dir_->path())) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("tokenizer", 0) == 0) continue;
    std::filesystem::copy(entry.path(), copy.file(name));
  }
  const CommandResult r =
      run_command({"--model", copy.path(), "--prompt-ids", "9,10", "--max-tokens", "3", "--json"});
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_FALSE(j.contains("text"));
  EXPECT_FALSE(j["tokens"].empty());

  EXPECT_EQ(run_command({"--model", copy.path(), "--prompt", "hi"}).code, 1);
}

TEST_F(GenerateCommandTest, BadFlagsFailWithoutGenerating) {
  EXPECT_EQ(run_command({"--prompt-ids", "1"}).code, 1);  // no --model
  EXPECT_EQ(run_command({"--model", dir_->path(), "--prompt", "a", "--prompt-ids", "1"}).code, 1);
  EXPECT_EQ(run_command({"--model", dir_->path(), "--prompt-ids", "1", "--top-p", "0"}).code, 1);
  EXPECT_EQ(run_command({"--model", dir_->path(), "--prompt-ids", "1,x"}).code, 1);
  EXPECT_EQ(run_command({"--model", dir_->path(), "--prompt-ids", "100000"}).code, 1);
  EXPECT_EQ(run_command({"--bogus"}).code, 2);
}

TEST(GenerateTest, SeededSamplingIsReproducibleAndStopsAtStopTokens) {
  moeserve::testing::TempDir dir;
  auto model = testing::make_tiny_model(dir.path(), model::Architecture::kDeepseekV3,
                                        model::WeightPrecision::kFp8, 4);
  ASSERT_NE(model, nullptr);
  auto engine = testing::make_engine(model);
  GenerateRequest request;
  request.prompt = {3, 4, 5};
  request.max_tokens = 12;
  request.sampling.temperature = 1.0;
  request.sampling.seed = 77;
  auto a = generate(*engine, request);
  auto b = generate(*engine, request);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->tokens, b->tokens);
  EXPECT_EQ(a->tokens.size(), 12u);
  EXPECT_EQ(engine->kv_cache().num_free_blocks(), engine->kv_cache().num_blocks());

  request.sampling.stop_token_ids = {a->tokens[4]};
  auto stopped = generate(*engine, request);
  ASSERT_TRUE(stopped.ok());
  EXPECT_TRUE(stopped->stopped);
  const auto first_stop = std::find(a->tokens.begin(), a->tokens.end(), a->tokens[4]);
  EXPECT_EQ(stopped->tokens, std::vector<int32_t>(a->tokens.begin(), first_stop + 1));
}

}  // namespace
}  // namespace moeserve::engine
