// The controller against the test API server's random faults (409 on updates, 410 on
// lists and watches, 429 with Retry-After, 500, writes whose answer is lost, dropped and
// stalled watches, latency), killed at random points of reconcile and restarted: each
// "life" of the operator gets a client whose connection dies after a random number of
// writes (the writes after it never happen, as when the process is SIGKILLed), then a
// fresh controller takes over. Between lives the spec changes. After the run:
// - no duplicate owned objects: no two live objects with the same owner, kind,
//   component and group;
// - status converges to the spec: the groups the spec asks for, Ready=True,
//   observedGeneration = generation, readyReplicas = spec.replicas;
// - delete leaves no objects labelled with the deployment, and none come back.
// Seeds are printed; MOESERVE_FAULT_SEED replays one, MOESERVE_FAULT_ITERATIONS=N runs N.
#include <gtest/gtest.h>

#include <atomic>
#include <iostream>
#include <limits>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <tuple>

#include "operator/controller/controller.h"
#include "operator/controller/events.h"
#include "operator/controller/reconciler.h"
#include "operator/deployment/names.h"
#include "operator/kube/client.h"
#include "operator/kube/transport.h"
#include "tests/operator/controller/test_cluster.h"
#include "tests/support/apiserver.h"
#include "tests/support/test_util.h"

namespace moeserve::controller {
namespace {

using moeserve::testing::wait_until;
using namespace std::chrono_literals;
namespace res = kube::resources;

constexpr const char* kNs = "chaos";

// The real transport until `writes` writes have gone through; from the next write on,
// every request fails as if the process were gone.
class DyingTransport : public kube::Transport {
 public:
  DyingTransport(std::shared_ptr<kube::Transport> inner, int64_t writes)
      : inner_(std::move(inner)), writes_left_(writes) {}

  StatusOr<http::ClientResponse> send(const http::ClientRequest& request) override {
    if (request.method != "GET" && writes_left_.fetch_sub(1) <= 0) dead_ = true;
    if (dead_) return unavailable_error("operator killed");
    return inner_->send(request);
  }
  StatusOr<std::unique_ptr<http::ResponseStream>> open(
      const http::ClientRequest& request) override {
    if (dead_) return unavailable_error("operator killed");
    return inner_->open(request);
  }
  bool dead() const { return dead_.load(); }

 private:
  std::shared_ptr<kube::Transport> inner_;
  std::atomic<int64_t> writes_left_;
  std::atomic<bool> dead_{false};
};

// One operator process: its own client, informers, queue and reconciler.
struct OperatorLife {
  std::shared_ptr<DyingTransport> transport;
  std::unique_ptr<kube::Client> client;
  std::unique_ptr<Controller> controller;
  std::unique_ptr<EventRecorder> events;
  std::unique_ptr<ModelDeploymentReconciler> reconciler;

  OperatorLife(const std::string& url, int64_t writes) {
    kube::Config config;
    config.server = url;
    auto http = std::make_shared<kube::HttpTransport>(config);
    EXPECT_TRUE(http->init().ok());
    transport = std::make_shared<DyingTransport>(http, writes);
    client = std::make_unique<kube::Client>(transport, url, kNs);
    controller = std::make_unique<Controller>(
        *client, res::kModelDeployments,
        std::vector<kube::ResourceRef>{res::kStatefulSets, res::kServices, res::kConfigMaps,
                                       res::kPodDisruptionBudgets, res::kNetworkPolicies},
        TestCluster::fast_options(), std::make_shared<prometheus::Registry>());
    events = std::make_unique<EventRecorder>(*client, "moeserve-operator");
    reconciler = std::make_unique<ModelDeploymentReconciler>(*client, *controller, events.get());
    controller->set_reconciler(reconciler.get());
    controller->start();
  }
  ~OperatorLife() { controller->stop(); }
};

moeserve::testing::FaultProfile chaos(uint64_t seed) {
  moeserve::testing::FaultProfile p;
  p.seed = seed;
  p.conflict = 0.1;
  p.gone = 0.1;
  p.throttle = 0.03;
  p.retry_after_s = 1;
  p.server_error = 0.08;
  p.lost_response = 0.08;
  p.watch_drop = 0.2;
  p.watch_stall = 0.1;
  p.watch_fault_after_ms = 1500;
  p.stall_ms = 4000;  // beyond the informers' 3 s read timeout
  p.max_latency_ms = 15;
  return p;
}

nlohmann::json tiny(const std::string& name, int replicas) {
  return TestCluster::tiny_deployment(kNs, name, replicas);
}

bool write_until_done(const std::function<Status()>& write) {
  return TestCluster::write_until_done(write);
}

class FaultInjectionTest : public ::testing::Test {
 protected:
  // Every object in the namespace labelled with deployment `name`, terminating ones too;
  // nullopt when a list meets an injected fault.
  std::optional<std::vector<nlohmann::json>> labelled(const std::string& name) {
    std::vector<nlohmann::json> out;
    kube::ListOptions options;
    options.label_selector = std::string(deployment::kLabelDeployment) + "=" + name;
    for (const auto& ref : {res::kStatefulSets, res::kServices, res::kConfigMaps,
                            res::kPodDisruptionBudgets, res::kNetworkPolicies}) {
      auto list = cluster_->client->list(ref, kNs, options);
      if (!list.ok()) return std::nullopt;
      for (auto& item : list->items) {
        item["kind"] = ref.resource;
        out.push_back(std::move(item));
      }
    }
    return out;
  }

  // Every object labelled with deployment `name`, read through the faults.
  std::vector<nlohmann::json> labelled_through_faults(const std::string& name) {
    std::optional<std::vector<nlohmann::json>> objects;
    EXPECT_TRUE(wait_until([&] { return (objects = labelled(name)).has_value(); }, 20s));
    return objects.value_or(std::vector<nlohmann::json>{});
  }

  bool none_labelled(const std::string& name) {
    auto objects = labelled(name);
    return objects && objects->empty();
  }

  // "owner kind component group" of each live owned object seen twice.
  std::vector<std::string> duplicates(const std::string& name) {
    std::set<std::tuple<std::string, std::string, std::string, std::string>> seen;
    std::vector<std::string> twice;
    for (const auto& object : labelled_through_faults(name)) {
      const auto& meta = object["metadata"];
      if (meta.contains("deletionTimestamp")) continue;
      std::string owner;
      for (const auto& ref : meta.value("ownerReferences", nlohmann::json::array())) {
        if (ref.value("controller", false)) owner = ref.value("uid", "");
      }
      const auto labels = meta.value("labels", nlohmann::json::object());
      auto key = std::make_tuple(owner, object.value("kind", ""),
                                 labels.value(std::string(deployment::kLabelComponent), ""),
                                 labels.value(std::string(deployment::kLabelGroup), ""));
      if (!seen.insert(key).second) {
        twice.push_back(std::get<0>(key) + " " + std::get<1>(key) + " " + std::get<2>(key) + " " +
                        std::get<3>(key) + " (" + meta.value("name", "") + ")");
      }
    }
    return twice;
  }

  bool converged(const std::string& name) { return cluster_->converged(kNs, name); }

  void run_once(uint64_t seed) {
    std::cout << "fault injection seed " << seed << " (replay: MOESERVE_FAULT_SEED=" << seed << ")"
              << std::endl;
    ASSERT_NO_FATAL_FAILURE(cluster_->start(kNs));
    ASSERT_TRUE(cluster_->api.set_fault_profile(chaos(seed)).ok());
    std::mt19937_64 rng(seed);
    auto pick = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    const std::vector<std::string> names = {"a", "b"};
    for (const std::string& name : names) {
      ASSERT_TRUE(write_until_done([&] {
        return cluster_->client->create(res::kModelDeployments, kNs, tiny(name, pick(1, 2)))
            .status();
      }));
    }

    for (int life = 0; life < 4; ++life) {
      const int writes = pick(1, 15);
      {
        OperatorLife op(cluster_->api.url(), writes);
        wait_until([&] { return op.transport->dead(); }, 3s);
      }
      const std::string& name = names[static_cast<size_t>(pick(0, 1))];
      const int replicas = pick(1, 3);
      ASSERT_TRUE(write_until_done([&] {
        return cluster_->client
            ->patch(res::kModelDeployments, kNs, name, kube::PatchType::kMerge,
                    {{"spec", {{"replicas", replicas}}}})
            .status();
      }));
      for (const std::string& n : names) cluster_->mark_groups_ready(kNs, n);
    }

    {
      OperatorLife op(cluster_->api.url(), std::numeric_limits<int64_t>::max());
      for (const std::string& name : names) {
        EXPECT_TRUE(wait_until([&] { return converged(name); }, 60s))
            << name << " did not converge (seed " << seed << ")";
        EXPECT_TRUE(duplicates(name).empty())
            << "seed " << seed << ": " << ::testing::PrintToString(duplicates(name));
      }
      for (const std::string& name : names) {
        ASSERT_TRUE(write_until_done([&] {
          Status s = cluster_->client->remove(res::kModelDeployments, kNs, name).status();
          return s.code() == StatusCode::kNotFound ? ok_status() : s;
        }));
      }
      for (const std::string& name : names) {
        EXPECT_TRUE(wait_until([&] { return none_labelled(name); }, 20s))
            << name << ": objects left after delete (seed " << seed << ")";
      }
      std::this_thread::sleep_for(1s);  // a reconcile still in flight must not recreate any
      for (const std::string& name : names) {
        EXPECT_EQ(labelled_through_faults(name), std::vector<nlohmann::json>{})
            << name << ": objects came back (seed " << seed << ")";
      }
    }
    auto injected = cluster_->api.injected_faults();
    std::cout << "injected:";
    for (const auto& [kind, count] : injected) std::cout << " " << kind << "=" << count;
    std::cout << std::endl;
    EXPECT_GT(injected["watch_drop"] + injected["watch_stall"], 0) << "the run met no watch faults";
    cluster_->api.shutdown();
  }

  std::unique_ptr<TestCluster> cluster_;
};

TEST_F(FaultInjectionTest, ConvergesWithoutDuplicatesOrOrphansThroughFaultsAndKills) {
  const uint64_t base = moeserve::testing::fault_seed(16);
  for (int i = 0; i < moeserve::testing::fault_iterations(); ++i) {
    cluster_ = std::make_unique<TestCluster>();
    ASSERT_NO_FATAL_FAILURE(run_once(base + static_cast<uint64_t>(i)));
  }
}

}  // namespace
}  // namespace moeserve::controller
