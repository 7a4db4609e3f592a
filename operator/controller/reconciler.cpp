#include "operator/controller/reconciler.h"

#include "common/log.h"
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

}  // namespace

ModelDeploymentReconciler::ModelDeploymentReconciler(const kube::Client& client,
                                                     const Informers& informers,
                                                     EventRecorder* events, const Clock* clock)
    : client_(client), informers_(informers), events_(events), clock_(clock) {}

StatusOr<kube::ResourceRef> ModelDeploymentReconciler::resource_for_kind(const std::string& kind) {
  if (kind == "StatefulSet") return kube::resources::kStatefulSets;
  if (kind == "Service") return kube::resources::kServices;
  if (kind == "ConfigMap") return kube::resources::kConfigMaps;
  if (kind == "PodDisruptionBudget") return kube::resources::kPodDisruptionBudgets;
  return internal_error("render produced an object of unexpected kind " + kind);
}

op::Observed ModelDeploymentReconciler::gather(const nlohmann::json& md_object,
                                               const op::ModelDeployment& md) const {
  op::Observed observed;
  const std::string& ns = md.metadata.namespace_;
  for (const auto& sts : informers_.list(kube::resources::kStatefulSets.resource, ns,
                                         {{std::string(op::kLabelDeployment), md.metadata.name}})) {
    if (!controlled_by(sts, md.metadata.uid)) continue;
    auto group = op::observe_statefulset(md.metadata.name, sts);
    if (group.ok()) observed.groups.push_back(*group);
  }
  auto cm = informers_.get(kube::resources::kConfigMaps.resource,
                           key_of(ns, op::placement_configmap_name(md.metadata.name)));
  if (cm && controlled_by(*cm, md.metadata.uid) && (*cm)["data"].contains("placement.json")) {
    auto parsed =
        nlohmann::json::parse((*cm)["data"]["placement.json"].get<std::string>(), nullptr, false);
    if (!parsed.is_discarded()) {
      if (auto placement = op::placement_from_json(parsed); placement.ok()) {
        observed.current_placement = *placement;
      }
    }
  }
  if (md_object.contains("status") && md_object["status"].contains("tokensPerSecond") &&
      md_object["status"]["tokensPerSecond"].is_number()) {
    observed.tokens_per_second = md_object["status"]["tokensPerSecond"].get<double>();
  }
  return observed;
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
  if (!md_object) return {};  // deleted: owned objects go with it (ownerReferences)
  if ((*md_object)["metadata"].contains("deletionTimestamp")) return {};
  op::ModelDeployment md = op::parse_model_deployment(*md_object);
  op::Observed observed = gather(*md_object, md);
  auto now = std::chrono::sys_seconds(std::chrono::seconds(clock_->unix_seconds()));

  if (!md.valid()) {
    op::ModelDeploymentStatus status = op::compute_status(md, observed, now);
    if (op::status_changed(md.status, status)) {
      events_->record(*md_object, "Warning", "InvalidSpec", op::join_errors(md.errors));
    }
    return {write_status(*md_object, md, status), std::nullopt};
  }

  op::Plan plan = op::plan(md, observed);
  op::Rendered rendered = op::render(md, plan);
  for (const auto& object : rendered.objects()) {
    if (Status s = apply(*md_object, object); !s.ok()) return {s, std::nullopt};
  }
  for (int32_t group : plan.groups.remove) {
    if (Status s = remove_group(*md_object, md, group); !s.ok()) return {s, std::nullopt};
  }
  op::ModelDeploymentStatus status = op::compute_status(md, observed, now);
  Status written = write_status(*md_object, md, status);
  if (!written.ok()) return {written, std::nullopt};
  const op::Condition* progressing = find_condition(status, "Progressing");
  bool changing = !plan.groups.create.empty() || !plan.groups.remove.empty() ||
                  (progressing && progressing->status == "True");
  if (changing)
    return {ok_status(), std::chrono::duration_cast<std::chrono::milliseconds>(kProgressRequeue)};
  return {};
}

}  // namespace moeserve::controller
