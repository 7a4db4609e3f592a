// The MTP module and MtpDrafter on generated tiny models: drafts of a module built to
// agree with the main model (fixtures' mtp_agreement) equal the main model's next tokens,
// a random module's almost never do; the controlled acceptance lands near the asked
// fraction; chained drafts and batching do not change the first draft; the MTP KV
// truncation then re-run equals a run that never went past; joining past position 0;
// sampled drafts; the refusals.
#include "worker/engine/mtp_drafter.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tests/support/test_util.h"
#include "tests/worker/engine/drafter_trace.h"
#include "tests/worker/engine/tiny_engine.h"
#include "worker/engine/sampler.h"

namespace moeserve::engine {
namespace {

std::vector<std::vector<int32_t>> prompts(int n, int32_t vocab) {
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < n; ++i) out.push_back(testing::test_prompt(7 + 3 * i, vocab, 20 + i));
  return out;
}

struct Built {
  moeserve::testing::TempDir dir;
  std::shared_ptr<const model::LoadedModel> model;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<MtpDrafter> drafter;
};

std::unique_ptr<Built> build(const fixtures::TinyModelOptions& options) {
  auto b = std::make_unique<Built>();
  b->model = testing::make_tiny_model(b->dir.path(), options, /*load_mtp=*/true);
  if (b->model == nullptr) return nullptr;
  b->engine = testing::make_engine(b->model);
  auto drafter = MtpDrafter::create(b->engine.get());
  EXPECT_TRUE(drafter.ok()) << drafter.status().to_string();
  if (!drafter.ok()) return nullptr;
  b->drafter = std::move(drafter).value();
  return b;
}

class MtpAgreement : public ::testing::TestWithParam<model::WeightPrecision> {};

TEST_P(MtpAgreement, AgreeingModuleDraftsTheMainModelsNextTokens) {
  auto b = build({.precision = GetParam(), .seed = 3, .mtp_agreement = 1.0});
  ASSERT_NE(b, nullptr);
  const auto traces = testing::decode_with_drafter(*b->engine, *b->drafter, prompts(4, 512), 40, 1);
  const testing::Acceptance a = testing::acceptance(traces);
  EXPECT_GE(a.drafted, 150);
  EXPECT_GE(a.rate(), 0.95) << a.accepted << " of " << a.drafted;
  RecordProperty("acceptance", std::to_string(a.rate()));
  EXPECT_EQ(b->drafter->num_sequences(), 0u);
  EXPECT_EQ(b->engine->mtp_kv_cache().num_free_blocks(), b->engine->mtp_kv_cache().num_blocks());
}

TEST_P(MtpAgreement, ChainedDraftsOfTheAgreeingModuleAgreeToo) {
  auto b = build({.precision = GetParam(), .seed = 3, .mtp_agreement = 1.0});
  ASSERT_NE(b, nullptr);
  const testing::Acceptance a = testing::acceptance(
      testing::decode_with_drafter(*b->engine, *b->drafter, prompts(3, 512), 30, 3));
  EXPECT_GE(a.drafted, 200);
  EXPECT_GE(a.rate(), 0.9) << a.accepted << " of " << a.drafted;
}

TEST_P(MtpAgreement, RandomModuleAlmostNeverAgrees) {
  auto b = build({.precision = GetParam(), .seed = 3});
  ASSERT_NE(b, nullptr);
  const testing::Acceptance a = testing::acceptance(
      testing::decode_with_drafter(*b->engine, *b->drafter, prompts(4, 512), 40, 1));
  EXPECT_GE(a.drafted, 150);
  EXPECT_LE(a.rate(), 0.05) << a.accepted << " of " << a.drafted;
}

TEST_P(MtpAgreement, ZeroAgreementNeverAgrees) {
  auto b = build({.precision = GetParam(), .seed = 3, .mtp_agreement = 0.0});
  ASSERT_NE(b, nullptr);
  const testing::Acceptance a = testing::acceptance(
      testing::decode_with_drafter(*b->engine, *b->drafter, prompts(4, 512), 40, 1));
  EXPECT_LE(a.rate(), 0.05) << a.accepted << " of " << a.drafted;
}

INSTANTIATE_TEST_SUITE_P(Precisions, MtpAgreement,
                         ::testing::Values(model::WeightPrecision::kBf16,
                                           model::WeightPrecision::kFp8),
                         [](const auto& info) {
                           return info.param == model::WeightPrecision::kBf16 ? "Bf16" : "Fp8";
                         });

// Over many prompts the acceptance of a half-agreeing module is near one half (the
// tokens a greedy generation visits are few, so the band is wide).
TEST(MtpDrafter, HalfAgreementAcceptsAboutHalf) {
  auto b = build({.seed = 3, .mtp_agreement = 0.5});
  ASSERT_NE(b, nullptr);
  const testing::Acceptance a = testing::acceptance(
      testing::decode_with_drafter(*b->engine, *b->drafter, prompts(12, 512), 24, 1));
  EXPECT_GE(a.rate(), 0.3) << a.accepted << " of " << a.drafted;
  EXPECT_LE(a.rate(), 0.7) << a.accepted << " of " << a.drafted;
}

// Chaining writes speculative MTP positions that the next step truncates; batching
// runs every sequence in one MTP forward. Neither may change draft 1.
TEST(MtpDrafter, FirstDraftIsTheSameWithChainingAndBatching) {
  auto b = build({.precision = model::WeightPrecision::kFp8, .seed = 5});
  ASSERT_NE(b, nullptr);
  const auto ps = prompts(3, 512);
  const auto single = testing::decode_with_drafter(*b->engine, *b->drafter, {ps[1]}, 20, 1);
  const auto chained = testing::decode_with_drafter(*b->engine, *b->drafter, ps, 20, 3);
  ASSERT_EQ(single[0].drafts.size(), chained[1].drafts.size());
  for (size_t s = 0; s < single[0].drafts.size(); ++s) {
    ASSERT_EQ(single[0].drafts[s].size(), 1u);
    ASSERT_EQ(chained[1].drafts[s].size(), 3u) << "step " << s;
    EXPECT_EQ(chained[1].drafts[s][0], single[0].drafts[s][0]) << "step " << s;
  }
}

// Engine level: write MTP positions [0, n) and two speculative ones, truncate back to n,
// run position n: its logits equal those of a sequence that never went past n.
TEST(MtpForward, TruncatedThenRerunEqualsARunThatNeverWentPast) {
  auto b = build({.seed = 6});
  ASSERT_NE(b, nullptr);
  Engine& engine = *b->engine;
  const int64_t hidden = engine.config().hidden_size;
  const auto prompt = testing::test_prompt(70, 512, 3);  // crosses a 64-token block
  SequenceKv main_kv;
  ForwardOutput main_out;
  ASSERT_TRUE(engine
                  .forward({SequenceInput{.kv = &main_kv, .tokens = prompt, .hidden_states = true}},
                           &main_out)
                  .ok());
  const std::vector<float> h = main_out.hidden;
  const std::vector<int32_t> next(prompt.begin() + 1, prompt.end());
  const int64_t n = 62;  // positions [0, n) committed; n, n + 1 speculative, then n again

  auto run = [&](SequenceKv& kv, int64_t from, std::span<const int32_t> tokens,
                 const float* hidden_rows) {
    ForwardOutput out;
    const Status status = engine.mtp_forward(
        {MtpInput{.kv = &kv, .tokens = tokens, .hidden = hidden_rows, .all_logits = true}}, &out);
    EXPECT_TRUE(status.ok()) << status.to_string();
    EXPECT_EQ(kv.length, from + static_cast<int64_t>(tokens.size()));
    return out.logits;
  };
  const std::span<const int32_t> all(next);
  SequenceKv straight;
  run(straight, 0, all.first(n), h.data());
  const std::vector<float> want = run(straight, n, all.subspan(n, 1), h.data() + n * hidden);

  SequenceKv rolled;
  run(rolled, 0, all.first(n), h.data());
  const std::vector<int32_t> wrong = {5, 9};
  const std::vector<float> junk(2 * hidden, 0.25f);
  run(rolled, n, wrong, junk.data());
  rolled.length = n;
  const std::vector<float> got = run(rolled, n, all.subspan(n, 1), h.data() + n * hidden);
  EXPECT_EQ(got, want);
  engine.mtp_kv_cache().release(straight);
  engine.mtp_kv_cache().release(rolled);
  engine.kv_cache().release(main_kv);
}

TEST(MtpForward, AModelWithoutMtpIsRefusedClearly) {
  moeserve::testing::TempDir v2_dir, unloaded_dir;
  auto v2 =
      testing::make_tiny_model(v2_dir.path(), {.architecture = model::Architecture::kDeepseekV2},
                               /*load_mtp=*/true);
  auto unloaded = testing::make_tiny_model(unloaded_dir.path(), {}, /*load_mtp=*/false);
  ASSERT_NE(v2, nullptr);
  ASSERT_NE(unloaded, nullptr);
  auto v2_engine = testing::make_engine(v2);
  auto unloaded_engine = testing::make_engine(unloaded);
  EXPECT_FALSE(v2_engine->has_mtp());
  auto refused = MtpDrafter::create(v2_engine.get());
  ASSERT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("num_nextn_predict_layers is 0"), std::string::npos)
      << refused.status().to_string();
  auto not_loaded = MtpDrafter::create(unloaded_engine.get());
  ASSERT_EQ(not_loaded.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(not_loaded.status().message().find("loaded without its MTP layers"), std::string::npos);
  SequenceKv kv;
  const std::vector<int32_t> tokens = {1};
  const std::vector<float> h(v2->config.hidden_size, 0.0f);
  ForwardOutput out;
  EXPECT_EQ(
      v2_engine->mtp_forward({MtpInput{.kv = &kv, .tokens = tokens, .hidden = h.data()}}, &out)
          .code(),
      StatusCode::kFailedPrecondition);
}

TEST(MtpDrafter, RefusesHiddenStatesThatSkipPositions) {
  auto b = build({.seed = 2});
  ASSERT_NE(b, nullptr);
  const int64_t hidden = b->engine->config().hidden_size;
  const std::vector<int32_t> tokens = {3, 4, 5, 6, 7};
  const std::vector<float> h(4 * hidden, 0.5f);
  std::vector<Draft> drafts;
  const DraftInput first{.sequence = 1, .tokens = tokens, .committed = 2, .hidden = h.data()};
  ASSERT_TRUE(b->drafter->step({&first, 1}, &drafts).ok());
  // Positions [2, 4) were never given: hidden states from 3 do not follow on.
  const DraftInput gap{
      .sequence = 1, .tokens = tokens, .committed = 4, .hidden_from = 3, .hidden = h.data()};
  const Status status = b->drafter->step({&gap, 1}, &drafts);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("start at position 3"), std::string::npos) << status.to_string();
}

// A sequence first seen past position 0 (a prefix-cache hit) has no hidden states for
// its prefix: the agreeing module, which reads only the embedding half, drafts as well as
// for a sequence seen from the start.
TEST(MtpDrafter, ASequenceJoiningMidwayStillDrafts) {
  auto b = build({.seed = 2, .mtp_agreement = 1.0});
  ASSERT_NE(b, nullptr);
  Engine& engine = *b->engine;
  const int32_t vocab = static_cast<int32_t>(engine.config().vocab_size);
  const SamplingParams greedy;
  std::vector<int32_t> tokens = testing::test_prompt(20, vocab, 9);
  SequenceKv kv;
  ForwardOutput out;
  const std::span<const int32_t> prefix(tokens.data(), 12);
  ASSERT_TRUE(engine.forward({SequenceInput{.kv = &kv, .tokens = prefix}}, &out).ok());
  int64_t from = kv.length;
  std::vector<int32_t> step(tokens.begin() + 12, tokens.end());
  int64_t agreed = 0, drafted = 0;
  int32_t last_draft = -1;
  for (int s = 0; s < 30; ++s) {
    ASSERT_TRUE(
        engine.forward({SequenceInput{.kv = &kv, .tokens = step, .hidden_states = true}}, &out)
            .ok());
    tokens.push_back(argmax(out.row(0), vocab));
    if (last_draft >= 0) agreed += last_draft == tokens.back();
    const DraftInput in{.sequence = 7,
                        .tokens = tokens,
                        .committed = kv.length,
                        .hidden_from = from,
                        .hidden = out.hidden_row(0, 0),
                        .max_draft = 1,
                        .sampling = &greedy};
    std::vector<Draft> drafts;
    ASSERT_TRUE(b->drafter->step({&in, 1}, &drafts).ok());
    ASSERT_EQ(drafts[0].tokens.size(), 1u) << "step " << s;
    last_draft = drafts[0].tokens[0];
    drafted += s > 0;
    from = kv.length;
    step = {tokens.back()};
  }
  EXPECT_GE(agreed, drafted * 95 / 100) << agreed << " of " << drafted;
  b->drafter->release(7);
  engine.kv_cache().release(kv);
  EXPECT_EQ(engine.mtp_kv_cache().num_free_blocks(), engine.mtp_kv_cache().num_blocks());
}

// Steps that draft nothing run nothing; the rows they leave waiting are caught up, in
// one batched forward, with the next draft, which equals a drafter that caught up every
// step.
TEST(MtpDrafter, CatchUpWaitsForTheNextDraft) {
  auto b = build({.seed = 5});
  ASSERT_NE(b, nullptr);
  Engine& engine = *b->engine;
  int forwards = 0;
  auto lazy = MtpDrafter::create(&engine, [&forwards] {
    ++forwards;
    return ok_status();
  });
  ASSERT_TRUE(lazy.ok());
  const int32_t vocab = static_cast<int32_t>(engine.config().vocab_size);
  const SamplingParams greedy;
  std::vector<int32_t> tokens = testing::test_prompt(9, vocab, 6);
  SequenceKv kv;
  ForwardOutput out;
  std::vector<int32_t> step = tokens;
  for (int s = 0; s < 12; ++s) {
    const int64_t from = kv.length;
    ASSERT_TRUE(
        engine.forward({SequenceInput{.kv = &kv, .tokens = step, .hidden_states = true}}, &out)
            .ok());
    tokens.push_back(argmax(out.row(0), vocab));
    const bool draft_now = s % 4 == 3;
    const DraftInput lazy_in{.sequence = 1,
                             .tokens = tokens,
                             .committed = kv.length,
                             .hidden_from = from,
                             .hidden = out.hidden_row(0, 0),
                             .max_draft = draft_now ? 2 : 0,
                             .sampling = &greedy};
    DraftInput eager_in = lazy_in;
    eager_in.sequence = 2;
    eager_in.max_draft = 2;
    std::vector<Draft> lazy_drafts, eager_drafts;
    const int before = forwards;
    ASSERT_TRUE((*lazy)->step({&lazy_in, 1}, &lazy_drafts).ok());
    ASSERT_TRUE(b->drafter->step({&eager_in, 1}, &eager_drafts).ok());
    if (draft_now) {
      EXPECT_EQ(forwards - before, 2) << "step " << s;  // catch-up + draft 1, then draft 2
      EXPECT_EQ(lazy_drafts[0].tokens, eager_drafts[0].tokens) << "step " << s;
    } else {
      EXPECT_EQ(forwards, before) << "step " << s;
      EXPECT_TRUE(lazy_drafts[0].tokens.empty());
    }
    step = {tokens.back()};
  }
  (*lazy)->release(1);
  b->drafter->release(2);
  engine.kv_cache().release(kv);
}

// Temperature > 0: each draft carries its q, the MTP logits through the request's
// sampling (here top-k 3: q has at most 3 tokens, the draft among them), drawn with the
// request's Rng (the same seed gives the same drafts).
TEST(MtpDrafter, SampledDraftsCarryTheirDistribution) {
  auto b = build({.seed = 4});
  ASSERT_NE(b, nullptr);
  const int64_t hidden = b->engine->config().hidden_size;
  const std::vector<int32_t> tokens = {3, 4, 5, 6, 7};
  const std::vector<float> h(4 * hidden, 0.5f);
  const SamplingParams sampling{.temperature = 0.8, .top_k = 3, .seed = 1};
  auto draw = [&](uint64_t id) {
    Rng rng(11);
    const DraftInput in{.sequence = id,
                        .tokens = tokens,
                        .committed = 4,
                        .hidden = h.data(),
                        .max_draft = 3,
                        .sampling = &sampling,
                        .rng = &rng};
    std::vector<Draft> drafts;
    EXPECT_TRUE(b->drafter->step({&in, 1}, &drafts).ok());
    b->drafter->release(id);
    return drafts.at(0);
  };
  const Draft first = draw(1);
  ASSERT_EQ(first.tokens.size(), 3u);
  ASSERT_EQ(first.probs.size(), 3u);
  for (size_t d = 0; d < 3; ++d) {
    ASSERT_EQ(first.probs[d].size(), 512u);
    int nonzero = 0;
    double sum = 0;
    for (float p : first.probs[d]) {
      nonzero += p > 0.0f;
      sum += p;
    }
    EXPECT_LE(nonzero, 3);
    EXPECT_NEAR(sum, 1.0, 1e-5);
    EXPECT_GT(first.probs[d][first.tokens[d]], 0.0f);
  }
  const Draft again = draw(2);
  EXPECT_EQ(again.tokens, first.tokens);
  EXPECT_EQ(again.probs, first.probs);
}

}  // namespace
}  // namespace moeserve::engine
