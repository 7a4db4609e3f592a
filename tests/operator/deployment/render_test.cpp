#include "operator/deployment/render.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "operator/deployment/hash.h"
#include "operator/deployment/names.h"
#include "operator/deployment/pod_template.h"
#include "tests/operator/deployment/fixtures.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;

// The fixture's V3 spec with every scheduling and worker option set.
json v3_spec() {
  json spec = testing::v3_spec();
  spec["model"]["servedModelName"] = "deepseek-v3";
  spec["worker"]["resources"]["requests"] = {{"cpu", "64"}};
  spec["worker"]["nodeSelector"] = {{"gpu", "h200"}};
  spec["worker"]["tolerations"] =
      json::parse(R"([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])");
  spec["worker"]["env"] = json::parse(R"([{"name": "NCCL_DEBUG", "value": "WARN"}])");
  spec["worker"]["extraArgs"] = {"--max-num-seqs", "256"};
  spec["worker"]["spreadAcrossNodes"] = true;
  return spec;
}

ModelDeployment deployment(json spec) { return testing::valid_deployment(std::move(spec)); }

Rendered render_fresh(const ModelDeployment& md) { return render(md, plan(md, Observed{})); }

const json& worker_container(const json& sts) {
  return sts["spec"]["template"]["spec"]["containers"][0];
}

// name -> value (or valueFrom dump) of a container's env.
std::map<std::string, std::string> env_of(const json& container) {
  std::map<std::string, std::string> out;
  for (const json& e : container["env"]) {
    out[e["name"]] = e.contains("value") ? e["value"].get<std::string>() : e["valueFrom"].dump();
  }
  return out;
}

TEST(Render, ObjectNamesKindsAndApplyOrder) {
  const Rendered r = render_fresh(deployment(v3_spec()));
  std::vector<std::string> got;
  for (const json& o : r.objects()) {
    got.push_back(o["kind"].get<std::string>() + "/" + o["metadata"]["name"].get<std::string>());
  }
  EXPECT_EQ(got, (std::vector<std::string>{"ConfigMap/ds-placement", "Service/ds-ranks",
                                           "Service/ds", "PodDisruptionBudget/ds",
                                           "StatefulSet/ds-g0", "StatefulSet/ds-g1"}));
}

TEST(Render, EveryObjectIsOwnedLabelledAndHashed) {
  const Rendered r = render_fresh(deployment(v3_spec()));
  const json owner = {{"apiVersion", "moeserve.io/v1alpha1"},
                      {"kind", "ModelDeployment"},
                      {"name", "ds"},
                      {"uid", "uid-1"},
                      {"controller", true},
                      {"blockOwnerDeletion", true}};
  for (const json& o : r.objects()) {
    SCOPED_TRACE(o["metadata"]["name"].get<std::string>());
    const json& meta = o["metadata"];
    EXPECT_EQ(meta["namespace"], "ml");
    EXPECT_EQ(meta["ownerReferences"], json::array({owner}));
    const json& labels = meta["labels"];
    EXPECT_EQ(labels["app.kubernetes.io/name"], "moeserve-worker");
    EXPECT_EQ(labels["app.kubernetes.io/instance"], "ds");
    EXPECT_EQ(labels["app.kubernetes.io/managed-by"], "moeserve-operator");
    EXPECT_TRUE(labels["app.kubernetes.io/component"].is_string());
    EXPECT_EQ(labels["moeserve.io/deployment"], "ds");
    json unhashed = o;
    unhashed["metadata"]["annotations"].erase("moeserve.io/spec-hash");
    if (unhashed["metadata"]["annotations"].empty()) unhashed["metadata"].erase("annotations");
    EXPECT_EQ(spec_hash_of(o), json_hash(unhashed));
    EXPECT_EQ(with_spec_hash(o), o);  // idempotent
  }
  EXPECT_EQ(r.statefulsets[1]["metadata"]["labels"]["moeserve.io/group"], "1");
  EXPECT_EQ(r.statefulsets[1]["spec"]["template"]["metadata"]["labels"]["moeserve.io/group"], "1");
}

TEST(Render, StatefulSetPerGroup) {
  const ModelDeployment md = deployment(v3_spec());
  const Plan p = plan(md, Observed{});
  const json sts = render_statefulset(md, p, 1);
  EXPECT_EQ(sts["apiVersion"], "apps/v1");
  EXPECT_EQ(sts["metadata"]["name"], "ds-g1");
  EXPECT_EQ(sts["metadata"]["annotations"]["moeserve.io/template-hash"], p.template_hash);
  const json& spec = sts["spec"];
  EXPECT_EQ(spec["replicas"], 2);  // 16 ranks / 8 per pod
  EXPECT_EQ(spec["podManagementPolicy"], "Parallel");
  EXPECT_EQ(spec["serviceName"], "ds-ranks");
  EXPECT_EQ(spec["updateStrategy"]["type"], "OnDelete");
  for (const auto& [key, value] : spec["selector"]["matchLabels"].items()) {
    EXPECT_EQ(spec["template"]["metadata"]["labels"][key], value) << key;
  }
  EXPECT_EQ(spec["selector"]["matchLabels"]["moeserve.io/group"], "1");
}

TEST(Render, WorkerArgsEnvAndCommandWithEightRanksPerPod) {
  const ModelDeployment md = deployment(v3_spec());
  const json sts = render_statefulset(md, plan(md, Observed{}), 3);
  const json& c = worker_container(sts);
  EXPECT_EQ(c["image"], "w:1");
  EXPECT_EQ(c["args"],
            json::array({"serve", "--model", "/model/ds/v3", "--host", "0.0.0.0", "--port", "8000",
                         "--served-model-name", "deepseek-v3", "--precision", "fp8", "--world-size",
                         "16", "--leader", "ds-g3-0.ds-ranks.ml.svc:29500", "--placement",
                         "/etc/moeserve/placement/placement.json", "--max-num-seqs", "256"}));
  EXPECT_EQ(c["command"],
            json::array({"/bin/sh", "-c",
                         "export MOESERVE_RANK=$((MOESERVE_POD_INDEX * 8)); exec \"$0\" \"$@\"",
                         "moeserve-worker"}));
  const std::map<std::string, std::string> env = env_of(c);
  const std::string pod_index =
      R"({"fieldRef":{"fieldPath":"metadata.labels['apps.kubernetes.io/pod-index']"}})";
  EXPECT_EQ(env, (std::map<std::string, std::string>{
                     {"MOESERVE_POD_INDEX", pod_index},
                     {"MOESERVE_RANKS_PER_POD", "8"},
                     {"MOESERVE_WORLD_SIZE", "16"},
                     {"MOESERVE_LEADER_ADDR", "ds-g3-0.ds-ranks.ml.svc:29500"},
                     {"MOESERVE_DEPLOYMENT", "ds"},
                     {"MOESERVE_GROUP", "3"},
                     {"NCCL_DEBUG", "WARN"}}));
}

TEST(Render, OneRankPerPodTakesTheRankFromThePodIndex) {
  json spec = json::parse(R"({"model": {"source": "/opt/tiny"},
                              "parallelism": {"expertParallel": 4},
                              "worker": {"image": "w:cpu"}})");
  const ModelDeployment md = deployment(spec);
  const Plan p = plan(md, Observed{});
  EXPECT_EQ(p.layout.pods_per_group, 4);
  const json sts = render_statefulset(md, p, 0);
  const json& c = worker_container(sts);
  EXPECT_EQ(c["command"], json::array({"moeserve-worker"}));
  const std::map<std::string, std::string> env = env_of(c);
  EXPECT_EQ(env.at("MOESERVE_RANK"), env.at("MOESERVE_POD_INDEX"));
  EXPECT_EQ(env.at("MOESERVE_WORLD_SIZE"), "4");
  EXPECT_EQ(c["args"][2], "/opt/tiny");
  EXPECT_EQ(c["args"][8], "tiny");  // served model name from the source
}

TEST(Render, ProbesPortsResourcesAndSecurity) {
  const ModelDeployment md = deployment(v3_spec());
  const json sts = render_statefulset(md, plan(md, Observed{}), 0);
  const json& c = worker_container(sts);
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"], "/readyz");
  EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"], "/healthz");
  EXPECT_EQ(c["startupProbe"]["failureThreshold"], 180);  // 1800 s deadline / 10 s period
  EXPECT_EQ(c["ports"][0], (json{{"name", "http"}, {"containerPort", 8000}, {"protocol", "TCP"}}));
  EXPECT_EQ(c["resources"]["limits"]["nvidia.com/gpu"], "8");
  EXPECT_EQ(c["resources"]["requests"]["cpu"], "64");
  EXPECT_EQ(c["securityContext"]["allowPrivilegeEscalation"], false);
  const json& pod = sts["spec"]["template"]["spec"];
  EXPECT_EQ(pod["securityContext"]["runAsNonRoot"], true);
  EXPECT_EQ(pod["nodeSelector"]["gpu"], "h200");
  EXPECT_EQ(pod["tolerations"][0]["operator"], "Exists");
  bool shm = false;
  for (const json& v : pod["volumes"]) {
    if (v["name"] == "dshm") {
      shm = v["emptyDir"]["medium"] == "Memory" && v["emptyDir"]["sizeLimit"] == "8Gi";
    }
    if (v["name"] == "model") {
      EXPECT_EQ(v["persistentVolumeClaim"]["claimName"], "models");
    }
    if (v["name"] == "placement") {
      EXPECT_EQ(v["configMap"]["name"], "ds-placement");
    }
  }
  EXPECT_TRUE(shm);
}

TEST(Render, AntiAffinityFollowsSpreadAcrossNodes) {
  const ModelDeployment spread = deployment(v3_spec());
  const json pod =
      render_statefulset(spread, plan(spread, Observed{}), 2)["spec"]["template"]["spec"];
  const json& term =
      pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
  EXPECT_EQ(term["topologyKey"], "kubernetes.io/hostname");
  EXPECT_EQ(term["labelSelector"]["matchLabels"], group_selector("ds", 2));

  json spec = v3_spec();
  spec["worker"]["spreadAcrossNodes"] = false;
  const ModelDeployment packed = deployment(spec);
  EXPECT_FALSE(
      render_statefulset(packed, plan(packed, Observed{}), 2)["spec"]["template"]["spec"].contains(
          "affinity"));
}

TEST(Render, HuggingFaceSourceIsDownloadedByAnInitContainer) {
  json spec = v3_spec();
  spec["model"]["source"] = "hf://deepseek-ai/DeepSeek-V3";
  spec["worker"]["env"] = json::array(
      {{{"name", "HF_TOKEN"}, {"valueFrom", {{"secretKeyRef", {{"name", "hf"}, {"key", "t"}}}}}}});
  const ModelDeployment md = deployment(spec);
  const json pod = render_statefulset(md, plan(md, Observed{}), 0)["spec"]["template"]["spec"];
  ASSERT_EQ(pod["initContainers"].size(), 1u);
  const json& init = pod["initContainers"][0];
  EXPECT_EQ(init["image"], "python:3.12-slim");
  EXPECT_EQ(init["command"][3], "deepseek-ai/DeepSeek-V3");
  EXPECT_EQ(init["command"][4], "/model/deepseek-ai/DeepSeek-V3");
  EXPECT_EQ(env_of(init).count("HF_TOKEN"), 1u);
  EXPECT_EQ(worker_container({{"spec", {{"template", {{"spec", pod}}}}}})["args"][2],
            "/model/deepseek-ai/DeepSeek-V3");
}

TEST(Render, ServicesPdbAndPlacement) {
  const ModelDeployment md = deployment(v3_spec());
  const Plan p = plan(md, Observed{});
  const Rendered r = render(md, p);
  EXPECT_EQ(r.ranks_service["spec"]["clusterIP"], "None");
  EXPECT_EQ(r.ranks_service["spec"]["publishNotReadyAddresses"], true);
  EXPECT_EQ(r.ranks_service["spec"]["selector"], worker_selector("ds"));
  EXPECT_EQ(r.api_service["spec"]["selector"], (json{{"app.kubernetes.io/name", "moeserve-worker"},
                                                     {"apps.kubernetes.io/pod-index", "0"},
                                                     {"moeserve.io/deployment", "ds"}}));
  EXPECT_EQ(r.api_service["spec"]["ports"][0]["port"], 8000);
  EXPECT_EQ(r.pdb["apiVersion"], "policy/v1");
  EXPECT_EQ(r.pdb["spec"]["maxUnavailable"], 1);
  EXPECT_EQ(r.pdb["spec"]["selector"]["matchLabels"], worker_selector("ds"));
  ASSERT_TRUE(r.placement_configmap.has_value());
  EXPECT_EQ(observe_placement_configmap(*r.placement_configmap).value(), *p.placement.map);
}

TEST(Render, HashesAreStableAndFollowTheTemplate) {
  const ModelDeployment md = deployment(v3_spec());
  const Rendered a = render_fresh(md);
  const Rendered b = render_fresh(deployment(v3_spec()));
  ASSERT_EQ(a.objects().size(), b.objects().size());
  for (size_t i = 0; i < a.objects().size(); ++i) {
    EXPECT_EQ(spec_hash_of(a.objects()[i]), spec_hash_of(b.objects()[i]));
  }
  // Cost and autoscaling do not touch any object.
  json cheaper = v3_spec();
  cheaper["cost"] = {{"gpuHourUsd", 1.0}};
  const Rendered c = render_fresh(deployment(cheaper));
  EXPECT_EQ(spec_hash_of(c.statefulsets[0]), spec_hash_of(a.statefulsets[0]));
  // The image changes the StatefulSets' template and spec hashes, not the Services'.
  json newer = v3_spec();
  newer["worker"]["image"] = "w:2";
  const ModelDeployment md2 = deployment(newer);
  const Rendered d = render_fresh(md2);
  EXPECT_NE(plan(md2, Observed{}).template_hash, plan(md, Observed{}).template_hash);
  EXPECT_NE(spec_hash_of(d.statefulsets[0]), spec_hash_of(a.statefulsets[0]));
  EXPECT_EQ(spec_hash_of(d.api_service), spec_hash_of(a.api_service));
  EXPECT_EQ(spec_hash_of(d.ranks_service), spec_hash_of(a.ranks_service));
}

TEST(Render, NoPlacementWithoutTheModelShape) {
  json spec = v3_spec();
  spec["model"].erase("routedExperts");
  spec["model"].erase("moeLayers");
  spec["parallelism"]["redundantExperts"] = 0;
  const ModelDeployment md = deployment(spec);
  const Rendered r = render_fresh(md);
  EXPECT_FALSE(r.placement_configmap.has_value());
  const json args = worker_container(r.statefulsets[0])["args"];
  EXPECT_EQ(std::find(args.begin(), args.end(), "--placement"), args.end());
}

}  // namespace
}  // namespace moeserve::deployment
