// ExpertLoadRecorder: the worker's one account of expert load, the tokens the router
// sent to each logical expert of each MoE layer.
//
// Who writes: the scheduler thread, once per completed forward step, with the routing
// that step's ForwardOutput carries (the engine returns it with
// EngineOptions::record_routing; without it every count stays zero). Who reads:
// WorkerMetrics (moeserve_expert_tokens_total, from total()) and the control service
// (GetStats, from since()), on their own threads. Thread-safe: record() and the readers
// take one mutex, so a snapshot always holds whole steps and its `sequence` is the last
// step it includes.
//
// What the numbers mean: a token counts once for each expert it is routed to in each
// MoE layer, so a layer's counts sum to its tokens * num_experts_per_tok. Prefill and
// decode tokens count alike; a prompt recomputed after a preemption counts again (it
// ran again). The layers are ModelConfig::moe_layers(); routing of any other layer
// (an MTP layer) is not counted. In an expert-parallel group rank 0's scheduler routes
// every token of the group, so rank 0's account is the group's load; the other ranks
// keep none.
//
// Windows: the per-step counts of the most recent steps are retained (at most
// ExpertLoadHistory::max_steps steps and max_entries nonzero (step, layer, expert)
// counts; the oldest step goes first). since(s) sums the retained steps after s: exact
// unless steps after s were already dropped.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "worker/engine/engine.h"
#include "worker/model/config.h"

namespace moeserve::engine {

// Tokens routed to each expert of one MoE layer.
struct LayerExpertTokens {
  int64_t layer = 0;                        // decoder layer index
  std::vector<uint64_t> tokens_per_expert;  // indexed by logical expert id
  uint64_t total() const;                   // summed over the experts
};

// A snapshot of the account.
struct ExpertLoad {
  uint64_t sequence = 0;                  // the last step included (0: none yet)
  std::vector<LayerExpertTokens> layers;  // one per MoE layer, ascending
  // The decoder layer index of each entry of `layers`.
  std::vector<int64_t> layer_indices() const;
};

struct ExpertLoadHistory {
  int64_t max_steps = 4096;
  int64_t max_entries = int64_t{1} << 20;
};

class ExpertLoadRecorder {
 public:
  explicit ExpertLoadRecorder(const model::ModelConfig& config, ExpertLoadHistory history = {});
  ExpertLoadRecorder(const ExpertLoadRecorder&) = delete;
  ExpertLoadRecorder& operator=(const ExpertLoadRecorder&) = delete;

  // Adds the routing of step `sequence` (increasing from 1, one per forward step; a step
  // without routing still advances the sequence).
  void record(uint64_t sequence, std::span<const LayerRouting> routing);

  // Tokens per expert since the start.
  ExpertLoad total() const;
  // Tokens per expert over the retained steps after `since_sequence` (0: all retained).
  ExpertLoad since(uint64_t since_sequence) const;

 private:
  struct Step {
    uint64_t sequence = 0;
    std::vector<std::pair<int32_t, uint32_t>> counts;  // (layer slot * experts + expert, n)
  };
  // Every MoE layer with all counts 0, at sequence_ (call with mutex_ held).
  ExpertLoad zeros() const;

  const std::vector<int64_t> layers_;  // decoder layer index of each slot
  const size_t experts_;
  const ExpertLoadHistory limits_;
  std::vector<int64_t> slot_of_layer_;  // decoder layer -> slot, or -1

  mutable std::mutex mutex_;
  uint64_t sequence_ = 0;
  std::vector<uint64_t> totals_;  // [slot * experts + expert]
  std::deque<Step> history_;
  int64_t history_entries_ = 0;
};

}  // namespace moeserve::engine
