#include "operator/deployment/observe.h"

#include <gtest/gtest.h>

#include "operator/deployment/rfc3339.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;

TEST(ObserveStatefulset, ReadsGroupTemplateAndReadiness) {
  const json sts = json::parse(R"({
    "metadata": {"name": "ds-g7", "generation": 4, "creationTimestamp": "2026-03-01T10:00:00Z",
                 "annotations": {"moeserve.io/template-hash": "abc"}},
    "spec": {"replicas": 2},
    "status": {"observedGeneration": 4, "readyReplicas": 2}
  })");
  const StatusOr<ObservedGroup> g = observe_statefulset("ds", sts);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  EXPECT_EQ(g->index, 7);
  EXPECT_EQ(g->template_hash, "abc");
  EXPECT_EQ(g->desired_pods, 2);
  EXPECT_EQ(g->ready_pods, 2);
  EXPECT_TRUE(g->ready());
  EXPECT_EQ(g->created_at, parse_rfc3339("2026-03-01T10:00:00Z"));

  json stale = sts;
  stale["metadata"]["generation"] = 5;  // the StatefulSet controller has not caught up
  EXPECT_FALSE(observe_statefulset("ds", stale)->ready());
  json partial = sts;
  partial["status"]["readyReplicas"] = 1;
  EXPECT_FALSE(observe_statefulset("ds", partial)->ready());
  json deleting = sts;
  deleting["metadata"]["deletionTimestamp"] = "2026-03-01T11:00:00Z";
  EXPECT_TRUE(observe_statefulset("ds", deleting)->terminating);
  EXPECT_FALSE(observe_statefulset("ds", deleting)->ready());
  json other = sts;
  other["metadata"]["name"] = "dsx-g1";
  EXPECT_FALSE(observe_statefulset("ds", other).ok());
}

TEST(ObservePlacementConfigmap, ReadsThePlacementFileAndNamesTheConfigMapInErrors) {
  json cm = {{"metadata", {{"name", "ds-placement"}}},
             {"data", {{"placement.json", R"({"version":2,"layers":[{"phy2log":[1,0]}]})"}}}};
  EXPECT_EQ(observe_placement_configmap(cm).value(), (Placement{2, {{1, 0}}}));

  cm["data"]["placement.json"] = R"({"version":0,"layers":[{"phy2log":[1,0]}]})";
  const StatusOr<Placement> bad = observe_placement_configmap(cm);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("ConfigMap ds-placement placement.json"), std::string::npos)
      << bad.status().message();
  cm["data"].erase("placement.json");
  EXPECT_FALSE(observe_placement_configmap(cm).ok());
}

}  // namespace
}  // namespace moeserve::deployment
