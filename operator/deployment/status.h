// compute_status(): the status a valid ModelDeployment should have, from the plan this
// reconcile applies (it does not plan again), what is observed and its previous
// status; invalid_spec_status() the same for an invalid one. Pure: `now` is passed in.
//
// Conditions (type: status reason):
//   Ready        True AllGroupsReady   at least desiredReplicas groups have every pod ready
//                False GroupsNotReady  fewer (message "1/2 groups ready")
//                False ScaledToZero    desiredReplicas is 0
//                False InvalidSpec     message names every bad field
//   Progressing  True RollingOut       groups on an old worker template remain
//                True ScalingUp        groups are missing
//                True ScalingDown      extra groups remain
//                True GroupsStarting   groups on the current template are not ready yet
//                False Complete        desired groups exist, current and ready, no others
//                False InvalidSpec
//   Degraded     True GroupNotReady    a group exists but has not been ready for
//                                      spec.progressDeadlineSeconds since its creation
//                True InvalidSpec
//                False Healthy
//   AutoscalerDecides (only with spec.autoscaling.enabled)
//                True SpecReplicasIgnored  spec.replicas differs from desiredReplicas:
//                                      the autoscaler owns the count (kubectl scale
//                                      writes spec.replicas, which then only seeds the
//                                      count until the first measurement)
//                True Autoscaling      spec.replicas agrees
// lastTransitionTime changes only when a condition's status changes; each condition
// carries observedGeneration. With an invalid spec nothing is planned or rendered,
// and fields that need the spec keep their previous values.
//
// costPerMillionTokens = hourly_cost_usd(spec, layout, replicas) / 3600 / tokensPerSecond
// * 1e6: the USD per second of every existing group (GPUs x gpuHourUsd + pods x
// podHourUsd) over the tokens (prompt + generated) per second they produce; omitted when
// tokens/s is unknown or 0 or no price is set. tokensPerSecond, costPerMillionTokens and
// balancedness are rounded to 3 significant digits, so noise does not rewrite status.
// placement.balancedness is the plan's measured one when known, else
// uniform_balancedness().
#pragma once

#include <chrono>

#include "operator/deployment/plan.h"
#include "operator/deployment/types.h"

namespace moeserve::deployment {

// md.status is the previous status. Precondition: md.valid() and `plan` is
// plan(md, observed, ...).
ModelDeploymentStatus compute_status(const ModelDeployment& md, const Observed& observed,
                                     const Plan& plan, std::chrono::sys_seconds now);
// Precondition: !md.valid(); the conditions carry join_errors(md.errors).
ModelDeploymentStatus invalid_spec_status(const ModelDeployment& md, const Observed& observed,
                                          std::chrono::sys_seconds now);

// True when a write is needed: any field differs (conditions compared by type, in any
// order).
bool status_changed(const ModelDeploymentStatus& before, const ModelDeploymentStatus& after);

// `value` rounded to `digits` significant decimal digits.
double round_significant(double value, int digits);

}  // namespace moeserve::deployment
