#include "operator/deployment/parse.h"

#include <algorithm>
#include <utility>

#include "operator/deployment/validate.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;

// A string field that must be one of `choices`; anything else is reported and leaves
// *out unchanged.
void read_choice(const JsonReader& r, std::string_view key,
                 const std::vector<std::string_view>& choices, std::string* out) {
  std::string text = *out;
  r.read(key, &text);
  if (std::find(choices.begin(), choices.end(), text) != choices.end()) {
    *out = text;
    return;
  }
  std::string listed;
  for (std::string_view choice : choices) {
    if (!listed.empty()) listed += ", ";
    listed += choice;
  }
  r.fail(r.path(key), "must be one of " + listed + " (got " + json_quoted(text) + ")");
}

// Resource quantities: int-or-string in Kubernetes; kept as strings.
void read_quantities(const JsonReader& r, std::string_view key,
                     std::map<std::string, std::string>* out) {
  const json& v = r.get(key);
  if (v.is_null()) return;
  if (!v.is_object()) return r.fail(r.path(key), "must be an object of quantities");
  for (const auto& [k, item] : v.items()) {
    if (item.is_string()) {
      (*out)[k] = item.get<std::string>();
    } else if (item.is_number_integer()) {
      (*out)[k] = std::to_string(item.get<int64_t>());
    } else if (item.is_number_float()) {
      (*out)[k] = item.dump();
    } else {
      r.fail(r.path(key) + "[" + k + "]", "must be a quantity");
    }
  }
}

// A list of core/v1 objects passed through as given; items() reports non-objects other
// than null.
void read_objects(const JsonReader& r, std::string_view key, std::vector<json>* out) {
  const std::vector<JsonReader> items = r.items(key);
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].self().is_object()) {
      out->push_back(items[i].self());
    } else if (items[i].self().is_null()) {
      r.fail(r.path(key) + "[" + std::to_string(i) + "]", "must be an object");
    }
  }
}

std::vector<EnvVar> parse_env(const JsonReader& r) {
  std::vector<EnvVar> out;
  for (const JsonReader& e : r.items("env")) {
    EnvVar var;
    e.read("name", &var.name);
    e.read("value", &var.value);
    const json& from = e.get("valueFrom");
    if (!from.is_null() && !from.is_object()) {
      e.fail(e.path("valueFrom"), "must be an object");
    } else {
      var.value_from = from;
    }
    out.push_back(std::move(var));
  }
  return out;
}

EngineSpec parse_engine(const JsonReader& r) {
  EngineSpec engine;
  std::string kind(engine_name(engine.kind));
  read_choice(r, "kind", {"moeserve", "vllm", "sglang"}, &kind);
  engine.kind = kind == "vllm"     ? EngineKind::kVllm
                : kind == "sglang" ? EngineKind::kSglang
                                   : EngineKind::kMoeserve;
  r.read("image", &engine.image);
  r.read("extraArgs", &engine.extra_args);
  engine.env = parse_env(r);
  return engine;
}

WorkerSpec parse_worker(const JsonReader& r) {
  WorkerSpec w;
  r.read("image", &w.image);
  r.read("imagePullPolicy", &w.image_pull_policy);
  JsonReader res = r.child("resources");
  read_quantities(res, "requests", &w.resources.requests);
  read_quantities(res, "limits", &w.resources.limits);
  r.read("nodeSelector", &w.node_selector);
  for (const JsonReader& t : r.items("tolerations")) {
    Toleration tol;
    t.read("key", &tol.key);
    t.read("operator", &tol.op);
    t.read("value", &tol.value);
    t.read("effect", &tol.effect);
    t.read("tolerationSeconds", &tol.toleration_seconds);
    w.tolerations.push_back(std::move(tol));
  }
  w.env = parse_env(r);
  r.read("extraArgs", &w.extra_args);
  r.read("spreadAcrossNodes", &w.spread_across_nodes);
  r.read("port", &w.port);
  r.read("rendezvousPort", &w.rendezvous_port);
  r.read("metricsPort", &w.metrics_port);
  r.read("sharedMemorySize", &w.shared_memory_size);
  r.read("serviceAccountName", &w.service_account_name);
  for (const JsonReader& secret : r.items("imagePullSecrets")) {
    std::string name;
    secret.read("name", &name);
    w.image_pull_secrets.push_back(std::move(name));
  }
  read_objects(r, "volumes", &w.volumes);
  read_objects(r, "volumeMounts", &w.volume_mounts);
  const json& affinity = r.get("nodeAffinity");
  if (!affinity.is_null() && !affinity.is_object()) {
    r.fail(r.path("nodeAffinity"), "must be an object");
  } else {
    w.node_affinity = affinity;
  }
  r.read("priorityClassName", &w.priority_class_name);
  read_objects(r, "topologySpreadConstraints", &w.topology_spread_constraints);
  return w;
}

}  // namespace

ModelDeploymentSpec parse_spec(const json& spec, std::vector<FieldError>* errors) {
  ModelDeploymentSpec s;
  JsonReader r(spec, "spec", errors);

  JsonReader model = r.child("model");
  model.read("source", &s.model.source);
  model.read("servedModelName", &s.model.served_model_name);
  std::string precision(precision_name(s.model.precision));
  read_choice(model, "precision", {"fp8", "bf16", "auto"}, &precision);
  s.model.precision = precision == "bf16"   ? Precision::kBf16
                      : precision == "auto" ? Precision::kAuto
                                            : Precision::kFp8;
  model.read("routedExperts", &s.model.routed_experts);
  model.read("moeLayers", &s.model.moe_layers);
  model.read("downloaderImage", &s.model.downloader_image);
  model.read("cacheClaim", &s.model.cache_claim);

  r.read("replicas", &s.replicas);

  JsonReader par = r.child("parallelism");
  par.read("expertParallel", &s.parallelism.expert_parallel);
  par.read("ranksPerPod", &s.parallelism.ranks_per_pod);
  par.read("redundantExperts", &s.parallelism.redundant_experts);

  s.worker = parse_worker(r.child("worker"));
  s.engine = parse_engine(r.child("engine"));

  JsonReader spec_r = r.child("speculative");
  std::string method(speculative_name(s.speculative.method));
  read_choice(spec_r, "method", {"none", "mtp", "ngram"}, &method);
  s.speculative.method = method == "mtp"     ? SpeculativeMethod::kMtp
                         : method == "ngram" ? SpeculativeMethod::kNgram
                                             : SpeculativeMethod::kNone;
  spec_r.read("draftTokens", &s.speculative.draft_tokens);

  JsonReader as = r.child("autoscaling");
  as.read("enabled", &s.autoscaling.enabled);
  as.read("minReplicas", &s.autoscaling.min_replicas);
  as.read("maxReplicas", &s.autoscaling.max_replicas);
  as.read("targetTokensPerSecondPerGroup", &s.autoscaling.target_tokens_per_second_per_group);
  as.read("maxCostPerMillionTokens", &s.autoscaling.max_cost_per_million_tokens);
  as.read("ttftP95SloSeconds", &s.autoscaling.ttft_p95_slo_seconds);
  as.read("scaleDownStabilizationSeconds", &s.autoscaling.scale_down_stabilization_seconds);
  as.read("scaleToZeroAfterIdleSeconds", &s.autoscaling.scale_to_zero_after_idle_seconds);

  JsonReader cost = r.child("cost");
  cost.read("gpuHourUsd", &s.cost.gpu_hour_usd);
  cost.read("podHourUsd", &s.cost.pod_hour_usd);

  JsonReader auth = r.child("auth");
  auth.read("secretName", &s.auth.secret_name);
  auth.read("key", &s.auth.key);
  if (auth.self().is_object() && s.auth.secret_name.empty()) {
    auth.fail(auth.path("secretName"), "required");
  }

  JsonReader gateway = r.child("gateway");
  gateway.read("queueSize", &s.gateway.queue_size);
  gateway.read("queueTimeoutSeconds", &s.gateway.queue_timeout_seconds);

  JsonReader np = r.child("networkPolicy");
  np.read("enabled", &s.network_policy.enabled);
  read_objects(np, "apiFrom", &s.network_policy.api_from);
  read_objects(np, "metricsFrom", &s.network_policy.metrics_from);

  r.read("progressDeadlineSeconds", &s.progress_deadline_seconds);
  return s;
}

ModelDeploymentStatus parse_status(const json& status) {
  ModelDeploymentStatus s;
  std::vector<FieldError> ignored;
  JsonReader r(status, "status", &ignored);
  r.read("observedGeneration", &s.observed_generation);
  r.read("desiredReplicas", &s.desired_replicas);
  r.read("replicas", &s.replicas);
  r.read("readyReplicas", &s.ready_replicas);
  r.read("updatedReplicas", &s.updated_replicas);
  r.read("selector", &s.selector);
  for (const JsonReader& c : r.items("conditions")) {
    Condition cond;
    c.read("type", &cond.type);
    c.read("status", &cond.status);
    c.read("reason", &cond.reason);
    c.read("message", &cond.message);
    c.read("observedGeneration", &cond.observed_generation);
    c.read("lastTransitionTime", &cond.last_transition_time);
    if (!cond.type.empty()) s.conditions.push_back(std::move(cond));
  }
  r.read("tokensPerSecond", &s.tokens_per_second);
  r.read("costPerMillionTokens", &s.cost_per_million_tokens);
  JsonReader p = r.child("placement");
  if (p.self().is_object()) {
    PlacementStatus placement;
    p.read("version", &placement.version);
    p.read("balancedness", &placement.balancedness);
    p.read("measuredBalancedness", &placement.measured_balancedness);
    JsonReader last = p.child("lastSwitch");
    if (last.self().is_object()) {
      PlacementSwitchStatus sw;
      last.read("version", &sw.version);
      last.read("result", &sw.result);
      last.read("balancednessBefore", &sw.balancedness_before);
      last.read("balancednessAfter", &sw.balancedness_after);
      last.read("durationSeconds", &sw.duration_seconds);
      last.read("message", &sw.message);
      placement.last_switch = sw;
    }
    s.placement = placement;
  }
  return s;
}

ModelDeployment parse_model_deployment(const json& object) {
  ModelDeployment md;
  JsonReader root(object, "", &md.errors);
  JsonReader meta(root.get("metadata"), "metadata", &md.errors);
  meta.read("name", &md.metadata.name);
  meta.read("namespace", &md.metadata.namespace_);
  meta.read("uid", &md.metadata.uid);
  meta.read("generation", &md.metadata.generation);
  for (FieldError& e : validate_name(md.metadata.name)) md.errors.push_back(std::move(e));
  md.spec = parse_spec(root.get("spec"), &md.errors);
  for (FieldError& e : validate(md.spec)) md.errors.push_back(std::move(e));
  md.status = parse_status(root.get("status"));
  return md;
}

}  // namespace moeserve::deployment
