// The rules a ModelDeployment must satisfy: every rule of the CRD (OpenAPI bounds,
// enums and CEL rules, with the same field paths and the same wording as the CRD's
// messages; a test checks that each CRD rule has its check here) plus the ones a
// schema cannot express (quantities). Each function returns every violation, in field
// order; an empty list means valid. Pure.
#pragma once

#include <string_view>
#include <vector>

#include "common/json_reader.h"
#include "operator/deployment/types.h"

namespace moeserve::deployment {

std::vector<FieldError> validate(const ModelDeploymentSpec& spec);
std::vector<FieldError> validate_name(std::string_view name);

}  // namespace moeserve::deployment
