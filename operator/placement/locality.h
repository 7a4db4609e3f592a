// Keep expert groups on nodes, or spread replicas across nodes? A cost model of one MoE
// layer's step, pure, for the `auto` policy. Fields are per rank and can be filled with
// measured figures; the defaults describe DeepSeek-V3 on 8-GPU H800-class nodes.
//
// Units: a layer's load is token-expert assignments over the measuring window (what the
// workers count). With k experts per token, the window holds W / k tokens, and they
// start evenly over the R ranks (data-parallel attention), so each rank sends
// W / (k R) tokens. The all-to-all sends one copy of a token to every distinct remote
// node it needs (then fans out to that node's ranks over the fast links, as DeepEP's
// internode kernels do) and one copy per expert over the fast links. For a placement
// whose heaviest rank carries T assignments:
//
//   step_s = T * compute_s_per_token_expert
//          + W / (k R) * bytes_per_token_hop * (remote / inter_node_bytes_per_s
//                                               + k / intra_node_bytes_per_s)
//
// remote = D (N - 1) / N: each of the D distinct destination nodes of a token is a
// remote one unless it is the token's own node (probability 1 / N). Groups on nodes
// (group-limited routing: a token picks t = groups_per_token of the G groups, DeepSeek-V3
// t = 4 of 8, and each node holds G / N of them): a node is missed when all t groups
// lie in the other G - G/N, so D = N (1 - C(G - G/N, t) / C(G, t)). Spread: the k
// experts sit on nodes independently of each other, D = N (1 - (1 - 1/N)^k).
//
// The spread map never has a heavier max rank than the grouped one (it is searched from
// the grouped one), so spreading wins exactly when its lower compute time pays for the
// extra inter-node copies. Ties keep the groups on nodes.
#pragma once

#include <vector>

#include "common/status.h"

namespace moeserve::placement {

struct TrafficModel {
  double intra_node_bytes_per_s = 150e9;  // per rank (NVLink-class)
  double inter_node_bytes_per_s = 40e9;   // per rank (a 400 Gb/s NIC per GPU)
  // Bytes per token per destination, dispatch and combine: hidden 7168 in FP8 (1 byte)
  // out and BF16 (2 bytes) back.
  double bytes_per_token_hop = 7168.0 * 3;
  // One routed expert's FFN for one token (3 x 7168 x 2048 FP8 MACs at ~750 TFLOP/s).
  double compute_s_per_token_expert = 1.2e-7;
  double experts_per_token = 8;  // num_experts_per_tok
  double groups_per_token = 4;   // topk_group: groups a token's experts are picked from
};

// invalid_argument naming the field when one is not a positive finite number.
Status check_traffic_model(const TrafficModel& model);

// Expected distinct nodes a token's experts are on (D above). Precondition (grouped):
// groups % nodes == 0.
double destination_nodes(const TrafficModel& model, int32_t groups, int32_t nodes,
                         bool keep_groups_on_nodes);

// step_s above for one layer.
double layer_step_seconds(const TrafficModel& model, double max_rank_load, double total_load,
                          int32_t ranks, int32_t groups, int32_t nodes, bool keep_groups_on_nodes);

// The two candidate maps of one plan: per layer, the max rank load and the total load.
struct LocalityInput {
  std::vector<double> grouped_max_load;  // groups kept on nodes
  std::vector<double> spread_max_load;   // replicas spread across nodes
  std::vector<double> total_load;
  int32_t ranks = 1;
  int32_t groups = 1;
  int32_t nodes = 1;
};

struct LocalityChoice {
  bool keep_groups_on_nodes = true;
  double grouped_step_s = 0;  // summed over layers
  double spread_step_s = 0;
};

// Sums layer_step_seconds over the layers for both maps and keeps the cheaper one.
// Precondition: the three vectors have one entry per layer.
LocalityChoice choose_locality(const TrafficModel& model, const LocalityInput& input);

}  // namespace moeserve::placement
