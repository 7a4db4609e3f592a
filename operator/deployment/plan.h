// plan(): what one reconcile should converge a valid ModelDeployment to, from what is
// observed. Pure: the controller gathers Observed (observe.h), calls plan() once, then
// render() and compute_status() with that plan, and applies.
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
// Placement: plan_placement() (placement_plan.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "operator/deployment/layout.h"
#include "operator/deployment/observe.h"
#include "operator/deployment/placement_plan.h"
#include "operator/deployment/types.h"

namespace moeserve::deployment {

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
  PlacementPlan placement;

  // Groups render() writes: current and created ones (old groups are left untouched).
  std::vector<int32_t> rendered_groups() const;
};

int32_t desired_replicas(const ModelDeploymentSpec& spec, std::optional<int32_t> recommended);

// Precondition: md.valid().
Plan plan(const ModelDeployment& md, const Observed& observed,
          const placement::ProposalOptions& placement_options = {});

}  // namespace moeserve::deployment
