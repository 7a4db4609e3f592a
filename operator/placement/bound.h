// Upper bounds on the balancedness any placement can reach, and the assignment of
// expert groups to nodes that the bound finds best. Pure and deterministic.
//
// Balancedness is mean rank load / max rank load per layer and the mean rank load is
// fixed by the loads, so a lower bound LB on the max rank load of every admissible map
// gives the bound mean / LB. Admissible: the shape of EplbShape (slots per rank fixed,
// every expert at least one replica, an expert's load split evenly over its replicas),
// and, when groups are kept on nodes, EPLB's locality rule (each node holds
// groups / nodes whole expert groups, slots / nodes slots and ranks / nodes ranks, and
// every replica of an expert lives on its group's node).
//
// Domain bound. Take a set X of experts that must live on m slots over r ranks (a node,
// or the whole copy). Every map satisfies max load >= D(X, m, r) =
//   max( sum_X w / r,  F(X, m) )
// where F(X, m) = min over replica counts c (c_e >= 1, sum c_e = m) of max_e w_e / c_e.
//   (1) The r ranks carry all of X's load, so one carries at least the average.
//   (2) A rank holding a replica of e carries at least w_e / c_e from it alone.
// F is what EPLB's replication computes (each extra slot to the largest w_e / c_e):
// proof that the greedy count vector c is optimal. Let T be its final max share, at
// expert e*. The max share never rises as counts grow, and every e with c_e >= 2 got its
// last replica when w_e / (c_e - 1) was the max, so w_e / (c_e - 1) >= T. A vector c'
// with max share < T would need c'_e > c_e - 1 (so c'_e >= c_e) for those e, c'_e >= 1
// = c_e for the rest, and c'_e* > c_e*: sum c' > m, a contradiction.
//
// Layer bound with groups kept on nodes: the node holding the group set P has bound
// D(P) = D(experts of P, S/N, R/N), so max load >= min over balanced partitions of
// max_node D(P_node). This is computed exactly by enumerating the partitions when there
// are at most kMaxPartitions of them (8 groups over 2, 4 or 8 nodes: 35, 105, 1);
// otherwise by the weaker bound max over groups g of D(g, S/N - (G/N - 1) * group size,
// R/N) with the sum term taken over g alone (the other groups of g's node need one slot
// per expert). Both are combined with the copy-wide average sum w / R.
// Layer bound with replicas spread across nodes: D(all experts, S, R).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "operator/placement/eplb.h"

namespace moeserve::placement {

inline constexpr int64_t kMaxPartitions = 20000;

// F(X, m): the least max load per replica over replica counts of `weights` summing to
// `slots`. Precondition: slots >= weights.size() >= 1.
double min_max_share(const std::vector<double>& weights, int32_t slots);

// D(X, m, r) above.
double domain_load_bound(const std::vector<double>& weights, int32_t slots, int32_t ranks);

// The balanced assignment of groups to nodes that minimises max_node D(P_node), as the
// node of each group (nodes numbered in order of their lowest group), with that value;
// nullopt when there are more than kMaxPartitions partitions. Ties: the first partition
// in the order that pairs the lowest unassigned group with ascending index sets.
// Preconditions: check_plan_input passed, hierarchical_applies(shape).
struct GroupAssignment {
  std::vector<int32_t> node_of_group;
  double load_bound = 0;
};
std::optional<GroupAssignment> best_group_assignment(const std::vector<double>& weights,
                                                     const EplbShape& shape);

// Lower bound on one layer's max rank load (see above).
double max_load_bound(const std::vector<double>& weights, const EplbShape& shape,
                      bool keep_groups_on_nodes);

// Mean over layers of mean load / max_load_bound (1 for a layer without load): no
// admissible map has a higher balancedness(). Preconditions as best_group_assignment
// when keep_groups_on_nodes.
double balancedness_bound(const std::vector<std::vector<double>>& weights, const EplbShape& shape,
                          bool keep_groups_on_nodes);

}  // namespace moeserve::placement
