// Expert parallelism on an Engine: the MoE layers' routed experts are sharded over the
// ranks of a parallel::Group by an ExpertPlacement, while attention, dense layers and
// shared experts run data-parallel (each rank forwards its own sequences).
//
// The sharded layers are the model's bound MoE layers (ModelWeights::moe_layers()): the
// MTP module's MoE block too when it is loaded, under its checkpoint layer index, so a
// placement covers it like any other layer.
//
// ExpertParallelDispatcher replaces the engine's local dispatch. At each MoE layer:
//   1. dispatch: each (token, expert) assignment goes to the slot choose_slot() picks
//      (replicas split tokens round-robin); the token's hidden state (f32) with the
//      slot id is all-to-all'ed to the rank holding that slot;
//   2. each rank runs its own slots' experts over every row it received (from all
//      ranks), grouped by slot so each expert's weights are read once per layer;
//   3. combine: the expert outputs are all-to-all'ed back, and each token's outputs
//      are weighted and summed in ascending expert order (the order the local
//      dispatcher sums in, so one rank reproduces the single-process numbers).
// Every rank must run the same MoE layers in the same order: a rank with no tokens in
// a step calls idle_step() (all MoE layers with zero tokens), so it still sends its
// (empty) share and runs the experts other ranks routed to it (group_step.h says
// when). Collective failures (a lost rank) come back as the dispatch Status, naming the
// rank.
//
// Each rank executes only its own slots' experts. Weights stay memory-mapped as the
// model loader bound them (with prefault every rank touches all pages; without it only
// the pages of experts it runs become resident).
//
// It keeps no expert-load counts: the scheduler's ExpertLoadRecorder (expert_load.h) is
// the worker's one account. Not thread-safe: the engine's driving thread calls it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "worker/engine/engine.h"
#include "worker/engine/moe.h"
#include "worker/parallel/communicator.h"
#include "worker/parallel/placement.h"

namespace moeserve::engine {

class ExpertParallelDispatcher : public ExpertDispatcher {
 public:
  // `comm` and `pool` must outlive the dispatcher; `weights` too (views into them).
  // invalid_argument when the placement's layers are not weights.moe_layers().
  static StatusOr<std::unique_ptr<ExpertParallelDispatcher>> create(
      parallel::Communicator* comm, parallel::ExpertPlacement placement,
      const model::ModelConfig& config, const model::ModelWeights& weights,
      kernels::ThreadPool* pool);

  Status dispatch(int64_t layer, const float* x, const Routing& routing, float* out) override;
  // Joins every main MoE layer's collectives with no tokens of its own (an engine
  // forward on another rank).
  Status idle_step() { return idle_layers(/*mtp=*/false); }
  // The same for the MTP layers' MoE (an Engine::mtp_forward on another rank).
  Status idle_mtp_step() { return idle_layers(/*mtp=*/true); }

  const parallel::ExpertPlacement& placement() const { return placement_; }

 private:
  ExpertParallelDispatcher(parallel::Communicator* comm, parallel::ExpertPlacement placement,
                           std::vector<std::vector<MlpWeights>> local_experts,
                           int64_t num_main_layers, int64_t hidden, int64_t top_k,
                           kernels::ThreadPool* pool);
  Status idle_layers(bool mtp);

  parallel::Communicator* comm_;
  parallel::ExpertPlacement placement_;
  LocalExpertDispatcher local_;  // this rank's slots, by local slot index
  int64_t num_main_layers_;      // layers at or past this index are MTP layers
  int64_t hidden_;
  int64_t top_k_;
  // Scratch.
  std::vector<int64_t> order_;     // assignment at each packed send position
  std::vector<int64_t> position_;  // packed position of each assignment
  std::vector<float> send_, recv_, local_x_, local_y_, results_;
};

// Swaps an ExpertParallelDispatcher into `engine`; returns it (owned by the engine).
StatusOr<ExpertParallelDispatcher*> attach_expert_parallel(Engine& engine,
                                                           parallel::Communicator& comm,
                                                           parallel::ExpertPlacement placement);

}  // namespace moeserve::engine
