#include "operator/deployment/types.h"

#include <cmath>
#include <regex>
#include <utility>

namespace moeserve::op {
namespace {

using nlohmann::json;

// The same patterns as the CRD's CEL rules and `pattern`s (ECMAScript and RE2 agree on
// these).
constexpr const char* kHfSourcePattern = "^hf://[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$";
constexpr const char* kPvcSourcePattern = "^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?$";
constexpr const char* kQuantityPattern = "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";
constexpr const char* kNamePattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

// Bounds the CRD puts on lists and strings (they keep CEL rule costs bounded).
constexpr size_t kMaxSourceLength = 512;
constexpr size_t kMaxStringLength = 256;
constexpr size_t kMaxTolerations = 64;
constexpr size_t kMaxEnv = 128;

bool matches(const std::string& text, const char* pattern) {
  return std::regex_match(text, std::regex(pattern));
}

std::string json_quoted(std::string_view text) { return json(std::string(text)).dump(); }

// Reads typed fields of one JSON object, recording type errors with their path.
class Reader {
 public:
  Reader(const json& object, std::string path, std::vector<FieldError>* errors)
      : object_(object), path_(std::move(path)), errors_(errors) {
    if (!object_.is_null() && !object_.is_object()) fail(path_, "must be an object");
  }

  std::string path(std::string_view key) const { return path_ + "." + std::string(key); }

  // The field, or null when absent (or when this is not an object).
  const json& get(std::string_view key) const {
    static const json kNull;
    if (!object_.is_object()) return kNull;
    auto it = object_.find(std::string(key));
    return it == object_.end() ? kNull : *it;
  }

  Reader child(std::string_view key) const { return Reader(get(key), path(key), errors_); }

  void read(std::string_view key, std::string* out) const {
    const json& v = get(key);
    if (v.is_null()) return;
    if (v.is_string()) {
      *out = v.get<std::string>();
    } else {
      fail(path(key), "must be a string");
    }
  }
  void read(std::string_view key, bool* out) const {
    const json& v = get(key);
    if (v.is_null()) return;
    if (v.is_boolean()) {
      *out = v.get<bool>();
    } else {
      fail(path(key), "must be a boolean");
    }
  }
  void read(std::string_view key, int64_t* out) const {
    const json& v = get(key);
    if (v.is_null()) return;
    if (v.is_number_integer()) {
      *out = v.get<int64_t>();
    } else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
               std::fabs(v.get<double>()) < 9e15) {
      *out = static_cast<int64_t>(v.get<double>());
    } else {
      fail(path(key), "must be an integer");
    }
  }
  void read(std::string_view key, int32_t* out) const {
    int64_t wide = *out;
    read(key, &wide);
    if (wide < INT32_MIN || wide > INT32_MAX) {
      fail(path(key), "out of range");
    } else {
      *out = static_cast<int32_t>(wide);
    }
  }
  void read(std::string_view key, double* out) const {
    const json& v = get(key);
    if (v.is_null()) return;
    if (v.is_number()) {
      *out = v.get<double>();
    } else {
      fail(path(key), "must be a number");
    }
  }
  template <typename T>
  void read(std::string_view key, std::optional<T>* out) const {
    if (get(key).is_null()) return;
    T value{};
    read(key, &value);
    *out = value;
  }
  void read(std::string_view key, std::map<std::string, std::string>* out) const {
    const json& v = get(key);
    if (v.is_null()) return;
    if (!v.is_object()) return fail(path(key), "must be an object of strings");
    for (const auto& [k, item] : v.items()) {
      if (item.is_string()) {
        (*out)[k] = item.get<std::string>();
      } else {
        fail(path(key) + "[" + k + "]", "must be a string");
      }
    }
  }
  void read(std::string_view key, std::vector<std::string>* out) const {
    const json& v = get(key);
    if (v.is_null()) return;
    if (!v.is_array()) return fail(path(key), "must be a list of strings");
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i].is_string()) {
        out->push_back(v[i].get<std::string>());
      } else {
        fail(path(key) + "[" + std::to_string(i) + "]", "must be a string");
      }
    }
  }
  // Resource quantities: int-or-string in Kubernetes; kept as strings.
  void read_quantities(std::string_view key, std::map<std::string, std::string>* out) const {
    const json& v = get(key);
    if (v.is_null()) return;
    if (!v.is_object()) return fail(path(key), "must be an object of quantities");
    for (const auto& [k, item] : v.items()) {
      if (item.is_string()) {
        (*out)[k] = item.get<std::string>();
      } else if (item.is_number_integer()) {
        (*out)[k] = std::to_string(item.get<int64_t>());
      } else if (item.is_number_float()) {
        (*out)[k] = item.dump();
      } else {
        fail(path(key) + "[" + k + "]", "must be a quantity");
      }
    }
  }
  // Returns the elements of a list field (empty when absent or not a list).
  std::vector<Reader> items(std::string_view key) const {
    std::vector<Reader> result;
    const json& v = get(key);
    if (v.is_null()) return result;
    if (!v.is_array()) {
      fail(path(key), "must be a list");
      return result;
    }
    for (size_t i = 0; i < v.size(); ++i) {
      result.emplace_back(v[i], path(key) + "[" + std::to_string(i) + "]", errors_);
    }
    return result;
  }
  const json& self() const { return object_; }
  void fail(std::string path, std::string message) const {
    errors_->push_back({std::move(path), std::move(message)});
  }

 private:
  const json& object_;
  std::string path_;
  std::vector<FieldError>* errors_;
};

void read_precision(const Reader& r, Precision* out) {
  std::string text(precision_name(*out));
  r.read("precision", &text);
  if (text == "fp8") {
    *out = Precision::kFp8;
  } else if (text == "bf16") {
    *out = Precision::kBf16;
  } else {
    r.fail(r.path("precision"), "must be one of fp8, bf16 (got " + json_quoted(text) + ")");
  }
}

void read_method(const Reader& r, SpeculativeMethod* out) {
  std::string text(speculative_name(*out));
  r.read("method", &text);
  if (text == "none") {
    *out = SpeculativeMethod::kNone;
  } else if (text == "mtp") {
    *out = SpeculativeMethod::kMtp;
  } else {
    r.fail(r.path("method"), "must be one of none, mtp (got " + json_quoted(text) + ")");
  }
}

WorkerSpec parse_worker(const Reader& r) {
  WorkerSpec w;
  r.read("image", &w.image);
  r.read("imagePullPolicy", &w.image_pull_policy);
  Reader res = r.child("resources");
  res.read_quantities("requests", &w.resources.requests);
  res.read_quantities("limits", &w.resources.limits);
  r.read("nodeSelector", &w.node_selector);
  for (const Reader& t : r.items("tolerations")) {
    Toleration tol;
    t.read("key", &tol.key);
    t.read("operator", &tol.op);
    t.read("value", &tol.value);
    t.read("effect", &tol.effect);
    t.read("tolerationSeconds", &tol.toleration_seconds);
    w.tolerations.push_back(std::move(tol));
  }
  for (const Reader& e : r.items("env")) {
    EnvVar var;
    e.read("name", &var.name);
    e.read("value", &var.value);
    const json& from = e.get("valueFrom");
    if (!from.is_null() && !from.is_object()) {
      e.fail(e.path("valueFrom"), "must be an object");
    } else {
      var.value_from = from;
    }
    w.env.push_back(std::move(var));
  }
  r.read("extraArgs", &w.extra_args);
  r.read("spreadAcrossNodes", &w.spread_across_nodes);
  r.read("port", &w.port);
  r.read("rendezvousPort", &w.rendezvous_port);
  r.read("sharedMemorySize", &w.shared_memory_size);
  return w;
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

// Parses a whole-number quantity such as "8"; nullopt for "1.5", "2Gi", "x".
std::optional<int64_t> whole_quantity(const std::string& text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  return std::stoll(text);
}

void validate_model(const ModelSpec& m, std::vector<FieldError>* errors) {
  if (m.source.empty()) {
    errors->push_back({"spec.model.source", "required"});
  } else if (m.source.size() > kMaxSourceLength) {
    errors->push_back({"spec.model.source",
                       "must be at most " + std::to_string(kMaxSourceLength) + " characters"});
  } else if (!parse_model_source(m.source)) {
    errors->push_back({"spec.model.source",
                       "must be hf://org/name, pvc://claim[/path] or an absolute path (got " +
                           json_quoted(m.source) + ")"});
  }
  if (m.routed_experts) check_min(errors, "spec.model.routedExperts", *m.routed_experts, 1);
  if (m.moe_layers) check_min(errors, "spec.model.moeLayers", *m.moe_layers, 1);
  if (m.downloader_image.empty()) {
    errors->push_back({"spec.model.downloaderImage", "must not be empty"});
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
  if (p.redundant_experts > 0 && (!s.model.routed_experts || !s.model.moe_layers)) {
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

void validate_worker(const ModelDeploymentSpec& s, std::vector<FieldError>* errors) {
  const WorkerSpec& w = s.worker;
  if (w.image.empty()) errors->push_back({"spec.worker.image", "required"});
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
  for (size_t i = 0; i < w.env.size(); ++i) {
    const EnvVar& e = w.env[i];
    const std::string path = "spec.worker.env[" + std::to_string(i) + "]";
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
  check_range(errors, "spec.worker.port", w.port, 1, 65535);
  check_range(errors, "spec.worker.rendezvousPort", w.rendezvous_port, 1, 65535);
  if (w.port == w.rendezvous_port) {
    errors->push_back({"spec.worker.rendezvousPort",
                       "must differ from spec.worker.port (" + std::to_string(w.port) + ")"});
  }
  if (!matches(w.shared_memory_size, kQuantityPattern)) {
    errors->push_back(
        {"spec.worker.sharedMemorySize",
         "must be a quantity such as 8Gi (got " + json_quoted(w.shared_memory_size) + ")"});
  }
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
  if (a.enabled && !a.target_tokens_per_second_per_group && !a.max_cost_per_million_tokens &&
      !a.ttft_p95_slo_seconds) {
    errors->push_back({"spec.autoscaling",
                       "enabled needs a target: targetTokensPerSecondPerGroup, "
                       "maxCostPerMillionTokens or ttftP95SloSeconds"});
  }
}

std::string last_segment(std::string_view text) {
  while (!text.empty() && text.back() == '/') text.remove_suffix(1);
  const size_t slash = text.rfind('/');
  return std::string(slash == std::string_view::npos ? text : text.substr(slash + 1));
}

json condition_json(const Condition& c) {
  return {{"type", c.type},
          {"status", c.status},
          {"reason", c.reason},
          {"message", c.message},
          {"observedGeneration", c.observed_generation},
          {"lastTransitionTime", c.last_transition_time}};
}

}  // namespace

std::string join_errors(const std::vector<FieldError>& errors) {
  std::string out;
  for (const FieldError& e : errors) {
    if (!out.empty()) out += "; ";
    out += e.to_string();
  }
  return out;
}

std::string_view precision_name(Precision precision) {
  return precision == Precision::kFp8 ? "fp8" : "bf16";
}

std::string_view speculative_name(SpeculativeMethod method) {
  return method == SpeculativeMethod::kMtp ? "mtp" : "none";
}

std::optional<ModelSource> parse_model_source(std::string_view source) {
  const std::string text(source);
  ModelSource out;
  if (text.rfind("hf://", 0) == 0) {
    if (!matches(text, kHfSourcePattern)) return std::nullopt;
    out.kind = ModelSource::Kind::kHuggingFace;
    out.repo = text.substr(5);
    return out;
  }
  if (text.rfind("pvc://", 0) == 0) {
    if (!matches(text, kPvcSourcePattern)) return std::nullopt;
    out.kind = ModelSource::Kind::kPvc;
    const std::string rest = text.substr(6);
    const size_t slash = rest.find('/');
    out.claim = rest.substr(0, slash);
    if (slash != std::string::npos) {
      std::string_view path = std::string_view(rest).substr(slash);
      while (!path.empty() && path.front() == '/') path.remove_prefix(1);
      out.path = std::string(path);
    }
    return out;
  }
  if (text.empty() || text.front() != '/') return std::nullopt;
  out.kind = ModelSource::Kind::kPath;
  out.path = text;
  return out;
}

ModelDeploymentSpec parse_spec(const json& spec, std::vector<FieldError>* errors) {
  ModelDeploymentSpec s;
  Reader r(spec, "spec", errors);

  Reader model = r.child("model");
  model.read("source", &s.model.source);
  model.read("servedModelName", &s.model.served_model_name);
  read_precision(model, &s.model.precision);
  model.read("routedExperts", &s.model.routed_experts);
  model.read("moeLayers", &s.model.moe_layers);
  model.read("downloaderImage", &s.model.downloader_image);

  r.read("replicas", &s.replicas);

  Reader par = r.child("parallelism");
  par.read("expertParallel", &s.parallelism.expert_parallel);
  par.read("ranksPerPod", &s.parallelism.ranks_per_pod);
  par.read("redundantExperts", &s.parallelism.redundant_experts);

  s.worker = parse_worker(r.child("worker"));

  Reader spec_r = r.child("speculative");
  read_method(spec_r, &s.speculative.method);
  spec_r.read("draftTokens", &s.speculative.draft_tokens);

  Reader as = r.child("autoscaling");
  as.read("enabled", &s.autoscaling.enabled);
  as.read("minReplicas", &s.autoscaling.min_replicas);
  as.read("maxReplicas", &s.autoscaling.max_replicas);
  as.read("targetTokensPerSecondPerGroup", &s.autoscaling.target_tokens_per_second_per_group);
  as.read("maxCostPerMillionTokens", &s.autoscaling.max_cost_per_million_tokens);
  as.read("ttftP95SloSeconds", &s.autoscaling.ttft_p95_slo_seconds);
  as.read("scaleDownStabilizationSeconds", &s.autoscaling.scale_down_stabilization_seconds);

  Reader cost = r.child("cost");
  cost.read("gpuHourUsd", &s.cost.gpu_hour_usd);
  cost.read("podHourUsd", &s.cost.pod_hour_usd);

  r.read("progressDeadlineSeconds", &s.progress_deadline_seconds);
  return s;
}

std::vector<FieldError> validate(const ModelDeploymentSpec& s) {
  std::vector<FieldError> errors;
  validate_model(s.model, &errors);
  check_min(&errors, "spec.replicas", s.replicas, 0);
  validate_parallelism(s, &errors);
  validate_worker(s, &errors);
  check_range(&errors, "spec.speculative.draftTokens", s.speculative.draft_tokens, 1, 8);
  validate_autoscaling(s.autoscaling, &errors);
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

ModelDeploymentStatus parse_status(const json& status) {
  ModelDeploymentStatus s;
  std::vector<FieldError> ignored;
  Reader r(status, "status", &ignored);
  r.read("observedGeneration", &s.observed_generation);
  r.read("desiredReplicas", &s.desired_replicas);
  r.read("replicas", &s.replicas);
  r.read("readyReplicas", &s.ready_replicas);
  r.read("updatedReplicas", &s.updated_replicas);
  r.read("selector", &s.selector);
  for (const Reader& c : r.items("conditions")) {
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
  Reader p = r.child("placement");
  if (p.self().is_object()) {
    PlacementStatus placement;
    p.read("version", &placement.version);
    p.read("balancedness", &placement.balancedness);
    s.placement = placement;
  }
  return s;
}

ModelDeployment parse_model_deployment(const json& object) {
  ModelDeployment md;
  Reader root(object, "", &md.errors);
  Reader meta(root.get("metadata"), "metadata", &md.errors);
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

json to_json(const ModelDeploymentSpec& s) {
  json model = {{"source", s.model.source},
                {"precision", precision_name(s.model.precision)},
                {"downloaderImage", s.model.downloader_image}};
  if (!s.model.served_model_name.empty()) model["servedModelName"] = s.model.served_model_name;
  if (s.model.routed_experts) model["routedExperts"] = *s.model.routed_experts;
  if (s.model.moe_layers) model["moeLayers"] = *s.model.moe_layers;

  const WorkerSpec& w = s.worker;
  json worker = {{"image", w.image},
                 {"imagePullPolicy", w.image_pull_policy},
                 {"spreadAcrossNodes", w.spread_across_nodes},
                 {"port", w.port},
                 {"rendezvousPort", w.rendezvous_port},
                 {"sharedMemorySize", w.shared_memory_size}};
  if (!w.resources.requests.empty() || !w.resources.limits.empty()) {
    worker["resources"] = to_json(w.resources);
  }
  if (!w.node_selector.empty()) worker["nodeSelector"] = w.node_selector;
  if (!w.tolerations.empty()) worker["tolerations"] = to_json(w.tolerations);
  if (!w.env.empty()) worker["env"] = to_json(w.env);
  if (!w.extra_args.empty()) worker["extraArgs"] = w.extra_args;

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

  return {{"model", model},
          {"replicas", s.replicas},
          {"parallelism",
           {{"expertParallel", s.parallelism.expert_parallel},
            {"ranksPerPod", s.parallelism.ranks_per_pod},
            {"redundantExperts", s.parallelism.redundant_experts}}},
          {"worker", worker},
          {"speculative",
           {{"method", speculative_name(s.speculative.method)},
            {"draftTokens", s.speculative.draft_tokens}}},
          {"autoscaling", autoscaling},
          {"cost", {{"gpuHourUsd", s.cost.gpu_hour_usd}, {"podHourUsd", s.cost.pod_hour_usd}}},
          {"progressDeadlineSeconds", s.progress_deadline_seconds}};
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
    out["placement"] = {{"version", s.placement->version},
                        {"balancedness", s.placement->balancedness}};
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

std::string served_model_name(const ModelSpec& model) {
  if (!model.served_model_name.empty()) return model.served_model_name;
  return last_segment(model.source);
}

int32_t gpus_per_pod(const WorkerSpec& worker) {
  const std::string key(kGpuResource);
  for (const auto* quantities : {&worker.resources.limits, &worker.resources.requests}) {
    if (auto it = quantities->find(key); it != quantities->end()) {
      return static_cast<int32_t>(whole_quantity(it->second).value_or(0));
    }
  }
  return 0;
}

}  // namespace moeserve::op
