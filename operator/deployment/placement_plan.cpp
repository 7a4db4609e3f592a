#include "operator/deployment/placement_plan.h"

#include "operator/deployment/layout.h"

namespace moeserve::deployment {

PlacementPlan plan_placement(const ModelDeploymentSpec& spec, const Observed& observed,
                             const placement::ProposalOptions& options) {
  PlacementPlan out;
  if (!placement_enabled(spec)) return out;
  const int32_t experts = *spec.model.routed_experts;
  const int32_t layers = *spec.model.moe_layers;
  const int32_t redundant = spec.parallelism.redundant_experts;
  auto fits = [&](const std::optional<Placement>& p) {
    return p && placement_fits(p->layers, experts, layers, redundant);
  };

  std::optional<Placement> proposed;
  const std::vector<std::vector<double>>& load = observed.expert_load;
  // Loads of another shape were measured before a spec change: nothing to plan from.
  if (!load.empty() && static_cast<int32_t>(load.size()) == layers &&
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
