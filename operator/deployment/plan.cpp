#include "operator/deployment/plan.h"

#include <algorithm>

#include "operator/deployment/names.h"
#include "operator/deployment/pod_template.h"
#include "operator/deployment/rfc3339.h"

namespace moeserve::op {
namespace {

using nlohmann::json;

bool by_index(const ObservedGroup& a, const ObservedGroup& b) { return a.index < b.index; }

std::vector<int32_t> indices(const std::vector<ObservedGroup>& groups) {
  std::vector<int32_t> out;
  for (const ObservedGroup& g : groups) out.push_back(g.index);
  std::sort(out.begin(), out.end());
  return out;
}

int64_t int_at(const json& object, const json::json_pointer& pointer, int64_t fallback) {
  return object.contains(pointer) && object[pointer].is_number_integer()
             ? object[pointer].get<int64_t>()
             : fallback;
}

}  // namespace

StatusOr<ObservedGroup> observe_statefulset(std::string_view deployment, const json& sts) {
  if (!sts.is_object() || !sts.contains("metadata") || !sts["metadata"].is_object()) {
    return invalid_argument_error("statefulset: missing metadata");
  }
  const json& meta = sts["metadata"];
  const std::string name = meta.value("name", "");
  const std::optional<int32_t> index = parse_group_name(deployment, name);
  if (!index) {
    return invalid_argument_error("statefulset " + name + ": not a group of " +
                                  std::string(deployment));
  }
  ObservedGroup g;
  g.index = *index;
  if (meta.contains("annotations") && meta["annotations"].is_object()) {
    g.template_hash = meta["annotations"].value(std::string(kAnnotationTemplateHash), "");
  }
  g.desired_pods = static_cast<int32_t>(int_at(sts, "/spec/replicas"_json_pointer, 1));
  g.ready_pods = static_cast<int32_t>(int_at(sts, "/status/readyReplicas"_json_pointer, 0));
  g.generation = int_at(sts, "/metadata/generation"_json_pointer, 0);
  g.observed_generation = int_at(sts, "/status/observedGeneration"_json_pointer, 0);
  g.terminating = meta.contains("deletionTimestamp") && !meta["deletionTimestamp"].is_null();
  if (meta.contains("creationTimestamp") && meta["creationTimestamp"].is_string()) {
    g.created_at = parse_rfc3339(meta["creationTimestamp"].get<std::string>());
  }
  return g;
}

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
  return std::clamp(recommended.value_or(spec.replicas), a.min_replicas, a.max_replicas);
}

std::optional<Placement> plan_placement(const ModelDeploymentSpec& spec, const Observed& observed) {
  if (!placement_enabled(spec)) return std::nullopt;
  const int32_t experts = *spec.model.routed_experts;
  const int32_t layers = *spec.model.moe_layers;
  const int32_t redundant = spec.parallelism.redundant_experts;
  auto fits = [&](const std::optional<Placement>& p) {
    return p && placement_fits(p->layers, experts, layers, redundant);
  };
  Placement out;
  if (fits(observed.proposed_placement)) {
    out.layers = observed.proposed_placement->layers;
  } else if (fits(observed.current_placement)) {
    out.layers = observed.current_placement->layers;
  } else {
    out.layers = default_phy2log(experts, layers, redundant);
  }
  if (!observed.current_placement) {
    out.version = 1;
  } else {
    out.version = observed.current_placement->version +
                  (observed.current_placement->layers == out.layers ? 0 : 1);
  }
  return out;
}

Plan plan(const ModelDeployment& md, const Observed& observed) {
  Plan p;
  p.layout = layout_of(md.spec);
  p.desired_replicas = desired_replicas(md.spec, observed.recommended_replicas);
  p.template_hash = template_hash(md, p.layout);
  p.groups = decide_groups(p.desired_replicas, p.template_hash, observed.groups);
  p.placement = plan_placement(md.spec, observed);
  return p;
}

}  // namespace moeserve::op
