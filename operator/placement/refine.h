// Local search that lowers the heaviest rank's load of one placement domain: the ranks
// of one node (hierarchical placement) or of the whole model copy (global placement).
// Pure and deterministic.
//
// A domain holds `weights.size()` experts (local ids 0..n-1) in `slot_expert.size()`
// slots over `num_ranks` ranks; rank g holds slots [g*k, (g+1)*k), k = slots / ranks.
// As in balancedness(), an expert's load is split evenly over its replicas. The search
// keeps every rank's slot count and at least one replica per expert, and never puts a
// second replica of an expert on a rank that already holds one (it does not remove such
// pairs when the starting map has them). Each step takes the heaviest rank `a` (lowest
// index among equals) and applies the best of:
//   - swap: exchange a replica on `a` with a lighter replica on another rank;
//   - re-replicate: take one replica away from an expert that has two or more and give
//     its slot to an expert on `a` (which of the experts gets a redundant slot is thus
//     decided by the resulting max load, not by load per replica alone);
// "best" = the lowest new load over the ranks the move changes, and a move is taken
// only when every rank it changes ends strictly below a's load. Each step therefore
// lowers (max load, number of ranks at the max) lexicographically, so the search ends;
// it also stops after `max_moves` steps. Ties break by the lowest slot index.
#pragma once

#include <cstdint>
#include <vector>

namespace moeserve::placement {

// Max rank load of a domain map, summed slot by slot in slot order exactly as
// balancedness() sums, so the two agree bit for bit. `weights` indexes slot_expert.
double max_rank_load(const std::vector<double>& weights, const std::vector<int32_t>& slot_expert,
                     int32_t num_ranks);

// Improves `slot_expert` in place and returns its max rank load (max_rank_load). When
// the search does not lower the max load as max_rank_load() measures it, the map is
// left as it was. Preconditions: slots % num_ranks == 0; every expert id in
// [0, weights.size()) has at least one slot.
double refine_domain(const std::vector<double>& weights, int32_t num_ranks,
                     std::vector<int32_t>* slot_expert, int32_t max_moves);

// refine_domain() on each of `num_domains` equal, contiguous slot ranges of one layer's
// phy2log (domain d = slots [d*S/D, (d+1)*S/D) and ranks [d*R/D, (d+1)*R/D)), each over
// the experts that appear in it. Precondition: every expert appears in exactly one
// domain (true of any hierarchical map with D = nodes, and of any map with D = 1).
void refine_layer(const std::vector<double>& weights, int32_t num_ranks, int32_t num_domains,
                  std::vector<int32_t>* phy2log);

}  // namespace moeserve::placement
