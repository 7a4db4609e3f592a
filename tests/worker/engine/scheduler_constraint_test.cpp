// Constrained decoding through the Scheduler on a tiny random model: its logits know
// nothing of JSON, so only the mask makes the output valid. Outputs that stop are
// sentences of the grammar, EOS comes only once they are, max_tokens cuts a prefix, and
// speculative decoding verifies drafts under the same mask.
#include <gtest/gtest.h>

#include <memory>

#include "tests/worker/engine/tiny_engine.h"
#include "worker/engine/ngram_drafter.h"
#include "worker/engine/scheduler.h"
#include "worker/model/tokenizer.h"
#include "worker/structured/json_schema.h"

namespace moeserve::engine {
namespace {

using namespace std::chrono_literals;
using structured::Grammar;
using structured::TokenConstraint;

struct Output {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kNone;
};

class SchedulerConstraintTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new moeserve::testing::TempDir();
    model_ = new std::shared_ptr<const model::LoadedModel>(testing::make_tiny_model(
        dir_->path(), model::Architecture::kDeepseekV3, model::WeightPrecision::kBf16, 3));
    auto tokenizer = model::Tokenizer::load(dir_->file("tokenizer.json"));
    ASSERT_TRUE(tokenizer.ok());
    tokenizer_ = new model::Tokenizer(*tokenizer);
    std::vector<std::string> bytes;
    std::vector<bool> excluded;
    for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id) {
      bytes.push_back(tokenizer_->token_bytes(id));
      excluded.push_back(tokenizer_->is_special(id));
    }
    vocabulary_ = new std::shared_ptr<const structured::TokenVocabulary>(
        std::make_shared<structured::TokenVocabulary>(bytes, excluded));
  }
  static void TearDownTestSuite() {
    delete vocabulary_;
    delete tokenizer_;
    delete model_;
    delete dir_;
  }

  static std::shared_ptr<TokenConstraint> constraint(const char* schema) {
    StatusOr<Grammar> g = structured::compile_json_schema(nlohmann::ordered_json::parse(schema));
    EXPECT_TRUE(g.ok()) << g.status().to_string();
    return std::make_shared<TokenConstraint>(std::move(g).value(), *vocabulary_);
  }

  static std::unique_ptr<Scheduler> scheduler(std::shared_ptr<Drafter> drafter = nullptr) {
    SchedulerOptions options;
    options.drafter = std::move(drafter);
    auto s = std::make_unique<Scheduler>(testing::make_engine(*model_), options);
    s->start();
    return s;
  }

  static std::vector<Output> run(Scheduler& s, GenerationRequest request) {
    auto stream = s.submit(std::move(request));
    EXPECT_TRUE(stream.ok()) << stream.status().to_string();
    std::vector<Output> out(stream.ok() ? (*stream)->n() : 0);
    while (stream.ok() && !(*stream)->done()) {
      for (const GenerationEvent& e : (*stream)->next(100ms)) {
        if (e.has_token) out[e.choice].tokens.push_back(e.sample.token);
        if (e.finish != FinishReason::kNone) out[e.choice].finish = e.finish;
        EXPECT_TRUE(e.error.ok()) << e.error.to_string();
      }
    }
    return out;
  }

  // The output's text without a final stop token.
  static std::string text(const Output& o) {
    std::vector<int32_t> ids = o.tokens;
    if (o.finish == FinishReason::kStop && !ids.empty()) ids.pop_back();
    std::string bytes;
    for (int32_t id : ids) bytes += tokenizer_->token_bytes(id);
    return bytes;
  }

  static GenerationRequest request(std::shared_ptr<TokenConstraint> c, int64_t max_tokens,
                                   double temperature, int32_t n = 1) {
    GenerationRequest r;
    r.prompt = tokenizer_->encode("Give me JSON:");
    r.max_tokens = max_tokens;
    r.n = n;
    r.sampling.temperature = temperature;
    r.sampling.seed = 17;
    r.sampling.stop_token_ids = {1};  // <｜end▁of▁sentence｜>
    r.constraint = std::move(c);
    return r;
  }

  static moeserve::testing::TempDir* dir_;
  static std::shared_ptr<const model::LoadedModel>* model_;
  static model::Tokenizer* tokenizer_;
  static std::shared_ptr<const structured::TokenVocabulary>* vocabulary_;
};
moeserve::testing::TempDir* SchedulerConstraintTest::dir_ = nullptr;
std::shared_ptr<const model::LoadedModel>* SchedulerConstraintTest::model_ = nullptr;
model::Tokenizer* SchedulerConstraintTest::tokenizer_ = nullptr;
std::shared_ptr<const structured::TokenVocabulary>* SchedulerConstraintTest::vocabulary_ = nullptr;

constexpr const char* kPerson =
    R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
        "ok":{"type":"boolean"}},"required":["name","age","ok"],"additionalProperties":false})";

TEST_F(SchedulerConstraintTest, RandomSamplingFollowsTheSchemaUntilEos) {
  auto c = constraint(kPerson);
  auto s = scheduler();
  GenerationRequest r = request(c, 400, /*temperature=*/1.0, /*n=*/4);
  r.sampling.logit_bias = {{1, 8.0f}};  // EOS likely as soon as it is allowed
  for (const Output& o : run(*s, r)) {
    const std::string t = text(o);
    if (o.finish == FinishReason::kStop) {
      EXPECT_TRUE(c->grammar().matches(t)) << t;
      EXPECT_EQ(o.tokens.back(), 1);
      const nlohmann::json parsed = nlohmann::json::parse(t, nullptr, false);
      ASSERT_TRUE(parsed.is_object()) << t;
      EXPECT_TRUE(parsed["name"].is_string() && parsed["age"].is_number_integer() &&
                  parsed["ok"].is_boolean())
          << t;
    } else {
      EXPECT_EQ(o.finish, FinishReason::kLength);
      EXPECT_TRUE(c->grammar().is_prefix(t)) << t;
    }
  }
}

TEST_F(SchedulerConstraintTest, EosComesOnlyOnceTheOutputIsComplete) {
  auto c = constraint(R"({"type":"array","items":{"type":"integer"}})");
  auto s = scheduler();
  GenerationRequest r = request(c, 200, 1.0, 3);
  r.sampling.logit_bias = {{1, 100.0f}};  // EOS wins wherever it is allowed
  for (const Output& o : run(*s, r)) {
    ASSERT_EQ(o.finish, FinishReason::kStop);
    const std::string t = text(o);
    EXPECT_TRUE(c->grammar().matches(t)) << t;
    EXPECT_EQ(std::count(o.tokens.begin(), o.tokens.end(), 1), 1);
  }
}

TEST_F(SchedulerConstraintTest, MaxTokensCutsAPrefixWithFinishLength) {
  auto c = constraint(R"({"const":"abcdefghijklmnopqrstuvwxyz abcdefghijklmnopqrstuvwxyz"})");
  auto s = scheduler();
  const std::vector<Output> out = run(*s, request(c, 4, 0.0));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].finish, FinishReason::kLength);
  EXPECT_EQ(out[0].tokens.size(), 4u);
  const std::string t = text(out[0]);
  EXPECT_TRUE(c->grammar().is_prefix(t) && !c->grammar().matches(t)) << t;
  // Given the room, the constant comes out whole.
  const std::vector<Output> whole = run(*s, request(c, 100, 0.0));
  EXPECT_EQ(whole[0].finish, FinishReason::kStop);
  EXPECT_TRUE(c->grammar().matches(text(whole[0]))) << text(whole[0]);
}

TEST_F(SchedulerConstraintTest, DraftsAreVerifiedUnderTheMask) {
  auto c = constraint(kPerson);
  auto plain = scheduler();
  auto speculative = scheduler(std::make_shared<NgramDrafter>());
  // Greedy: the same tokens with and without drafts.
  const std::vector<Output> a = run(*plain, request(c, 120, 0.0));
  const std::vector<Output> b = run(*speculative, request(c, 120, 0.0));
  EXPECT_EQ(a[0].tokens, b[0].tokens);
  EXPECT_TRUE(c->grammar().is_prefix(text(b[0])));
  // Random: still inside the grammar.
  for (const Output& o : run(*speculative, request(c, 300, 1.0, 3))) {
    if (o.finish == FinishReason::kStop) {
      EXPECT_TRUE(c->grammar().matches(text(o))) << text(o);
    } else {
      EXPECT_TRUE(c->grammar().is_prefix(text(o))) << text(o);
    }
  }
  EXPECT_GT(speculative->stats().spec_draft_tokens_total, 0);
}

TEST_F(SchedulerConstraintTest, ConstraintsNeedStopTokensAndNoMinTokens) {
  auto s = scheduler();
  GenerationRequest r = request(constraint(kPerson), 10, 1.0);
  r.sampling.stop_token_ids.clear();
  EXPECT_EQ(s->submit(r).status().code(), StatusCode::kInvalidArgument);
  r = request(constraint(kPerson), 10, 1.0);
  r.sampling.min_tokens = 2;
  EXPECT_EQ(s->submit(r).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moeserve::engine
