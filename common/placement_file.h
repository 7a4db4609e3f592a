// placement.json, the expert placement file: which logical expert each physical expert
// slot holds, per MoE layer (EPLB's phy2log).
//   {"version": N, "layers": [{"phy2log": [e0, e1, ...]}, ...]}
// The operator writes it (ConfigMap x-placement) and the worker loads it (--placement):
// this is the one reader and writer of the schema, used by both. Decoding checks the
// schema: version an integer >= 1, layers a non-empty list, each entry an object whose
// phy2log is a list of 32-bit integers. What the slots must satisfy for one model and
// world size (counts, expert range, every expert present) is checked by the user of
// the file: the worker's ExpertPlacement, the operator's placement_fits. Pure.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace moeserve {

struct PlacementFile {
  int64_t version = 0;
  std::vector<std::vector<int32_t>> layers;  // phy2log per MoE layer

  friend bool operator==(const PlacementFile&, const PlacementFile&) = default;
};

nlohmann::json placement_file_to_json(const PlacementFile& placement);
// invalid_argument "<source>: <field>: <what is wrong>".
StatusOr<PlacementFile> placement_file_from_json(const nlohmann::json& value,
                                                 std::string_view source);
// placement_file_from_json of JSON text ("<source>: not a JSON object" when malformed).
StatusOr<PlacementFile> parse_placement_file(std::string_view text, std::string_view source);

}  // namespace moeserve
