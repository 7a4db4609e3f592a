#include "operator/deployment/pod_template.h"

#include <algorithm>

#include "operator/deployment/engine_command.h"
#include "operator/deployment/hash.h"
#include "operator/deployment/names.h"
#include "operator/deployment/placement_config.h"
#include "operator/deployment/serialize.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;

constexpr const char* kModelVolume = "model";
constexpr const char* kPlacementVolume = "placement";
constexpr const char* kAuthVolume = "api-keys";
constexpr const char* kShmVolume = "dshm";
constexpr const char* kTmpVolume = "tmp";
// Read by the worker's user and group only (fsGroup owns the files).
constexpr int32_t kAuthFileMode = 0440;

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

// The init container that fetches an hf:// checkpoint into the model volume with
// moeserve-fetch, which ships in the worker image: nothing is installed at pod start,
// and every file is checked against the Hub's published checksum. spec.worker.env
// reaches it, so HF_TOKEN (from a Secret) and HF_ENDPOINT (a mirror) can be given.
json downloader(const ModelDeployment& md, const ModelSource& source) {
  const std::string& image = md.spec.model.downloader_image.empty()
                                 ? md.spec.worker.image
                                 : md.spec.model.downloader_image;
  return {{"name", "download-model"},
          {"image", image},
          {"imagePullPolicy", md.spec.worker.image_pull_policy},
          {"command",
           json::array({"moeserve-fetch", md.spec.model.source, "--dest", model_dir(source)})},
          {"env", to_json(md.spec.worker.env)},
          {"volumeMounts", json::array({{{"name", kModelVolume}, {"mountPath", kModelMountDir}}})},
          {"securityContext", restricted_security_context()}};
}

// The worker container without volumeMounts: moeserve's own worker.
json moeserve_container(const ModelDeployment& md, const GroupLayout& layout, int32_t group) {
  const ModelDeploymentSpec& s = md.spec;
  const WorkerSpec& w = s.worker;
  const WorkerCommand worker = pod_worker_command(md, layout, group);
  json env = to_json(worker.env);
  for (const json& var : to_json(w.env)) env.push_back(var);
  for (const json& var : to_json(s.engine.env)) env.push_back(var);

  // Startup may take as long as the progress deadline (large checkpoints load slowly).
  const int32_t startup_failures = std::max(1, (s.progress_deadline_seconds + 9) / 10);
  return {{"name", kWorkerContainer},
          {"image", engine_image(s)},
          {"imagePullPolicy", w.image_pull_policy},
          {"command", worker.command},
          {"args", worker.args},
          {"env", env},
          {"ports",
           json::array(
               {{{"name", "http"}, {"containerPort", w.port}, {"protocol", "TCP"}},
                {{"name", "rendezvous"}, {"containerPort", w.rendezvous_port}, {"protocol", "TCP"}},
                {{"name", "metrics"}, {"containerPort", w.metrics_port}, {"protocol", "TCP"}}})},
          {"startupProbe", http_probe("/healthz", 10, startup_failures)},
          {"livenessProbe", http_probe("/healthz", 10, 6)},
          {"readinessProbe", http_probe("/readyz", 5, 3)},
          {"resources", to_json(w.resources)},
          {"securityContext", restricted_security_context()}};
}

// The worker container without volumeMounts: vLLM or SGLang (engine_command.h).
json other_engine_container(const ModelDeployment& md, const GroupLayout& layout, int32_t group) {
  const ModelDeploymentSpec& s = md.spec;
  const EngineContainer engine = engine_container(md, layout, group);
  json env = to_json(engine.env);
  for (const json& var : to_json(s.worker.env)) env.push_back(var);
  for (const json& var : to_json(s.engine.env)) env.push_back(var);
  return {{"name", kWorkerContainer},
          {"image", engine_image(s)},
          {"imagePullPolicy", s.worker.image_pull_policy},
          {"command", engine.command},
          {"args", engine.args},
          {"env", env},
          {"ports", engine.ports},
          {"startupProbe", engine.startup_probe},
          {"livenessProbe", engine.liveness_probe},
          {"readinessProbe", engine.readiness_probe},
          {"lifecycle", engine.lifecycle},
          {"resources", to_json(s.worker.resources)},
          {"securityContext", restricted_security_context()}};
}

}  // namespace

bool is_operator_volume(std::string_view name) {
  for (const char* ours : {kShmVolume, kTmpVolume, kModelVolume, kPlacementVolume, kAuthVolume}) {
    if (name == ours) return true;
  }
  return false;
}

bool is_operator_mount_path(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  for (const char* ours : {"/dev/shm", "/tmp", kModelMountDir, kPlacementMountDir, kAuthMountDir}) {
    if (path == ours) return true;
  }
  return false;
}

std::string model_dir(const ModelSource& source) {
  switch (source.kind) {
    case ModelSource::Kind::kHuggingFace: {
      // A written revision gets its own directory, so a shared cache holds several.
      const std::string repo_dir = std::string(kModelMountDir) + "/" + source.repo;
      return source.revision.empty() ? repo_dir : repo_dir + "/" + source.revision;
    }
    case ModelSource::Kind::kPvc:
      return source.path.empty() ? kModelMountDir : std::string(kModelMountDir) + "/" + source.path;
    case ModelSource::Kind::kPath: return source.path;
  }
  return source.path;
}

WorkerCommand pod_worker_command(const ModelDeployment& md, const GroupLayout& layout,
                                 int32_t group) {
  const ModelDeploymentSpec& s = md.spec;
  WorkerCommandInput in;
  in.model_dir = model_dir(parse_model_source(s.model.source).value_or(ModelSource{}));
  in.host = "0.0.0.0";
  in.port = s.worker.port;
  in.metrics_host = "0.0.0.0";
  in.metrics_port = s.worker.metrics_port;
  if (s.auth.enabled()) in.api_key_file = std::string(kAuthMountDir) + "/" + s.auth.key;
  in.served_model_name = served_model_name(s.model);
  if (s.model.precision != Precision::kAuto) in.precision = s.model.precision;
  in.speculative = s.speculative;
  in.world_size = layout.ranks_per_group;
  in.leader =
      leader_address(md.metadata.name, md.metadata.namespace_, group, s.worker.rendezvous_port);
  if (placement_enabled(s)) {
    in.placement_path = std::string(kPlacementMountDir) + "/" + kPlacementKey;
  }
  in.deployment = md.metadata.name;
  in.group = group;
  in.rank_source = RankSource::kPodIndex;
  in.ranks_per_pod = layout.ranks_per_pod;
  in.extra_args = s.worker.extra_args;
  in.extra_args.insert(in.extra_args.end(), s.engine.extra_args.begin(), s.engine.extra_args.end());
  return worker_command(in);
}

json render_pod_template(const ModelDeployment& md, const GroupLayout& layout, int32_t group) {
  const ModelDeploymentSpec& s = md.spec;
  const WorkerSpec& w = s.worker;
  const ModelSource source = parse_model_source(s.model.source).value_or(ModelSource{});

  json mounts = json::array({{{"name", kShmVolume}, {"mountPath", "/dev/shm"}},
                             {{"name", kTmpVolume}, {"mountPath", "/tmp"}}});
  json volumes =
      json::array({{{"name", kShmVolume},
                    {"emptyDir", {{"medium", "Memory"}, {"sizeLimit", w.shared_memory_size}}}},
                   {{"name", kTmpVolume}, {"emptyDir", json::object()}}});
  json init_containers = json::array();
  if (source.kind == ModelSource::Kind::kPvc) {
    mounts.push_back({{"name", kModelVolume}, {"mountPath", kModelMountDir}, {"readOnly", true}});
    volumes.push_back(
        {{"name", kModelVolume},
         {"persistentVolumeClaim", {{"claimName", source.claim}, {"readOnly", true}}}});
  } else if (source.kind == ModelSource::Kind::kHuggingFace) {
    // The worker reads what the init container wrote; only the init container writes.
    mounts.push_back({{"name", kModelVolume}, {"mountPath", kModelMountDir}, {"readOnly", true}});
    if (s.model.cache_claim.empty()) {
      volumes.push_back({{"name", kModelVolume}, {"emptyDir", json::object()}});
    } else {
      volumes.push_back({{"name", kModelVolume},
                         {"persistentVolumeClaim", {{"claimName", s.model.cache_claim}}}});
    }
    init_containers.push_back(downloader(md, source));
  }
  if (placement_enabled(s)) {
    mounts.push_back(
        {{"name", kPlacementVolume}, {"mountPath", kPlacementMountDir}, {"readOnly", true}});
    volumes.push_back({{"name", kPlacementVolume},
                       {"configMap", {{"name", placement_configmap_name(md.metadata.name)}}}});
  }
  if (s.auth.enabled()) {
    mounts.push_back({{"name", kAuthVolume}, {"mountPath", kAuthMountDir}, {"readOnly", true}});
    volumes.push_back({{"name", kAuthVolume},
                       {"secret",
                        {{"secretName", s.auth.secret_name},
                         {"items", json::array({{{"key", s.auth.key}, {"path", s.auth.key}}})},
                         {"defaultMode", kAuthFileMode}}}});
  }
  for (const json& volume : w.volumes) volumes.push_back(volume);
  for (const json& mount : w.volume_mounts) mounts.push_back(mount);

  json container = s.engine.kind == EngineKind::kMoeserve
                       ? moeserve_container(md, layout, group)
                       : other_engine_container(md, layout, group);
  container["volumeMounts"] = mounts;
  const int64_t grace = s.engine.kind == EngineKind::kMoeserve ? kTerminationGraceSeconds
                                                               : kEngineTerminationGraceSeconds;

  json pod_spec = {{"containers", json::array({container})},
                   {"volumes", volumes},
                   {"terminationGracePeriodSeconds", grace},
                   {"enableServiceLinks", false},
                   {"automountServiceAccountToken", false},
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
    pod_spec["affinity"]["podAntiAffinity"] = {
        {"requiredDuringSchedulingIgnoredDuringExecution",
         json::array(
             {{{"labelSelector", {{"matchLabels", group_selector(md.metadata.name, group)}}},
               {"topologyKey", "kubernetes.io/hostname"}}})}};
  }
  if (!w.node_affinity.is_null()) pod_spec["affinity"]["nodeAffinity"] = w.node_affinity;
  if (!w.service_account_name.empty()) pod_spec["serviceAccountName"] = w.service_account_name;
  if (!w.image_pull_secrets.empty()) pod_spec["imagePullSecrets"] = to_json_secrets(w);
  if (!w.priority_class_name.empty()) pod_spec["priorityClassName"] = w.priority_class_name;
  if (!w.topology_spread_constraints.empty()) {
    pod_spec["topologySpreadConstraints"] = w.topology_spread_constraints;
  }
  json labels = group_labels(md.metadata.name, group);
  if (s.engine.kind != EngineKind::kMoeserve) {
    labels[std::string(kLabelEngine)] = std::string(engine_name(s.engine.kind));
  }
  return {{"metadata", {{"labels", labels}}}, {"spec", pod_spec}};
}

std::string template_hash(const ModelDeployment& md, const GroupLayout& layout) {
  return json_hash(render_pod_template(md, layout, 0));
}

}  // namespace moeserve::deployment
