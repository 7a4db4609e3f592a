// When to replace the running expert placement: from measured expert loads, the
// current map (phy2log per MoE layer) and the shape of one model copy, propose the map
// of `policy` (planner.h; default auto, never below EPLB's balancedness) when it raises
// balancedness by at least `min_improvement` (absolute, e.g. 0.05); otherwise keep the
// current map. Pure.
//
// Loads too small to mean anything (fewer than `min_tokens` routed tokens in total over
// all layers) propose nothing: EPLB on noise would reshuffle experts for no gain.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/status.h"
#include "operator/placement/eplb.h"
#include "operator/placement/planner.h"

namespace moeserve::placement {

struct ProposalOptions {
  double min_improvement = 0.05;
  double min_tokens = 1000;
  Policy policy = Policy::kAuto;
  TrafficModel traffic;  // for auto
};

struct Proposal {
  double current_balancedness = 1;  // of the current map under the measured loads
  double balancedness = 1;          // of the map to run: proposed when adopted, else current
  std::optional<std::vector<std::vector<int32_t>>> phy2log;  // set when adopted
};

// invalid_argument when the loads do not match the current map (layer count, expert
// count) or the shape (see check_plan_input), or a bad traffic model (auto).
StatusOr<Proposal> propose(const std::vector<std::vector<double>>& load,
                           const std::vector<std::vector<int32_t>>& current, const EplbShape& shape,
                           const ProposalOptions& options = {});

}  // namespace moeserve::placement
