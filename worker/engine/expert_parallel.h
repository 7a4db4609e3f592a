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
// Logical expert load is not kept here: the scheduler's ExpertLoadRecorder
// (expert_load.h) is the worker's one account of it. What is kept here is the physical
// side: the tokens this rank sent to each slot of each main MoE layer (slot_tokens()),
// so the load every rank really carried, replicas included, is known (in a serving
// group rank 0 routes every token, so its counts are the group's).
//
// Live placement switch (placement_switch.h): bind_slots() builds a rank's views for a
// new placement without touching the running one; switch_to() replaces placement and
// views at a step boundary. Not thread-safe (the engine's driving thread calls
// dispatch, idle_step and switch_to), except slot_tokens(), which any thread may call.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
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
  const model::ModelConfig& config() const { return *config_; }
  const model::ModelWeights& weights() const { return *weights_; }
  int rank() const { return comm_->rank(); }

  // Views of `rank`'s slots under `placement`, indexed [layer][local slot] (the layout
  // dispatch runs on). invalid_argument when the placement does not fit the model and
  // world (the checks of create()).
  static StatusOr<std::vector<std::vector<MlpWeights>>> bind_slots(
      const parallel::ExpertPlacement& placement, int world_size, int rank,
      const model::ModelConfig& config, const model::ModelWeights& weights);
  // Runs `placement` from the next dispatch on; `local` is bind_slots() of it for this
  // rank. Every rank of the group must switch before the same forward.
  void switch_to(parallel::ExpertPlacement placement, std::vector<std::vector<MlpWeights>> local);

  // Tokens this rank dispatched to each slot, [main MoE layer entry][slot], cumulative
  // since start (a switch keeps the counts: a slot index names a position on a rank,
  // whatever expert it holds). Thread-safe.
  struct SlotTokens {
    std::vector<int64_t> layers;                // decoder layer of each entry
    std::vector<std::vector<uint64_t>> tokens;  // [entry][slot]
    int64_t slots_per_rank = 1;                 // of the running placement
  };
  SlotTokens slot_tokens() const;
  // This rank's slots' weight views, [layer][local slot] (bind_slots() of the running
  // placement, pointing at copies where the placement switch made them).
  const std::vector<std::vector<MlpWeights>>& local_slots() const { return local_->experts(); }

 private:
  ExpertParallelDispatcher(parallel::Communicator* comm, parallel::ExpertPlacement placement,
                           std::vector<std::vector<MlpWeights>> local_experts,
                           const model::ModelConfig& config, const model::ModelWeights& weights,
                           kernels::ThreadPool* pool);
  Status idle_layers(bool mtp);
  void count_slots(int64_t layer, const std::vector<int64_t>& slot_of);

  parallel::Communicator* comm_;
  parallel::ExpertPlacement placement_;
  const model::ModelConfig* config_;
  const model::ModelWeights* weights_;
  kernels::ThreadPool* pool_;
  std::optional<LocalExpertDispatcher> local_;  // this rank's slots, by local slot index
  int64_t num_main_layers_;                     // layers at or past this index are MTP layers
  int64_t hidden_;
  int64_t top_k_;
  // Scratch.
  std::vector<int64_t> order_;     // assignment at each packed send position
  std::vector<int64_t> position_;  // packed position of each assignment
  std::vector<float> send_, recv_, local_x_, local_y_, results_;

  mutable std::mutex slot_mutex_;
  SlotTokens slot_tokens_;
};

// Swaps an ExpertParallelDispatcher into `engine`; returns it (owned by the engine).
StatusOr<ExpertParallelDispatcher*> attach_expert_parallel(Engine& engine,
                                                           parallel::Communicator& comm,
                                                           parallel::ExpertPlacement placement);

}  // namespace moeserve::engine
