#include "worker/engine/group_step.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "worker/parallel/placement.h"

namespace moeserve::engine {

Status LeaderStepper::send(StepKind kind) {
  int64_t value = static_cast<int64_t>(kind);
  return comm_.broadcast(&value, sizeof(value), 0);
}

void install_leader_hooks(LeaderStepper& leader, int64_t collective_timeout_ms,
                          SchedulerOptions& options) {
  options.before_forward = [&leader] { return leader.begin_forward(); };
  options.idle = [&leader] { return leader.heartbeat(); };
  options.idle_interval =
      std::chrono::milliseconds(std::max<int64_t>(1, collective_timeout_ms / 3));
}

std::function<Status()> leader_draft_hook(std::optional<LeaderStepper>& leader) {
  if (!leader.has_value()) return {};
  return [&leader] { return leader->begin_mtp_forward(); };
}

Status follow_leader(parallel::Communicator& comm, ExpertParallelDispatcher& dispatcher) {
  for (;;) {
    int64_t value = 0;
    MOESERVE_RETURN_IF_ERROR(comm.broadcast(&value, sizeof(value), 0));
    switch (static_cast<StepKind>(value)) {
      case StepKind::kForward: MOESERVE_RETURN_IF_ERROR(dispatcher.idle_step()); break;
      case StepKind::kMtpForward: MOESERVE_RETURN_IF_ERROR(dispatcher.idle_mtp_step()); break;
      case StepKind::kHeartbeat: break;
      case StepKind::kStop: return ok_status();
      default: return internal_error("expert parallel: unknown step kind " + std::to_string(value));
    }
  }
}

namespace {

// The placement file for `layers` (the bound MoE layers, MTP included). A file written
// for the main MoE layers alone (the operator's, from the expert-load account, which
// does not count MTP routing) gives each MTP layer the last main layer's entry.
StatusOr<parallel::ExpertPlacement> load_placement(const std::string& path, int world_size,
                                                   const model::ModelConfig& config,
                                                   const std::vector<int64_t>& layers) {
  StatusOr<parallel::ExpertPlacement> full =
      parallel::ExpertPlacement::load(path, world_size, config.n_routed_experts, layers);
  const std::vector<int64_t> main_layers = config.moe_layers();
  if (full.ok() || main_layers.empty() || main_layers.size() == layers.size()) return full;
  StatusOr<parallel::ExpertPlacement> main =
      parallel::ExpertPlacement::load(path, world_size, config.n_routed_experts, main_layers);
  if (!main.ok()) return full;
  std::vector<std::vector<int32_t>> phy2log;
  for (int64_t layer : layers) {
    phy2log.push_back(main->phy2log(layer < config.num_hidden_layers ? layer : main_layers.back()));
  }
  return parallel::ExpertPlacement::create(world_size, config.n_routed_experts, layers,
                                           std::move(phy2log), path);
}

}  // namespace

StatusOr<ExpertParallelDispatcher*> attach_group_experts(Engine& engine,
                                                         parallel::Communicator& comm,
                                                         const std::string& placement_path) {
  const std::vector<int64_t> layers = engine.model().weights.moe_layers();
  StatusOr<parallel::ExpertPlacement> placement =
      placement_path.empty() ? parallel::ExpertPlacement::contiguous(
                                   comm.size(), engine.config().n_routed_experts, layers)
                             : load_placement(placement_path, comm.size(), engine.config(), layers);
  MOESERVE_RETURN_IF_ERROR(placement.status());
  return attach_expert_parallel(engine, comm, std::move(placement).value());
}

}  // namespace moeserve::engine
