// ExpertParallelDispatcher on real gloo groups (threads of this process): for random
// hidden states and random routings, the dispatched-and-combined result equals the
// local dispatcher over all experts, with default and redundant placements, with
// ranks holding different token counts (one holding none).
#include "worker/engine/expert_parallel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <random>
#include <thread>

#include "kernels/cpu/thread_pool.h"
#include "tests/support/test_util.h"
#include "tests/worker/engine/tiny_engine.h"
#include "worker/engine/linear.h"
#include "worker/parallel/group.h"

namespace moeserve::engine {
namespace {

using std::chrono::milliseconds;

// Tolerance: both sides run the same expert kernels on the same rows, but a rank's
// expert sees a different number of rows than in the single-process batch, which can
// change the kernel's blocking (and so the f32 summation order) by a few ulps.
constexpr float kTolerance = 1e-5f;

struct Case {
  int world_size;
  std::string placement;  // JSON, empty for contiguous blocks
};

class ExpertParallelDispatch : public ::testing::TestWithParam<Case> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new moeserve::testing::TempDir();
    model_ = testing::make_tiny_model(dir_->path(), model::Architecture::kDeepseekV3,
                                      model::WeightPrecision::kBf16, 7);
  }
  static void TearDownTestSuite() {
    model_.reset();
    delete dir_;
  }
  static moeserve::testing::TempDir* dir_;
  static std::shared_ptr<const model::LoadedModel> model_;
};
moeserve::testing::TempDir* ExpertParallelDispatch::dir_ = nullptr;
std::shared_ptr<const model::LoadedModel> ExpertParallelDispatch::model_;

Routing random_routing(int64_t tokens, int64_t experts, int64_t k, std::mt19937& rng) {
  Routing r;
  r.tokens = tokens;
  r.top_k = k;
  std::vector<int32_t> ids(experts);
  std::uniform_real_distribution<float> weight(0.1f, 1.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    for (int64_t i = 0; i < k; ++i) {
      r.experts.push_back(ids[i]);
      r.weights.push_back(weight(rng));
    }
  }
  return r;
}

TEST_P(ExpertParallelDispatch, EqualsLocalDispatchOverAllExperts) {
  const Case c = GetParam();
  const model::ModelConfig& config = model_->config;
  const int64_t hidden = config.hidden_size;
  const std::vector<int64_t> layers = config.moe_layers();
  ASSERT_FALSE(layers.empty());
  const uint16_t port = moeserve::testing::free_port();

  auto rank_main = [&](int rank) {
    parallel::GroupOptions options;
    options.rank = rank;
    options.world_size = c.world_size;
    options.leader = "127.0.0.1:" + std::to_string(port);
    options.rendezvous_timeout = milliseconds(10000);
    options.collective_timeout = milliseconds(10000);
    auto group = parallel::Group::join(options);
    ASSERT_TRUE(group.ok()) << group.status().to_string();
    auto placement =
        c.placement.empty()
            ? parallel::ExpertPlacement::contiguous(c.world_size, config.n_routed_experts, layers)
            : parallel::ExpertPlacement::parse(c.placement, "test", c.world_size,
                                               config.n_routed_experts, layers);
    ASSERT_TRUE(placement.ok()) << placement.status().to_string();
    kernels::ThreadPool pool(1);
    auto ep = ExpertParallelDispatcher::create(&(*group)->comm(), std::move(placement).value(),
                                               config, model_->weights, &pool);
    ASSERT_TRUE(ep.ok()) << ep.status().to_string();

    std::vector<std::vector<MlpWeights>> all(model_->weights.layers.size());
    for (int64_t layer : layers) {
      for (const model::Mlp& e : model_->weights.layers[layer].moe.experts) {
        all[layer].push_back({to_view(e.gate_proj), to_view(e.up_proj), to_view(e.down_proj)});
      }
    }
    LocalExpertDispatcher reference(all, hidden, &pool);

    // Rank r has 3 * r tokens in the first layer (rank 0 none), 5 - r in the others.
    std::mt19937 rng(100 + rank);
    std::normal_distribution<float> normal;
    for (size_t l = 0; l < layers.size(); ++l) {
      const int64_t tokens = l == 0 ? 3 * rank : 5 - rank;
      std::vector<float> x(tokens * hidden);
      for (float& v : x) v = normal(rng);
      const Routing routing =
          random_routing(tokens, config.n_routed_experts, config.num_experts_per_tok, rng);
      std::vector<float> got(tokens * hidden, -1.0f), want(tokens * hidden);
      ASSERT_TRUE((*ep)->dispatch(layers[l], x.data(), routing, got.data()).ok());
      ASSERT_TRUE(reference.dispatch(layers[l], x.data(), routing, want.data()).ok());
      float worst = 0.0f;
      for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
      EXPECT_LE(worst, kTolerance) << "rank " << rank << " layer " << layers[l];
    }
    ASSERT_TRUE((*ep)->idle_step().ok());  // all ranks at once: nothing moves, nothing hangs
    // Keep rank 0's store up until every rank is done.
    ASSERT_TRUE((*group)->comm().barrier().ok());
  };
  std::vector<std::thread> threads;
  for (int r = 0; r < c.world_size; ++r) threads.emplace_back(rank_main, r);
  for (std::thread& t : threads) t.join();
}

// 16 experts; the redundant placements add replicas of experts 0-3 (20 slots).
INSTANTIATE_TEST_SUITE_P(
    Placements, ExpertParallelDispatch,
    ::testing::Values(
        Case{1, ""}, Case{2, ""}, Case{4, ""},
        Case{
            2,
            R"({"version":1,"layers":[{"phy2log":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,0,1,2,3]}]})"},
        Case{
            4,
            R"({"version":1,"layers":[{"phy2log":[15,14,13,12,11,10,9,8,7,6,5,4,3,2,1,0,3,2,1,0]}]})"}));

}  // namespace
}  // namespace moeserve::engine

namespace moeserve::engine {
namespace {

// Serving shape: all sequences on rank 0, rank 1 follows; logits equal one engine's.
TEST(LeaderFollower, RankZeroForwardsWhileRankOneLendsItsExperts) {
  moeserve::testing::TempDir dir;
  auto model = testing::make_tiny_model(dir.path(), model::Architecture::kDeepseekV3,
                                        model::WeightPrecision::kFp8, 5);
  ASSERT_NE(model, nullptr);
  const std::vector<int32_t> prompt = testing::test_prompt(9, 512);
  std::vector<float> want;
  {
    auto engine = testing::make_engine(model);
    SequenceKv seq;
    want = testing::forward_all(*engine, seq, prompt);
    engine->kv_cache().release(seq);
  }
  const uint16_t port = moeserve::testing::free_port();
  std::vector<float> got;
  auto rank_main = [&](int rank) {
    parallel::GroupOptions o;
    o.rank = rank;
    o.world_size = 2;
    o.leader = "127.0.0.1:" + std::to_string(port);
    auto group = parallel::Group::join(o);
    ASSERT_TRUE(group.ok()) << group.status().to_string();
    auto engine = testing::make_engine(model);
    auto placement = parallel::ExpertPlacement::contiguous(2, model->config.n_routed_experts,
                                                           model->config.moe_layers());
    ASSERT_TRUE(placement.ok());
    auto dispatcher =
        attach_expert_parallel(*engine, (*group)->comm(), std::move(placement).value());
    ASSERT_TRUE(dispatcher.ok()) << dispatcher.status().to_string();
    if (rank == 1) {
      EXPECT_TRUE(follow_leader((*group)->comm(), **dispatcher).ok());
      return;
    }
    LeaderStepper leader((*group)->comm());
    ASSERT_TRUE(leader.heartbeat().ok());
    ASSERT_TRUE(leader.begin_forward().ok());
    SequenceKv seq;
    got = testing::forward_all(*engine, seq, prompt);
    engine->kv_cache().release(seq);
    ASSERT_TRUE(leader.stop().ok());
  };
  std::thread follower(rank_main, 1);
  rank_main(0);
  follower.join();
  ASSERT_EQ(got.size(), want.size());
  float worst = 0.0f;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
  EXPECT_LE(worst, 1e-4f);
}

}  // namespace
}  // namespace moeserve::engine
