// Two moeserve-operator processes with --leader-elect against the test API server: one
// leads and reconciles; when it is killed the other takes over within 20 s and
// reconciles new work; a clean stop releases the lease.
#include <gtest/gtest.h>
#include <signal.h>

#include "common/yaml_json.h"
#include "operator/kube/client.h"
#include "operator/kube/transport.h"
#include "tests/support/apiserver.h"
#include "tests/support/test_util.h"

namespace moeserve {
namespace {

using moeserve::testing::free_port;
using moeserve::testing::Process;
using moeserve::testing::read_file;
using moeserve::testing::TempDir;
using moeserve::testing::wait_until;
using namespace std::chrono_literals;
namespace res = kube::resources;

class LeaderElectionE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(api_.start().ok());
    moeserve::testing::write_file(dir_.file("kubeconfig"), api_.kubeconfig());
    kube::Config config;
    config.server = api_.url();
    auto transport = std::make_shared<kube::HttpTransport>(config);
    ASSERT_TRUE(transport->init().ok());
    client_ = std::make_unique<kube::Client>(transport, api_.url(), "default");
    auto crds = load_yaml_documents(moeserve::testing::source_dir() +
                                    "/deploy/crds/modeldeployments.moeserve.io.yaml");
    ASSERT_TRUE(crds.ok());
    ASSERT_TRUE(client_->create(res::kCustomResourceDefinitions, "", (*crds)[0]).ok());
  }

  std::unique_ptr<Process> start_operator(const std::string& log) {
    return std::make_unique<Process>(
        std::vector<std::string>{
            moeserve::testing::bin_dir() + "/moeserve-operator", "--kubeconfig",
            dir_.file("kubeconfig"), "--leader-elect", "--leader-election-namespace", "default",
            "--lease-duration-ms", "3000", "--renew-deadline-ms", "2000", "--retry-period-ms",
            "300", "--metrics-host", "127.0.0.1", "--metrics-port", std::to_string(free_port())},
        dir_.file(log));
  }

  std::string holder() {
    auto lease = client_->get(res::kLeases, "default", "moeserve-operator");
    if (!lease.ok()) return "";
    return (*lease)["spec"].value("holderIdentity", "");
  }

  bool has_group(const std::string& md) {
    return client_->get(res::kStatefulSets, "default", md + "-g0").ok();
  }

  void apply_tiny(const std::string& name) {
    auto docs =
        load_yaml_documents(moeserve::testing::source_dir() + "/deploy/examples/tiny-cpu.yaml");
    ASSERT_TRUE(docs.ok());
    nlohmann::json md = (*docs)[0];
    md["metadata"]["name"] = name;
    ASSERT_TRUE(client_->create(res::kModelDeployments, "default", md).ok());
  }

  moeserve::testing::ApiServer api_;
  TempDir dir_;
  std::unique_ptr<kube::Client> client_;
};

bool acquired(const std::string& log) {
  return read_file(log).find("leader election: acquired lease") != std::string::npos;
}

TEST_F(LeaderElectionE2E, OneLeaderThenFailoverWithinTwentySeconds) {
  auto a = start_operator("a.log");
  auto b = start_operator("b.log");
  ASSERT_TRUE(wait_until([&] { return !holder().empty(); }, 20s)) << read_file(dir_.file("a.log"));
  std::this_thread::sleep_for(1s);
  bool a_leads = acquired(dir_.file("a.log"));
  bool b_leads = acquired(dir_.file("b.log"));
  ASSERT_NE(a_leads, b_leads) << "exactly one leader";
  std::string first_holder = holder();

  apply_tiny("first");
  ASSERT_TRUE(wait_until([&] { return has_group("first"); }, 20s));

  Process& leader = a_leads ? *a : *b;
  Process& standby = a_leads ? *b : *a;
  auto killed_at = std::chrono::steady_clock::now();
  leader.signal(SIGKILL);
  ASSERT_TRUE(wait_until([&] { return !holder().empty() && holder() != first_holder; }, 20s))
      << "the standby did not take over";
  auto takeover = std::chrono::steady_clock::now() - killed_at;
  EXPECT_LT(takeover, 20s);
  apply_tiny("second");
  EXPECT_TRUE(wait_until([&] { return has_group("second"); }, 20s)) << "the new leader reconciles";

  standby.signal(SIGTERM);
  EXPECT_EQ(standby.wait(15s), 0);
  EXPECT_EQ(holder(), "") << "a clean stop releases the lease";
}

}  // namespace
}  // namespace moeserve
