// The autoscaling policy: how many groups a deployment should have, from what was
// measured and what was seen before, with a human-readable reason for every decision.
// Pure: no I/O; time comes in the input, and everything carried between decisions
// (demand history, observed start-up time, recent recommendations, idle time) is a
// PolicyState passed in and returned, so the operator and the trace simulator
// (bench/sim) run the same code and a run can be replayed.
//
// evaluate() decides, in this order of precedence:
//   0. Scaled to zero (current groups 0): wake to max(1, minReplicas) groups when
//      requests wait or tokens flow, otherwise stay at zero.
//   1. No measurement (tokens/s unknown): keep the current groups.
//   2. Throughput, proactive: with targetTokensPerSecondPerGroup (the tokens/s one
//      group serves within the SLO), the demand a new group would meet once started is
//      forecast over the start-up horizon H (the last observed start-up, timed from a
//      scale-up of a fully ready fleet, or
//      `startup_seconds` before any was seen):
//        demand = measured + max(0, trend) x H + headroom
//      with the trend the least-squares slope over the last H of history (once the
//      history spans H/2) and the headroom the largest rise within any H seen in the
//      last `history_seconds` and held for a minute, beyond the trend's part and
//      `tolerance` of the level it rose from (the observed burstiness; once the
//      history spans H). Served tokens/s saturate under overload, so when rule 3 or 5
//      decides, the history records the groups it asks for x target instead: the
//      height of a burst is learned even while it is not served.
//      The cheapest fleet that holds the SLO is ceil(demand / target) groups; it is
//      taken at once when demand exceeds current x target, and on the way down only
//      when demand is below current x target x (1 - tolerance), so noise does not
//      flap. Without a target: the current groups.
//   3. Queue: more than `max_waiting_per_group` requests waiting per ready group asks
//      for ready x (waiting per group / max_waiting_per_group) groups, at least one more
//      and at most twice as many as are ready (never fewer than now). Served tokens/s
//      saturate at capacity, so under overload only the queue and latency show demand.
//   4. Cost budget: with maxCostPerMillionTokens and a price, at most the groups whose
//      cost at the measured tokens/s stays within the budget,
//        floor(budget x tokens/s x 3600 / 10^6 / USD per group-hour).
//   5. Latency SLO (overrides the budget): TTFT p95 above ttftP95SloSeconds asks for
//      ready x (p95 / SLO) groups, at least one more and at most twice as many as are
//      ready, never fewer than now, and so forbids scaling down.
//   6. Bounds (override everything above): clamp to [minReplicas, maxReplicas].
//   7. Scale-down stabilization, as the HPA does: a recommendation above the current
//      count takes effect at once; a lower one becomes the highest recommendation made
//      within scaleDownStabilizationSeconds (never above the current count).
//   8. Scale to zero (overrides the bounds' minimum): with scaleToZeroAfterIdleSeconds,
//      zero groups once no tokens flowed and no request waited for that long.
// The SLO is what users feel; the budget is what they pay; the bounds are hard limits
// they set: so SLO beats budget, and bounds beat both. Idle time beats minReplicas
// because nobody is served by an idle group.
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
  std::optional<int32_t> scale_to_zero_after_idle_seconds;
  double usd_per_group_hour = 0;  // price of one group (GPUs and pods) for one hour
  double tolerance = 0.1;         // relative band below the throughput target
  double max_waiting_per_group = 16;
  double startup_seconds = 300;    // a group's start-up until one has been observed
  int32_t history_seconds = 3600;  // demand history the headroom is sized from

  friend bool operator==(const PolicySpec&, const PolicySpec&) = default;
};

struct PolicyInput {
  Clock::TimePoint now;
  int32_t current_replicas = 0;  // groups desired now (what a decision moves from)
  int32_t ready_replicas = 0;    // groups serving now
  std::optional<double> tokens_per_second;
  std::optional<double> ttft_p95_seconds;
  std::optional<double> requests_waiting;  // over all groups
};

struct DemandPoint {
  Clock::TimePoint at;
  double tokens_per_second = 0;
  friend bool operator==(const DemandPoint&, const DemandPoint&) = default;
};

// What the policy carries from one decision to the next; a default one is a fresh
// deployment.
struct PolicyState {
  std::deque<DemandPoint> demand;  // measured tokens/s, the last history_seconds
  std::deque<std::pair<Clock::TimePoint, int32_t>> recommendations;  // within the window
  std::optional<Clock::TimePoint> idle_since;   // no tokens and no waiting since
  std::optional<Clock::TimePoint> scale_up_at;  // when groups above the ready ones were asked
  int32_t scale_up_to = 0;                      // ... and how many
  std::optional<double> observed_startup_seconds;

  friend bool operator==(const PolicyState&, const PolicyState&) = default;
};

struct Decision {
  int32_t replicas = 0;
  std::string reason;  // "tokens/s per group 6200 > target 5000: 2 -> 3 groups"

  friend bool operator==(const Decision&, const Decision&) = default;
};

struct Evaluation {
  Decision decision;
  PolicyState state;
};

Evaluation evaluate(const PolicySpec& spec, const PolicyInput& input, PolicyState state);

// Demand expected over `horizon_s` from `history` (oldest first; the last point is
// the measurement now), as rule 2 describes; rises within `tolerance` (relative) of the
// level they start from count as noise, not headroom.
struct Forecast {
  double measured = 0;     // tokens/s now
  double trend_per_s = 0;  // tokens/s per second, >= 0
  double horizon_s = 0;
  double headroom = 0;  // tokens/s
  double tokens_per_second() const { return measured + trend_per_s * horizon_s + headroom; }
};
Forecast forecast(const std::deque<DemandPoint>& history, double horizon_s, double tolerance);

// Rule 7 on its own (the HPA's scale-down stabilization), for any recommender:
// records `raw` at `now` in `recommendations` and returns what takes effect.
Decision stabilize(std::deque<std::pair<Clock::TimePoint, int32_t>>* recommendations,
                   Clock::TimePoint now, std::chrono::seconds window, int32_t current,
                   const Decision& raw);

// Cost of `groups` groups at `tokens_per_second`, USD per million tokens; nullopt when
// tokens/s is not positive or there is no price.
std::optional<double> cost_per_million_tokens(double usd_per_group_hour, int32_t groups,
                                              double tokens_per_second);

// "6200", "0.82", "1.3e+04": 3 significant digits, for reasons and events.
std::string format_number(double value);

}  // namespace moeserve::autoscaler
