#include "operator/deployment/types.h"
#include "operator/deployment/parse.h"
#include "operator/deployment/serialize.h"
#include "operator/deployment/validate.h"

#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace moeserve::deployment {
namespace {

using nlohmann::json;

json minimal_spec() { return {{"model", {{"source", "/m"}}}, {"worker", {{"image", "img"}}}}; }

ModelDeploymentSpec parse_ok(const json& spec) {
  std::vector<FieldError> errors;
  ModelDeploymentSpec s = parse_spec(spec, &errors);
  EXPECT_TRUE(errors.empty()) << join_errors(errors);
  return s;
}

TEST(ParseSpec, AbsentFieldsTakeTheDefaults) {
  const ModelDeploymentSpec s = parse_ok(minimal_spec());
  EXPECT_EQ(s.model.source, "/m");
  EXPECT_EQ(s.model.precision, Precision::kFp8);
  EXPECT_FALSE(s.model.routed_experts.has_value());
  EXPECT_EQ(s.replicas, 1);
  EXPECT_EQ(s.parallelism.expert_parallel, 1);
  EXPECT_EQ(s.parallelism.ranks_per_pod, 1);
  EXPECT_EQ(s.parallelism.redundant_experts, 0);
  EXPECT_EQ(s.worker.image_pull_policy, "IfNotPresent");
  EXPECT_EQ(s.worker.port, 8000);
  EXPECT_EQ(s.worker.rendezvous_port, 29500);
  EXPECT_EQ(s.worker.metrics_port, 9090);
  EXPECT_FALSE(s.worker.spread_across_nodes);
  EXPECT_FALSE(s.auth.enabled());
  EXPECT_TRUE(s.network_policy.enabled);
  EXPECT_EQ(s.speculative.method, SpeculativeMethod::kNone);
  EXPECT_FALSE(s.autoscaling.enabled);
  EXPECT_EQ(s.autoscaling.scale_down_stabilization_seconds, 300);
  EXPECT_EQ(s.cost.gpu_hour_usd, 0);
  EXPECT_EQ(s.progress_deadline_seconds, 1800);
  EXPECT_TRUE(validate(s).empty());
}

TEST(ParseSpec, EveryFieldRoundTripsThroughJson) {
  const json full = json::parse(R"({
    "model": {"source": "pvc://models/ds/v3", "servedModelName": "v3", "precision": "bf16",
              "routedExperts": 256, "moeLayers": 58, "downloaderImage": "dl:1"},
    "replicas": 3,
    "parallelism": {"expertParallel": 16, "ranksPerPod": 8, "redundantExperts": 32},
    "worker": {"image": "w:1", "imagePullPolicy": "Always",
               "resources": {"requests": {"cpu": "4", "nvidia.com/gpu": "8"},
                             "limits": {"nvidia.com/gpu": "8"}},
               "nodeSelector": {"pool": "h200"},
               "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule",
                                "tolerationSeconds": 30}],
               "env": [{"name": "A", "value": "1"},
                       {"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
               "extraArgs": ["--max-num-seqs", "64"],
               "spreadAcrossNodes": true, "port": 9000, "rendezvousPort": 9001,
               "metricsPort": 9002, "sharedMemorySize": "64Gi",
               "serviceAccountName": "llm", "imagePullSecrets": [{"name": "regcred"}],
               "volumes": [{"name": "cache", "emptyDir": {"medium": "Memory"}}],
               "volumeMounts": [{"name": "cache", "mountPath": "/cache", "readOnly": true}],
               "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                   {"nodeSelectorTerms": [{"matchExpressions":
                       [{"key": "gpu", "operator": "In", "values": ["h200"]}]}]}},
               "priorityClassName": "inference",
               "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                              "whenUnsatisfiable": "DoNotSchedule"}]},
    "engine": {"kind": "moeserve", "image": "e:1", "extraArgs": ["--threads", "2"],
               "env": [{"name": "B", "value": "2"}]},
    "speculative": {"method": "none", "draftTokens": 2},
    "autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 9,
                    "targetTokensPerSecondPerGroup": 30000.5, "maxCostPerMillionTokens": 0.5,
                    "ttftP95SloSeconds": 2.5, "scaleDownStabilizationSeconds": 60,
                    "scaleToZeroAfterIdleSeconds": 900},
    "cost": {"gpuHourUsd": 2.75, "podHourUsd": 0.25},
    "auth": {"secretName": "llm-keys", "key": "keys"},
    "gateway": {"queueSize": 8, "queueTimeoutSeconds": 30},
    "networkPolicy": {"enabled": false,
                      "apiFrom": [{"namespaceSelector": {"matchLabels": {"team": "gw"}}}],
                      "metricsFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
    "gateway": {"queueSize": 8, "queueTimeoutSeconds": 30},
    "progressDeadlineSeconds": 600
  })");
  const ModelDeploymentSpec s = parse_ok(full);
  EXPECT_EQ(to_json(s), full);
  EXPECT_TRUE(validate(s).empty()) << join_errors(validate(s));
  EXPECT_EQ(s.worker.tolerations[0].op, "Exists");
  EXPECT_EQ(s.worker.env[1].value_from["secretKeyRef"]["name"], "s");
  EXPECT_EQ(*s.autoscaling.target_tokens_per_second_per_group, 30000.5);
}

TEST(ParseSpec, IntegerQuantitiesAreReadAsStrings) {
  json spec = minimal_spec();
  spec["worker"]["resources"] = {{"limits", {{"nvidia.com/gpu", 8}, {"cpu", 0.5}}}};
  spec["parallelism"] = {{"expertParallel", 8}, {"ranksPerPod", 8}};
  const ModelDeploymentSpec s = parse_ok(spec);
  EXPECT_EQ(s.worker.resources.limits.at("nvidia.com/gpu"), "8");
  EXPECT_EQ(s.worker.resources.limits.at("cpu"), "0.5");
  EXPECT_EQ(gpus_per_pod(s.worker), 8);
}

TEST(ParseSpec, WrongTypesAreReportedWithTheirPathAndKeepDefaults) {
  json spec = minimal_spec();
  spec["replicas"] = "two";
  spec["parallelism"] = {{"expertParallel", 1.5}};
  spec["model"]["precision"] = "fp16";
  spec["worker"]["env"] = {{"name", "A"}};
  spec["worker"]["extraArgs"] = json::array({"--a", 3});
  spec["speculative"] = "mtp";
  std::vector<FieldError> errors;
  const ModelDeploymentSpec s = parse_spec(spec, &errors);
  const std::vector<FieldError> expected = {
      {"spec.model.precision", "must be one of fp8, bf16, auto (got \"fp16\")"},
      {"spec.replicas", "must be an integer"},
      {"spec.parallelism.expertParallel", "must be an integer"},
      {"spec.worker.env", "must be a list"},
      {"spec.worker.extraArgs[1]", "must be a string"},
      {"spec.speculative", "must be an object"},
  };
  EXPECT_EQ(errors, expected) << join_errors(errors);
  EXPECT_EQ(s.replicas, 1);
  EXPECT_EQ(s.parallelism.expert_parallel, 1);
  EXPECT_EQ(s.worker.extra_args, std::vector<std::string>{"--a"});
}

TEST(ParseSpec, WholeFloatsAreIntegers) {
  json spec = minimal_spec();
  spec["replicas"] = 3.0;
  EXPECT_EQ(parse_ok(spec).replicas, 3);
}

TEST(ModelSource, Table) {
  struct Case {
    std::string text;
    bool ok;
    ModelSource::Kind kind;
    std::string repo, claim, path;
  };
  using K = ModelSource::Kind;
  const std::vector<Case> cases = {
      {"hf://deepseek-ai/DeepSeek-V3", true, K::kHuggingFace, "deepseek-ai/DeepSeek-V3", "", ""},
      {"hf://org", false, K::kPath, "", "", ""},
      {"hf://org/name/extra", false, K::kPath, "", "", ""},
      {"hf://org/name@v1.0", true, K::kHuggingFace, "org/name", "", ""},
      {"hf://org/name@refs/pr/3", true, K::kHuggingFace, "org/name", "", ""},
      {"hf://org/name@../x", false, K::kPath, "", "", ""},
      {"hf://org/name@", false, K::kPath, "", "", ""},
      {"pvc://models", true, K::kPvc, "", "models", ""},
      {"pvc://models/ds/v3", true, K::kPvc, "", "models", "ds/v3"},
      {"pvc://Models/x", false, K::kPath, "", "", ""},
      {"/opt/models/tiny", true, K::kPath, "", "", "/opt/models/tiny"},
      {"models/tiny", false, K::kPath, "", "", ""},
      {"s3://bucket/x", false, K::kPath, "", "", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const std::optional<ModelSource> s = parse_model_source(c.text);
    ASSERT_EQ(s.has_value(), c.ok);
    if (!c.ok) continue;
    EXPECT_EQ(s->kind, c.kind);
    EXPECT_EQ(s->repo, c.repo);
    EXPECT_EQ(s->claim, c.claim);
    EXPECT_EQ(s->path, c.path);
  }
}

TEST(ServedModelName, DefaultsToTheLastSegmentOfTheSource) {
  ModelSpec m;
  m.source = "hf://deepseek-ai/DeepSeek-V3";
  EXPECT_EQ(served_model_name(m), "DeepSeek-V3");
  m.source = "hf://deepseek-ai/DeepSeek-V3@refs/pr/3";  // a revision is not in the name
  EXPECT_EQ(served_model_name(m), "DeepSeek-V3");
  m.source = "pvc://models/";
  EXPECT_EQ(served_model_name(m), "models");
  m.served_model_name = "v3";
  EXPECT_EQ(served_model_name(m), "v3");
}

// Sets nvidia.com/gpu (a helper: GCC 12 warns falsely on assigning short literals here).
void set_gpus(std::map<std::string, std::string>* quantities, std::string value) {
  quantities->insert_or_assign(std::string(kGpuResource), std::move(value));
}

// A valid spec with GPUs, experts and autoscaling, for the validation table.
ModelDeploymentSpec valid() {
  json spec = minimal_spec();
  spec["model"]["routedExperts"] = 256;
  spec["model"]["moeLayers"] = 58;
  spec["parallelism"] = {{"expertParallel", 16}, {"ranksPerPod", 8}, {"redundantExperts", 32}};
  spec["worker"]["resources"] = {{"limits", {{"nvidia.com/gpu", "8"}}}};
  spec["autoscaling"] = {{"enabled", true}, {"maxReplicas", 4}, {"maxCostPerMillionTokens", 1}};
  return parse_ok(spec);
}

TEST(Validate, Table) {
  struct Case {
    std::string name;
    std::function<void(ModelDeploymentSpec&)> change;
    std::vector<std::string> expected;  // FieldError::to_string(), in order
  };
  const std::vector<Case> cases = {
      {"valid", [](auto&) {}, {}},
      {"ep not divisible by ranks per pod",
       [](auto& s) {
         s.parallelism.ranks_per_pod = 3;
         set_gpus(&s.worker.resources.limits, "3");
       },
       {"spec.parallelism.expertParallel: must be divisible by ranksPerPod (16 % 3 != 0)"}},
      {"slots not divisible by ep",
       [](auto& s) { s.parallelism.redundant_experts = 8; },
       {"spec.parallelism.expertParallel: must divide routedExperts + redundantExperts (264 % 16 "
        "!= 0): every rank holds as many slots"}},
      {"redundant experts without model shape",
       [](auto& s) { s.model.moe_layers.reset(); },
       {"spec.parallelism.redundantExperts: needs spec.model.routedExperts and "
        "spec.model.moeLayers"}},
      {"gpus differ from ranks per pod",
       [](auto& s) { set_gpus(&s.worker.resources.limits, "4"); },
       {"spec.worker.resources.limits[nvidia.com/gpu]: must equal spec.parallelism.ranksPerPod, "
        "one GPU per rank (4 != 8)"}},
      {"fractional gpus",
       [](auto& s) { set_gpus(&s.worker.resources.limits, "1.5"); },
       {"spec.worker.resources.limits[nvidia.com/gpu]: must be a whole number (got \"1.5\")"}},
      {"gpu request differs from limit",
       [](auto& s) { set_gpus(&s.worker.resources.requests, "2"); },
       {"spec.worker.resources.requests[nvidia.com/gpu]: must equal the limit (2 != 8)"}},
      {"zero gpus is a CPU deployment",
       [](auto& s) { set_gpus(&s.worker.resources.limits, "0"); },
       {}},
      {"min above max",
       [](auto& s) { s.autoscaling.min_replicas = 5; },
       {"spec.autoscaling.maxReplicas: must be >= minReplicas (4 < 5)"}},
      {"autoscaling without a target",
       [](auto& s) { s.autoscaling.max_cost_per_million_tokens.reset(); },
       {"spec.autoscaling: enabled needs a target: targetTokensPerSecondPerGroup, "
        "maxCostPerMillionTokens or ttftP95SloSeconds"}},
      {"disabled autoscaling needs no target",
       [](auto& s) {
         s.autoscaling.enabled = false;
         s.autoscaling.max_cost_per_million_tokens.reset();
       },
       {}},
      {"bad source",
       [](auto& s) { s.model.source = "models/x"; },
       {"spec.model.source: must be hf://org/name[@revision], pvc://claim[/path] or an absolute "
        "path (got \"models/x\")"}},
      {"cache claim with a branch",
       [](auto& s) {
         s.model.source = "hf://org/name@main";
         s.model.cache_claim = "hf-cache";
       },
       {"spec.model.cacheClaim: needs a source pinned to a commit, hf://org/name@<40-hex sha> "
        "(got \"hf://org/name@main\")"}},
      {"cache claim with a pinned source",
       [](auto& s) {
         s.model.source = "hf://org/name@0123456789abcdef0123456789abcdef01234567";
         s.model.cache_claim = "hf-cache";
       },
       {}},
      {"cache claim name",
       [](auto& s) {
         s.model.source = "hf://org/name@0123456789abcdef0123456789abcdef01234567";
         s.model.cache_claim = "HF_cache";
       },
       {"spec.model.cacheClaim: must be a PersistentVolumeClaim name: lowercase letters, digits, "
        "'-' and '.' (got \"HF_cache\")"}},
      {"reserved env",
       [](auto& s) {
         s.worker.env.push_back({"MOESERVE_RANK", "3", nullptr});
       },
       {"spec.worker.env[0].name: MOESERVE_* variables are set by the operator (got "
        "\"MOESERVE_RANK\")"}},
      {"same ports",
       [](auto& s) { s.worker.rendezvous_port = 8000; },
       {"spec.worker.rendezvousPort: must differ from spec.worker.port (8000)"}},
      {"negative price",
       [](auto& s) { s.cost.gpu_hour_usd = -1; },
       {"spec.cost.gpuHourUsd: must be >= 0"}},
      {"metrics port clashes",
       [](auto& s) { s.worker.metrics_port = 8000; },
       {"spec.worker.metricsPort: must differ from spec.worker.port and "
        "spec.worker.rendezvousPort (8000)"}},
      {"service account and priority class are object names",
       [](auto& s) {
         s.worker.service_account_name = "Bad_Name";
         s.worker.priority_class_name = "high.prio";
       },
       {"spec.worker.serviceAccountName: must be a DNS subdomain: lowercase letters, digits, "
        "'-' and '.', at most 253 characters (got \"Bad_Name\")"}},
      {"pull secret without a name",
       [](auto& s) { s.worker.image_pull_secrets = {""}; },
       {"spec.worker.imagePullSecrets[0].name: required"}},
      {"volume reusing the operator's name, mount of an unknown volume",
       [](auto& s) {
         s.worker.volumes = {json::parse(R"({"name": "model", "emptyDir": {}})"),
                             json::parse(R"({"name": "a", "emptyDir": {}, "secret": {}})")};
         s.worker.volume_mounts = {json::parse(R"({"name": "b", "mountPath": "/model/"})"),
                                   json::parse(R"({"name": "a", "mountPath": "rel"})")};
       },
       {"spec.worker.volumes[0].name: is a volume the operator renders (got \"model\")",
        "spec.worker.volumes[1]: must set exactly one volume source besides name",
        "spec.worker.volumeMounts[0].name: must name one of spec.worker.volumes (got \"b\")",
        "spec.worker.volumeMounts[0].mountPath: is a path the operator mounts (got \"/model/\")",
        "spec.worker.volumeMounts[1].mountPath: must be an absolute path (got \"rel\")"}},
      {"topology spread constraint as the API server checks it",
       [](auto& s) {
         s.worker.topology_spread_constraints = {
             json::parse(R"({"maxSkew": 0, "whenUnsatisfiable": "Maybe"})")};
       },
       {"spec.worker.topologySpreadConstraints[0].maxSkew: must be an integer >= 1",
        "spec.worker.topologySpreadConstraints[0].topologyKey: required",
        "spec.worker.topologySpreadConstraints[0].whenUnsatisfiable: must be DoNotSchedule or "
        "ScheduleAnyway (got \"Maybe\")"}},
      {"node affinity with a typo",
       [](auto& s) { s.worker.node_affinity = json::parse(R"({"required": {}})"); },
       {"spec.worker.nodeAffinity.required: unknown field: NodeAffinity has "
        "requiredDuringSchedulingIgnoredDuringExecution and "
        "preferredDuringSchedulingIgnoredDuringExecution"}},
      {"auth secret and key names",
       [](auto& s) {
         s.auth = {"Keys!", "a/b"};
       },
       {"spec.auth.secretName: must be a DNS subdomain: lowercase letters, digits, '-' and '.', "
        "at most 253 characters (got \"Keys!\")",
        "spec.auth.key: must be a Secret key: letters, digits, '-', '_' and '.' (got \"a/b\")"}},
      {"network policy peers",
       [](auto& s) {
         s.network_policy.api_from = {json::object(),
                                      json::parse(R"({"ipBlock": {}, "podSelector": {}})")};
         s.network_policy.metrics_from = {json::parse(R"({"namespace": {}})")};
       },
       {"spec.networkPolicy.apiFrom[0]: must set podSelector, namespaceSelector or ipBlock",
        "spec.networkPolicy.apiFrom[1].ipBlock: must not be combined with selectors",
        "spec.networkPolicy.apiFrom[1].ipBlock.cidr: required",
        "spec.networkPolicy.metricsFrom[0].namespace: unknown field: a NetworkPolicyPeer has "
        "podSelector, namespaceSelector and ipBlock"}},
      {"several at once, in field order",
       [](auto& s) {
         s.replicas = -1;
         s.worker.image.clear();
         s.speculative.draft_tokens = 0;
       },
       {"spec.replicas: must be >= 0 (got -1)", "spec.worker.image: required",
        "spec.speculative.draftTokens: must be in 1..8 (got 0)"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ModelDeploymentSpec s = valid();
    c.change(s);
    std::vector<std::string> got;
    for (const FieldError& e : validate(s)) got.push_back(e.to_string());
    EXPECT_EQ(got, c.expected);
  }
}

TEST(ValidateName, LengthAndCharacters) {
  EXPECT_TRUE(validate_name("deepseek-v3").empty());
  EXPECT_TRUE(validate_name(std::string(40, 'a')).empty());
  ASSERT_EQ(validate_name(std::string(41, 'a')).size(), 1u);
  EXPECT_EQ(validate_name("Bad_Name")[0].path, "metadata.name");
  EXPECT_EQ(validate_name("")[0].message, "required");
}

TEST(ParseModelDeployment, ReadsMetadataAndCollectsEveryError) {
  const json object = {
      {"metadata", {{"name", "x"}, {"namespace", "ns"}, {"uid", "u-1"}, {"generation", 7}}},
      {"spec", {{"model", {{"source", "bad"}}}, {"worker", json::object()}, {"replicas", "z"}}}};
  const ModelDeployment md = parse_model_deployment(object);
  EXPECT_EQ(md.metadata.name, "x");
  EXPECT_EQ(md.metadata.namespace_, "ns");
  EXPECT_EQ(md.metadata.uid, "u-1");
  EXPECT_EQ(md.metadata.generation, 7);
  EXPECT_FALSE(md.valid());
  EXPECT_EQ(join_errors(md.errors),
            "spec.replicas: must be an integer; spec.model.source: must be "
            "hf://org/name[@revision], pvc://claim[/path] or an absolute path (got \"bad\"); "
            "spec.worker.image: required");
}

TEST(ParseStatus, RoundTripsThroughJson) {
  ModelDeploymentStatus s;
  s.observed_generation = 4;
  s.desired_replicas = 3;
  s.replicas = 3;
  s.ready_replicas = 2;
  s.updated_replicas = 1;
  s.selector = "a=b";
  s.conditions = {{"Ready", "False", "GroupsNotReady", "2/3", 4, "2026-01-02T03:04:05Z"},
                  {"Degraded", "False", "Healthy", "", 4, "2026-01-01T00:00:00Z"}};
  s.tokens_per_second = 1234.5;
  s.cost_per_million_tokens = 0.25;
  s.placement = PlacementStatus{2, 0.875};
  EXPECT_EQ(parse_status(to_json(s)), s);
  EXPECT_EQ(parse_status(json()), ModelDeploymentStatus{});
}

}  // namespace
}  // namespace moeserve::deployment
