#include "operator/placement/bound.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <unordered_map>
#include <utility>

namespace moeserve::placement {
namespace {

// Number of ways to split `groups` into `nodes` unordered sets of groups / nodes each.
double partition_count(int32_t groups, int32_t nodes) {
  const int32_t per_node = groups / nodes;
  double log_count =
      std::lgamma(groups + 1.0) - nodes * std::lgamma(per_node + 1.0) - std::lgamma(nodes + 1.0);
  return std::exp(log_count);
}

std::vector<double> experts_of_groups(const std::vector<double>& weights, int32_t group_size,
                                      uint32_t group_mask) {
  std::vector<double> out;
  for (int32_t g = 0; g < 32; ++g) {
    if (!(group_mask >> g & 1u)) continue;
    out.insert(out.end(), weights.begin() + g * group_size, weights.begin() + (g + 1) * group_size);
  }
  return out;
}

double total(const std::vector<double>& w) { return std::accumulate(w.begin(), w.end(), 0.0); }

}  // namespace

double min_max_share(const std::vector<double>& weights, int32_t slots) {
  using Entry = std::pair<double, int32_t>;  // (share, expert)
  std::vector<int32_t> count(weights.size(), 1);
  std::vector<Entry> heap;
  heap.reserve(weights.size());
  for (int32_t e = 0; e < static_cast<int32_t>(weights.size()); ++e)
    heap.push_back({weights[e], e});
  std::make_heap(heap.begin(), heap.end());
  for (int32_t extra = static_cast<int32_t>(weights.size()); extra < slots; ++extra) {
    std::pop_heap(heap.begin(), heap.end());
    const int32_t e = heap.back().second;
    heap.back().first = weights[e] / ++count[e];
    std::push_heap(heap.begin(), heap.end());
  }
  return heap.front().first;
}

double domain_load_bound(const std::vector<double>& weights, int32_t slots, int32_t ranks) {
  return std::max(total(weights) / ranks, min_max_share(weights, slots));
}

std::optional<GroupAssignment> best_group_assignment(const std::vector<double>& weights,
                                                     const EplbShape& shape) {
  const int32_t groups = shape.num_groups;
  const int32_t nodes = shape.num_nodes;
  if (groups > 31 || partition_count(groups, nodes) > kMaxPartitions) return std::nullopt;
  const int32_t per_node = groups / nodes;
  const int32_t group_size = static_cast<int32_t>(weights.size()) / groups;
  const int32_t slots = shape.num_slots / nodes;
  const int32_t ranks = shape.num_gpus / nodes;

  std::unordered_map<uint32_t, double> node_bound;  // group set -> D(P)
  auto bound_of = [&](uint32_t mask) {
    auto it = node_bound.find(mask);
    if (it != node_bound.end()) return it->second;
    const double d = domain_load_bound(experts_of_groups(weights, group_size, mask), slots, ranks);
    node_bound.emplace(mask, d);
    return d;
  };

  GroupAssignment best;
  best.load_bound = HUGE_VAL;
  std::vector<uint32_t> chosen;  // the group set of each node so far
  const uint32_t all = groups == 32 ? ~0u : (1u << groups) - 1;
  // Pairs the lowest unassigned group with each ascending choice of per_node - 1 others.
  std::function<void(uint32_t, double)> visit = [&](uint32_t assigned, double worst) {
    if (worst >= best.load_bound) return;
    if (assigned == all) {
      best.load_bound = worst;
      best.node_of_group.assign(groups, -1);
      for (size_t n = 0; n < chosen.size(); ++n) {
        for (int32_t g = 0; g < groups; ++g) {
          if (chosen[n] >> g & 1u) best.node_of_group[g] = static_cast<int32_t>(n);
        }
      }
      return;
    }
    int32_t first = 0;
    while (assigned >> first & 1u) ++first;
    std::function<void(uint32_t, int32_t, int32_t)> pick = [&](uint32_t set, int32_t from,
                                                               int32_t left) {
      if (left == 0) {
        chosen.push_back(set);
        visit(assigned | set, std::max(worst, bound_of(set)));
        chosen.pop_back();
        return;
      }
      for (int32_t g = from; g < groups; ++g) {
        if (!(assigned >> g & 1u)) pick(set | 1u << g, g + 1, left - 1);
      }
    };
    pick(1u << first, first + 1, per_node - 1);
  };
  visit(0, 0);
  return best;
}

double max_load_bound(const std::vector<double>& weights, const EplbShape& shape,
                      bool keep_groups_on_nodes) {
  const double mean = total(weights) / shape.num_gpus;
  if (!keep_groups_on_nodes || shape.num_nodes == 1) {
    return std::max(mean, domain_load_bound(weights, shape.num_slots, shape.num_gpus));
  }
  if (auto best = best_group_assignment(weights, shape)) return std::max(mean, best->load_bound);
  const int32_t group_size = static_cast<int32_t>(weights.size()) / shape.num_groups;
  const int32_t per_node = shape.num_groups / shape.num_nodes;
  const int32_t slots = shape.num_slots / shape.num_nodes - (per_node - 1) * group_size;
  const int32_t ranks = shape.num_gpus / shape.num_nodes;
  double bound = mean;
  for (int32_t g = 0; g < shape.num_groups; ++g) {
    const std::vector<double> group(weights.begin() + g * group_size,
                                    weights.begin() + (g + 1) * group_size);
    bound = std::max(bound, domain_load_bound(group, slots, ranks));
  }
  return bound;
}

double balancedness_bound(const std::vector<std::vector<double>>& weights, const EplbShape& shape,
                          bool keep_groups_on_nodes) {
  if (weights.empty()) return 1.0;
  double sum = 0;
  for (const std::vector<double>& row : weights) {
    const double bound = max_load_bound(row, shape, keep_groups_on_nodes);
    sum += bound > 0 ? total(row) / shape.num_gpus / bound : 1.0;
  }
  return sum / static_cast<double>(weights.size());
}

}  // namespace moeserve::placement
