// The arrival schedule of bench-load: when each request is sent and how long it is, from
// a Poisson rate (seeded, so a run is reproducible) or from a trace (bench/sim/trace.h's
// formats), bounded in count and time. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "bench/sim/trace.h"

namespace moeserve::load {

struct PoissonOptions {
  double rate_per_s = 1;  // > 0
  double duration_s = 60;
  int64_t max_requests = 0;  // 0: no bound but the duration
  int64_t prompt_tokens = 32;
  int64_t output_tokens = 16;
  uint64_t seed = 1;
};

// Exponential gaps of mean 1 / rate from t = 0; every request has the given lengths.
// Stops at duration_s or max_requests, whichever comes first.
std::vector<sim::Request> poisson_schedule(const PoissonOptions& options);

// The trace cut to the requests arriving before duration_s (0: all) and to the first
// max_requests (0: all), its lengths overridden by prompt_tokens / output_tokens when
// those are > 0, and each output length capped at max_output_tokens when that is > 0.
struct TraceLimits {
  double duration_s = 0;
  int64_t max_requests = 0;
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  int64_t max_output_tokens = 0;
};
std::vector<sim::Request> limit_trace(std::vector<sim::Request> trace, const TraceLimits& limits);

}  // namespace moeserve::load
