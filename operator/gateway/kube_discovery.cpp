#include "operator/gateway/kube_discovery.h"

#include <algorithm>

#include "common/log.h"
#include "operator/deployment/gateway_waiting.h"
#include "operator/deployment/names.h"
#include "operator/deployment/parse.h"
#include "operator/kube/config.h"

namespace moeserve::gateway {
namespace {

using nlohmann::json;

bool being_deleted(const json& object) {
  return object.value("metadata", json::object()).contains("deletionTimestamp");
}

bool pod_ready(const json& pod) {
  const json status = pod.value("status", json::object());
  for (const auto& c : status.value("conditions", json::array())) {
    if (c.value("type", "") == "Ready") return c.value("status", "") == "True";
  }
  return false;
}

// The group index of a rank-0 pod of `deployment` ("x-g3-0" labelled group 3), or -1.
int32_t rank_zero_group(const json& pod, const std::string& deployment) {
  const json meta = pod.value("metadata", json::object());
  const json labels = meta.value("labels", json::object());
  const std::string name = meta.value("name", "");
  if (name.size() < 2 || name.compare(name.size() - 2, 2, "-0") != 0) return -1;
  auto group = deployment::parse_group_name(deployment, name.substr(0, name.size() - 2));
  if (!group) return -1;
  const std::string label = labels.value(std::string(deployment::kLabelGroup), "");
  if (label != std::to_string(*group)) return -1;
  return *group;
}

std::string url_host(const std::string& ip) {
  return ip.find(':') != std::string::npos ? "[" + ip + "]" : ip;
}

}  // namespace

Snapshot build_snapshot(const std::vector<json>& deployments, const std::vector<json>& pods) {
  // Rank-0 pods by "<namespace>/<deployment label>".
  std::map<std::string, std::vector<const json*>> pods_of;
  for (const json& pod : pods) {
    if (being_deleted(pod)) continue;
    const json meta = pod.value("metadata", json::object());
    const std::string owner =
        meta.value("labels", json::object()).value(std::string(deployment::kLabelDeployment), "");
    if (owner.empty()) continue;
    pods_of[meta.value("namespace", "") + "/" + owner].push_back(&pod);
  }
  Snapshot out;
  for (const json& object : deployments) {
    if (being_deleted(object)) continue;
    const deployment::ModelDeployment md = deployment::parse_model_deployment(object);
    if (!md.valid()) continue;
    ServedModel m;
    m.model = deployment::served_model_name(md.spec.model);
    m.deployment = md.metadata.namespace_ + "/" + md.metadata.name;
    m.queue_size = md.spec.gateway.queue_size;
    m.queue_timeout_seconds = md.spec.gateway.queue_timeout_seconds;
    bool pods_exist = false;
    for (const json* pod : pods_of[m.deployment]) {
      const int32_t group = rank_zero_group(*pod, md.metadata.name);
      if (group < 0) continue;
      pods_exist = true;
      const std::string ip = pod->value("status", json::object()).value("podIP", "");
      if (ip.empty()) continue;
      m.groups.push_back({m.deployment + "/g" + std::to_string(group),
                          "http://" + url_host(ip) + ":" + std::to_string(md.spec.worker.port),
                          pod_ready(*pod)});
    }
    std::sort(m.groups.begin(), m.groups.end(), [](const Upstream& a, const Upstream& b) {
      return a.id.size() != b.id.size() ? a.id.size() < b.id.size() : a.id < b.id;
    });
    const deployment::AutoscalingSpec& a = md.spec.autoscaling;
    m.can_wake = (a.enabled && a.scale_to_zero_after_idle_seconds.has_value()) ||
                 md.status.desired_replicas > 0 || md.status.replicas > 0 || pods_exist;
    out.models.push_back(std::move(m));
  }
  std::sort(out.models.begin(), out.models.end(),
            [](const ServedModel& a, const ServedModel& b) { return a.deployment < b.deployment; });
  return out;
}

KubeDiscovery::KubeDiscovery(const kube::Client& client, KubeDiscoveryOptions options)
    : client_(client), options_(std::move(options)) {
  kube::ReflectorHandlers handlers;
  handlers.on_add = [this](const json&) { rebuild(); };
  handlers.on_update = [this](const json&, const json&) { rebuild(); };
  handlers.on_delete = [this](const json&) { rebuild(); };
  deployments_ =
      std::make_unique<kube::Reflector>(client_, kube::resources::kModelDeployments, options_.ns,
                                        handlers, options_.reflector_options);
  kube::ReflectorOptions pod_options = options_.reflector_options;
  pod_options.label_selector = kRankZeroPodSelector;
  pods_ = std::make_unique<kube::Reflector>(client_, kube::resources::kPods, options_.ns, handlers,
                                            pod_options);
}

KubeDiscovery::KubeDiscovery(std::unique_ptr<kube::Client> client, KubeDiscoveryOptions options)
    : KubeDiscovery(*client, std::move(options)) {
  owned_client_ = std::move(client);
}

KubeDiscovery::~KubeDiscovery() { stop(); }

void KubeDiscovery::start() {
  threads_.emplace_back([this] { deployments_->run(); });
  threads_.emplace_back([this] { pods_->run(); });
  threads_.emplace_back([this] { writer_loop(); });
}

void KubeDiscovery::stop() {
  if (stopping_.exchange(true)) return;
  deployments_->stop();
  pods_->stop();
  {
    std::lock_guard<std::mutex> lock(waiting_mutex_);
    waiting_cv_.notify_all();
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

bool KubeDiscovery::synced() const { return deployments_->has_synced() && pods_->has_synced(); }

void KubeDiscovery::rebuild() {
  std::lock_guard<std::mutex> rebuilding(rebuild_mutex_);
  if (!synced()) return;  // a partial view would drop groups that exist
  Snapshot next = build_snapshot(deployments_->items(), pods_->items());
  std::lock_guard<std::mutex> lock(snapshot_mutex_);
  snapshot_ = std::move(next);
  built_once_ = true;
}

Snapshot KubeDiscovery::snapshot() const {
  std::lock_guard<std::mutex> lock(snapshot_mutex_);
  return snapshot_;
}

void KubeDiscovery::report_waiting(const std::string& deployment, int64_t waiting) {
  std::lock_guard<std::mutex> lock(waiting_mutex_);
  auto it = waiting_.find(deployment);
  if (it == waiting_.end()) {
    if (waiting <= 0) return;  // nothing was reported, nothing to clear
    it = waiting_.emplace(deployment, Waiting{}).first;
  }
  it->second.want = std::max<int64_t>(0, waiting);
  waiting_cv_.notify_all();
}

Status KubeDiscovery::write_waiting(const std::string& deployment, int64_t want) {
  const size_t slash = deployment.find('/');
  if (slash == std::string::npos) {
    return invalid_argument_error("deployment key must be <namespace>/<name>: " + deployment);
  }
  const std::string key = deployment::gateway_waiting_key(options_.pod_name);
  const auto now = std::chrono::sys_seconds(std::chrono::seconds(options_.clock->unix_seconds()));
  const json value = want > 0 ? json(deployment::format_gateway_waiting(want, now)) : json(nullptr);
  auto patched = client_.patch(kube::resources::kModelDeployments, deployment.substr(0, slash),
                               deployment.substr(slash + 1), kube::PatchType::kMerge,
                               {{"metadata", {{"annotations", {{key, value}}}}}});
  return patched.ok() ? ok_status() : patched.status();
}

void KubeDiscovery::writer_loop() {
  std::unique_lock<std::mutex> lock(waiting_mutex_);
  while (!stopping_) {
    waiting_cv_.wait_for(lock, options_.writer_poll);
    if (stopping_) break;
    if (!built_once_ && synced()) {
      // Both lists are in: the first whole view (an empty list runs no handler).
      lock.unlock();
      rebuild();
      lock.lock();
    }
    const Clock::TimePoint now = options_.clock->now();
    std::vector<std::pair<std::string, int64_t>> due;
    for (auto& [deployment, w] : waiting_) {
      const bool changed = !w.ever_written || w.want != w.written;
      const auto since = now - w.last_attempt;
      if (w.attempted && since < options_.waiting_min_interval) continue;
      if (changed || (w.want > 0 && since >= options_.waiting_refresh)) {
        due.emplace_back(deployment, w.want);
        w.last_attempt = now;
        w.attempted = true;
      }
    }
    if (due.empty()) continue;
    lock.unlock();
    std::vector<std::pair<std::pair<std::string, int64_t>, Status>> results;
    for (const auto& item : due) {
      results.emplace_back(item, options_.pod_name.empty()
                                     ? failed_precondition_error("no --pod-name")
                                     : write_waiting(item.first, item.second));
    }
    lock.lock();
    for (const auto& [item, status] : results) {
      const auto& [deployment, value] = item;
      auto it = waiting_.find(deployment);
      if (it == waiting_.end()) continue;
      if (status.ok()) {
        waiting_writes_.fetch_add(1);
        it->second.written = value;
        it->second.ever_written = true;
        // Cleared and nothing new reported meanwhile: forget the deployment.
        if (value == 0 && it->second.want == 0) waiting_.erase(it);
      } else if (status.code() == StatusCode::kNotFound) {
        waiting_.erase(it);
      } else {
        log::warn("cannot publish waiting requests",
                  {{"deployment", deployment}, {"error", status.to_string()}});
      }
    }
  }
}

StatusOr<std::unique_ptr<Discovery>> make_kube_discovery(const KubeDiscoveryOptions& options) {
  MOESERVE_RETURN_IF_ERROR(check_kube_discovery_flags(options));
  if (!kube_discovery_selected(options)) {
    return invalid_argument_error("kube discovery needs --kubeconfig FILE or --in-cluster");
  }
  if (options.pod_name.empty()) {
    return invalid_argument_error(
        "kube discovery needs --pod-name (env POD_NAME): this gateway's key in the "
        "waiting annotation that wakes deployments scaled to zero");
  }
  StatusOr<kube::Config> config =
      options.in_cluster ? kube::in_cluster_config() : kube::load_kubeconfig(options.kubeconfig);
  if (!config.ok()) return config.status().with_context("kube discovery");
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<kube::Client> client,
                            kube::Client::create_for(*config));
  auto discovery = std::make_unique<KubeDiscovery>(std::move(client), options);
  discovery->start();
  log::info("kube discovery started", {{"server", config->server},
                                       {"namespace", options.ns.empty() ? "(all)" : options.ns},
                                       {"pod", options.pod_name}});
  return std::unique_ptr<Discovery>(std::move(discovery));
}

void add_kube_discovery_flags(FlagSet* flags, KubeDiscoveryOptions* options) {
  flags->add_string("kubeconfig", &options->kubeconfig,
                    "discover ModelDeployments in the cluster of this kubeconfig",
                    "KUBECONFIG_PATH");
  flags->add_bool("in-cluster", &options->in_cluster,
                  "discover ModelDeployments with the pod's service account",
                  "MOESERVE_IN_CLUSTER");
  flags->add_string("namespace", &options->ns,
                    "with --kubeconfig or --in-cluster: watch only this namespace (default: all)",
                    "MOESERVE_WATCH_NAMESPACE");
  flags->add_string("pod-name", &options->pod_name,
                    "this gateway's name in the waiting annotation on ModelDeployments",
                    "POD_NAME");
}

bool kube_discovery_selected(const KubeDiscoveryOptions& options) {
  return options.in_cluster || !options.kubeconfig.empty();
}

Status check_kube_discovery_flags(const KubeDiscoveryOptions& options) {
  if (options.in_cluster && !options.kubeconfig.empty()) {
    return invalid_argument_error("--kubeconfig and --in-cluster are exclusive: give one");
  }
  if (!options.ns.empty() && !kube_discovery_selected(options)) {
    return invalid_argument_error("--namespace needs --kubeconfig or --in-cluster");
  }
  return ok_status();
}

}  // namespace moeserve::gateway
