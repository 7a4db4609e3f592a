// The autoscaling policy: how many groups a deployment should have, from what was
// measured and what was seen before, with a human-readable reason for every decision.
// Pure: no I/O; time comes in the input, and everything carried between decisions
// (demand history, observed start-up time, recent recommendations, idle time, the
// burst factor) is a PolicyState passed in and returned, so the operator and the trace
// simulator (bench/sim) run the same code and a run can be replayed.
//
// evaluate() decides, in this order of precedence:
//   0. Scaled to zero (current groups 0): wake to max(1, minReplicas) groups when
//      requests wait or tokens flow, otherwise stay at zero.
//   1. No measurement (tokens/s unknown): keep the current groups.
//   2. Throughput, proactive: with targetTokensPerSecondPerGroup (the tokens/s one
//      group serves within the SLO), the demand a new group would meet once started is
//      forecast over the start-up horizon H (the last observed start-up, timed from a
//      scale-up of a fully ready fleet, or `startup_seconds` before any was seen):
//        demand = max(measured + trend x H, (level + trend x H) x burst)
//      The level is the demand between bursts: a line through the last 30 minutes of
//      demand, refitted without the points far from it (robust spreads), so a burst or
//      a dip shorter than a quarter of an hour does not move it; its value now is the
//      level, its slope (once the history spans H/2, when rising) the trend. The burst
//      factor is the observed burstiness: the largest ratio of the demand to the level
//      (once the history spans H; not while an idle point is in the window, nor within
//      a rate window (60 s) of a backlog draining or a group joining or leaving, when
//      the sum of the groups' rates is off), kept in PolicyState with its excess over 1
//      halving every `burst_half_life_seconds`. So a burst seen once is held in
//      reserve in proportion to the level a later one rises from, noise is a reserve
//      of a few percent, and the reserve fades when bursts stop. The demand is what
//      the groups served, and while requests wait, with requests started per second
//      known, served x (1 + growth of the waiting requests per second / requests
//      started per second): what arrived, so a burst's height is learned while it is
//      not served.
//      The cheapest fleet that holds the SLO is ceil(demand / target) groups; it is
//      taken at once when demand exceeds current x target, and on the way down only
//      when demand is below current x target x (1 - tolerance), so noise does not
//      flap. Without a target: the current groups.
//   3. Queue: more than `max_waiting_per_group` requests waiting per ready group asks,
//      with a target and requests started per second known, for the groups that serve
//      the measured demand and drain the backlog within a minute of new groups
//      starting: ceil((measured + backlog / 60 s) / target), the backlog in tokens
//      (waiting x served tokens per request started) plus what the ready groups fall
//      behind in H; otherwise for ready x (waiting per group / max_waiting_per_group)
//      groups, at least one more and at most twice as many as are ready. Never fewer
//      than now. Served tokens/s saturate at capacity, so under overload only the
//      queue and latency show demand.
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

#include <algorithm>
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
  int32_t history_seconds = 3600;  // demand history kept (the level uses 30 minutes)
  // The learned burst factor's excess over 1 halves every this long (0: never).
  int32_t burst_half_life_seconds = 12 * 3600;

  friend bool operator==(const PolicySpec&, const PolicySpec&) = default;
};

struct PolicyInput {
  Clock::TimePoint now;
  int32_t current_replicas = 0;  // groups desired now (what a decision moves from)
  int32_t ready_replicas = 0;    // groups serving now
  std::optional<double> tokens_per_second;
  std::optional<double> ttft_p95_seconds;
  std::optional<double> requests_waiting;     // over all groups
  std::optional<double> requests_per_second;  // started (first token), over all groups
};

struct DemandPoint {
  Clock::TimePoint at;
  double tokens_per_second = 0;  // the demand: served, or arrived while requests waited
  double requests_waiting = 0;
  int32_t ready_replicas = 0;
  bool draining = false;  // the backlog shrank: what was served overstates what came
  friend bool operator==(const DemandPoint&, const DemandPoint&) = default;
};

// The burst factor learned so far (rule 2): the largest rise seen, its excess over 1
// halving every half-life.
struct BurstMemory {
  double factor = 1;  // as of `at`
  std::optional<Clock::TimePoint> at;

  // The factor at `now`; a half-life of 0 keeps it.
  double factor_at(Clock::TimePoint now, double half_life_s) const;
  // A rise (demand over its level) seen at `now`: the factor becomes the larger of the
  // two.
  void learn(Clock::TimePoint now, double rise, double half_life_s);

  friend bool operator==(const BurstMemory&, const BurstMemory&) = default;
};

// What the policy carries from one decision to the next; a default one is a fresh
// deployment.
struct PolicyState {
  std::deque<DemandPoint> demand;                                    // the last history_seconds
  std::deque<std::pair<Clock::TimePoint, int32_t>> recommendations;  // within the window
  std::optional<Clock::TimePoint> idle_since;   // no tokens and no waiting since
  std::optional<Clock::TimePoint> scale_up_at;  // when groups above the ready ones were asked
  int32_t scale_up_to = 0;                      // ... and how many
  std::optional<double> observed_startup_seconds;
  BurstMemory burst;

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
// the measurement now) and the burst factor held, as rule 2 describes.
struct Forecast {
  double measured = 0;     // tokens/s now
  double level = 0;        // tokens/s between bursts, now
  double trend_per_s = 0;  // of the level, tokens/s per second, >= 0
  double horizon_s = 0;
  double burst_factor = 1;
  // The demand held for the last minute over the level where the history can tell
  // (rule 2), else 1: what the burst factor learns from.
  double rise = 1;
  double tokens_per_second() const {
    const double ahead = trend_per_s * horizon_s;
    return std::max(measured + ahead, (level + ahead) * burst_factor);
  }
};
Forecast forecast(const std::deque<DemandPoint>& history, double horizon_s, double burst_factor);

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
