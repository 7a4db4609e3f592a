#include "worker/engine/expert_load.h"

#include <algorithm>
#include <cstddef>
#include <numeric>

namespace moeserve::engine {

uint64_t LayerExpertTokens::total() const {
  return std::accumulate(tokens_per_expert.begin(), tokens_per_expert.end(), uint64_t{0});
}

std::vector<int64_t> ExpertLoad::layer_indices() const {
  std::vector<int64_t> indices;
  for (const LayerExpertTokens& layer : layers) indices.push_back(layer.layer);
  return indices;
}

ExpertLoadRecorder::ExpertLoadRecorder(const model::ModelConfig& config, ExpertLoadHistory history)
    : layers_(config.moe_layers()),
      experts_(static_cast<size_t>(config.n_routed_experts)),
      limits_(history),
      slot_of_layer_(static_cast<size_t>(config.num_hidden_layers), -1),
      totals_(layers_.size() * experts_, 0) {
  for (size_t slot = 0; slot < layers_.size(); ++slot) {
    slot_of_layer_[static_cast<size_t>(layers_[slot])] = static_cast<int64_t>(slot);
  }
}

void ExpertLoadRecorder::record(uint64_t sequence, std::span<const LayerRouting> routing) {
  // Count outside the lock: readers wait only for the merge.
  std::vector<uint32_t> counts(totals_.size(), 0);
  for (const LayerRouting& lr : routing) {
    if (lr.layer < 0 || lr.layer >= static_cast<int64_t>(slot_of_layer_.size())) continue;
    const int64_t slot = slot_of_layer_[static_cast<size_t>(lr.layer)];
    if (slot < 0) continue;
    for (int32_t e : lr.routing.experts) ++counts[static_cast<size_t>(slot) * experts_ + e];
  }
  Step step{sequence, {}};
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] > 0) step.counts.emplace_back(static_cast<int32_t>(i), counts[i]);
  }

  std::lock_guard<std::mutex> lock(mutex_);
  sequence_ = sequence;
  for (const auto& [index, n] : step.counts) totals_[index] += n;
  history_entries_ += static_cast<int64_t>(step.counts.size());
  history_.push_back(std::move(step));
  while (static_cast<int64_t>(history_.size()) > limits_.max_steps ||
         history_entries_ > limits_.max_entries) {
    history_entries_ -= static_cast<int64_t>(history_.front().counts.size());
    history_.pop_front();
  }
}

ExpertLoad ExpertLoadRecorder::zeros() const {
  ExpertLoad load;
  load.sequence = sequence_;
  for (int64_t layer : layers_) load.layers.push_back({layer, std::vector<uint64_t>(experts_, 0)});
  return load;
}

ExpertLoad ExpertLoadRecorder::total() const {
  std::lock_guard<std::mutex> lock(mutex_);
  ExpertLoad load = zeros();
  for (size_t slot = 0; slot < layers_.size(); ++slot) {
    std::copy_n(totals_.begin() + static_cast<std::ptrdiff_t>(slot * experts_), experts_,
                load.layers[slot].tokens_per_expert.begin());
  }
  return load;
}

ExpertLoad ExpertLoadRecorder::since(uint64_t since_sequence) const {
  std::lock_guard<std::mutex> lock(mutex_);
  ExpertLoad load = zeros();
  for (const Step& step : history_) {
    if (step.sequence <= since_sequence) continue;
    for (const auto& [index, n] : step.counts) {
      load.layers[index / experts_].tokens_per_expert[index % experts_] += n;
    }
  }
  return load;
}

}  // namespace moeserve::engine
