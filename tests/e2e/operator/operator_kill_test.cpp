// The real moeserve-operator process against the test API server's random faults
// (tests/support/apiserver.h FaultProfile), SIGKILLed at random times and restarted, with
// a spec change between lives. Its informers re-open stalled watches after
// --watch-read-timeout-seconds. After the run: one StatefulSet per group, status
// converged to the spec, and delete leaves no owned objects. The seed is printed;
// MOESERVE_FAULT_SEED replays it, MOESERVE_FAULT_ITERATIONS=N runs N seeds.
#include <gtest/gtest.h>
#include <signal.h>

#include <iostream>
#include <random>

#include "common/yaml_json.h"
#include "tests/operator/controller/test_cluster.h"
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

constexpr const char* kNs = "killed";

std::unique_ptr<Process> start_operator(const TempDir& dir, const std::string& log) {
  return std::make_unique<Process>(
      std::vector<std::string>{moeserve::testing::bin_dir() + "/moeserve-operator", "--kubeconfig",
                               dir.file("kubeconfig"), "--namespace", kNs,
                               "--watch-read-timeout-seconds", "2", "--metrics-host", "127.0.0.1",
                               "--metrics-port", std::to_string(free_port())},
      dir.file(log));
}

TEST(OperatorKill, ConvergesAfterRandomSigkillsUnderApiFaultsAndDeletesEverything) {
  const uint64_t base = moeserve::testing::fault_seed(7);
  for (int iteration = 0; iteration < moeserve::testing::fault_iterations(); ++iteration) {
    const uint64_t seed = base + static_cast<uint64_t>(iteration);
    std::cout << "operator kill seed " << seed << " (replay: MOESERVE_FAULT_SEED=" << seed << ")"
              << std::endl;
    controller::TestCluster cluster;
    ASSERT_NO_FATAL_FAILURE(cluster.start(kNs));
    TempDir dir;
    moeserve::testing::write_file(dir.file("kubeconfig"), cluster.api.kubeconfig(kNs));
    moeserve::testing::FaultProfile faults;
    faults.seed = seed;
    faults.conflict = 0.1;
    faults.gone = 0.1;
    faults.throttle = 0.03;
    faults.server_error = 0.05;
    faults.lost_response = 0.05;
    faults.watch_drop = 0.1;
    faults.watch_stall = 0.2;
    faults.watch_fault_after_ms = 1000;
    faults.stall_ms = 30000;  // far beyond --watch-read-timeout-seconds
    faults.max_latency_ms = 10;
    ASSERT_TRUE(cluster.api.set_fault_profile(faults).ok());

    const nlohmann::json md = controller::TestCluster::tiny_deployment(kNs, "k", 2);
    ASSERT_TRUE(controller::TestCluster::write_until_done(
        [&] { return cluster.client->create(res::kModelDeployments, kNs, md).status(); }));

    std::mt19937_64 rng(seed);
    for (int life = 0; life < 3; ++life) {
      auto op = start_operator(dir, "life" + std::to_string(life) + ".log");
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::uniform_int_distribution<int>(300, 1500)(rng)));
      op->signal(SIGKILL);
      op->wait(10s);
      const int replicas = std::uniform_int_distribution<int>(1, 3)(rng);
      ASSERT_TRUE(controller::TestCluster::write_until_done([&] {
        return cluster.client
            ->patch(res::kModelDeployments, kNs, "k", kube::PatchType::kMerge,
                    {{"spec", {{"replicas", replicas}}}})
            .status();
      }));
    }

    auto op = start_operator(dir, "last.log");
    const bool converged = wait_until([&] { return cluster.converged(kNs, "k"); }, 60s);
    EXPECT_TRUE(converged) << "seed " << seed << "\n" << read_file(dir.file("last.log"));
    ASSERT_TRUE(controller::TestCluster::write_until_done([&] {
      Status s = cluster.client->remove(res::kModelDeployments, kNs, "k").status();
      return s.code() == StatusCode::kNotFound ? ok_status() : s;
    }));
    ASSERT_TRUE(cluster.api.set_fault_profile({}).ok());
    auto owned = [&] {
      kube::ListOptions options;
      options.label_selector = std::string(deployment::kLabelDeployment) + "=k";
      size_t n = 0;
      for (const auto& ref : {res::kStatefulSets, res::kServices, res::kConfigMaps,
                              res::kPodDisruptionBudgets, res::kNetworkPolicies}) {
        auto list = cluster.client->list(ref, kNs, options);
        n += list.ok() ? list->items.size() : 1;
      }
      return n;
    };
    EXPECT_TRUE(wait_until([&] { return owned() == 0; }, 20s)) << "seed " << seed;
    auto injected = cluster.api.injected_faults();
    std::cout << "injected:";
    for (const auto& [kind, count] : injected) std::cout << " " << kind << "=" << count;
    std::cout << std::endl;
    EXPECT_GT(injected["watch_stall"], 0) << "the run met no stalled watch";
    op->signal(SIGTERM);
    EXPECT_EQ(op->wait(20s), 0) << read_file(dir.file("last.log"));
  }
}

}  // namespace
}  // namespace moeserve
