// The autoscaling policy as a table: each row is a situation, the groups it leads to,
// and the reason users read in the Scaled event.
#include "operator/autoscaler/policy.h"

#include <gtest/gtest.h>

namespace moeserve::autoscaler {
namespace {

using namespace std::chrono_literals;

PolicySpec throughput_spec() {
  PolicySpec s;
  s.min_replicas = 1;
  s.max_replicas = 10;
  s.target_tokens_per_second_per_group = 5000;
  s.usd_per_group_hour = 32;  // 16 GPUs at $2
  return s;
}

struct Row {
  const char* name;
  PolicySpec spec;
  PolicyInput input;
  int32_t replicas;
  const char* reason;
};

TEST(PolicyTest, Table) {
  PolicySpec budget = throughput_spec();
  budget.max_cost_per_million_tokens = 1.5;  // at 12400 tok/s: 2 groups cost $1.43/Mtok
  PolicySpec slo = budget;
  slo.ttft_p95_slo_seconds = 0.5;
  PolicySpec cost_only;
  cost_only.max_replicas = 5;
  cost_only.max_cost_per_million_tokens = 1.0;
  cost_only.usd_per_group_hour = 32;
  PolicySpec narrow = throughput_spec();
  narrow.min_replicas = 2;
  narrow.max_replicas = 3;

  const std::vector<Row> rows = {
      {"no measurement keeps the current groups",
       throughput_spec(),
       {2, 2, {}, {}, {}},
       2,
       "no token throughput measured yet: keeping 2 groups"},
      {"above target scales up",
       throughput_spec(),
       {2, 2, 12400, {}, {}},
       3,
       "tokens/s per group 6200 > target 5000: 2 -> 3 groups"},
      {"below target scales down",
       throughput_spec(),
       {3, 3, 6000, {}, {}},
       2,
       "tokens/s per group 2000 < target 5000: 3 -> 2 groups"},
      {"within tolerance keeps",
       throughput_spec(),
       {2, 2, 10800, {}, {}},
       2,
       "tokens/s per group 5400 > target 5000 (within 10%): keeping 2 groups"},
      {"idle goes to minReplicas",
       throughput_spec(),
       {3, 3, 0, {}, {}},
       1,
       "tokens/s per group 0 < target 5000; raised to minReplicas 1: 3 -> 1 group"},
      {"bounds cap the throughput",
       narrow,
       {3, 3, 40000, {}, {}},
       3,
       "tokens/s per group 13333 > target 5000; capped at maxReplicas 3: keeping 3 groups"},
      {"bounds raise to min",
       narrow,
       {2, 2, 100, {}, {}},
       2,
       "tokens/s per group 50 < target 5000; raised to minReplicas 2: keeping 2 groups"},
      {"budget stops a scale-up",
       budget,
       {2, 2, 12400, {}, {}},
       2,
       "tokens/s per group 6200 > target 5000; cost budget $1.5/Mtok allows 2 groups (3 groups "
       "would cost $2.15/Mtok): keeping 2 groups"},
      {"the SLO overrides the budget, growing in proportion",
       slo,
       {2, 2, 12400, 0.8, {}},
       4,
       "TTFT p95 0.8s > SLO 0.5s (overrides the cost budget: $2.87/Mtok > $1.5): 2 -> 4 groups"},
      {"SLO growth is at most double the ready groups",
       slo,
       {2, 2, 12400, 5.0, {}},
       4,
       "TTFT p95 5s > SLO 0.5s (overrides the cost budget: $2.87/Mtok > $1.5): 2 -> 4 groups"},
      {"a met SLO leaves the budget in charge",
       slo,
       {2, 2, 12400, 0.3, {}},
       2,
       "tokens/s per group 6200 > target 5000; cost budget $1.5/Mtok allows 2 groups (3 groups "
       "would cost $2.15/Mtok): keeping 2 groups"},
      {"SLO growth counts from the ready groups",
       slo,
       {3, 2, 12400, 0.6, {}},
       3,
       "TTFT p95 0.6s > SLO 0.5s (overrides the cost budget: $2.15/Mtok > $1.5): keeping 3 "
       "groups"},
      {"an SLO breach forbids scaling down",
       slo,
       {4, 4, 2000, 0.55, {}},
       5,
       "TTFT p95 0.55s > SLO 0.5s (overrides the cost budget: $22.2/Mtok > $1.5): 4 -> 5 "
       "groups"},
      {"over budget scales down",
       cost_only,
       {4, 4, 20000, {}, {}},
       2,
       "tokens/s 20000; cost budget $1/Mtok allows 2 groups (4 groups would cost $1.78/Mtok): "
       "4 -> 2 groups"},
      {"queue backlog adds groups in proportion",
       throughput_spec(),
       {2, 2, 10000, {}, 40},
       3,
       "requests waiting per group 20 > 16: 2 -> 3 groups"},
      {"a long queue at most doubles",
       throughput_spec(),
       {2, 2, 10000, {}, 400},
       4,
       "requests waiting per group 200 > 16: 2 -> 4 groups"},
      {"a short queue changes nothing",
       throughput_spec(),
       {2, 2, 10000, {}, 10},
       2,
       "tokens/s per group 5000 = target 5000: keeping 2 groups"},
  };
  for (const Row& row : rows) {
    const Decision d = recommend(row.spec, row.input);
    EXPECT_EQ(d.replicas, row.replicas) << row.name << ": " << d.reason;
    EXPECT_EQ(d.reason, row.reason) << row.name;
  }
}

TEST(PolicyTest, CostPerMillionTokens) {
  // docs/crd.md: 2 groups x 16 H200 x $2/h = $64/h at 20,000 tokens/s -> $0.889.
  EXPECT_NEAR(*cost_per_million_tokens(32, 2, 20000), 0.8889, 1e-4);
  EXPECT_FALSE(cost_per_million_tokens(32, 2, 0));
  EXPECT_FALSE(cost_per_million_tokens(0, 2, 100));
}

TEST(StabilizerTest, ScaleUpAtOnceScaleDownToTheWindowMaximum) {
  Stabilizer s;
  Clock::TimePoint t0;
  const auto window = 300s;
  EXPECT_EQ(s.apply(t0, window, 2, {4, "up: 2 -> 4 groups"}).replicas, 4);
  const Decision held = s.apply(t0 + 60s, window, 4, {2, "down: 4 -> 2 groups"});
  EXPECT_EQ(held.replicas, 4);
  EXPECT_EQ(held.reason,
            "down; scale-down to 2 held: the highest recommendation within 300s is 4: keeping 4 "
            "groups");
  EXPECT_EQ(s.apply(t0 + 200s, window, 4, {3, "down: 4 -> 3 groups"}).replicas, 4);
  // At 301 s the recommendation of 4 left the window; 3 (at 200 s) is the highest left.
  const Decision partly = s.apply(t0 + 301s, window, 4, {2, "down: 4 -> 2 groups"});
  EXPECT_EQ(partly.replicas, 3);
  EXPECT_EQ(s.apply(t0 + 501s, window, 3, {2, "down: 3 -> 2 groups"}).replicas, 2);
}

TEST(StabilizerTest, ZeroWindowScalesDownAtOnce) {
  Stabilizer s;
  Clock::TimePoint t0;
  EXPECT_EQ(s.apply(t0, 0s, 2, {4, "up"}).replicas, 4);
  EXPECT_EQ(s.apply(t0 + 1s, 0s, 4, {1, "down"}).replicas, 1);
}

}  // namespace
}  // namespace moeserve::autoscaler
