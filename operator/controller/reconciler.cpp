#include "operator/controller/reconciler.h"

#include <algorithm>

#include "common/log.h"
#include "operator/deployment/layout.h"
#include "operator/deployment/names.h"
#include "operator/deployment/render.h"
#include "operator/deployment/status.h"

namespace moeserve::controller {
namespace {

constexpr auto kProgressRequeue = std::chrono::seconds(15);

std::string key_of(const std::string& ns, const std::string& name) { return ns + "/" + name; }

bool controlled_by(const nlohmann::json& object, const std::string& owner_uid) {
  for (const auto& owner : object["metadata"].value("ownerReferences", nlohmann::json::array())) {
    if (owner.value("controller", false) && owner.value("uid", "") == owner_uid) return true;
  }
  return false;
}

const op::Condition* find_condition(const op::ModelDeploymentStatus& status,
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

autoscaler::PolicySpec policy_of(const op::ModelDeploymentSpec& spec, double max_waiting) {
  const op::AutoscalingSpec& a = spec.autoscaling;
  autoscaler::PolicySpec p;
  p.min_replicas = a.min_replicas;
  p.max_replicas = a.max_replicas;
  p.target_tokens_per_second_per_group = a.target_tokens_per_second_per_group;
  p.max_cost_per_million_tokens = a.max_cost_per_million_tokens;
  p.ttft_p95_slo_seconds = a.ttft_p95_slo_seconds;
  p.scale_down_stabilization_seconds = a.scale_down_stabilization_seconds;
  p.usd_per_group_hour = op::hourly_cost_usd(spec, op::layout_of(spec), 1);
  p.max_waiting_per_group = max_waiting;
  return p;
}

std::string format_ratio(double value) { return autoscaler::format_number(value); }

}  // namespace

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
  return internal_error("render produced an object of unexpected kind " + kind);
}

ModelDeploymentReconciler::Gathered ModelDeploymentReconciler::gather(
    const op::ModelDeployment& md) const {
  Gathered out;
  op::Observed& observed = out.observed;
  const std::string& ns = md.metadata.namespace_;
  const std::string& name = md.metadata.name;
  const std::map<std::string, std::string> selector = {{std::string(op::kLabelDeployment), name}};
  for (const auto& sts : informers_.list(kube::resources::kStatefulSets.resource, ns, selector)) {
    if (!controlled_by(sts, md.metadata.uid)) continue;
    auto group = op::observe_statefulset(name, sts);
    if (group.ok()) observed.groups.push_back(*group);
  }
  auto cm = informers_.get(kube::resources::kConfigMaps.resource,
                           key_of(ns, op::placement_configmap_name(name)));
  if (cm && controlled_by(*cm, md.metadata.uid) && (*cm)["data"].contains("placement.json")) {
    auto parsed =
        nlohmann::json::parse((*cm)["data"]["placement.json"].get<std::string>(), nullptr, false);
    if (!parsed.is_discarded()) {
      if (auto placement = op::placement_from_json(parsed); placement.ok()) {
        observed.current_placement = *placement;
      }
    }
  }
  // Pods: restarts of every worker pod; the rank-0 pod of each live group is scraped.
  out.target = {ns, name, {}};
  for (const auto& pod : informers_.list(kube::resources::kPods.resource, ns, selector)) {
    out.worker_restarts += restart_count(pod);
    const std::string pod_name = pod["metadata"].value("name", "");
    const std::string ip = pod.value("status", nlohmann::json::object()).value("podIP", "");
    for (const op::ObservedGroup& g : observed.groups) {
      if (g.terminating || pod_name != op::group_name(name, g.index) + "-0" || ip.empty()) continue;
      const std::string host = ip.find(':') != std::string::npos ? "[" + ip + "]" : ip;
      out.target.groups.push_back(
          {g.index, pod_name,
           "http://" + host + ":" + std::to_string(md.spec.worker.port) + "/metrics"});
    }
  }
  std::sort(out.target.groups.begin(), out.target.groups.end(),
            [](const auto& a, const auto& b) { return a.group < b.group; });
  if (hooks_.autoscaler) out.snapshot = hooks_.autoscaler->snapshot(key_of(ns, name));
  if (out.snapshot) {
    observed.tokens_per_second = out.snapshot->measurement.tokens_per_second;
    if (md.spec.autoscaling.enabled)
      observed.recommended_replicas = out.snapshot->decision.replicas;
    if (md.valid()) {
      out.current_balancedness =
          observe_placement(md, out.snapshot->measurement.expert_load, &observed);
    }
  }
  return out;
}

std::optional<double> ModelDeploymentReconciler::observe_placement(
    const op::ModelDeployment& md, const autoscaler::ExpertLoad& load,
    op::Observed* observed) const {
  if (!op::placement_enabled(md.spec) || load.empty()) return std::nullopt;
  const int32_t experts = *md.spec.model.routed_experts;
  const int32_t layers = *md.spec.model.moe_layers;
  const int32_t redundant = md.spec.parallelism.redundant_experts;
  if (static_cast<int32_t>(load.layers.size()) != layers ||
      static_cast<int32_t>(load.tokens[0].size()) > experts) {
    return std::nullopt;  // loads of another model shape (e.g. measured before a spec change)
  }
  std::vector<std::vector<double>> weights = load.tokens;
  for (auto& row : weights) row.resize(experts, 0.0);
  std::vector<std::vector<int32_t>> current =
      observed->current_placement &&
              op::placement_fits(observed->current_placement->layers, experts, layers, redundant)
          ? observed->current_placement->layers
          : op::default_phy2log(experts, layers, redundant);
  const op::GroupLayout layout = op::layout_of(md.spec);
  // Expert groups of the model are not in the spec: one group, so EPLB's global policy.
  const placement::EplbShape shape{experts + redundant, 1, layout.pods_per_group,
                                   layout.ranks_per_group};
  auto proposal = placement::propose(weights, current, shape, hooks_.placement);
  if (!proposal.ok()) {
    log::warn("placement not planned",
              {{"deployment", key_of(md.metadata.namespace_, md.metadata.name)},
               {"error", proposal.status().to_string()}});
    return std::nullopt;
  }
  observed->measured_balancedness = proposal->balancedness;
  if (proposal->phy2log) observed->proposed_placement = op::Placement{0, *proposal->phy2log};
  return proposal->current_balancedness;
}

void ModelDeploymentReconciler::track(const op::ModelDeployment& md, const Gathered& gathered,
                                      const op::Plan& plan) {
  if (!hooks_.autoscaler) return;
  const int32_t ready = static_cast<int32_t>(
      std::count_if(gathered.observed.groups.begin(), gathered.observed.groups.end(),
                    [](const op::ObservedGroup& g) { return g.ready(); }));
  hooks_.autoscaler->track(key_of(md.metadata.namespace_, md.metadata.name),
                           {gathered.target, policy_of(md.spec, hooks_.max_waiting_per_group),
                            plan.desired_replicas, ready});
}

void ModelDeploymentReconciler::export_gauges(const op::ModelDeployment& md,
                                              const op::ModelDeploymentStatus& status,
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

bool ModelDeploymentReconciler::missing_any(const op::Rendered& rendered) const {
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

bool ModelDeploymentReconciler::owner_is_live(const op::ModelDeployment& md) const {
  auto live =
      client_.get(kube::resources::kModelDeployments, md.metadata.namespace_, md.metadata.name);
  if (!live.ok()) return live.status().code() != StatusCode::kNotFound;  // unknown: proceed
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
  if (op::spec_hash_of(*existing) == op::spec_hash_of(desired)) return ok_status();
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

Status ModelDeploymentReconciler::remove_group(const nlohmann::json& md_object,
                                               const op::ModelDeployment& md, int32_t group) {
  std::string name = op::group_name(md.metadata.name, group);
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
                                               const op::ModelDeployment& md,
                                               const op::ModelDeploymentStatus& status) {
  if (!op::status_changed(md.status, status)) return ok_status();
  nlohmann::json object = md_object;
  object["status"] = op::to_json(status);
  auto written =
      client_.update_status(kube::resources::kModelDeployments, md.metadata.namespace_, object);
  if (!written.ok()) return written.status().with_context("update status");
  const op::Condition* before = find_condition(md.status, "Ready");
  const op::Condition* after = find_condition(status, "Ready");
  if (after && (!before || before->status != after->status)) {
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
  op::ModelDeployment md = op::parse_model_deployment(*md_object);
  Gathered gathered = gather(md);
  const op::Observed& observed = gathered.observed;
  auto now = std::chrono::sys_seconds(std::chrono::seconds(clock_->unix_seconds()));

  if (!md.valid()) {
    op::ModelDeploymentStatus status = op::compute_status(md, observed, now);
    if (op::status_changed(md.status, status)) {
      events_->record(*md_object, "Warning", "InvalidSpec", op::join_errors(md.errors));
    }
    Status written = write_status(*md_object, md, status);
    if (written.ok()) export_gauges(md, status, gathered.worker_restarts);
    return {written, std::nullopt};
  }

  op::Plan plan = op::plan(md, observed);
  track(md, gathered, plan);
  op::Rendered rendered = op::render(md, plan);
  if (missing_any(rendered) && !owner_is_live(md)) {
    // The cache still shows a ModelDeployment the server has deleted (its delete event is
    // on the way): creating now would leave objects owned by a uid that no longer exists.
    log::info("owner deleted; not creating its objects", {{"key", key}});
    return {};
  }
  for (const auto& object : rendered.objects()) {
    if (Status s = apply(*md_object, object); !s.ok()) return {s, std::nullopt};
  }
  for (int32_t group : plan.groups.remove) {
    if (Status s = remove_group(*md_object, md, group); !s.ok()) return {s, std::nullopt};
  }
  op::ModelDeploymentStatus status = op::compute_status(md, observed, now);
  Status written = write_status(*md_object, md, status);
  if (!written.ok()) return {written, std::nullopt};
  export_gauges(md, status, gathered.worker_restarts);
  record_changes(*md_object, md, gathered, plan, status);
  const op::Condition* progressing = find_condition(status, "Progressing");
  bool changing = !plan.groups.create.empty() || !plan.groups.remove.empty() ||
                  (progressing && progressing->status == "True");
  std::optional<std::chrono::milliseconds> requeue;
  if (changing) requeue = std::chrono::duration_cast<std::chrono::milliseconds>(kProgressRequeue);
  if (hooks_.autoscaler) requeue = std::min(requeue.value_or(hooks_.refresh), hooks_.refresh);
  return {ok_status(), requeue};
}

void ModelDeploymentReconciler::record_changes(const nlohmann::json& md_object,
                                               const op::ModelDeployment& md,
                                               const Gathered& gathered, const op::Plan& plan,
                                               const op::ModelDeploymentStatus& status) {
  const bool had_status = md.status.observed_generation > 0;
  if (md.spec.autoscaling.enabled && had_status &&
      md.status.desired_replicas != plan.desired_replicas) {
    const bool from_autoscaler =
        gathered.snapshot && gathered.snapshot->decision.replicas == plan.desired_replicas;
    events_->record(md_object, "Normal", "Scaled",
                    from_autoscaler
                        ? gathered.snapshot->decision.reason
                        : "desired groups " + std::to_string(md.status.desired_replicas) + " -> " +
                              std::to_string(plan.desired_replicas) + " (spec.autoscaling bounds)");
  }
  const auto& current = gathered.observed.current_placement;
  if (plan.placement && current && plan.placement->version > current->version &&
      gathered.observed.proposed_placement && status.placement) {
    const double before = gathered.current_balancedness.value_or(0);
    events_->record(md_object, "Normal", "PlacementUpdated",
                    "expert placement version " + std::to_string(plan.placement->version) +
                        " from measured expert loads: balancedness " + format_ratio(before) +
                        " -> " + format_ratio(status.placement->balancedness));
  }
}

}  // namespace moeserve::controller
