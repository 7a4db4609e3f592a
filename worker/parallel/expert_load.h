// Per-rank expert load counters: tokens each MoE layer routed to each logical expert
// from this rank's batch, and tokens each physical slot of this rank ran (from every
// rank's batch). Summed over the ranks of a group, both give the group's load; the
// logical counts feed moeserve_expert_tokens_total{layer,expert} and GetStats, and
// the slot counts are what a placement planner balances.
//
// Counters only grow. add_*() are called by the thread that drives the engine;
// snapshot() may be called from any thread at any time (relaxed atomics: each counter
// is exact, a snapshot taken mid-step may mix two steps).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace moeserve::parallel {

struct ExpertLoadSnapshot {
  int64_t num_layers = 0;               // decoder layers (non-MoE layers stay zero)
  int64_t num_experts = 0;              // logical experts per layer
  int64_t num_slots = 0;                // physical slots per layer, across the group
  std::vector<int64_t> logical_tokens;  // [layer * num_experts + expert]
  std::vector<int64_t> slot_tokens;     // [layer * num_slots + slot]
};

class ExpertLoad {
 public:
  ExpertLoad(int64_t num_layers, int64_t num_experts, int64_t num_slots);

  void add_logical(int64_t layer, int64_t expert, int64_t tokens);
  void add_slot(int64_t layer, int64_t slot, int64_t tokens);
  ExpertLoadSnapshot snapshot() const;

 private:
  int64_t num_layers_, num_experts_, num_slots_;
  std::unique_ptr<std::atomic<int64_t>[]> logical_;
  std::unique_ptr<std::atomic<int64_t>[]> slots_;
};

}  // namespace moeserve::parallel
