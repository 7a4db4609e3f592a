#include "bench/load/arrivals.h"

#include <algorithm>
#include <random>

namespace moeserve::load {

std::vector<sim::Request> poisson_schedule(const PoissonOptions& options) {
  std::vector<sim::Request> out;
  std::mt19937_64 rng(options.seed);
  std::exponential_distribution<double> gap(options.rate_per_s);
  double t = 0;
  while (options.max_requests == 0 || static_cast<int64_t>(out.size()) < options.max_requests) {
    t += gap(rng);
    if (t >= options.duration_s) break;
    out.push_back({t, options.prompt_tokens, options.output_tokens});
  }
  return out;
}

std::vector<sim::Request> limit_trace(std::vector<sim::Request> trace, const TraceLimits& limits) {
  std::vector<sim::Request> out;
  for (sim::Request& r : trace) {
    if (limits.duration_s > 0 && r.arrival_s >= limits.duration_s) break;
    if (limits.max_requests > 0 && static_cast<int64_t>(out.size()) >= limits.max_requests) break;
    if (limits.prompt_tokens > 0) r.prompt_tokens = limits.prompt_tokens;
    if (limits.output_tokens > 0) r.output_tokens = limits.output_tokens;
    if (limits.max_output_tokens > 0) {
      r.output_tokens = std::min(r.output_tokens, limits.max_output_tokens);
    }
    out.push_back(r);
  }
  return out;
}

}  // namespace moeserve::load
