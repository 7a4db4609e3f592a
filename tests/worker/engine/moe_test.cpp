#include "worker/engine/moe.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/thread_pool.h"

namespace moeserve::engine {
namespace {

float logit(float p) { return std::log(p / (1.0f - p)); }  // sigmoid^-1

TEST(RouteTest, V3SelectsOnBiasedScoresWithinTheBestGroupsAndWeighsUnbiasedScores) {
  RoutingConfig config{.num_experts = 8,
                       .top_k = 2,
                       .n_group = 4,
                       .topk_group = 2,
                       .method = model::TopkMethod::kNoauxTc,
                       .scoring = model::ScoringFunc::kSigmoid,
                       .norm_topk_prob = true,
                       .routed_scaling_factor = 2.5,
                       .always_scale = true};
  // Sigmoid scores per expert (groups of two: {0,1} {2,3} {4,5} {6,7}).
  const std::vector<float> scores = {0.9f, 0.1f, 0.5f, 0.45f, 0.6f, 0.2f, 0.3f, 0.3f};
  // The bias lifts expert 7 (group {6,7} sums 0.3 + 0.7 = 1.0 biased) and lowers 0.
  const std::vector<float> bias = {-0.5f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.4f};
  std::vector<float> logits;
  for (float s : scores) logits.push_back(logit(s));
  // Biased group sums: {0.5}, {0.95}, {0.8}, {1.0} -> groups 3 and 1 kept; the best
  // biased experts there are 7 (0.7) and 2 (0.5).
  const Routing r = route(config, logits.data(), bias.data(), 1);
  ASSERT_EQ(r.experts, (std::vector<int32_t>{7, 2}));
  EXPECT_NEAR(r.weights[0], 0.3f / 0.8f * 2.5f, 1e-5f);
  EXPECT_NEAR(r.weights[1], 0.5f / 0.8f * 2.5f, 1e-5f);
}

TEST(RouteTest, V2GreedySoftmaxWeightsAreScaledProbabilitiesWhenNotNormalised) {
  RoutingConfig config{.num_experts = 5,
                       .top_k = 2,
                       .method = model::TopkMethod::kGreedy,
                       .scoring = model::ScoringFunc::kSoftmax,
                       .norm_topk_prob = false,
                       .routed_scaling_factor = 16.0,
                       .always_scale = false};
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 2.0f, 1.5f};
  std::vector<float> probs = logits;
  kernels::softmax(probs.data(), 5);
  const Routing r = route(config, logits.data(), nullptr, 1);
  ASSERT_EQ(r.experts, (std::vector<int32_t>{1, 3}));  // tie -> lower id first
  EXPECT_NEAR(r.weights[0], probs[1] * 16.0f, 1e-5f);
  EXPECT_NEAR(r.weights[1], probs[3] * 16.0f, 1e-5f);

  config.norm_topk_prob = true;  // V2 normalises instead of scaling
  const Routing n = route(config, logits.data(), nullptr, 1);
  EXPECT_NEAR(n.weights[0], 0.5f, 1e-5f);
}

TEST(RouteTest, V2GroupLimitedGreedyScoresGroupsByTheirBestExpert) {
  RoutingConfig config{.num_experts = 6,
                       .top_k = 2,
                       .n_group = 3,
                       .topk_group = 1,
                       .method = model::TopkMethod::kGroupLimitedGreedy,
                       .scoring = model::ScoringFunc::kSoftmax};
  // Group {2,3} has the single best expert (3) though group {0,1} has the larger sum.
  const std::vector<float> logits = {1.0f, 1.0f, -2.0f, 1.5f, 0.0f, 0.0f};
  const Routing r = route(config, logits.data(), nullptr, 1);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{3, 2}));
}

TEST(LocalExpertDispatcherTest, WeightedSumOfTheChosenExpertsPerToken) {
  const int64_t hidden = 12, inter = 8, experts = 4, tokens = 5, k = 2;
  std::mt19937 gen(3);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  std::vector<std::vector<float>> storage;
  std::vector<MlpWeights> mlps;
  auto matrix = [&](int64_t rows, int64_t cols) {
    storage.emplace_back(rows * cols);
    for (float& v : storage.back()) v = dist(gen);
    return kernels::WeightView{kernels::WeightType::kF32, storage.back().data(), nullptr, rows,
                               cols};
  };
  storage.reserve(3 * experts);
  for (int64_t e = 0; e < experts; ++e) {
    mlps.push_back({matrix(inter, hidden), matrix(inter, hidden), matrix(hidden, inter)});
  }
  std::vector<float> x(tokens * hidden);
  for (float& v : x) v = dist(gen);
  Routing routing{.tokens = tokens,
                  .top_k = k,
                  .experts = {0, 3, 3, 1, 2, 0, 3, 2, 1, 0},
                  .weights = {0.7f, 0.3f, 1.5f, 0.2f, 0.9f, 0.4f, 1.0f, 1.0f, 0.25f, 2.0f}};

  // Serially; on 2 threads (4 experts: whole experts per thread); on 3 (fewer than two
  // experts per thread: every expert's rows split over the pool). All the same, bit for bit.
  std::vector<float> serial(tokens * hidden), out;
  LocalExpertDispatcher alone({{}, mlps}, hidden, nullptr);
  ASSERT_TRUE(alone.dispatch(1, x.data(), routing, serial.data()).ok());
  for (int threads : {2, 3}) {
    kernels::ThreadPool pool(threads);
    LocalExpertDispatcher dispatcher({{}, mlps}, hidden, &pool);
    out.assign(tokens * hidden, NAN);
    ASSERT_TRUE(dispatcher.dispatch(1, x.data(), routing, out.data()).ok());
    EXPECT_EQ(out, serial) << threads << " threads";
  }
  out = serial;

  // Reference: each (token, expert) pair on its own, in double.
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<double> expected(hidden, 0.0);
    for (int64_t i = 0; i < k; ++i) {
      const MlpWeights& m = mlps[routing.experts[t * k + i]];
      auto w = [](const kernels::WeightView& v, int64_t r, int64_t c) {
        return static_cast<const float*>(v.data)[r * v.cols + c];
      };
      std::vector<double> act(inter);
      for (int64_t j = 0; j < inter; ++j) {
        double g = 0, u = 0;
        for (int64_t c = 0; c < hidden; ++c) {
          g += w(m.gate, j, c) * x[t * hidden + c];
          u += w(m.up, j, c) * x[t * hidden + c];
        }
        act[j] = g / (1.0 + std::exp(-g)) * u;
      }
      for (int64_t r = 0; r < hidden; ++r) {
        double d = 0;
        for (int64_t j = 0; j < inter; ++j) d += w(m.down, r, j) * act[j];
        expected[r] += routing.weights[t * k + i] * d;
      }
    }
    for (int64_t r = 0; r < hidden; ++r) {
      EXPECT_NEAR(out[t * hidden + r], expected[r], 1e-4) << "token " << t << " row " << r;
    }
  }

  EXPECT_EQ(alone.dispatch(0, x.data(), routing, out.data()).code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace moeserve::engine
