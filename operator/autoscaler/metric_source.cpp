#include "operator/autoscaler/metric_source.h"

#include <map>

namespace moeserve::autoscaler {

void fold_windows(const std::vector<const GroupWindow*>& windows, Measurement* m) {
  std::map<double, double> ttft;
  std::map<ExpertKey, double> experts;
  std::map<ExpertKey, double> ranks;
  for (const GroupWindow* window : windows) {
    if (auto tps = window->tokens_per_second()) {
      m->tokens_per_second = m->tokens_per_second.value_or(0) + *tps;
    }
    if (auto rps = window->requests_per_second()) {
      m->requests_per_second = m->requests_per_second.value_or(0) + *rps;
    }
    for (const auto& [le, count] : window->ttft_increase()) ttft[le] += count;
    for (const auto& [key, load] : window->expert_load()) experts[key] += load;
    for (const auto& [key, load] : window->rank_load()) ranks[key] += load;
  }
  m->ttft_p95_seconds = histogram_quantile(0.95, {ttft.begin(), ttft.end()});
  m->expert_load = expert_load_from(experts);
  m->rank_load = expert_load_from(ranks);
}

}  // namespace moeserve::autoscaler
