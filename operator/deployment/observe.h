// Observations: what the controller reads from the cluster and its measurements,
// reduced to the plain values plan() and compute_status() decide from. The readers
// here turn objects as the API server returns them (StatefulSets, the placement
// ConfigMap) into those values; they decide nothing. Pure.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "operator/deployment/placement_config.h"

namespace moeserve::deployment {

// One StatefulSet x-g<i> as observed.
struct ObservedGroup {
  int32_t index = 0;
  std::string template_hash;                           // annotation moeserve.io/template-hash
  int32_t desired_pods = 0;                            // spec.replicas
  int32_t ready_pods = 0;                              // status.readyReplicas
  int64_t generation = 0;                              // metadata.generation
  int64_t observed_generation = 0;                     // status.observedGeneration
  bool terminating = false;                            // metadata.deletionTimestamp set
  std::optional<std::chrono::sys_seconds> created_at;  // metadata.creationTimestamp

  // Every pod ready, as seen by the StatefulSet controller for the current generation.
  bool ready() const {
    return !terminating && desired_pods > 0 && observed_generation >= generation &&
           ready_pods >= desired_pods;
  }
};

// A group's live-placement state as its rank 0 reports it (worker
// /metrics: moeserve_placement_version and friends).
struct GroupPlacement {
  int64_t version = 0;            // the placement the group dispatches with
  int64_t in_flight_version = 0;  // being prepared (0: none)
  double switch_seconds = 0;      // the last committed switch, prepare to commit
  int64_t failed_version = 0;     // the last aborted switch (0: none)
  std::string failure;            // its reason
};

struct Observed {
  std::vector<ObservedGroup> groups;            // every StatefulSet x-g<i> owned by x
  std::optional<int32_t> recommended_replicas;  // the autoscaler's, when it has one
  std::optional<double> tokens_per_second;      // measured over all groups (prompt + generated)
  std::optional<Placement> current_placement;   // as in ConfigMap x-placement now
  // Routed tokens per expert over the measurement window, [MoE layer][expert]; empty
  // when nothing is measured.
  std::vector<std::vector<double>> expert_load;
  // Tokens each rank carried over the window, [MoE layer][rank] (from the workers'
  // per-slot counts); empty when not measured.
  std::vector<std::vector<double>> rank_load;
  // Live-placement state of each measured group, by group index (rank 0's report).
  std::map<int32_t, GroupPlacement> group_placements;
  std::vector<std::string> network_policies;  // names of the NetworkPolicies owned by x
};

// Reads a StatefulSet of deployment `deployment` (its group from the name x-g<i>).
StatusOr<ObservedGroup> observe_statefulset(std::string_view deployment,
                                            const nlohmann::json& statefulset);

// Reads data[placement.json] of ConfigMap x-placement; invalid_argument when absent or
// not a valid placement file.
StatusOr<Placement> observe_placement_configmap(const nlohmann::json& configmap);

}  // namespace moeserve::deployment
