// Writing the structs of types.h as Kubernetes JSON: the spec with every default
// filled in (as the API server stores it after defaulting, so parse(to_json(x)) == x),
// the status subresource, and the core/v1 shapes that both the spec and the pod
// template use. Empty optional fields are omitted. Pure.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "operator/deployment/types.h"

namespace moeserve::deployment {

nlohmann::json to_json(const ModelDeploymentSpec& spec);
nlohmann::json to_json(const ModelDeploymentStatus& status);
// core/v1 ResourceRequirements, Toleration list and EnvVar list.
nlohmann::json to_json(const ResourceRequirements& resources);
nlohmann::json to_json(const std::vector<Toleration>& tolerations);
nlohmann::json to_json(const std::vector<EnvVar>& env);
// spec.worker.imagePullSecrets as core/v1 LocalObjectReferences ([{name}]).
nlohmann::json to_json_secrets(const WorkerSpec& worker);

}  // namespace moeserve::deployment
