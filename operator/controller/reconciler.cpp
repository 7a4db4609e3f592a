#include "operator/controller/reconciler.h"

#include <algorithm>

#include "common/log.h"
#include "operator/deployment/engine_command.h"
#include "operator/deployment/gateway_waiting.h"
#include "operator/deployment/layout.h"
#include "operator/deployment/names.h"
#include "operator/deployment/parse.h"
#include "operator/deployment/render.h"
#include "operator/deployment/serialize.h"
#include "operator/deployment/status.h"

namespace moeserve::controller {
namespace {

autoscaler::EngineMetrics engine_metrics(deployment::EngineKind kind) {
  switch (kind) {
    case deployment::EngineKind::kMoeserve: return autoscaler::EngineMetrics::kMoeserve;
    case deployment::EngineKind::kVllm: return autoscaler::EngineMetrics::kVllm;
    case deployment::EngineKind::kSglang: return autoscaler::EngineMetrics::kSglang;
  }
  return autoscaler::EngineMetrics::kMoeserve;
}

constexpr auto kProgressRequeue = std::chrono::seconds(15);

std::string key_of(const std::string& ns, const std::string& name) { return ns + "/" + name; }

bool controlled_by(const nlohmann::json& object, const std::string& owner_uid) {
  for (const auto& owner : object["metadata"].value("ownerReferences", nlohmann::json::array())) {
    if (owner.value("controller", false) && owner.value("uid", "") == owner_uid) return true;
  }
  return false;
}

const deployment::Condition* find_condition(const deployment::ModelDeploymentStatus& status,
                                            const std::string& type) {
  for (const auto& c : status.conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

int64_t restart_count(const nlohmann::json& pod) {
  int64_t restarts = 0;
  const nlohmann::json status = pod.value("status", nlohmann::json::object());
  for (const char* field : {"initContainerStatuses", "containerStatuses"}) {
    if (!status.contains(field) || !status[field].is_array()) continue;
    for (const auto& container : status[field]) {
      if (container.contains("restartCount") && container["restartCount"].is_number_integer()) {
        restarts += container["restartCount"].get<int64_t>();
      }
    }
  }
  return restarts;
}

autoscaler::PolicySpec policy_of(const deployment::ModelDeploymentSpec& spec, double max_waiting) {
  const deployment::AutoscalingSpec& a = spec.autoscaling;
  autoscaler::PolicySpec p;
  p.min_replicas = a.min_replicas;
  p.max_replicas = a.max_replicas;
  p.target_tokens_per_second_per_group = a.target_tokens_per_second_per_group;
  p.max_cost_per_million_tokens = a.max_cost_per_million_tokens;
  p.ttft_p95_slo_seconds = a.ttft_p95_slo_seconds;
  p.scale_down_stabilization_seconds = a.scale_down_stabilization_seconds;
  p.scale_to_zero_after_idle_seconds = a.scale_to_zero_after_idle_seconds;
  p.usd_per_group_hour = deployment::hourly_cost_usd(spec, deployment::layout_of(spec), 1);
  p.max_waiting_per_group = max_waiting;
  return p;
}

std::string format_ratio(double value) { return autoscaler::format_number(value); }

}  // namespace

std::vector<kube::ResourceRef> watched_resources() {
  namespace res = kube::resources;
  return {res::kStatefulSets,         res::kServices,        res::kConfigMaps,
          res::kPodDisruptionBudgets, res::kNetworkPolicies, res::kPods};
}

ModelDeploymentReconciler::ModelDeploymentReconciler(const kube::Client& client,
                                                     const Informers& informers,
                                                     EventRecorder* events, const Clock* clock,
                                                     AutoscalingHooks hooks)
    : client_(client), informers_(informers), events_(events), clock_(clock), hooks_(hooks) {}

StatusOr<kube::ResourceRef> ModelDeploymentReconciler::resource_for_kind(const std::string& kind) {
  if (kind == "StatefulSet") return kube::resources::kStatefulSets;
  if (kind == "Service") return kube::resources::kServices;
  if (kind == "ConfigMap") return kube::resources::kConfigMaps;
  if (kind == "PodDisruptionBudget") return kube::resources::kPodDisruptionBudgets;
  if (kind == "NetworkPolicy") return kube::resources::kNetworkPolicies;
  return internal_error("render produced an object of unexpected kind " + kind);
}

ModelDeploymentReconciler::Gathered ModelDeploymentReconciler::gather(
    const nlohmann::json& md_object, const deployment::ModelDeployment& md) const {
  Gathered out;
  deployment::Observed& observed = out.observed;
  const std::string& ns = md.metadata.namespace_;
  const std::string& name = md.metadata.name;
  const std::map<std::string, std::string> selector = {
      {std::string(deployment::kLabelDeployment), name}};
  for (const auto& sts : informers_.list(kube::resources::kStatefulSets.resource, ns, selector)) {
    if (!controlled_by(sts, md.metadata.uid)) continue;
    auto group = deployment::observe_statefulset(name, sts);
    if (group.ok()) observed.groups.push_back(*group);
  }
  auto cm = informers_.get(kube::resources::kConfigMaps.resource,
                           key_of(ns, deployment::placement_configmap_name(name)));
  if (cm && controlled_by(*cm, md.metadata.uid)) {
    if (auto placement = deployment::observe_placement_configmap(*cm); placement.ok()) {
      observed.current_placement = *placement;
    }
  }
  for (const auto& np : informers_.list(kube::resources::kNetworkPolicies.resource, ns, selector)) {
    if (controlled_by(np, md.metadata.uid)) {
      observed.network_policies.push_back(np["metadata"].value("name", ""));
    }
  }
  // Pods: restarts of every worker pod; the rank-0 pod of each live group is scraped.
  out.target = {ns, name, {}, engine_metrics(md.spec.engine.kind)};
  for (const auto& pod : informers_.list(kube::resources::kPods.resource, ns, selector)) {
    out.worker_restarts += restart_count(pod);
    const std::string pod_name = pod["metadata"].value("name", "");
    const std::string ip = pod.value("status", nlohmann::json::object()).value("podIP", "");
    for (const deployment::ObservedGroup& g : observed.groups) {
      if (g.terminating || pod_name != deployment::group_name(name, g.index) + "-0" || ip.empty()) {
        continue;
      }
      const std::string host = ip.find(':') != std::string::npos ? "[" + ip + "]" : ip;
      out.target.groups.push_back({g.index, pod_name,
                                   "http://" + host + ":" +
                                       std::to_string(deployment::metrics_port(md.spec)) +
                                       deployment::kMetricsPath});
    }
  }
  std::sort(out.target.groups.begin(), out.target.groups.end(),
            [](const auto& a, const auto& b) { return a.group < b.group; });
  out.gateway_waiting = deployment::fresh_gateway_waiting(
      md_object["metadata"].value("annotations", nlohmann::json()),
      std::chrono::sys_seconds(std::chrono::seconds(clock_->unix_seconds())),
      hooks_.gateway_waiting_max_age);
  if (hooks_.autoscaler) out.snapshot = hooks_.autoscaler->snapshot(key_of(ns, name));
  if (out.snapshot) {
    observed.tokens_per_second = out.snapshot->measurement.tokens_per_second;
    if (md.spec.autoscaling.enabled)
      observed.recommended_replicas = out.snapshot->decision.replicas;
    observed.expert_load = out.snapshot->measurement.expert_load.tokens;
    observed.rank_load = out.snapshot->measurement.rank_load.tokens;
    for (const auto& [group, state] : out.snapshot->measurement.placements) {
      const bool live = std::any_of(observed.groups.begin(), observed.groups.end(),
                                    [group = group](const deployment::ObservedGroup& g) {
                                      return g.index == group && !g.terminating;
                                    });
      if (live) {
        observed.group_placements[group] = {state.version, state.in_flight_version,
                                            state.switch_seconds, state.failed_version,
                                            state.failure};
      }
    }
  } else if (md.spec.autoscaling.enabled && md.spec.autoscaling.scale_to_zero_after_idle_seconds &&
             md.status.observed_generation > 0 && md.status.desired_replicas == 0) {
    // Scaled to zero before this operator started: stay there until the autoscaler's
    // first decision (which wakes it if requests wait), rather than start a group.
    observed.recommended_replicas = 0;
  }
  return out;
}

void ModelDeploymentReconciler::track(const deployment::ModelDeployment& md,
                                      const Gathered& gathered, const deployment::Plan& plan) {
  if (!hooks_.autoscaler) return;
  const int32_t ready = static_cast<int32_t>(
      std::count_if(gathered.observed.groups.begin(), gathered.observed.groups.end(),
                    [](const deployment::ObservedGroup& g) { return g.ready(); }));
  hooks_.autoscaler->track(key_of(md.metadata.namespace_, md.metadata.name),
                           {gathered.target, policy_of(md.spec, hooks_.max_waiting_per_group),
                            plan.desired_replicas, ready, gathered.gateway_waiting});
}

void ModelDeploymentReconciler::export_gauges(const deployment::ModelDeployment& md,
                                              const deployment::ModelDeploymentStatus& status,
                                              int64_t worker_restarts) {
  if (!hooks_.gauges) return;
  autoscaler::DeploymentValues v;
  v.replicas_desired = status.desired_replicas;
  v.replicas_ready = status.ready_replicas;
  v.tokens_per_second = status.tokens_per_second;
  v.cost_per_million_tokens_usd = status.cost_per_million_tokens;
  v.cost_budget_per_million_tokens_usd = md.spec.autoscaling.max_cost_per_million_tokens;
  v.ttft_p95_slo_seconds = md.spec.autoscaling.ttft_p95_slo_seconds;
  if (status.placement) v.placement_balancedness = status.placement->balancedness;
  v.worker_restarts = worker_restarts;
  hooks_.gauges->set(md.metadata.namespace_, md.metadata.name, v);
}

void ModelDeploymentReconciler::forget(const std::string& key) {
  if (hooks_.autoscaler) hooks_.autoscaler->forget(key);
  if (hooks_.gauges) {
    const size_t slash = key.find('/');
    hooks_.gauges->remove(key.substr(0, slash), key.substr(slash + 1));
  }
}

bool ModelDeploymentReconciler::missing_any(const deployment::Rendered& rendered) const {
  for (const auto& object : rendered.objects()) {
    auto ref = resource_for_kind(object.value("kind", ""));
    if (!ref.ok()) continue;
    if (!informers_.get(ref->resource, key_of(object["metadata"].value("namespace", ""),
                                              object["metadata"].value("name", "")))) {
      return true;
    }
  }
  return false;
}

StatusOr<bool> ModelDeploymentReconciler::owner_is_live(
    const deployment::ModelDeployment& md) const {
  auto live =
      client_.get(kube::resources::kModelDeployments, md.metadata.namespace_, md.metadata.name);
  if (!live.ok() && live.status().code() == StatusCode::kNotFound) return false;
  // Unknown (500, 429, a lost connection): creating could leave objects owned by a deleted
  // uid, so the reconcile fails and is retried instead.
  if (!live.ok()) return live.status().with_context("check that the owner still exists");
  return (*live)["metadata"].value("uid", "") == md.metadata.uid &&
         !(*live)["metadata"].contains("deletionTimestamp");
}

Status ModelDeploymentReconciler::apply(const nlohmann::json& md_object,
                                        const nlohmann::json& desired) {
  MOESERVE_ASSIGN_OR_RETURN(kube::ResourceRef ref, resource_for_kind(desired.value("kind", "")));
  const std::string ns = desired["metadata"].value("namespace", "");
  const std::string name = desired["metadata"].value("name", "");
  const std::string md_uid = md_object["metadata"].value("uid", "");
  auto existing = informers_.get(ref.resource, key_of(ns, name));
  if (!existing) {
    auto created = client_.create(ref, ns, desired);
    if (created.ok()) {
      log::info("created object",
                {{"kind", desired.value("kind", "")}, {"object", key_of(ns, name)}});
      if (desired.value("kind", "") == "StatefulSet") {
        events_->record(md_object, "Normal", "GroupCreated", "Created worker group " + name);
      }
      return ok_status();
    }
    // already_exists: the cache is behind; the retry sees the object.
    return created.status().with_context("create " + desired.value("kind", "") + " " +
                                         key_of(ns, name));
  }
  if (!controlled_by(*existing, md_uid)) {
    std::string message = desired.value("kind", "") + " " + name +
                          " exists and is not controlled by this ModelDeployment; not adopting it";
    events_->record(md_object, "Warning", "ObjectConflict", message);
    return failed_precondition_error(message);
  }
  if (deployment::spec_hash_of(*existing) == deployment::spec_hash_of(desired)) return ok_status();
  nlohmann::json replacement = desired;
  replacement["metadata"]["resourceVersion"] = (*existing)["metadata"].value("resourceVersion", "");
  if ((*existing).contains("status")) replacement["status"] = (*existing)["status"];
  if (desired.value("kind", "") == "Service" && (*existing)["spec"].contains("clusterIP")) {
    // clusterIP is immutable and assigned by the server.
    replacement["spec"]["clusterIP"] = (*existing)["spec"]["clusterIP"];
  }
  auto updated = client_.update(ref, ns, replacement);
  if (!updated.ok()) {
    return updated.status().with_context("update " + desired.value("kind", "") + " " +
                                         key_of(ns, name));
  }
  log::info("updated object", {{"kind", desired.value("kind", "")}, {"object", key_of(ns, name)}});
  return ok_status();
}

Status ModelDeploymentReconciler::remove_network_policy(const deployment::ModelDeployment& md,
                                                        const std::string& name) {
  auto removed = client_.remove(kube::resources::kNetworkPolicies, md.metadata.namespace_, name,
                                kube::Propagation::kBackground);
  if (!removed.ok() && removed.status().code() != StatusCode::kNotFound) {
    return removed.status().with_context("delete NetworkPolicy " +
                                         key_of(md.metadata.namespace_, name));
  }
  log::info("deleted object",
            {{"kind", "NetworkPolicy"}, {"object", key_of(md.metadata.namespace_, name)}});
  return ok_status();
}

Status ModelDeploymentReconciler::remove_group(const nlohmann::json& md_object,
                                               const deployment::ModelDeployment& md,
                                               int32_t group) {
  std::string name = deployment::group_name(md.metadata.name, group);
  auto removed = client_.remove(kube::resources::kStatefulSets, md.metadata.namespace_, name,
                                kube::Propagation::kBackground);
  if (!removed.ok() && removed.status().code() != StatusCode::kNotFound) {
    return removed.status().with_context("delete StatefulSet " +
                                         key_of(md.metadata.namespace_, name));
  }
  events_->record(md_object, "Normal", "GroupDeleted", "Deleted worker group " + name);
  return ok_status();
}

Status ModelDeploymentReconciler::write_status(const nlohmann::json& md_object,
                                               const deployment::ModelDeployment& md,
                                               const deployment::ModelDeploymentStatus& status) {
  if (!deployment::status_changed(md.status, status)) return ok_status();
  nlohmann::json object = md_object;
  object["status"] = deployment::to_json(status);
  auto written =
      client_.update_status(kube::resources::kModelDeployments, md.metadata.namespace_, object);
  if (!written.ok()) return written.status().with_context("update status");
  const deployment::Condition* before = find_condition(md.status, "Ready");
  const deployment::Condition* after = find_condition(status, "Ready");
  // Going to zero under the autoscaler is reported by record_changes' ScaledToZero
  // event, with the autoscaler's reason; it is not a warning.
  const bool autoscaled_to_zero =
      after && after->reason == "ScaledToZero" && md.spec.autoscaling.enabled;
  if (after && (!before || before->status != after->status) && !autoscaled_to_zero) {
    events_->record(md_object, after->status == "True" ? "Normal" : "Warning", after->reason,
                    after->message);
  }
  return ok_status();
}

ReconcileResult ModelDeploymentReconciler::reconcile(const std::string& key) {
  auto md_object = informers_.get(kube::resources::kModelDeployments.resource, key);
  if (!md_object || (*md_object)["metadata"].contains("deletionTimestamp")) {
    forget(key);  // owned objects go with it (ownerReferences)
    return {};
  }
  deployment::ModelDeployment md = deployment::parse_model_deployment(*md_object);
  Gathered gathered = gather(*md_object, md);
  const deployment::Observed& observed = gathered.observed;
  auto now = std::chrono::sys_seconds(std::chrono::seconds(clock_->unix_seconds()));

  if (!md.valid()) {
    deployment::ModelDeploymentStatus status = deployment::invalid_spec_status(md, observed, now);
    if (deployment::status_changed(md.status, status)) {
      events_->record(*md_object, "Warning", "InvalidSpec", join_errors(md.errors));
    }
    Status written = write_status(*md_object, md, status);
    if (written.ok()) export_gauges(md, status, gathered.worker_restarts);
    return {written, std::nullopt};
  }

  const deployment::Plan plan = deployment::plan(md, observed, hooks_.placement);
  if (!plan.placement.error.ok()) {
    log::warn("placement not planned",
              {{"deployment", key}, {"error", plan.placement.error.to_string()}});
  }
  track(md, gathered, plan);
  deployment::Rendered rendered =
      deployment::render(md, plan, {hooks_.operator_namespace, hooks_.gateway_namespace});
  if (missing_any(rendered)) {
    StatusOr<bool> live = owner_is_live(md);
    if (!live.ok()) return {live.status(), std::nullopt};
    if (!*live) {
      // The cache still shows a ModelDeployment the server has deleted (its delete event is
      // on the way): creating now would leave objects owned by a uid that no longer exists.
      log::info("owner deleted; not creating its objects", {{"key", key}});
      return {};
    }
  }
  for (const auto& object : rendered.objects()) {
    if (Status s = apply(*md_object, object); !s.ok()) return {s, std::nullopt};
  }
  for (int32_t group : plan.groups.remove) {
    if (Status s = remove_group(*md_object, md, group); !s.ok()) return {s, std::nullopt};
  }
  for (const std::string& name : deployment::stale_network_policies(md, plan, observed)) {
    if (Status s = remove_network_policy(md, name); !s.ok()) return {s, std::nullopt};
  }
  deployment::ModelDeploymentStatus status = deployment::compute_status(md, observed, plan, now);
  Status written = write_status(*md_object, md, status);
  if (!written.ok()) return {written, std::nullopt};
  export_gauges(md, status, gathered.worker_restarts);
  record_changes(*md_object, md, gathered, plan, status);
  const deployment::Condition* progressing = find_condition(status, "Progressing");
  bool changing = !plan.groups.create.empty() || !plan.groups.remove.empty() ||
                  (progressing && progressing->status == "True");
  std::optional<std::chrono::milliseconds> requeue;
  if (changing) requeue = std::chrono::duration_cast<std::chrono::milliseconds>(kProgressRequeue);
  if (hooks_.autoscaler) requeue = std::min(requeue.value_or(hooks_.refresh), hooks_.refresh);
  return {ok_status(), requeue};
}

void ModelDeploymentReconciler::record_changes(const nlohmann::json& md_object,
                                               const deployment::ModelDeployment& md,
                                               const Gathered& gathered,
                                               const deployment::Plan& plan,
                                               const deployment::ModelDeploymentStatus& status) {
  const bool had_status = md.status.observed_generation > 0;
  if (md.spec.autoscaling.enabled && had_status &&
      md.status.desired_replicas != plan.desired_replicas) {
    const bool from_autoscaler =
        gathered.snapshot && gathered.snapshot->decision.replicas == plan.desired_replicas;
    const char* reason = plan.desired_replicas == 0        ? "ScaledToZero"
                         : md.status.desired_replicas == 0 ? "Woken"
                                                           : "Scaled";
    events_->record(md_object, "Normal", reason,
                    from_autoscaler
                        ? gathered.snapshot->decision.reason
                        : "desired groups " + std::to_string(md.status.desired_replicas) + " -> " +
                              std::to_string(plan.desired_replicas) + " (spec.autoscaling bounds)");
  }
  const deployment::Condition* was = find_condition(md.status, "AutoscalerDecides");
  const deployment::Condition* now = find_condition(status, "AutoscalerDecides");
  if (now && now->reason == "SpecReplicasIgnored" && (!was || was->message != now->message)) {
    events_->record(md_object, "Warning", "ScaleIgnored", now->message);
  }
  const auto& current = gathered.observed.current_placement;
  const std::optional<deployment::Placement>& map = plan.placement.map;
  if (map && current && map->version > current->version && plan.placement.proposed &&
      status.placement) {
    const double before = plan.placement.current_balancedness.value_or(0);
    events_->record(md_object, "Normal", "PlacementRollout",
                    "expert placement version " + std::to_string(map->version) +
                        " from measured expert loads: balancedness " + format_ratio(before) +
                        " -> " + format_ratio(status.placement->balancedness));
  }
  record_switch_end(md_object, md, status);
}

void ModelDeploymentReconciler::record_switch_end(const nlohmann::json& md_object,
                                                  const deployment::ModelDeployment& md,
                                                  const deployment::ModelDeploymentStatus& status) {
  if (!status.placement || !status.placement->last_switch) return;
  const deployment::PlacementSwitchStatus& now = *status.placement->last_switch;
  const std::optional<deployment::PlacementSwitchStatus> was =
      md.status.placement ? md.status.placement->last_switch : std::nullopt;
  if (now.result == "InProgress" ||
      (was && was->version == now.version && was->result == now.result)) {
    return;
  }
  const std::string version = "expert placement version " + std::to_string(now.version);
  if (now.result == "Committed") {
    events_->record(md_object, "Normal", "PlacementUpdated",
                    version + " live on every group in " +
                        format_ratio(now.duration_seconds.value_or(0)) + " s: balancedness " +
                        format_ratio(now.balancedness_before.value_or(0)) + " -> " +
                        format_ratio(now.balancedness_after.value_or(0)));
  } else {
    events_->record(md_object, "Warning", "PlacementSwitchFailed",
                    version + " aborted; the groups keep the previous placement: " + now.message);
  }
  if (hooks_.gauges) {
    hooks_.gauges->record_placement_switch(md.metadata.namespace_, md.metadata.name, now.result,
                                           now.duration_seconds);
  }
}

}  // namespace moeserve::controller
