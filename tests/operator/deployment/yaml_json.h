// Test helpers: read a YAML file (yaml-cpp) as nlohmann::json with YAML 1.2 core-schema
// scalar typing (plain true/false/null/ints/floats; quoted scalars stay strings), and
// find files of the source tree.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

namespace moeserve::op::testing {

inline nlohmann::json yaml_scalar_to_json(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  if (node.Tag() == "!") return text;  // quoted
  if (text == "true" || text == "True") return true;
  if (text == "false" || text == "False") return false;
  if (text == "null" || text == "~" || text.empty()) return nullptr;
  static const std::regex kInt("^[-+]?[0-9]+$");
  static const std::regex kFloat("^[-+]?([0-9]+\\.[0-9]*|\\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?$");
  if (std::regex_match(text, kInt)) return std::stoll(text);
  if (std::regex_match(text, kFloat)) return std::stod(text);
  return text;
}

inline nlohmann::json yaml_to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& kv : node) out[kv.first.as<std::string>()] = yaml_to_json(kv.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) out.push_back(yaml_to_json(item));
      return out;
    }
    case YAML::NodeType::Scalar: return yaml_scalar_to_json(node);
    default: return nullptr;
  }
}

inline nlohmann::json load_yaml_file(const std::filesystem::path& path) {
  return yaml_to_json(YAML::LoadFile(path.string()));
}

// The repository root: $MOESERVE_SOURCE_DIR (set by CTest), else derived from this file.
inline std::filesystem::path source_dir() {
  if (const char* dir = std::getenv("MOESERVE_SOURCE_DIR")) return dir;
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
}

}  // namespace moeserve::op::testing
