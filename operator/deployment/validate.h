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

// What spec.autoscaling.scaleToZeroAfterIdleSeconds without autoscaling is refused with,
// in the CRD and here: the autoscaler decides when to go to zero and when to wake (from
// the gateway's waiting requests), so without it the field would do nothing.
inline constexpr std::string_view kScaleToZeroNeedsAutoscaling =
    "needs enabled: true (the autoscaler decides when a deployment goes to zero and when it "
    "wakes)";

std::vector<FieldError> validate(const ModelDeploymentSpec& spec);
std::vector<FieldError> validate_name(std::string_view name);

}  // namespace moeserve::deployment
