#include "common/placement_file.h"

#include <limits>
#include <string>

namespace moeserve {

using nlohmann::json;

json placement_file_to_json(const PlacementFile& placement) {
  json layers = json::array();
  for (const auto& row : placement.layers) layers.push_back({{"phy2log", row}});
  return {{"version", placement.version}, {"layers", layers}};
}

StatusOr<PlacementFile> placement_file_from_json(const json& value, std::string_view source) {
  const std::string where(source);
  if (!value.is_object()) return invalid_argument_error(where + ": not a JSON object");
  if (!value.contains("version") || !value["version"].is_number_integer() ||
      value["version"].get<int64_t>() < 1) {
    return invalid_argument_error(where + ": \"version\" must be a positive integer");
  }
  if (!value.contains("layers") || !value["layers"].is_array() || value["layers"].empty()) {
    return invalid_argument_error(where + ": \"layers\" must be a non-empty array");
  }
  PlacementFile out;
  out.version = value["version"].get<int64_t>();
  const json& layers = value["layers"];
  for (size_t i = 0; i < layers.size(); ++i) {
    const json& entry = layers[i];
    const std::string layer = where + ": layers[" + std::to_string(i) + "]";
    if (!entry.is_object() || !entry.contains("phy2log") || !entry["phy2log"].is_array()) {
      return invalid_argument_error(layer + ": expected {\"phy2log\": [...]}");
    }
    std::vector<int32_t> row;
    for (const json& slot : entry["phy2log"]) {
      if (!slot.is_number_integer() || slot.get<int64_t>() < std::numeric_limits<int32_t>::min() ||
          slot.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return invalid_argument_error(layer + ".phy2log: expected integers, got " + slot.dump());
      }
      row.push_back(static_cast<int32_t>(slot.get<int64_t>()));
    }
    out.layers.push_back(std::move(row));
  }
  return out;
}

StatusOr<PlacementFile> parse_placement_file(std::string_view text, std::string_view source) {
  const json value = json::parse(text, nullptr, false);
  if (value.is_discarded())
    return invalid_argument_error(std::string(source) + ": not a JSON object");
  return placement_file_from_json(value, source);
}

}  // namespace moeserve
