#include "operator/deployment/layout.h"

namespace moeserve::deployment {

GroupLayout layout_of(const ModelDeploymentSpec& spec) {
  GroupLayout l;
  l.ranks_per_group = spec.parallelism.expert_parallel;
  l.ranks_per_pod = spec.parallelism.ranks_per_pod;
  l.pods_per_group = l.ranks_per_group / l.ranks_per_pod;
  l.gpus_per_pod = gpus_per_pod(spec.worker);
  l.gpus_per_group = l.gpus_per_pod * l.pods_per_group;
  return l;
}

bool placement_enabled(const ModelDeploymentSpec& spec) {
  return spec.model.routed_experts.has_value() && spec.model.moe_layers.has_value();
}

double hourly_cost_usd(const ModelDeploymentSpec& spec, const GroupLayout& layout, int32_t groups) {
  return groups * (layout.gpus_per_group * spec.cost.gpu_hour_usd +
                   layout.pods_per_group * spec.cost.pod_hour_usd);
}

}  // namespace moeserve::deployment
