// placement.json (common/placement_file.h): parse_placement_file on any bytes. An
// accepted file holds exactly the numbers of the input (no integer silently wrapped or
// narrowed) and round trips: placement_file_from_json(placement_file_to_json(p)) == p.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/placement_file.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nlohmann::json;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  moeserve::StatusOr<moeserve::PlacementFile> parsed =
      moeserve::parse_placement_file(text, "placement.json");
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.status().message().starts_with("placement.json: "),
               parsed.status().message());
    return 0;
  }
  const json input = json::parse(text);
  json expected = {{"version", input["version"]}, {"layers", json::array()}};
  for (const json& layer : input["layers"]) {
    expected["layers"].push_back({{"phy2log", layer["phy2log"]}});
  }
  const json written = moeserve::placement_file_to_json(*parsed);
  FUZZ_CHECK(written.dump() == expected.dump(), written.dump() + " != " + expected.dump());
  moeserve::StatusOr<moeserve::PlacementFile> again =
      moeserve::placement_file_from_json(written, "again");
  FUZZ_CHECK(again.ok(), again.status().message());
  FUZZ_CHECK(*again == *parsed, "placement file changed in a round trip");
  return 0;
}
