// plan(): what one reconcile should converge a valid ModelDeployment to, from what is
// observed. Pure: the controller gathers Observed (StatefulSets, the placement
// ConfigMap, autoscaler and metric readings), calls plan() and render(), applies.
//
// Groups. Group i is StatefulSet x-g<i>; a group is created, kept or deleted whole and
// its pod template never changes in place. A group whose template hash differs from
// the desired one is "old" and is replaced, group by group (decide_groups):
//   - at most desired + 1 groups exist while old ones remain (a surge of one group);
//   - an old group is removed only while enough ready groups remain: ready old groups
//     are kept until current ready groups make up the desired count (unready old
//     groups serve nothing and go at once);
//   - scaling adds whole groups (all missing at once when nothing is old) and removes
//     whole groups, the newest (highest index) first;
//   - a new group gets index 1 + the highest index observed (terminating ones
//     included), so a name is never reused while its previous holder may still exist.
// Desired replicas: spec.replicas, or, with autoscaling enabled, the autoscaler's
// recommendation (spec.replicas before it has one) clamped to [minReplicas, maxReplicas].
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "operator/deployment/layout.h"
#include "operator/deployment/placement_config.h"
#include "operator/deployment/types.h"

namespace moeserve::op {

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

// Reads a StatefulSet of deployment `deployment` (its group from the name x-g<i>).
StatusOr<ObservedGroup> observe_statefulset(std::string_view deployment,
                                            const nlohmann::json& statefulset);

struct Observed {
  std::vector<ObservedGroup> groups;            // every StatefulSet x-g<i> owned by x
  std::optional<int32_t> recommended_replicas;  // the autoscaler's, when it has one
  std::optional<double> tokens_per_second;      // measured over all groups (prompt + generated)
  std::optional<Placement> current_placement;   // as in ConfigMap x-placement now
  std::optional<Placement> proposed_placement;  // the placement planner's (version ignored)
  std::optional<double> measured_balancedness;  // from measured expert loads
};

// The group step of one reconcile. Indices ascending in every list.
struct GroupDecision {
  std::vector<int32_t> current;  // existing groups on the desired template, kept
  std::vector<int32_t> old;      // existing groups on another template, kept for now
  std::vector<int32_t> create;   // new groups on the desired template
  std::vector<int32_t> remove;   // existing groups to delete

  friend bool operator==(const GroupDecision&, const GroupDecision&) = default;
};

GroupDecision decide_groups(int32_t desired_replicas, const std::string& desired_template_hash,
                            const std::vector<ObservedGroup>& groups);

struct Plan {
  GroupLayout layout;
  int32_t desired_replicas = 0;
  std::string template_hash;
  GroupDecision groups;
  std::optional<Placement> placement;  // absent unless placement_enabled(spec)

  // Groups render() writes: current and created ones (old groups are left untouched).
  std::vector<int32_t> rendered_groups() const;
};

int32_t desired_replicas(const ModelDeploymentSpec& spec, std::optional<int32_t> recommended);

// The placement to write: the proposed one if it fits the spec's shape, else the
// current one if it fits, else default_phy2log(); its version is the current version
// when the map is unchanged, else current + 1 (1 when there is none).
std::optional<Placement> plan_placement(const ModelDeploymentSpec& spec, const Observed& observed);

// Precondition: md.valid().
Plan plan(const ModelDeployment& md, const Observed& observed);

}  // namespace moeserve::op
