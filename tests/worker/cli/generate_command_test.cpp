// `moeserve-worker generate` in process: the command line, the output formats and the
// tokens against the test oracle (a plain single-sequence loop on the engine).
#include "worker/cli/generate_command.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/worker/engine/reference_generate.h"
#include "tests/worker/engine/tiny_engine.h"
#include "worker/model/tokenizer.h"

namespace moeserve::cli {

namespace testing = engine::testing;
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
  testing::ReferenceRequest request;
  request.prompt = {5, 6, 7, 8};
  request.max_tokens = 6;
  for (int64_t eos : model_->config.eos_token_ids) {
    request.sampling.stop_token_ids.push_back(static_cast<int32_t>(eos));
  }
  const auto expected = testing::reference_generate(*engine, request);
  EXPECT_EQ(j["tokens"].get<std::vector<int32_t>>(), expected.tokens);
  const auto logits = j["logits"].get<std::vector<float>>();
  ASSERT_EQ(logits.size(), static_cast<size_t>(model_->config.vocab_size));
  for (size_t i = 0; i < logits.size(); ++i) {
    ASSERT_NEAR(logits[i], expected.prompt_logits[i], 1e-5f) << "token " << i;
  }
  ASSERT_TRUE(j.contains("text"));
  auto tokenizer = model::Tokenizer::load(dir_->file("tokenizer.json"));
  ASSERT_TRUE(tokenizer.ok());
  EXPECT_EQ(j["text"].get<std::string>(), tokenizer->decode(expected.tokens, true));
}

TEST_F(GenerateCommandTest, ABatchPrintsOneObjectPerPromptInOrderAndZeroTokensKeepsTheLogits) {
  ASSERT_NE(model_, nullptr);
  moeserve::testing::TempDir dir;
  moeserve::testing::write_file(dir.file("batch.txt"), "5,6,7\n\n9\n");
  const CommandResult r =
      run_command({"--model", dir_->path(), "--batch-file", dir.file("batch.txt"), "--max-tokens",
                   "0", "--json", "--logits"});
  ASSERT_EQ(r.code, 0) << r.out;
  std::vector<nlohmann::json> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["prompt_ids"].get<std::vector<int32_t>>(), (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(lines[1]["prompt_ids"].get<std::vector<int32_t>>(), (std::vector<int32_t>{9}));
  auto engine = testing::make_engine(model_);
  const auto expected = testing::reference_generate(*engine, {.prompt = {9}, .max_tokens = 1});
  for (const nlohmann::json& line : lines) EXPECT_TRUE(line["tokens"].empty());
  const auto logits = lines[1]["logits"].get<std::vector<float>>();
  ASSERT_EQ(logits.size(), expected.prompt_logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    ASSERT_NEAR(logits[i], expected.prompt_logits[i], 1e-4f) << "token " << i;
  }
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

TEST_F(GenerateCommandTest, NgramAndMtpSpeculationGiveTheSameBatchAsPlainDecoding) {
  ASSERT_NE(model_, nullptr);
  moeserve::testing::TempDir dir;
  moeserve::testing::write_file(dir.file("batch.txt"), "5,6,7,5,6\n9,9,9\n1,2,3,4\n");
  const std::vector<std::string> base = {
      "--model",      dir_->path(), "--batch-file", dir.file("batch.txt"),
      "--max-tokens", "24",         "--ignore-eos", "--json"};
  const CommandResult plain = run_command(base);
  ASSERT_EQ(plain.code, 0) << plain.out;
  // ngram, and mtp over the checkpoint's (random) MTP module: drafts mostly rejected.
  for (const auto& [method, k] : std::vector<std::pair<std::string, std::string>>{
           {"ngram", "1"}, {"ngram", "3"}, {"mtp", "1"}, {"mtp", "2"}}) {
    std::vector<std::string> args = base;
    args.insert(args.end(), {"--speculative", method, "--num-draft-tokens", k});
    const CommandResult spec = run_command(args);
    ASSERT_EQ(spec.code, 0) << spec.out;
    EXPECT_EQ(spec.out, plain.out) << method << " k " << k;
  }
}

TEST(GenerateCommandMtpTest, MtpOnAModelWithoutAnMtpModuleIsRefused) {
  moeserve::testing::TempDir dir;
  ASSERT_NE(
      testing::make_tiny_model(dir.path(), {.architecture = model::Architecture::kDeepseekV2}),
      nullptr);
  EXPECT_EQ(
      run_command({"--model", dir.path(), "--prompt-ids", "1,2", "--speculative", "mtp"}).code, 1);
}

TEST_F(GenerateCommandTest, BadFlagsFailWithoutGenerating) {
  EXPECT_EQ(run_command({"--prompt-ids", "1"}).code, 1);  // no --model
  EXPECT_EQ(run_command({"--model", dir_->path(), "--prompt", "a", "--prompt-ids", "1"}).code, 1);
  EXPECT_EQ(run_command({"--model", dir_->path(), "--prompt-ids", "1", "--top-p", "0"}).code, 1);
  EXPECT_EQ(run_command({"--model", dir_->path(), "--prompt-ids", "1,x"}).code, 1);
  EXPECT_EQ(run_command({"--model", dir_->path(), "--prompt-ids", "100000"}).code, 1);
  EXPECT_EQ(
      run_command({"--model", dir_->path(), "--prompt-ids", "1", "--speculative", "eagle"}).code,
      1);
  EXPECT_EQ(
      run_command({"--model", dir_->path(), "--prompt-ids", "1", "--num-draft-tokens", "0"}).code,
      1);
  EXPECT_EQ(run_command({"--bogus"}).code, 2);
}

}  // namespace
}  // namespace moeserve::cli
