#include "worker/parallel/expert_load.h"

namespace moeserve::parallel {

ExpertLoad::ExpertLoad(int64_t num_layers, int64_t num_experts, int64_t num_slots)
    : num_layers_(num_layers),
      num_experts_(num_experts),
      num_slots_(num_slots),
      logical_(new std::atomic<int64_t>[num_layers * num_experts]()),
      slots_(new std::atomic<int64_t>[num_layers * num_slots]()) {}

void ExpertLoad::add_logical(int64_t layer, int64_t expert, int64_t tokens) {
  logical_[layer * num_experts_ + expert].fetch_add(tokens, std::memory_order_relaxed);
}

void ExpertLoad::add_slot(int64_t layer, int64_t slot, int64_t tokens) {
  slots_[layer * num_slots_ + slot].fetch_add(tokens, std::memory_order_relaxed);
}

ExpertLoadSnapshot ExpertLoad::snapshot() const {
  ExpertLoadSnapshot s{num_layers_, num_experts_, num_slots_, {}, {}};
  for (int64_t i = 0; i < num_layers_ * num_experts_; ++i) {
    s.logical_tokens.push_back(logical_[i].load(std::memory_order_relaxed));
  }
  for (int64_t i = 0; i < num_layers_ * num_slots_; ++i) {
    s.slot_tokens.push_back(slots_[i].load(std::memory_order_relaxed));
  }
  return s;
}

}  // namespace moeserve::parallel
