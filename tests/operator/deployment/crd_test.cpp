// The CRD (deploy/crds) and the operator's C++ types must agree: same defaults, every
// schema bound and CEL rule enforced by validate(), and every example valid.
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/yaml_json.h"
#include "operator/deployment/parse.h"
#include "operator/deployment/serialize.h"
#include "operator/deployment/types.h"
#include "operator/deployment/validate.h"
#include "tests/support/test_util.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;

std::filesystem::path source_dir() { return moeserve::testing::source_dir(); }

// The one document of a YAML file; a test failure (and null) when unreadable.
json load_yaml_file(const std::filesystem::path& path) {
  auto docs = load_yaml_documents(path.string());
  EXPECT_TRUE(docs.ok() && docs->size() == 1) << path << ": " << docs.status().to_string();
  return docs.ok() && docs->size() == 1 ? (*docs)[0] : json();
}

json load_crd() {
  return load_yaml_file(source_dir() / "deploy/crds/modeldeployments.moeserve.io.yaml");
}

const json& version_of(const json& crd) { return crd["spec"]["versions"][0]; }
const json& root_schema(const json& crd) { return version_of(crd)["schema"]["openAPIV3Schema"]; }
const json& spec_schema(const json& crd) { return root_schema(crd)["properties"]["spec"]; }

// Structural defaulting as the API server does it: fill absent properties that have a
// default, then recurse into every present property (defaulted ones included).
void apply_defaults(const json& schema, json* value) {
  if (value->is_object() && schema.contains("properties")) {
    for (const auto& [key, prop] : schema["properties"].items()) {
      if (!value->contains(key) && prop.contains("default")) (*value)[key] = prop["default"];
      if (value->contains(key)) apply_defaults(prop, &(*value)[key]);
    }
  } else if (value->is_array() && schema.contains("items")) {
    for (json& item : *value) apply_defaults(schema["items"], &item);
  }
}

// A spec that passes every rule and sets a value in every list, so the walkers below
// can reach item fields.
json valid_spec() {
  return json::parse(R"({
    "model": {"source": "hf://org/model", "routedExperts": 8, "moeLayers": 2},
    "replicas": 2,
    "parallelism": {"expertParallel": 4, "ranksPerPod": 2, "redundantExperts": 4},
    "worker": {"image": "img:1",
               "resources": {"limits": {"nvidia.com/gpu": "2"}},
               "tolerations": [{"key": "k", "operator": "Equal", "value": "v",
                                "effect": "NoSchedule"}],
               "env": [{"name": "A", "value": "b"}],
               "imagePullSecrets": [{"name": "regcred"}],
               "volumes": [{"name": "cache", "emptyDir": {}}],
               "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
               "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                              "whenUnsatisfiable": "ScheduleAnyway"}]},
    "engine": {"extraArgs": ["--threads", "2"], "env": [{"name": "B", "value": "c"}]},
    "autoscaling": {"enabled": true, "minReplicas": 1, "maxReplicas": 3,
                    "targetTokensPerSecondPerGroup": 100},
    "auth": {"secretName": "keys", "key": "api-keys"},
    "networkPolicy": {"apiFrom": [{"podSelector": {}}], "metricsFrom": [{"podSelector": {}}]}
  })");
}

json object_with(json spec) {
  return {{"apiVersion", "moeserve.io/v1alpha1"},
          {"kind", "ModelDeployment"},
          {"metadata", {{"name", "m"}, {"namespace", "ns"}}},
          {"spec", std::move(spec)}};
}

std::vector<FieldError> errors_of(const json& object) {
  return parse_model_deployment(object).errors;
}

bool has_error_at(const std::vector<FieldError>& errors, const std::string& path) {
  for (const FieldError& e : errors) {
    if (e.path == path) return true;
  }
  return false;
}

TEST(Crd, NamesScopeAndVersion) {
  const json crd = load_crd();
  EXPECT_EQ(crd["apiVersion"], "apiextensions.k8s.io/v1");
  EXPECT_EQ(crd["kind"], "CustomResourceDefinition");
  EXPECT_EQ(crd["metadata"]["name"], "modeldeployments.moeserve.io");
  EXPECT_EQ(crd["spec"]["group"], std::string(kGroup));
  EXPECT_EQ(crd["spec"]["scope"], "Namespaced");
  const json& names = crd["spec"]["names"];
  EXPECT_EQ(names["kind"], std::string(kKind));
  EXPECT_EQ(names["plural"], "modeldeployments");
  EXPECT_EQ(names["singular"], "modeldeployment");
  EXPECT_EQ(names["shortNames"], json::array({"mdep"}));
  ASSERT_EQ(crd["spec"]["versions"].size(), 1u);
  const json& v = version_of(crd);
  EXPECT_EQ(v["name"], std::string(kVersion));
  EXPECT_EQ(v["served"], true);
  EXPECT_EQ(v["storage"], true);
}

TEST(Crd, StatusAndScaleSubresources) {
  const json crd = load_crd();
  const json& sub = version_of(crd)["subresources"];
  EXPECT_TRUE(sub["status"].is_object());
  EXPECT_EQ(sub["scale"]["specReplicasPath"], ".spec.replicas");
  EXPECT_EQ(sub["scale"]["statusReplicasPath"], ".status.replicas");
  EXPECT_EQ(sub["scale"]["labelSelectorPath"], ".status.selector");
}

TEST(Crd, PrinterColumns) {
  const json crd = load_crd();
  const json& columns = version_of(crd)["additionalPrinterColumns"];
  std::map<std::string, std::string> paths;
  for (const json& c : columns) paths[c["name"]] = c["jsonPath"];
  EXPECT_EQ(paths["Ready"], R"(.status.conditions[?(@.type=="Ready")].status)");
  EXPECT_EQ(paths["Replicas"], ".status.replicas");
  EXPECT_EQ(paths["Tokens/s"], ".status.tokensPerSecond");
  EXPECT_EQ(paths["$/Mtok"], ".status.costPerMillionTokens");
  EXPECT_EQ(paths["Age"], ".metadata.creationTimestamp");
}

TEST(Crd, SchemaDefaultsEqualOperatorDefaults) {
  const json crd = load_crd();
  json minimal = {{"model", {{"source", "/m"}}}, {"worker", {{"image", "img"}}}};
  json defaulted = minimal;
  apply_defaults(spec_schema(crd), &defaulted);
  std::vector<FieldError> errors;
  const json ours = to_json(parse_spec(minimal, &errors));
  EXPECT_TRUE(errors.empty()) << join_errors(errors);
  EXPECT_EQ(defaulted, ours) << "CRD:      " << defaulted.dump() << "\noperator: " << ours.dump();
}

TEST(Crd, StatusSchemaCoversEveryStatusField) {
  const json crd = load_crd();
  const json& props = root_schema(crd)["properties"]["status"]["properties"];
  ModelDeploymentStatus status;
  status.tokens_per_second = 1;
  status.cost_per_million_tokens = 1;
  status.placement = PlacementStatus{1, 1};
  status.conditions.push_back({"Ready", "True", "R", "m", 1, "2026-01-01T00:00:00Z"});
  const json written = to_json(status);
  for (const auto& [key, value] : written.items()) {
    EXPECT_TRUE(props.contains(key)) << key;
  }
  for (const auto& [key, value] : written["conditions"][0].items()) {
    EXPECT_TRUE(props["conditions"]["items"]["properties"].contains(key)) << key;
  }
}

// One (path in the spec, schema) per property, items of lists reached through index 0.
struct SchemaField {
  json::json_pointer pointer;
  std::string path;  // "spec.worker.env[0].name"
  json schema;
};

void collect_fields(const json& schema, const json::json_pointer& pointer, const std::string& path,
                    std::vector<SchemaField>* out) {
  if (!schema.contains("properties")) return;
  for (const auto& [key, prop] : schema["properties"].items()) {
    const json::json_pointer child = pointer / key;
    const std::string child_path = path + "." + key;
    out->push_back({child, child_path, prop});
    collect_fields(prop, child, child_path, out);
    if (prop.contains("items")) {
      out->push_back({child / 0, child_path + "[0]", prop["items"]});
      collect_fields(prop["items"], child / 0, child_path + "[0]", out);
    }
  }
}

// Values that break one bound of `schema`, each from the value in the valid spec.
std::vector<json> violations(const SchemaField& f, const json& valid) {
  std::vector<json> out;
  const json& s = f.schema;
  if (s.contains("minimum")) {
    const bool exclusive = s.value("exclusiveMinimum", false);
    out.push_back(exclusive ? s["minimum"] : json(s["minimum"].get<double>() - 1));
    if (s["type"] == "integer") out.back() = out.back().get<int64_t>();
  }
  if (s.contains("maximum")) out.push_back(s["maximum"].get<int64_t>() + 1);
  if (s.contains("enum")) out.push_back("bogus");
  if (s.contains("pattern")) out.push_back("not a quantity");
  if (s.contains("minLength")) out.push_back(std::string(s["minLength"].get<size_t>() - 1, 'a'));
  if (s.contains("maxLength")) out.push_back(std::string(s["maxLength"].get<size_t>() + 1, 'a'));
  if (s.contains("maxItems")) {
    out.push_back(json::array());
    for (size_t i = 0; i <= s["maxItems"].get<size_t>(); ++i) out.back().push_back(valid[0]);
  }
  return out;
}

TEST(Crd, EverySchemaBoundIsEnforcedByValidate) {
  const json crd = load_crd();
  const json base = valid_spec();
  ASSERT_EQ(join_errors(errors_of(object_with(base))), "");
  std::vector<SchemaField> fields;
  collect_fields(spec_schema(crd), json::json_pointer(), "spec", &fields);
  int checked = 0;
  for (const SchemaField& f : fields) {
    const json valid = base.contains(f.pointer) ? base[f.pointer] : json();
    for (const json& bad : violations(f, valid)) {
      json spec = base;
      spec[f.pointer] = bad;
      const std::vector<FieldError> errors = errors_of(object_with(spec));
      EXPECT_TRUE(has_error_at(errors, f.path))
          << f.path << " = " << bad.dump().substr(0, 60) << " gave: " << join_errors(errors);
      ++checked;
    }
  }
  EXPECT_GE(checked, 30);
}

TEST(Crd, EveryRequiredFieldIsEnforcedByValidate) {
  const json crd = load_crd();
  const json base = valid_spec();
  std::vector<SchemaField> fields;
  collect_fields(spec_schema(crd), json::json_pointer(), "spec", &fields);
  fields.push_back({json::json_pointer(), "spec", spec_schema(crd)});
  int checked = 0;
  for (const SchemaField& f : fields) {
    if (!f.schema.contains("required") || !base.contains(f.pointer)) continue;
    for (const json& key : f.schema["required"]) {
      json spec = base;
      spec[f.pointer].erase(key.get<std::string>());
      const std::string prefix = f.path + "." + key.get<std::string>();
      bool found = false;
      for (const FieldError& e : errors_of(object_with(spec))) {
        found = found || e.path.rfind(prefix, 0) == 0;
      }
      EXPECT_TRUE(found) << "removing " << prefix << " is not reported";
      ++checked;
    }
  }
  EXPECT_GE(checked, 5);
}

// Each CEL rule of the CRD, with a change that breaks it and the field the operator
// must then name. A rule added to the CRD without an entry here fails the test.
struct CelCase {
  std::function<void(json* object)> breaks;
  std::string path;
};

std::map<std::string, CelCase> cel_cases() {
  std::map<std::string, CelCase> cases;
  auto rule = [&](std::string_view fragment, std::function<void(json*)> f, std::string path) {
    cases[std::string(fragment)] = {std::move(f), std::move(path)};
  };
  rule(
      "size(self.metadata.name)", [](json* o) { (*o)["metadata"]["name"] = std::string(41, 'a'); },
      "metadata.name");
  rule(
      "self.parallelism.redundantExperts == 0",
      [](json* o) { (*o)["spec"]["model"].erase("moeLayers"); },
      "spec.parallelism.redundantExperts");
  rule(
      "% self.parallelism.expertParallel == 0",
      [](json* o) { (*o)["spec"]["parallelism"]["redundantExperts"] = 3; },
      "spec.parallelism.expertParallel");
  rule(
      "self.source.startsWith('hf://')",
      [](json* o) { (*o)["spec"]["model"]["source"] = "hf://org"; }, "spec.model.source");
  rule(
      "has(self.model.downloaderImage) || has(self.worker.image)",
      [](json* o) {
        (*o)["spec"]["engine"] = {{"kind", "vllm"}, {"image", "vllm/vllm-openai:v0.11.0"}};
        (*o)["spec"]["worker"].erase("image");
        (*o)["spec"]["worker"].erase("extraArgs");
      },
      "spec.model.downloaderImage");
  rule(
      "!has(self.cacheClaim)",
      [](json* o) { (*o)["spec"]["model"]["cacheClaim"] = "hf-cache"; },  // source unpinned
      "spec.model.cacheClaim");
  rule(
      "self.expertParallel % self.ranksPerPod == 0",
      [](json* o) { (*o)["spec"]["parallelism"]["ranksPerPod"] = 3; },
      "spec.parallelism.expertParallel");
  rule(
      "self.port != self.rendezvousPort",
      [](json* o) { (*o)["spec"]["worker"]["rendezvousPort"] = 8000; },
      "spec.worker.rendezvousPort");
  rule(
      "self.metricsPort != self.port",
      [](json* o) { (*o)["spec"]["worker"]["metricsPort"] = 8000; }, "spec.worker.metricsPort");
  rule(
      "self.operator != 'Exists'",
      [](json* o) { (*o)["spec"]["worker"]["tolerations"][0]["operator"] = "Exists"; },
      "spec.worker.tolerations[0].value");
  rule(
      "!self.name.startsWith('MOESERVE_')",
      [](json* o) { (*o)["spec"]["worker"]["env"][0]["name"] = "MOESERVE_RANK"; },
      "spec.worker.env[0].name");
  rule(
      "!(has(self.value) && has(self.valueFrom))",
      [](json* o) { (*o)["spec"]["worker"]["env"][0]["valueFrom"] = json::object(); },
      "spec.worker.env[0]");
  rule(
      "!has(self.scaleToZeroAfterIdleSeconds) || self.enabled",
      [](json* o) {
        (*o)["spec"]["autoscaling"]["enabled"] = false;
        (*o)["spec"]["autoscaling"]["scaleToZeroAfterIdleSeconds"] = 600;
      },
      "spec.autoscaling.scaleToZeroAfterIdleSeconds");
  rule(
      "self.minReplicas <= self.maxReplicas",
      [](json* o) { (*o)["spec"]["autoscaling"]["minReplicas"] = 4; },
      "spec.autoscaling.maxReplicas");
  rule(
      "!self.enabled || has(self.targetTokensPerSecondPerGroup)",
      [](json* o) { (*o)["spec"]["autoscaling"].erase("targetTokensPerSecondPerGroup"); },
      "spec.autoscaling");
  rule(
      "has(self.worker.image) || has(self.engine.image)",
      [](json* o) { (*o)["spec"]["worker"].erase("image"); }, "spec.worker.image");
  rule(
      "self.engine.kind == 'moeserve' || !has(self.worker.extraArgs)",
      [](json* o) {
        (*o)["spec"]["engine"] = {{"kind", "vllm"}};
        (*o)["spec"]["worker"]["extraArgs"] = {"--threads", "2"};
      },
      "spec.worker.extraArgs");
  rule(
      "self.engine.kind == 'moeserve' || !has(self.model.moeLayers)",
      [](json* o) {
        (*o)["spec"]["engine"] = {{"kind", "sglang"}};
      },
      "spec.model.moeLayers");
  rule(
      "!self.name.startsWith(\"MOESERVE_\")",
      [](json* o) {
        (*o)["spec"]["engine"]["env"] = {{{"name", "MOESERVE_RANK"}}};
      },
      "spec.engine.env[0].name");
  rule(
      "!(has(self.valueFrom) && has(self.value))",
      [](json* o) {
        (*o)["spec"]["engine"]["env"] = {
            {{"name", "A"}, {"value", "b"}, {"valueFrom", json::object()}}};
      },
      "spec.engine.env[0]");
  return cases;
}

void collect_rules(const json& schema, std::vector<std::string>* out) {
  if (!schema.is_object()) return;
  if (schema.contains("x-kubernetes-validations")) {
    for (const json& v : schema["x-kubernetes-validations"]) out->push_back(v["rule"]);
  }
  for (const char* key : {"properties", "items"}) {
    if (!schema.contains(key)) continue;
    if (std::string(key) == "items") {
      collect_rules(schema[key], out);
    } else {
      for (const auto& [name, prop] : schema[key].items()) collect_rules(prop, out);
    }
  }
}

TEST(Crd, EveryCelRuleIsEnforcedByValidate) {
  std::vector<std::string> rules;
  const json crd = load_crd();
  collect_rules(root_schema(crd), &rules);
  const std::map<std::string, CelCase> cases = cel_cases();
  ASSERT_EQ(rules.size(), cases.size());
  for (const std::string& rule : rules) {
    const CelCase* found = nullptr;
    for (const auto& [fragment, c] : cases) {
      if (rule.find(fragment) != std::string::npos) found = &c;
    }
    ASSERT_NE(found, nullptr) << "no operator check listed for CEL rule: " << rule;
    json object = object_with(valid_spec());
    found->breaks(&object);
    const std::vector<FieldError> errors = errors_of(object);
    EXPECT_TRUE(has_error_at(errors, found->path))
        << rule << " -> expected " << found->path << ", got: " << join_errors(errors);
  }
}

TEST(Crd, ScaleToZeroNeedsAutoscalingWithTheOperatorsMessage) {
  const json crd = load_crd();
  const json& autoscaling = spec_schema(crd)["properties"]["autoscaling"];
  std::string message;
  for (const json& v : autoscaling["x-kubernetes-validations"]) {
    if (v["rule"] == "!has(self.scaleToZeroAfterIdleSeconds) || self.enabled") {
      message = v["message"];
    }
  }
  EXPECT_EQ(message, "spec.autoscaling.scaleToZeroAfterIdleSeconds: " +
                         std::string(kScaleToZeroNeedsAutoscaling));
  json object = object_with(valid_spec());
  object["spec"]["autoscaling"]["scaleToZeroAfterIdleSeconds"] = 600;
  EXPECT_TRUE(errors_of(object).empty()) << join_errors(errors_of(object));
  object["spec"]["autoscaling"]["enabled"] = false;
  const std::vector<FieldError> errors = errors_of(object);
  ASSERT_EQ(errors.size(), 1u) << join_errors(errors);
  EXPECT_EQ(errors[0].to_string(), message);
}

TEST(Crd, AcceptsEverySpeculativeMethodTheWorkerHas) {
  const json crd = load_crd();
  const json& speculative = spec_schema(crd)["properties"]["speculative"];
  EXPECT_FALSE(speculative.contains("x-kubernetes-validations"));
  EXPECT_EQ(speculative["properties"]["method"]["enum"],
            json::parse(R"(["none", "mtp", "ngram"])"));
  for (const std::string method : {"none", "mtp", "ngram"}) {
    json object = object_with(valid_spec());
    object["spec"]["speculative"] = {{"method", method}, {"draftTokens", 3}};
    EXPECT_TRUE(errors_of(object).empty()) << method << ": " << join_errors(errors_of(object));
  }
  json object = object_with(valid_spec());
  object["spec"]["speculative"] = {{"method", "eagle"}};
  EXPECT_FALSE(errors_of(object).empty());
}

std::vector<std::filesystem::path> examples() {
  std::vector<std::filesystem::path> out;
  for (const auto& entry : std::filesystem::directory_iterator(source_dir() / "deploy/examples")) {
    if (entry.path().extension() == ".yaml") out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Crd, EveryExampleIsValidAndKeepsItsValuesThroughTheOperator) {
  const json crd = load_crd();
  const std::vector<std::filesystem::path> files = examples();
  ASSERT_GE(files.size(), 3u);
  for (const auto& file : files) {
    SCOPED_TRACE(file.filename().string());
    const json object = load_yaml_file(file);
    EXPECT_EQ(object["apiVersion"], std::string(kApiVersion));
    EXPECT_EQ(object["kind"], std::string(kKind));
    const ModelDeployment md = parse_model_deployment(object);
    EXPECT_TRUE(md.valid()) << join_errors(md.errors);
    EXPECT_TRUE(md.spec.autoscaling.enabled);
    EXPECT_GT(md.spec.cost.gpu_hour_usd + md.spec.cost.pod_hour_usd, 0);
    json defaulted = object["spec"];
    apply_defaults(spec_schema(crd), &defaulted);
    EXPECT_EQ(defaulted, to_json(md.spec));
  }
}

TEST(Crd, DeepSeekV3ExampleIsTwoGroupsOfSixteenH200Ranks) {
  const ModelDeployment md = parse_model_deployment(
      load_yaml_file(source_dir() / "deploy/examples/deepseek-v3-fp8-h200.yaml"));
  ASSERT_TRUE(md.valid()) << join_errors(md.errors);
  EXPECT_EQ(md.spec.replicas, 2);
  EXPECT_EQ(md.spec.parallelism.expert_parallel, 16);
  EXPECT_EQ(md.spec.parallelism.ranks_per_pod, 8);
  EXPECT_EQ(gpus_per_pod(md.spec.worker), 8);
  EXPECT_EQ(md.spec.model.precision, Precision::kFp8);
  EXPECT_TRUE(md.spec.worker.spread_across_nodes);
  EXPECT_EQ(md.spec.speculative.method, SpeculativeMethod::kNone) << "MTP is not implemented";
}

}  // namespace
}  // namespace moeserve::deployment
