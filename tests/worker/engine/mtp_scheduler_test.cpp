// MtpDrafter inside the Scheduler's speculative decoding: greedy outputs are the tokens
// each request generates alone without speculation, for concurrent requests with chunked
// prefill, k = 1..3, BF16 and FP8, and a prefix-cache hit; the agreeing module's drafts
// are accepted almost always, a random module's almost never (output unchanged).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "tests/worker/engine/reference_generate.h"
#include "tests/worker/engine/tiny_engine.h"
#include "worker/engine/mtp_drafter.h"
#include "worker/engine/scheduler.h"

namespace moeserve::engine {
namespace {

using namespace std::chrono_literals;

std::vector<int32_t> read_tokens(RequestStream& stream) {
  std::vector<int32_t> tokens;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!stream.done() && std::chrono::steady_clock::now() < deadline) {
    for (const GenerationEvent& e : stream.next(100ms)) {
      if (e.has_token) tokens.push_back(e.sample.token);
      EXPECT_TRUE(e.error.ok()) << e.error.to_string();
    }
  }
  EXPECT_TRUE(stream.done());
  return tokens;
}

struct Case {
  model::WeightPrecision precision;
  std::optional<double> agreement;  // unset: random MTP weights
  int32_t k;
  const char* name;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class MtpScheduler : public ::testing::TestWithParam<Case> {};

TEST_P(MtpScheduler, GreedyOutputEqualsNoSpeculationAndAcceptanceFollowsTheModule) {
  const Case c = GetParam();
  moeserve::testing::TempDir dir;
  auto model = testing::make_tiny_model(
      dir.path(), {.precision = c.precision, .seed = 9, .mtp_agreement = c.agreement},
      /*load_mtp=*/true);
  ASSERT_NE(model, nullptr);
  auto engine = testing::make_engine(model, {.kv_cache_tokens = 4096});
  auto drafter = MtpDrafter::create(engine.get());
  ASSERT_TRUE(drafter.ok()) << drafter.status().to_string();
  SchedulerOptions options;
  options.max_num_batched_tokens = 48;  // the long prompts prefill in chunks
  options.drafter = std::move(drafter).value();
  options.num_draft_tokens = c.k;
  options.spec_min_acceptance = 0.0;  // keep drafting with the random module too
  Scheduler scheduler(std::move(engine), options);
  scheduler.start();

  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 5; ++i) prompts.push_back(testing::test_prompt(6 + 17 * i, 512, 30 + i));
  prompts.push_back(prompts[4]);  // a prefix-cache hit, drafted from past position 0
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationRequest r;
    r.prompt = prompts[i];
    r.max_tokens = 14 + static_cast<int64_t>(i);
    if (i + 1 == prompts.size()) read_tokens(*streams[4]);  // let request 4 fill the cache
    auto stream = scheduler.submit(r);
    ASSERT_TRUE(stream.ok()) << stream.status().to_string();
    streams.push_back(*stream);
  }
  auto reference = testing::make_engine(model);
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (i == 4) continue;  // read above
    const std::vector<int32_t> got = read_tokens(*streams[i]);
    const auto want = testing::reference_generate(
        *reference, {.prompt = prompts[i], .max_tokens = 14 + static_cast<int64_t>(i)});
    EXPECT_EQ(got, want.tokens) << "request " << i;
  }
  const SchedulerStats stats = scheduler.stats();
  EXPECT_GT(stats.prefix_cache_hit_tokens_total, 0);
  ASSERT_GT(stats.spec_draft_tokens_total, 40);
  const double acceptance = static_cast<double>(stats.spec_accepted_tokens_total) /
                            static_cast<double>(stats.spec_draft_tokens_total);
  RecordProperty("acceptance", std::to_string(acceptance));
  if (c.agreement.has_value()) {
    EXPECT_GE(acceptance, 0.9) << stats.spec_accepted_tokens_total << " of "
                               << stats.spec_draft_tokens_total;
  } else {
    EXPECT_LE(acceptance, 0.1) << stats.spec_accepted_tokens_total << " of "
                               << stats.spec_draft_tokens_total;
  }
  scheduler.stop();
}

INSTANTIATE_TEST_SUITE_P(
    Modules, MtpScheduler,
    ::testing::Values(Case{model::WeightPrecision::kBf16, 1.0, 1, "AgreeingBf16K1"},
                      Case{model::WeightPrecision::kBf16, 1.0, 3, "AgreeingBf16K3"},
                      Case{model::WeightPrecision::kFp8, 1.0, 2, "AgreeingFp8K2"},
                      Case{model::WeightPrecision::kFp8, std::nullopt, 1, "RandomFp8K1"},
                      Case{model::WeightPrecision::kBf16, std::nullopt, 3, "RandomBf16K3"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace moeserve::engine
