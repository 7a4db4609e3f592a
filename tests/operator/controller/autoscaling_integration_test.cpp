// Measuring and deciding through the real controller against the strict test API
// server: fake rank-0 workers (real HTTP servers on 127.0.0.<group+1>, serving /metrics
// text the test controls) behind Pod objects whose status.podIP points at them drive a
// scale-up, then a scale-down after the stabilization window of an injected clock.
// Status shows tokens/s and cost, events say why it scaled, the operator's gauges
// follow, and deleting the deployment removes its series.
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "common/http_server.h"
#include "common/metrics.h"
#include "common/yaml_json.h"
#include "operator/autoscaler/autoscaler.h"
#include "operator/autoscaler/deployment_gauges.h"
#include "operator/autoscaler/scrape_source.h"
#include "operator/controller/controller.h"
#include "operator/controller/events.h"
#include "operator/controller/reconciler.h"
#include "operator/deployment/names.h"
#include "operator/kube/client.h"
#include "operator/kube/transport.h"
#include "tests/operator/controller/operator_loop.h"
#include "tests/operator/controller/test_cluster.h"
#include "tests/support/apiserver.h"
#include "tests/support/test_util.h"

namespace moeserve::controller {
namespace {

using moeserve::testing::wait_until;
using namespace std::chrono_literals;
namespace res = kube::resources;

constexpr const char* kNs = "team-a";

// The /metrics of one group's rank-0 worker.
class FakeWorker {
 public:
  FakeWorker(const std::string& host, uint16_t port) : server_(options(host, port)) {
    server_.route("GET", "/metrics", [this](const http::Request&) {
      std::lock_guard<std::mutex> lock(mutex_);
      return http::text_response(
          200,
          "# TYPE moeserve_prompt_tokens_total counter\n"
          "moeserve_prompt_tokens_total{model=\"tiny\",deployment=\"x\"} " +
              std::to_string(prompt_) +
              "\nmoeserve_generation_tokens_total{model=\"tiny\",deployment=\"x\"} " +
              std::to_string(generation_) + "\n" + experts_ + placement_);
    });
  }
  Status start() { return server_.start(); }
  uint16_t port() const { return server_.port(); }
  void add_tokens(double prompt, double generation) {
    std::lock_guard<std::mutex> lock(mutex_);
    prompt_ += prompt;
    generation_ += generation;
  }
  // moeserve_expert_tokens_total of MoE layer `layer`, one count per expert.
  void set_expert_tokens(int layer, const std::vector<double>& counts) {
    std::lock_guard<std::mutex> lock(mutex_);
    experts_.clear();
    for (size_t e = 0; e < counts.size(); ++e) {
      experts_ += "moeserve_expert_tokens_total{model=\"tiny\",deployment=\"x\",layer=\"" +
                  std::to_string(layer) + "\",expert=\"" + std::to_string(e) + "\"} " +
                  std::to_string(counts[e]) + "\n";
    }
  }

  // The live-placement series of worker/server/placement_metrics.h: the version the
  // group runs, the last committed switch's duration, the last aborted one (failed > 0),
  // and per-slot tokens of MoE layer 1 (rank r holds slots [r * n, (r + 1) * n)).
  void set_placement(int64_t version, double seconds, int64_t failed, const std::string& reason,
                     const std::vector<double>& slot_tokens, int slots_per_rank) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string labels = "model=\"tiny\",deployment=\"x\"";
    placement_ = "moeserve_placement_version{" + labels + "} " + std::to_string(version) +
                 "\nmoeserve_placement_switch_duration_seconds{" + labels + "} " +
                 std::to_string(seconds) + "\n";
    if (failed > 0) {
      placement_ += "moeserve_placement_switch_failure_info{" + labels + ",version=\"" +
                    std::to_string(failed) + "\",reason=\"" + reason + "\"} 1\n";
    }
    for (size_t s = 0; s < slot_tokens.size(); ++s) {
      placement_ += "moeserve_expert_slot_tokens_total{" + labels + ",layer=\"1\",slot=\"" +
                    std::to_string(s) + "\",rank=\"" + std::to_string(s / slots_per_rank) + "\"} " +
                    std::to_string(slot_tokens[s]) + "\n";
    }
  }

 private:
  static http::ServerOptions options(const std::string& host, uint16_t port) {
    http::ServerOptions o;
    o.host = host;
    o.port = port;
    o.handler_threads = 2;
    return o;
  }
  std::mutex mutex_;
  double prompt_ = 0;
  double generation_ = 0;
  std::string experts_;
  std::string placement_;
  http::Server server_;
};

class AutoscalingIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(cluster_.start(kNs));
    // Group i's worker listens on 127.0.0.<i+1>, all on one port (spec.worker.metricsPort).
    workers_.push_back(std::make_unique<FakeWorker>("127.0.0.1", 0));
    ASSERT_TRUE(workers_[0]->start().ok());
    for (int i = 1; i < 3; ++i) {
      workers_.push_back(
          std::make_unique<FakeWorker>("127.0.0." + std::to_string(i + 1), workers_[0]->port()));
      ASSERT_TRUE(workers_[i]->start().ok());
    }
    loop_.start(*client_, &clock_, registry_);
  }

  void TearDown() override {
    loop_.stop();
    cluster_.api.shutdown();
  }

  nlohmann::json deployment() {
    auto docs =
        load_yaml_documents(moeserve::testing::source_dir() + "/deploy/examples/tiny-cpu.yaml");
    EXPECT_TRUE(docs.ok());
    nlohmann::json md = (*docs)[0];
    md["metadata"] = {{"name", "x"}, {"namespace", kNs}};
    md["spec"]["replicas"] = 1;
    md["spec"]["worker"]["metricsPort"] = workers_[0]->port();
    md["spec"]["autoscaling"] = {{"enabled", true},
                                 {"minReplicas", 1},
                                 {"maxReplicas", 3},
                                 {"targetTokensPerSecondPerGroup", 100},
                                 {"scaleDownStabilizationSeconds", 60}};
    return md;
  }

  std::map<std::string, nlohmann::json> groups() {
    std::map<std::string, nlohmann::json> out;
    kube::ListOptions options;
    options.label_selector = std::string(deployment::kLabelDeployment) + "=x";
    auto list = client_->list(res::kStatefulSets, kNs, options);
    if (!list.ok()) return out;
    for (auto& item : list->items) {
      if (item["metadata"].contains("deletionTimestamp")) continue;
      out[item["metadata"]["name"].get<std::string>()] = item;
    }
    return out;
  }

  // Plays the StatefulSet controller and the kubelet: every group ready, and its rank-0
  // pod running at 127.0.0.<group+1> with `restarts` container restarts.
  void make_groups_ready(int64_t restarts) {
    for (auto& [name, sts] : groups()) {
      nlohmann::json updated = sts;
      updated["status"] = {{"replicas", sts["spec"]["replicas"]},
                           {"readyReplicas", sts["spec"]["replicas"]},
                           {"observedGeneration", sts["metadata"]["generation"]}};
      auto written = client_->update_status(res::kStatefulSets, kNs, updated);
      ASSERT_TRUE(written.ok()) << written.status().to_string();
      const int32_t group = *deployment::parse_group_name("x", name);
      const std::string pod_name = name + "-0";
      if (client_->get(res::kPods, kNs, pod_name).ok()) continue;
      nlohmann::json pod = {{"apiVersion", "v1"},
                            {"kind", "Pod"},
                            {"metadata",
                             {{"name", pod_name},
                              {"namespace", kNs},
                              {"labels", {{std::string(deployment::kLabelDeployment), "x"}}}}},
                            {"spec", {{"containers", {{{"name", "worker"}, {"image", "w"}}}}}}};
      auto created = client_->create(res::kPods, kNs, pod);
      ASSERT_TRUE(created.ok()) << created.status().to_string();
      (*created)["status"] = {
          {"podIP", "127.0.0." + std::to_string(group + 1)},
          {"containerStatuses", {{{"name", "worker"}, {"restartCount", restarts}}}}};
      ASSERT_TRUE(client_->update_status(res::kPods, kNs, *created).ok());
    }
  }

  nlohmann::json status() {
    auto md = client_->get(res::kModelDeployments, kNs, "x");
    return md.ok() ? (*md).value("status", nlohmann::json::object()) : nlohmann::json::object();
  }

  std::vector<std::string> event_messages(const std::string& reason) {
    std::vector<std::string> out;
    auto events = client_->list(res::kEvents, kNs);
    if (!events.ok()) return out;
    for (const auto& e : events->items) {
      if (e.value("reason", "") == reason) out.push_back(e.value("message", ""));
    }
    return out;
  }
  std::vector<std::string> scaled_messages() { return event_messages("Scaled"); }

  // Waits until the autoscaler has measured n groups at the current fake time.
  bool measured_groups(int32_t n) {
    return wait_until(
        [&] {
          auto snapshot = scaler_->snapshot(std::string(kNs) + "/x");
          return snapshot && snapshot->measurement.groups_measured == n;
        },
        20s);
  }

  TestCluster cluster_;
  moeserve::testing::ApiServer& api_ = cluster_.api;
  FakeClock clock_;
  std::vector<std::unique_ptr<FakeWorker>> workers_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<kube::Client>& client_ = cluster_.client;
  OperatorLoop loop_;
  std::unique_ptr<autoscaler::Autoscaler>& scaler_ = loop_.scaler;
};

TEST_F(AutoscalingIntegrationTest, ScalesUpOnThroughputAndDownAfterStabilization) {
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, deployment()).ok());
  ASSERT_TRUE(wait_until([&] { return groups().size() == 1; }, 20s));
  make_groups_ready(2);
  ASSERT_TRUE(measured_groups(1));

  // 1800 tokens in 10 s on one group: 180 tokens/s against a target of 100 per group.
  workers_[0]->add_tokens(1200, 600);
  clock_.advance(10s);
  ASSERT_TRUE(wait_until([&] { return groups().size() == 2; }, 20s)) << status().dump();
  ASSERT_TRUE(wait_until([&] { return !scaled_messages().empty(); }, 20s));
  EXPECT_EQ(scaled_messages()[0], "tokens/s per group 180 > target 100: 1 -> 2 groups");
  ASSERT_TRUE(wait_until([&] { return status().value("desiredReplicas", 0) == 2; }, 20s));
  EXPECT_EQ(status()["tokensPerSecond"], 180);
  // 2 groups x 2 pods x $0.05/h at 180 tokens/s.
  EXPECT_NEAR(status()["costPerMillionTokens"].get<double>(), 0.2 / 3600 / 180 * 1e6, 1e-3);

  make_groups_ready(1);
  ASSERT_TRUE(measured_groups(2));
  std::string text;
  ASSERT_TRUE(wait_until(
      [&] {
        text = metrics::serialize({registry_});
        return text.find(
                   "moeserve_deployment_replicas_ready{deployment=\"x\",namespace=\"team-a\"} "
                   "2") != std::string::npos;
      },
      20s))
      << text;
  EXPECT_NE(
      text.find("moeserve_deployment_replicas_desired{deployment=\"x\",namespace=\"team-a\"} 2"),
      std::string::npos);

  // Traffic drops to 30 tokens/s over both groups: one group would do, but the
  // recommendation of 2 made within the last 60 s holds the scale-down.
  workers_[0]->add_tokens(200, 100);
  clock_.advance(10s);
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = scaler_->snapshot(std::string(kNs) + "/x");
        return s && s->decision.reason.find("held") != std::string::npos;
      },
      20s));
  EXPECT_EQ(groups().size(), 2u);

  // Past the window, with traffic still low (30 tokens/s), the group goes.
  workers_[0]->add_tokens(1220, 610);
  clock_.advance(61s);
  ASSERT_TRUE(wait_until([&] { return groups().size() == 1; }, 20s)) << status().dump();
  EXPECT_EQ(groups().begin()->first, "x-g0") << "the newest group goes first";
  ASSERT_TRUE(wait_until([&] { return scaled_messages().size() == 2; }, 20s));
  EXPECT_EQ(scaled_messages()[1], "tokens/s per group 15 < target 100: 2 -> 1 group");
  EXPECT_TRUE(wait_until(
      [&] {
        return metrics::serialize({registry_})
                   .find(
                       "moeserve_deployment_worker_restarts{deployment=\"x\",namespace=\"team-a\"} "
                       "3") != std::string::npos;
      },
      20s))
      << "restarts summed over both rank-0 pods";

  ASSERT_TRUE(client_->remove(res::kModelDeployments, kNs, "x").ok());
  ASSERT_TRUE(wait_until(
      [&] { return metrics::serialize({registry_}).find("deployment=\"x\"") == std::string::npos; },
      20s));
  EXPECT_FALSE(scaler_->snapshot(std::string(kNs) + "/x"));
}

TEST_F(AutoscalingIntegrationTest, SkewedExpertLoadVersionsTheBalancedPlacement) {
  nlohmann::json md = deployment();
  md["spec"]["model"]["routedExperts"] = 8;
  md["spec"]["model"]["moeLayers"] = 1;
  md["spec"]["parallelism"]["redundantExperts"] = 2;  // 10 slots, 5 per rank
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, md).ok());
  ASSERT_TRUE(wait_until([&] { return groups().size() == 1; }, 20s));
  make_groups_ready(0);
  ASSERT_TRUE(wait_until([&] { return status().contains("placement"); }, 20s));
  EXPECT_EQ(status()["placement"]["version"], 1);
  ASSERT_TRUE(measured_groups(1));

  // Expert 5 takes 12000 of 19000 routed tokens. The default map (experts 0..7, then
  // replicas of 0 and 4) puts it on rank 1: rank loads 4000 / 15000, balancedness 0.633.
  // EPLB would give expert 5 both redundant slots: 11000 / 8000, balancedness 0.864. The
  // default policy (auto: refined here) splits it in two and a cold expert in two:
  // 6000 + 3 x 1000 + 500 on each rank, balancedness 1.
  workers_[0]->add_tokens(100, 100);
  workers_[0]->set_expert_tokens(1, {1000, 1000, 1000, 1000, 1000, 12000, 1000, 1000});
  clock_.advance(10s);
  ASSERT_TRUE(wait_until(
      [&] { return status().contains("placement") && status()["placement"]["version"] == 2; }, 20s))
      << status().dump();
  EXPECT_NEAR(status()["placement"]["balancedness"].get<double>(), 1.0, 1e-3);
  auto cm = client_->get(res::kConfigMaps, kNs, "x-placement");
  ASSERT_TRUE(cm.ok());
  auto placement = nlohmann::json::parse((*cm)["data"]["placement.json"].get<std::string>());
  EXPECT_EQ(placement["version"], 2);
  int replicas_of_hot = 0;
  for (const auto& e : placement["layers"][0]["phy2log"]) replicas_of_hot += e == 5 ? 1 : 0;
  EXPECT_EQ(replicas_of_hot, 2);
  ASSERT_TRUE(wait_until([&] { return !event_messages("PlacementRollout").empty(); }, 20s));
  EXPECT_EQ(event_messages("PlacementRollout")[0],
            "expert placement version 2 from measured expert loads: balancedness 0.633 -> 1");
}

// A new version reaches a running group live: the StatefulSet (its pod template, so its
// pods) is not touched; the worker reports the version it switched to, and status and
// the PlacementUpdated event record version, balancedness before/after and the switch
// duration; the operator's switch metrics count it. Until then nothing new is proposed.
TEST_F(AutoscalingIntegrationTest, NewPlacementIsSwitchedLiveWithoutRestartingPods) {
  nlohmann::json md = deployment();
  md["spec"]["model"]["routedExperts"] = 8;
  md["spec"]["model"]["moeLayers"] = 1;
  md["spec"]["parallelism"]["redundantExperts"] = 2;
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, md).ok());
  ASSERT_TRUE(wait_until([&] { return groups().size() == 1; }, 20s));
  make_groups_ready(0);
  ASSERT_TRUE(wait_until([&] { return status().contains("placement"); }, 20s));
  const nlohmann::json before = groups().begin()->second;
  workers_[0]->set_placement(1, 0, 0, "", {}, 5);
  ASSERT_TRUE(measured_groups(1));
  // Version 1 runs; rank 1 carried 15000 of 19000 tokens (slots 5..9).
  workers_[0]->set_placement(1, 0, 0, "", {800, 800, 800, 800, 800, 12000, 750, 750, 750, 750}, 5);
  workers_[0]->add_tokens(100, 100);
  workers_[0]->set_expert_tokens(1, {1000, 1000, 1000, 1000, 1000, 12000, 1000, 1000});
  clock_.advance(10s);
  ASSERT_TRUE(wait_until(
      [&] { return status()["placement"].value("lastSwitch", nlohmann::json()).is_object(); }, 20s))
      << status().dump();
  nlohmann::json last = status()["placement"]["lastSwitch"];
  EXPECT_EQ(last["version"], 2);
  EXPECT_EQ(last["result"], "InProgress");
  EXPECT_NEAR(last["balancednessBefore"].get<double>(), 9500.0 / 15000, 1e-3)
      << "measured from what the ranks carried";
  EXPECT_NEAR(last["balancednessAfter"].get<double>(), 1.0, 1e-3)
      << "the planned map (the refined policy balances this load fully)";

  // The worker still runs version 1: the switch is in flight, and a new skew proposes
  // nothing more.
  workers_[0]->add_tokens(100, 100);
  workers_[0]->set_expert_tokens(1, {1000, 30000, 1000, 1000, 1000, 12000, 1000, 1000});
  clock_.advance(10s);
  ASSERT_TRUE(measured_groups(1));
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(status()["placement"]["version"], 2) << "one switch in flight at a time";

  // The group switched to version 2 in 1.5 s.
  workers_[0]->set_placement(2, 1.5, 0, "",
                             {2000, 2000, 2000, 2000, 2000, 2000, 2000, 2000, 2000, 1000}, 5);
  workers_[0]->add_tokens(100, 100);
  clock_.advance(10s);
  ASSERT_TRUE(wait_until([&] { return !event_messages("PlacementUpdated").empty(); }, 20s))
      << status().dump();
  EXPECT_EQ(event_messages("PlacementUpdated")[0],
            "expert placement version 2 live on every group in 1.5 s: balancedness 0.633 -> 1");
  EXPECT_NE(
      metrics::serialize({registry_})
          .find(
              "moeserve_deployment_placement_switches_total{deployment=\"x\",namespace=\"team-a\","
              "result=\"Committed\"} 1"),
      std::string::npos);
  const nlohmann::json after = groups().begin()->second;
  EXPECT_EQ(after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"])
      << "the StatefulSet (and so its pods) is not rolled by a placement change";
}

// A group that aborts the switch (a rank could not prepare) keeps its map; status and a
// Warning event say which rank and why.
TEST_F(AutoscalingIntegrationTest, AFailedPlacementSwitchIsVisible) {
  nlohmann::json md = deployment();
  md["spec"]["model"]["routedExperts"] = 8;
  md["spec"]["model"]["moeLayers"] = 1;
  md["spec"]["parallelism"]["redundantExperts"] = 2;
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, md).ok());
  ASSERT_TRUE(wait_until([&] { return groups().size() == 1; }, 20s));
  make_groups_ready(0);
  ASSERT_TRUE(wait_until([&] { return status().contains("placement"); }, 20s));
  workers_[0]->set_placement(1, 0, 0, "", {}, 5);
  ASSERT_TRUE(measured_groups(1));
  workers_[0]->add_tokens(100, 100);
  workers_[0]->set_expert_tokens(1, {1000, 1000, 1000, 1000, 1000, 12000, 1000, 1000});
  clock_.advance(10s);
  ASSERT_TRUE(wait_until([&] { return status()["placement"]["version"] == 2; }, 20s));
  workers_[0]->set_placement(1, 0, 2, "rank 1: cannot read the new experts' pages", {}, 5);
  workers_[0]->add_tokens(100, 100);
  clock_.advance(10s);
  ASSERT_TRUE(
      wait_until([&] { return status()["placement"]["lastSwitch"]["result"] == "Aborted"; }, 20s))
      << status().dump();
  EXPECT_EQ(status()["placement"]["lastSwitch"]["message"],
            "group 0: rank 1: cannot read the new experts' pages");
  ASSERT_TRUE(wait_until([&] { return !event_messages("PlacementSwitchFailed").empty(); }, 20s));
  EXPECT_EQ(event_messages("PlacementSwitchFailed")[0],
            "expert placement version 2 aborted; the groups keep the previous placement: group 0: "
            "rank 1: cannot read the new experts' pages");
}

}  // namespace
}  // namespace moeserve::controller
