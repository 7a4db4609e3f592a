// names, rfc3339, placement_config and hash: the small pieces the builders share.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "operator/deployment/hash.h"
#include "operator/deployment/names.h"
#include "operator/deployment/placement_config.h"
#include "operator/deployment/rfc3339.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;

TEST(Names, GroupNamesRoundTrip) {
  EXPECT_EQ(group_name("ds", 12), "ds-g12");
  EXPECT_EQ(parse_group_name("ds", "ds-g12"), 12);
  EXPECT_EQ(parse_group_name("ds", "ds-g0"), 0);
  EXPECT_FALSE(parse_group_name("ds", "ds-g01").has_value());
  EXPECT_FALSE(parse_group_name("ds", "ds-g").has_value());
  EXPECT_FALSE(parse_group_name("ds", "ds-gx").has_value());
  EXPECT_FALSE(parse_group_name("ds", "ds-ranks").has_value());
  EXPECT_FALSE(parse_group_name("d", "ds-g1").has_value());
  EXPECT_EQ(leader_address("ds", "ml", 2, 29500), "ds-g2-0.ds-ranks.ml.svc:29500");
  EXPECT_EQ(selector_string(group_selector("ds", 2)),
            "app.kubernetes.io/name=moeserve-worker,moeserve.io/deployment=ds,moeserve.io/group=2");
}

TEST(Rfc3339, FormatAndParse) {
  using namespace std::chrono;
  const sys_seconds t = sys_days(year(2026) / 11 / 28) + hours(13) + minutes(5) + seconds(9);
  EXPECT_EQ(format_rfc3339(t), "2026-11-28T13:05:09Z");
  EXPECT_EQ(parse_rfc3339("2026-11-28T13:05:09Z"), t);
  EXPECT_EQ(parse_rfc3339("2026-11-28T13:05:09.123456Z"), t);
  EXPECT_EQ(parse_rfc3339("2026-11-28T15:05:09+02:00"), t);
  EXPECT_EQ(parse_rfc3339("2026-11-28T12:35:09-00:30"), t);
  EXPECT_EQ(format_rfc3339(sys_seconds{}), "1970-01-01T00:00:00Z");
  for (const char* bad : {"", "2026-11-28", "2026-02-30T00:00:00Z", "2026-11-28T25:00:00Z",
                          "2026-11-28T13:05:09", "2026-11-28T13:05:09.Z", "x026-11-28T13:05:09Z"}) {
    EXPECT_FALSE(parse_rfc3339(bad).has_value()) << bad;
  }
}

TEST(PlacementConfig, DefaultMapSpreadsReplicas) {
  const auto layers = default_phy2log(8, 2, 4);
  ASSERT_EQ(layers.size(), 2u);
  EXPECT_EQ(layers[0], (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 4, 6}));
  EXPECT_EQ(layers[1], layers[0]);
  EXPECT_TRUE(placement_fits(layers, 8, 2, 4));
  EXPECT_FALSE(placement_fits(layers, 8, 3, 4));
  EXPECT_FALSE(placement_fits(layers, 8, 2, 2));
  auto missing = layers;
  missing[1][7] = 0;  // expert 7 has no slot
  EXPECT_FALSE(placement_fits(missing, 8, 2, 4));
  auto out_of_range = layers;
  out_of_range[0][0] = 8;
  EXPECT_FALSE(placement_fits(out_of_range, 8, 2, 4));
}

// Independent scalar reference: per rank, sum of 1/replicas over its slots.
double reference_balancedness(const std::vector<int32_t>& row, int ranks) {
  std::map<int32_t, int> count;
  for (int32_t e : row) ++count[e];
  std::vector<double> load(ranks);
  const size_t per_rank = row.size() / ranks;
  for (size_t s = 0; s < row.size(); ++s) load[s / per_rank] += 1.0 / count[row[s]];
  double sum = 0, max = 0;
  for (double l : load) {
    sum += l;
    max = std::max(max, l);
  }
  return sum / ranks / max;
}

TEST(PlacementConfig, UniformBalancedness) {
  // 8 experts + 4 replicas on 3 ranks: slots {0,1,2,3} {4,5,6,7} {0,2,4,6}; experts 0,2,4,6
  // have two slots (half load each): loads 3, 3, 2 -> mean 8/3 / max 3 = 0.889.
  const auto layers = default_phy2log(8, 1, 4);
  EXPECT_NEAR(uniform_balancedness(layers, 3), 8.0 / 9.0, 1e-12);
  EXPECT_DOUBLE_EQ(uniform_balancedness(default_phy2log(64, 3, 0), 8), 1.0);
  std::vector<std::vector<int32_t>> mixed = {default_phy2log(256, 1, 32)[0],
                                             default_phy2log(256, 1, 32)[0]};
  std::swap(mixed[1][0], mixed[1][270]);
  const double expected =
      (reference_balancedness(mixed[0], 16) + reference_balancedness(mixed[1], 16)) / 2;
  EXPECT_NEAR(uniform_balancedness(mixed, 16), expected, 1e-12);
  EXPECT_LT(expected, 1.0);
}

TEST(Hash, Fnv1aKnownValuesAndCanonicalJson) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ull);
  EXPECT_EQ(json_hash(json::parse(R"({"b":1,"a":[1,2]})")),
            json_hash(json::parse(R"({ "a": [1, 2], "b": 1 })")));
  EXPECT_NE(json_hash(json::parse(R"({"a":[1,2]})")), json_hash(json::parse(R"({"a":[2,1]})")));
  EXPECT_EQ(json_hash(json::object()).size(), 16u);
}

}  // namespace
}  // namespace moeserve::deployment
