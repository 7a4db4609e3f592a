// The placement policies behind one entry point. Pure and deterministic.
//
//   eplb     the EPLB-equivalent baseline (rebalance_experts), unchanged.
//   refined  EPLB's locality rule (groups kept on nodes when hierarchical_applies(),
//            else global), and per layer the better of two starts, each improved by
//            refine_layer() within every node: EPLB's own map, and the map EPLB's
//            replication and packing build on the group-to-node assignment that
//            best_group_assignment() finds (when it differs from EPLB's). The local
//            search only lowers a layer's max rank load, so every layer's balancedness
//            is >= EPLB's.
//   global   replicas spread across nodes: per layer the better of refined's map and
//            EPLB's global-policy map, each improved by refine_layer() over all ranks.
//            A grouped map is also a valid spread map, so global >= refined >= eplb.
//   auto     refined or global, whichever choose_locality() finds faster under the
//            traffic model (see locality.h); global when groups cannot stay on nodes.
//            Never below EPLB's balancedness, as both candidates are not.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "operator/placement/eplb.h"
#include "operator/placement/locality.h"

namespace moeserve::placement {

enum class Policy { kEplb, kRefined, kGlobal, kAuto };

std::string_view policy_name(Policy policy);
// "eplb", "refined", "global" or "auto"; invalid_argument naming the choices otherwise.
StatusOr<Policy> parse_policy(std::string_view name);

struct PlannerOptions {
  Policy policy = Policy::kAuto;
  TrafficModel traffic;  // used by auto
};

struct PlannerResult {
  EplbPlan plan;
  Policy used = Policy::kEplb;        // the policy whose map this is (auto: refined or global)
  bool keep_groups_on_nodes = false;  // the map keeps EPLB's locality rule
  LocalityChoice locality;            // auto only: the cost model's two step times
};

// invalid_argument for input check_plan_input() refuses, or (auto) a bad traffic model.
StatusOr<PlannerResult> plan_experts(const std::vector<std::vector<double>>& weights,
                                     const EplbShape& shape, const PlannerOptions& options = {});

// The plan of per-layer maps: log2phy lists each expert's slots in ascending order,
// padded with -1 to the largest replica count of any layer; logcnt counts replicas.
// Precondition: every row names experts in [0, num_experts).
EplbPlan plan_from_phy2log(std::vector<std::vector<int32_t>> phy2log, int32_t num_experts);

}  // namespace moeserve::placement
