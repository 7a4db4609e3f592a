#include "operator/deployment/placement_config.h"

#include <algorithm>

#include "operator/placement/eplb.h"

namespace moeserve::deployment {

std::vector<std::vector<int32_t>> default_phy2log(int32_t experts, int32_t layers,
                                                  int32_t redundant) {
  std::vector<int32_t> row;
  row.reserve(experts + redundant);
  for (int32_t e = 0; e < experts; ++e) row.push_back(e);
  for (int32_t j = 0; j < redundant; ++j) {
    row.push_back(static_cast<int32_t>(int64_t{j} * experts / redundant));
  }
  return std::vector<std::vector<int32_t>>(layers, row);
}

bool placement_fits(const std::vector<std::vector<int32_t>>& layers, int32_t experts,
                    int32_t num_layers, int32_t redundant) {
  if (static_cast<int64_t>(layers.size()) != num_layers) return false;
  for (const std::vector<int32_t>& row : layers) {
    if (static_cast<int64_t>(row.size()) != int64_t{experts} + redundant) return false;
    std::vector<bool> seen(experts, false);
    for (int32_t e : row) {
      if (e < 0 || e >= experts) return false;
      seen[e] = true;
    }
    if (std::find(seen.begin(), seen.end(), false) != seen.end()) return false;
  }
  return true;
}

double uniform_balancedness(const std::vector<std::vector<int32_t>>& layers, int32_t ranks) {
  std::vector<std::vector<double>> unit_load;
  for (const std::vector<int32_t>& row : layers) {
    int32_t experts = 0;
    for (int32_t e : row) experts = std::max(experts, e + 1);
    unit_load.emplace_back(experts, 1.0);
  }
  return placement::balancedness(unit_load, layers, ranks);
}

}  // namespace moeserve::deployment
