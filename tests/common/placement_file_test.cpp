#include "common/placement_file.h"

#include <gtest/gtest.h>

namespace moeserve {
namespace {

using nlohmann::json;

std::string error_of(const std::string& text) {
  auto parsed = parse_placement_file(text, "p.json");
  EXPECT_FALSE(parsed.ok()) << text;
  EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  return parsed.status().message();
}

TEST(PlacementFile, JsonRoundTrip) {
  const PlacementFile p{3, {{0, 1, 1}, {1, 0, 0}}};
  const json j = placement_file_to_json(p);
  EXPECT_EQ(j.dump(), R"({"layers":[{"phy2log":[0,1,1]},{"phy2log":[1,0,0]}],"version":3})");
  EXPECT_EQ(placement_file_from_json(j, "x").value(), p);
  EXPECT_EQ(parse_placement_file(j.dump(), "x").value(), p);
}

TEST(PlacementFile, ErrorsNameTheSourceAndTheField) {
  EXPECT_EQ(error_of("not json"), "p.json: not a JSON object");
  EXPECT_EQ(error_of("[1]"), "p.json: not a JSON object");
  EXPECT_EQ(error_of(R"({"layers":[{"phy2log":[0]}]})"),
            "p.json: \"version\" must be a positive integer");
  EXPECT_EQ(error_of(R"({"version":0,"layers":[{"phy2log":[0]}]})"),
            "p.json: \"version\" must be a positive integer");
  EXPECT_EQ(error_of(R"({"version":1,"layers":[]})"),
            "p.json: \"layers\" must be a non-empty array");
  EXPECT_EQ(error_of(R"({"version":1,"layers":[{"phy2log":[0]},{"x":1}]})"),
            "p.json: layers[1]: expected {\"phy2log\": [...]}");
  EXPECT_EQ(error_of(R"({"version":1,"layers":[{"phy2log":[0,"1"]}]})"),
            "p.json: layers[0].phy2log: expected integers, got \"1\"");
  EXPECT_EQ(error_of(R"({"version":1,"layers":[{"phy2log":[4294967296]}]})"),
            "p.json: layers[0].phy2log: expected integers, got 4294967296");
}

}  // namespace
}  // namespace moeserve
