// The operator's Autoscaler, fed the measurements the simulator produced, makes the
// simulator's decisions one for one: the state the policy carries passes between the
// Autoscaler's evaluations exactly as between the simulator's, so a replayed trace
// says what the operator would do.
#include <gtest/gtest.h>

#include <algorithm>

#include "bench/sim/simulator.h"
#include "operator/autoscaler/autoscaler.h"
#include "tests/bench/sim/small_capacity.h"

namespace moeserve::sim {
namespace {

class ReplayedSource : public autoscaler::MetricSource {
 public:
  autoscaler::Measurement measure(const autoscaler::ScrapeTarget&, Clock::TimePoint) override {
    return next;
  }
  void forget(const std::string&) override {}
  autoscaler::Measurement next;
};

TEST(OperatorReplayTest, TheAutoscalerFollowsTheSimulatorsDecisions) {
  SyntheticOptions o = *synthetic_preset("bursty");
  o.duration_s = 5400;
  o.period_s = 5400;
  o.peak_rps = 3;
  o.bursts_per_hour = 3;
  const std::vector<Request> trace = synthetic_trace(o);
  const Capacity c = testing::small_capacity();
  SimOptions options;
  options.startup_s = 120;
  options.max_groups = 20;
  options.slo_capacity_tokens_per_s = slo_capacity_tokens_per_s(trace, c, options);
  ASSERT_GT(options.slo_capacity_tokens_per_s, 0);
  const PolicyResult sim = simulate(trace, c, options, PolicyKind::kMoeserve);
  ASSERT_GT(sim.scale_events, 4) << "the trace must make the policy work";
  // Forecasts need the history the state carries: a stateless replay would differ.
  ASSERT_TRUE(std::any_of(sim.decisions.begin(), sim.decisions.end(), [](const DecisionRecord& d) {
    return d.reason.find("forecast") != std::string::npos;
  }));

  ReplayedSource source;
  FakeClock clock;
  autoscaler::Autoscaler operator_autoscaler(&source, &clock, {std::chrono::hours(1), 1});
  const autoscaler::PolicySpec spec = moeserve_policy(c, options);
  double at_s = 0;
  int64_t scale_events = 0;
  for (const DecisionRecord& d : sim.decisions) {
    clock.advance(
        std::chrono::duration_cast<Clock::Duration>(std::chrono::duration<double>(d.t_s - at_s)));
    at_s = d.t_s;
    source.next = {};
    source.next.tokens_per_second = d.tokens_per_second;
    source.next.ttft_p95_seconds = d.ttft_p95_seconds;
    source.next.requests_waiting = d.requests_waiting;
    source.next.requests_per_second = d.requests_per_second;
    // What the reconciler passes: the desired groups and the ready ones.
    operator_autoscaler.track("ns/x", {{"ns", "x", {}}, spec, d.current, d.ready});
    operator_autoscaler.evaluate("ns/x");
    const autoscaler::Decision made = operator_autoscaler.snapshot("ns/x")->decision;
    ASSERT_EQ(made.replicas, d.replicas) << "at " << d.t_s << " s: " << made.reason;
    ASSERT_EQ(made.reason, d.reason) << "at " << d.t_s << " s";
    scale_events += made.replicas != d.current;
  }
  EXPECT_EQ(scale_events, sim.scale_events);
}

}  // namespace
}  // namespace moeserve::sim
