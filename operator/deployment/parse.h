// Reading a ModelDeployment from Kubernetes JSON into the structs of types.h.
//
// Parsing never fails as a whole: a field of the wrong type is reported as a
// FieldError (with its path, "spec.worker.port: must be an integer") and keeps its
// default, so the controller can always write a status that names the field
// (Ready=False, reason InvalidSpec). Absent fields take the CRD's defaults. Pure.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "common/json_reader.h"
#include "operator/deployment/types.h"

namespace moeserve::deployment {

// Reads spec fields, applying the CRD's defaults to absent ones; wrong types are
// appended to `errors` (paths start with "spec.").
ModelDeploymentSpec parse_spec(const nlohmann::json& spec, std::vector<FieldError>* errors);
// Reads a status as written by compute_status; unknown or malformed fields are skipped.
ModelDeploymentStatus parse_status(const nlohmann::json& status);
// Reads a whole object: metadata, spec (parsed and validated: validate.h) and status.
ModelDeployment parse_model_deployment(const nlohmann::json& object);

}  // namespace moeserve::deployment
