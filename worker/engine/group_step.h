// The group protocol of an expert-parallel rank group: every request runs on rank 0's
// Scheduler (rank 0 owns the batch; the other ranks only lend their experts).
//
// Before each engine forward rank 0 broadcasts kForward and each follower answers with
// ExpertParallelDispatcher::idle_step(), so every rank joins that forward's MoE
// collectives; before each Engine::mtp_forward (the MTP drafter's) it broadcasts
// kMtpForward and the followers answer with idle_mtp_step(). While idle, rank 0 sends kHeartbeat at
// least every collective timeout / 3 so that the followers' wait never times out; kStop ends
// follow_leader() with ok. A lost leader fails the follower's wait (and a lost follower fails rank
// 0's next step) within the collective timeout, naming the rank.
//
// attach_group_experts() is the engine side of joining: it swaps an
// ExpertParallelDispatcher over the group into the engine, with the placement read
// from a file or contiguous blocks. Both `generate` and `serve` run exactly this. With
// the MTP module loaded its MoE layer is one of the placement's layers: a placement file
// has one entry per main MoE layer plus one for it (last), or one entry for all, or one
// per main MoE layer only (the operator's, written from the expert-load account, which
// does not count MTP routing): the MTP layer then takes the last main layer's entry.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/engine/engine.h"
#include "worker/engine/expert_parallel.h"
#include "worker/engine/placement_switch.h"
#include "worker/engine/scheduler.h"
#include "worker/parallel/communicator.h"

namespace moeserve::engine {

enum class StepKind : int64_t {
  kForward = 1,
  kHeartbeat = 2,
  kStop = 3,
  kMtpForward = 4,
  kPlacementPrepare = 5,
  kPlacementPoll = 6,
};

// Offers a new placement file text when there is one to consider (rank 0's watch of
// --placement); nullopt otherwise.
using PlacementSource = std::function<std::optional<std::string>()>;

// Rank 0 side. Not thread-safe: the scheduler thread calls it, before each
// engine.forward() and when idle; stop() once, after the scheduler stopped.
class LeaderStepper {
 public:
  explicit LeaderStepper(parallel::Communicator& comm) : comm_(comm) {}
  // `placement` (rank 0's switch) must outlive the stepper.
  void enable_live_placement(PlacementSwitch* placement, PlacementSource source);
  Status begin_forward();
  Status begin_mtp_forward() { return send(StepKind::kMtpForward); }
  Status heartbeat();
  Status stop() { return send(StepKind::kStop); }

 private:
  Status send(StepKind kind);
  Status step_boundary();
  parallel::Communicator& comm_;
  PlacementSwitch* placement_ = nullptr;
  PlacementSource source_;
};

// Sets the scheduler's group hooks (before_forward, idle, idle_interval) to drive
// `leader`, heartbeating every collective_timeout_ms / 3. `leader` must outlive the
// scheduler.
void install_leader_hooks(LeaderStepper& leader, int64_t collective_timeout_ms,
                          SchedulerOptions& options);

// The hook a drafter runs before each of its own forwards (make_drafter's
// before_draft_forward): `leader`'s kMtpForward broadcast, or none outside a group.
// `leader` must outlive the drafter.
std::function<Status()> leader_draft_hook(std::optional<LeaderStepper>& leader);

// Ranks > 0: runs until rank 0 sends kStop (ok) or a collective fails. `placement`
// answers rank 0's placement steps (null: a PlacementSwitch with the default preparer).
Status follow_leader(parallel::Communicator& comm, ExpertParallelDispatcher& dispatcher,
                     PlacementSwitch* placement = nullptr);

// The placement a group starts with, for the bound MoE layers `layers`
// (model::bound_moe_layers, so it is known before the weights are): from the placement
// JSON file at `placement_path`, or contiguous blocks when it is empty.
StatusOr<parallel::ExpertPlacement> initial_group_placement(const std::string& placement_path,
                                                            int world_size,
                                                            const model::ModelConfig& config,
                                                            const std::vector<int64_t>& layers);

// Attaches expert parallelism over `comm` to `engine`: placement from `placement_path`
// (contiguous blocks when empty). Returns the dispatcher (owned by the engine).
StatusOr<ExpertParallelDispatcher*> attach_group_experts(Engine& engine,
                                                         parallel::Communicator& comm,
                                                         const std::string& placement_path);

}  // namespace moeserve::engine
