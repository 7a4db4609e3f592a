// The autoscaling policy: how many groups a deployment should have, from what was
// measured, with a human-readable reason for every decision. Pure: no I/O, time passed
// in; table-tested.
//
// recommend() decides, in this order of precedence:
//   1. No measurement yet (tokens/s unknown): keep the current groups.
//   2. Throughput: with targetTokensPerSecondPerGroup, ceil(tokens/s / target) groups —
//      unchanged while tokens/s per current group is within `tolerance` of the target
//      (as the HPA does, so noise does not flap). Without a target: the current groups.
//   3. Queue: more than `max_waiting_per_group` requests waiting per ready group asks
//      for ready × (waiting per group / max_waiting_per_group) groups, at least one more
//      and at most twice as many as are ready (never fewer than now). Served tokens/s
//      saturate at capacity, so under overload only the queue and latency show demand.
//   4. Cost budget: with maxCostPerMillionTokens and a price, at most the groups whose
//      cost at the measured tokens/s stays within the budget,
//        floor(budget × tokens/s × 3600 / 10^6 / USD per group-hour),
//      so throughput and queue never scale up past the budget, and a deployment above
//      budget scales down to it.
//   5. Latency SLO (overrides the budget): TTFT p95 above ttftP95SloSeconds asks for
//      ready × (p95 / SLO) groups, at least one more and at most twice as many as are
//      ready (the HPA's default scale-up limit), never fewer than now, and so forbids
//      scaling down. Growth counts from the ready groups, so it does not stack while new
//      groups are still loading.
//   6. Bounds (override everything): clamp to [minReplicas, maxReplicas].
// The SLO is what users feel; the budget is what they pay; the bounds are hard limits
// they set: so SLO beats budget, and bounds beat both.
//
// Stabilizer then applies scale-down stabilization as the HPA does: a recommendation
// above the current count takes effect at once; a lower one becomes the maximum of the
// recommendations made within the window (never above the current count).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "common/clock.h"

namespace moeserve::autoscaler {

struct PolicySpec {
  int32_t min_replicas = 1;
  int32_t max_replicas = 1;
  std::optional<double> target_tokens_per_second_per_group;
  std::optional<double> max_cost_per_million_tokens;  // USD
  std::optional<double> ttft_p95_slo_seconds;
  int32_t scale_down_stabilization_seconds = 300;
  double usd_per_group_hour = 0;  // price of one group (GPUs and pods) for one hour
  double tolerance = 0.1;         // relative band around the throughput target
  double max_waiting_per_group = 16;

  friend bool operator==(const PolicySpec&, const PolicySpec&) = default;
};

struct PolicyInput {
  int32_t current_replicas = 0;  // groups desired now (what a decision moves from)
  int32_t ready_replicas = 0;    // groups serving now
  std::optional<double> tokens_per_second;
  std::optional<double> ttft_p95_seconds;
  std::optional<double> requests_waiting;  // over all groups
};

struct Decision {
  int32_t replicas = 0;
  std::string reason;  // "tokens/s per group 6200 > target 5000: 2 -> 3 groups"

  friend bool operator==(const Decision&, const Decision&) = default;
};

Decision recommend(const PolicySpec& spec, const PolicyInput& input);

// Cost of `groups` groups at `tokens_per_second`, USD per million tokens; nullopt when
// tokens/s is not positive or there is no price.
std::optional<double> cost_per_million_tokens(double usd_per_group_hour, int32_t groups,
                                              double tokens_per_second);

// Scale-down stabilization for one deployment. Not thread-safe.
class Stabilizer {
 public:
  // `raw` made at `now`, applied against `current`; the returned reason explains a
  // held scale-down.
  Decision apply(Clock::TimePoint now, std::chrono::seconds window, int32_t current,
                 const Decision& raw);

 private:
  std::deque<std::pair<Clock::TimePoint, int32_t>> history_;
};

// "6200", "0.82", "1.3e+04": 3 significant digits, for reasons and events.
std::string format_number(double value);

}  // namespace moeserve::autoscaler
