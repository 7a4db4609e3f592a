// A vLLM-engine deployment through the real controller against the strict test API
// server, exactly as for moeserve's engine: it is reconciled into groups whose pods run
// `vllm serve`, the operator scrapes each group leader's /metrics on the API port
// (served by moeserve-fake-engine processes in vLLM's exposition format, standing in
// for vLLM, which needs GPUs), scales on the measured tokens/s, reports tokens/s and
// cost in status and says why in an event. The same for SGLang's format.
#include <gtest/gtest.h>

#include <signal.h>

#include <filesystem>

#include "common/http_client.h"

#include "common/yaml_json.h"
#include "operator/autoscaler/autoscaler.h"
#include "operator/autoscaler/deployment_gauges.h"
#include "operator/autoscaler/scrape_source.h"
#include "operator/controller/controller.h"
#include "operator/controller/events.h"
#include "operator/controller/reconciler.h"
#include "operator/deployment/names.h"
#include "operator/kube/client.h"
#include "tests/operator/controller/operator_loop.h"
#include "tests/operator/controller/test_cluster.h"
#include "tests/support/apiserver.h"
#include "tests/support/test_util.h"

namespace moeserve::controller {
namespace {

using moeserve::testing::wait_until;
using namespace std::chrono_literals;
namespace res = kube::resources;

constexpr const char* kNs = "team-e";

// One fake engine leader process on 127.0.0.<index+1>:port, its values in a state file.
class FakeEngine {
 public:
  FakeEngine(const std::string& engine, int index, uint16_t port,
             const moeserve::testing::TempDir& dir)
      : host_("127.0.0." + std::to_string(index + 1)),
        port_(port),
        state_(dir.file("state-" + std::to_string(index) + ".json")),
        process_({moeserve::testing::bin_dir() + "/moeserve-fake-engine", "--engine", engine,
                  "--host", host_, "--port", std::to_string(port), "--served-model-name",
                  "deepseek-v3", "--state", state_, "--data-parallel-size", "16"},
                 dir.file("engine-" + std::to_string(index) + ".log")) {}
  ~FakeEngine() {
    process_.signal(SIGTERM);
    process_.wait(5s);
  }
  bool healthy() const {
    http::ClientRequest request;
    request.url = "http://" + host_ + ":" + std::to_string(port_) + "/health";
    request.timeout_ms = 1000;
    auto response = http::Client().send(request);
    return response.ok() && response->status == 200;
  }
  void add_tokens(double prompt, double generation) {
    prompt_ += prompt;
    generation_ += generation;
    moeserve::testing::write_file(state_ + ".tmp",
                                  nlohmann::json{{"prompt_tokens", prompt_},
                                                 {"generation_tokens", generation_},
                                                 {"running", 3},
                                                 {"waiting", 0},
                                                 {"ttft_seconds", {0.2, 0.3}}}
                                      .dump());
    std::filesystem::rename(state_ + ".tmp", state_);
  }

 private:
  std::string host_;
  uint16_t port_;
  std::string state_;
  double prompt_ = 0;
  double generation_ = 0;
  moeserve::testing::Process process_;
};

class EngineIntegrationTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(cluster_.start(kNs));
    port_ = moeserve::testing::free_port();
    for (int i = 0; i < 3; ++i) {
      engines_.push_back(std::make_unique<FakeEngine>(GetParam(), i, port_, dir_));
    }
    for (const auto& engine : engines_) {
      ASSERT_TRUE(wait_until([&] { return engine->healthy(); }, 20s));
    }
    loop_.start(*client_, &clock_, registry_);
  }

  void TearDown() override {
    loop_.stop();
    cluster_.api.shutdown();
  }

  // The repository's DeepSeek-V3 example for this engine, one group to start, scaled on
  // throughput only, the API (and so /metrics) on the fake engines' port.
  nlohmann::json deployment() {
    auto docs = load_yaml_documents(moeserve::testing::source_dir() +
                                    "/deploy/examples/deepseek-v3-" + GetParam() + "-h200.yaml");
    EXPECT_TRUE(docs.ok());
    nlohmann::json md = (*docs)[0];
    md["metadata"] = {{"name", "x"}, {"namespace", kNs}};
    md["spec"]["replicas"] = 1;
    md["spec"]["worker"]["port"] = port_;
    md["spec"]["autoscaling"] = {{"enabled", true},
                                 {"minReplicas", 1},
                                 {"maxReplicas", 3},
                                 {"targetTokensPerSecondPerGroup", 100},
                                 {"scaleDownStabilizationSeconds", 60}};
    md["spec"].erase("auth");
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

  // Plays the StatefulSet controller and kubelet: every group ready, its leader pod at
  // 127.0.0.<group+1>, where that group's fake engine listens.
  void make_groups_ready() {
    for (auto& [name, sts] : groups()) {
      nlohmann::json updated = sts;
      updated["status"] = {{"replicas", sts["spec"]["replicas"]},
                           {"readyReplicas", sts["spec"]["replicas"]},
                           {"observedGeneration", sts["metadata"]["generation"]}};
      ASSERT_TRUE(client_->update_status(res::kStatefulSets, kNs, updated).ok());
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
      (*created)["status"] = {{"podIP", "127.0.0." + std::to_string(group + 1)}};
      ASSERT_TRUE(client_->update_status(res::kPods, kNs, *created).ok());
    }
  }

  nlohmann::json status() {
    auto md = client_->get(res::kModelDeployments, kNs, "x");
    return md.ok() ? (*md).value("status", nlohmann::json::object()) : nlohmann::json::object();
  }

  std::vector<std::string> scaled_messages() {
    std::vector<std::string> out;
    auto events = client_->list(res::kEvents, kNs);
    if (!events.ok()) return out;
    for (const auto& e : events->items) {
      if (e.value("reason", "") == "Scaled") out.push_back(e.value("message", ""));
    }
    return out;
  }

  bool measured_groups(int32_t n) {
    return wait_until(
        [&] {
          auto snapshot = scaler_->snapshot(std::string(kNs) + "/x");
          return snapshot && snapshot->measurement.groups_measured == n;
        },
        20s);
  }

  TestCluster cluster_;
  moeserve::testing::TempDir dir_;
  uint16_t port_ = 0;
  std::vector<std::unique_ptr<FakeEngine>> engines_;
  FakeClock clock_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<kube::Client>& client_ = cluster_.client;
  OperatorLoop loop_;
  std::unique_ptr<autoscaler::Autoscaler>& scaler_ = loop_.scaler;
};

TEST_P(EngineIntegrationTest, ReconcilesScrapesScalesAndReportsCostAsForMoeserve) {
  const std::string engine = GetParam();
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, deployment()).ok());
  ASSERT_TRUE(wait_until([&] { return groups().size() == 1; }, 20s));

  // The group is the engine's: two pods of 8 GPUs running its command line.
  const nlohmann::json sts = groups().begin()->second;
  EXPECT_EQ(sts["spec"]["replicas"], 2);
  const nlohmann::json& pod = sts["spec"]["template"];
  EXPECT_EQ(pod["metadata"]["labels"]["moeserve.io/engine"], engine);
  const nlohmann::json& c = pod["spec"]["containers"][0];
  EXPECT_EQ(c["command"].back(), engine == "vllm" ? "vllm" : "python3");
  EXPECT_EQ(c["args"][0], engine == "vllm" ? "serve" : "-m");

  make_groups_ready();
  ASSERT_TRUE(measured_groups(1));
  // 1800 tokens in 10 s on one group: 180 tokens/s against a target of 100 per group.
  engines_[0]->add_tokens(1200, 600);
  clock_.advance(10s);
  ASSERT_TRUE(wait_until([&] { return groups().size() == 2; }, 20s)) << status().dump();
  ASSERT_TRUE(wait_until([&] { return !scaled_messages().empty(); }, 20s));
  EXPECT_EQ(scaled_messages()[0], "tokens/s per group 180 > target 100: 1 -> 2 groups");
  ASSERT_TRUE(wait_until([&] { return status().value("desiredReplicas", 0) == 2; }, 20s));
  EXPECT_EQ(status()["tokensPerSecond"], 180);
  // 2 groups x 16 GPUs x $3/h at 180 tokens/s = $148.1 per Mtok; status keeps 3 digits.
  // (Cost follows the groups that exist, so it settles once the second one does.)
  EXPECT_TRUE(wait_until([&] { return status().value("costPerMillionTokens", 0.0) == 148; }, 20s))
      << status().dump();

  // The second group's leader is scraped too; traffic drops to 15 tokens/s per group,
  // and past the stabilization window the newest group goes.
  make_groups_ready();
  ASSERT_TRUE(measured_groups(2));
  engines_[0]->add_tokens(200, 100);
  clock_.advance(10s);
  engines_[0]->add_tokens(200, 100);
  clock_.advance(61s);
  ASSERT_TRUE(wait_until([&] { return groups().size() == 1; }, 20s)) << status().dump();
  ASSERT_TRUE(wait_until([&] { return scaled_messages().size() == 2; }, 20s));
  EXPECT_NE(scaled_messages()[1].find("2 -> 1 group"), std::string::npos) << scaled_messages()[1];
}

INSTANTIATE_TEST_SUITE_P(Engines, EngineIntegrationTest, ::testing::Values("vllm", "sglang"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace moeserve::controller
