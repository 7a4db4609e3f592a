// Speculative decoding in the Scheduler over generated tiny models: with the n-gram
// drafter and with a scripted drafter that proposes known-right and known-wrong tokens,
// greedy output is token-for-token the output without drafts (batches, k = 1..3, BF16
// and FP8, n > 1, prefix-cache hits, preemption), logprobs are the main model's,
// max_tokens and stop tokens end a choice exactly where they would without drafts, a
// rejected draft leaves the KV cache as if it had never been drafted, and sampled
// tokens follow the main model's exact distribution (chi-square).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "tests/worker/engine/reference_generate.h"
#include "tests/worker/engine/tiny_engine.h"
#include "worker/engine/ngram_drafter.h"
#include "worker/engine/scheduler.h"

namespace moeserve::engine {
namespace {

using namespace std::chrono_literals;
using testing::make_engine, testing::make_tiny_model, testing::test_prompt;

// A test tool for the verify/rollback logic: knows each prompt's greedy continuation
// and, for a sequence that has generated g tokens, proposes the next ones with the
// first right(g) of them right and the rest deliberately wrong.
class ScriptedDrafter final : public Drafter {
 public:
  using Rule = std::function<int32_t(int64_t generated, int32_t max_draft)>;

  ScriptedDrafter(std::map<std::vector<int32_t>, std::vector<int32_t>> continuations, int32_t vocab,
                  Rule right)
      : continuations_(std::move(continuations)), vocab_(vocab), right_(std::move(right)) {}

  std::string_view name() const override { return "scripted"; }
  bool needs_hidden() const override { return false; }
  Status step(std::span<const DraftInput> inputs, std::vector<Draft>* drafts) override {
    drafts->assign(inputs.size(), Draft{});
    for (size_t i = 0; i < inputs.size(); ++i) {
      const DraftInput& in = inputs[i];
      EXPECT_LE(in.committed, static_cast<int64_t>(in.tokens.size()));
      if (in.max_draft == 0) continue;
      EXPECT_EQ(static_cast<int64_t>(in.tokens.size()), in.committed + 1);
      max_asked_ = std::max(max_asked_, in.max_draft);
      const auto [prompt, continuation] = find(in.tokens);
      const int64_t generated = static_cast<int64_t>(in.tokens.size() - prompt);
      const int32_t right = right_(generated, in.max_draft);
      for (int32_t d = 0; d < in.max_draft; ++d) {
        const int64_t at = generated + d;
        const int32_t truth =
            at < static_cast<int64_t>(continuation->size()) ? (*continuation)[at] : 0;
        (*drafts)[i].tokens.push_back(d < right ? truth : (truth + 1) % vocab_);
      }
    }
    return ok_status();
  }
  void release(uint64_t sequence) override { released_.insert(sequence); }

  int32_t max_asked() const { return max_asked_; }
  const std::set<uint64_t>& released() const { return released_; }

 private:
  std::pair<size_t, const std::vector<int32_t>*> find(std::span<const int32_t> tokens) const {
    for (const auto& [prompt, continuation] : continuations_) {
      if (prompt.size() <= tokens.size() &&
          std::equal(prompt.begin(), prompt.end(), tokens.begin())) {
        return {prompt.size(), &continuation};
      }
    }
    ADD_FAILURE() << "a sequence of no known prompt";
    return {tokens.size(), &continuations_.begin()->second};
  }

  std::map<std::vector<int32_t>, std::vector<int32_t>> continuations_;
  int32_t vocab_;
  Rule right_;
  int32_t max_asked_ = 0;
  std::set<uint64_t> released_;
};

struct ChoiceResult {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  FinishReason finish = FinishReason::kNone;
};

std::vector<ChoiceResult> collect(RequestStream& stream) {
  std::vector<ChoiceResult> out(stream.n());
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (!stream.done() && std::chrono::steady_clock::now() < deadline) {
    for (const GenerationEvent& e : stream.next(100ms)) {
      if (e.has_token) {
        out[e.choice].tokens.push_back(e.sample.token);
        out[e.choice].logprobs.push_back(e.sample.logprob);
      }
      if (e.finish != FinishReason::kNone) out[e.choice].finish = e.finish;
    }
  }
  EXPECT_TRUE(stream.done());
  return out;
}

class SchedulerSpecTest : public ::testing::TestWithParam<model::WeightPrecision> {
 protected:
  void SetUp() override {
    model_ = make_tiny_model(dir_.path(), model::Architecture::kDeepseekV3, GetParam(), 7);
    ASSERT_NE(model_, nullptr);
    reference_ = make_engine(model_);
  }

  std::unique_ptr<Scheduler> make_scheduler(SchedulerOptions options, int64_t kv_tokens = 4096) {
    EngineOptions eo;
    eo.kv_cache_tokens = kv_tokens;
    auto s = std::make_unique<Scheduler>(make_engine(model_, eo), std::move(options));
    s->start();
    return s;
  }

  testing::ReferenceResult alone(const std::vector<int32_t>& prompt, int64_t max_tokens,
                                 SamplingParams sampling = {}) {
    return testing::reference_generate(*reference_, {prompt, max_tokens, sampling});
  }

  // Runs every prompt at once with `options` and again without a drafter; every choice
  // must give its output alone, token for token, with the logprobs of the run without
  // drafts. Returns the speculating scheduler's stats.
  SchedulerStats expect_same_as_alone(SchedulerOptions options,
                                      const std::vector<std::vector<int32_t>>& prompts,
                                      int64_t max_tokens, int64_t kv_tokens = 4096, int32_t n = 1,
                                      const SamplingParams& sampling = {}) {
    SchedulerOptions plain = options;
    plain.drafter = nullptr;
    const auto [got, stats] =
        run_all(std::move(options), prompts, max_tokens, kv_tokens, n, sampling);
    const auto [base, base_stats] = run_all(plain, prompts, max_tokens, kv_tokens, n, sampling);
    for (size_t i = 0; i < prompts.size(); ++i) {
      const std::vector<int32_t> want = alone(prompts[i], max_tokens, sampling).tokens;
      for (int32_t c = 0; c < n; ++c) {
        const ChoiceResult& spec = got[i][c];
        EXPECT_EQ(spec.tokens, want) << "prompt " << i << " choice " << c;
        EXPECT_EQ(spec.finish, FinishReason::kLength);
        EXPECT_EQ(spec.logprobs.size(), base[i][c].logprobs.size());
        for (size_t t = 0; t < std::min(spec.logprobs.size(), base[i][c].logprobs.size()); ++t) {
          EXPECT_NEAR(spec.logprobs[t], base[i][c].logprobs[t], 1e-3) << "token " << t;
        }
      }
    }
    EXPECT_EQ(stats.kv_cache_usage, 0.0);
    EXPECT_EQ(stats.generated_tokens_total, base_stats.generated_tokens_total);
    return stats;
  }

  std::pair<std::vector<std::vector<ChoiceResult>>, SchedulerStats> run_all(
      SchedulerOptions options, const std::vector<std::vector<int32_t>>& prompts,
      int64_t max_tokens, int64_t kv_tokens, int32_t n, const SamplingParams& sampling) {
    auto scheduler = make_scheduler(std::move(options), kv_tokens);
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (const auto& prompt : prompts) {
      GenerationRequest r;
      r.prompt = prompt;
      r.max_tokens = max_tokens;
      r.n = n;
      r.sampling = sampling;
      auto stream = scheduler->submit(r);
      EXPECT_TRUE(stream.ok()) << stream.status().to_string();
      if (stream.ok()) streams.push_back(*stream);
    }
    std::vector<std::vector<ChoiceResult>> results;
    for (auto& stream : streams) results.push_back(collect(*stream));
    return {results, scheduler->stats()};
  }

  std::map<std::vector<int32_t>, std::vector<int32_t>> continuations(
      const std::vector<std::vector<int32_t>>& prompts, int64_t max_tokens) {
    std::map<std::vector<int32_t>, std::vector<int32_t>> out;
    for (const auto& p : prompts) out[p] = alone(p, max_tokens + 4).tokens;
    return out;
  }

  int32_t vocab() const { return static_cast<int32_t>(model_->config.vocab_size); }

  moeserve::testing::TempDir dir_;
  std::shared_ptr<const model::LoadedModel> model_;
  std::unique_ptr<Engine> reference_;
};

std::vector<std::vector<int32_t>> prompts_for(int count, int32_t vocab, int salt = 0) {
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < count; ++i) prompts.push_back(test_prompt(4 + 9 * i, vocab, salt + i));
  return prompts;
}

// Right for the first (generated / 2) % (max_draft + 1) drafts: full, partial and no
// acceptance, in an order that does not lock into one of them.
int32_t mixed(int64_t generated, int32_t max_draft) {
  return static_cast<int32_t>((generated / 2) % (max_draft + 1));
}
int32_t all_right(int64_t, int32_t max_draft) { return max_draft; }
int32_t all_wrong(int64_t, int32_t) { return 0; }

SchedulerOptions spec_options(std::shared_ptr<Drafter> drafter, int32_t k) {
  SchedulerOptions o;
  o.drafter = std::move(drafter);
  o.num_draft_tokens = k;
  o.spec_max_batch = 64;
  o.max_num_batched_tokens = 64;  // longer prompts prefill in chunks beside the drafts
  return o;
}

TEST_P(SchedulerSpecTest, NgramGreedyOutputIsTheOutputWithoutDraftsForBatchesAndK) {
  int64_t drafted = 0, accepted = 0;
  for (int32_t k = 1; k <= 3; ++k) {
    for (int batch : {1, 3, 8}) {
      // Always drafting (no low-acceptance switch): this is about the output, and a random
      // model repeats itself too rarely to keep the n-gram drafts above the floor.
      SchedulerOptions options = spec_options(std::make_shared<NgramDrafter>(), k);
      options.spec_min_acceptance = 0.0;
      const SchedulerStats stats =
          expect_same_as_alone(options, prompts_for(batch, vocab(), k), 24);
      drafted += stats.spec_draft_tokens_total;
      accepted += stats.spec_accepted_tokens_total;
    }
  }
  EXPECT_GT(drafted, 0);
  EXPECT_GT(accepted, 0);
}

TEST_P(SchedulerSpecTest, RightAndWrongDraftsGiveTheOutputWithoutDrafts) {
  for (int32_t k = 1; k <= 3; ++k) {
    for (int batch : {1, 5}) {
      const auto prompts = prompts_for(batch, vocab(), 10 * k);
      auto drafter = std::make_shared<ScriptedDrafter>(continuations(prompts, 20), vocab(), mixed);
      const SchedulerStats stats = expect_same_as_alone(spec_options(drafter, k), prompts, 20);
      EXPECT_GT(stats.spec_accepted_tokens_total, 0) << "k " << k;
      EXPECT_LT(stats.spec_accepted_tokens_total, stats.spec_draft_tokens_total) << "k " << k;
      ASSERT_EQ(stats.spec_draft_tokens_by_position.size(), static_cast<size_t>(k));
      int64_t by_position = 0;
      for (int64_t n : stats.spec_accepted_tokens_by_position) by_position += n;
      EXPECT_EQ(by_position, stats.spec_accepted_tokens_total);
      // Position i is accepted only after position i - 1 was.
      for (int32_t i = 1; i < k; ++i) {
        EXPECT_LE(stats.spec_accepted_tokens_by_position[i],
                  stats.spec_accepted_tokens_by_position[i - 1]);
      }
      EXPECT_EQ(drafter->max_asked(), k);
      EXPECT_GE(drafter->released().size(), static_cast<size_t>(batch));
    }
  }
}

// The penalties read the history, which for a drafted position includes the earlier
// drafts: with them (and min_tokens masking the stop tokens) the output stays the output
// without drafts, right and wrong drafts alike.
TEST_P(SchedulerSpecTest, PenalisedOutputIsTheOutputWithoutDrafts) {
  SamplingParams sampling;
  sampling.repetition_penalty = 1.4;
  sampling.frequency_penalty = 0.6;
  sampling.presence_penalty = 0.3;
  sampling.logit_bias = {{1, 2.0f}, {2, -2.0f}};
  sampling.stop_token_ids = {3};
  sampling.min_tokens = 20;
  for (int32_t k = 1; k <= 3; ++k) {
    const auto prompts = prompts_for(3, vocab(), 20 * k);
    // The drafter proposes the unpenalised continuations: some right, some wrong.
    auto drafter = std::make_shared<ScriptedDrafter>(continuations(prompts, 20), vocab(), mixed);
    SchedulerOptions options = spec_options(drafter, k);
    options.spec_min_acceptance = 0.0;
    const SchedulerStats stats = expect_same_as_alone(options, prompts, 20, 4096, 1, sampling);
    EXPECT_GT(stats.spec_draft_tokens_total, 0) << "k " << k;
  }
  auto ngram = spec_options(std::make_shared<NgramDrafter>(), 2);
  ngram.spec_min_acceptance = 0.0;
  expect_same_as_alone(ngram, prompts_for(4, vocab(), 5), 20, 4096, 2, sampling);
}

TEST_P(SchedulerSpecTest, MaxTokensIsExactWhenDraftsWouldCrossIt) {
  const auto prompts = prompts_for(2, vocab(), 3);
  for (int64_t max_tokens = 1; max_tokens <= 7; ++max_tokens) {
    auto drafter = std::make_shared<ScriptedDrafter>(continuations(prompts, 8), vocab(), all_right);
    const SchedulerStats stats =
        expect_same_as_alone(spec_options(drafter, 3), prompts, max_tokens);
    EXPECT_EQ(stats.spec_accepted_tokens_total, stats.spec_draft_tokens_total);
    // Drafts only where a token after them still fits: the first token comes from
    // the prompt's logits, each step then adds its drafts and one more.
    EXPECT_LE(drafter->max_asked(), std::max<int64_t>(0, max_tokens - 2));
    EXPECT_EQ(stats.generated_tokens_total, 2 * max_tokens);
  }
}

TEST_P(SchedulerSpecTest, AStopTokenAmongAcceptedDraftsEndsTheChoiceThere) {
  const std::vector<int32_t> prompt = test_prompt(9, vocab(), 4);
  const std::vector<int32_t> free_run = alone(prompt, 24).tokens;
  // The first token from the third on that did not occur before it.
  size_t stop_at = 2;
  while (stop_at < free_run.size() && std::find(free_run.begin(), free_run.begin() + stop_at,
                                                free_run[stop_at]) != free_run.begin() + stop_at) {
    ++stop_at;
  }
  ASSERT_LT(stop_at, free_run.size()) << "the continuation repeats from its start";
  SamplingParams sampling;
  sampling.stop_token_ids = {free_run[stop_at]};
  const std::vector<int32_t> want(free_run.begin(), free_run.begin() + stop_at + 1);
  ASSERT_EQ(alone(prompt, 24, sampling).tokens, want);

  auto drafter = std::make_shared<ScriptedDrafter>(
      std::map<std::vector<int32_t>, std::vector<int32_t>>{{prompt, free_run}}, vocab(), all_right);
  auto scheduler = make_scheduler(spec_options(drafter, 3));
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = 24;
  r.sampling = sampling;
  auto stream = scheduler->submit(r);
  ASSERT_TRUE(stream.ok());
  const std::vector<ChoiceResult> got = collect(**stream);
  EXPECT_EQ(got[0].tokens, want);
  EXPECT_EQ(got[0].finish, FinishReason::kStop);
  EXPECT_GT(scheduler->stats().spec_accepted_tokens_total, 0);
  EXPECT_EQ(scheduler->stats().kv_cache_usage, 0.0);
}

TEST_P(SchedulerSpecTest, EachChoiceOfNSpeculatesOnItsOwn) {
  const auto prompts = prompts_for(2, vocab(), 6);
  auto drafter = std::make_shared<ScriptedDrafter>(continuations(prompts, 16), vocab(), mixed);
  const SchedulerStats stats =
      expect_same_as_alone(spec_options(drafter, 2), prompts, 16, 4096, /*n=*/3);
  EXPECT_GT(stats.spec_accepted_tokens_total, 0);
}

TEST_P(SchedulerSpecTest, BlocksFilledWhileSpeculatingAreRightWhenThePrefixCacheReusesThem) {
  const std::vector<int32_t> prompt = test_prompt(70, vocab(), 8);
  const std::vector<int32_t> free_run = alone(prompt, 130).tokens;
  auto drafter = std::make_shared<ScriptedDrafter>(
      std::map<std::vector<int32_t>, std::vector<int32_t>>{{prompt, free_run}}, vocab(), mixed);
  auto scheduler = make_scheduler(spec_options(drafter, 3));
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = 130;  // positions 70..199: blocks 1 and 2 fill while drafting
  auto first = scheduler->submit(r);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(collect(**first)[0].tokens, free_run);

  // A prompt that runs through those blocks is served from the prefix cache.
  std::vector<int32_t> longer = prompt;
  longer.insert(longer.end(), free_run.begin(), free_run.begin() + 125);
  longer.push_back(3);
  r.prompt = longer;
  r.max_tokens = 12;
  auto second = scheduler->submit(r);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(collect(**second)[0].tokens, alone(longer, 12).tokens);
  EXPECT_GE(scheduler->stats().prefix_cache_hit_tokens_total, 3 * kBlockSize);
}

TEST_P(SchedulerSpecTest, PreemptedSpeculatingRequestsGiveTheOutputWithoutDrafts) {
  const auto prompts = prompts_for(4, vocab(), 12);
  std::vector<std::vector<int32_t>> longer;
  for (const auto& p : prompts) {
    std::vector<int32_t> q = p;
    while (q.size() < 50) q.push_back((q.back() * 7 + 3) % vocab());
    longer.push_back(q);
  }
  auto drafter = std::make_shared<ScriptedDrafter>(continuations(longer, 40), vocab(), mixed);
  // Four blocks for four requests that each reach 90 tokens (two blocks).
  const SchedulerStats stats = expect_same_as_alone(spec_options(drafter, 3), longer, 40, 256);
  EXPECT_GT(stats.preemptions_total, 0);
  EXPECT_GT(stats.spec_accepted_tokens_total, 0);
}

TEST_P(SchedulerSpecTest, NoDraftsInStepsThatRunMoreSequencesThanTheBatchThreshold) {
  const auto prompts = prompts_for(4, vocab(), 14);
  auto drafter = std::make_shared<ScriptedDrafter>(continuations(prompts, 12), vocab(), mixed);
  SchedulerOptions options = spec_options(drafter, 2);
  options.spec_max_batch = 0;  // every step runs more sequences than that
  const SchedulerStats stats = expect_same_as_alone(options, prompts, 12);
  EXPECT_EQ(drafter->max_asked(), 0);
  EXPECT_EQ(stats.spec_draft_tokens_total, 0);
}

TEST_P(SchedulerSpecTest, LowAcceptanceTurnsDraftingDownToProbes) {
  const auto prompts = prompts_for(1, vocab(), 15);
  auto drafter = std::make_shared<ScriptedDrafter>(continuations(prompts, 60), vocab(), all_wrong);
  const SchedulerStats stats = expect_same_as_alone(spec_options(drafter, 1), prompts, 60);
  EXPECT_EQ(stats.spec_accepted_tokens_total, 0);
  // Without the switch every one of the 59 steps after the first token would verify a
  // draft; the EWMA (weight 0.5) falls below 0.3 after 2 of them, then probes come after
  // 8, 16 and 32 more steps (the interval doubles): 2 + 3 drafts in all.
  EXPECT_EQ(stats.spec_draft_tokens_total, 5);
}

TEST_P(SchedulerSpecTest, CancellingASpeculatingRequestFreesItsBlocksAndReleasesItsDrafts) {
  const std::vector<int32_t> prompt = test_prompt(20, vocab(), 16);
  auto drafter = std::make_shared<ScriptedDrafter>(
      std::map<std::vector<int32_t>, std::vector<int32_t>>{{prompt, alone(prompt, 500).tokens}},
      vocab(), mixed);
  auto scheduler = make_scheduler(spec_options(drafter, 3));
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = 500;
  auto stream = scheduler->submit(r);
  ASSERT_TRUE(stream.ok());
  // Wait for a few tokens, then cancel mid-generation.
  int64_t seen = 0;
  FinishReason finish = FinishReason::kNone;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!(*stream)->done() && std::chrono::steady_clock::now() < deadline) {
    for (const GenerationEvent& e : (*stream)->next(50ms)) {
      seen += e.has_token ? 1 : 0;
      if (e.finish != FinishReason::kNone) finish = e.finish;
    }
    if (seen >= 8) (*stream)->cancel();
  }
  EXPECT_EQ(finish, FinishReason::kCancelled);
  EXPECT_LT(seen, 500);
  EXPECT_EQ(scheduler->stats().kv_cache_usage, 0.0);
  EXPECT_EQ(drafter->released().size(), 1u);
}

class BadDrafter final : public Drafter {
 public:
  std::string_view name() const override { return "bad"; }
  bool needs_hidden() const override { return false; }
  Status step(std::span<const DraftInput> inputs, std::vector<Draft>* drafts) override {
    drafts->assign(inputs.size(), Draft{});
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].max_draft > 0) (*drafts)[i].tokens = {-5};
    }
    return ok_status();
  }
  void release(uint64_t) override {}
};

TEST_P(SchedulerSpecTest, ADraftOutsideTheVocabularyEndsTheRequestWithAClearError) {
  auto scheduler = make_scheduler(spec_options(std::make_shared<BadDrafter>(), 1));
  GenerationRequest r;
  r.prompt = test_prompt(5, vocab());
  r.max_tokens = 5;
  auto stream = scheduler->submit(r);
  ASSERT_TRUE(stream.ok());
  Status error;
  while (!(*stream)->done()) {
    for (const GenerationEvent& e : (*stream)->next(100ms)) {
      if (e.finish == FinishReason::kError) error = e.error;
    }
  }
  EXPECT_NE(error.message().find("drafter bad: proposed token -5 outside the vocabulary"),
            std::string::npos)
      << error.to_string();
}

// Rollback: a sequence whose drafts are all rejected (and truncated off) holds exactly
// the KV entries of a sequence that never drafted.
TEST_P(SchedulerSpecTest, ARejectedDraftLeavesTheKvCacheAsIfNeverDrafted) {
  auto engine = make_engine(model_);
  KvCache& cache = engine->kv_cache();
  const std::vector<int32_t> prompt = test_prompt(60, vocab(), 2);
  SequenceKv drafted, plain;
  ForwardOutput out;
  ASSERT_TRUE(engine->forward({SequenceInput{&drafted, prompt}}, &out).ok());
  int32_t next = argmax(out.row(0), vocab());
  ASSERT_TRUE(engine->forward({SequenceInput{&plain, prompt}}, &out).ok());
  ASSERT_EQ(argmax(out.row(0), vocab()), next);
  for (int step = 0; step < 12; ++step) {  // crosses the block boundary at 64
    const std::vector<int32_t> verify = {next, (next + 1) % vocab(), (next + 2) % vocab()};
    ASSERT_TRUE(cache.reserve(drafted, drafted.length + 3).ok());
    ASSERT_TRUE(engine->forward({SequenceInput{&drafted, verify, true}}, &out).ok());
    const int32_t from_drafted = argmax(out.row(0, 0), vocab());
    cache.truncate(drafted, drafted.length - 2);
    const std::vector<int32_t> one = {next};
    ASSERT_TRUE(engine->forward({SequenceInput{&plain, one}}, &out).ok());
    ASSERT_EQ(argmax(out.row(0), vocab()), from_drafted) << "step " << step;
    next = from_drafted;
  }
  ASSERT_EQ(drafted.length, plain.length);
  EXPECT_EQ(drafted.blocks.size(), plain.blocks.size());
  for (int64_t layer = 0; layer < cache.config().num_layers; ++layer) {
    for (int64_t pos = 0; pos < plain.length; ++pos) {
      const float* a = cache.entry(drafted, layer, pos);
      const float* b = cache.entry(plain, layer, pos);
      for (int64_t i = 0; i < cache.entry_dim(); ++i) {
        ASSERT_NEAR(a[i], b[i], 1e-4f * (1.0f + std::fabs(b[i])))
            << "layer " << layer << " position " << pos << " element " << i;
      }
    }
  }
  cache.release(drafted);
  cache.release(plain);
}

// Draws its drafts from a fixed q (uniform over the vocabulary) with the request's
// draft Rng, or proposes a point mass on the greedy continuation.
class RandomDrafter final : public Drafter {
 public:
  RandomDrafter(int32_t vocab, std::vector<int32_t> point_mass)
      : vocab_(vocab), point_mass_(std::move(point_mass)) {}
  std::string_view name() const override { return "random"; }
  bool needs_hidden() const override { return false; }
  Status step(std::span<const DraftInput> inputs, std::vector<Draft>* drafts) override {
    drafts->assign(inputs.size(), Draft{});
    const std::vector<float> q(vocab_, 1.0f / static_cast<float>(vocab_));
    for (size_t i = 0; i < inputs.size(); ++i) {
      for (int32_t d = 0; d < inputs[i].max_draft; ++d) {
        if (!point_mass_.empty()) {
          (*drafts)[i].tokens.push_back(point_mass_[inputs[i].tokens.size()]);
          continue;
        }
        (*drafts)[i].tokens.push_back(sample_from(q, *inputs[i].rng));
        (*drafts)[i].probs.push_back(q);
      }
    }
    return ok_status();
  }
  void release(uint64_t) override {}

 private:
  int32_t vocab_;
  std::vector<int32_t> point_mass_;  // by position: the token to propose there
};

// Upper 1e-6 quantile of chi-square with `df` degrees of freedom (Wilson-Hilferty; z is
// the standard normal's upper 1e-6 quantile).
double chi_square_critical(int df) {
  const double z = 4.753424;
  const double a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

// Over many seeds, the second token (the one a draft is verified for) follows the main
// model's exact distribution, with top-k and top-p, whether the draft carries a q or is
// a point mass. False-failure rate: 1e-6 per comparison.
TEST_P(SchedulerSpecTest, SampledTokensFollowTheMainModelsExactDistribution) {
  const std::vector<int32_t> prompt = test_prompt(6, vocab(), 5);
  SamplingParams sampling;
  sampling.temperature = 0.8;
  sampling.top_k = 12;
  sampling.top_p = 0.95;
  // Exact: P(t2) = sum over t1 of P(t1) P(t2 | t1).
  const int32_t v = vocab();
  std::vector<double> exact(v, 0.0);
  ForwardOutput out;
  SequenceKv seq;
  ASSERT_TRUE(reference_->forward({SequenceInput{&seq, prompt}}, &out).ok());
  reference_->kv_cache().release(seq);
  std::vector<float> p1, p2;
  sampling_distribution(out.row(0), v, sampling, {prompt, 0}, &p1);
  for (int32_t t1 = 0; t1 < v; ++t1) {
    if (p1[t1] == 0.0f) continue;
    std::vector<int32_t> extended = prompt;
    extended.push_back(t1);
    ASSERT_TRUE(reference_->forward({SequenceInput{&seq, extended}}, &out).ok());
    reference_->kv_cache().release(seq);
    sampling_distribution(out.row(0), v, sampling, {extended, 1}, &p2);
    for (int32_t t = 0; t < v; ++t) exact[t] += static_cast<double>(p1[t1]) * p2[t];
  }

  std::vector<int32_t> greedy_by_position(prompt.size() + 3, 0);
  const std::vector<int32_t> greedy = alone(prompt, 3).tokens;
  for (size_t i = 0; i < greedy.size(); ++i) greedy_by_position[prompt.size() + i] = greedy[i];
  constexpr int kSeeds = 2000;
  for (bool with_q : {true, false}) {
    SchedulerOptions options = spec_options(
        std::make_shared<RandomDrafter>(v, with_q ? std::vector<int32_t>{} : greedy_by_position),
        1);
    options.max_queue = kSeeds;
    auto scheduler = make_scheduler(options);
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (int i = 0; i < kSeeds; ++i) {
      GenerationRequest r;
      r.prompt = prompt;
      r.max_tokens = 3;  // the second token is verified against one draft
      r.sampling = sampling;
      r.sampling.seed = 1000 + static_cast<uint64_t>(i);
      auto stream = scheduler->submit(r);
      ASSERT_TRUE(stream.ok()) << stream.status().to_string();
      streams.push_back(*stream);
    }
    std::vector<int> counts(v, 0);
    for (auto& stream : streams) {
      const std::vector<ChoiceResult> got = collect(*stream);
      ASSERT_EQ(got[0].tokens.size(), 3u);
      ++counts[got[0].tokens[1]];
    }
    EXPECT_EQ(scheduler->stats().spec_draft_tokens_total, kSeeds);
    // Bins with an expected count of at least 5; the rest pooled.
    double statistic = 0.0, pooled_expected = 0.0;
    int pooled_observed = 0, bins = 0;
    for (int32_t t = 0; t < v; ++t) {
      const double expected = exact[t] * kSeeds;
      if (expected == 0.0) {
        EXPECT_EQ(counts[t], 0) << "token " << t << " has probability 0";
      } else if (expected < 5.0) {
        pooled_expected += expected;
        pooled_observed += counts[t];
      } else {
        statistic += (counts[t] - expected) * (counts[t] - expected) / expected;
        ++bins;
      }
    }
    if (pooled_expected > 0.0) {
      statistic += (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) /
                   pooled_expected;
      ++bins;
    }
    ASSERT_GE(bins, 3);
    EXPECT_LT(statistic, chi_square_critical(bins - 1))
        << (with_q ? "uniform q" : "point mass") << ", " << bins << " bins";
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, SchedulerSpecTest,
                         ::testing::Values(model::WeightPrecision::kBf16,
                                           model::WeightPrecision::kFp8),
                         testing::precision_name);

}  // namespace
}  // namespace moeserve::engine
