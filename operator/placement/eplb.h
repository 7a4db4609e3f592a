// The expert placement planner: an expert-parallelism load balancer after DeepSeek's
// EPLB (rebalance_experts). Pure functions over plain vectors; no I/O, deterministic.
//
// Input: the measured load of every logical expert per MoE layer (any non-negative
// unit, e.g. routed tokens over a window), the number of physical expert slots per
// layer (logical experts + redundant slots) and the shape of one model copy: expert
// groups, nodes and GPUs (ranks). Output per layer: phy2log (slot -> logical expert;
// GPU g holds slots [g*S/G, (g+1)*S/G)), log2phy (logical expert -> its slots, padded
// with -1 to the largest replica count of any layer) and logcnt (replicas per expert).
//
// Policy, per layer:
//   - hierarchical, when the expert groups divide evenly over the nodes: pack the
//     groups onto nodes (balanced, equal group count per node), replicate hot experts
//     within each node, then pack each node's replicas onto its GPUs;
//   - global otherwise: the same with one group and one node.
// Replication gives each extra slot to the expert with the largest load per replica.
// Packing places items heaviest first into the lightest pack that still has room
// (every pack ends with the same number of items). Ties break by lowest index, so the
// result is a function of the input alone.
//
// balancedness(): mean GPU load / max GPU load (1 = perfect), averaged over layers,
// each expert's load split evenly over its slots.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace moeserve::placement {

struct EplbShape {
  int32_t num_slots = 0;   // physical experts per layer (logical + redundant)
  int32_t num_groups = 1;  // expert groups of the model (DeepSeek-V3: n_group = 8)
  int32_t num_nodes = 1;   // nodes of one model copy (fast links within a node)
  int32_t num_gpus = 1;    // ranks of one model copy; a multiple of num_nodes
};

struct EplbPlan {
  std::vector<std::vector<int32_t>> phy2log;               // [layer][slot]
  std::vector<std::vector<std::vector<int32_t>>> log2phy;  // [layer][expert][replica], -1 pad
  std::vector<std::vector<int32_t>> logcnt;                // [layer][expert]
};

// Packs items into `num_packs` packs of items.size() / num_packs items each, heaviest
// item first into the lightest pack with room. Returns the pack of each item and its
// position within the pack. Precondition: items.size() % num_packs == 0.
struct Packing {
  std::vector<int32_t> pack;
  std::vector<int32_t> rank_in_pack;
};
Packing balanced_packing(const std::vector<double>& weights, int32_t num_packs);

// Replicates `weights.size()` logical experts to `num_slots` slots: slot i < E holds
// expert i; each further slot goes to the expert with the largest weight / replicas.
// Returns phy2log, the replica rank of every slot, and the replica count per expert.
struct Replication {
  std::vector<int32_t> phy2log;
  std::vector<int32_t> rank;
  std::vector<int32_t> logcnt;
};
Replication replicate_experts(const std::vector<double>& weights, int32_t num_slots);

// True when EPLB's hierarchical policy applies: the expert groups divide evenly over the
// nodes (then each group stays on one node); else the global policy.
bool hierarchical_applies(const EplbShape& shape);

// invalid_argument when the loads or the shape do not fit: no layers or experts, a
// negative or non-finite load, ragged rows, slots < experts, slots % gpus != 0,
// gpus % nodes != 0, or (hierarchical only) experts % groups != 0. Every policy checks
// its input with this.
Status check_plan_input(const std::vector<std::vector<double>>& weights, const EplbShape& shape,
                        bool hierarchical);

// invalid_argument when the shape does not fit: no layers or experts, a negative or
// non-finite load, ragged rows, slots < experts, slots % gpus != 0, gpus % nodes != 0,
// or (hierarchical only) experts % groups != 0.
StatusOr<EplbPlan> rebalance_experts(const std::vector<std::vector<double>>& weights,
                                     const EplbShape& shape);

// Mean over layers of (mean GPU load / max GPU load) for `phy2log` under `weights`.
// A layer with no load counts as 1. Precondition: every row's slot count is divisible
// by num_gpus and names experts within weights' rows.
double balancedness(const std::vector<std::vector<double>>& weights,
                    const std::vector<std::vector<int32_t>>& phy2log, int32_t num_gpus);

}  // namespace moeserve::placement
