// ExpertLoadRecorder: counts each routed (token, expert) of exactly the model's MoE
// layers, windows by step over a bounded history, and hands readers on other threads
// whole steps.
#include "worker/engine/expert_load.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace moeserve::engine {
namespace {

// 6 decoder layers, layer 0 dense, every 2nd MoE: MoE layers 2 and 4; layer 6 is MTP.
model::ModelConfig freq_two_config() {
  model::ModelConfig c;
  c.num_hidden_layers = 6;
  c.num_nextn_predict_layers = 1;
  c.n_routed_experts = 4;
  c.num_experts_per_tok = 2;
  c.first_k_dense_replace = 1;
  c.moe_layer_freq = 2;
  return c;
}

// One layer's routing of tokens with top-2 experts `experts` (two per token).
LayerRouting routed(int64_t layer, std::vector<int32_t> experts) {
  LayerRouting lr;
  lr.layer = layer;
  lr.routing.top_k = 2;
  lr.routing.tokens = static_cast<int64_t>(experts.size()) / 2;
  lr.routing.weights.assign(experts.size(), 0.5f);
  lr.routing.experts = std::move(experts);
  return lr;
}

TEST(ExpertLoadRecorder, StartsWithEveryMoeLayerAtZero) {
  const ExpertLoadRecorder recorder(freq_two_config());
  const ExpertLoad load = recorder.total();
  EXPECT_EQ(load.sequence, 0u);
  EXPECT_EQ(load.layer_indices(), (std::vector<int64_t>{2, 4}));
  for (const LayerExpertTokens& layer : load.layers) {
    EXPECT_EQ(layer.tokens_per_expert, std::vector<uint64_t>(4, 0));
  }
}

TEST(ExpertLoadRecorder, ADenseModelHasNoLayers) {
  model::ModelConfig dense = freq_two_config();
  dense.n_routed_experts = 0;
  ExpertLoadRecorder recorder(dense);
  recorder.record(1, {});
  EXPECT_TRUE(recorder.total().layers.empty());
  EXPECT_EQ(recorder.total().sequence, 1u);
}

TEST(ExpertLoadRecorder, TotalCountsEachRoutedExpertOfEachMoeLayer) {
  ExpertLoadRecorder recorder(freq_two_config());
  recorder.record(1, std::vector<LayerRouting>{routed(2, {0, 1, 0, 3}), routed(4, {2, 3, 3, 1})});
  recorder.record(2, std::vector<LayerRouting>{routed(2, {1, 0}), routed(4, {3, 2})});
  const ExpertLoad load = recorder.total();
  EXPECT_EQ(load.sequence, 2u);
  ASSERT_EQ(load.layers.size(), 2u);
  EXPECT_EQ(load.layers[0].tokens_per_expert, (std::vector<uint64_t>{3, 2, 0, 1}));
  EXPECT_EQ(load.layers[1].tokens_per_expert, (std::vector<uint64_t>{0, 1, 2, 3}));
  EXPECT_EQ(load.layers[1].total(), 3u * 2u);  // tokens * num_experts_per_tok
}

TEST(ExpertLoadRecorder, RoutingOfOtherLayersIsNotCounted) {
  ExpertLoadRecorder recorder(freq_two_config());
  // Layer 3 is dense under the Hugging Face rule; layer 6 is the MTP layer.
  recorder.record(1, std::vector<LayerRouting>{routed(3, {0, 1}), routed(6, {2, 3})});
  for (const LayerExpertTokens& layer : recorder.total().layers) EXPECT_EQ(layer.total(), 0u);
  EXPECT_EQ(recorder.total().sequence, 1u);
}

TEST(ExpertLoadRecorder, SinceSumsTheStepsAfterASequence) {
  ExpertLoadRecorder recorder(freq_two_config());
  recorder.record(1, std::vector<LayerRouting>{routed(2, {0, 1})});
  recorder.record(2, std::vector<LayerRouting>{routed(2, {2, 3})});
  recorder.record(3, std::vector<LayerRouting>{routed(4, {0, 3})});
  EXPECT_EQ(recorder.since(0).layers[0].tokens_per_expert, (std::vector<uint64_t>{1, 1, 1, 1}));
  const ExpertLoad after_one = recorder.since(1);
  EXPECT_EQ(after_one.sequence, 3u);
  EXPECT_EQ(after_one.layers[0].tokens_per_expert, (std::vector<uint64_t>{0, 0, 1, 1}));
  EXPECT_EQ(after_one.layers[1].tokens_per_expert, (std::vector<uint64_t>{1, 0, 0, 1}));
  const ExpertLoad none = recorder.since(3);
  EXPECT_EQ(none.layer_indices(), (std::vector<int64_t>{2, 4}));
  for (const LayerExpertTokens& layer : none.layers) EXPECT_EQ(layer.total(), 0u);
}

TEST(ExpertLoadRecorder, HistoryKeepsOnlyTheLastStepsButTotalKeepsAll) {
  ExpertLoadRecorder recorder(freq_two_config(), ExpertLoadHistory{.max_steps = 2});
  for (uint64_t step = 1; step <= 3; ++step) {
    recorder.record(step, std::vector<LayerRouting>{routed(2, {0, 1})});
  }
  EXPECT_EQ(recorder.since(0).layers[0].total(), 2u * 2u);  // steps 2 and 3
  EXPECT_EQ(recorder.total().layers[0].total(), 3u * 2u);
}

TEST(ExpertLoadRecorder, HistoryDropsTheOldestStepsBeyondItsEntryLimit) {
  // Each step below has 2 nonzero (layer, expert) counts; 3 entries hold one step.
  ExpertLoadRecorder recorder(freq_two_config(), ExpertLoadHistory{.max_entries = 3});
  recorder.record(1, std::vector<LayerRouting>{routed(2, {0, 1})});
  recorder.record(2, std::vector<LayerRouting>{routed(2, {2, 3})});
  EXPECT_EQ(recorder.since(0).layers[0].tokens_per_expert, (std::vector<uint64_t>{0, 0, 1, 1}));
}

TEST(ExpertLoadRecorder, ReadersOnOtherThreadsSeeWholeSteps) {
  ExpertLoadRecorder recorder(freq_two_config());
  constexpr uint64_t kSteps = 2000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (uint64_t step = 1; step <= kSteps; ++step) {
      recorder.record(step, std::vector<LayerRouting>{routed(2, {0, 1}), routed(4, {2, 3})});
    }
    done.store(true);
  });
  while (!done.load()) {
    const ExpertLoad load = recorder.total();
    ASSERT_EQ(load.layers[0].total(), 2 * load.sequence);
    ASSERT_EQ(load.layers[1].total(), 2 * load.sequence);
  }
  writer.join();
  EXPECT_EQ(recorder.total().sequence, kSteps);
}

}  // namespace
}  // namespace moeserve::engine
