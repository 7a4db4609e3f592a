// ModelDeployment objects (operator/deployment/parse.h, validate.h, serialize.h): any
// JSON object through parse_model_deployment, which never fails as a whole. Every field
// error names its path; the parsed spec survives the documented round trip
// parse_spec(to_json(spec)) == spec (compared as JSON) without new type errors, and
// validating it again finds the same problems.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/deployment/parse.h"
#include "operator/deployment/serialize.h"
#include "operator/deployment/validate.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using moeserve::FieldError;

std::string joined(const std::vector<FieldError>& errors) {
  std::string out;
  for (const FieldError& e : errors) out += e.to_string() + "; ";
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace deployment = moeserve::deployment;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const nlohmann::json object = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) return 0;
  const deployment::ModelDeployment md = deployment::parse_model_deployment(object);
  for (const FieldError& e : md.errors) {
    FUZZ_CHECK(!e.path.empty() && !e.message.empty(), "a field error without path or message");
  }
  const nlohmann::json spec_json = deployment::to_json(md.spec);
  std::vector<FieldError> type_errors;
  const deployment::ModelDeploymentSpec again = deployment::parse_spec(spec_json, &type_errors);
  FUZZ_CHECK(type_errors.empty(), "the written spec does not read back: " + joined(type_errors));
  const nlohmann::json again_json = deployment::to_json(again);
  FUZZ_CHECK(again_json == spec_json,
             "spec changed in a round trip: " + spec_json.dump() + " -> " + again_json.dump());
  FUZZ_CHECK(deployment::validate(again) == deployment::validate(md.spec),
             "validation differs after a round trip: " + joined(deployment::validate(again)) +
                 " vs " + joined(deployment::validate(md.spec)));
  deployment::to_json(md.status);
  return 0;
}
