// Scale to zero and wake, end to end on the control plane: the real controller,
// reconciler and autoscaler (scraping a fake rank-0 worker's /metrics) against the strict
// test API server, and the gateway's KubeDiscovery reporting held requests through the
// waiting annotation. Time is a FakeClock shared by the operator and the gateway.
#include <gtest/gtest.h>

#include <mutex>

#include "common/http_server.h"
#include "common/yaml_json.h"
#include "operator/autoscaler/autoscaler.h"
#include "operator/autoscaler/scrape_source.h"
#include "operator/controller/controller.h"
#include "operator/controller/events.h"
#include "operator/controller/reconciler.h"
#include "operator/deployment/rfc3339.h"
#include "operator/gateway/kube_discovery.h"
#include "tests/operator/controller/test_cluster.h"
#include "tests/operator/gateway/fake_kubelet.h"
#include "tests/support/test_util.h"

namespace moeserve::gateway {
namespace {

using moeserve::testing::wait_until;
using namespace std::chrono_literals;
using nlohmann::json;
namespace res = kube::resources;

constexpr const char* kNs = "team-a";

// A rank-0 worker's /metrics with token counters the test moves.
class FakeWorker {
 public:
  FakeWorker() : server_(options()) {
    server_.route("GET", "/metrics", [this](const http::Request&) {
      std::lock_guard<std::mutex> lock(mutex_);
      return http::text_response(
          200,
          "# TYPE moeserve_prompt_tokens_total counter\n"
          "moeserve_prompt_tokens_total{model=\"tiny\",deployment=\"x\"} 0\n"
          "# TYPE moeserve_generation_tokens_total counter\n"
          "moeserve_generation_tokens_total{model=\"tiny\",deployment=\"x\"} " +
              std::to_string(tokens_) + "\n");
    });
  }
  Status start() { return server_.start(); }
  uint16_t port() const { return server_.port(); }
  void add_tokens(double n) {
    std::lock_guard<std::mutex> lock(mutex_);
    tokens_ += n;
  }

 private:
  static http::ServerOptions options() {
    http::ServerOptions o;
    o.host = "127.0.0.1";
    o.handler_threads = 2;
    return o;
  }
  std::mutex mutex_;
  double tokens_ = 0;
  http::Server server_;
};

class ScaleToZeroTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(cluster_.start(kNs));
    ASSERT_TRUE(worker_.start().ok());
    controller_ = std::make_unique<controller::Controller>(
        *client_, res::kModelDeployments,
        std::vector<kube::ResourceRef>{res::kStatefulSets, res::kServices, res::kConfigMaps,
                                       res::kPodDisruptionBudgets, res::kNetworkPolicies,
                                       res::kPods},
        controller::TestCluster::fast_options(), std::make_shared<prometheus::Registry>());
    events_ = std::make_unique<controller::EventRecorder>(*client_, "moeserve-operator");
    autoscaler::ScrapeOptions scrape;
    scrape.rate_window = 10s;
    source_ = std::make_unique<autoscaler::ScrapeSource>(std::make_shared<http::Client>(), scrape);
    scaler_ = std::make_unique<autoscaler::Autoscaler>(source_.get(), &clock_,
                                                       autoscaler::AutoscalerOptions{50ms, 2});
    scaler_->set_on_change([this](const std::string& key) { controller_->enqueue(key); });
    controller::AutoscalingHooks hooks;
    hooks.autoscaler = scaler_.get();
    hooks.refresh = 100ms;
    reconciler_ = std::make_unique<controller::ModelDeploymentReconciler>(
        *client_, *controller_, events_.get(), &clock_, hooks);
    controller_->set_reconciler(reconciler_.get());
    scaler_->start();
    controller_->start();

    KubeDiscoveryOptions o;
    o.ns = kNs;
    o.pod_name = "moeserve-gateway-0";
    o.clock = &clock_;
    o.writer_poll = 10ms;
    o.waiting_min_interval = 0ms;
    o.reflector_options = controller::TestCluster::fast_options().reflector_options;
    gateway_ = std::make_unique<KubeDiscovery>(*client_, o);
    gateway_->start();
  }

  void TearDown() override {
    if (gateway_) gateway_->stop();
    if (scaler_) scaler_->stop();
    if (controller_) controller_->stop();
    cluster_.api.shutdown();
  }

  json deployment() {
    auto docs =
        load_yaml_documents(moeserve::testing::source_dir() + "/deploy/examples/tiny-cpu.yaml");
    EXPECT_TRUE(docs.ok());
    json md = (*docs)[0];
    md["metadata"] = {{"name", "x"}, {"namespace", kNs}};
    md["spec"]["replicas"] = 1;
    md["spec"]["worker"]["metricsPort"] = worker_.port();
    md["spec"]["autoscaling"] = {{"enabled", true},
                                 {"minReplicas", 1},
                                 {"maxReplicas", 2},
                                 {"targetTokensPerSecondPerGroup", 100},
                                 {"scaleDownStabilizationSeconds", 0},
                                 {"scaleToZeroAfterIdleSeconds", 60}};
    return md;
  }

  std::vector<json> groups() {
    std::vector<json> out;
    auto list = client_->list(res::kStatefulSets, kNs);
    if (!list.ok()) return out;
    for (auto& item : list->items) {
      if (!item["metadata"].contains("deletionTimestamp")) out.push_back(item);
    }
    return out;
  }
  // Every group's StatefulSet reports its pods ready, and its rank-0 pod is ready at
  // 127.0.0.1 (the fake worker).
  void make_groups_ready() {
    for (json sts : groups()) {
      sts["status"] = {{"replicas", sts["spec"]["replicas"]},
                       {"readyReplicas", sts["spec"]["replicas"]},
                       {"observedGeneration", sts["metadata"]["generation"]}};
      auto written = client_->update_status(res::kStatefulSets, kNs, sts);
      ASSERT_TRUE(written.ok()) << written.status().to_string();
      rank_zero_pod(*client_, *written, "127.0.0.1", true);
    }
  }
  json status() {
    auto md = client_->get(res::kModelDeployments, kNs, "x");
    return md.ok() ? (*md).value("status", json::object()) : json::object();
  }
  std::vector<std::string> events(const std::string& reason) {
    std::vector<std::string> out;
    auto list = client_->list(res::kEvents, kNs);
    if (!list.ok()) return out;
    for (const auto& e : list->items) {
      if (e.value("reason", "") == reason) out.push_back(e.value("message", ""));
    }
    return out;
  }
  std::optional<autoscaler::Snapshot> autoscaler_snapshot() {
    return scaler_->snapshot(std::string(kNs) + "/x");
  }
  std::string measurement_errors() {
    auto snap = autoscaler_snapshot();
    if (!snap) return "not tracked";
    std::string out = "groups measured " + std::to_string(snap->measurement.groups_measured);
    for (const std::string& e : snap->measurement.errors) out += "; " + e;
    return out;
  }
  const ServedModel* model(const Snapshot& s) {
    return s.models.size() == 1 ? &s.models[0] : nullptr;
  }

  FakeClock clock_;
  controller::TestCluster cluster_;
  std::unique_ptr<kube::Client>& client_ = cluster_.client;
  FakeWorker worker_;
  std::unique_ptr<controller::Controller> controller_;
  std::unique_ptr<controller::EventRecorder> events_;
  std::unique_ptr<autoscaler::ScrapeSource> source_;
  std::unique_ptr<autoscaler::Autoscaler> scaler_;
  std::unique_ptr<controller::ModelDeploymentReconciler> reconciler_;
  std::unique_ptr<KubeDiscovery> gateway_;
};

TEST_F(ScaleToZeroTest, IdleGoesToZeroAndAHeldRequestWakesAGroup) {
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, deployment()).ok());
  ASSERT_TRUE(wait_until([&] { return groups().size() == 1; }, 20s));
  ASSERT_NO_FATAL_FAILURE(make_groups_ready());
  Snapshot s;
  ASSERT_TRUE(wait_until(
      [&] {
        s = gateway_->snapshot();
        return model(s) && model(s)->groups.size() == 1 && model(s)->groups[0].ready;
      },
      20s));

  // Idle: tokens/s 0 from two scrapes 10 s apart.
  ASSERT_TRUE(wait_until(
      [&] {
        auto snap = autoscaler_snapshot();
        return snap && snap->measurement.groups_measured == 1;
      },
      20s))
      << measurement_errors();
  clock_.advance(10s);
  ASSERT_TRUE(wait_until(
      [&] {
        auto snap = autoscaler_snapshot();
        return snap && snap->measurement.tokens_per_second == 0.0;
      },
      20s));
  EXPECT_EQ(groups().size(), 1u) << "idle, but not for 60 s yet";

  // Past scaleToZeroAfterIdleSeconds with no tokens and nothing waiting: zero groups.
  clock_.advance(61s);
  ASSERT_TRUE(wait_until([&] { return groups().empty(); }, 20s)) << status().dump();
  ASSERT_TRUE(wait_until([&] { return !events("ScaledToZero").empty(); }, 20s));
  EXPECT_EQ(events("ScaledToZero")[0],
            "no tokens and no request waiting for 61s (scaleToZeroAfterIdleSeconds 60): 1 -> 0 "
            "groups");
  ASSERT_TRUE(wait_until([&] { return status().value("desiredReplicas", -1) == 0; }, 20s));
  json ready;
  const json scaled_status = status();
  for (const auto& c : scaled_status["conditions"]) {
    if (c["type"] == "Ready") ready = c;
  }
  EXPECT_EQ(ready["reason"], "ScaledToZero") << scaled_status.dump();
  EXPECT_EQ(events("ScaledToZero").size(), 1u);

  // The gateway sees no group but can wake the deployment.
  ASSERT_TRUE(wait_until(
      [&] {
        s = gateway_->snapshot();
        return model(s) && model(s)->groups.empty();
      },
      20s));
  EXPECT_TRUE(model(s)->can_wake);

  // A request arrives and is held: the annotation reaches the operator, which wakes a
  // group without the fake clock moving (no autoscaler interval passes).
  gateway_->report_waiting("team-a/x", 2);
  ASSERT_TRUE(wait_until([&] { return groups().size() == 1; }, 20s)) << status().dump();
  ASSERT_TRUE(wait_until([&] { return !events("Woken").empty(); }, 20s));
  EXPECT_EQ(events("Woken")[0], "2 requests waiting while scaled to zero: 0 -> 1 group");
  auto snap = autoscaler_snapshot();
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->measurement.requests_waiting, 2.0);

  // The group becomes ready, the gateway routes to it and stops holding requests.
  ASSERT_NO_FATAL_FAILURE(make_groups_ready());
  ASSERT_TRUE(wait_until(
      [&] {
        s = gateway_->snapshot();
        return model(s) && model(s)->groups.size() == 1 && model(s)->groups[0].ready;
      },
      20s));
  gateway_->report_waiting("team-a/x", 0);
  ASSERT_TRUE(wait_until(
      [&] {
        auto md = client_->get(res::kModelDeployments, kNs, "x");
        return md.ok() && !(*md)["metadata"]
                               .value("annotations", json::object())
                               .contains("waiting.gateway.moeserve.io/moeserve-gateway-0");
      },
      20s));
  ASSERT_TRUE(wait_until(
      [&] {
        auto snap = autoscaler_snapshot();
        return snap && snap->measurement.groups_measured == 1;
      },
      20s))
      << measurement_errors();
  worker_.add_tokens(300);
  clock_.advance(10s);
  ASSERT_TRUE(wait_until(
      [&] {
        auto snap = autoscaler_snapshot();
        return snap && snap->measurement.tokens_per_second > 0;
      },
      20s));
  EXPECT_EQ(groups().size(), 1u);
}

TEST_F(ScaleToZeroTest, StaleWaitingEntriesWakeNothing) {
  json md = deployment();
  md["spec"]["replicas"] = 0;
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, md).ok());
  ASSERT_TRUE(wait_until([&] { return status().value("observedGeneration", 0) > 0; }, 20s));
  EXPECT_TRUE(groups().empty()) << "replicas 0 with scale to zero starts at zero";
  ASSERT_TRUE(wait_until([&] { return autoscaler_snapshot().has_value(); }, 20s));

  // A gateway that died 2 minutes ago left an entry behind: ignored (max age 60 s).
  const auto old = std::chrono::sys_seconds(std::chrono::seconds(clock_.unix_seconds() - 120));
  ASSERT_TRUE(client_
                  ->patch(res::kModelDeployments, kNs, "x", kube::PatchType::kMerge,
                          {{"metadata",
                            {{"annotations",
                              {{"waiting.gateway.moeserve.io/dead-gateway",
                                "5 " + deployment::format_rfc3339(old)}}}}}})
                  .ok());
  ASSERT_TRUE(wait_until(
      [&] {
        auto snap = autoscaler_snapshot();
        return snap && snap->evaluations > 1 && !snap->measurement.requests_waiting &&
               snap->decision.replicas == 0;
      },
      20s));
  clock_.advance(15s);
  std::this_thread::sleep_for(300ms);  // several reconciles and evaluations
  EXPECT_TRUE(groups().empty());
}

}  // namespace
}  // namespace moeserve::gateway
