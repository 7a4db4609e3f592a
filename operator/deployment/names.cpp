#include "operator/deployment/names.h"

#include <charconv>

namespace moeserve::deployment {

using nlohmann::json;

std::string group_name(std::string_view deployment, int32_t group) {
  return std::string(deployment) + "-g" + std::to_string(group);
}

std::string ranks_service_name(std::string_view deployment) {
  return std::string(deployment) + "-ranks";
}

std::string api_service_name(std::string_view deployment) { return std::string(deployment); }

std::string placement_configmap_name(std::string_view deployment) {
  return std::string(deployment) + "-placement";
}

std::string pdb_name(std::string_view deployment) { return std::string(deployment); }

std::string network_policy_name(std::string_view deployment) { return std::string(deployment); }

std::string leader_address(std::string_view deployment, std::string_view ns, int32_t group,
                           int32_t port) {
  return group_name(deployment, group) + "-0." + ranks_service_name(deployment) + "." +
         std::string(ns) + ".svc:" + std::to_string(port);
}

std::optional<int32_t> parse_group_name(std::string_view deployment, std::string_view name) {
  const std::string prefix = std::string(deployment) + "-g";
  if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix) return std::nullopt;
  const std::string_view digits = name.substr(prefix.size());
  if (digits.size() > 1 && digits.front() == '0') return std::nullopt;
  int32_t group = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), group);
  if (ec != std::errc() || end != digits.data() + digits.size() || group < 0) return std::nullopt;
  return group;
}

json common_labels(std::string_view deployment, std::string_view component) {
  return {{kLabelName, kWorkerAppName},
          {kLabelInstance, deployment},
          {kLabelManagedBy, kManagedBy},
          {kLabelComponent, component},
          {kLabelDeployment, deployment}};
}

json group_labels(std::string_view deployment, int32_t group) {
  json labels = common_labels(deployment, kComponentWorker);
  labels[std::string(kLabelGroup)] = std::to_string(group);
  return labels;
}

json worker_selector(std::string_view deployment) {
  return {{kLabelName, kWorkerAppName}, {kLabelDeployment, deployment}};
}

json group_selector(std::string_view deployment, int32_t group) {
  json selector = worker_selector(deployment);
  selector[std::string(kLabelGroup)] = std::to_string(group);
  return selector;
}

json leader_selector(std::string_view deployment) {
  json selector = worker_selector(deployment);
  selector[std::string(kLabelPodIndex)] = "0";
  return selector;
}

std::string selector_string(const json& match_labels) {
  std::string out;
  for (const auto& [key, value] : match_labels.items()) {
    if (!out.empty()) out += ",";
    out += key + "=" + value.get<std::string>();
  }
  return out;
}

json owner_reference(const ObjectMeta& owner) {
  return {{"apiVersion", kApiVersion}, {"kind", kKind},      {"name", owner.name},
          {"uid", owner.uid},          {"controller", true}, {"blockOwnerDeletion", true}};
}

json owned_metadata(const ObjectMeta& owner, std::string_view name, json labels) {
  return {{"name", name},
          {"namespace", owner.namespace_},
          {"labels", std::move(labels)},
          {"ownerReferences", json::array({owner_reference(owner)})}};
}

}  // namespace moeserve::deployment
