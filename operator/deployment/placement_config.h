// The expert placement a group's workers load from the ConfigMap x-placement (key
// placement.json, mounted at /etc/moeserve/placement/placement.json):
//   {"version": N, "layers": [{"phy2log": [e0, e1, ...]}, ...]}
// layers[l] is the l-th MoE layer; phy2log[s] is the logical expert held by physical
// slot s. With E routed experts, R redundant slots and W ranks, there are E + R slots
// per layer and rank r holds slots [r * (E+R)/W, (r+1) * (E+R)/W). Every logical expert
// has at least one slot; tokens for an expert with several slots are split evenly.
#pragma once

#include <cstdint>
#include <vector>

#include "common/placement_file.h"

namespace moeserve::deployment {

inline constexpr const char* kPlacementKey = "placement.json";
inline constexpr const char* kPlacementMountDir = "/etc/moeserve/placement";

// The content of placement.json, read and written by common/placement_file.h (the
// worker reads the same file with the same code).
using Placement = PlacementFile;

// Before any load is measured: in every layer the logical experts 0..E-1 in order,
// then one extra replica for each of R experts spread evenly over the expert range
// (slot E + j holds expert j * E / R), so the replicas do not all come from one rank.
std::vector<std::vector<int32_t>> default_phy2log(int32_t experts, int32_t layers,
                                                  int32_t redundant);
// True when `layers` has `num_layers` rows of `experts + redundant` slots, each slot a
// logical expert in [0, experts) and every logical expert present in every row.
bool placement_fits(const std::vector<std::vector<int32_t>>& layers, int32_t experts,
                    int32_t num_layers, int32_t redundant);
// Mean over layers of (mean rank load / max rank load), each logical expert carrying
// the same load split evenly over its slots: what the placement achieves before real
// loads are known. 1 is perfect. Precondition: slots per layer divisible by ranks.
double uniform_balancedness(const std::vector<std::vector<int32_t>>& layers, int32_t ranks);

}  // namespace moeserve::deployment
