#include "operator/placement/planner.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "operator/placement/bound.h"
#include "operator/placement/refine.h"

namespace moeserve::placement {
namespace {

using Rows = std::vector<std::vector<int32_t>>;

// A map replaces another only when its max rank load is lower by more than rounding:
// two maps of equal max may sum their ranks' loads in a different order, and the one
// kept must not lose balancedness in the last bit.
bool clearly_lower(double candidate, double incumbent) {
  return candidate < incumbent * (1 - 1e-12);
}

// EPLB's steps 2 and 3 (replicate within each node, pack onto its ranks) on a given
// assignment of groups to nodes.
std::vector<int32_t> grouped_row(const std::vector<double>& weights, const EplbShape& shape,
                                 const std::vector<int32_t>& node_of_group) {
  const int32_t experts = static_cast<int32_t>(weights.size());
  const int32_t group_size = experts / shape.num_groups;
  const int32_t slots_per_node = shape.num_slots / shape.num_nodes;
  const int32_t ranks_per_node = shape.num_gpus / shape.num_nodes;
  const int32_t slots_per_rank = shape.num_slots / shape.num_gpus;
  std::vector<int32_t> row(shape.num_slots, -1);
  for (int32_t node = 0; node < shape.num_nodes; ++node) {
    std::vector<int32_t> node_experts;
    for (int32_t e = 0; e < experts; ++e) {
      if (node_of_group[e / group_size] == node) node_experts.push_back(e);
    }
    std::vector<double> node_weights;
    for (int32_t e : node_experts) node_weights.push_back(weights[e]);
    const Replication replication = replicate_experts(node_weights, slots_per_node);
    std::vector<double> shares(slots_per_node);
    for (int32_t k = 0; k < slots_per_node; ++k) {
      const int32_t j = replication.phy2log[k];
      shares[k] = node_weights[j] / replication.logcnt[j];
    }
    const Packing packing = balanced_packing(shares, ranks_per_node);
    for (int32_t k = 0; k < slots_per_node; ++k) {
      row[node * slots_per_node + packing.pack[k] * slots_per_rank + packing.rank_in_pack[k]] =
          node_experts[replication.phy2log[k]];
    }
  }
  return row;
}

// The sets of groups on each node, as a sorted list of sorted lists (node order aside).
std::vector<std::vector<int32_t>> group_sets(const std::vector<int32_t>& row,
                                             const EplbShape& shape, int32_t experts) {
  const int32_t group_size = experts / shape.num_groups;
  const int32_t slots_per_node = shape.num_slots / shape.num_nodes;
  std::vector<std::vector<int32_t>> out(shape.num_nodes);
  for (size_t s = 0; s < row.size(); ++s) out[s / slots_per_node].push_back(row[s] / group_size);
  for (auto& set : out) {
    std::sort(set.begin(), set.end());
    set.erase(std::unique(set.begin(), set.end()), set.end());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// EPLB's map per layer, improved within each node; then, where the bound's group
// assignment differs from EPLB's, the map built on it, improved the same way, if lower.
Rows refined_rows(const std::vector<std::vector<double>>& weights, const EplbShape& shape,
                  bool grouped, const Rows& eplb) {
  const int32_t domains = grouped ? shape.num_nodes : 1;
  Rows rows = eplb;
  for (size_t l = 0; l < rows.size(); ++l) {
    const std::vector<double>& w = weights[l];
    refine_layer(w, shape.num_gpus, domains, &rows[l]);
    if (!clearly_lower(max_rank_load(w, rows[l], shape.num_gpus),
                       max_rank_load(w, eplb[l], shape.num_gpus))) {
      rows[l] = eplb[l];
    }
    if (!grouped || shape.num_nodes == 1) continue;
    const auto assignment = best_group_assignment(w, shape);
    if (!assignment) continue;
    std::vector<int32_t> other = grouped_row(w, shape, assignment->node_of_group);
    const int32_t experts = static_cast<int32_t>(w.size());
    if (group_sets(other, shape, experts) == group_sets(eplb[l], shape, experts)) continue;
    refine_layer(w, shape.num_gpus, domains, &other);
    if (clearly_lower(max_rank_load(w, other, shape.num_gpus),
                      max_rank_load(w, rows[l], shape.num_gpus))) {
      rows[l] = std::move(other);
    }
  }
  return rows;
}

// Per layer the better of `refined` and EPLB's global map, each improved over all ranks.
Rows global_rows(const std::vector<std::vector<double>>& weights, const EplbShape& shape,
                 const Rows& refined, const Rows& eplb_global) {
  Rows rows = refined;
  for (size_t l = 0; l < rows.size(); ++l) {
    const std::vector<double>& w = weights[l];
    refine_layer(w, shape.num_gpus, 1, &rows[l]);
    if (!clearly_lower(max_rank_load(w, rows[l], shape.num_gpus),
                       max_rank_load(w, refined[l], shape.num_gpus))) {
      rows[l] = refined[l];
    }
    std::vector<int32_t> other = eplb_global[l];
    refine_layer(w, shape.num_gpus, 1, &other);
    if (clearly_lower(max_rank_load(w, other, shape.num_gpus),
                      max_rank_load(w, rows[l], shape.num_gpus))) {
      rows[l] = std::move(other);
    }
  }
  return rows;
}

std::vector<double> max_loads(const std::vector<std::vector<double>>& weights, const Rows& rows,
                              int32_t ranks) {
  std::vector<double> out;
  for (size_t l = 0; l < rows.size(); ++l) out.push_back(max_rank_load(weights[l], rows[l], ranks));
  return out;
}

}  // namespace

std::string_view policy_name(Policy policy) {
  switch (policy) {
    case Policy::kEplb: return "eplb";
    case Policy::kRefined: return "refined";
    case Policy::kGlobal: return "global";
    case Policy::kAuto: return "auto";
  }
  return "?";
}

StatusOr<Policy> parse_policy(std::string_view name) {
  for (Policy p : {Policy::kEplb, Policy::kRefined, Policy::kGlobal, Policy::kAuto}) {
    if (name == policy_name(p)) return p;
  }
  return invalid_argument_error("placement: unknown policy \"" + std::string(name) +
                                "\" (expected eplb, refined, global or auto)");
}

EplbPlan plan_from_phy2log(Rows phy2log, int32_t num_experts) {
  EplbPlan out;
  int32_t max_count = 1;
  for (const std::vector<int32_t>& row : phy2log) {
    std::vector<int32_t> count(num_experts, 0);
    for (int32_t e : row) max_count = std::max(max_count, ++count[e]);
    out.logcnt.push_back(std::move(count));
  }
  for (size_t l = 0; l < phy2log.size(); ++l) {
    std::vector<std::vector<int32_t>> log2phy(num_experts, std::vector<int32_t>(max_count, -1));
    std::vector<int32_t> next(num_experts, 0);
    for (int32_t s = 0; s < static_cast<int32_t>(phy2log[l].size()); ++s) {
      const int32_t e = phy2log[l][s];
      log2phy[e][next[e]++] = s;
    }
    out.log2phy.push_back(std::move(log2phy));
  }
  out.phy2log = std::move(phy2log);
  return out;
}

StatusOr<PlannerResult> plan_experts(const std::vector<std::vector<double>>& weights,
                                     const EplbShape& shape, const PlannerOptions& options) {
  const bool grouped = hierarchical_applies(shape);
  MOESERVE_RETURN_IF_ERROR(check_plan_input(weights, shape, grouped));
  if (options.policy == Policy::kAuto)
    MOESERVE_RETURN_IF_ERROR(check_traffic_model(options.traffic));
  MOESERVE_ASSIGN_OR_RETURN(EplbPlan eplb, rebalance_experts(weights, shape));
  PlannerResult out;
  if (options.policy == Policy::kEplb) {
    out.plan = std::move(eplb);
    out.used = Policy::kEplb;
    out.keep_groups_on_nodes = grouped;
    return out;
  }
  const int32_t experts = static_cast<int32_t>(weights[0].size());
  Rows refined = refined_rows(weights, shape, grouped, eplb.phy2log);
  // Without groups on several nodes, refined already searched over all ranks.
  const bool distinct = grouped && shape.num_nodes > 1;
  if (options.policy == Policy::kRefined || !distinct) {
    out.plan = plan_from_phy2log(std::move(refined), experts);
    out.used = options.policy != Policy::kAuto ? options.policy
               : grouped                       ? Policy::kRefined
                                               : Policy::kGlobal;
    out.keep_groups_on_nodes = grouped;
    return out;
  }
  MOESERVE_ASSIGN_OR_RETURN(EplbPlan eplb_global,
                            rebalance_experts(weights, {shape.num_slots, 1, 1, shape.num_gpus}));
  Rows global = global_rows(weights, shape, refined, eplb_global.phy2log);
  if (options.policy == Policy::kAuto) {
    LocalityInput input;
    input.grouped_max_load = max_loads(weights, refined, shape.num_gpus);
    input.spread_max_load = max_loads(weights, global, shape.num_gpus);
    for (const auto& row : weights) {
      input.total_load.push_back(std::accumulate(row.begin(), row.end(), 0.0));
    }
    input.ranks = shape.num_gpus;
    input.groups = shape.num_groups;
    input.nodes = shape.num_nodes;
    out.locality = choose_locality(options.traffic, input);
    if (out.locality.keep_groups_on_nodes) {
      out.plan = plan_from_phy2log(std::move(refined), experts);
      out.used = Policy::kRefined;
      out.keep_groups_on_nodes = true;
      return out;
    }
  }
  out.plan = plan_from_phy2log(std::move(global), experts);
  out.used = Policy::kGlobal;
  out.keep_groups_on_nodes = false;
  return out;
}

}  // namespace moeserve::placement
