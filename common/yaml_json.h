// YAML (yaml-cpp) read as nlohmann::json, with YAML 1.2 core-schema scalar typing:
// plain true/false/null/integers/floats become JSON booleans, null and numbers; quoted
// scalars stay strings. Used for Kubernetes manifests (CRDs, examples, kubeconfigs).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace moeserve {

// One YAML document. Malformed YAML -> invalid_argument with yaml-cpp's line/column.
StatusOr<nlohmann::json> yaml_to_json(std::string_view yaml_text);
// Every document of a multi-document stream ("---"), empty documents skipped.
StatusOr<std::vector<nlohmann::json>> yaml_documents_to_json(std::string_view yaml_text);
// yaml_documents_to_json of a file; errors name the file.
StatusOr<std::vector<nlohmann::json>> load_yaml_documents(const std::string& path);

}  // namespace moeserve
