#include "operator/placement/locality.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

namespace moeserve::placement {

Status check_traffic_model(const TrafficModel& model) {
  const std::pair<const char*, double> fields[] = {
      {"intra_node_bytes_per_s", model.intra_node_bytes_per_s},
      {"inter_node_bytes_per_s", model.inter_node_bytes_per_s},
      {"bytes_per_token_hop", model.bytes_per_token_hop},
      {"compute_s_per_token_expert", model.compute_s_per_token_expert},
      {"experts_per_token", model.experts_per_token},
      {"groups_per_token", model.groups_per_token},
  };
  for (const auto& [name, value] : fields) {
    if (!std::isfinite(value) || value <= 0) {
      return invalid_argument_error(std::string("placement: traffic model ") + name +
                                    " must be a positive finite number, got " +
                                    std::to_string(value));
    }
  }
  return ok_status();
}

double destination_nodes(const TrafficModel& model, int32_t groups, int32_t nodes,
                         bool keep_groups_on_nodes) {
  const double n = nodes;
  if (!keep_groups_on_nodes) return n * (1 - std::pow(1 - 1 / n, model.experts_per_token));
  // C(G - G/N, t) / C(G, t) = prod_{i < t} (G - G/N - i) / (G - i), for whole t <= G.
  const int32_t picked = std::min<int32_t>(groups, static_cast<int32_t>(model.groups_per_token));
  const int32_t elsewhere = groups - groups / nodes;
  double missed = 1;
  for (int32_t i = 0; i < picked; ++i) {
    missed *= std::max(0, elsewhere - i) / static_cast<double>(groups - i);
  }
  return n * (1 - missed);
}

double layer_step_seconds(const TrafficModel& model, double max_rank_load, double total_load,
                          int32_t ranks, int32_t groups, int32_t nodes, bool keep_groups_on_nodes) {
  const double tokens_per_rank = total_load / model.experts_per_token / ranks;
  const double remote = destination_nodes(model, groups, nodes, keep_groups_on_nodes) *
                        (nodes - 1) / static_cast<double>(nodes);
  const double send_s = tokens_per_rank * model.bytes_per_token_hop *
                        (remote / model.inter_node_bytes_per_s +
                         model.experts_per_token / model.intra_node_bytes_per_s);
  return max_rank_load * model.compute_s_per_token_expert + send_s;
}

LocalityChoice choose_locality(const TrafficModel& model, const LocalityInput& input) {
  LocalityChoice out;
  for (size_t l = 0; l < input.total_load.size(); ++l) {
    out.grouped_step_s += layer_step_seconds(model, input.grouped_max_load[l], input.total_load[l],
                                             input.ranks, input.groups, input.nodes, true);
    out.spread_step_s += layer_step_seconds(model, input.spread_max_load[l], input.total_load[l],
                                            input.ranks, input.groups, input.nodes, false);
  }
  out.keep_groups_on_nodes = out.grouped_step_s <= out.spread_step_s;
  return out;
}

}  // namespace moeserve::placement
