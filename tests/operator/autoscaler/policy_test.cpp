// The autoscaling policy as a table: each row is a situation, the groups it leads to,
// and the reason users read in the Scaled event.
#include "operator/autoscaler/policy.h"

#include <gtest/gtest.h>

#include <random>

#include "operator/autoscaler/metric_source.h"

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

// A measurement without its time: each row is a fresh deployment's first decision.
struct Seen {
  int32_t current_replicas;
  int32_t ready_replicas;
  std::optional<double> tokens_per_second;
  std::optional<double> ttft_p95_seconds;
  std::optional<double> requests_waiting;
};

struct Row {
  const char* name;
  PolicySpec spec;
  Seen input;
  int32_t replicas;
  const char* reason;
};

PolicyInput at(Clock::TimePoint now, const Seen& s) {
  return {now,
          s.current_replicas,
          s.ready_replicas,
          s.tokens_per_second,
          s.ttft_p95_seconds,
          s.requests_waiting};
}

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
      {"just above target scales up at once",
       throughput_spec(),
       {2, 2, 10800, {}, {}},
       3,
       "tokens/s per group 5400 > target 5000: 2 -> 3 groups"},
      {"within tolerance below the target keeps",
       throughput_spec(),
       {3, 3, 14000, {}, {}},
       3,
       "tokens/s per group 4667 < target 5000 (within 10%): keeping 3 groups"},
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
    const Decision d = evaluate(row.spec, at(Clock::TimePoint(), row.input), {}).decision;
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

TEST(StabilizeTest, ScaleUpAtOnceScaleDownToTheWindowMaximum) {
  std::deque<std::pair<Clock::TimePoint, int32_t>> seen;
  Clock::TimePoint t0;
  const auto window = 300s;
  EXPECT_EQ(stabilize(&seen, t0, window, 2, {4, "up: 2 -> 4 groups"}).replicas, 4);
  const Decision held = stabilize(&seen, t0 + 60s, window, 4, {2, "down: 4 -> 2 groups"});
  EXPECT_EQ(held.replicas, 4);
  EXPECT_EQ(held.reason,
            "down; scale-down to 2 held: the highest recommendation within 300s is 4: keeping 4 "
            "groups");
  EXPECT_EQ(stabilize(&seen, t0 + 200s, window, 4, {3, "down: 4 -> 3 groups"}).replicas, 4);
  // At 301 s the recommendation of 4 left the window; 3 (at 200 s) is the highest left.
  const Decision partly = stabilize(&seen, t0 + 301s, window, 4, {2, "down: 4 -> 2 groups"});
  EXPECT_EQ(partly.replicas, 3);
  EXPECT_EQ(stabilize(&seen, t0 + 501s, window, 3, {2, "down: 3 -> 2 groups"}).replicas, 2);
}

TEST(StabilizeTest, ZeroWindowScalesDownAtOnce) {
  std::deque<std::pair<Clock::TimePoint, int32_t>> seen;
  Clock::TimePoint t0;
  EXPECT_EQ(stabilize(&seen, t0, 0s, 2, {4, "up"}).replicas, 4);
  EXPECT_EQ(stabilize(&seen, t0 + 1s, 0s, 4, {1, "down"}).replicas, 1);
}

// A deployment followed decision by decision, its groups doing what was decided (new
// groups ready after `startup`), the state carried as the Autoscaler carries it.
class Replay {
 public:
  Replay(PolicySpec spec, int32_t groups, std::chrono::seconds startup = 0s)
      : spec_(std::move(spec)), current_(groups), ready_(groups), startup_(startup) {}

  // One decision `dt` after the previous one, at `tokens_per_second`.
  Decision step(std::optional<double> tokens_per_second, std::optional<double> waiting = 0.0,
                std::chrono::seconds dt = 15s,
                std::optional<double> requests_per_second = std::nullopt) {
    now_ += dt;
    while (!starting_.empty() && starting_.front() <= now_) {
      starting_.pop_front();
      ++ready_;
    }
    Evaluation e = evaluate(
        spec_, {now_, current_, ready_, tokens_per_second, {}, waiting, requests_per_second},
        std::move(state_));
    state_ = std::move(e.state);
    for (int32_t g = current_; g < e.decision.replicas; ++g) starting_.push_back(now_ + startup_);
    if (e.decision.replicas < current_) {
      int32_t remove = current_ - e.decision.replicas;
      while (remove > 0 && !starting_.empty()) {
        starting_.pop_back();
        --remove;
      }
      ready_ -= remove;
    }
    if (e.decision.replicas != current_) ++changes_;
    current_ = e.decision.replicas;
    return e.decision;
  }
  int32_t current() const { return current_; }
  int32_t changes() const { return changes_; }
  const PolicyState& state() const { return state_; }

 private:
  PolicySpec spec_;
  int32_t current_;
  int32_t ready_;
  std::chrono::seconds startup_;
  Clock::TimePoint now_;
  std::deque<Clock::TimePoint> starting_;
  PolicyState state_;
  int32_t changes_ = 0;
};

PolicySpec proactive_spec() {
  PolicySpec s = throughput_spec();
  s.max_replicas = 40;
  s.startup_seconds = 240;
  return s;
}

TEST(PolicyForecastTest, ARampIsMetBeforeItArrives) {
  // +10 tokens/s every second: in 240 s demand is 2400 tokens/s higher than measured.
  std::deque<DemandPoint> ramp;
  Clock::TimePoint t0;
  for (int i = 0; i <= 16; ++i) ramp.push_back({t0 + i * 15s, 10000.0 + 150.0 * i});
  const Forecast f = forecast(ramp, 240, 1);
  EXPECT_NEAR(f.measured, 12400, 1e-6);
  EXPECT_NEAR(f.level, 12400, 1e-6) << "the level follows the ramp, it does not lag";
  EXPECT_NEAR(f.trend_per_s, 10, 1e-6);
  EXPECT_NEAR(f.tokens_per_second(), 14800, 1e-6);
  EXPECT_NEAR(f.rise, 1, 1e-9) << "a steady ramp's rise is the trend's, not a burst";

  // The policy on the same ramp asks for the groups of 14800 tokens/s while it
  // measures 12400, so they are ready when the demand is.
  Replay replay(proactive_spec(), 3, 240s);
  Decision d;
  for (int i = 0; i <= 16; ++i) d = replay.step(10000.0 + 150.0 * i);
  EXPECT_EQ(d.replicas, 3) << d.reason;  // 14800 / 5000 -> 3 groups: holds
  for (int i = 17; i <= 24; ++i) d = replay.step(10000.0 + 150.0 * i);
  // Measured 13600 (3 groups hold 15000) but forecast 16000: a fourth group now.
  EXPECT_EQ(replay.current(), 4) << d.reason;
  EXPECT_EQ(replay.state().burst.factor, 1) << "a ramp teaches no burst";
}

TEST(PolicyForecastTest, NoTrendBeforeHalfAHorizonOfHistory) {
  std::deque<DemandPoint> short_history = {{Clock::TimePoint(), 1000},
                                           {Clock::TimePoint() + 15s, 9000}};
  const Forecast f = forecast(short_history, 240, 2);
  EXPECT_EQ(f.trend_per_s, 0);
  EXPECT_EQ(f.rise, 1) << "no rise is learned before the history spans a start-up";
  EXPECT_EQ(f.tokens_per_second(), 18000) << "the level now times the factor held";
}

TEST(PolicyForecastTest, ABurstDoesNotMoveTheLevel) {
  // 10000 tokens/s for 25 minutes, then a burst to 25000 for four minutes so far.
  std::deque<DemandPoint> h;
  Clock::TimePoint t0;
  for (int i = 0; i < 100; ++i) h.push_back({t0 + i * 15s, i % 2 ? 10300.0 : 9700.0});
  for (int i = 100; i < 116; ++i) h.push_back({t0 + i * 15s, 25000});
  const Forecast f = forecast(h, 240, 1);
  EXPECT_NEAR(f.level, 10000, 100);
  EXPECT_NEAR(f.trend_per_s, 0, 0.1) << "a burst is no trend";
  EXPECT_NEAR(f.rise, 2.5, 0.03);
  EXPECT_NEAR(f.tokens_per_second(), 25000, 50) << "no factor learned yet: what is measured";
  // A backlog draining, or a group joining, within the last minute: no rise to learn.
  h.back().draining = true;
  EXPECT_EQ(forecast(h, 240, 1).rise, 1);
  h.back().draining = false;
  h.back().ready_replicas = 3;
  EXPECT_EQ(forecast(h, 240, 1).rise, 1);
}

TEST(BurstMemoryTest, TheFactorIsTheLargestRiseWithADecayingExcess) {
  const Clock::TimePoint t0;
  BurstMemory m;
  EXPECT_EQ(m.factor_at(t0, 3600), 1) << "nothing seen: no reserve";
  m.learn(t0, 2.5, 3600);
  EXPECT_DOUBLE_EQ(m.factor_at(t0, 3600), 2.5);
  // The excess over 1 halves every half-life.
  EXPECT_DOUBLE_EQ(m.factor_at(t0 + 1h, 3600), 1.75);
  EXPECT_DOUBLE_EQ(m.factor_at(t0 + 2h, 3600), 1.375);
  // A smaller rise changes nothing; a higher one replaces it.
  m.learn(t0 + 1h, 1.6, 3600);
  EXPECT_DOUBLE_EQ(m.factor_at(t0 + 2h, 3600), 1.375);
  m.learn(t0 + 2h, 3, 3600);
  EXPECT_DOUBLE_EQ(m.factor_at(t0 + 2h, 3600), 3);
  EXPECT_DOUBLE_EQ(m.factor_at(t0 + 3h, 3600), 2);
  // A half-life of 0 keeps it.
  EXPECT_DOUBLE_EQ(m.factor_at(t0 + 100h, 0), 3);
}

// 10000 tokens/s for half an hour, a burst to 25000 for four minutes, 10000 again.
void burst_then_calm(Replay* replay) {
  for (int i = 0; i < 120; ++i) replay->step(10000);
  for (int i = 0; i < 16; ++i) replay->step(25000);
  for (int i = 0; i < 40; ++i) replay->step(10000);
}

TEST(PolicyReplayTest, AfterABurstALevelRiseIsMetWithLevelTimesTheFactor) {
  PolicySpec spec = proactive_spec();
  spec.burst_half_life_seconds = 0;  // kept, to see the proportion alone
  Replay replay(spec, 2, 240s);
  burst_then_calm(&replay);
  EXPECT_DOUBLE_EQ(replay.state().burst.factor, 2.5);
  // Between bursts the fleet holds a burst like it: 10000 x 2.5.
  EXPECT_EQ(replay.current(), 5);
  // The level rises slowly to 16000 over an hour: the reserve grows with it, to
  // (16000 + 1.67/s x 240 s) x 2.5 = 41000 tokens/s, 9 groups, where the additive
  // headroom of one burst's rise (15000) would have held 4 + 3 = 7.
  Decision d;
  for (int i = 1; i <= 240; ++i) d = replay.step(10000 + 25.0 * i);
  EXPECT_EQ(replay.current(), 9) << d.reason;
  EXPECT_EQ(d.reason.rfind("forecast 41000 tokens/s = (level 16000 + trend 1.67/s x 240s) x "
                           "burst 2.5; measured 16000; per group ",
                           0),
            0u)
      << d.reason;
}

TEST(PolicyReplayTest, TheReserveFadesWhenBurstsStop) {
  PolicySpec spec = proactive_spec();
  spec.burst_half_life_seconds = 3600;
  Replay replay(spec, 2, 240s);
  burst_then_calm(&replay);
  EXPECT_EQ(replay.current(), 5);
  // Three hours without a burst: the factor is about 1 + 1.5 / 8, 10000 x 1.19 -> 3
  // groups.
  Decision d;
  for (int i = 0; i < 3 * 240; ++i) d = replay.step(10000);
  EXPECT_EQ(replay.current(), 3) << d.reason;
  EXPECT_NE(d.reason.find("level 10000 x burst 1.1"), std::string::npos) << d.reason;
}

TEST(PolicyReplayTest, SurgeScalesUpAtOnceAndSlowDecayScalesDownAfterTheWindow) {
  Replay replay(proactive_spec(), 2, 240s);
  for (int i = 0; i < 20; ++i) replay.step(9500);
  EXPECT_EQ(replay.current(), 2);
  // A two-minute surge to 30000: at least the 6 groups it needs at once, not one more.
  const Decision up = replay.step(30000);
  EXPECT_GE(up.replicas, 6) << up.reason;
  for (int i = 0; i < 7; ++i) replay.step(30000);
  const int32_t surge = replay.current();
  // The decay back to 9500 removes no group within the 300 s window.
  for (int i = 1; i * 15 < 300; ++i) {
    replay.step(9500);
    EXPECT_EQ(replay.current(), surge) << "at " << i * 15 << " s";
  }
  // Afterwards it keeps the burst it saw in reserve: 9500 x about 30000 / 9500 -> 6
  // groups.
  Decision d;
  for (int i = 0; i < 40; ++i) d = replay.step(9500);
  EXPECT_EQ(replay.current(), 6) << d.reason;
  EXPECT_NE(d.reason.find("level 9500 x burst 3.1"), std::string::npos) << d.reason;
}

TEST(PolicyReplayTest, NoisyInputDoesNotFlap) {
  // 20000 tokens/s with 5 % noise for two hours: a few groups, then no changes.
  Replay replay(proactive_spec(), 4, 240s);
  std::mt19937 rng(3);
  std::normal_distribution<double> noise(0, 0.05);
  for (int i = 0; i < 40; ++i) replay.step(20000 * (1 + noise(rng)));
  const int32_t settled = replay.changes();
  for (int i = 0; i < 440; ++i) replay.step(20000 * (1 + noise(rng)));
  EXPECT_EQ(replay.changes(), settled) << "at " << replay.current() << " groups";
  EXPECT_LE(replay.current(), 6);
  EXPECT_LT(replay.state().burst.factor, 1 + 5 * 0.05) << "noise is a reserve of a few percent";
}

TEST(PolicyReplayTest, FlappingInputDoesNotFlap) {
  Replay replay(proactive_spec(), 3);
  for (int i = 0; i < 200; ++i) replay.step(i % 2 ? 11000 : 15000);
  // Up to what 15000 needs (and the alternation's reserve), then never down.
  EXPECT_LE(replay.changes(), 2);
}

TEST(PolicyReplayTest, WhileRequestsWaitTheDemandIsWhatArrives) {
  // Saturated at 10000 tokens/s and 8 requests started per second, while the queue
  // grows by 8 requests a second: twice as much arrives as is served.
  Replay replay(proactive_spec(), 2, 240s);
  for (int i = 0; i < 4; ++i) replay.step(10000, 0.0, 15s, 8.0);
  const Decision d = replay.step(10000, 480.0, 15s, 8.0);
  EXPECT_EQ(replay.state().demand.back().tokens_per_second, 20000);
  // The queue rule sizes for that demand and for draining, within a minute of the
  // start-up, the backlog: 480 x 1250 tokens, and 10000 more a second for 240 s.
  EXPECT_EQ(d.replicas, 14) << d.reason;
  EXPECT_EQ(d.reason,
            "requests waiting per group 240 > 16 (measured 20000 + backlog 3000000 tokens in "
            "240s / 60s): 2 -> 14 groups");
  // Without requests/s, the queue rule grows in proportion, at most doubling, and the
  // history keeps what was served.
  Replay plain(proactive_spec(), 2, 240s);
  for (int i = 0; i < 4; ++i) plain.step(10000, 0.0);
  EXPECT_EQ(plain.step(10000, 480.0).replicas, 4);
  EXPECT_EQ(plain.state().demand.back().tokens_per_second, 10000);
}

TEST(PolicyReplayTest, MissingMetricsHold) {
  Replay replay(proactive_spec(), 3);
  replay.step(14000);
  const Decision d = replay.step(std::nullopt, std::nullopt);
  EXPECT_EQ(d.replicas, 3);
  EXPECT_EQ(d.reason, "no token throughput measured yet: keeping 3 groups");
}

TEST(PolicyReplayTest, CounterResetThroughTheWindowKeepsTheRate) {
  // A worker restart: the counter drops from 1e6 to 3000; the window reads it as 3000
  // more tokens (Prometheus' rule), so the policy sees 200 tokens/s, not a negative rate.
  GroupWindow window(60s, 600s);
  Clock::TimePoint t0;
  WorkerSample sample;
  sample.prompt_tokens = 1e6;
  window.add(t0, sample);
  sample.prompt_tokens = 3000;
  window.add(t0 + 15s, sample);
  Measurement m;
  fold_windows({&window}, &m);
  ASSERT_TRUE(m.tokens_per_second);
  EXPECT_DOUBLE_EQ(*m.tokens_per_second, 200);
  const Decision d =
      evaluate(throughput_spec(), {t0 + 15s, 2, 2, m.tokens_per_second, {}, 0.0}, {}).decision;
  EXPECT_EQ(d.replicas, 1) << d.reason;
}

TEST(PolicyReplayTest, StartUpIsLearnedFromAScaleUp) {
  Replay replay(proactive_spec(), 1, 120s);
  replay.step(4000);
  replay.step(9000);  // asks for 2 with 1 ready: the clock starts
  for (int i = 0; i < 10; ++i) replay.step(9000);
  ASSERT_TRUE(replay.state().observed_startup_seconds);
  EXPECT_EQ(*replay.state().observed_startup_seconds, 120);
}

TEST(PolicyReplayTest, ScaleToZeroAfterIdleAndWakeOnWaiting) {
  PolicySpec spec = proactive_spec();
  spec.scale_to_zero_after_idle_seconds = 600;
  Replay replay(spec, 2, 60s);
  replay.step(9500);
  Decision d;
  for (int i = 0; i < 60 && replay.current() > 0; ++i) d = replay.step(0.0);
  EXPECT_EQ(replay.current(), 0);
  EXPECT_EQ(d.reason,
            "no tokens and no request waiting for 600s (scaleToZeroAfterIdleSeconds 600): 1 -> "
            "0 groups");
  // At zero nothing is measured: it stays until a request waits (held by a gateway).
  EXPECT_EQ(replay.step(std::nullopt, std::nullopt).replicas, 0);
  d = replay.step(std::nullopt, 3.0);
  EXPECT_EQ(d.replicas, 1);
  EXPECT_EQ(d.reason, "3 requests waiting while scaled to zero: 0 -> 1 group");
}

TEST(PolicyScaleToZeroTest, WakesToMinReplicasWhenRequestsWaitWithNothingMeasured) {
  PolicySpec spec = throughput_spec();
  spec.min_replicas = 2;
  spec.scale_to_zero_after_idle_seconds = 300;
  Clock::TimePoint t0;
  // At zero there is no worker: tokens/s unknown; a gateway holds 1 request.
  const Evaluation e = evaluate(spec, {t0, 0, 0, std::nullopt, std::nullopt, 1.0}, {});
  EXPECT_EQ(e.decision.replicas, 2);
  EXPECT_EQ(e.decision.reason, "1 requests waiting while scaled to zero: 0 -> 2 groups");
  EXPECT_FALSE(e.state.idle_since) << "a waiting request ends the idle period";
}

TEST(PolicyScaleToZeroTest, StaysAtZeroWhileNothingWaits) {
  PolicySpec spec = throughput_spec();
  spec.scale_to_zero_after_idle_seconds = 300;
  Clock::TimePoint t0;
  for (const std::optional<double>& waiting : {std::optional<double>(), std::optional<double>(0)}) {
    const Evaluation e = evaluate(spec, {t0, 0, 0, std::nullopt, std::nullopt, waiting}, {});
    EXPECT_EQ(e.decision.replicas, 0) << e.decision.reason;
  }
}

TEST(PolicyScaleToZeroTest, AWaitingRequestRestartsTheIdleClock) {
  PolicySpec spec = proactive_spec();
  spec.scale_to_zero_after_idle_seconds = 120;
  Replay replay(spec, 1);
  for (int i = 0; i < 6; ++i) replay.step(0.0);  // idle from the first: 75 s
  EXPECT_EQ(replay.current(), 1);
  replay.step(0.0, 2.0);  // requests wait (tokens not yet counted): not idle
  for (int i = 0; i < 6; ++i) replay.step(0.0);
  EXPECT_EQ(replay.current(), 1) << "75 s idle since the request, below 120 s";
  replay.step(0.0);
  replay.step(0.0);
  EXPECT_EQ(replay.current(), 1);
  replay.step(0.0);  // 120 s
  EXPECT_EQ(replay.current(), 0);
}

TEST(PolicyReplayTest, WithoutScaleToZeroIdleStaysAtMinReplicas) {
  Replay replay(proactive_spec(), 2);
  for (int i = 0; i < 100; ++i) replay.step(0.0);
  EXPECT_EQ(replay.current(), 1);
}

}  // namespace
}  // namespace moeserve::autoscaler
