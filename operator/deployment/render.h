// render(): the Kubernetes objects (JSON) a valid ModelDeployment x in namespace ns
// owns, for one Plan. Pure.
//
//   StatefulSet x-g<i>      per rendered group (Plan::rendered_groups()): replicas = pods
//                           per group, podManagementPolicy Parallel, serviceName x-ranks,
//                           updateStrategy OnDelete (templates never change in place: a
//                           new template means new groups), annotation
//                           moeserve.io/template-hash.
//   Service x-ranks         headless (clusterIP None, publishNotReadyAddresses) over all
//                           worker pods: rank addresses x-g<i>-<k>.x-ranks.<ns>.svc for
//                           rendezvous before anything is ready.
//   Service x               the OpenAI endpoint: selects the pods with pod index 0 (the
//                           apps.kubernetes.io/pod-index label Kubernetes sets), i.e. the
//                           rank-0 pod of every group; a rank-0 pod is ready only once its
//                           group has formed (/readyz), so the Service routes to ready
//                           groups only, without the operator relabelling pods.
//   ConfigMap x-placement   placement.json (see placement_config.h), when the spec gives
//                           the model's expert shape.
//   PodDisruptionBudget x   maxUnavailable 1 over all worker pods: a drain takes down at
//                           most one group at a time (any lost pod stops its group).
//   NetworkPolicy x         unless spec.networkPolicy.enabled is false; Ingress over all
//                           worker pods: the API port (spec.worker.port) from
//                           spec.networkPolicy.apiFrom (default: pods of the deployment's
//                           namespace) plus the gateway's pods (label
//                           app.kubernetes.io/component=gateway in
//                           RenderOptions::gateway_namespace), the metrics port from metricsFrom
//                           plus the operator's pods (label app.kubernetes.io/component=operator in
//                           RenderOptions::operator_namespace), nothing else.
//   NetworkPolicy x-g<i>    per existing or created group: group i's pods accept any port
//                           from group i's pods only (rendezvous store, gloo and NCCL pick
//                           ephemeral ports). A group's policy outlives its StatefulSet's
//                           deletion until the StatefulSet is gone (stale_network_policies),
//                           so a draining group keeps its collectives.
// Every object has the standard labels (names.h), an ownerReference to x
// (controller, blockOwnerDeletion) and moeserve.io/spec-hash: json_hash of the object
// as rendered without that annotation, so unchanged objects can be skipped.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/deployment/plan.h"
#include "operator/deployment/types.h"

namespace moeserve::deployment {

struct RenderOptions {
  // The operator's namespace, whose operator pods may scrape /metrics ("" admits none).
  std::string operator_namespace;
  // The gateway's namespace, whose gateway pods may reach the API port besides
  // spec.networkPolicy.apiFrom (or its default) ("" admits none beyond those).
  std::string gateway_namespace;
};

struct Rendered {
  std::vector<nlohmann::json> statefulsets;  // ascending group index
  nlohmann::json ranks_service;
  nlohmann::json api_service;
  nlohmann::json pdb;
  std::optional<nlohmann::json> placement_configmap;
  std::optional<nlohmann::json> network_policy;        // x
  std::vector<nlohmann::json> group_network_policies;  // x-g<i>, ascending group index

  // Everything, in apply order: ConfigMap, NetworkPolicies (before any pod exists),
  // Services, PDB, StatefulSets.
  std::vector<nlohmann::json> objects() const;
};

// Precondition: md.valid() and `plan` = plan(md, ...).
Rendered render(const ModelDeployment& md, const Plan& plan, const RenderOptions& options = {});

nlohmann::json render_statefulset(const ModelDeployment& md, const Plan& plan, int32_t group);
nlohmann::json render_ranks_service(const ModelDeployment& md);
nlohmann::json render_api_service(const ModelDeployment& md);
nlohmann::json render_pdb(const ModelDeployment& md);
nlohmann::json render_placement_configmap(const ModelDeployment& md, const Placement& placement);
nlohmann::json render_network_policy(const ModelDeployment& md, const RenderOptions& options);
nlohmann::json render_group_network_policy(const ModelDeployment& md, int32_t group);

// The owned NetworkPolicies (Observed::network_policies) to delete: every one when
// spec.networkPolicy.enabled is false, else those of groups that neither exist
// (terminating included) nor are being created.
std::vector<std::string> stale_network_policies(const ModelDeployment& md, const Plan& plan,
                                                const Observed& observed);

// Sets metadata.annotations[moeserve.io/spec-hash] to the hash of `object` without it.
nlohmann::json with_spec_hash(nlohmann::json object);
// The annotation of an observed object ("" when absent).
std::string spec_hash_of(const nlohmann::json& object);

}  // namespace moeserve::deployment
