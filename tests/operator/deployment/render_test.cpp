#include "operator/deployment/render.h"

#include <algorithm>
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
  EXPECT_EQ(got, (std::vector<std::string>{
                     "ConfigMap/ds-placement", "NetworkPolicy/ds", "NetworkPolicy/ds-g0",
                     "NetworkPolicy/ds-g1", "Service/ds-ranks", "Service/ds",
                     "PodDisruptionBudget/ds", "StatefulSet/ds-g0", "StatefulSet/ds-g1"}));
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
  EXPECT_EQ(c["args"], json::array({"serve",
                                    "--model",
                                    "/model/ds/v3",
                                    "--host",
                                    "0.0.0.0",
                                    "--port",
                                    "8000",
                                    "--served-model-name",
                                    "deepseek-v3",
                                    "--metrics-host",
                                    "0.0.0.0",
                                    "--metrics-port",
                                    "9090",
                                    "--precision",
                                    "fp8",
                                    "--world-size",
                                    "16",
                                    "--leader",
                                    "ds-g3-0.ds-ranks.ml.svc:29500",
                                    "--placement",
                                    "/etc/moeserve/placement/placement.json",
                                    "--max-num-seqs",
                                    "256"}));
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
  // moeserve-fetch from the worker image: nothing is installed when the pod starts.
  EXPECT_EQ(init["image"], spec["worker"]["image"]);
  EXPECT_EQ(init["command"], json::array({"moeserve-fetch", "hf://deepseek-ai/DeepSeek-V3",
                                          "--dest", "/model/deepseek-ai/DeepSeek-V3"}));
  EXPECT_EQ(env_of(init).count("HF_TOKEN"), 1u);
  EXPECT_EQ(init["securityContext"]["readOnlyRootFilesystem"], true);
  EXPECT_EQ(worker_container({{"spec", {{"template", {{"spec", pod}}}}}})["args"][2],
            "/model/deepseek-ai/DeepSeek-V3");
  bool model_volume = false;
  for (const json& volume : pod["volumes"]) {
    if (volume["name"] != "model") continue;
    model_volume = true;
    EXPECT_TRUE(volume.contains("emptyDir")) << volume;
  }
  EXPECT_TRUE(model_volume);
}

TEST(Render, PinnedRevisionIntoASharedCacheClaim) {
  json spec = v3_spec();
  const std::string sha = "0123456789abcdef0123456789abcdef01234567";
  spec["model"]["source"] = "hf://deepseek-ai/DeepSeek-V3@" + sha;
  spec["model"]["cacheClaim"] = "hf-cache";
  spec["model"]["downloaderImage"] = "registry.example.com/moeserve-worker:1";
  spec["model"].erase("servedModelName");
  const ModelDeployment md = deployment(spec);
  EXPECT_EQ(served_model_name(md.spec.model), "DeepSeek-V3");
  const json pod = render_statefulset(md, plan(md, Observed{}), 1)["spec"]["template"]["spec"];
  const json& init = pod["initContainers"][0];
  EXPECT_EQ(init["image"], "registry.example.com/moeserve-worker:1");
  const std::string dir = "/model/deepseek-ai/DeepSeek-V3/" + sha;
  EXPECT_EQ(init["command"][3], dir);
  EXPECT_EQ(worker_container({{"spec", {{"template", {{"spec", pod}}}}}})["args"][2], dir);
  json model_volume;
  for (const json& volume : pod["volumes"]) {
    if (volume["name"] == "model") model_volume = volume;
  }
  // Every pod of every group mounts the same claim; only the init container writes it.
  EXPECT_EQ(model_volume["persistentVolumeClaim"], (json{{"claimName", "hf-cache"}}));
  for (const json& mount : init["volumeMounts"]) EXPECT_FALSE(mount.contains("readOnly"));
  const json worker = worker_container({{"spec", {{"template", {{"spec", pod}}}}}});
  for (const json& mount : worker["volumeMounts"]) {
    if (mount["name"] == "model") {
      EXPECT_EQ(mount["readOnly"], true);
    }
  }
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

// The volume named `name` of a pod spec (null when absent).
json volume_named(const json& pod, const std::string& name) {
  for (const json& v : pod["volumes"]) {
    if (v["name"] == name) return v;
  }
  return nullptr;
}

TEST(Render, AuthMountsTheSecretReadOnlyAndPassesTheKeyFile) {
  json spec = v3_spec();
  spec["auth"] = {{"secretName", "llm-keys"}};
  const ModelDeployment md = deployment(spec);
  const json pod = render_statefulset(md, plan(md, Observed{}), 0)["spec"]["template"]["spec"];
  const json volume = volume_named(pod, "api-keys");
  ASSERT_TRUE(volume.is_object());
  EXPECT_EQ(volume["secret"]["secretName"], "llm-keys");
  EXPECT_EQ(volume["secret"]["items"], json::parse(R"([{"key": "api-keys", "path": "api-keys"}])"));
  EXPECT_EQ(volume["secret"]["defaultMode"], 0440);
  bool mounted = false;
  for (const json& m : pod["containers"][0]["volumeMounts"]) {
    if (m["name"] != "api-keys") continue;
    mounted = true;
    EXPECT_EQ(m["mountPath"], "/etc/moeserve/auth");
    EXPECT_EQ(m["readOnly"], true);
    EXPECT_FALSE(m.contains("subPath")) << "a subPath mount never sees Secret updates";
  }
  EXPECT_TRUE(mounted);
  const json args = pod["containers"][0]["args"];
  const auto flag = std::find(args.begin(), args.end(), "--api-key-file");
  ASSERT_NE(flag, args.end());
  EXPECT_EQ(*(flag + 1), "/etc/moeserve/auth/api-keys");

  // Keys rotate inside the Secret: the template names only the Secret, so only another
  // Secret name or key rolls the groups.
  const std::string hash = plan(md, Observed{}).template_hash;
  EXPECT_EQ(plan(deployment(spec), Observed{}).template_hash, hash);
  spec["auth"]["key"] = "other";
  EXPECT_NE(plan(deployment(spec), Observed{}).template_hash, hash);
  EXPECT_EQ(
      volume_named(render_fresh(deployment(v3_spec())).statefulsets[0]["spec"]["template"]["spec"],
                   "api-keys"),
      nullptr);
}

TEST(Render, WorkerPodsCarryNoApiTokenAndPassTheirIdentityThrough) {
  json spec = v3_spec();
  spec["worker"]["serviceAccountName"] = "llm-worker";
  spec["worker"]["imagePullSecrets"] = json::parse(R"([{"name": "regcred"}])");
  spec["worker"]["priorityClassName"] = "inference-high";
  spec["worker"]["volumes"] = json::parse(R"([{"name": "cache", "emptyDir": {}}])");
  spec["worker"]["volumeMounts"] = json::parse(R"([{"name": "cache", "mountPath": "/cache"}])");
  spec["worker"]["nodeAffinity"] = json::parse(R"({"requiredDuringSchedulingIgnoredDuringExecution":
      {"nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "In",
                                                    "values": ["h200"]}]}]}})");
  spec["worker"]["topologySpreadConstraints"] = json::parse(R"([{"maxSkew": 1,
      "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}])");
  const ModelDeployment md = deployment(spec);
  const json pod = render_statefulset(md, plan(md, Observed{}), 2)["spec"]["template"]["spec"];
  EXPECT_EQ(pod["automountServiceAccountToken"], false);
  EXPECT_EQ(pod["serviceAccountName"], "llm-worker");
  EXPECT_EQ(pod["imagePullSecrets"], spec["worker"]["imagePullSecrets"]);
  EXPECT_EQ(pod["priorityClassName"], "inference-high");
  EXPECT_EQ(pod["topologySpreadConstraints"], spec["worker"]["topologySpreadConstraints"]);
  EXPECT_EQ(pod["affinity"]["nodeAffinity"], spec["worker"]["nodeAffinity"]);
  EXPECT_TRUE(pod["affinity"].contains("podAntiAffinity")) << "spreadAcrossNodes is kept";
  EXPECT_EQ(volume_named(pod, "cache"), spec["worker"]["volumes"][0]);
  EXPECT_EQ(pod["containers"][0]["volumeMounts"].back(), spec["worker"]["volumeMounts"][0]);

  const json plain = render_fresh(deployment(testing::v3_spec())).statefulsets[0];
  const json& plain_pod = plain["spec"]["template"]["spec"];
  EXPECT_EQ(plain_pod["automountServiceAccountToken"], false);
  for (const char* key : {"serviceAccountName", "imagePullSecrets", "priorityClassName",
                          "topologySpreadConstraints", "affinity"}) {
    EXPECT_FALSE(plain_pod.contains(key)) << key;
  }
}

TEST(Render, MetricsHaveTheirOwnPort) {
  json spec = v3_spec();
  spec["worker"]["metricsPort"] = 9400;
  const Rendered r = render_fresh(deployment(spec));
  const json& c = worker_container(r.statefulsets[0]);
  EXPECT_EQ(c["ports"][2],
            (json{{"name", "metrics"}, {"containerPort", 9400}, {"protocol", "TCP"}}));
  const json args = c["args"];
  const auto flag = std::find(args.begin(), args.end(), "--metrics-port");
  ASSERT_NE(flag, args.end());
  EXPECT_EQ(*(flag + 1), "9400");
}

TEST(Render, NetworkPolicyAdmitsTheApiFromItsPeersAndMetricsFromMonitoringAndTheOperator) {
  json spec = v3_spec();
  spec["networkPolicy"]["apiFrom"] = json::parse(
      R"([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}])");
  spec["networkPolicy"]["metricsFrom"] = json::parse(
      R"([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])");
  const ModelDeployment md = deployment(spec);
  const Rendered r = render(md, plan(md, Observed{}), {"moeserve-system"});
  ASSERT_TRUE(r.network_policy.has_value());
  const json& np = *r.network_policy;
  EXPECT_EQ(np["apiVersion"], "networking.k8s.io/v1");
  EXPECT_EQ(np["spec"]["podSelector"]["matchLabels"], worker_selector("ds"));
  EXPECT_EQ(np["spec"]["policyTypes"], json::array({"Ingress"}));
  const json& ingress = np["spec"]["ingress"];
  ASSERT_EQ(ingress.size(), 2u) << "the API and metrics ports, nothing else";
  EXPECT_EQ(ingress[0]["ports"], json::parse(R"([{"port": 8000, "protocol": "TCP"}])"));
  EXPECT_EQ(ingress[0]["from"], spec["networkPolicy"]["apiFrom"]);
  EXPECT_EQ(ingress[1]["ports"], json::parse(R"([{"port": 9090, "protocol": "TCP"}])"));
  EXPECT_EQ(ingress[1]["from"], json::parse(R"([
      {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
      {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "moeserve-system"}},
       "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}}}])"));

  // Defaults: the API from the deployment's own namespace; without an operator
  // namespace and metricsFrom nobody reaches the metrics port.
  const Rendered plain = render_fresh(deployment(testing::v3_spec()));
  const json& plain_ingress = (*plain.network_policy)["spec"]["ingress"];
  ASSERT_EQ(plain_ingress.size(), 1u);
  EXPECT_EQ(plain_ingress[0]["from"], json::parse(R"([{"podSelector": {}}])"));
}

TEST(Render, NetworkPolicyAdmitsTheGatewaysPodsToTheApiPort) {
  const json gateway = json::parse(R"(
      {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "moeserve-system"}},
       "podSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}}})");
  // Beside the default peer (the deployment's namespace) ...
  const ModelDeployment plain = deployment(v3_spec());
  RenderOptions options;
  options.gateway_namespace = "moeserve-system";
  const Rendered r = render(plain, plan(plain, Observed{}), options);
  EXPECT_EQ((*r.network_policy)["spec"]["ingress"][0]["from"],
            json::array({json::parse(R"({"podSelector": {}})"), gateway}));
  // ... and beside explicit peers; naming the gateway in apiFrom admits it alone.
  json spec = v3_spec();
  spec["networkPolicy"]["apiFrom"] = json::array({gateway});
  const ModelDeployment only_gateway = deployment(spec);
  const Rendered g = render(only_gateway, plan(only_gateway, Observed{}), options);
  EXPECT_EQ((*g.network_policy)["spec"]["ingress"][0]["from"], json::array({gateway}));
  // Without a gateway namespace nothing is added.
  EXPECT_EQ((*render_fresh(plain).network_policy)["spec"]["ingress"][0]["from"].size(), 1u);
}

TEST(Render, GroupNetworkPolicyAdmitsOnlyTheGroupsOwnPodsOnEveryPort) {
  const ModelDeployment md = deployment(v3_spec());
  const json np = render_group_network_policy(md, 1);
  EXPECT_EQ(np["metadata"]["name"], "ds-g1");
  EXPECT_EQ(np["spec"]["podSelector"]["matchLabels"], group_selector("ds", 1));
  ASSERT_EQ(np["spec"]["ingress"].size(), 1u);
  const json& rule = np["spec"]["ingress"][0];
  EXPECT_FALSE(rule.contains("ports")) << "gloo and NCCL listen on ephemeral ports";
  EXPECT_EQ(rule["from"],
            json::array({{{"podSelector", {{"matchLabels", group_selector("ds", 1)}}}}}));
}

TEST(Render, NetworkPoliciesOffRendersNone) {
  json spec = v3_spec();
  spec["networkPolicy"]["enabled"] = false;
  const Rendered r = render_fresh(deployment(spec));
  EXPECT_FALSE(r.network_policy.has_value());
  EXPECT_TRUE(r.group_network_policies.empty());
}

ObservedGroup group(int32_t index, const std::string& hash, bool terminating = false) {
  ObservedGroup g;
  g.index = index;
  g.template_hash = hash;
  g.desired_pods = 2;
  g.ready_pods = 2;
  g.terminating = terminating;
  return g;
}

TEST(StaleNetworkPolicies, OnlyPoliciesOfGroupsThatAreGoneOrAllWhenOff) {
  const ModelDeployment md = deployment(v3_spec());
  const std::string hash = plan(md, Observed{}).template_hash;
  Observed observed;
  observed.groups = {group(0, hash), group(1, hash), group(2, hash, true)};
  observed.network_policies = {"ds", "ds-g0", "ds-g1", "ds-g2", "ds-g3"};
  const Plan p = plan(md, observed);
  // ds-g2 is terminating: its pods still drain through their collectives.
  EXPECT_EQ(stale_network_policies(md, p, observed), std::vector<std::string>{"ds-g3"});
  const Rendered r = render(md, p);
  std::vector<std::string> rendered;
  for (const json& np : r.group_network_policies) rendered.push_back(np["metadata"]["name"]);
  EXPECT_EQ(rendered, (std::vector<std::string>{"ds-g0", "ds-g1"}));

  json off = v3_spec();
  off["networkPolicy"]["enabled"] = false;
  const ModelDeployment md_off = deployment(off);
  EXPECT_EQ(stale_network_policies(md_off, plan(md_off, observed), observed),
            observed.network_policies);
}

}  // namespace
}  // namespace moeserve::deployment
