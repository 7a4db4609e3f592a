#include "operator/deployment/render.h"

#include <algorithm>
#include <set>

#include "operator/deployment/engine_command.h"
#include "operator/deployment/hash.h"
#include "operator/deployment/names.h"
#include "operator/deployment/pod_template.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;

json object(const char* api_version, const char* kind, json metadata, json spec) {
  return {{"apiVersion", api_version},
          {"kind", kind},
          {"metadata", std::move(metadata)},
          {"spec", std::move(spec)}};
}

json service_ports(const WorkerSpec& w) {
  return json::array(
      {{{"name", "http"}, {"port", w.port}, {"targetPort", "http"}, {"protocol", "TCP"}},
       {{"name", "rendezvous"},
        {"port", w.rendezvous_port},
        {"targetPort", "rendezvous"},
        {"protocol", "TCP"}}});
}

}  // namespace

std::vector<json> Rendered::objects() const {
  std::vector<json> out;
  if (placement_configmap) out.push_back(*placement_configmap);
  if (network_policy) out.push_back(*network_policy);
  out.insert(out.end(), group_network_policies.begin(), group_network_policies.end());
  out.push_back(ranks_service);
  out.push_back(api_service);
  out.push_back(pdb);
  out.insert(out.end(), statefulsets.begin(), statefulsets.end());
  return out;
}

json with_spec_hash(json object) {
  json& annotations = object["metadata"]["annotations"];
  if (annotations.is_object()) annotations.erase(std::string(kAnnotationSpecHash));
  if (annotations.is_null() || annotations.empty()) object["metadata"].erase("annotations");
  const std::string hash = json_hash(object);
  object["metadata"]["annotations"][std::string(kAnnotationSpecHash)] = hash;
  return object;
}

std::string spec_hash_of(const json& object) {
  const json::json_pointer pointer("/metadata/annotations/" +
                                   std::string("moeserve.io~1spec-hash"));
  return object.contains(pointer) && object[pointer].is_string()
             ? object[pointer].get<std::string>()
             : "";
}

json render_statefulset(const ModelDeployment& md, const Plan& plan, int32_t group) {
  const std::string& x = md.metadata.name;
  json meta = owned_metadata(md.metadata, group_name(x, group), group_labels(x, group));
  meta["annotations"] = {{kAnnotationTemplateHash, plan.template_hash}};
  json spec = {{"replicas", plan.layout.pods_per_group},
               {"serviceName", ranks_service_name(x)},
               {"podManagementPolicy", "Parallel"},
               {"updateStrategy", {{"type", "OnDelete"}}},
               {"selector", {{"matchLabels", group_selector(x, group)}}},
               {"template", render_pod_template(md, plan.layout, group)}};
  return with_spec_hash(object("apps/v1", "StatefulSet", std::move(meta), std::move(spec)));
}

json render_ranks_service(const ModelDeployment& md) {
  const std::string& x = md.metadata.name;
  json spec = {{"clusterIP", "None"},
               {"publishNotReadyAddresses", true},
               {"selector", worker_selector(x)},
               {"ports", service_ports(md.spec.worker)}};
  return with_spec_hash(object(
      "v1", "Service",
      owned_metadata(md.metadata, ranks_service_name(x), common_labels(x, kComponentRendezvous)),
      std::move(spec)));
}

json render_api_service(const ModelDeployment& md) {
  const std::string& x = md.metadata.name;
  json ports = json::array({{{"name", "http"},
                             {"port", md.spec.worker.port},
                             {"targetPort", "http"},
                             {"protocol", "TCP"}}});
  json spec = {{"type", "ClusterIP"}, {"selector", leader_selector(x)}, {"ports", ports}};
  return with_spec_hash(
      object("v1", "Service",
             owned_metadata(md.metadata, api_service_name(x), common_labels(x, kComponentApi)),
             std::move(spec)));
}

json render_pdb(const ModelDeployment& md) {
  const std::string& x = md.metadata.name;
  json spec = {{"maxUnavailable", 1},
               {"selector", {{"matchLabels", worker_selector(x)}}},
               {"unhealthyPodEvictionPolicy", "AlwaysAllow"}};
  return with_spec_hash(
      object("policy/v1", "PodDisruptionBudget",
             owned_metadata(md.metadata, pdb_name(x), common_labels(x, kComponentWorker)),
             std::move(spec)));
}

json render_placement_configmap(const ModelDeployment& md, const Placement& placement) {
  const std::string& x = md.metadata.name;
  json cm = {{"apiVersion", "v1"},
             {"kind", "ConfigMap"},
             {"metadata", owned_metadata(md.metadata, placement_configmap_name(x),
                                         common_labels(x, kComponentPlacement))},
             {"data", {{kPlacementKey, placement_file_to_json(placement).dump()}}}};
  return with_spec_hash(std::move(cm));
}

json render_network_policy(const ModelDeployment& md, const RenderOptions& options) {
  const std::string& x = md.metadata.name;
  const NetworkPolicySpec& np = md.spec.network_policy;
  auto tcp = [](int32_t port) { return json::array({{{"port", port}, {"protocol", "TCP"}}}); };
  json api_from = json::array();
  for (const json& peer : np.api_from) api_from.push_back(peer);
  if (api_from.empty()) api_from.push_back({{"podSelector", json::object()}});
  if (!options.gateway_namespace.empty()) {
    const json gateway = {
        {"namespaceSelector",
         {{"matchLabels", {{"kubernetes.io/metadata.name", options.gateway_namespace}}}}},
        {"podSelector", {{"matchLabels", {{std::string(kLabelComponent), "gateway"}}}}}};
    if (std::find(api_from.begin(), api_from.end(), gateway) == api_from.end()) {
      api_from.push_back(gateway);
    }
  }
  json metrics_from = json::array();
  for (const json& peer : np.metrics_from) metrics_from.push_back(peer);
  if (!options.operator_namespace.empty()) {
    metrics_from.push_back(
        {{"namespaceSelector",
          {{"matchLabels", {{"kubernetes.io/metadata.name", options.operator_namespace}}}}},
         {"podSelector", {{"matchLabels", {{std::string(kLabelComponent), "operator"}}}}}});
  }
  // vLLM and SGLang serve /metrics on the API port: its scrapers are admitted there.
  const int32_t scrape_port = metrics_port(md.spec);
  if (scrape_port == md.spec.worker.port) {
    for (const json& peer : metrics_from) api_from.push_back(peer);
  }
  json ingress = json::array({{{"ports", tcp(md.spec.worker.port)}, {"from", api_from}}});
  if (!metrics_from.empty() && scrape_port != md.spec.worker.port) {
    ingress.push_back({{"ports", tcp(scrape_port)}, {"from", metrics_from}});
  }
  json spec = {{"podSelector", {{"matchLabels", worker_selector(x)}}},
               {"policyTypes", json::array({"Ingress"})},
               {"ingress", ingress}};
  return with_spec_hash(object(
      "networking.k8s.io/v1", "NetworkPolicy",
      owned_metadata(md.metadata, network_policy_name(x), common_labels(x, kComponentNetwork)),
      std::move(spec)));
}

json render_group_network_policy(const ModelDeployment& md, int32_t group) {
  const std::string& x = md.metadata.name;
  json labels = group_labels(x, group);
  labels[std::string(kLabelComponent)] = std::string(kComponentNetwork);
  json spec = {
      {"podSelector", {{"matchLabels", group_selector(x, group)}}},
      {"policyTypes", json::array({"Ingress"})},
      {"ingress",
       json::array({{{"from", json::array({{{"podSelector",
                                             {{"matchLabels", group_selector(x, group)}}}}})}}})}};
  return with_spec_hash(object("networking.k8s.io/v1", "NetworkPolicy",
                               owned_metadata(md.metadata, group_name(x, group), labels),
                               std::move(spec)));
}

std::vector<std::string> stale_network_policies(const ModelDeployment& md, const Plan& plan,
                                                const Observed& observed) {
  std::set<std::string> keep;
  if (md.spec.network_policy.enabled) {
    const std::string& x = md.metadata.name;
    keep.insert(network_policy_name(x));
    for (const ObservedGroup& g : observed.groups) keep.insert(group_name(x, g.index));
    for (int32_t group : plan.groups.create) keep.insert(group_name(x, group));
  }
  std::vector<std::string> stale;
  for (const std::string& name : observed.network_policies) {
    if (!keep.count(name)) stale.push_back(name);
  }
  return stale;
}

Rendered render(const ModelDeployment& md, const Plan& plan, const RenderOptions& options) {
  Rendered r;
  for (int32_t group : plan.rendered_groups()) {
    r.statefulsets.push_back(render_statefulset(md, plan, group));
  }
  r.ranks_service = render_ranks_service(md);
  r.api_service = render_api_service(md);
  r.pdb = render_pdb(md);
  if (plan.placement.map)
    r.placement_configmap = render_placement_configmap(md, *plan.placement.map);
  if (md.spec.network_policy.enabled) {
    r.network_policy = render_network_policy(md, options);
    std::vector<int32_t> groups = plan.groups.current;
    for (const auto* list : {&plan.groups.old, &plan.groups.create, &plan.groups.remove}) {
      groups.insert(groups.end(), list->begin(), list->end());
    }
    std::sort(groups.begin(), groups.end());
    for (int32_t group : groups) {
      r.group_network_policies.push_back(render_group_network_policy(md, group));
    }
  }
  return r;
}

}  // namespace moeserve::deployment
