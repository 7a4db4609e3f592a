#include "worker/engine/group_step.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "worker/parallel/placement.h"

namespace moeserve::engine {

Status LeaderStepper::send(StepKind kind) {
  int64_t value = static_cast<int64_t>(kind);
  return comm_.broadcast(&value, sizeof(value), 0);
}

void LeaderStepper::enable_live_placement(PlacementSwitch* placement, PlacementSource source) {
  placement_ = placement;
  source_ = std::move(source);
}

Status LeaderStepper::step_boundary() {
  if (placement_ == nullptr) return ok_status();
  if (placement_->in_flight()) {
    MOESERVE_RETURN_IF_ERROR(send(StepKind::kPlacementPoll));
    return placement_->poll().status();
  }
  if (!source_) return ok_status();
  std::optional<std::string> text = source_();
  if (!text || !placement_->should_begin(*text)) return ok_status();
  MOESERVE_RETURN_IF_ERROR(send(StepKind::kPlacementPrepare));
  return placement_->begin(*text);
}

Status LeaderStepper::begin_forward() {
  MOESERVE_RETURN_IF_ERROR(step_boundary());
  return send(StepKind::kForward);
}

Status LeaderStepper::heartbeat() {
  MOESERVE_RETURN_IF_ERROR(step_boundary());
  return send(StepKind::kHeartbeat);
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

Status follow_leader(parallel::Communicator& comm, ExpertParallelDispatcher& dispatcher,
                     PlacementSwitch* placement) {
  std::optional<PlacementSwitch> own;
  if (placement == nullptr) placement = &own.emplace(comm, dispatcher);
  for (;;) {
    int64_t value = 0;
    MOESERVE_RETURN_IF_ERROR(comm.broadcast(&value, sizeof(value), 0));
    switch (static_cast<StepKind>(value)) {
      case StepKind::kForward: MOESERVE_RETURN_IF_ERROR(dispatcher.idle_step()); break;
      case StepKind::kMtpForward: MOESERVE_RETURN_IF_ERROR(dispatcher.idle_mtp_step()); break;
      case StepKind::kHeartbeat: break;
      case StepKind::kPlacementPrepare:
        if (placement->in_flight()) {
          return internal_error("expert parallel: a placement switch began while one is in flight");
        }
        MOESERVE_RETURN_IF_ERROR(placement->begin());
        break;
      case StepKind::kPlacementPoll:
        if (!placement->in_flight()) {
          return internal_error("expert parallel: a placement poll without a switch in flight");
        }
        MOESERVE_RETURN_IF_ERROR(placement->poll().status());
        break;
      case StepKind::kStop: return ok_status();
      default: return internal_error("expert parallel: unknown step kind " + std::to_string(value));
    }
  }
}

StatusOr<parallel::ExpertPlacement> initial_group_placement(const std::string& placement_path,
                                                            int world_size,
                                                            const model::ModelConfig& config,
                                                            const std::vector<int64_t>& layers) {
  if (placement_path.empty()) {
    return parallel::ExpertPlacement::contiguous(world_size, config.n_routed_experts, layers);
  }
  std::ifstream in(placement_path);
  if (!in) return not_found_error(placement_path + ": cannot open the placement file");
  std::stringstream text;
  text << in.rdbuf();
  return parse_group_placement(text.str(), placement_path, world_size, config, layers);
}

StatusOr<ExpertParallelDispatcher*> attach_group_experts(Engine& engine,
                                                         parallel::Communicator& comm,
                                                         const std::string& placement_path) {
  MOESERVE_ASSIGN_OR_RETURN(parallel::ExpertPlacement placement,
                            initial_group_placement(placement_path, comm.size(), engine.config(),
                                                    engine.model().weights.moe_layers()));
  return attach_expert_parallel(engine, comm, std::move(placement));
}

}  // namespace moeserve::engine
