// plan_placement(): the expert placement one reconcile writes, decided from the spec,
// the map running now (ConfigMap x-placement) and the measured expert loads. Pure.
//
// With measured loads of the spec's shape (one row per MoE layer, at most
// routedExperts experts), placement::propose() scores the running map (or the default
// one, when the running map does not fit the spec) and may propose EPLB's map. The map
// to write is the proposed one if it fits the spec's shape, else the current one if it
// fits, else default_phy2log(); its version is the current version when the map is
// unchanged, else current + 1 (1 when there is none).
//
// Live rollout: the workers switch to a new version of the ConfigMap while serving and
// report the version they run (Observed::group_placements). At most one switch per
// group is in flight: while any measured group runs an older version than the
// ConfigMap's and has not aborted it, or any group aborted it, nothing new is proposed
// (the current map stays). With per-rank loads (Observed::rank_load, what ranks really
// carried), measured_balancedness is their mean / max per layer, averaged over layers.
#pragma once

#include <optional>

#include "common/status.h"
#include "operator/deployment/observe.h"
#include "operator/deployment/placement_config.h"
#include "operator/deployment/types.h"
#include "operator/placement/propose.h"

namespace moeserve::deployment {

struct PlacementPlan {
  std::optional<Placement> map;  // absent unless placement_enabled(spec)
  // Under the measured loads; absent without loads of the spec's shape.
  std::optional<double> current_balancedness;  // of the running map
  std::optional<double> balancedness;          // of the map to run
  bool proposed = false;                       // the loads proposed a new map
  Status error;                                // the loads could not be planned

  std::optional<double> measured_balancedness;  // of the running map, from rank loads
  // The rollout of the ConfigMap's version over the measured groups.
  int32_t groups_reporting = 0;   // measured groups that report a placement version
  int32_t groups_switched = 0;    // of those, running the ConfigMap's version (or newer)
  bool switch_in_flight = false;  // a group is still preparing it
  std::string switch_failure;     // "group 1: rank 2: ..." when a group aborted it
  double switch_seconds = 0;      // the slowest switched group's prepare-to-commit time
};

// Mean over layers of (mean / max) of each row of `rank_load` ([layer][rank]); rows
// with no load are skipped; nullopt when none is left.
std::optional<double> measured_balancedness(const std::vector<std::vector<double>>& rank_load);

// `switch_open`: the previous status still shows the last switch InProgress; with groups
// reporting their placement, nothing new is proposed until a reconcile has recorded its
// end (without reports, e.g. with the Prometheus source, proposals go on as before).
PlacementPlan plan_placement(const ModelDeploymentSpec& spec, const Observed& observed,
                             const placement::ProposalOptions& options = {},
                             bool switch_open = false);

}  // namespace moeserve::deployment
