// The vLLM and SGLang metric adapters on fixtures in each engine's exposition format
// (prometheus_client's text format 0.0.4 as those engines serve it: HELP/TYPE lines,
// counters with _total and _created series, one series per data-parallel engine or
// rank), counter resets across scrapes, missing optional series, and the PromQL per
// engine.
#include "operator/autoscaler/engine_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "operator/autoscaler/prometheus_source.h"
#include "operator/autoscaler/worker_sample.h"

namespace moeserve::autoscaler {
namespace {

using namespace std::chrono_literals;

// vLLM's leader with two data-parallel engines (engine="0", "1"), as vLLM's
// PrometheusStatLogger labels them.
std::string vllm_text(double prompt0, double prompt1, double generation) {
  auto n = [](double v) { return std::to_string(v); };
  return "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
         "# TYPE vllm:num_requests_running gauge\n"
         "vllm:num_requests_running{model_name=\"DeepSeek-V3\",engine=\"0\"} 3.0\n"
         "vllm:num_requests_running{model_name=\"DeepSeek-V3\",engine=\"1\"} 2.0\n"
         "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
         "# TYPE vllm:num_requests_waiting gauge\n"
         "vllm:num_requests_waiting{model_name=\"DeepSeek-V3\",engine=\"0\"} 1.0\n"
         "vllm:num_requests_waiting{model_name=\"DeepSeek-V3\",engine=\"1\"} 4.0\n"
         "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
         "# TYPE vllm:kv_cache_usage_perc gauge\n"
         "vllm:kv_cache_usage_perc{model_name=\"DeepSeek-V3\",engine=\"0\"} 0.25\n"
         "vllm:kv_cache_usage_perc{model_name=\"DeepSeek-V3\",engine=\"1\"} 0.5\n"
         "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
         "# TYPE vllm:prompt_tokens_total counter\n"
         "vllm:prompt_tokens_total{model_name=\"DeepSeek-V3\",engine=\"0\"} " +
         n(prompt0) +
         "\n"
         "vllm:prompt_tokens_total{model_name=\"DeepSeek-V3\",engine=\"1\"} " +
         n(prompt1) +
         "\n"
         "# HELP vllm:prompt_tokens_created Number of prefill tokens processed.\n"
         "# TYPE vllm:prompt_tokens_created gauge\n"
         "vllm:prompt_tokens_created{model_name=\"DeepSeek-V3\",engine=\"0\"} 1.7649e+09\n"
         "vllm:prompt_tokens_created{model_name=\"DeepSeek-V3\",engine=\"1\"} 1.7649e+09\n"
         "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n"
         "# TYPE vllm:generation_tokens_total counter\n"
         "vllm:generation_tokens_total{model_name=\"DeepSeek-V3\",engine=\"0\"} " +
         n(generation) +
         "\n"
         "vllm:generation_tokens_total{model_name=\"DeepSeek-V3\",engine=\"1\"} 0.0\n"
         "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
         "# TYPE vllm:time_to_first_token_seconds histogram\n"
         "vllm:time_to_first_token_seconds_bucket{model_name=\"DeepSeek-V3\",engine=\"0\",le="
         "\"0.1\"} 4.0\n"
         "vllm:time_to_first_token_seconds_bucket{model_name=\"DeepSeek-V3\",engine=\"0\",le="
         "\"1.0\"} 9.0\n"
         "vllm:time_to_first_token_seconds_bucket{model_name=\"DeepSeek-V3\",engine=\"0\",le="
         "\"+Inf\"} 10.0\n"
         "vllm:time_to_first_token_seconds_count{model_name=\"DeepSeek-V3\",engine=\"0\"} 10.0\n"
         "vllm:time_to_first_token_seconds_sum{model_name=\"DeepSeek-V3\",engine=\"0\"} 3.5\n"
         "vllm:time_to_first_token_seconds_bucket{model_name=\"DeepSeek-V3\",engine=\"1\",le="
         "\"0.1\"} 1.0\n"
         "vllm:time_to_first_token_seconds_bucket{model_name=\"DeepSeek-V3\",engine=\"1\",le="
         "\"1.0\"} 1.0\n"
         "vllm:time_to_first_token_seconds_bucket{model_name=\"DeepSeek-V3\",engine=\"1\",le="
         "\"+Inf\"} 2.0\n"
         "vllm:time_to_first_token_seconds_count{model_name=\"DeepSeek-V3\",engine=\"1\"} 2.0\n"
         "vllm:time_to_first_token_seconds_sum{model_name=\"DeepSeek-V3\",engine=\"1\"} 6.1\n";
}

// SGLang's leader: scheduler gauges per rank (multiprocess collector), tokenizer-side
// counters and histograms per model.
const char* kSglangText =
    "# HELP sglang:num_running_reqs The number of running requests.\n"
    "# TYPE sglang:num_running_reqs gauge\n"
    "sglang:num_running_reqs{engine_type=\"unified\",model_name=\"DeepSeek-V3\",pp_rank=\"0\","
    "tp_rank=\"0\"} 5.0\n"
    "# HELP sglang:num_queue_reqs The number of requests in the waiting queue.\n"
    "# TYPE sglang:num_queue_reqs gauge\n"
    "sglang:num_queue_reqs{engine_type=\"unified\",model_name=\"DeepSeek-V3\",pp_rank=\"0\","
    "tp_rank=\"0\"} 2.0\n"
    "sglang:num_queue_reqs{engine_type=\"unified\",model_name=\"DeepSeek-V3\",pp_rank=\"0\","
    "tp_rank=\"8\"} 1.0\n"
    "# HELP sglang:token_usage The token usage.\n"
    "# TYPE sglang:token_usage gauge\n"
    "sglang:token_usage{engine_type=\"unified\",model_name=\"DeepSeek-V3\",pp_rank=\"0\","
    "tp_rank=\"0\"} 0.31\n"
    "# HELP sglang:prompt_tokens_total Number of prefill tokens processed.\n"
    "# TYPE sglang:prompt_tokens_total counter\n"
    "sglang:prompt_tokens_total{model_name=\"DeepSeek-V3\"} 1200.0\n"
    "# HELP sglang:generation_tokens_total Number of generation tokens processed.\n"
    "# TYPE sglang:generation_tokens_total counter\n"
    "sglang:generation_tokens_total{model_name=\"DeepSeek-V3\"} 300.0\n"
    "# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
    "# TYPE sglang:time_to_first_token_seconds histogram\n"
    "sglang:time_to_first_token_seconds_sum{model_name=\"DeepSeek-V3\"} 4.2\n"
    "sglang:time_to_first_token_seconds_bucket{le=\"0.1\",model_name=\"DeepSeek-V3\"} 1.0\n"
    "sglang:time_to_first_token_seconds_bucket{le=\"0.4\",model_name=\"DeepSeek-V3\"} 5.0\n"
    "sglang:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"DeepSeek-V3\"} 6.0\n"
    "sglang:time_to_first_token_seconds_count{model_name=\"DeepSeek-V3\"} 6.0\n";

StatusOr<WorkerSample> read(const std::string& text, EngineMetrics engine) {
  auto samples = parse_exposition(text);
  EXPECT_TRUE(samples.ok()) << samples.status().to_string();
  return worker_sample_from(*samples, engine);
}

TEST(EngineMetricsTest, VllmSumsItsDataParallelEngines) {
  auto s = read(vllm_text(1000, 500, 300), EngineMetrics::kVllm);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s->prompt_tokens, 1500) << "the _created series are not counted";
  EXPECT_EQ(s->generation_tokens, 300);
  EXPECT_EQ(s->requests_waiting, 5);
  EXPECT_EQ(s->ttft_buckets,
            (std::vector<std::pair<double, double>>{{0.1, 5}, {1.0, 10}, {INFINITY, 12}}));
  EXPECT_TRUE(s->expert_tokens.empty());
}

TEST(EngineMetricsTest, SglangReadsQueueAsWaiting) {
  auto s = read(kSglangText, EngineMetrics::kSglang);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s->prompt_tokens, 1200);
  EXPECT_EQ(s->generation_tokens, 300);
  EXPECT_EQ(s->requests_waiting, 3);
  EXPECT_EQ(s->ttft_buckets,
            (std::vector<std::pair<double, double>>{{0.1, 1}, {0.4, 5}, {INFINITY, 6}}));
}

TEST(EngineMetricsTest, AnotherEnginesMetricsAreRefusedByName) {
  auto as_sglang = read(vllm_text(1, 1, 1), EngineMetrics::kSglang);
  ASSERT_FALSE(as_sglang.ok());
  EXPECT_EQ(as_sglang.status().message(),
            "no sglang:prompt_tokens_total / sglang:generation_tokens_total: not a sglang "
            "worker's /metrics");
  EXPECT_FALSE(read(kSglangText, EngineMetrics::kVllm).ok());
  EXPECT_FALSE(read(kSglangText, EngineMetrics::kMoeserve).ok());
}

TEST(EngineMetricsTest, MissingHistogramAndGaugeReadAsEmpty) {
  // A vLLM leader that has served nothing yet still has its counters at 0; the
  // histogram and gauges may be absent (e.g. filtered by a proxy): no TTFT, 0 waiting.
  auto s = read(
      "# TYPE vllm:prompt_tokens_total counter\n"
      "vllm:prompt_tokens_total{model_name=\"m\",engine=\"0\"} 0.0\n"
      "# TYPE vllm:generation_tokens_total counter\n"
      "vllm:generation_tokens_total{model_name=\"m\",engine=\"0\"} 0.0\n",
      EngineMetrics::kVllm);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_TRUE(s->ttft_buckets.empty());
  EXPECT_EQ(s->requests_waiting, 0);
  // Without the generation counter it is not a usable scrape.
  EXPECT_FALSE(read("vllm:prompt_tokens_total{engine=\"0\"} 5.0\n", EngineMetrics::kVllm).ok());
}

TEST(EngineMetricsTest, VllmCounterResetCountsTheNewValueAsIncrease) {
  GroupWindow window(60s, 600s);
  const Clock::TimePoint t0{};
  window.add(t0, *read(vllm_text(1000, 500, 500), EngineMetrics::kVllm));
  window.add(t0 + 10s, *read(vllm_text(1600, 900, 500), EngineMetrics::kVllm));  // +1000
  // The leader restarted: counters start again from 0; 200 + 100 + 0 is all increase.
  window.add(t0 + 20s, *read(vllm_text(200, 100, 0), EngineMetrics::kVllm));
  ASSERT_TRUE(window.tokens_per_second());
  EXPECT_NEAR(*window.tokens_per_second(), (1000.0 + 300) / 20, 1e-9);
}

TEST(EngineMetricsTest, PromqlUsesEachEnginesNames) {
  PrometheusSource source(nullptr, PrometheusOptions{"http://p:9090", 120, 600, 1000});
  ScrapeTarget vllm{"ml", "ds", {}, EngineMetrics::kVllm};
  EXPECT_EQ(source.queries(vllm),
            (std::vector<std::string>{
                "sum(rate(vllm:prompt_tokens_total{namespace=\"ml\",deployment=\"ds\"}[120s])) + "
                "sum(rate(vllm:generation_tokens_total{namespace=\"ml\",deployment=\"ds\"}[120s]))",
                "histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_"
                "bucket{namespace=\"ml\",deployment=\"ds\"}[120s])))",
                "sum(vllm:num_requests_waiting{namespace=\"ml\",deployment=\"ds\"})",
                "sum(rate(vllm:time_to_first_token_seconds_bucket{namespace=\"ml\","
                "deployment=\"ds\",le=\"+Inf\"}[120s]))"}))
      << "no expert-load query: vLLM exports none";
  ScrapeTarget sglang{"ml", "ds", {}, EngineMetrics::kSglang};
  EXPECT_EQ(source.queries(sglang)[2],
            "sum(sglang:num_queue_reqs{namespace=\"ml\",deployment=\"ds\"})");
  EXPECT_EQ(source.queries(ScrapeTarget{"ml", "ds", {}}).size(), 5u);
}

}  // namespace
}  // namespace moeserve::autoscaler
