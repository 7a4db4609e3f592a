#include "operator/deployment/pod_template.h"

#include <algorithm>

#include "operator/deployment/hash.h"
#include "operator/deployment/names.h"
#include "operator/deployment/placement_config.h"

namespace moeserve::op {
namespace {

using nlohmann::json;

constexpr const char* kModelVolume = "model";
constexpr const char* kPlacementVolume = "placement";

json field_ref_env(const char* name, std::string_view field) {
  return {{"name", name}, {"valueFrom", {{"fieldRef", {{"fieldPath", field}}}}}};
}

json value_env(const char* name, std::string value) {
  return {{"name", name}, {"value", std::move(value)}};
}

json worker_env(const ModelDeployment& md, const GroupLayout& layout, int32_t group) {
  const std::string pod_index_path = "metadata.labels['" + std::string(kLabelPodIndex) + "']";
  json env = json::array({field_ref_env("MOESERVE_POD_INDEX", pod_index_path)});
  if (layout.ranks_per_pod == 1) env.push_back(field_ref_env("MOESERVE_RANK", pod_index_path));
  env.push_back(value_env("MOESERVE_RANKS_PER_POD", std::to_string(layout.ranks_per_pod)));
  env.push_back(value_env("MOESERVE_WORLD_SIZE", std::to_string(layout.ranks_per_group)));
  env.push_back(
      value_env("MOESERVE_LEADER_ADDR", leader_address(md.metadata.name, md.metadata.namespace_,
                                                       group, md.spec.worker.rendezvous_port)));
  env.push_back(value_env("MOESERVE_DEPLOYMENT", md.metadata.name));
  env.push_back(value_env("MOESERVE_GROUP", std::to_string(group)));
  for (const json& var : to_json(md.spec.worker.env)) env.push_back(var);
  return env;
}

json command(const GroupLayout& layout) {
  if (layout.ranks_per_pod == 1) return json::array({"moeserve-worker"});
  const std::string script = "export MOESERVE_RANK=$((MOESERVE_POD_INDEX * " +
                             std::to_string(layout.ranks_per_pod) + ")); exec \"$0\" \"$@\"";
  return json::array({"/bin/sh", "-c", script, "moeserve-worker"});
}

json http_probe(const char* path, int32_t period_seconds, int32_t failure_threshold) {
  return {{"httpGet", {{"path", path}, {"port", "http"}}},
          {"periodSeconds", period_seconds},
          {"failureThreshold", failure_threshold}};
}

json restricted_security_context() {
  return {{"allowPrivilegeEscalation", false},
          {"readOnlyRootFilesystem", true},
          {"capabilities", {{"drop", json::array({"ALL"})}}}};
}

// The init container that fetches an hf:// checkpoint into the model emptyDir.
json downloader(const ModelDeployment& md, const ModelSource& source) {
  json env = to_json(md.spec.worker.env);
  env.push_back(value_env("HOME", std::string(kModelMountDir) + "/.home"));
  const std::string script =
      "python -m pip install --user --quiet --no-cache-dir huggingface_hub && "
      "python -c 'import sys; from huggingface_hub import snapshot_download; "
      "snapshot_download(sys.argv[1], local_dir=sys.argv[2])' \"$0\" \"$1\"";
  return {{"name", "download-model"},
          {"image", md.spec.model.downloader_image},
          {"imagePullPolicy", md.spec.worker.image_pull_policy},
          {"command", json::array({"/bin/sh", "-c", script, source.repo, model_dir(source)})},
          {"env", env},
          {"volumeMounts", json::array({{{"name", kModelVolume}, {"mountPath", kModelMountDir}}})},
          {"securityContext", restricted_security_context()}};
}

}  // namespace

std::string model_dir(const ModelSource& source) {
  switch (source.kind) {
    case ModelSource::Kind::kHuggingFace: return std::string(kModelMountDir) + "/" + source.repo;
    case ModelSource::Kind::kPvc:
      return source.path.empty() ? kModelMountDir : std::string(kModelMountDir) + "/" + source.path;
    case ModelSource::Kind::kPath: return source.path;
  }
  return source.path;
}

std::vector<std::string> worker_args(const ModelDeployment& md, const GroupLayout& layout,
                                     int32_t group) {
  const ModelDeploymentSpec& s = md.spec;
  const ModelSource source = parse_model_source(s.model.source).value_or(ModelSource{});
  std::vector<std::string> args = {
      "serve",
      "--model",
      model_dir(source),
      "--host",
      "0.0.0.0",
      "--port",
      std::to_string(s.worker.port),
      "--served-model-name",
      served_model_name(s.model),
      "--precision",
      std::string(precision_name(s.model.precision)),
      "--world-size",
      std::to_string(layout.ranks_per_group),
      "--leader",
      leader_address(md.metadata.name, md.metadata.namespace_, group, s.worker.rendezvous_port)};
  if (placement_enabled(s)) {
    args.push_back("--placement");
    args.push_back(std::string(kPlacementMountDir) + "/" + kPlacementKey);
  }
  if (s.speculative.method == SpeculativeMethod::kMtp) {
    args.insert(args.end(), {"--speculative", "mtp", "--draft-tokens",
                             std::to_string(s.speculative.draft_tokens)});
  }
  args.insert(args.end(), s.worker.extra_args.begin(), s.worker.extra_args.end());
  return args;
}

json render_pod_template(const ModelDeployment& md, const GroupLayout& layout, int32_t group) {
  const ModelDeploymentSpec& s = md.spec;
  const WorkerSpec& w = s.worker;
  const ModelSource source = parse_model_source(s.model.source).value_or(ModelSource{});

  json mounts = json::array(
      {{{"name", "dshm"}, {"mountPath", "/dev/shm"}}, {{"name", "tmp"}, {"mountPath", "/tmp"}}});
  json volumes =
      json::array({{{"name", "dshm"},
                    {"emptyDir", {{"medium", "Memory"}, {"sizeLimit", w.shared_memory_size}}}},
                   {{"name", "tmp"}, {"emptyDir", json::object()}}});
  json init_containers = json::array();
  if (source.kind == ModelSource::Kind::kPvc) {
    mounts.push_back({{"name", kModelVolume}, {"mountPath", kModelMountDir}, {"readOnly", true}});
    volumes.push_back(
        {{"name", kModelVolume},
         {"persistentVolumeClaim", {{"claimName", source.claim}, {"readOnly", true}}}});
  } else if (source.kind == ModelSource::Kind::kHuggingFace) {
    mounts.push_back({{"name", kModelVolume}, {"mountPath", kModelMountDir}, {"readOnly", true}});
    volumes.push_back({{"name", kModelVolume}, {"emptyDir", json::object()}});
    init_containers.push_back(downloader(md, source));
  }
  if (placement_enabled(s)) {
    mounts.push_back(
        {{"name", kPlacementVolume}, {"mountPath", kPlacementMountDir}, {"readOnly", true}});
    volumes.push_back({{"name", kPlacementVolume},
                       {"configMap", {{"name", placement_configmap_name(md.metadata.name)}}}});
  }

  // Startup may take as long as the progress deadline (large checkpoints load slowly).
  const int32_t startup_failures = std::max(1, (s.progress_deadline_seconds + 9) / 10);
  json container = {
      {"name", kWorkerContainer},
      {"image", w.image},
      {"imagePullPolicy", w.image_pull_policy},
      {"command", command(layout)},
      {"args", worker_args(md, layout, group)},
      {"env", worker_env(md, layout, group)},
      {"ports",
       json::array(
           {{{"name", "http"}, {"containerPort", w.port}, {"protocol", "TCP"}},
            {{"name", "rendezvous"}, {"containerPort", w.rendezvous_port}, {"protocol", "TCP"}}})},
      {"startupProbe", http_probe("/healthz", 10, startup_failures)},
      {"livenessProbe", http_probe("/healthz", 10, 6)},
      {"readinessProbe", http_probe("/readyz", 5, 3)},
      {"resources", to_json(w.resources)},
      {"volumeMounts", mounts},
      {"securityContext", restricted_security_context()}};

  json pod_spec = {{"containers", json::array({container})},
                   {"volumes", volumes},
                   {"terminationGracePeriodSeconds", kTerminationGraceSeconds},
                   {"enableServiceLinks", false},
                   {"securityContext",
                    {{"runAsNonRoot", true},
                     {"runAsUser", kWorkerUid},
                     {"runAsGroup", kWorkerUid},
                     {"fsGroup", kWorkerUid},
                     {"seccompProfile", {{"type", "RuntimeDefault"}}}}}};
  if (!init_containers.empty()) pod_spec["initContainers"] = init_containers;
  if (!w.node_selector.empty()) pod_spec["nodeSelector"] = w.node_selector;
  if (!w.tolerations.empty()) pod_spec["tolerations"] = to_json(w.tolerations);
  if (w.spread_across_nodes) {
    pod_spec["affinity"] = {
        {"podAntiAffinity",
         {{"requiredDuringSchedulingIgnoredDuringExecution",
           json::array(
               {{{"labelSelector", {{"matchLabels", group_selector(md.metadata.name, group)}}},
                 {"topologyKey", "kubernetes.io/hostname"}}})}}}};
  }
  return {{"metadata", {{"labels", group_labels(md.metadata.name, group)}}}, {"spec", pod_spec}};
}

std::string template_hash(const ModelDeployment& md, const GroupLayout& layout) {
  return json_hash(render_pod_template(md, layout, 0));
}

}  // namespace moeserve::op
