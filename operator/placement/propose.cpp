#include "operator/placement/propose.h"

#include <algorithm>
#include <string>

namespace moeserve::placement {

StatusOr<Proposal> propose(const std::vector<std::vector<double>>& load,
                           const std::vector<std::vector<int32_t>>& current, const EplbShape& shape,
                           const ProposalOptions& options) {
  if (load.size() != current.size()) {
    return invalid_argument_error("placement: loads for " + std::to_string(load.size()) +
                                  " layers, the map has " + std::to_string(current.size()));
  }
  double total = 0;
  for (size_t l = 0; l < load.size(); ++l) {
    if (current[l].size() != static_cast<size_t>(shape.num_slots)) {
      return invalid_argument_error("placement: layer " + std::to_string(l) + " has " +
                                    std::to_string(current[l].size()) + " slots, expected " +
                                    std::to_string(shape.num_slots));
    }
    for (int32_t e : current[l]) {
      if (e < 0 || static_cast<size_t>(e) >= load[l].size()) {
        return invalid_argument_error("placement: layer " + std::to_string(l) + " maps expert " +
                                      std::to_string(e) + " with loads for " +
                                      std::to_string(load[l].size()) + " experts");
      }
    }
    for (double w : load[l]) total += w;
  }
  MOESERVE_ASSIGN_OR_RETURN(PlannerResult planned,
                            plan_experts(load, shape, {options.policy, options.traffic}));
  EplbPlan& plan = planned.plan;
  Proposal out;
  out.current_balancedness = balancedness(load, current, shape.num_gpus);
  out.balancedness = out.current_balancedness;
  if (total < options.min_tokens) return out;
  const double proposed = balancedness(load, plan.phy2log, shape.num_gpus);
  if (proposed - out.current_balancedness >= options.min_improvement) {
    out.balancedness = proposed;
    out.phy2log = std::move(plan.phy2log);
  }
  return out;
}

}  // namespace moeserve::placement
