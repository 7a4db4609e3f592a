#include "operator/deployment/serialize.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;

json condition_json(const Condition& c) {
  return {{"type", c.type},
          {"status", c.status},
          {"reason", c.reason},
          {"message", c.message},
          {"observedGeneration", c.observed_generation},
          {"lastTransitionTime", c.last_transition_time}};
}

}  // namespace

json to_json_secrets(const WorkerSpec& w) {
  json out = json::array();
  for (const std::string& name : w.image_pull_secrets) out.push_back({{"name", name}});
  return out;
}

json to_json(const ModelDeploymentSpec& s) {
  json model = {{"source", s.model.source}, {"precision", precision_name(s.model.precision)}};
  if (!s.model.downloader_image.empty()) model["downloaderImage"] = s.model.downloader_image;
  if (!s.model.cache_claim.empty()) model["cacheClaim"] = s.model.cache_claim;
  if (!s.model.served_model_name.empty()) model["servedModelName"] = s.model.served_model_name;
  if (s.model.routed_experts) model["routedExperts"] = *s.model.routed_experts;
  if (s.model.moe_layers) model["moeLayers"] = *s.model.moe_layers;

  const WorkerSpec& w = s.worker;
  json worker = {{"imagePullPolicy", w.image_pull_policy},
                 {"spreadAcrossNodes", w.spread_across_nodes},
                 {"port", w.port},
                 {"rendezvousPort", w.rendezvous_port},
                 {"metricsPort", w.metrics_port},
                 {"sharedMemorySize", w.shared_memory_size}};
  if (!w.image.empty()) worker["image"] = w.image;
  if (!w.resources.requests.empty() || !w.resources.limits.empty()) {
    worker["resources"] = to_json(w.resources);
  }
  if (!w.node_selector.empty()) worker["nodeSelector"] = w.node_selector;
  if (!w.tolerations.empty()) worker["tolerations"] = to_json(w.tolerations);
  if (!w.env.empty()) worker["env"] = to_json(w.env);
  if (!w.extra_args.empty()) worker["extraArgs"] = w.extra_args;
  if (!w.service_account_name.empty()) worker["serviceAccountName"] = w.service_account_name;
  if (!w.image_pull_secrets.empty()) worker["imagePullSecrets"] = to_json_secrets(w);
  if (!w.volumes.empty()) worker["volumes"] = w.volumes;
  if (!w.volume_mounts.empty()) worker["volumeMounts"] = w.volume_mounts;
  if (!w.node_affinity.is_null()) worker["nodeAffinity"] = w.node_affinity;
  if (!w.priority_class_name.empty()) worker["priorityClassName"] = w.priority_class_name;
  if (!w.topology_spread_constraints.empty()) {
    worker["topologySpreadConstraints"] = w.topology_spread_constraints;
  }

  const AutoscalingSpec& a = s.autoscaling;
  json autoscaling = {{"enabled", a.enabled},
                      {"minReplicas", a.min_replicas},
                      {"maxReplicas", a.max_replicas},
                      {"scaleDownStabilizationSeconds", a.scale_down_stabilization_seconds}};
  if (a.target_tokens_per_second_per_group) {
    autoscaling["targetTokensPerSecondPerGroup"] = *a.target_tokens_per_second_per_group;
  }
  if (a.max_cost_per_million_tokens) {
    autoscaling["maxCostPerMillionTokens"] = *a.max_cost_per_million_tokens;
  }
  if (a.ttft_p95_slo_seconds) autoscaling["ttftP95SloSeconds"] = *a.ttft_p95_slo_seconds;
  if (a.scale_to_zero_after_idle_seconds) {
    autoscaling["scaleToZeroAfterIdleSeconds"] = *a.scale_to_zero_after_idle_seconds;
  }

  json network_policy = {{"enabled", s.network_policy.enabled}};
  if (!s.network_policy.api_from.empty()) network_policy["apiFrom"] = s.network_policy.api_from;
  if (!s.network_policy.metrics_from.empty()) {
    network_policy["metricsFrom"] = s.network_policy.metrics_from;
  }

  json engine = {{"kind", engine_name(s.engine.kind)}};
  if (!s.engine.image.empty()) engine["image"] = s.engine.image;
  if (!s.engine.extra_args.empty()) engine["extraArgs"] = s.engine.extra_args;
  if (!s.engine.env.empty()) engine["env"] = to_json(s.engine.env);

  json out = {{"model", model},
              {"replicas", s.replicas},
              {"parallelism",
               {{"expertParallel", s.parallelism.expert_parallel},
                {"ranksPerPod", s.parallelism.ranks_per_pod},
                {"redundantExperts", s.parallelism.redundant_experts}}},
              {"worker", worker},
              {"engine", engine},
              {"speculative",
               {{"method", speculative_name(s.speculative.method)},
                {"draftTokens", s.speculative.draft_tokens}}},
              {"autoscaling", autoscaling},
              {"cost", {{"gpuHourUsd", s.cost.gpu_hour_usd}, {"podHourUsd", s.cost.pod_hour_usd}}},
              {"networkPolicy", network_policy},
              {"gateway",
               {{"queueSize", s.gateway.queue_size},
                {"queueTimeoutSeconds", s.gateway.queue_timeout_seconds}}},
              {"progressDeadlineSeconds", s.progress_deadline_seconds}};
  if (s.auth.enabled()) out["auth"] = {{"secretName", s.auth.secret_name}, {"key", s.auth.key}};
  return out;
}

json to_json(const ModelDeploymentStatus& s) {
  json out = {{"observedGeneration", s.observed_generation},
              {"desiredReplicas", s.desired_replicas},
              {"replicas", s.replicas},
              {"readyReplicas", s.ready_replicas},
              {"updatedReplicas", s.updated_replicas},
              {"selector", s.selector},
              {"conditions", json::array()}};
  for (const Condition& c : s.conditions) out["conditions"].push_back(condition_json(c));
  if (s.tokens_per_second) out["tokensPerSecond"] = *s.tokens_per_second;
  if (s.cost_per_million_tokens) out["costPerMillionTokens"] = *s.cost_per_million_tokens;
  if (s.placement) {
    json& p = out["placement"];
    p = {{"version", s.placement->version}, {"balancedness", s.placement->balancedness}};
    if (s.placement->measured_balancedness) {
      p["measuredBalancedness"] = *s.placement->measured_balancedness;
    }
    if (const auto& sw = s.placement->last_switch) {
      json& j = p["lastSwitch"];
      j = {{"version", sw->version}, {"result", sw->result}};
      if (sw->balancedness_before) j["balancednessBefore"] = *sw->balancedness_before;
      if (sw->balancedness_after) j["balancednessAfter"] = *sw->balancedness_after;
      if (sw->duration_seconds) j["durationSeconds"] = *sw->duration_seconds;
      if (!sw->message.empty()) j["message"] = sw->message;
    }
  }
  return out;
}

json to_json(const ResourceRequirements& r) {
  json out = json::object();
  if (!r.requests.empty()) out["requests"] = r.requests;
  if (!r.limits.empty()) out["limits"] = r.limits;
  return out;
}

json to_json(const std::vector<Toleration>& tolerations) {
  json out = json::array();
  for (const Toleration& t : tolerations) {
    json tol = {{"operator", t.op}};
    if (!t.key.empty()) tol["key"] = t.key;
    if (!t.value.empty()) tol["value"] = t.value;
    if (!t.effect.empty()) tol["effect"] = t.effect;
    if (t.toleration_seconds) tol["tolerationSeconds"] = *t.toleration_seconds;
    out.push_back(tol);
  }
  return out;
}

json to_json(const std::vector<EnvVar>& env) {
  json out = json::array();
  for (const EnvVar& e : env) {
    json var = {{"name", e.name}};
    if (e.value) var["value"] = *e.value;
    if (!e.value_from.is_null()) var["valueFrom"] = e.value_from;
    out.push_back(var);
  }
  return out;
}

}  // namespace moeserve::deployment
