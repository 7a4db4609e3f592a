// Names, labels, owner references and selectors of the objects that one ModelDeployment
// `x` owns, in one place so render, status and the controller agree:
//   StatefulSet x-g<i> (group i), Service x-ranks (headless, rendezvous), Service x
//   (OpenAI API on the rank-0 pods), ConfigMap x-placement, PodDisruptionBudget x,
//   NetworkPolicies x (every worker pod) and x-g<i> (group i's pods).
// Pure functions of their arguments.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "operator/deployment/types.h"

namespace moeserve::deployment {

inline constexpr std::string_view kLabelName = "app.kubernetes.io/name";
inline constexpr std::string_view kLabelInstance = "app.kubernetes.io/instance";
inline constexpr std::string_view kLabelManagedBy = "app.kubernetes.io/managed-by";
inline constexpr std::string_view kLabelComponent = "app.kubernetes.io/component";
inline constexpr std::string_view kLabelDeployment = "moeserve.io/deployment";
inline constexpr std::string_view kLabelGroup = "moeserve.io/group";
// On the pods of vLLM and SGLang groups only: the engine (spec.engine.kind), for the
// PodMonitor that scrapes their API port.
inline constexpr std::string_view kLabelEngine = "moeserve.io/engine";
// Set on every StatefulSet pod by Kubernetes (1.28+): the pod's ordinal.
inline constexpr std::string_view kLabelPodIndex = "apps.kubernetes.io/pod-index";
inline constexpr std::string_view kWorkerAppName = "moeserve-worker";
inline constexpr std::string_view kManagedBy = "moeserve-operator";

// Hash of the whole rendered object: the controller skips writes when it is unchanged.
inline constexpr std::string_view kAnnotationSpecHash = "moeserve.io/spec-hash";
// Hash of a group's rendered pod template: groups with another one are rolled out.
inline constexpr std::string_view kAnnotationTemplateHash = "moeserve.io/template-hash";

// Components (app.kubernetes.io/component).
inline constexpr std::string_view kComponentWorker = "worker";
inline constexpr std::string_view kComponentRendezvous = "rendezvous";
inline constexpr std::string_view kComponentApi = "api";
inline constexpr std::string_view kComponentPlacement = "placement";
inline constexpr std::string_view kComponentNetwork = "network";

std::string group_name(std::string_view deployment, int32_t group);  // "x-g3"
std::string ranks_service_name(std::string_view deployment);         // "x-ranks"
std::string api_service_name(std::string_view deployment);           // "x"
std::string placement_configmap_name(std::string_view deployment);   // "x-placement"
std::string pdb_name(std::string_view deployment);                   // "x"
std::string network_policy_name(std::string_view deployment);        // "x"
// "x-g3-0.x-ranks.ns.svc:29500": rank 0 of group 3, through the headless Service.
std::string leader_address(std::string_view deployment, std::string_view ns, int32_t group,
                           int32_t port);
// The group index of a name "x-g<i>", or nullopt when it is not one of x's groups.
std::optional<int32_t> parse_group_name(std::string_view deployment, std::string_view name);

// The standard labels of every object of deployment x (component as given).
nlohmann::json common_labels(std::string_view deployment, std::string_view component);
// common_labels(x, worker) plus moeserve.io/group=<i>: group objects and their pods.
nlohmann::json group_labels(std::string_view deployment, int32_t group);
// Selects every worker pod of x (all groups).
nlohmann::json worker_selector(std::string_view deployment);
// Selects group i's pods (the StatefulSet's immutable selector).
nlohmann::json group_selector(std::string_view deployment, int32_t group);
// Selects the rank-0 pod of every group (pod index 0 holds rank 0).
nlohmann::json leader_selector(std::string_view deployment);
// "a=b,c=d" of a matchLabels object, keys sorted (status.selector for the scale
// subresource).
std::string selector_string(const nlohmann::json& match_labels);

// metadata.ownerReferences entry: the ModelDeployment as controller, blocking deletion.
nlohmann::json owner_reference(const ObjectMeta& owner);
// metadata {name, namespace, labels, ownerReferences} for an object owned by `owner`.
nlohmann::json owned_metadata(const ObjectMeta& owner, std::string_view name,
                              nlohmann::json labels);

}  // namespace moeserve::deployment
