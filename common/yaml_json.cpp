#include "common/yaml_json.h"

#include <cctype>

#include <yaml-cpp/yaml.h>

#include "common/file.h"

namespace moeserve {
namespace {

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string_view without_sign(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return s;
}

// YAML 1.2 core schema: [-+]?[0-9]+
bool is_int(std::string_view s) { return all_digits(without_sign(s)); }

// YAML 1.2 core schema: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool is_float(std::string_view s) {
  s = without_sign(s);
  size_t e = s.find_first_of("eE");
  std::string_view mantissa = s.substr(0, e);
  if (e != std::string_view::npos && !all_digits(without_sign(s.substr(e + 1)))) return false;
  size_t dot = mantissa.find('.');
  if (dot == std::string_view::npos) return all_digits(mantissa);
  std::string_view whole = mantissa.substr(0, dot);
  std::string_view fraction = mantissa.substr(dot + 1);
  if (whole.empty()) return all_digits(fraction);
  return all_digits(whole) && (fraction.empty() || all_digits(fraction));
}

nlohmann::json scalar_to_json(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  if (node.Tag() == "!") return text;  // quoted
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  if (text == "null" || text == "Null" || text == "NULL" || text == "~" || text.empty()) {
    return nullptr;
  }
  if (is_int(text)) {
    try {
      return std::stoll(text);
    } catch (const std::out_of_range&) {
      return std::stod(text);
    }
  }
  if (is_float(text)) return std::stod(text);
  return text;
}

nlohmann::json node_to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& kv : node) out[kv.first.as<std::string>()] = node_to_json(kv.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) out.push_back(node_to_json(item));
      return out;
    }
    case YAML::NodeType::Scalar: return scalar_to_json(node);
    default: return nullptr;
  }
}

}  // namespace

StatusOr<std::vector<nlohmann::json>> yaml_documents_to_json(std::string_view yaml_text) {
  try {
    std::vector<nlohmann::json> out;
    for (const auto& doc : YAML::LoadAll(std::string(yaml_text))) {
      if (doc.IsNull()) continue;
      out.push_back(node_to_json(doc));
    }
    return out;
  } catch (const YAML::Exception& e) {
    return invalid_argument_error(std::string("YAML: ") + e.what());
  }
}

StatusOr<nlohmann::json> yaml_to_json(std::string_view yaml_text) {
  MOESERVE_ASSIGN_OR_RETURN(auto docs, yaml_documents_to_json(yaml_text));
  if (docs.size() != 1) {
    return invalid_argument_error("YAML: expected one document, found " +
                                  std::to_string(docs.size()));
  }
  return docs[0];
}

StatusOr<std::vector<nlohmann::json>> load_yaml_documents(const std::string& path) {
  MOESERVE_ASSIGN_OR_RETURN(std::string text, read_file(path));
  auto docs = yaml_documents_to_json(text);
  if (!docs.ok()) return docs.status().with_context(path);
  return docs;
}

}  // namespace moeserve
