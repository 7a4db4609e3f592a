#include "operator/deployment/placement_plan.h"

#include <algorithm>
#include <numeric>

#include "operator/deployment/layout.h"

namespace moeserve::deployment {

std::optional<double> measured_balancedness(const std::vector<std::vector<double>>& rank_load) {
  double sum = 0;
  int32_t layers = 0;
  for (const std::vector<double>& row : rank_load) {
    if (row.empty()) continue;
    const double max = *std::max_element(row.begin(), row.end());
    if (!(max > 0)) continue;
    sum += std::accumulate(row.begin(), row.end(), 0.0) / static_cast<double>(row.size()) / max;
    ++layers;
  }
  if (layers == 0) return std::nullopt;
  return sum / layers;
}

namespace {

// Fills the rollout fields of `out` from the groups' reports of the ConfigMap version.
void observe_rollout(const Observed& observed, PlacementPlan* out) {
  if (!observed.current_placement) return;
  const int64_t version = observed.current_placement->version;
  for (const auto& [group, state] : observed.group_placements) {
    ++out->groups_reporting;
    if (state.version >= version) {
      ++out->groups_switched;
      out->switch_seconds = std::max(out->switch_seconds, state.switch_seconds);
    } else if (state.failed_version == version) {
      if (out->switch_failure.empty()) {
        out->switch_failure = "group " + std::to_string(group) + ": " + state.failure;
      }
    } else {
      out->switch_in_flight = true;
    }
  }
}

}  // namespace

PlacementPlan plan_placement(const ModelDeploymentSpec& spec, const Observed& observed,
                             const placement::ProposalOptions& options, bool switch_open) {
  PlacementPlan out;
  if (!placement_enabled(spec)) return out;
  const int32_t experts = *spec.model.routed_experts;
  const int32_t layers = *spec.model.moe_layers;
  const int32_t redundant = spec.parallelism.redundant_experts;
  auto fits = [&](const std::optional<Placement>& p) {
    return p && placement_fits(p->layers, experts, layers, redundant);
  };

  observe_rollout(observed, &out);
  out.measured_balancedness = measured_balancedness(observed.rank_load);
  // A switch in flight, one that failed, or one whose end status has not recorded yet.
  const bool hold = out.switch_in_flight || !out.switch_failure.empty() ||
                    (switch_open && out.groups_reporting > 0);

  std::optional<Placement> proposed;
  const std::vector<std::vector<double>>& load = observed.expert_load;
  // Loads of another shape were measured before a spec change: nothing to plan from.
  if (!hold && !load.empty() && static_cast<int32_t>(load.size()) == layers &&
      static_cast<int32_t>(load[0].size()) <= experts) {
    std::vector<std::vector<double>> weights = load;
    for (auto& row : weights) row.resize(experts, 0.0);
    const std::vector<std::vector<int32_t>> current =
        fits(observed.current_placement) ? observed.current_placement->layers
                                         : default_phy2log(experts, layers, redundant);
    const GroupLayout layout = layout_of(spec);
    // Expert groups of the model are not in the spec: one group, so EPLB's global policy.
    const placement::EplbShape shape{experts + redundant, 1, layout.pods_per_group,
                                     layout.ranks_per_group};
    auto proposal = placement::propose(weights, current, shape, options);
    if (!proposal.ok()) {
      out.error = proposal.status();
    } else {
      out.current_balancedness = proposal->current_balancedness;
      out.balancedness = proposal->balancedness;
      if (proposal->phy2log) proposed = Placement{0, *proposal->phy2log};
    }
  }
  out.proposed = proposed.has_value();

  Placement map;
  if (fits(proposed)) {
    map.layers = proposed->layers;
  } else if (fits(observed.current_placement)) {
    map.layers = observed.current_placement->layers;
  } else {
    map.layers = default_phy2log(experts, layers, redundant);
  }
  if (!observed.current_placement) {
    map.version = 1;
  } else {
    map.version = observed.current_placement->version +
                  (observed.current_placement->layers == map.layers ? 0 : 1);
  }
  out.map = std::move(map);
  return out;
}

}  // namespace moeserve::deployment
