// Scheduler over a generated tiny model: continuous batching gives the same tokens as
// generating each request alone, n > 1 choices fork the prompt, the prefix cache is hit
// on a repeated prompt, KV exhaustion preempts without failing anyone, and cancellation,
// limits, draining and the group hooks (a failing hook fails everything) behave as the
// header says.
#include "worker/engine/scheduler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "tests/worker/engine/reference_generate.h"
#include "tests/worker/engine/tiny_engine.h"

namespace moeserve::engine {
namespace {

using namespace std::chrono_literals;
using testing::make_engine;
using testing::make_tiny_model;
using testing::test_prompt;

struct ChoiceResult {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kNone;
  std::vector<float> prompt_logits;  // from the events that carried any
  int logit_events = 0;
};

// Reads a stream to its end.
std::vector<ChoiceResult> collect(RequestStream& stream) {
  std::vector<ChoiceResult> out(stream.n());
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!stream.done() && std::chrono::steady_clock::now() < deadline) {
    for (const GenerationEvent& e : stream.next(100ms)) {
      if (e.has_token) out[e.choice].tokens.push_back(e.sample.token);
      if (!e.prompt_logits.empty()) {
        EXPECT_TRUE(e.has_token);
        out[e.choice].prompt_logits = e.prompt_logits;
        ++out[e.choice].logit_events;
      }
      if (e.finish != FinishReason::kNone) out[e.choice].finish = e.finish;
    }
  }
  EXPECT_TRUE(stream.done());
  return out;
}

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new moeserve::testing::TempDir();
    model_ = make_tiny_model(dir_->path(), model::Architecture::kDeepseekV3,
                             model::WeightPrecision::kBf16, 7);
  }
  static void TearDownTestSuite() {
    model_.reset();
    delete dir_;
  }

  std::unique_ptr<Scheduler> make_scheduler(SchedulerOptions options = {},
                                            int64_t kv_tokens = 4096) {
    EngineOptions eo;
    eo.kv_cache_tokens = kv_tokens;
    eo.record_routing = true;
    auto s = std::make_unique<Scheduler>(make_engine(model_, eo), options);
    return s;
  }

  // The request generated alone by the test oracle.
  testing::ReferenceResult reference(const std::vector<int32_t>& prompt, int64_t max_tokens,
                                     SamplingParams sampling = {}) {
    if (reference_ == nullptr) reference_ = make_engine(model_);
    return testing::reference_generate(*reference_, {prompt, max_tokens, sampling});
  }
  std::vector<int32_t> alone(const std::vector<int32_t>& prompt, int64_t max_tokens,
                             SamplingParams sampling = {}) {
    return reference(prompt, max_tokens, std::move(sampling)).tokens;
  }

  int32_t vocab() const { return static_cast<int32_t>(model_->config.vocab_size); }

  static moeserve::testing::TempDir* dir_;
  static std::shared_ptr<const model::LoadedModel> model_;
  std::unique_ptr<Engine> reference_;
};

moeserve::testing::TempDir* SchedulerTest::dir_ = nullptr;
std::shared_ptr<const model::LoadedModel> SchedulerTest::model_;

TEST_F(SchedulerTest, ConcurrentRequestsGiveTheirAloneOutputs) {
  SchedulerOptions options;
  options.max_num_batched_tokens = 48;  // prompts of 70 tokens prefill in chunks
  auto scheduler = make_scheduler(options);
  scheduler->start();
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 6; ++i) {
    prompts.push_back(test_prompt(5 + 13 * i, vocab(), i));
    GenerationRequest r;
    r.prompt = prompts.back();
    r.max_tokens = 6 + i;
    auto stream = scheduler->submit(r);
    ASSERT_TRUE(stream.ok()) << stream.status().to_string();
    streams.push_back(*stream);
  }
  for (int i = 0; i < 6; ++i) {
    std::vector<ChoiceResult> got = collect(*streams[i]);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].tokens, alone(prompts[i], 6 + i)) << "request " << i;
    EXPECT_EQ(got[0].finish, FinishReason::kLength);
  }
  const SchedulerStats stats = scheduler->stats();
  EXPECT_EQ(stats.running_requests, 0);
  EXPECT_EQ(stats.waiting_requests, 0);
  EXPECT_EQ(stats.kv_cache_usage, 0.0);
  EXPECT_EQ(stats.requests_finished_total, 6);
}

TEST_F(SchedulerTest, ChoicesForkThePromptAndUseSeedPlusIndex) {
  auto scheduler = make_scheduler();
  scheduler->start();
  const std::vector<int32_t> prompt = test_prompt(70, vocab(), 3);
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = 8;
  r.n = 3;
  r.sampling.temperature = 1.0;
  r.sampling.seed = 41;
  auto stream = scheduler->submit(r);
  ASSERT_TRUE(stream.ok());
  std::vector<ChoiceResult> got = collect(**stream);
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    SamplingParams sp = r.sampling;
    sp.seed = 41 + i;
    EXPECT_EQ(got[i].tokens, alone(prompt, 8, sp)) << "choice " << i;
  }
  EXPECT_NE(got[0].tokens, got[1].tokens);
  // The prompt ran once: its 70 tokens, not three times as many.
  EXPECT_EQ(scheduler->stats().prompt_tokens_computed_total, 70);
}

TEST_F(SchedulerTest, RepeatedPromptHitsThePrefixCache) {
  auto scheduler = make_scheduler();
  scheduler->start();
  const std::vector<int32_t> prompt = test_prompt(150, vocab(), 5);
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = 4;
  auto first = scheduler->submit(r);
  ASSERT_TRUE(first.ok());
  const std::vector<ChoiceResult> a = collect(**first);
  EXPECT_EQ((*first)->cached_prompt_tokens(), 0);
  auto second = scheduler->submit(r);
  ASSERT_TRUE(second.ok());
  const std::vector<ChoiceResult> b = collect(**second);
  EXPECT_EQ((*second)->cached_prompt_tokens(), 128);  // two whole blocks of 64
  EXPECT_EQ(a[0].tokens, b[0].tokens);
  const SchedulerStats stats = scheduler->stats();
  EXPECT_EQ(stats.prefix_cache_hit_tokens_total, 128);
  EXPECT_EQ(stats.prompt_tokens_computed_total, 150 + 22);
  EXPECT_EQ(stats.kv_cache_usage, 0.0);  // cached blocks are free on demand
  EXPECT_GE(stats.kv_blocks_cached, 2);
}

TEST_F(SchedulerTest, KvExhaustionPreemptsTheNewestAndEveryoneFinishes) {
  SchedulerOptions options;
  options.prefix_caching = false;
  auto scheduler = make_scheduler(options, /*kv_tokens=*/4 * kBlockSize);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 3; ++i) {
    prompts.push_back(test_prompt(60, vocab(), 20 + i));
    GenerationRequest r;
    r.prompt = prompts.back();
    r.max_tokens = 40;  // each grows to 100 tokens = 2 blocks; three need 6 of 4
    auto stream = scheduler->submit(r);
    ASSERT_TRUE(stream.ok());
    streams.push_back(*stream);
  }
  scheduler->start();
  for (int i = 0; i < 3; ++i) {
    const std::vector<ChoiceResult> got = collect(*streams[i]);
    EXPECT_EQ(got[0].tokens, alone(prompts[i], 40)) << "request " << i;
  }
  EXPECT_GT(scheduler->stats().preemptions_total, 0);
  EXPECT_EQ(scheduler->stats().kv_cache_usage, 0.0);
}

TEST_F(SchedulerTest, CancelFreesTheBlocksAtTheNextStep) {
  auto scheduler = make_scheduler();
  scheduler->start();
  GenerationRequest r;
  r.prompt = test_prompt(100, vocab(), 9);
  r.max_tokens = 3000;
  auto stream = scheduler->submit(r);
  ASSERT_TRUE(stream.ok());
  std::vector<GenerationEvent> events;
  while (events.empty()) events = (*stream)->next(1000ms);
  EXPECT_GT(scheduler->stats().kv_cache_usage, 0.0);
  (*stream)->cancel();
  const std::vector<ChoiceResult> rest = collect(**stream);
  EXPECT_EQ(rest[0].finish, FinishReason::kCancelled);
  EXPECT_TRUE(moeserve::testing::wait_until(
      [&] { return scheduler->stats().kv_cache_usage == 0.0 && scheduler->idle(); }, 10s));
}

TEST_F(SchedulerTest, StopChoiceEndsOnlyThatChoice) {
  auto scheduler = make_scheduler();
  GenerationRequest r;
  r.prompt = test_prompt(10, vocab(), 2);
  r.max_tokens = 200;
  r.n = 2;
  auto stream = scheduler->submit(r);
  ASSERT_TRUE(stream.ok());
  (*stream)->stop_choice(1);
  scheduler->start();
  const std::vector<ChoiceResult> got = collect(**stream);
  EXPECT_EQ(got[1].finish, FinishReason::kStop);
  EXPECT_TRUE(got[1].tokens.empty());
  EXPECT_EQ(got[0].finish, FinishReason::kLength);
  EXPECT_EQ(got[0].tokens.size(), 200u);
}

TEST_F(SchedulerTest, StopTokenFinishesWithStop) {
  auto scheduler = make_scheduler();
  scheduler->start();
  const std::vector<int32_t> prompt = test_prompt(12, vocab(), 4);
  const std::vector<int32_t> free_run = alone(prompt, 6);
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = 6;
  r.sampling.stop_token_ids = {free_run[3]};
  auto stream = scheduler->submit(r);
  ASSERT_TRUE(stream.ok());
  const std::vector<ChoiceResult> got = collect(**stream);
  const auto first_stop = std::find(free_run.begin(), free_run.end(), free_run[3]);
  EXPECT_EQ(got[0].tokens, std::vector<int32_t>(free_run.begin(), first_stop + 1));
  EXPECT_EQ(got[0].finish, FinishReason::kStop);
}

// Penalties, logit bias and min_tokens change greedy decoding as computed: each token
// is the argmax of the reference processing of the logits of everything before it, in a
// batch beside an unpenalised request, and the output is not the plain greedy one.
TEST_F(SchedulerTest, PenaltiesChangeGreedyOutputAsComputed) {
  SchedulerOptions options;
  options.max_num_batched_tokens = 32;  // the 40-token prompts prefill in chunks
  auto scheduler = make_scheduler(options);
  scheduler->start();
  const std::vector<int32_t> prompt = test_prompt(40, vocab(), 9);
  const std::vector<int32_t> plain = alone(prompt, 12);
  SamplingParams penalised;
  penalised.repetition_penalty = 1.5;
  penalised.frequency_penalty = 1.0;
  penalised.presence_penalty = 0.5;
  penalised.logit_bias = {{plain[0], -5.0f}};
  penalised.stop_token_ids = {plain[2]};
  penalised.min_tokens = 12;
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const SamplingParams& sampling : {penalised, SamplingParams{}}) {
    GenerationRequest r;
    r.prompt = prompt;
    r.max_tokens = 12;
    r.sampling = sampling;
    auto stream = scheduler->submit(r);
    ASSERT_TRUE(stream.ok()) << stream.status().to_string();
    streams.push_back(*stream);
  }
  const std::vector<ChoiceResult> got = collect(*streams[0]);
  EXPECT_EQ(collect(*streams[1])[0].tokens, plain);
  ASSERT_EQ(got[0].tokens.size(), 12u);  // min_tokens kept the stop token out
  EXPECT_EQ(got[0].finish, FinishReason::kLength);
  EXPECT_NE(got[0].tokens, plain);

  auto engine = make_engine(model_);
  std::vector<int32_t> history = prompt;
  std::vector<int32_t> generated;
  for (int32_t token : got[0].tokens) {
    SequenceKv seq;
    ForwardOutput out;
    ASSERT_TRUE(engine->forward({SequenceInput{&seq, history}}, &out).ok());
    engine->kv_cache().release(seq);
    const std::vector<float> logits(out.row(0), out.row(0) + out.vocab_size);
    const std::vector<float> processed =
        testing::reference_processed(logits, penalised, prompt, generated);
    EXPECT_EQ(token, argmax(processed.data(), vocab())) << "token " << generated.size();
    history.push_back(token);
    generated.push_back(token);
  }
}

TEST_F(SchedulerTest, PromptLogitsComeOnceWithChoiceZerosFirstTokenOnlyWhenAsked) {
  SchedulerOptions options;
  options.max_num_batched_tokens = 16;  // the 40-token prompt prefills in chunks
  auto scheduler = make_scheduler(options);
  scheduler->start();
  const std::vector<int32_t> prompt = test_prompt(40, vocab(), 6);
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = 4;
  r.n = 2;
  r.return_prompt_logits = true;
  auto asked = scheduler->submit(r);
  r.return_prompt_logits = false;
  auto plain = scheduler->submit(r);
  ASSERT_TRUE(asked.ok() && plain.ok());
  const std::vector<ChoiceResult> got = collect(**asked);
  const std::vector<float> want = reference(prompt, 4).prompt_logits;
  EXPECT_EQ(got[0].logit_events, 1);
  ASSERT_EQ(got[0].prompt_logits.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(got[0].prompt_logits[i], want[i], 1e-4f) << "token " << i;
  }
  EXPECT_EQ(got[1].logit_events, 0);
  for (const ChoiceResult& choice : collect(**plain)) EXPECT_EQ(choice.logit_events, 0);
}

TEST_F(SchedulerTest, SubmitRefusesWhatCannotRun) {
  SchedulerOptions options;
  options.max_queue = 1;
  options.max_num_seqs = 4;
  auto scheduler = make_scheduler(options, /*kv_tokens=*/2 * kBlockSize);
  GenerationRequest r;
  r.prompt = test_prompt(100, vocab(), 1);
  r.max_tokens = 29;  // 129 tokens: 3 blocks of a 2-block cache
  EXPECT_EQ(scheduler->submit(r).status().code(), StatusCode::kInvalidArgument);
  r.max_tokens = 28;
  r.n = 5;
  EXPECT_EQ(scheduler->submit(r).status().code(), StatusCode::kInvalidArgument);
  r.n = 1;
  r.prompt = {vocab()};
  EXPECT_EQ(scheduler->submit(r).status().code(), StatusCode::kInvalidArgument);
  r.prompt = {1, 2, 3};
  r.sampling.logit_bias = {{vocab(), 1.0f}};
  EXPECT_EQ(scheduler->submit(r).status().code(), StatusCode::kInvalidArgument);
  r.sampling.logit_bias.clear();
  r.sampling.min_tokens = 29;  // above max_tokens
  EXPECT_EQ(scheduler->submit(r).status().code(), StatusCode::kInvalidArgument);
  r.sampling.min_tokens = 0;
  ASSERT_TRUE(scheduler->submit(r).ok());  // not started: it waits
  EXPECT_EQ(scheduler->submit(r).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(scheduler->stats().waiting_requests, 1);
  scheduler->drain();
  EXPECT_EQ(scheduler->submit(r).status().code(), StatusCode::kUnavailable);
}

TEST_F(SchedulerTest, DrainFinishesQueuedWorkAndStopCancelsTheRest) {
  auto scheduler = make_scheduler();
  GenerationRequest r;
  r.prompt = test_prompt(8, vocab(), 6);
  r.max_tokens = 5;
  auto queued = scheduler->submit(r);
  ASSERT_TRUE(queued.ok());
  scheduler->drain();
  scheduler->start();
  EXPECT_EQ(collect(**queued)[0].tokens.size(), 5u);
  EXPECT_TRUE(moeserve::testing::wait_until([&] { return scheduler->idle(); }, 10s));

  auto other = make_scheduler();
  auto never_run = other->submit(r);
  ASSERT_TRUE(never_run.ok());
  other->stop();
  EXPECT_EQ(collect(**never_run)[0].finish, FinishReason::kCancelled);
}

TEST_F(SchedulerTest, GroupHooksRunBeforeEachForwardAndWhileIdle) {
  std::atomic<int64_t> forwards{0};
  std::atomic<int64_t> idles{0};
  SchedulerOptions options;
  options.before_forward = [&] {
    forwards.fetch_add(1);
    return ok_status();
  };
  options.idle = [&] {
    idles.fetch_add(1);
    return ok_status();
  };
  options.idle_interval = 1ms;
  auto scheduler = make_scheduler(options);
  scheduler->start();
  GenerationRequest r;
  r.prompt = test_prompt(8, vocab(), 3);
  r.max_tokens = 4;
  auto stream = scheduler->submit(r);
  ASSERT_TRUE(stream.ok());
  EXPECT_EQ(collect(**stream)[0].tokens, alone(r.prompt, 4));
  EXPECT_TRUE(moeserve::testing::wait_until([&] { return scheduler->idle(); }, 10s));
  EXPECT_EQ(static_cast<uint64_t>(forwards.load()), scheduler->stats().sequence);
  // With nothing to run the scheduler keeps calling the idle hook.
  const int64_t before = idles.load();
  EXPECT_TRUE(moeserve::testing::wait_until([&] { return idles.load() >= before + 3; }, 10s));
  EXPECT_TRUE(scheduler->failure().ok());
}

TEST_F(SchedulerTest, AFailingGroupHookEndsEveryRequestAndRefusesNewOnes) {
  std::atomic<int64_t> forwards{0};
  SchedulerOptions options;
  options.max_num_seqs = 1;  // the second request waits in the queue
  options.before_forward = [&]() -> Status {
    if (forwards.fetch_add(1) >= 2) return unavailable_error("lost rank 1: test");
    return ok_status();
  };
  auto scheduler = make_scheduler(options);
  GenerationRequest r;
  r.prompt = test_prompt(8, vocab(), 4);
  r.max_tokens = 10;
  auto running = scheduler->submit(r);
  auto queued = scheduler->submit(r);
  ASSERT_TRUE(running.ok() && queued.ok());
  scheduler->start();
  const std::vector<ChoiceResult> first = collect(**running);
  EXPECT_EQ(first[0].finish, FinishReason::kError);
  EXPECT_EQ(first[0].tokens.size(), 2u);  // the two steps before the hook failed
  EXPECT_EQ(collect(**queued)[0].finish, FinishReason::kError);
  EXPECT_EQ(scheduler->failure().code(), StatusCode::kUnavailable);
  EXPECT_NE(scheduler->failure().message().find("lost rank 1"), std::string::npos);
  auto refused = scheduler->submit(r);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("group failed"), std::string::npos);
}

// Runs one request to its end on a started scheduler.
void run_one(Scheduler& scheduler, std::vector<int32_t> prompt, int64_t max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  auto stream = scheduler.submit(r);
  ASSERT_TRUE(stream.ok()) << stream.status().to_string();
  collect(**stream);
}

TEST_F(SchedulerTest, ExpertLoadCountsEveryRoutedTokenOfExactlyTheMoeLayers) {
  auto scheduler = make_scheduler();
  scheduler->start();
  run_one(*scheduler, test_prompt(20, vocab(), 8), 5);
  const model::ModelConfig& c = model_->config;
  const ExpertLoad total = scheduler->expert_load().total();
  ASSERT_FALSE(c.moe_layers().empty());
  EXPECT_EQ(total.layer_indices(), c.moe_layers());
  // 20 prompt tokens + 4 decode steps (the 5th token is sampled, never run).
  const uint64_t routed = 24 * static_cast<uint64_t>(c.num_experts_per_tok);
  for (const LayerExpertTokens& layer : total.layers) {
    ASSERT_EQ(layer.tokens_per_expert.size(), static_cast<size_t>(c.n_routed_experts));
    EXPECT_EQ(layer.total(), routed) << "layer " << layer.layer;
  }
  EXPECT_EQ(total.sequence, 5u);
  EXPECT_EQ(total.sequence, scheduler->stats().sequence);
  const ExpertLoad all = scheduler->expert_load().since(0);
  for (size_t i = 0; i < total.layers.size(); ++i) {
    EXPECT_EQ(all.layers[i].tokens_per_expert, total.layers[i].tokens_per_expert);
  }
  // After the prefill step only the 4 decode tokens remain.
  const ExpertLoad decode = scheduler->expert_load().since(1);
  EXPECT_EQ(decode.layers[0].total(), 4 * static_cast<uint64_t>(c.num_experts_per_tok));
  EXPECT_EQ(decode.sequence, 5u);
}

TEST_F(SchedulerTest, ExpertLoadStaysZeroWithoutRecordedRouting) {
  EngineOptions eo;
  eo.record_routing = false;
  auto scheduler = std::make_unique<Scheduler>(make_engine(model_, eo), SchedulerOptions{});
  scheduler->start();
  run_one(*scheduler, test_prompt(6, vocab(), 3), 2);
  const ExpertLoad total = scheduler->expert_load().total();
  EXPECT_EQ(total.layer_indices(), model_->config.moe_layers());
  for (const LayerExpertTokens& layer : total.layers) EXPECT_EQ(layer.total(), 0u);
  EXPECT_EQ(total.sequence, 2u);  // the steps still count
}

}  // namespace
}  // namespace moeserve::engine
