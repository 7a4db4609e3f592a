#include "operator/deployment/plan.h"

#include <algorithm>

#include "operator/deployment/pod_template.h"

namespace moeserve::deployment {
namespace {

bool by_index(const ObservedGroup& a, const ObservedGroup& b) { return a.index < b.index; }

std::vector<int32_t> indices(const std::vector<ObservedGroup>& groups) {
  std::vector<int32_t> out;
  for (const ObservedGroup& g : groups) out.push_back(g.index);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

GroupDecision decide_groups(int32_t desired, const std::string& desired_hash,
                            const std::vector<ObservedGroup>& groups) {
  std::vector<ObservedGroup> current, old;
  int32_t next_index = 0;
  for (const ObservedGroup& g : groups) {
    next_index = std::max(next_index, g.index + 1);
    if (g.terminating) continue;
    (g.template_hash == desired_hash ? current : old).push_back(g);
  }
  std::sort(current.begin(), current.end(), by_index);
  std::sort(old.begin(), old.end(), by_index);

  GroupDecision d;
  // Scale down: the newest current groups go first.
  while (static_cast<int32_t>(current.size()) > std::max(desired, 0)) {
    d.remove.push_back(current.back().index);
    current.pop_back();
  }
  const int32_t ready_current = static_cast<int32_t>(std::count_if(
      current.begin(), current.end(), [](const ObservedGroup& g) { return g.ready(); }));
  // Old groups: ready ones stay while needed for capacity (the oldest stay, so the newest
  // leave first); unready ones serve nothing and go at once.
  int32_t keep_ready_old = std::max(0, desired - ready_current);
  std::vector<ObservedGroup> kept_old;
  for (const ObservedGroup& g : old) {
    if (g.ready() && keep_ready_old > 0) {
      kept_old.push_back(g);
      --keep_ready_old;
    } else {
      d.remove.push_back(g.index);
    }
  }
  // Create: fill up to desired, with at most one group beyond it while old ones remain.
  const int32_t existing = static_cast<int32_t>(current.size() + kept_old.size());
  const int32_t need = desired - static_cast<int32_t>(current.size());
  const int32_t room = desired + 1 - existing;
  for (int32_t i = 0; i < std::min(need, room); ++i) d.create.push_back(next_index++);

  d.current = indices(current);
  d.old = indices(kept_old);
  std::sort(d.remove.begin(), d.remove.end());
  return d;
}

std::vector<int32_t> Plan::rendered_groups() const {
  std::vector<int32_t> out = groups.current;
  out.insert(out.end(), groups.create.begin(), groups.create.end());
  std::sort(out.begin(), out.end());
  return out;
}

int32_t desired_replicas(const ModelDeploymentSpec& spec, std::optional<int32_t> recommended) {
  const AutoscalingSpec& a = spec.autoscaling;
  if (!a.enabled) return spec.replicas;
  // Scale to zero goes below minReplicas (policy.h, rule 8).
  const int32_t floor = a.scale_to_zero_after_idle_seconds ? 0 : a.min_replicas;
  return std::clamp(recommended.value_or(spec.replicas), floor, a.max_replicas);
}

Plan plan(const ModelDeployment& md, const Observed& observed,
          const placement::ProposalOptions& placement_options) {
  Plan p;
  p.layout = layout_of(md.spec);
  p.desired_replicas = desired_replicas(md.spec, observed.recommended_replicas);
  p.template_hash = template_hash(md, p.layout);
  p.groups = decide_groups(p.desired_replicas, p.template_hash, observed.groups);
  const bool switch_open = md.status.placement && md.status.placement->last_switch &&
                           md.status.placement->last_switch->result == "InProgress";
  p.placement = plan_placement(md.spec, observed, placement_options, switch_open);
  return p;
}

}  // namespace moeserve::deployment
