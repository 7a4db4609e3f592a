#include "operator/placement/eplb.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace moeserve::placement {
namespace {

struct LayerPlan {
  std::vector<int32_t> phy2log;
  std::vector<int32_t> rank;    // replica rank of each slot
  std::vector<int32_t> logcnt;  // replicas per logical expert
};

std::vector<int32_t> inverse(const std::vector<int32_t>& permutation) {
  std::vector<int32_t> out(permutation.size());
  for (size_t i = 0; i < permutation.size(); ++i) out[permutation[i]] = static_cast<int32_t>(i);
  return out;
}

LayerPlan rebalance_layer(const std::vector<double>& weights, const EplbShape& shape,
                          int32_t groups, int32_t nodes) {
  const int32_t experts = static_cast<int32_t>(weights.size());
  const int32_t group_size = experts / groups;
  const int32_t groups_per_node = groups / nodes;
  const int32_t experts_per_node = experts / nodes;
  const int32_t slots_per_node = shape.num_slots / nodes;
  const int32_t gpus_per_node = shape.num_gpus / nodes;
  const int32_t slots_per_gpu = shape.num_slots / shape.num_gpus;

  // Step 1: expert groups onto nodes. "mlog" numbers experts node by node.
  std::vector<double> group_load(groups, 0.0);
  for (int32_t e = 0; e < experts; ++e) group_load[e / group_size] += weights[e];
  const Packing group_packing = balanced_packing(group_load, nodes);
  std::vector<int32_t> log2mlog(experts);
  for (int32_t e = 0; e < experts; ++e) {
    const int32_t g = e / group_size;
    log2mlog[e] =
        (group_packing.pack[g] * groups_per_node + group_packing.rank_in_pack[g]) * group_size +
        e % group_size;
  }
  const std::vector<int32_t> mlog2log = inverse(log2mlog);

  LayerPlan out;
  out.phy2log.assign(shape.num_slots, -1);
  out.rank.assign(shape.num_slots, 0);
  std::vector<int32_t> mlogcnt(experts, 0);
  for (int32_t node = 0; node < nodes; ++node) {
    // Step 2: replicas within the node.
    std::vector<double> node_load(experts_per_node);
    for (int32_t j = 0; j < experts_per_node; ++j) {
      node_load[j] = weights[mlog2log[node * experts_per_node + j]];
    }
    const Replication replication = replicate_experts(node_load, slots_per_node);
    for (int32_t j = 0; j < experts_per_node; ++j) {
      mlogcnt[node * experts_per_node + j] = replication.logcnt[j];
    }
    // Step 3: the node's replicas onto its GPUs.
    std::vector<double> replica_load(slots_per_node);
    for (int32_t k = 0; k < slots_per_node; ++k) {
      const int32_t j = replication.phy2log[k];
      replica_load[k] = node_load[j] / replication.logcnt[j];
    }
    const Packing gpu_packing = balanced_packing(replica_load, gpus_per_node);
    for (int32_t k = 0; k < slots_per_node; ++k) {
      const int32_t slot =
          node * slots_per_node + gpu_packing.pack[k] * slots_per_gpu + gpu_packing.rank_in_pack[k];
      out.phy2log[slot] = mlog2log[node * experts_per_node + replication.phy2log[k]];
      out.rank[slot] = replication.rank[k];
    }
  }
  out.logcnt.resize(experts);
  for (int32_t e = 0; e < experts; ++e) out.logcnt[e] = mlogcnt[log2mlog[e]];
  return out;
}

}  // namespace

Status check_plan_input(const std::vector<std::vector<double>>& weights, const EplbShape& s,
                        bool hierarchical) {
  if (weights.empty() || weights[0].empty()) {
    return invalid_argument_error("eplb: no layers or no experts");
  }
  const size_t experts = weights[0].size();
  for (size_t l = 0; l < weights.size(); ++l) {
    if (weights[l].size() != experts) {
      return invalid_argument_error("eplb: layer " + std::to_string(l) + " has " +
                                    std::to_string(weights[l].size()) + " experts, layer 0 has " +
                                    std::to_string(experts));
    }
    for (double w : weights[l]) {
      if (!std::isfinite(w) || w < 0) {
        return invalid_argument_error("eplb: layer " + std::to_string(l) +
                                      " has a negative or non-finite load");
      }
    }
  }
  const int64_t e = static_cast<int64_t>(experts);
  if (s.num_gpus < 1 || s.num_nodes < 1 || s.num_groups < 1) {
    return invalid_argument_error("eplb: gpus, nodes and groups must be >= 1");
  }
  if (s.num_slots < e) {
    return invalid_argument_error("eplb: " + std::to_string(s.num_slots) + " slots < " +
                                  std::to_string(e) + " experts");
  }
  if (s.num_slots % s.num_gpus != 0) {
    return invalid_argument_error("eplb: slots (" + std::to_string(s.num_slots) +
                                  ") not divisible by gpus (" + std::to_string(s.num_gpus) + ")");
  }
  if (s.num_gpus % s.num_nodes != 0) {
    return invalid_argument_error("eplb: gpus (" + std::to_string(s.num_gpus) +
                                  ") not divisible by nodes (" + std::to_string(s.num_nodes) + ")");
  }
  if (hierarchical && e % s.num_groups != 0) {
    return invalid_argument_error("eplb: experts (" + std::to_string(e) +
                                  ") not divisible by groups (" + std::to_string(s.num_groups) +
                                  ")");
  }
  return ok_status();
}

bool hierarchical_applies(const EplbShape& shape) {
  return shape.num_nodes >= 1 && shape.num_groups % shape.num_nodes == 0;
}

Packing balanced_packing(const std::vector<double>& weights, int32_t num_packs) {
  const int32_t n = static_cast<int32_t>(weights.size());
  const int32_t per_pack = n / num_packs;
  Packing out;
  out.pack.assign(n, -1);
  out.rank_in_pack.assign(n, 0);
  if (per_pack == 1) {
    std::iota(out.pack.begin(), out.pack.end(), 0);
    return out;
  }
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return weights[a] > weights[b]; });
  std::vector<double> pack_load(num_packs, 0.0);
  std::vector<int32_t> pack_items(num_packs, 0);
  for (int32_t item : order) {
    int32_t best = -1;
    for (int32_t p = 0; p < num_packs; ++p) {
      if (pack_items[p] < per_pack && (best < 0 || pack_load[p] < pack_load[best])) best = p;
    }
    out.pack[item] = best;
    out.rank_in_pack[item] = pack_items[best]++;
    pack_load[best] += weights[item];
  }
  return out;
}

Replication replicate_experts(const std::vector<double>& weights, int32_t num_slots) {
  const int32_t experts = static_cast<int32_t>(weights.size());
  Replication out;
  out.phy2log.resize(num_slots);
  out.rank.assign(num_slots, 0);
  out.logcnt.assign(experts, 1);
  std::iota(out.phy2log.begin(), out.phy2log.begin() + experts, 0);
  for (int32_t slot = experts; slot < num_slots; ++slot) {
    int32_t best = 0;
    for (int32_t e = 1; e < experts; ++e) {
      if (weights[e] / out.logcnt[e] > weights[best] / out.logcnt[best]) best = e;
    }
    out.phy2log[slot] = best;
    out.rank[slot] = out.logcnt[best]++;
  }
  return out;
}

StatusOr<EplbPlan> rebalance_experts(const std::vector<std::vector<double>>& weights,
                                     const EplbShape& shape) {
  const bool hierarchical = hierarchical_applies(shape);
  MOESERVE_RETURN_IF_ERROR(check_plan_input(weights, shape, hierarchical));
  const int32_t groups = hierarchical ? shape.num_groups : 1;
  const int32_t nodes = hierarchical ? shape.num_nodes : 1;
  const int32_t experts = static_cast<int32_t>(weights[0].size());

  EplbPlan out;
  std::vector<LayerPlan> layers;
  int32_t max_count = 1;
  for (const std::vector<double>& row : weights) {
    layers.push_back(rebalance_layer(row, shape, groups, nodes));
    for (int32_t c : layers.back().logcnt) max_count = std::max(max_count, c);
  }
  for (LayerPlan& layer : layers) {
    std::vector<std::vector<int32_t>> log2phy(experts, std::vector<int32_t>(max_count, -1));
    for (int32_t slot = 0; slot < shape.num_slots; ++slot) {
      log2phy[layer.phy2log[slot]][layer.rank[slot]] = slot;
    }
    out.phy2log.push_back(std::move(layer.phy2log));
    out.log2phy.push_back(std::move(log2phy));
    out.logcnt.push_back(std::move(layer.logcnt));
  }
  return out;
}

double balancedness(const std::vector<std::vector<double>>& weights,
                    const std::vector<std::vector<int32_t>>& phy2log, int32_t num_gpus) {
  if (phy2log.empty() || num_gpus <= 0) return 1.0;
  double sum = 0;
  for (size_t l = 0; l < phy2log.size(); ++l) {
    const std::vector<int32_t>& row = phy2log[l];
    const std::vector<double>& load = weights[l];
    std::vector<int32_t> replicas(load.size(), 0);
    for (int32_t e : row) ++replicas[e];
    const size_t slots_per_gpu = row.size() / num_gpus;
    std::vector<double> gpu_load(num_gpus, 0.0);
    for (size_t s = 0; s < row.size(); ++s) {
      gpu_load[s / slots_per_gpu] += load[row[s]] / replicas[row[s]];
    }
    const double max = *std::max_element(gpu_load.begin(), gpu_load.end());
    const double total = std::accumulate(gpu_load.begin(), gpu_load.end(), 0.0);
    sum += max > 0 ? total / num_gpus / max : 1.0;
  }
  return sum / static_cast<double>(phy2log.size());
}

}  // namespace moeserve::placement
