// The shape of one group (one model copy) of a valid spec: ranks, pods and GPUs.
// Rank r of a group runs in pod r / ranksPerPod as local rank r % ranksPerPod, on the
// pod's local GPU r % ranksPerPod when the pod has GPUs.
#pragma once

#include <cstdint>

#include "operator/deployment/types.h"

namespace moeserve::deployment {

struct GroupLayout {
  int32_t ranks_per_group = 1;  // world size = spec.parallelism.expertParallel
  int32_t ranks_per_pod = 1;
  int32_t pods_per_group = 1;  // ranks_per_group / ranks_per_pod
  int32_t gpus_per_pod = 0;
  int32_t gpus_per_group = 0;

  friend bool operator==(const GroupLayout&, const GroupLayout&) = default;
};

// Precondition: validate(spec) is empty.
GroupLayout layout_of(const ModelDeploymentSpec& spec);

// The operator writes a placement map (ConfigMap x-placement) only when the spec
// gives the checkpoint's shape: spec.model.routedExperts and spec.model.moeLayers.
bool placement_enabled(const ModelDeploymentSpec& spec);

// USD per hour for `groups` groups: GPUs x gpuHourUsd + pods x podHourUsd.
double hourly_cost_usd(const ModelDeploymentSpec& spec, const GroupLayout& layout, int32_t groups);

}  // namespace moeserve::deployment
