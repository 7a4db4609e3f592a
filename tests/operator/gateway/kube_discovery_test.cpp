// KubeDiscovery: build_snapshot on hand-made objects, then the real informers against
// the strict test API server while the real reconciler creates the groups.
#include "operator/gateway/kube_discovery.h"

#include <gtest/gtest.h>

#include "common/yaml_json.h"
#include "operator/controller/controller.h"
#include "operator/controller/events.h"
#include "operator/controller/reconciler.h"
#include "operator/deployment/gateway_waiting.h"
#include "operator/deployment/names.h"
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

json tiny_deployment(const std::string& name, const std::string& ns) {
  auto docs =
      load_yaml_documents(moeserve::testing::source_dir() + "/deploy/examples/tiny-cpu.yaml");
  EXPECT_TRUE(docs.ok());
  json md = (*docs)[0];
  md["metadata"] = {{"name", name}, {"namespace", ns}, {"uid", "uid-" + name}};
  md["spec"]["autoscaling"] = {{"enabled", false}};
  return md;
}

json pod(const std::string& ns, const std::string& deployment, int group, const std::string& ip,
         bool ready) {
  return {
      {"metadata",
       {{"name", deployment + "-g" + std::to_string(group) + "-0"},
        {"namespace", ns},
        {"labels",
         {{"moeserve.io/deployment", deployment}, {"moeserve.io/group", std::to_string(group)}}}}},
      {"status",
       {{"podIP", ip},
        {"conditions", {{{"type", "Ready"}, {"status", ready ? "True" : "False"}}}}}}};
}

TEST(BuildSnapshot, OneModelPerDeploymentWithItsRankZeroPodsInGroupOrder) {
  json md = tiny_deployment("x", kNs);
  md["spec"]["gateway"] = {{"queueSize", 5}, {"queueTimeoutSeconds", 30}};
  const Snapshot s = build_snapshot(
      {md}, {pod(kNs, "x", 10, "10.0.0.10", true), pod(kNs, "x", 2, "10.0.0.2", false),
             pod(kNs, "x", 1, "fd00::1", true), pod("other", "x", 3, "10.0.0.3", true)});
  ASSERT_EQ(s.models.size(), 1u);
  const ServedModel& m = s.models[0];
  EXPECT_EQ(m.model, "tiny");
  EXPECT_EQ(m.deployment, "team-a/x");
  EXPECT_EQ(m.queue_size, 5);
  EXPECT_EQ(m.queue_timeout_seconds, 30);
  EXPECT_TRUE(m.can_wake) << "groups exist";
  const std::vector<Upstream> want = {{"team-a/x/g1", "http://[fd00::1]:8000", true},
                                      {"team-a/x/g2", "http://10.0.0.2:8000", false},
                                      {"team-a/x/g10", "http://10.0.0.10:8000", true}};
  EXPECT_EQ(m.groups, want);
}

TEST(BuildSnapshot, SkipsDeletedInvalidAndForeignObjects) {
  json deleting = tiny_deployment("gone", kNs);
  deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  json invalid = tiny_deployment("bad", kNs);
  invalid["spec"]["worker"]["port"] = "eighty";
  json terminating = pod(kNs, "x", 0, "10.0.0.1", true);
  terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  json not_rank_zero = pod(kNs, "x", 1, "10.0.0.2", true);
  not_rank_zero["metadata"]["name"] = "x-g1-1";
  json wrong_group_label = pod(kNs, "x", 2, "10.0.0.3", true);
  wrong_group_label["metadata"]["labels"]["moeserve.io/group"] = "7";
  json no_ip = pod(kNs, "x", 3, "", false);
  const Snapshot s = build_snapshot({deleting, invalid, tiny_deployment("x", kNs)},
                                    {terminating, not_rank_zero, wrong_group_label, no_ip});
  ASSERT_EQ(s.models.size(), 1u);
  EXPECT_EQ(s.models[0].deployment, "team-a/x");
  EXPECT_TRUE(s.models[0].groups.empty());
  EXPECT_TRUE(s.models[0].can_wake) << "a rank-0 pod without an address is a group starting";
}

TEST(BuildSnapshot, CanWakeWithScaleToZeroOrGroupsWantedOnly) {
  json zero = tiny_deployment("x", kNs);
  zero["spec"]["replicas"] = 0;
  EXPECT_FALSE(build_snapshot({zero}, {}).models[0].can_wake);
  json wanted = zero;
  wanted["status"] = {{"desiredReplicas", 1}, {"replicas", 0}};
  EXPECT_TRUE(build_snapshot({wanted}, {}).models[0].can_wake);
  json scaled_to_zero = tiny_deployment("x", kNs);
  scaled_to_zero["spec"]["autoscaling"] = {{"enabled", true},
                                           {"maxReplicas", 2},
                                           {"targetTokensPerSecondPerGroup", 50},
                                           {"scaleToZeroAfterIdleSeconds", 300}};
  scaled_to_zero["status"] = {{"desiredReplicas", 0}, {"replicas", 0}};
  EXPECT_TRUE(build_snapshot({scaled_to_zero}, {}).models[0].can_wake);
}

TEST(KubeDiscoveryFlags, RefuseCombinationsThatWouldBeIgnored) {
  KubeDiscoveryOptions o;
  EXPECT_TRUE(check_kube_discovery_flags(o).ok());
  EXPECT_FALSE(kube_discovery_selected(o));
  o.ns = "team-a";
  EXPECT_EQ(check_kube_discovery_flags(o).message(),
            "--namespace needs --kubeconfig or --in-cluster");
  o.kubeconfig = "/k";
  EXPECT_TRUE(check_kube_discovery_flags(o).ok());
  o.in_cluster = true;
  EXPECT_FALSE(check_kube_discovery_flags(o).ok());

  FlagSet flags("gw", "");
  KubeDiscoveryOptions parsed;
  add_kube_discovery_flags(&flags, &parsed);
  ASSERT_TRUE(flags.parse({"--kubeconfig", "/k", "--namespace", "ns", "--pod-name", "gw-0"}).ok());
  EXPECT_EQ(parsed.kubeconfig, "/k");
  EXPECT_EQ(parsed.ns, "ns");
  EXPECT_EQ(parsed.pod_name, "gw-0");
  EXPECT_TRUE(kube_discovery_selected(parsed));
}

TEST(MakeKubeDiscovery, NamesWhatIsMissing) {
  KubeDiscoveryOptions o;
  auto none = make_kube_discovery(o);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().message(), "kube discovery needs --kubeconfig FILE or --in-cluster");
  o.kubeconfig = "/nonexistent/kubeconfig";
  auto no_pod = make_kube_discovery(o);
  ASSERT_FALSE(no_pod.ok());
  EXPECT_NE(no_pod.status().message().find("--pod-name"), std::string::npos);
  o.pod_name = "gw-0";
  auto unreadable = make_kube_discovery(o);
  ASSERT_FALSE(unreadable.ok());
  EXPECT_NE(unreadable.status().to_string().find("/nonexistent/kubeconfig"), std::string::npos)
      << unreadable.status().to_string();
}

class KubeDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(cluster_.start(kNs));
    ASSERT_TRUE(
        client_
            ->create(
                res::kNamespaces, "",
                {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "team-b"}}}})
            .ok());
    controller_ = std::make_unique<controller::Controller>(
        *client_, res::kModelDeployments,
        std::vector<kube::ResourceRef>{res::kStatefulSets, res::kServices, res::kConfigMaps,
                                       res::kPodDisruptionBudgets, res::kNetworkPolicies,
                                       res::kPods},
        controller::TestCluster::fast_options(), std::make_shared<prometheus::Registry>());
    events_ = std::make_unique<controller::EventRecorder>(*client_, "moeserve-operator");
    reconciler_ = std::make_unique<controller::ModelDeploymentReconciler>(*client_, *controller_,
                                                                          events_.get());
    controller_->set_reconciler(reconciler_.get());
    controller_->start();
  }
  void TearDown() override {
    if (discovery_) discovery_->stop();
    if (controller_) controller_->stop();
    cluster_.api.shutdown();
  }

  void start_discovery(const std::string& ns) {
    KubeDiscoveryOptions o;
    o.ns = ns;
    o.pod_name = "gw-0";
    o.writer_poll = 10ms;
    o.waiting_min_interval = 0ms;
    o.waiting_refresh = 10s;
    o.clock = &clock_;
    o.reflector_options = controller::TestCluster::fast_options().reflector_options;
    discovery_ = std::make_unique<KubeDiscovery>(*client_, o);
    discovery_->start();
    ASSERT_TRUE(wait_until([&] { return discovery_->synced(); }, 10s));
  }

  json statefulset(const std::string& ns, const std::string& name) {
    auto sts = client_->get(res::kStatefulSets, ns, name);
    return sts.ok() ? *sts : json();
  }
  bool groups_created(const std::string& ns, const std::string& deployment, int n) {
    for (int g = 0; g < n; ++g) {
      if (statefulset(ns, deployment + "-g" + std::to_string(g)).is_null()) return false;
    }
    return true;
  }
  const ServedModel* find(const Snapshot& s, const std::string& deployment) {
    for (const ServedModel& m : s.models) {
      if (m.deployment == deployment) return &m;
    }
    return nullptr;
  }
  // The snapshot once `predicate` holds for it (or the last one seen).
  Snapshot snapshot_when(const std::function<bool(const Snapshot&)>& predicate) {
    Snapshot s;
    wait_until(
        [&] {
          s = discovery_->snapshot();
          return predicate(s);
        },
        20s);
    return s;
  }

  FakeClock clock_;
  controller::TestCluster cluster_;
  std::unique_ptr<kube::Client>& client_ = cluster_.client;
  std::unique_ptr<controller::Controller> controller_;
  std::unique_ptr<controller::EventRecorder> events_;
  std::unique_ptr<controller::ModelDeploymentReconciler> reconciler_;
  std::unique_ptr<KubeDiscovery> discovery_;
};

TEST_F(KubeDiscoveryTest, FollowsGroupsAsTheOperatorCreatesThemAndForgetsDeletedOnes) {
  ASSERT_NO_FATAL_FAILURE(start_discovery(""));
  EXPECT_TRUE(discovery_->snapshot().models.empty());

  json md = tiny_deployment("x", kNs);
  md["metadata"].erase("uid");
  md["spec"]["replicas"] = 2;
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, md).ok());
  Snapshot s = snapshot_when([&](const Snapshot& s) { return find(s, "team-a/x") != nullptr; });
  ASSERT_NE(find(s, "team-a/x"), nullptr);
  EXPECT_EQ(find(s, "team-a/x")->model, "tiny");
  EXPECT_TRUE(find(s, "team-a/x")->groups.empty());

  // The operator creates both groups; their rank-0 pods start, then become ready.
  ASSERT_TRUE(wait_until([&] { return groups_created(kNs, "x", 2); }, 20s));
  rank_zero_pod(*client_, statefulset(kNs, "x-g0"), "10.1.0.1", false);
  rank_zero_pod(*client_, statefulset(kNs, "x-g1"), "10.1.0.2", false);
  s = snapshot_when([&](const Snapshot& s) {
    const ServedModel* m = find(s, "team-a/x");
    return m && m->groups.size() == 2;
  });
  ASSERT_EQ(find(s, "team-a/x")->groups.size(), 2u);
  EXPECT_EQ(find(s, "team-a/x")->groups[0],
            (Upstream{"team-a/x/g0", "http://10.1.0.1:8000", false}));
  EXPECT_TRUE(find(s, "team-a/x")->can_wake);

  rank_zero_pod(*client_, statefulset(kNs, "x-g1"), "10.1.0.2", true);
  s = snapshot_when([&](const Snapshot& s) {
    const ServedModel* m = find(s, "team-a/x");
    return m && m->groups.size() == 2 && m->groups[1].ready;
  });
  ASSERT_EQ(find(s, "team-a/x")->groups.size(), 2u);
  EXPECT_FALSE(find(s, "team-a/x")->groups[0].ready);
  EXPECT_TRUE(find(s, "team-a/x")->groups[1].ready);

  // A lost pod leaves; a deleted deployment leaves with its groups.
  ASSERT_TRUE(client_->remove(res::kPods, kNs, "x-g0-0").ok());
  s = snapshot_when([&](const Snapshot& s) {
    const ServedModel* m = find(s, "team-a/x");
    return m && m->groups.size() == 1;
  });
  ASSERT_EQ(find(s, "team-a/x")->groups.size(), 1u);
  EXPECT_EQ(find(s, "team-a/x")->groups[0].id, "team-a/x/g1");

  ASSERT_TRUE(client_->remove(res::kModelDeployments, kNs, "x").ok());
  s = snapshot_when([&](const Snapshot& s) { return s.models.empty(); });
  EXPECT_TRUE(s.models.empty());
}

TEST_F(KubeDiscoveryTest, WatchesOneNamespaceWhenAsked) {
  json a = tiny_deployment("x", kNs);
  a["metadata"].erase("uid");
  json b = tiny_deployment("y", "team-b");
  b["metadata"].erase("uid");
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, a).ok());
  ASSERT_TRUE(client_->create(res::kModelDeployments, "team-b", b).ok());
  ASSERT_NO_FATAL_FAILURE(start_discovery("team-b"));
  Snapshot s = snapshot_when([&](const Snapshot& s) { return !s.models.empty(); });
  ASSERT_EQ(s.models.size(), 1u);
  EXPECT_EQ(s.models[0].deployment, "team-b/y");
}

TEST_F(KubeDiscoveryTest, ReportWaitingSetsRefreshesAndClearsItsAnnotation) {
  json md = tiny_deployment("x", kNs);
  md["metadata"].erase("uid");
  ASSERT_TRUE(client_->create(res::kModelDeployments, kNs, md).ok());
  ASSERT_NO_FATAL_FAILURE(start_discovery(kNs));
  const std::string key = deployment::gateway_waiting_key("gw-0");
  auto annotation = [&]() -> std::string {
    auto got = client_->get(res::kModelDeployments, kNs, "x");
    if (!got.ok()) return "<error>";
    return (*got)["metadata"].value("annotations", json::object()).value(key, "");
  };
  discovery_->report_waiting("team-a/x", 3);
  ASSERT_TRUE(wait_until([&] { return annotation().rfind("3 ", 0) == 0; }, 10s)) << annotation();
  ASSERT_TRUE(deployment::parse_gateway_waiting(annotation()));
  // Still waiting: re-written with a new time once the refresh interval has passed.
  const std::string first = annotation();
  clock_.advance(11s);
  ASSERT_TRUE(wait_until([&] { return annotation() != first; }, 10s));
  EXPECT_EQ(annotation().rfind("3 ", 0), 0u) << annotation();
  EXPECT_EQ(deployment::parse_gateway_waiting(annotation())->written -
                deployment::parse_gateway_waiting(first)->written,
            11s);
  discovery_->report_waiting("team-a/x", 0);
  ASSERT_TRUE(wait_until([&] { return annotation().empty(); }, 10s)) << annotation();
}

}  // namespace
}  // namespace moeserve::gateway
