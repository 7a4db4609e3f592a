// Validation of JSON instances against JSON schemas by an independent implementation,
// Python's jsonschema (Debian python3-jsonschema), for the structured-output tests.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moeserve::testing {

// True when `python3 -c "import jsonschema"` works.
bool have_jsonschema();
// For each instance (JSON text), "" when it parses and validates against `schema`, else
// the validator's message.
std::vector<std::string> validate_with_jsonschema(const nlohmann::ordered_json& schema,
                                                  const std::vector<std::string>& instances);

}  // namespace moeserve::testing
