// plan_placement(): the expert placement one reconcile writes, decided from the spec,
// the map running now (ConfigMap x-placement) and the measured expert loads. Pure.
//
// With measured loads of the spec's shape (one row per MoE layer, at most
// routedExperts experts), placement::propose() scores the running map (or the default
// one, when the running map does not fit the spec) and may propose EPLB's map. The map
// to write is the proposed one if it fits the spec's shape, else the current one if it
// fits, else default_phy2log(); its version is the current version when the map is
// unchanged, else current + 1 (1 when there is none).
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
};

PlacementPlan plan_placement(const ModelDeploymentSpec& spec, const Observed& observed,
                             const placement::ProposalOptions& options = {});

}  // namespace moeserve::deployment
