#include "operator/deployment/validate.h"

#include <regex>
#include <set>

#include "common/hf_source.h"
#include "operator/deployment/engine_command.h"
#include "operator/deployment/pod_template.h"

namespace moeserve::deployment {
namespace {

// The same patterns as the CRD's `pattern`s (ECMAScript and RE2 agree on these).
constexpr const char* kQuantityPattern = "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";
constexpr const char* kNamePattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
constexpr const char* kSubdomainPattern =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
constexpr const char* kSecretKeyPattern = "^[-._a-zA-Z0-9]+$";
constexpr size_t kMaxLabelLength = 63;
constexpr size_t kMaxSubdomainLength = 253;
constexpr size_t kMaxPodObjects = 64;  // volumes, volumeMounts
constexpr size_t kMaxSmallLists = 16;  // imagePullSecrets, topologySpreadConstraints
constexpr size_t kMaxPeers = 32;       // networkPolicy.apiFrom, metricsFrom

// Bounds the CRD puts on lists and strings (they keep CEL rule costs bounded).
constexpr size_t kMaxSourceLength = 512;
constexpr size_t kMaxStringLength = 256;
constexpr size_t kMaxTolerations = 64;
constexpr size_t kMaxEnv = 128;
constexpr size_t kMaxEngineArgs = 128;

bool matches(const std::string& text, const char* pattern) {
  return std::regex_match(text, std::regex(pattern));
}

// Appends "must be >= min" when value < min.
void check_min(std::vector<FieldError>* errors, const std::string& path, int64_t value,
               int64_t min) {
  if (value < min) {
    errors->push_back(
        {path, "must be >= " + std::to_string(min) + " (got " + std::to_string(value) + ")"});
  }
}

void check_range(std::vector<FieldError>* errors, const std::string& path, int64_t value,
                 int64_t min, int64_t max) {
  if (value < min || value > max) {
    errors->push_back({path, "must be in " + std::to_string(min) + ".." + std::to_string(max) +
                                 " (got " + std::to_string(value) + ")"});
  }
}

void check_max_items(std::vector<FieldError>* errors, const std::string& path, size_t size,
                     size_t max) {
  if (size > max) {
    errors->push_back({path, "must have at most " + std::to_string(max) + " items (got " +
                                 std::to_string(size) + ")"});
  }
}

void check_max_length(std::vector<FieldError>* errors, const std::string& path,
                      const std::string& text, size_t max) {
  if (text.size() > max) {
    errors->push_back({path, "must be at most " + std::to_string(max) + " characters (got " +
                                 std::to_string(text.size()) + ")"});
  }
}

void check_positive(std::vector<FieldError>* errors, const std::string& path,
                    const std::optional<double>& value) {
  if (value && !(*value > 0)) errors->push_back({path, "must be > 0"});
}

void validate_model(const ModelSpec& m, std::vector<FieldError>* errors) {
  if (m.source.empty()) {
    errors->push_back({"spec.model.source", "required"});
  } else if (m.source.size() > kMaxSourceLength) {
    errors->push_back({"spec.model.source",
                       "must be at most " + std::to_string(kMaxSourceLength) + " characters"});
  } else if (m.source.rfind(kHfScheme, 0) == 0) {
    if (StatusOr<HfSource> hf = parse_hf_source(m.source); !hf.ok()) {
      errors->push_back({"spec.model.source", hf.status().message()});
    }
  } else if (!parse_model_source(m.source)) {
    errors->push_back({"spec.model.source",
                       "must be hf://org/name[@revision], pvc://claim[/path] or an absolute "
                       "path (got " +
                           json_quoted(m.source) + ")"});
  }
  if (m.routed_experts) check_min(errors, "spec.model.routedExperts", *m.routed_experts, 1);
  if (m.moe_layers) check_min(errors, "spec.model.moeLayers", *m.moe_layers, 1);
  check_max_length(errors, "spec.model.downloaderImage", m.downloader_image, kMaxStringLength);
  if (!m.cache_claim.empty()) {
    if (m.cache_claim.size() > kMaxSubdomainLength || !matches(m.cache_claim, kSubdomainPattern)) {
      errors->push_back({"spec.model.cacheClaim",
                         "must be a PersistentVolumeClaim name: lowercase letters, digits, '-' "
                         "and '.' (got " +
                             json_quoted(m.cache_claim) + ")"});
    }
    // A branch or tag can move: the next pod would rewrite the files that running
    // workers of every group have mapped.
    const StatusOr<HfSource> hf = parse_hf_source(m.source);
    if (!hf.ok() || !hf->pinned()) {
      errors->push_back({"spec.model.cacheClaim",
                         "needs a source pinned to a commit, hf://org/name@<40-hex sha> (got " +
                             json_quoted(m.source) + ")"});
    }
  }
}

void validate_parallelism(const ModelDeploymentSpec& s, std::vector<FieldError>* errors) {
  const ParallelismSpec& p = s.parallelism;
  check_min(errors, "spec.parallelism.expertParallel", p.expert_parallel, 1);
  check_min(errors, "spec.parallelism.ranksPerPod", p.ranks_per_pod, 1);
  check_min(errors, "spec.parallelism.redundantExperts", p.redundant_experts, 0);
  if (p.expert_parallel >= 1 && p.ranks_per_pod >= 1 && p.expert_parallel % p.ranks_per_pod) {
    errors->push_back({"spec.parallelism.expertParallel",
                       "must be divisible by ranksPerPod (" + std::to_string(p.expert_parallel) +
                           " % " + std::to_string(p.ranks_per_pod) + " != 0)"});
  }
  // moeserve builds its placement map from the model's shape; vLLM and SGLang read it
  // from the checkpoint.
  if (p.redundant_experts > 0 && s.engine.kind == EngineKind::kMoeserve &&
      (!s.model.routed_experts || !s.model.moe_layers)) {
    errors->push_back({"spec.parallelism.redundantExperts",
                       "needs spec.model.routedExperts and spec.model.moeLayers"});
  }
  if (s.model.routed_experts && *s.model.routed_experts >= 1 && p.redundant_experts >= 0 &&
      p.expert_parallel >= 1) {
    const int64_t slots = int64_t{*s.model.routed_experts} + p.redundant_experts;
    if (slots % p.expert_parallel) {
      errors->push_back({"spec.parallelism.expertParallel",
                         "must divide routedExperts + redundantExperts (" + std::to_string(slots) +
                             " % " + std::to_string(p.expert_parallel) +
                             " != 0): every rank holds as many slots"});
    }
  }
}

void validate_gpus(const WorkerSpec& w, int32_t ranks_per_pod, std::vector<FieldError>* errors) {
  const std::string key(kGpuResource);
  std::optional<int64_t> limit, request;
  if (auto it = w.resources.limits.find(key); it != w.resources.limits.end()) {
    limit = whole_quantity(it->second);
    if (!limit) {
      errors->push_back({"spec.worker.resources.limits[" + key + "]",
                         "must be a whole number (got " + json_quoted(it->second) + ")"});
    }
  }
  if (auto it = w.resources.requests.find(key); it != w.resources.requests.end()) {
    request = whole_quantity(it->second);
    if (!request) {
      errors->push_back({"spec.worker.resources.requests[" + key + "]",
                         "must be a whole number (got " + json_quoted(it->second) + ")"});
    }
  }
  if (limit && request && *limit != *request) {
    errors->push_back({"spec.worker.resources.requests[" + key + "]",
                       "must equal the limit (" + std::to_string(*request) +
                           " != " + std::to_string(*limit) + ")"});
  }
  const std::optional<int64_t> gpus = limit ? limit : request;
  const std::string field = limit ? "limits" : "requests";
  if (gpus && *gpus != 0 && *gpus != ranks_per_pod) {
    errors->push_back({"spec.worker.resources." + field + "[" + key + "]",
                       "must equal spec.parallelism.ranksPerPod, one GPU per rank (" +
                           std::to_string(*gpus) + " != " + std::to_string(ranks_per_pod) + ")"});
  }
}

void validate_env(const std::vector<EnvVar>& env, const std::string& field,
                  std::vector<FieldError>* errors) {
  for (size_t i = 0; i < env.size(); ++i) {
    const EnvVar& e = env[i];
    const std::string path = field + "[" + std::to_string(i) + "]";
    if (e.name.empty()) {
      errors->push_back({path + ".name", "required"});
    } else if (e.name.size() > kMaxStringLength) {
      check_max_length(errors, path + ".name", e.name, kMaxStringLength);
    } else if (e.name.rfind("MOESERVE_", 0) == 0) {
      errors->push_back({path + ".name", "MOESERVE_* variables are set by the operator (got " +
                                             json_quoted(e.name) + ")"});
    }
    if (e.value && !e.value_from.is_null()) {
      errors->push_back({path, "value and valueFrom are mutually exclusive"});
    }
  }
}

// What vLLM and SGLang cannot take from the spec: moeserve-worker flags, the moeserve
// placement map, and flags the operator renders itself (engine_command.h).
void validate_engine(const ModelDeploymentSpec& s, std::vector<FieldError>* errors) {
  const EngineSpec& e = s.engine;
  check_max_length(errors, "spec.engine.image", e.image, kMaxSourceLength);
  check_max_items(errors, "spec.engine.extraArgs", e.extra_args.size(), kMaxEngineArgs);
  check_max_items(errors, "spec.engine.env", e.env.size(), kMaxEnv);
  validate_env(e.env, "spec.engine.env", errors);
  if (e.kind == EngineKind::kMoeserve) return;
  const std::string engine(engine_name(e.kind));
  if (!s.worker.extra_args.empty()) {
    errors->push_back({"spec.worker.extraArgs", "are moeserve-worker flags; engine " + engine +
                                                    " takes its own in spec.engine.extraArgs"});
  }
  if (s.model.moe_layers) {
    errors->push_back(
        {"spec.model.moeLayers", "shapes moeserve's expert placement map, which engine " + engine +
                                     " does not read (it places experts itself; "
                                     "spec.parallelism.redundantExperts turns on its EPLB)"});
  }
  for (size_t i = 0; i < e.extra_args.size(); ++i) {
    const std::string flag = e.extra_args[i].substr(0, e.extra_args[i].find('='));
    if (const char* field = operator_rendered_flag(e.kind, flag)) {
      errors->push_back({"spec.engine.extraArgs[" + std::to_string(i) + "]",
                         json_quoted(flag) + " is rendered by the operator from " + field});
    }
  }
}

void validate_worker(const ModelDeploymentSpec& s, std::vector<FieldError>* errors) {
  const WorkerSpec& w = s.worker;
  if (s.engine.image.empty() && w.image.empty()) {
    if (s.engine.kind == EngineKind::kMoeserve) {
      errors->push_back({"spec.worker.image", "required"});
    } else {
      errors->push_back({"spec.engine.image", "required for engine " +
                                                  std::string(engine_name(s.engine.kind)) +
                                                  " (or spec.worker.image)"});
    }
  }
  // The hf:// init container runs moeserve-fetch, which only moeserve's images ship.
  if (s.model.source.rfind(kHfScheme, 0) == 0 && s.model.downloader_image.empty() &&
      w.image.empty() && !s.engine.image.empty()) {
    errors->push_back({"spec.model.downloaderImage",
                       "required for hf:// sources without spec.worker.image: the image "
                       "that runs moeserve-fetch (a moeserve worker image)"});
  }
  if (w.image_pull_policy != "Always" && w.image_pull_policy != "IfNotPresent" &&
      w.image_pull_policy != "Never") {
    errors->push_back(
        {"spec.worker.imagePullPolicy", "must be one of Always, IfNotPresent, Never (got " +
                                            json_quoted(w.image_pull_policy) + ")"});
  }
  validate_gpus(w, s.parallelism.ranks_per_pod, errors);
  check_max_items(errors, "spec.worker.tolerations", w.tolerations.size(), kMaxTolerations);
  check_max_items(errors, "spec.worker.env", w.env.size(), kMaxEnv);
  for (size_t i = 0; i < w.tolerations.size(); ++i) {
    const Toleration& t = w.tolerations[i];
    const std::string path = "spec.worker.tolerations[" + std::to_string(i) + "]";
    if (t.op != "Equal" && t.op != "Exists") {
      errors->push_back(
          {path + ".operator", "must be Equal or Exists (got " + json_quoted(t.op) + ")"});
    }
    check_max_length(errors, path + ".value", t.value, kMaxStringLength);
    if (t.op == "Exists" && !t.value.empty()) {
      errors->push_back({path + ".value", "must be empty when operator is Exists"});
    }
    if (!t.effect.empty() && t.effect != "NoSchedule" && t.effect != "PreferNoSchedule" &&
        t.effect != "NoExecute") {
      errors->push_back(
          {path + ".effect", "must be one of NoSchedule, PreferNoSchedule, NoExecute (got " +
                                 json_quoted(t.effect) + ")"});
    }
  }
  validate_env(w.env, "spec.worker.env", errors);
  check_range(errors, "spec.worker.port", w.port, 1, 65535);
  check_range(errors, "spec.worker.rendezvousPort", w.rendezvous_port, 1, 65535);
  check_range(errors, "spec.worker.metricsPort", w.metrics_port, 1, 65535);
  if (w.port == w.rendezvous_port) {
    errors->push_back({"spec.worker.rendezvousPort",
                       "must differ from spec.worker.port (" + std::to_string(w.port) + ")"});
  }
  if (w.metrics_port == w.port || w.metrics_port == w.rendezvous_port) {
    errors->push_back({"spec.worker.metricsPort",
                       "must differ from spec.worker.port and spec.worker.rendezvousPort (" +
                           std::to_string(w.metrics_port) + ")"});
  }
  if (!matches(w.shared_memory_size, kQuantityPattern)) {
    errors->push_back(
        {"spec.worker.sharedMemorySize",
         "must be a quantity such as 8Gi (got " + json_quoted(w.shared_memory_size) + ")"});
  }
}

// A DNS subdomain such as Kubernetes object names: Secrets, ServiceAccounts,
// PriorityClasses.
void check_subdomain(std::vector<FieldError>* errors, const std::string& path,
                     const std::string& text) {
  if (text.size() > kMaxSubdomainLength || !matches(text, kSubdomainPattern)) {
    errors->push_back({path,
                       "must be a DNS subdomain: lowercase letters, digits, '-' and '.', "
                       "at most 253 characters (got " +
                           json_quoted(text) + ")"});
  }
}

// A string field of a pass-through object: present and non-empty, else "required".
std::string required_string(std::vector<FieldError>* errors, const std::string& path,
                            const nlohmann::json& object, const char* key) {
  const nlohmann::json& v = object.contains(key) ? object[key] : nlohmann::json();
  if (v.is_string() && !v.get<std::string>().empty()) return v.get<std::string>();
  errors->push_back({path + "." + key, v.is_null() ? "required" : "must be a non-empty string"});
  return "";
}

// Volumes and mounts the operator renders itself may not be redefined: the API server
// refuses duplicate volume names and mount paths.
void validate_volumes(const WorkerSpec& w, std::vector<FieldError>* errors) {
  check_max_items(errors, "spec.worker.volumes", w.volumes.size(), kMaxPodObjects);
  check_max_items(errors, "spec.worker.volumeMounts", w.volume_mounts.size(), kMaxPodObjects);
  std::set<std::string> names;
  for (size_t i = 0; i < w.volumes.size(); ++i) {
    const std::string path = "spec.worker.volumes[" + std::to_string(i) + "]";
    const std::string name = required_string(errors, path, w.volumes[i], "name");
    if (name.empty()) continue;
    if (name.size() > kMaxLabelLength || !matches(name, kNamePattern)) {
      errors->push_back({path + ".name", "must be a DNS label (got " + json_quoted(name) + ")"});
    } else if (is_operator_volume(name)) {
      errors->push_back(
          {path + ".name", "is a volume the operator renders (got " + json_quoted(name) + ")"});
    } else if (!names.insert(name).second) {
      errors->push_back({path + ".name", "duplicate volume name " + json_quoted(name)});
    }
    if (w.volumes[i].size() != 2) {
      errors->push_back({path, "must set exactly one volume source besides name"});
    }
  }
  std::set<std::string> paths;
  for (size_t i = 0; i < w.volume_mounts.size(); ++i) {
    const std::string path = "spec.worker.volumeMounts[" + std::to_string(i) + "]";
    const std::string name = required_string(errors, path, w.volume_mounts[i], "name");
    if (!name.empty() && !names.count(name)) {
      errors->push_back(
          {path + ".name", "must name one of spec.worker.volumes (got " + json_quoted(name) + ")"});
    }
    const std::string mount = required_string(errors, path, w.volume_mounts[i], "mountPath");
    if (mount.empty()) continue;
    if (mount.front() != '/') {
      errors->push_back(
          {path + ".mountPath", "must be an absolute path (got " + json_quoted(mount) + ")"});
    } else if (is_operator_mount_path(mount)) {
      errors->push_back(
          {path + ".mountPath", "is a path the operator mounts (got " + json_quoted(mount) + ")"});
    } else if (!paths.insert(mount).second) {
      errors->push_back({path + ".mountPath", "duplicate mount path " + json_quoted(mount)});
    }
  }
}

void validate_pod_identity(const WorkerSpec& w, std::vector<FieldError>* errors) {
  if (!w.service_account_name.empty()) {
    check_subdomain(errors, "spec.worker.serviceAccountName", w.service_account_name);
  }
  check_max_items(errors, "spec.worker.imagePullSecrets", w.image_pull_secrets.size(),
                  kMaxSmallLists);
  for (size_t i = 0; i < w.image_pull_secrets.size(); ++i) {
    const std::string path = "spec.worker.imagePullSecrets[" + std::to_string(i) + "].name";
    if (w.image_pull_secrets[i].empty()) {
      errors->push_back({path, "required"});
    } else {
      check_subdomain(errors, path, w.image_pull_secrets[i]);
    }
  }
  if (!w.priority_class_name.empty()) {
    check_subdomain(errors, "spec.worker.priorityClassName", w.priority_class_name);
  }
  if (w.node_affinity.is_object()) {
    for (const auto& [key, value] : w.node_affinity.items()) {
      if (key != "requiredDuringSchedulingIgnoredDuringExecution" &&
          key != "preferredDuringSchedulingIgnoredDuringExecution") {
        errors->push_back({"spec.worker.nodeAffinity." + key,
                           "unknown field: NodeAffinity has requiredDuringSchedulingIgnoredDuring"
                           "Execution and preferredDuringSchedulingIgnoredDuringExecution"});
      }
    }
  }
  check_max_items(errors, "spec.worker.topologySpreadConstraints",
                  w.topology_spread_constraints.size(), kMaxSmallLists);
  for (size_t i = 0; i < w.topology_spread_constraints.size(); ++i) {
    const nlohmann::json& c = w.topology_spread_constraints[i];
    const std::string path = "spec.worker.topologySpreadConstraints[" + std::to_string(i) + "]";
    if (!c.contains("maxSkew")) {
      errors->push_back({path + ".maxSkew", "required"});
    } else if (!c["maxSkew"].is_number_integer() || c["maxSkew"].get<int64_t>() < 1) {
      errors->push_back({path + ".maxSkew", "must be an integer >= 1"});
    }
    required_string(errors, path, c, "topologyKey");
    const std::string when = required_string(errors, path, c, "whenUnsatisfiable");
    if (!when.empty() && when != "DoNotSchedule" && when != "ScheduleAnyway") {
      errors->push_back(
          {path + ".whenUnsatisfiable",
           "must be DoNotSchedule or ScheduleAnyway (got " + json_quoted(when) + ")"});
    }
  }
  validate_volumes(w, errors);
}

void validate_auth(const AuthSpec& a, std::vector<FieldError>* errors) {
  if (!a.enabled()) return;
  check_subdomain(errors, "spec.auth.secretName", a.secret_name);
  if (a.key.empty() || a.key.size() > kMaxSubdomainLength || a.key == "." || a.key == ".." ||
      !matches(a.key, kSecretKeyPattern)) {
    errors->push_back({"spec.auth.key",
                       "must be a Secret key: letters, digits, '-', '_' and '.' "
                       "(got " +
                           json_quoted(a.key) + ")"});
  }
}

// core/v1 NetworkPolicyPeer: podSelector and/or namespaceSelector, or ipBlock alone.
void validate_peers(const std::vector<nlohmann::json>& peers, const std::string& path,
                    std::vector<FieldError>* errors) {
  check_max_items(errors, path, peers.size(), kMaxPeers);
  for (size_t i = 0; i < peers.size(); ++i) {
    const nlohmann::json& peer = peers[i];
    const std::string at = path + "[" + std::to_string(i) + "]";
    if (peer.empty()) errors->push_back({at, "must set podSelector, namespaceSelector or ipBlock"});
    for (const auto& [key, value] : peer.items()) {
      if (key != "podSelector" && key != "namespaceSelector" && key != "ipBlock") {
        errors->push_back({at + "." + key,
                           "unknown field: a NetworkPolicyPeer has podSelector, "
                           "namespaceSelector and ipBlock"});
      } else if (!value.is_object()) {
        errors->push_back({at + "." + key, "must be an object"});
      }
    }
    if (peer.contains("ipBlock")) {
      if (peer.size() > 1) {
        errors->push_back({at + ".ipBlock", "must not be combined with selectors"});
      }
      if (peer["ipBlock"].is_object())
        required_string(errors, at + ".ipBlock", peer["ipBlock"], "cidr");
    }
  }
}

void validate_speculative(const SpeculativeSpec& s, std::vector<FieldError>* errors) {
  check_range(errors, "spec.speculative.draftTokens", s.draft_tokens, 1, 8);
}

void validate_autoscaling(const AutoscalingSpec& a, std::vector<FieldError>* errors) {
  check_min(errors, "spec.autoscaling.minReplicas", a.min_replicas, 1);
  check_min(errors, "spec.autoscaling.maxReplicas", a.max_replicas, 1);
  if (a.max_replicas < a.min_replicas) {
    errors->push_back({"spec.autoscaling.maxReplicas", "must be >= minReplicas (" +
                                                           std::to_string(a.max_replicas) + " < " +
                                                           std::to_string(a.min_replicas) + ")"});
  }
  check_positive(errors, "spec.autoscaling.targetTokensPerSecondPerGroup",
                 a.target_tokens_per_second_per_group);
  check_positive(errors, "spec.autoscaling.maxCostPerMillionTokens", a.max_cost_per_million_tokens);
  check_positive(errors, "spec.autoscaling.ttftP95SloSeconds", a.ttft_p95_slo_seconds);
  check_min(errors, "spec.autoscaling.scaleDownStabilizationSeconds",
            a.scale_down_stabilization_seconds, 0);
  if (a.scale_to_zero_after_idle_seconds) {
    check_min(errors, "spec.autoscaling.scaleToZeroAfterIdleSeconds",
              *a.scale_to_zero_after_idle_seconds, 1);
    if (!a.enabled) {
      errors->push_back({"spec.autoscaling.scaleToZeroAfterIdleSeconds",
                         std::string(kScaleToZeroNeedsAutoscaling)});
    }
  }
  if (a.enabled && !a.target_tokens_per_second_per_group && !a.max_cost_per_million_tokens &&
      !a.ttft_p95_slo_seconds) {
    errors->push_back({"spec.autoscaling",
                       "enabled needs a target: targetTokensPerSecondPerGroup, "
                       "maxCostPerMillionTokens or ttftP95SloSeconds"});
  }
}

}  // namespace

std::vector<FieldError> validate(const ModelDeploymentSpec& s) {
  std::vector<FieldError> errors;
  validate_model(s.model, &errors);
  check_min(&errors, "spec.replicas", s.replicas, 0);
  validate_parallelism(s, &errors);
  validate_worker(s, &errors);
  validate_engine(s, &errors);
  validate_speculative(s.speculative, &errors);
  validate_autoscaling(s.autoscaling, &errors);
  validate_pod_identity(s.worker, &errors);
  validate_auth(s.auth, &errors);
  validate_peers(s.network_policy.api_from, "spec.networkPolicy.apiFrom", &errors);
  validate_peers(s.network_policy.metrics_from, "spec.networkPolicy.metricsFrom", &errors);
  check_range(&errors, "spec.gateway.queueSize", s.gateway.queue_size, 0, 100000);
  check_range(&errors, "spec.gateway.queueTimeoutSeconds", s.gateway.queue_timeout_seconds, 1,
              3600);
  if (!(s.cost.gpu_hour_usd >= 0)) errors.push_back({"spec.cost.gpuHourUsd", "must be >= 0"});
  if (!(s.cost.pod_hour_usd >= 0)) errors.push_back({"spec.cost.podHourUsd", "must be >= 0"});
  check_min(&errors, "spec.progressDeadlineSeconds", s.progress_deadline_seconds, 1);
  return errors;
}

std::vector<FieldError> validate_name(std::string_view name) {
  std::vector<FieldError> errors;
  const std::string text(name);
  if (text.empty()) {
    errors.push_back({"metadata.name", "required"});
  } else if (text.size() > kMaxNameLength) {
    errors.push_back({"metadata.name", "must be at most " + std::to_string(kMaxNameLength) +
                                           " characters, so group pod names fit a DNS label (got " +
                                           std::to_string(text.size()) + ")"});
  } else if (!matches(text, kNamePattern)) {
    errors.push_back({"metadata.name", "must be a DNS label (got " + json_quoted(text) + ")"});
  }
  return errors;
}

}  // namespace moeserve::deployment
