// The controller and reconciler against the strict test API server: apply -> owned
// objects with owner references -> groups marked ready -> Ready=True; rollout group by
// group; scaling; injected 409/500/410/dropped watches; invalid specs; cascade delete.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>

#include "common/yaml_json.h"
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

constexpr const char* kNs = "team-a";

class OperatorIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(cluster_.start(kNs));
    controller_ = std::make_unique<Controller>(
        *client_, res::kModelDeployments,
        std::vector<kube::ResourceRef>{res::kStatefulSets, res::kServices, res::kConfigMaps,
                                       res::kPodDisruptionBudgets, res::kNetworkPolicies},
        TestCluster::fast_options(), std::make_shared<prometheus::Registry>());
    events_ = std::make_unique<EventRecorder>(*client_, "moeserve-operator");
    reconciler_ =
        std::make_unique<ModelDeploymentReconciler>(*client_, *controller_, events_.get());
    controller_->set_reconciler(reconciler_.get());
    controller_->start();
  }

  void TearDown() override {
    if (controller_) controller_->stop();
    cluster_.api.shutdown();
  }

  nlohmann::json tiny(const std::string& name, int replicas) {
    return TestCluster::tiny_deployment(kNs, name, replicas);
  }

  std::map<std::string, nlohmann::json> groups(const std::string& name) {
    return cluster_.groups(kNs, name);
  }

  void mark_groups_ready(const std::string& name) { cluster_.mark_groups_ready(kNs, name); }

  std::string condition(const std::string& name, const std::string& type,
                        std::string* reason = nullptr, std::string* message = nullptr) {
    return cluster_.condition(kNs, name, type, reason, message);
  }

  // Names of the NetworkPolicies of deployment `name`.
  std::set<std::string> network_policies(const std::string& name) {
    std::set<std::string> out;
    kube::ListOptions options;
    options.label_selector = std::string(deployment::kLabelDeployment) + "=" + name;
    auto list = client_->list(res::kNetworkPolicies, kNs, options);
    if (!list.ok()) return out;
    for (auto& item : list->items) out.insert(item["metadata"]["name"].get<std::string>());
    return out;
  }

  std::set<std::string> group_names(const std::string& name) {
    std::set<std::string> out;
    for (const auto& [group, _] : groups(name)) out.insert(group);
    return out;
  }

  std::set<std::string> event_reasons() {
    std::set<std::string> reasons;
    auto events = client_->list(res::kEvents, kNs);
    if (!events.ok()) return reasons;
    for (const auto& e : events->items) reasons.insert(e.value("reason", ""));
    return reasons;
  }

  TestCluster cluster_;
  moeserve::testing::ApiServer& api_ = cluster_.api;
  std::unique_ptr<kube::Client>& client_ = cluster_.client;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<EventRecorder> events_;
  std::unique_ptr<ModelDeploymentReconciler> reconciler_;
};

TEST_F(OperatorIntegrationTest, ApplyCreatesOwnedObjectsAndBecomesReady) {
  auto created = client_->create(res::kModelDeployments, kNs, tiny("x", 2));
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  std::string uid = (*created)["metadata"]["uid"];
  ASSERT_TRUE(wait_until([&] { return groups("x").size() == 2; }, 20s));
  for (const auto& [name, sts] : groups("x")) {
    const auto& owner = sts["metadata"]["ownerReferences"][0];
    EXPECT_EQ(owner["uid"], uid);
    EXPECT_EQ(owner["controller"], true);
    EXPECT_EQ(owner["kind"], "ModelDeployment");
    EXPECT_EQ(sts["spec"]["podManagementPolicy"], "Parallel");
  }
  EXPECT_TRUE(client_->get(res::kServices, kNs, "x").ok());
  EXPECT_TRUE(client_->get(res::kServices, kNs, "x-ranks").ok());
  EXPECT_TRUE(client_->get(res::kPodDisruptionBudgets, kNs, "x").ok());
  EXPECT_EQ(condition("x", "Ready"), "False");
  mark_groups_ready("x");
  ASSERT_TRUE(wait_until([&] { return condition("x", "Ready") == "True"; }, 20s));
  auto md = client_->get(res::kModelDeployments, kNs, "x");
  EXPECT_EQ((*md)["status"]["readyReplicas"], 2);
  EXPECT_EQ((*md)["status"]["observedGeneration"], (*md)["metadata"]["generation"]);
  EXPECT_FALSE((*md)["status"].value("selector", "").empty());
  auto events = client_->list(res::kEvents, kNs);
  ASSERT_TRUE(events.ok());
  std::set<std::string> reasons;
  for (const auto& e : events->items) reasons.insert(e.value("reason", ""));
  EXPECT_TRUE(reasons.count("GroupCreated"));
}

TEST_F(OperatorIntegrationTest, TemplateChangeRollsOutGroupByGroup) {
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, tiny("x", 2)).ok());
  ASSERT_TRUE(wait_until([&] { return groups("x").size() == 2; }, 20s));
  mark_groups_ready("x");
  ASSERT_TRUE(wait_until([&] { return condition("x", "Ready") == "True"; }, 20s));
  std::set<std::string> original;
  for (const auto& [name, _] : groups("x")) original.insert(name);

  ASSERT_TRUE(client_
                  ->patch(res::kModelDeployments, kNs, "x", kube::PatchType::kMerge,
                          {{"spec", {{"worker", {{"image", "moeserve/worker:v2"}}}}}})
                  .ok());
  size_t max_groups = 0;
  bool converged = wait_until(
      [&] {
        auto now = groups("x");
        max_groups = std::max(max_groups, now.size());
        bool all_new = true;
        for (const auto& [name, sts] : now) {
          if (original.count(name)) all_new = false;
        }
        if (all_new && now.size() == 2) return true;
        mark_groups_ready("x");
        return false;
      },
      40s);
  ASSERT_TRUE(converged);
  EXPECT_LE(max_groups, 3u) << "at most one extra group during a rollout";
  for (const auto& [name, sts] : groups("x")) {
    EXPECT_EQ(sts["spec"]["template"]["spec"]["containers"][0]["image"], "moeserve/worker:v2");
  }
  mark_groups_ready("x");
  EXPECT_TRUE(wait_until([&] { return condition("x", "Ready") == "True"; }, 20s));
}

TEST_F(OperatorIntegrationTest, ScalingAddsAndRemovesWholeGroupsNewestFirst) {
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, tiny("x", 1)).ok());
  ASSERT_TRUE(wait_until([&] { return groups("x").size() == 1; }, 20s));
  ASSERT_TRUE(client_
                  ->patch(res::kModelDeployments, kNs, "x", kube::PatchType::kMerge,
                          {{"spec", {{"replicas", 3}}}})
                  .ok());
  ASSERT_TRUE(wait_until([&] { return groups("x").size() == 3; }, 20s));
  std::vector<std::string> names;
  for (const auto& [name, _] : groups("x")) names.push_back(name);
  mark_groups_ready("x");
  ASSERT_TRUE(client_
                  ->patch(res::kModelDeployments, kNs, "x", kube::PatchType::kMerge,
                          {{"spec", {{"replicas", 1}}}})
                  .ok());
  ASSERT_TRUE(wait_until([&] { return groups("x").size() == 1; }, 20s));
  EXPECT_EQ(groups("x").begin()->first, names.front()) << "the oldest group stays";
}

TEST_F(OperatorIntegrationTest, ConvergesThroughFaultsWithoutDuplicates) {
  api_.fail_next(3, 500, "POST", "statefulsets");
  api_.fail_next(2, 409, "PUT", "status");
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, tiny("x", 2)).ok());
  ASSERT_TRUE(wait_until([&] { return groups("x").size() == 2; }, 30s));
  api_.drop_watches();
  api_.compact_history();
  api_.fail_next(2, 500, "GET", "watch");
  // The test's own status writes may meet the injected faults too: it keeps playing the
  // StatefulSet controller until the deployment is ready.
  ASSERT_TRUE(wait_until(
      [&] {
        mark_groups_ready("x");
        return condition("x", "Ready") == "True";
      },
      30s));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(groups("x").size(), 2u);
  auto services = client_->list(res::kServices, kNs);
  ASSERT_TRUE(services.ok());
  EXPECT_EQ(services->items.size(), 2u);
}

TEST_F(OperatorIntegrationTest, InvalidSpecIsReportedNotRendered) {
  nlohmann::json md = tiny("bad", 1);
  md["spec"]["parallelism"]["expertParallel"] = 3;
  md["spec"]["parallelism"]["ranksPerPod"] = 2;
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, md).ok());
  std::string reason, message;
  ASSERT_TRUE(
      wait_until([&] { return condition("bad", "Ready", &reason, &message) == "False"; }, 20s));
  EXPECT_EQ(reason, "InvalidSpec");
  EXPECT_NE(message.find("spec.parallelism"), std::string::npos) << message;
  EXPECT_TRUE(groups("bad").empty());
}

TEST_F(OperatorIntegrationTest, DeleteCascadesToOwnedObjects) {
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, tiny("x", 2)).ok());
  ASSERT_TRUE(wait_until([&] { return groups("x").size() == 2; }, 20s));
  ASSERT_TRUE(client_->remove(res::kModelDeployments, kNs, "x").ok());
  ASSERT_TRUE(wait_until([&] { return groups("x").empty(); }, 20s));
  EXPECT_FALSE(client_->get(res::kServices, kNs, "x").ok());
  EXPECT_FALSE(client_->get(res::kPodDisruptionBudgets, kNs, "x").ok());
}

TEST_F(OperatorIntegrationTest, NetworkPoliciesAreOwnedFollowTheGroupsAndTheSwitch) {
  auto created = client_->create(res::kModelDeployments, kNs, tiny("x", 2));
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  auto expected = [&] {
    std::set<std::string> names = group_names("x");
    names.insert("x");
    return names;
  };
  ASSERT_TRUE(wait_until([&] { return groups("x").size() == 2; }, 20s));
  ASSERT_TRUE(wait_until([&] { return network_policies("x") == expected(); }, 20s));
  auto policy = client_->get(res::kNetworkPolicies, kNs, "x");
  ASSERT_TRUE(policy.ok());
  EXPECT_EQ((*policy)["metadata"]["ownerReferences"][0]["uid"], (*created)["metadata"]["uid"]);

  // Scaling in deletes the removed group's policy once its StatefulSet is gone.
  ASSERT_TRUE(client_
                  ->patch(res::kModelDeployments, kNs, "x", kube::PatchType::kMerge,
                          {{"spec", {{"replicas", 1}}}})
                  .ok());
  ASSERT_TRUE(wait_until([&] { return groups("x").size() == 1; }, 20s));
  ASSERT_TRUE(wait_until([&] { return network_policies("x") == expected(); }, 20s))
      << network_policies("x").size();

  ASSERT_TRUE(client_
                  ->patch(res::kModelDeployments, kNs, "x", kube::PatchType::kMerge,
                          {{"spec", {{"networkPolicy", {{"enabled", false}}}}}})
                  .ok());
  ASSERT_TRUE(wait_until([&] { return network_policies("x").empty(); }, 20s));

  ASSERT_TRUE(client_
                  ->patch(res::kModelDeployments, kNs, "x", kube::PatchType::kMerge,
                          {{"spec", {{"networkPolicy", {{"enabled", true}}}}}})
                  .ok());
  ASSERT_TRUE(wait_until([&] { return network_policies("x") == expected(); }, 20s));
  ASSERT_TRUE(client_->remove(res::kModelDeployments, kNs, "x").ok());
  ASSERT_TRUE(wait_until([&] { return network_policies("x").empty(); }, 20s));
}

TEST_F(OperatorIntegrationTest, AuthSecretIsMountedAndRotatingItRollsNothing) {
  nlohmann::json secret = {{"apiVersion", "v1"},
                           {"kind", "Secret"},
                           {"metadata", {{"name", "llm-keys"}, {"namespace", kNs}}},
                           {"stringData", {{"api-keys", "sk-old\n"}}}};
  ASSERT_TRUE(client_->create(kube::ResourceRef{"", "v1", "secrets", true}, kNs, secret).ok());
  nlohmann::json md = tiny("x", 1);
  md["spec"]["auth"] = {{"secretName", "llm-keys"}};
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, md).ok());
  ASSERT_TRUE(wait_until([&] { return groups("x").size() == 1; }, 20s));
  const nlohmann::json sts = groups("x").begin()->second;
  const nlohmann::json& pod = sts["spec"]["template"]["spec"];
  bool mounted = false;
  for (const auto& volume : pod["volumes"]) {
    mounted = mounted ||
              (volume.contains("secret") && volume["secret"].value("secretName", "") == "llm-keys");
  }
  EXPECT_TRUE(mounted);
  const nlohmann::json args = pod["containers"][0]["args"];
  EXPECT_NE(std::find(args.begin(), args.end(), "/etc/moeserve/auth/api-keys"), args.end());
  EXPECT_EQ(pod["automountServiceAccountToken"], false);

  secret["stringData"]["api-keys"] = "sk-new\n";
  auto current = client_->get(kube::ResourceRef{"", "v1", "secrets", true}, kNs, "llm-keys");
  ASSERT_TRUE(current.ok());
  secret["metadata"]["resourceVersion"] = (*current)["metadata"]["resourceVersion"];
  ASSERT_TRUE(client_->update(kube::ResourceRef{"", "v1", "secrets", true}, kNs, secret).ok());
  mark_groups_ready("x");
  ASSERT_TRUE(wait_until([&] { return condition("x", "Ready") == "True"; }, 20s));
  std::this_thread::sleep_for(300ms);
  const auto after = groups("x");
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after.begin()->first, sts["metadata"]["name"]);
  EXPECT_EQ(after.begin()->second["metadata"]["uid"], sts["metadata"]["uid"]);
  EXPECT_EQ(after.begin()->second["metadata"]["annotations"]["moeserve.io/template-hash"],
            sts["metadata"]["annotations"]["moeserve.io/template-hash"]);
}

TEST_F(OperatorIntegrationTest, ScaleWhileTheAutoscalerOwnsTheCountIsAnEventAndACondition) {
  nlohmann::json md = tiny("x", 1);
  md["spec"]["autoscaling"] = {{"enabled", true},
                               {"minReplicas", 1},
                               {"maxReplicas", 2},
                               {"targetTokensPerSecondPerGroup", 50}};
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, md).ok());
  std::string reason;
  ASSERT_TRUE(
      wait_until([&] { return condition("x", "AutoscalerDecides", &reason) == "True"; }, 20s));
  EXPECT_EQ(reason, "Autoscaling");
  EXPECT_FALSE(event_reasons().count("ScaleIgnored"));

  // What `kubectl scale --replicas 5` writes through the scale subresource.
  ASSERT_TRUE(client_
                  ->patch(res::kModelDeployments, kNs, "x", kube::PatchType::kMerge,
                          {{"spec", {{"replicas", 5}}}})
                  .ok());
  std::string message;
  ASSERT_TRUE(wait_until(
      [&] {
        condition("x", "AutoscalerDecides", &reason, &message);
        return reason == "SpecReplicasIgnored";
      },
      20s));
  EXPECT_NE(message.find("spec.replicas is 5"), std::string::npos) << message;
  ASSERT_TRUE(wait_until([&] { return event_reasons().count("ScaleIgnored") == 1; }, 20s));
  ASSERT_TRUE(wait_until([&] { return groups("x").size() == 2; }, 20s))
      << "the autoscaler's bounds hold";
}

}  // namespace
}  // namespace moeserve::controller
