// Reducing a worker's /metrics to the autoscaler's inputs, histogram quantiles, and
// rates over successive scrapes with counter resets.
#include "operator/autoscaler/worker_sample.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace moeserve::autoscaler {
namespace {

using namespace std::chrono_literals;
constexpr double kInf = std::numeric_limits<double>::infinity();

WorkerSample sample_of(const std::string& text) {
  auto samples = parse_exposition(text);
  EXPECT_TRUE(samples.ok()) << samples.status().to_string();
  auto sample = worker_sample_from(*samples);
  EXPECT_TRUE(sample.ok()) << sample.status().to_string();
  return *sample;
}

std::string worker_text(double prompt, double generation, double waiting, double ttft_fast,
                        double ttft_total, double expert0, double expert1) {
  auto n = [](double v) { return std::to_string(v); };
  return "moeserve_prompt_tokens_total{model=\"m\",deployment=\"x\"} " + n(prompt) +
         "\nmoeserve_generation_tokens_total{model=\"m\",deployment=\"x\"} " + n(generation) +
         "\nmoeserve_num_requests_waiting{model=\"m\",deployment=\"x\"} " + n(waiting) +
         "\nmoeserve_time_to_first_token_seconds_bucket{le=\"0.1\"} " + n(ttft_fast) +
         "\nmoeserve_time_to_first_token_seconds_bucket{le=\"1\"} " + n(ttft_total) +
         "\nmoeserve_time_to_first_token_seconds_bucket{le=\"+Inf\"} " + n(ttft_total) +
         "\nmoeserve_time_to_first_token_seconds_sum "
         "3\nmoeserve_time_to_first_token_seconds_count " +
         n(ttft_total) + "\nmoeserve_expert_tokens_total{layer=\"3\",expert=\"0\"} " + n(expert0) +
         "\nmoeserve_expert_tokens_total{layer=\"3\",expert=\"1\"} " + n(expert1) + "\n";
}

TEST(WorkerSampleTest, ReadsTheFamiliesTheAutoscalerUses) {
  const WorkerSample s = sample_of(worker_text(100, 50, 4, 8, 10, 30, 70));
  EXPECT_EQ(s.prompt_tokens, 100);
  EXPECT_EQ(s.generation_tokens, 50);
  EXPECT_EQ(s.requests_waiting, 4);
  ASSERT_EQ(s.ttft_buckets.size(), 3u);
  EXPECT_EQ(s.ttft_buckets[0], (std::pair<double, double>{0.1, 8}));
  EXPECT_TRUE(std::isinf(s.ttft_buckets[2].first));
  EXPECT_EQ(s.expert_tokens.at({3, 1}), 70);
}

TEST(WorkerSampleTest, RejectsSomethingThatIsNotAWorker) {
  auto samples = parse_exposition("up 1\n");
  ASSERT_TRUE(samples.ok());
  auto sample = worker_sample_from(*samples);
  ASSERT_FALSE(sample.ok());
  EXPECT_NE(sample.status().message().find("not a moeserve worker"), std::string::npos);
  auto bad = parse_exposition(
      "moeserve_prompt_tokens_total 1\nmoeserve_generation_tokens_total 1\n"
      "moeserve_expert_tokens_total{layer=\"x\",expert=\"0\"} 1\n");
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(worker_sample_from(*bad).ok());
}

TEST(HistogramQuantileTest, InterpolatesWithinTheBucketAsPromQLDoes) {
  // 100 observations: 50 <= 0.1, 90 <= 1, 100 <= +Inf.
  const std::vector<std::pair<double, double>> b = {{0.1, 50}, {1, 90}, {kInf, 100}};
  EXPECT_NEAR(*histogram_quantile(0.5, b), 0.1, 1e-12);
  EXPECT_NEAR(*histogram_quantile(0.7, b), 0.1 + 0.9 * (70 - 50) / 40.0, 1e-12);
  EXPECT_NEAR(*histogram_quantile(0.25, b), 0.05, 1e-12);  // first bucket starts at 0
  EXPECT_EQ(*histogram_quantile(0.95, b), 1.0);            // in +Inf: the last finite bound
  EXPECT_FALSE(histogram_quantile(0.95, {{0.1, 0}, {kInf, 0}}));
  EXPECT_FALSE(histogram_quantile(0.95, {}));
}

TEST(GroupWindowTest, RatesFromSuccessiveScrapesHandleCounterResets) {
  GroupWindow w(60s, 600s);
  Clock::TimePoint t0;
  w.add(t0, sample_of(worker_text(1000, 500, 0, 0, 0, 0, 0)));
  EXPECT_FALSE(w.tokens_per_second()) << "one point is no rate";
  w.add(t0 + 10s, sample_of(worker_text(1600, 900, 2, 5, 10, 100, 300)));
  EXPECT_NEAR(*w.tokens_per_second(), (600 + 400) / 10.0, 1e-9);
  w.add(t0 + 10s, sample_of(worker_text(99999, 0, 0, 0, 0, 0, 0)));  // no time passed: ignored
  EXPECT_NEAR(*w.tokens_per_second(), 100.0, 1e-9);
  // The worker restarted: counters dropped to 200 + 100, all of it new.
  w.add(t0 + 20s, sample_of(worker_text(200, 100, 1, 5, 6, 10, 10)));
  EXPECT_NEAR(*w.tokens_per_second(), (1000 + 300) / 20.0, 1e-9);
  EXPECT_EQ(w.requests_waiting(), 1);
  const auto ttft = w.ttft_increase();
  ASSERT_EQ(ttft.size(), 3u);
  EXPECT_EQ(ttft[0].second, 5 + 0);  // 5 -> 5: no reset, no increase
  EXPECT_EQ(ttft[2].second, 10 + 6);
  // Requests started: the histogram's count, 10 then 6 after the restart, over 20 s.
  EXPECT_NEAR(*w.requests_per_second(), (10 + 6) / 20.0, 1e-9);
}

TEST(GroupWindowTest, RequestsPerSecondNeedTwoPointsAndAHistogram) {
  GroupWindow w(60s, 600s);
  Clock::TimePoint t0;
  w.add(t0, sample_of(worker_text(0, 0, 0, 0, 0, 0, 0)));
  EXPECT_FALSE(w.requests_per_second()) << "one point is no rate";
  w.add(t0 + 15s, sample_of(worker_text(900, 100, 0, 3, 30, 0, 0)));
  EXPECT_NEAR(*w.requests_per_second(), 2, 1e-9);
  GroupWindow bare(60s, 600s);
  WorkerSample no_histogram;
  bare.add(t0, no_histogram);
  no_histogram.prompt_tokens = 100;
  bare.add(t0 + 15s, no_histogram);
  EXPECT_TRUE(bare.tokens_per_second());
  EXPECT_FALSE(bare.requests_per_second()) << "an engine without the histogram";
}

TEST(GroupWindowTest, RatesCoverOnlyTheWindowAndLoadsDecay) {
  GroupWindow w(30s, 100s);
  Clock::TimePoint t0;
  double total = 0;
  for (int i = 0; i <= 10; ++i) {
    total += (i <= 5 ? 100 : 1000) * 10;  // 100 tokens/s, then 1000 tokens/s
    w.add(t0 + std::chrono::seconds(10 * i), sample_of(worker_text(total, 0, 0, 0, 0, total, 0)));
  }
  // The last 30 s (plus the point just before) hold only the 1000 tokens/s phase.
  EXPECT_NEAR(*w.tokens_per_second(), 1000, 1e-9);
  // Expert 0 counted every token; its decayed load weights recent traffic more.
  double expected = 0;
  for (int i = 1; i <= 10; ++i) {
    expected = expected * std::exp(-10.0 / 100.0) + (i <= 5 ? 1000 : 10000);
  }
  EXPECT_NEAR(w.expert_load().at({3, 0}), expected, 1e-6);
  EXPECT_EQ(w.expert_load().at({3, 1}), 0);
}

TEST(ExpertLoadTest, LayersSortedAndExpertsDense) {
  const ExpertLoad load = expert_load_from({{{5, 1}, 2.0}, {{3, 0}, 1.0}, {{3, 2}, 4.0}});
  EXPECT_EQ(load.layers, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(load.tokens, (std::vector<std::vector<double>>{{1, 0, 4}, {0, 2, 0}}));
}

}  // namespace
}  // namespace moeserve::autoscaler
