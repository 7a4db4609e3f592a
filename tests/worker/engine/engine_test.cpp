#include "worker/engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "kernels/cpu/matmul.h"
#include "tests/worker/engine/tiny_engine.h"
#include "worker/engine/linear.h"

namespace moeserve::engine {
namespace {

using testing::forward_all;
using testing::make_engine;
using testing::test_prompt;

// Two f32 evaluations of the same function in different summation orders (expanded vs
// absorbed attention, batched vs alone) agree to a few float32 ulps of the O(1..10)
// logits; 1e-4 leaves ample room while any real error is O(0.1).
constexpr float kSameMathTolerance = 1e-4f;

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tolerance,
                  const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  float worst = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  EXPECT_LE(worst, tolerance) << what;
}

class EngineTest : public ::testing::TestWithParam<model::WeightPrecision> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new moeserve::testing::TempDir();
    bf16_ = testing::make_tiny_model(dir_->file("bf16"), model::Architecture::kDeepseekV3,
                                     model::WeightPrecision::kBf16, 7);
    fp8_ = testing::make_tiny_model(dir_->file("fp8"), model::Architecture::kDeepseekV3,
                                    model::WeightPrecision::kFp8, 7);
  }
  static void TearDownTestSuite() {
    bf16_.reset();
    fp8_.reset();
    delete dir_;
  }
  std::shared_ptr<const model::LoadedModel> model() const {
    return GetParam() == model::WeightPrecision::kBf16 ? bf16_ : fp8_;
  }
  int32_t vocab() const { return static_cast<int32_t>(model()->config.vocab_size); }

  static moeserve::testing::TempDir* dir_;
  static std::shared_ptr<const model::LoadedModel> bf16_, fp8_;
};
moeserve::testing::TempDir* EngineTest::dir_ = nullptr;
std::shared_ptr<const model::LoadedModel> EngineTest::bf16_;
std::shared_ptr<const model::LoadedModel> EngineTest::fp8_;

TEST_P(EngineTest, IncrementalAbsorbedDecodeEqualsFullExpandedForward) {
  ASSERT_NE(model(), nullptr);
  const auto prompt = test_prompt(33, vocab());
  auto full_engine = make_engine(model(), {.attention_path = AttentionPath::kExpanded});
  SequenceKv full_seq;
  const auto full = forward_all(*full_engine, full_seq, prompt);

  auto step_engine = make_engine(model(), {.attention_path = AttentionPath::kAbsorbed});
  SequenceKv seq;
  std::vector<float> stepped;
  for (int32_t token : prompt) {
    const auto logits = forward_all(*step_engine, seq, {token});
    stepped.insert(stepped.end(), logits.begin(), logits.end());
  }
  EXPECT_EQ(seq.length, 33);
  expect_close(full, stepped, kSameMathTolerance, "one token at a time vs whole prompt");
}

TEST_P(EngineTest, AbsorbedPrefillEqualsExpandedPrefill) {
  ASSERT_NE(model(), nullptr);
  const auto prompt = test_prompt(40, vocab(), 1);
  auto expanded = make_engine(model(), {.attention_path = AttentionPath::kExpanded});
  auto absorbed = make_engine(model(), {.attention_path = AttentionPath::kAbsorbed});
  SequenceKv a, b;
  expect_close(forward_all(*expanded, a, prompt), forward_all(*absorbed, b, prompt),
               kSameMathTolerance, "absorbed vs expanded");
}

TEST_P(EngineTest, ChunkedPrefillAcrossBlockBoundaryEqualsOneShot) {
  ASSERT_NE(model(), nullptr);
  const auto prompt = test_prompt(100, vocab(), 2);
  auto engine = make_engine(model());
  SequenceKv one;
  const auto whole = forward_all(*engine, one, prompt);
  SequenceKv chunked;
  std::vector<float> pieces;
  for (auto [from, to] : {std::pair{0, 30}, std::pair{30, 70}, std::pair{70, 100}}) {
    const auto logits = forward_all(
        *engine, chunked, std::vector<int32_t>(prompt.begin() + from, prompt.begin() + to));
    pieces.insert(pieces.end(), logits.begin(), logits.end());
  }
  expect_close(whole, pieces, kSameMathTolerance, "chunks of 30, 40, 30 tokens");
}

TEST_P(EngineTest, BatchOfSequencesEqualsEachRunAlone) {
  ASSERT_NE(model(), nullptr);
  const std::vector<std::vector<int32_t>> prompts = {
      test_prompt(5, vocab(), 3), test_prompt(17, vocab(), 4), test_prompt(9, vocab(), 5)};
  const std::vector<int32_t> next = {3, 30, 300 % vocab()};

  // Alone: prefill, then one decode step, each on its own engine.
  std::vector<std::vector<float>> alone_prefill, alone_decode;
  for (size_t s = 0; s < prompts.size(); ++s) {
    auto engine = make_engine(model());
    SequenceKv seq;
    alone_prefill.push_back(forward_all(*engine, seq, prompts[s]));
    alone_decode.push_back(forward_all(*engine, seq, {next[s]}));
  }

  auto engine = make_engine(model());
  std::vector<SequenceKv> seqs(prompts.size());
  ForwardOutput out;
  std::vector<SequenceInput> batch;
  for (size_t s = 0; s < prompts.size(); ++s) batch.push_back({&seqs[s], prompts[s], true});
  ASSERT_TRUE(engine->forward(batch, &out).ok());
  for (size_t s = 0; s < prompts.size(); ++s) {
    ASSERT_EQ(out.num_rows[s], static_cast<int64_t>(prompts[s].size()));
    std::vector<float> rows(out.row(s, 0), out.row(s, 0) + out.num_rows[s] * out.vocab_size);
    expect_close(alone_prefill[s], rows, kSameMathTolerance,
                 "prefill of sequence " + std::to_string(s));
  }

  batch.clear();
  for (size_t s = 0; s < prompts.size(); ++s) {
    batch.push_back({&seqs[s], std::span<const int32_t>(&next[s], 1), false});
  }
  ASSERT_TRUE(engine->forward(batch, &out).ok());
  for (size_t s = 0; s < prompts.size(); ++s) {
    EXPECT_EQ(seqs[s].length, static_cast<int64_t>(prompts[s].size()) + 1);
    std::vector<float> row(out.row(s), out.row(s) + out.vocab_size);
    expect_close(alone_decode[s], row, kSameMathTolerance,
                 "decode of sequence " + std::to_string(s));
  }
}

TEST_P(EngineTest, KvCacheExhaustionIsAClearErrorThatChangesNothing) {
  ASSERT_NE(model(), nullptr);
  auto engine = make_engine(model(), {.kv_cache_tokens = 64});
  SequenceKv seq;
  ForwardOutput out;
  const auto too_long = test_prompt(65, vocab());
  const Status status = engine->forward({SequenceInput{&seq, too_long}}, &out);
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(status.message().find("KV cache"), std::string::npos) << status.message();
  EXPECT_EQ(seq.length, 0);
  EXPECT_TRUE(seq.blocks.empty());
  EXPECT_EQ(engine->kv_cache().num_free_blocks(), 1);

  const auto fits = test_prompt(64, vocab());
  ASSERT_TRUE(engine->forward({SequenceInput{&seq, fits}}, &out).ok());
  const int32_t one = 1;
  EXPECT_EQ(engine->forward({SequenceInput{&seq, std::span<const int32_t>(&one, 1)}}, &out).code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(seq.length, 64);
  engine->kv_cache().release(seq);
  EXPECT_EQ(engine->kv_cache().num_free_blocks(), 1);
}

TEST_P(EngineTest, RejectsTokensOutsideTheVocabularyAndRepeatedSequences) {
  ASSERT_NE(model(), nullptr);
  auto engine = make_engine(model());
  SequenceKv seq;
  ForwardOutput out;
  const std::vector<int32_t> bad = {1, vocab()};
  const Status status = engine->forward({SequenceInput{&seq, bad}}, &out);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("outside the vocabulary"), std::string::npos);
  const std::vector<int32_t> good = {1, 2};
  EXPECT_EQ(engine->forward({SequenceInput{&seq, good}, SequenceInput{&seq, good}}, &out).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(seq.length, 0);
}

TEST_P(EngineTest, RecordsTheExpertsOfEveryMoeLayerPerToken) {
  ASSERT_NE(model(), nullptr);
  const model::ModelConfig& c = model()->config;
  auto engine = make_engine(model(), {.record_routing = true});
  SequenceKv seq;
  ForwardOutput out;
  const auto prompt = test_prompt(20, vocab(), 6);
  ASSERT_TRUE(engine->forward({SequenceInput{&seq, prompt}}, &out).ok());
  const std::vector<int64_t> moe_layers = c.moe_layers();
  ASSERT_FALSE(moe_layers.empty());
  ASSERT_EQ(out.routing.size(), moe_layers.size());
  for (size_t i = 0; i < moe_layers.size(); ++i) {
    const Routing& r = out.routing[i].routing;
    EXPECT_EQ(out.routing[i].layer, moe_layers[i]);
    ASSERT_EQ(r.tokens, 20);
    std::set<std::vector<int32_t>> distinct_choices;
    for (int64_t t = 0; t < r.tokens; ++t) {
      std::vector<int32_t> chosen(r.experts.begin() + t * r.top_k,
                                  r.experts.begin() + (t + 1) * r.top_k);
      EXPECT_EQ(std::set<int32_t>(chosen.begin(), chosen.end()).size(), chosen.size());
      std::sort(chosen.begin(), chosen.end());
      distinct_choices.insert(chosen);
    }
    EXPECT_GT(distinct_choices.size(), 1u) << "routing should differ from token to token";
  }
}

TEST_P(EngineTest, HiddenStatesAreTheLmHeadInputOfEveryNewTokenOfTheSequencesThatAsk) {
  ASSERT_NE(model(), nullptr);
  auto engine = make_engine(model());
  const auto prompt = test_prompt(9, vocab());
  const auto other = test_prompt(4, vocab());
  SequenceKv a, b;
  SequenceInput asking{&a, prompt, true};
  asking.hidden_states = true;
  ForwardOutput out;
  ASSERT_TRUE(engine->forward({SequenceInput{&b, other, false}, asking}, &out).ok());

  const int64_t hidden = model()->config.hidden_size;
  ASSERT_EQ(out.hidden_size, hidden);
  EXPECT_EQ(out.hidden_first_row, (std::vector<int64_t>{-1, 0}));
  ASSERT_EQ(out.hidden.size(), prompt.size() * hidden);
  // lm_head over the hidden rows gives the logits of every token.
  std::vector<float> logits(prompt.size() * vocab());
  kernels::matmul(to_view(model()->weights.lm_head), out.hidden_row(1, 0),
                  static_cast<int64_t>(prompt.size()), logits.data(), nullptr);
  const std::vector<float> expected(out.row(1, 0), out.row(1, 0) + logits.size());
  expect_close(logits, expected, kSameMathTolerance, "lm_head(hidden) vs logits");
}

INSTANTIATE_TEST_SUITE_P(Precisions, EngineTest,
                         ::testing::Values(model::WeightPrecision::kBf16,
                                           model::WeightPrecision::kFp8),
                         [](const auto& info) {
                           return info.param == model::WeightPrecision::kBf16 ? "Bf16" : "Fp8";
                         });

}  // namespace
}  // namespace moeserve::engine
