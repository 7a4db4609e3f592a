#include "operator/deployment/pod_template.h"

#include <algorithm>

#include "operator/deployment/hash.h"
#include "operator/deployment/names.h"
#include "operator/deployment/placement_config.h"
#include "operator/deployment/serialize.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;

constexpr const char* kModelVolume = "model";
constexpr const char* kPlacementVolume = "placement";

json value_env(const char* name, std::string value) {
  return {{"name", name}, {"value", std::move(value)}};
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

WorkerCommand pod_worker_command(const ModelDeployment& md, const GroupLayout& layout,
                                 int32_t group) {
  const ModelDeploymentSpec& s = md.spec;
  WorkerCommandInput in;
  in.model_dir = model_dir(parse_model_source(s.model.source).value_or(ModelSource{}));
  in.host = "0.0.0.0";
  in.port = s.worker.port;
  in.served_model_name = served_model_name(s.model);
  in.precision = s.model.precision;
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
  return worker_command(in);
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

  const WorkerCommand worker = pod_worker_command(md, layout, group);
  json env = to_json(worker.env);
  for (const json& var : to_json(w.env)) env.push_back(var);

  // Startup may take as long as the progress deadline (large checkpoints load slowly).
  const int32_t startup_failures = std::max(1, (s.progress_deadline_seconds + 9) / 10);
  json container = {
      {"name", kWorkerContainer},
      {"image", w.image},
      {"imagePullPolicy", w.image_pull_policy},
      {"command", worker.command},
      {"args", worker.args},
      {"env", env},
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

}  // namespace moeserve::deployment
