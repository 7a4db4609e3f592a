// The autoscaling simulator: replays a request trace through groups of the capacity
// model (group.h) under one scaling policy, and scores cost and latency. Pure (no I/O)
// and deterministic; not thread-safe.
//
// Every policy sees what the real operator sees, every `interval_s`: each ready
// group's worker counters go through the operator's GroupWindow and fold_windows
// (operator/autoscaler), giving tokens/s over the rate window, TTFT p95 of the
// histogram increases and requests waiting (the groups' queues plus the requests held
// while no group is ready, as a gateway would count them). Groups are paid from
// creation; a new group serves after `startup_s`; a group removed by scale-down first
// stops taking requests and is paid until its last request finishes (drain); a starting
// group removed is cancelled at once. Requests go to the ready group with the fewest
// outstanding tokens; with no ready group they are held (scale from zero). Whenever the
// ready groups change (one becomes ready, one starts draining), the requests not yet
// started (held, or queued at a group) are sent again the same way, oldest first, as a
// gateway that holds requests until they start would place them. The run ends at the first decision
// after the last request finished.
//
// Policies:
//   moeserve     operator/autoscaler evaluate(), its PolicyState carried across ticks;
//   static-peak  ceil(peak 60 s demand / SLO capacity) groups for the whole trace;
//   utilization  the HPA on tokens/s per ready group against target_utilization of the
//                SLO capacity (10 % tolerance, the HPA's default scale-up limit,
//                scale-down stabilization);
//   queue        KEDA on requests waiting, `queue_waiting_per_group` per group (HPA
//                AverageValue, same tolerance and stabilization);
//   oracle       knows the trace: at each decision the most groups any 60 s window
//                starting within the next start-up (plus one interval) needs at the
//                SLO capacity, so groups are ready when demand comes; where that
//                misses `oracle_attainment` (queues left by bursts), the share of the
//                SLO capacity it sizes at is bisected down until it holds. The cost
//                lower bound at the SLO within this model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/sim/capacity.h"
#include "bench/sim/group.h"
#include "bench/sim/trace.h"
#include "common/status.h"
#include "operator/autoscaler/policy.h"

namespace moeserve::sim {

enum class PolicyKind { kMoeserve, kStaticPeak, kUtilization, kQueue, kOracle };

// "moeserve", "static-peak", "utilization", "queue", "oracle".
StatusOr<PolicyKind> parse_policy(std::string_view name);
std::string_view policy_name(PolicyKind kind);
inline constexpr PolicyKind kAllPolicies[] = {PolicyKind::kMoeserve, PolicyKind::kStaticPeak,
                                              PolicyKind::kUtilization, PolicyKind::kQueue,
                                              PolicyKind::kOracle};

struct SimOptions {
  double startup_s = 240;
  double slo_ttft_s = 2;
  double slo_tpot_s = 0.2;  // time per output token after the first
  double interval_s = 15;   // the operator's --autoscaler-interval-seconds
  double rate_window_s = 60;
  // Per group: what one group serves within the SLO (slo_capacity_tokens_per_s), the
  // target of moeserve (whose headroom is its own) and the oracle and static-peak sizing;
  // the HPA recipes aim at target_utilization of it, as they are configured in practice.
  double slo_capacity_tokens_per_s = 0;
  double target_utilization = 0.8;
  int32_t max_groups = 1000;
  int32_t stabilization_s = 300;
  double max_waiting_per_group = 16;
  double queue_waiting_per_group = 4;
  double oracle_attainment = 0.99;
  std::optional<int32_t> scale_to_zero_after_s;  // moeserve only
  double max_overrun_s = 86400;  // after the last arrival, stop and count the rest as missed
};

struct TimelinePoint {
  double t_s = 0;
  double demand_tokens_per_s = 0;  // arrivals in the last interval
  int32_t groups = 0;              // paid for (starting, ready, draining)
  int32_t ready = 0;
};

// One decision as the policy saw and made it.
struct DecisionRecord {
  double t_s = 0;
  int32_t current = 0;
  int32_t ready = 0;
  std::optional<double> tokens_per_second;
  std::optional<double> ttft_p95_seconds;
  std::optional<double> requests_waiting;
  std::optional<double> requests_per_second;
  int32_t replicas = 0;
  std::string reason;
};

struct PolicyResult {
  std::string policy;
  double cost_usd = 0;
  double usd_per_mtok = 0;
  double slo_attainment = 0;   // share of requests meeting both the TTFT and TPOT SLOs
  double ttft_attainment = 0;  // share with TTFT <= slo_ttft_s
  double tpot_attainment = 0;  // share with TPOT <= slo_tpot_s
  double ttft_p50_s = 0;       // over the requests that got a first token
  double ttft_p99_s = 0;
  double group_hours = 0;
  int64_t scale_events = 0;
  int64_t unserved = 0;  // larger than a group's KV cache, or cut off by max_overrun_s
  std::vector<RequestTimes> times;
  std::vector<TimelinePoint> timeline;
  std::vector<std::string> reasons;  // the reason of each scale event
  std::vector<DecisionRecord> decisions;
};

// Demand of arrivals in [from_s, to_s), tokens (prompt + output) per second.
double demand_tokens_per_s(const std::vector<Request>& trace, double from_s, double to_s);
// ceil(d / SLO capacity) for the 60 s demand d starting at each decision time k x
// interval_s.
std::vector<int32_t> groups_needed(const std::vector<Request>& trace, const SimOptions& options);
int32_t static_peak_groups(const std::vector<Request>& trace, const SimOptions& options);

// The tokens/s (prompt + output) one group serves within the SLOs: the highest Poisson
// arrival rate of requests shaped like `shapes` (drawn from them with a fixed seed) at
// which one ready group meets both SLOs for at least `attainment` of them over
// `duration_s`, found by bisection. What a load test (bench-serving) would measure,
// and what the policies' target is a share of.
double slo_capacity_tokens_per_s(const std::vector<Request>& shapes, const Capacity& capacity,
                                 const SimOptions& options, double attainment = 0.99,
                                 double duration_s = 600);

// What the moeserve policy is configured with (as a ModelDeployment's spec.autoscaling
// would be): target = the SLO capacity, the TTFT SLO as ttftP95SloSeconds.
autoscaler::PolicySpec moeserve_policy(const Capacity& capacity, const SimOptions& options);

PolicyResult simulate(const std::vector<Request>& trace, const Capacity& capacity,
                      const SimOptions& options, PolicyKind policy);

}  // namespace moeserve::sim
