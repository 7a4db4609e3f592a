#include "operator/deployment/observe.h"

#include "operator/deployment/names.h"
#include "operator/deployment/rfc3339.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;

int64_t int_at(const json& object, const json::json_pointer& pointer, int64_t fallback) {
  return object.contains(pointer) && object[pointer].is_number_integer()
             ? object[pointer].get<int64_t>()
             : fallback;
}

}  // namespace

StatusOr<ObservedGroup> observe_statefulset(std::string_view deployment, const json& sts) {
  if (!sts.is_object() || !sts.contains("metadata") || !sts["metadata"].is_object()) {
    return invalid_argument_error("statefulset: missing metadata");
  }
  const json& meta = sts["metadata"];
  const std::string name = meta.value("name", "");
  const std::optional<int32_t> index = parse_group_name(deployment, name);
  if (!index) {
    return invalid_argument_error("statefulset " + name + ": not a group of " +
                                  std::string(deployment));
  }
  ObservedGroup g;
  g.index = *index;
  if (meta.contains("annotations") && meta["annotations"].is_object()) {
    g.template_hash = meta["annotations"].value(std::string(kAnnotationTemplateHash), "");
  }
  g.desired_pods = static_cast<int32_t>(int_at(sts, "/spec/replicas"_json_pointer, 1));
  g.ready_pods = static_cast<int32_t>(int_at(sts, "/status/readyReplicas"_json_pointer, 0));
  g.generation = int_at(sts, "/metadata/generation"_json_pointer, 0);
  g.observed_generation = int_at(sts, "/status/observedGeneration"_json_pointer, 0);
  g.terminating = meta.contains("deletionTimestamp") && !meta["deletionTimestamp"].is_null();
  if (meta.contains("creationTimestamp") && meta["creationTimestamp"].is_string()) {
    g.created_at = parse_rfc3339(meta["creationTimestamp"].get<std::string>());
  }
  return g;
}

StatusOr<Placement> observe_placement_configmap(const json& configmap) {
  const std::string source = "ConfigMap " +
                             configmap.value("metadata", json::object()).value("name", "") + " " +
                             kPlacementKey;
  if (!configmap.contains("data") || !configmap["data"].is_object() ||
      !configmap["data"].contains(kPlacementKey) || !configmap["data"][kPlacementKey].is_string()) {
    return invalid_argument_error(source + ": missing");
  }
  return parse_placement_file(configmap["data"][kPlacementKey].get<std::string>(), source);
}

}  // namespace moeserve::deployment
