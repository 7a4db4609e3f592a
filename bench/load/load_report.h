// What a load run measured, summarised: throughput (completed requests/s, output
// tokens/s over the run's wall time), TTFT and inter-token-latency percentiles over the
// successful requests, and failures by kind (HTTP status, connection, mid-stream), with
// 429s counted apart from other statuses (a 429 is the server refusing by design).
// Pure; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/load/completion.h"

namespace moeserve::load {

struct Percentiles {
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
};

// The value at rank floor(p x n) of the sorted values (p in [0, 1]); 0 for none.
double percentile(std::vector<double> values, double p);
Percentiles percentiles(const std::vector<double>& values);

struct LoadReport {
  double wall_s = 0;
  int64_t sent = 0;
  int64_t ok = 0;
  int64_t rate_limited = 0;              // 429
  int64_t rate_limited_retry_after = 0;  // of those, with a Retry-After header
  std::map<int, int64_t> http_errors;    // other statuses -> count
  int64_t connection_errors = 0;
  int64_t mid_stream_errors = 0;
  int64_t output_tokens = 0;  // of the successful requests
  double requests_per_s = 0;
  double output_tokens_per_s = 0;
  Percentiles ttft_s;
  Percentiles itl_s;
  std::string first_error;  // the first failure's message, "" when none

  // Everything but 200 and 429: what a soak must keep at zero.
  int64_t failed() const;
};

LoadReport summarize(const std::vector<CompletionResult>& results, double wall_s);

nlohmann::json report_json(const LoadReport& report);
// Human-readable lines (no trailing newline).
std::string report_text(const LoadReport& report);

}  // namespace moeserve::load
