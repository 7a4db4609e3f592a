#include "operator/deployment/engine_command.h"

#include <algorithm>

#include "operator/deployment/names.h"
#include "operator/deployment/pod_template.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;

constexpr const char* kApiKeyFileEnv = "MOESERVE_API_KEY_FILE";

// The flags each engine's rendering owns, and the spec field each comes from
// (spec.engine.extraArgs may not repeat them). Aliases are listed with their flag.
struct RenderedFlag {
  EngineKind kind;
  const char* flag;
  const char* field;
};
constexpr RenderedFlag kRenderedFlags[] = {
    {EngineKind::kVllm, "--model", "spec.model.source"},
    {EngineKind::kVllm, "--served-model-name", "spec.model.servedModelName"},
    {EngineKind::kVllm, "--host", "the pod (0.0.0.0)"},
    {EngineKind::kVllm, "--port", "spec.worker.port"},
    {EngineKind::kVllm, "--tensor-parallel-size", "spec.parallelism"},
    {EngineKind::kVllm, "-tp", "spec.parallelism"},
    {EngineKind::kVllm, "--data-parallel-size", "spec.parallelism.expertParallel"},
    {EngineKind::kVllm, "-dp", "spec.parallelism.expertParallel"},
    {EngineKind::kVllm, "--data-parallel-size-local", "spec.parallelism.ranksPerPod"},
    {EngineKind::kVllm, "-dpl", "spec.parallelism.ranksPerPod"},
    {EngineKind::kVllm, "--enable-expert-parallel", "spec.parallelism.expertParallel"},
    {EngineKind::kVllm, "--data-parallel-address", "the group's leader pod"},
    {EngineKind::kVllm, "-dpa", "the group's leader pod"},
    {EngineKind::kVllm, "--data-parallel-rpc-port", "spec.worker.rendezvousPort"},
    {EngineKind::kVllm, "-dpp", "spec.worker.rendezvousPort"},
    {EngineKind::kVllm, "--data-parallel-start-rank", "the pod index"},
    {EngineKind::kVllm, "-dpr", "the pod index"},
    {EngineKind::kVllm, "--headless", "the pod index"},
    {EngineKind::kVllm, "--quantization", "spec.model.precision"},
    {EngineKind::kVllm, "-q", "spec.model.precision"},
    {EngineKind::kVllm, "--dtype", "spec.model.precision"},
    {EngineKind::kVllm, "--enable-eplb", "spec.parallelism.redundantExperts"},
    {EngineKind::kVllm, "--eplb-config", "spec.parallelism.redundantExperts"},
    {EngineKind::kVllm, "--num-redundant-experts", "spec.parallelism.redundantExperts"},
    {EngineKind::kVllm, "--speculative-config", "spec.speculative"},
    {EngineKind::kVllm, "--api-key", "spec.auth"},
    {EngineKind::kSglang, "--model-path", "spec.model.source"},
    {EngineKind::kSglang, "--model", "spec.model.source"},
    {EngineKind::kSglang, "--served-model-name", "spec.model.servedModelName"},
    {EngineKind::kSglang, "--host", "the pod (0.0.0.0)"},
    {EngineKind::kSglang, "--port", "spec.worker.port"},
    {EngineKind::kSglang, "--tp-size", "spec.parallelism.expertParallel"},
    {EngineKind::kSglang, "--tp", "spec.parallelism.expertParallel"},
    {EngineKind::kSglang, "--tensor-parallel-size", "spec.parallelism.expertParallel"},
    {EngineKind::kSglang, "--dp-size", "spec.parallelism.expertParallel"},
    {EngineKind::kSglang, "--dp", "spec.parallelism.expertParallel"},
    {EngineKind::kSglang, "--data-parallel-size", "spec.parallelism.expertParallel"},
    {EngineKind::kSglang, "--enable-dp-attention", "spec.parallelism.expertParallel"},
    {EngineKind::kSglang, "--ep-size", "spec.parallelism.expertParallel"},
    {EngineKind::kSglang, "--ep", "spec.parallelism.expertParallel"},
    {EngineKind::kSglang, "--expert-parallel-size", "spec.parallelism.expertParallel"},
    {EngineKind::kSglang, "--dist-init-addr", "the group's leader pod"},
    {EngineKind::kSglang, "--nccl-init-addr", "the group's leader pod"},
    {EngineKind::kSglang, "--nnodes", "spec.parallelism (pods per group)"},
    {EngineKind::kSglang, "--node-rank", "the pod index"},
    {EngineKind::kSglang, "--enable-metrics", "the operator's scrape"},
    {EngineKind::kSglang, "--quantization", "spec.model.precision"},
    {EngineKind::kSglang, "--dtype", "spec.model.precision"},
    {EngineKind::kSglang, "--enable-eplb", "spec.parallelism.redundantExperts"},
    {EngineKind::kSglang, "--ep-num-redundant-experts", "spec.parallelism.redundantExperts"},
    {EngineKind::kSglang, "--speculative-algorithm", "spec.speculative"},
    {EngineKind::kSglang, "--speculative-num-steps", "spec.speculative"},
    {EngineKind::kSglang, "--speculative-eagle-topk", "spec.speculative"},
    {EngineKind::kSglang, "--speculative-num-draft-tokens", "spec.speculative"},
    {EngineKind::kSglang, "--api-key", "spec.auth"},
};

std::string leader_host(const ModelDeployment& md, int32_t group) {
  std::string address = leader_address(md.metadata.name, md.metadata.namespace_, group, 0);
  return address.substr(0, address.rfind(':'));
}

std::string model_path(const ModelDeploymentSpec& s) {
  return model_dir(parse_model_source(s.model.source).value_or(ModelSource{}));
}

void append(std::vector<std::string>* out, std::initializer_list<std::string> words) {
  out->insert(out->end(), words.begin(), words.end());
}

// The same flags in both engines: fp8 quantizes to (or reads) FP8 weights, bf16
// computes in bfloat16, auto leaves the checkpoint's own format to the engine.
void append_precision(Precision precision, std::vector<std::string>* out) {
  if (precision == Precision::kFp8) append(out, {"--quantization", "fp8"});
  if (precision == Precision::kBf16) append(out, {"--dtype", "bfloat16"});
}

// Everything before spec.engine.extraArgs that every pod of the group shares.
std::vector<std::string> vllm_common(const ModelDeployment& md, const GroupLayout& l,
                                     int32_t group) {
  const ModelDeploymentSpec& s = md.spec;
  std::vector<std::string> out = {"serve",
                                  model_path(s),
                                  "--served-model-name",
                                  served_model_name(s.model),
                                  "--host",
                                  "0.0.0.0",
                                  "--port",
                                  std::to_string(s.worker.port),
                                  "--tensor-parallel-size",
                                  "1",
                                  "--data-parallel-size",
                                  std::to_string(l.ranks_per_group),
                                  "--data-parallel-size-local",
                                  std::to_string(l.ranks_per_pod)};
  if (l.ranks_per_group > 1) out.push_back("--enable-expert-parallel");
  if (l.pods_per_group > 1) {
    append(&out, {"--data-parallel-address", leader_host(md, group), "--data-parallel-rpc-port",
                  std::to_string(s.worker.rendezvous_port)});
  }
  append_precision(s.model.precision, &out);
  if (s.parallelism.redundant_experts > 0) {
    append(&out, {"--enable-eplb", "--eplb-config",
                  json{{"num_redundant_experts", s.parallelism.redundant_experts}}.dump()});
  }
  if (s.speculative.method != SpeculativeMethod::kNone) {
    const char* method = s.speculative.method == SpeculativeMethod::kMtp ? "mtp" : "ngram";
    append(
        &out,
        {"--speculative-config",
         json{{"method", method}, {"num_speculative_tokens", s.speculative.draft_tokens}}.dump()});
  }
  out.insert(out.end(), s.engine.extra_args.begin(), s.engine.extra_args.end());
  return out;
}

std::vector<std::string> sglang_common(const ModelDeployment& md, const GroupLayout& l,
                                       int32_t group) {
  const ModelDeploymentSpec& s = md.spec;
  const std::string n = std::to_string(l.ranks_per_group);
  std::vector<std::string> out = {"-m",
                                  "sglang.launch_server",
                                  "--model-path",
                                  model_path(s),
                                  "--served-model-name",
                                  served_model_name(s.model),
                                  "--host",
                                  "0.0.0.0",
                                  "--port",
                                  std::to_string(s.worker.port),
                                  "--tp-size",
                                  n};
  if (l.ranks_per_group > 1)
    append(&out, {"--dp-size", n, "--enable-dp-attention", "--ep-size", n});
  if (l.pods_per_group > 1) {
    append(&out, {"--dist-init-addr",
                  leader_host(md, group) + ":" + std::to_string(s.worker.rendezvous_port),
                  "--nnodes", std::to_string(l.pods_per_group)});
  }
  out.push_back("--enable-metrics");
  append_precision(s.model.precision, &out);
  if (s.parallelism.redundant_experts > 0) {
    append(&out, {"--enable-eplb", "--ep-num-redundant-experts",
                  std::to_string(s.parallelism.redundant_experts)});
  }
  const std::string k = std::to_string(s.speculative.draft_tokens);
  if (s.speculative.method == SpeculativeMethod::kMtp) {
    // SGLang runs a checkpoint's MTP module as an EAGLE draft: K steps of one token.
    append(&out, {"--speculative-algorithm", "EAGLE", "--speculative-num-steps", k,
                  "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens",
                  std::to_string(s.speculative.draft_tokens + 1)});
  } else if (s.speculative.method == SpeculativeMethod::kNgram) {
    append(&out, {"--speculative-algorithm", "NGRAM", "--speculative-num-draft-tokens", k});
  }
  out.insert(out.end(), s.engine.extra_args.begin(), s.engine.extra_args.end());
  return out;
}

// The shell that reads the Secret's keys into "$@" (vLLM: every word; SGLang: one).
constexpr const char* kVllmKeys =
    "keys=$(cat \"$MOESERVE_API_KEY_FILE\") && [ -n \"$keys\" ] || { echo \"moeserve: no API key "
    "in $MOESERVE_API_KEY_FILE\" >&2; exit 1; }; set -- \"$@\" --api-key $keys";
constexpr const char* kSglangKey =
    "key=$(cat \"$MOESERVE_API_KEY_FILE\") || exit 1; case \"$key\" in \"\"|*[[:space:]]*) echo "
    "\"moeserve: sglang takes exactly one API key: $MOESERVE_API_KEY_FILE must hold one\" >&2; "
    "exit 1;; esac; set -- \"$@\" --api-key \"$key\"";

std::string vllm_script(const ModelDeployment& md, const GroupLayout& l) {
  const bool auth = md.spec.auth.enabled();
  if (l.pods_per_group == 1 && !auth) return "";
  std::string script = "set -f; ";
  if (l.pods_per_group > 1) {
    script +=
        "if [ \"$MOESERVE_POD_INDEX\" -gt 0 ]; then set -- \"$@\" --headless "
        "--data-parallel-start-rank \"$((MOESERVE_POD_INDEX * " +
        std::to_string(l.ranks_per_pod) + "))\"";
    script += auth ? std::string("; else ") + kVllmKeys + "; fi; " : "; fi; ";
  } else {
    script += std::string(kVllmKeys) + "; ";
  }
  return script + "exec \"$0\" \"$@\"";
}

std::string sglang_script(const ModelDeployment& md, const GroupLayout& l) {
  const bool auth = md.spec.auth.enabled();
  if (l.pods_per_group == 1 && !auth) return "";
  std::string script = "set -f; ";
  if (l.pods_per_group > 1) {
    script += "set -- \"$@\" --node-rank \"$MOESERVE_POD_INDEX\"; ";
    if (auth)
      script += std::string("if [ \"$MOESERVE_POD_INDEX\" = 0 ]; then ") + kSglangKey + "; fi; ";
  } else {
    script += std::string(kSglangKey) + "; ";
  }
  return script + "exec \"$0\" \"$@\"";
}

EnvVar value_env(const char* name, std::string value) { return {name, std::move(value), nullptr}; }

std::vector<EnvVar> engine_env(const ModelDeployment& md, int32_t group) {
  const std::string path = "metadata.labels['" + std::string(kLabelPodIndex) + "']";
  std::vector<EnvVar> env = {
      {"MOESERVE_POD_INDEX", std::nullopt, {{"fieldRef", {{"fieldPath", path}}}}}};
  if (md.spec.auth.enabled()) {
    env.push_back(value_env(kApiKeyFileEnv, std::string(kAuthMountDir) + "/" + md.spec.auth.key));
  }
  env.push_back(value_env("MOESERVE_DEPLOYMENT", md.metadata.name));
  env.push_back(value_env("MOESERVE_GROUP", std::to_string(group)));
  // The root file system is read-only: caches (Triton, torch.compile, FlashInfer JIT,
  // the engines' own) go under the /tmp emptyDir.
  env.push_back(value_env("HOME", "/tmp"));
  return env;
}

json container_ports(const WorkerSpec& w) {
  return json::array(
      {{{"name", "http"}, {"containerPort", w.port}, {"protocol", "TCP"}},
       {{"name", "rendezvous"}, {"containerPort", w.rendezvous_port}, {"protocol", "TCP"}}});
}

json with_timing(json probe, int32_t period_seconds, int32_t failure_threshold) {
  probe["periodSeconds"] = period_seconds;
  probe["failureThreshold"] = failure_threshold;
  probe["timeoutSeconds"] = 5;
  return probe;
}

// Startup may take as long as the progress deadline (large checkpoints load slowly).
int32_t startup_failures(const ModelDeploymentSpec& s) {
  return std::max(1, (s.progress_deadline_seconds + 9) / 10);
}

void set_probes(const ModelDeploymentSpec& s, const json& check, EngineContainer* out) {
  out->startup_probe = with_timing(check, 10, startup_failures(s));
  out->liveness_probe = with_timing(check, 10, 6);
  out->readiness_probe = with_timing(check, 5, 3);
}

void set_pod_basics(const ModelDeployment& md, int32_t group, EngineContainer* out) {
  out->env = engine_env(md, group);
  out->ports = container_ports(md.spec.worker);
  out->lifecycle = {
      {"preStop",
       {{"exec",
         {{"command", json::array({"/bin/sleep", std::to_string(kEngineDrainSeconds)})}}}}}};
}

}  // namespace

EngineContainer vllm_container(const ModelDeployment& md, const GroupLayout& layout,
                               int32_t group) {
  EngineContainer out;
  out.args = vllm_common(md, layout, group);
  const std::string script = vllm_script(md, layout);
  out.command = script.empty() ? std::vector<std::string>{"vllm"}
                               : std::vector<std::string>{"/bin/sh", "-c", script, "vllm"};
  set_pod_basics(md, group, &out);
  json check;
  if (layout.pods_per_group == 1) {
    check = {{"httpGet", {{"path", "/health"}, {"port", "http"}}}};
  } else {
    const std::string url = "http://127.0.0.1:" + std::to_string(md.spec.worker.port) + "/health";
    check = {{"exec",
              {{"command",
                json::array({"/bin/sh", "-c",
                             "[ \"$MOESERVE_POD_INDEX\" != 0 ] || exec python3 -c 'import sys, "
                             "urllib.request; urllib.request.urlopen(sys.argv[1], timeout=4)' " +
                                 url})}}}};
  }
  set_probes(md.spec, check, &out);
  return out;
}

EngineContainer sglang_container(const ModelDeployment& md, const GroupLayout& layout,
                                 int32_t group) {
  EngineContainer out;
  out.args = sglang_common(md, layout, group);
  const std::string script = sglang_script(md, layout);
  out.command = script.empty() ? std::vector<std::string>{"python3"}
                               : std::vector<std::string>{"/bin/sh", "-c", script, "python3"};
  set_pod_basics(md, group, &out);
  set_probes(md.spec, {{"httpGet", {{"path", "/health"}, {"port", "http"}}}}, &out);
  return out;
}

EngineContainer engine_container(const ModelDeployment& md, const GroupLayout& layout,
                                 int32_t group) {
  return md.spec.engine.kind == EngineKind::kSglang ? sglang_container(md, layout, group)
                                                    : vllm_container(md, layout, group);
}

std::vector<std::string> vllm_argv(const ModelDeployment& md, const GroupLayout& layout,
                                   int32_t group, int32_t pod_index,
                                   const std::vector<std::string>& api_keys) {
  std::vector<std::string> out = {"vllm"};
  const std::vector<std::string> common = vllm_common(md, layout, group);
  out.insert(out.end(), common.begin(), common.end());
  if (pod_index > 0) {
    append(&out, {"--headless", "--data-parallel-start-rank",
                  std::to_string(pod_index * layout.ranks_per_pod)});
  } else if (md.spec.auth.enabled()) {
    out.push_back("--api-key");
    out.insert(out.end(), api_keys.begin(), api_keys.end());
  }
  return out;
}

std::vector<std::string> sglang_argv(const ModelDeployment& md, const GroupLayout& layout,
                                     int32_t group, int32_t pod_index, const std::string& api_key) {
  std::vector<std::string> out = {"python3"};
  const std::vector<std::string> common = sglang_common(md, layout, group);
  out.insert(out.end(), common.begin(), common.end());
  if (layout.pods_per_group > 1) append(&out, {"--node-rank", std::to_string(pod_index)});
  if (pod_index == 0 && md.spec.auth.enabled()) append(&out, {"--api-key", api_key});
  return out;
}

int32_t metrics_port(const ModelDeploymentSpec& spec) {
  return spec.engine.kind == EngineKind::kMoeserve ? spec.worker.metrics_port : spec.worker.port;
}

const char* operator_rendered_flag(EngineKind kind, std::string_view flag) {
  for (const RenderedFlag& f : kRenderedFlags) {
    if (f.kind == kind && flag == f.flag) return f.field;
  }
  return nullptr;
}

}  // namespace moeserve::deployment
