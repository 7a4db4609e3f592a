// The metric sources against real HTTP servers on 127.0.0.1 (a fake worker /metrics and
// a fake Prometheus API), the Autoscaler's evaluation, and the per-deployment gauges.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "common/http_server.h"
#include "common/metrics.h"
#include "operator/autoscaler/autoscaler.h"
#include "operator/autoscaler/deployment_gauges.h"
#include "operator/autoscaler/prometheus_source.h"
#include "operator/autoscaler/scrape_source.h"

namespace moeserve::autoscaler {
namespace {

using namespace std::chrono_literals;

// A worker's /metrics whose counters the test sets.
class FakeWorker {
 public:
  FakeWorker() : server_(http::ServerOptions{}) {
    server_.route("GET", "/metrics", [this](const http::Request&) {
      std::lock_guard<std::mutex> lock(mutex_);
      return http::text_response(status_, body_);
    });
    EXPECT_TRUE(server_.start().ok());
  }
  void set(double prompt, double generation, double waiting = 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    body_ =
        "# TYPE moeserve_prompt_tokens_total counter\n"
        "moeserve_prompt_tokens_total{model=\"m\",deployment=\"x\"} " +
        std::to_string(prompt) +
        "\nmoeserve_generation_tokens_total{model=\"m\",deployment=\"x\"} " +
        std::to_string(generation) +
        "\nmoeserve_num_requests_waiting{model=\"m\",deployment=\"x\"} " + std::to_string(waiting) +
        "\n";
    status_ = 200;
  }
  void set_raw(int status, std::string body) {
    std::lock_guard<std::mutex> lock(mutex_);
    status_ = status;
    body_ = std::move(body);
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_.port()) + "/metrics";
  }

 private:
  std::mutex mutex_;
  int status_ = 200;
  std::string body_;
  http::Server server_;
};

ScrapeTarget target_of(const std::vector<const FakeWorker*>& workers) {
  ScrapeTarget t{"ns", "x", {}};
  for (size_t i = 0; i < workers.size(); ++i) {
    t.groups.push_back(
        {static_cast<int32_t>(i), "x-g" + std::to_string(i) + "-0", workers[i]->url()});
  }
  return t;
}

TEST(ScrapeSourceTest, SumsRatesOverGroupsAndReportsBrokenOnes) {
  FakeWorker a, b, broken;
  broken.set_raw(200, "moeserve_prompt_tokens_total{ 1\n");
  auto http = std::make_shared<http::Client>();
  ScrapeSource source(http);
  const ScrapeTarget t = target_of({&a, &b, &broken});
  Clock::TimePoint t0;
  a.set(100, 100, 3);
  b.set(0, 0, 1);
  Measurement first = source.measure(t, t0);
  EXPECT_FALSE(first.tokens_per_second);
  EXPECT_EQ(first.groups_measured, 2);
  ASSERT_EQ(first.errors.size(), 1u);
  EXPECT_NE(first.errors[0].find("x-g2-0: "), std::string::npos);
  EXPECT_NE(first.errors[0].find("metrics line 1"), std::string::npos) << first.errors[0];
  a.set(1100, 600, 2);  // 1500 tokens in 10 s
  b.set(300, 200);      // 500
  Measurement second = source.measure(t, t0 + 10s);
  ASSERT_TRUE(second.tokens_per_second);
  EXPECT_NEAR(*second.tokens_per_second, 200, 1e-9);
  EXPECT_EQ(*second.requests_waiting, 2);
  // A group that goes away takes its rate with it; a's rate now spans 20 s.
  Measurement third = source.measure(target_of({&a}), t0 + 20s);
  EXPECT_NEAR(*third.tokens_per_second, 1500 / 20.0, 1e-9);
}

TEST(ScrapeSourceTest, NonOkStatusAndRefusedConnectionsAreErrors) {
  FakeWorker w;
  w.set_raw(503, "loading");
  ScrapeSource source(std::make_shared<http::Client>());
  auto sample = source.scrape(w.url());
  ASSERT_FALSE(sample.ok());
  EXPECT_NE(sample.status().message().find("HTTP 503"), std::string::npos);
  EXPECT_FALSE(source.scrape("http://127.0.0.1:1/metrics").ok());
}

TEST(PrometheusSourceTest, QueriesByNamespaceAndDeploymentAndReadsVectors) {
  http::Server prom(http::ServerOptions{});
  std::mutex mutex;
  std::vector<std::string> seen;
  prom.route("GET", "/api/v1/query", [&](const http::Request& r) {
    const std::string q = r.query_param("query");
    {
      std::lock_guard<std::mutex> lock(mutex);
      seen.push_back(q);
    }
    std::string result = "[]";
    if (q.find("moeserve_prompt_tokens_total") != std::string::npos) {
      result = R"([{"metric":{},"value":[1700000000,"1234.5"]}])";
    } else if (q.find("histogram_quantile") != std::string::npos) {
      result = R"([{"metric":{},"value":[1700000000,"NaN"]}])";
    } else if (q.find("le=\"+Inf\"") != std::string::npos) {
      result = R"([{"metric":{},"value":[1700000000,"2.5"]}])";
    } else if (q.find("moeserve_expert_tokens_total") != std::string::npos) {
      result = R"([{"metric":{"layer":"3","expert":"1"},"value":[1,"50"]},
                   {"metric":{"layer":"3","expert":"0"},"value":[1,"10"]}])";
    } else {
      return http::json_response(
          400, R"({"status":"error","errorType":"bad_data","error":"parse error"})");
    }
    return http::json_response(
        200, R"({"status":"success","data":{"resultType":"vector","result":)" + result + "}}");
  });
  ASSERT_TRUE(prom.start().ok());
  PrometheusOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(prom.port()) + "/";
  PrometheusSource source(std::make_shared<http::Client>(), options);
  const ScrapeTarget t{"team-a", "x", {{0, "x-g0-0", ""}}};
  Measurement m = source.measure(t, {});
  EXPECT_NEAR(*m.tokens_per_second, 1234.5, 1e-9);
  EXPECT_FALSE(m.ttft_p95_seconds) << "NaN (no requests) is unknown";
  EXPECT_FALSE(m.requests_waiting);
  ASSERT_TRUE(m.requests_per_second) << "the policy's arrival estimate needs it";
  EXPECT_NEAR(*m.requests_per_second, 2.5, 1e-9);
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_NE(m.errors[0].find("bad_data: parse error"), std::string::npos) << m.errors[0];
  EXPECT_EQ(m.expert_load.tokens, (std::vector<std::vector<double>>{{10, 50}}));
  std::lock_guard<std::mutex> lock(mutex);
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(
      seen[0],
      "sum(rate(moeserve_prompt_tokens_total{namespace=\"team-a\",deployment=\"x\"}[120s])) + "
      "sum(rate(moeserve_generation_tokens_total{namespace=\"team-a\",deployment=\"x\"}[120s]))");
  EXPECT_EQ(seen[3],
            "sum(rate(moeserve_time_to_first_token_seconds_bucket{namespace=\"team-a\","
            "deployment=\"x\",le=\"+Inf\"}[120s]))");
}

TEST(PrometheusSourceTest, ResponseParserRejectsMalformedBodies) {
  EXPECT_FALSE(parse_query_response("not json").ok());
  EXPECT_FALSE(
      parse_query_response(R"({"status":"success","data":{"resultType":"matrix","result":[]}})")
          .ok());
  EXPECT_FALSE(
      parse_query_response(
          R"({"status":"success","data":{"resultType":"vector","result":[{"value":[1]}]}})")
          .ok());
  auto scalar = parse_query_response(
      R"({"status":"success","data":{"resultType":"scalar","result":[1,"2.5"]}})");
  ASSERT_TRUE(scalar.ok());
  EXPECT_EQ((*scalar)[0].second, 2.5);
}

// A source whose measurements the test sets.
class ScriptedSource : public MetricSource {
 public:
  Measurement measure(const ScrapeTarget&, Clock::TimePoint) override {
    std::lock_guard<std::mutex> lock(mutex);
    ++calls;
    return next;
  }
  void forget(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mutex);
    forgotten.push_back(key);
  }
  std::mutex mutex;
  Measurement next;
  int calls = 0;
  std::vector<std::string> forgotten;
};

TEST(AutoscalerTest, EvaluatesWithStabilizationAndNotifiesChanges) {
  ScriptedSource source;
  FakeClock clock;
  Autoscaler autoscaler(&source, &clock, {std::chrono::hours(1), 1});
  std::vector<std::string> changed;
  autoscaler.set_on_change([&](const std::string& key) { changed.push_back(key); });
  PolicySpec policy;
  policy.max_replicas = 5;
  policy.target_tokens_per_second_per_group = 100;
  policy.scale_down_stabilization_seconds = 60;
  autoscaler.track("ns/x", {{"ns", "x", {}}, policy, 2, 2});
  EXPECT_FALSE(autoscaler.snapshot("ns/x")) << "nothing before the first evaluation";

  source.next.tokens_per_second = 400;
  autoscaler.evaluate("ns/x");
  EXPECT_EQ(autoscaler.snapshot("ns/x")->decision.replicas, 4);
  EXPECT_EQ(changed.size(), 1u);
  autoscaler.evaluate("ns/x");
  EXPECT_EQ(changed.size(), 1u) << "same decision, same tokens/s: no notification";

  autoscaler.track("ns/x", {{"ns", "x", {}}, policy, 4, 4});
  source.next.tokens_per_second = 150;
  clock.advance(30s);
  autoscaler.evaluate("ns/x");
  EXPECT_EQ(autoscaler.snapshot("ns/x")->decision.replicas, 4) << "held by stabilization";
  clock.advance(61s);
  autoscaler.evaluate("ns/x");
  EXPECT_EQ(autoscaler.snapshot("ns/x")->decision.replicas, 2);
  EXPECT_EQ(autoscaler.snapshot("ns/x")->decision.reason,
            "tokens/s per group 37.5 < target 100: 4 -> 2 groups");
  EXPECT_EQ(autoscaler.snapshot("ns/x")->evaluations, 4);

  autoscaler.forget("ns/x");
  EXPECT_FALSE(autoscaler.snapshot("ns/x"));
  EXPECT_EQ(source.forgotten, std::vector<std::string>{"ns/x"});
}

TEST(AutoscalerTest, ThreadsEvaluateNewDeploymentsAtOnce) {
  ScriptedSource source;
  source.next.tokens_per_second = 10;
  FakeClock clock;
  Autoscaler autoscaler(&source, &clock, {std::chrono::hours(1), 2});
  std::atomic<int> notified{0};
  autoscaler.set_on_change([&](const std::string&) { ++notified; });
  autoscaler.start();
  autoscaler.track("ns/a", {{"ns", "a", {}}, PolicySpec{}, 1, 1});
  autoscaler.track("ns/b", {{"ns", "b", {}}, PolicySpec{}, 1, 1});
  for (int i = 0; i < 500 && notified < 2; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(notified, 2);
  autoscaler.stop();
  EXPECT_EQ(autoscaler.snapshot("ns/a")->measurement.tokens_per_second, 10);
}

TEST(DeploymentGaugesTest, SeriesPerDeploymentOptionalOnesOnlyWhenSetRemovedOnDelete) {
  auto registry = std::make_shared<prometheus::Registry>();
  DeploymentGauges gauges(*registry);
  DeploymentValues v;
  v.replicas_desired = 3;
  v.replicas_ready = 2;
  v.tokens_per_second = 1500;
  v.cost_budget_per_million_tokens_usd = 0.5;
  v.worker_restarts = 4;
  gauges.set("ns", "x", v);
  gauges.set("ns", "y", DeploymentValues{});
  std::string text = metrics::serialize({registry});
  EXPECT_NE(text.find("moeserve_deployment_replicas_desired{deployment=\"x\",namespace=\"ns\"} 3"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("moeserve_deployment_tokens_per_second{deployment=\"x\",namespace=\"ns\"} 1500"),
      std::string::npos);
  EXPECT_NE(
      text.find(
          "moeserve_deployment_cost_per_million_tokens_usd{deployment=\"x\",namespace=\"ns\"} Nan"),
      std::string::npos);
  EXPECT_NE(text.find("moeserve_deployment_cost_budget_per_million_tokens_usd{deployment=\"x\""),
            std::string::npos);
  EXPECT_EQ(text.find("moeserve_deployment_cost_budget_per_million_tokens_usd{deployment=\"y\""),
            std::string::npos);
  EXPECT_EQ(text.find("moeserve_deployment_ttft_p95_slo_seconds{"), std::string::npos);
  EXPECT_NE(text.find("moeserve_deployment_worker_restarts{deployment=\"x\",namespace=\"ns\"} 4"),
            std::string::npos);
  v.cost_budget_per_million_tokens_usd.reset();
  gauges.set("ns", "x", v);
  gauges.remove("ns", "y");
  text = metrics::serialize({registry});
  EXPECT_EQ(text.find("moeserve_deployment_cost_budget_per_million_tokens_usd{"),
            std::string::npos);
  EXPECT_EQ(text.find("deployment=\"y\""), std::string::npos);
  EXPECT_NE(text.find("deployment=\"x\""), std::string::npos);
}

}  // namespace
}  // namespace moeserve::autoscaler
