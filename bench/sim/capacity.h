// What one group of a model can do, for the simulator: read from a documented JSON
// file in bench/ (bench/capacity-*.json). Pure; thread-safe.
//
// {
//   "name": "...", "notes": ["how each number was obtained", ...],
//   "usd_per_group_hour": 16.0,       price of one group for one hour
//   "startup_s": 240,                 a new group's start-up (the --startup-s default)
//   "kv_tokens": 4000000,             KV-cache tokens one group holds
//   "max_batch": 704,                 sequences decoding at once
//   "max_prefill_tokens": 16384,      prompt tokens in one prefill batch
//   "prefill_tokens_per_s": [[tokens in the batch, tokens/s], ...],
//   "decode_tokens_per_s": [[sequences decoding, tokens/s of all of them], ...]
// }
// Curves are piecewise linear between their points (x ascending, y > 0) and flat
// beyond the first and last. Unknown keys are refused, so a misspelt field is not
// silently ignored.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace moeserve::sim {

struct Curve {
  std::vector<std::pair<double, double>> points;
  double at(double x) const;
};

struct Capacity {
  std::string name;
  double usd_per_group_hour = 0;
  double startup_s = 240;
  int64_t kv_tokens = 0;
  int32_t max_batch = 1;
  int64_t max_prefill_tokens = 1;
  Curve prefill_tokens_per_s;
  Curve decode_tokens_per_s;
};

StatusOr<Capacity> parse_capacity(std::string_view json_text);
StatusOr<Capacity> read_capacity_file(const std::string& path);

// Tokens/s (prompt + output) one saturated group serves of requests with these mean
// lengths: each request costs its prefill time plus its share of a full decode batch
// (the batch limited by max_batch and by the KV tokens the requests reserve).
double saturated_tokens_per_s(const Capacity& capacity, double prompt_tokens, double output_tokens);

}  // namespace moeserve::sim
