// Expert placement: default blocks, placement files, validation errors, token split.
#include "worker/parallel/placement.h"

#include <gtest/gtest.h>

#include <map>

namespace moeserve::parallel {
namespace {

const std::vector<int64_t> kLayers = {1, 2};

std::string error_of(const std::string& json, int world_size = 2, int64_t experts = 4) {
  auto p = ExpertPlacement::parse(json, "p.json", world_size, experts, kLayers);
  EXPECT_FALSE(p.ok()) << json;
  return p.ok() ? "" : p.status().message();
}

TEST(Placement, ContiguousBlocksGiveEachRankItsShare) {
  auto p = ExpertPlacement::contiguous(4, 16, kLayers);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->slots_per_rank(), 4);
  for (int64_t s = 0; s < 16; ++s) {
    EXPECT_EQ(p->phy2log(2)[s], s);
    EXPECT_EQ(p->rank_of_slot(s), s / 4);
    EXPECT_EQ(p->choose_slot(1, static_cast<int32_t>(s), 3, 17), s);  // one replica: always it
  }
  EXPECT_TRUE(p->has_layer(1));
  EXPECT_FALSE(p->has_layer(0));
  EXPECT_FALSE(p->has_layer(3));
}

TEST(Placement, ContiguousNeedsExpertsDivisibleByRanks) {
  auto p = ExpertPlacement::contiguous(3, 16, kLayers);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("--placement"), std::string::npos);
}

TEST(Placement, FileWithOneEntryAppliesToEveryLayer) {
  auto p = ExpertPlacement::parse(R"({"version":3,"layers":[{"phy2log":[3,2,1,0,0,1]}]})", "p.json",
                                  2, 4, kLayers);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->version(), 3);
  EXPECT_EQ(p->num_slots(), 6);
  EXPECT_EQ(p->slots_per_rank(), 3);
  for (int64_t layer : kLayers) {
    EXPECT_EQ(p->phy2log(layer), (std::vector<int32_t>{3, 2, 1, 0, 0, 1}));
    EXPECT_EQ(p->replicas(layer, 0), (std::vector<int32_t>{3, 4}));
    EXPECT_EQ(p->replicas(layer, 3), (std::vector<int32_t>{0}));
  }
}

TEST(Placement, FileWithOneEntryPerLayerKeepsThemApart) {
  auto p = ExpertPlacement::parse(
      R"({"version":1,"layers":[{"phy2log":[0,1,2,3]},{"phy2log":[3,2,1,0]}]})", "p.json", 2, 4,
      kLayers);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->phy2log(1)[0], 0);
  EXPECT_EQ(p->phy2log(2)[0], 3);
}

TEST(Placement, MoeLayersNeedNotBeContiguous) {
  // moe_layer_freq 2 after one dense layer: MoE layers 2 and 4, layer 3 dense.
  auto p = ExpertPlacement::parse(
      R"({"version":1,"layers":[{"phy2log":[0,1,2,3]},{"phy2log":[3,2,1,0]}]})", "p.json", 2, 4,
      {2, 4});
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_TRUE(p->has_layer(2));
  EXPECT_FALSE(p->has_layer(3));
  EXPECT_TRUE(p->has_layer(4));
  EXPECT_FALSE(p->has_layer(5));
  EXPECT_EQ(p->phy2log(2)[0], 0);
  EXPECT_EQ(p->phy2log(4)[0], 3);
}

TEST(Placement, ReplicasSplitEachSourcesTokensRoundRobin) {
  // Expert 0 has slots 0 (rank 0) and 3 (rank 1); expert 1 has three replicas.
  auto p = ExpertPlacement::parse(R"({"version":1,"layers":[{"phy2log":[0,1,2,0,1,1]}]})", "p.json",
                                  2, 3, kLayers);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  std::map<int64_t, int> from0, from1;
  for (int64_t t = 0; t < 12; ++t) {
    ++from0[p->choose_slot(1, 1, 0, t)];
    ++from1[p->choose_slot(1, 1, 1, t)];
  }
  EXPECT_EQ(from0, (std::map<int64_t, int>{{1, 4}, {4, 4}, {5, 4}}));
  EXPECT_EQ(from1, from0);
  // Different sources start on different replicas.
  EXPECT_NE(p->choose_slot(1, 0, 0, 0), p->choose_slot(1, 0, 1, 0));
  EXPECT_EQ(p->choose_slot(1, 0, 0, 0), p->choose_slot(1, 0, 0, 2));
  // Pure: the same inputs give the same slot.
  EXPECT_EQ(p->choose_slot(2, 1, 1, 7), p->choose_slot(2, 1, 1, 7));
}

TEST(Placement, ValidationErrorsNameTheRuleBroken) {
  EXPECT_NE(error_of("not json").find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of(R"({"layers":[{"phy2log":[0,1,2,3]}]})").find("version"), std::string::npos);
  EXPECT_NE(error_of(R"({"version":1,"layers":[]})").find("non-empty"), std::string::npos);
  EXPECT_NE(error_of(R"({"version":1,"layers":[{"phy2log":[0,1,2,3]},{"phy2log":[0,1,2,3]},)"
                     R"({"phy2log":[0,1,2,3]}]})")
                .find("3 entries"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"version":1,"layers":[{"phy2log":[0,1,2]}]})").find("not divisible"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"version":1,"layers":[{"phy2log":[0,1,2,2]}]})")
                .find("logical expert 3 has no slot"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"version":1,"layers":[{"phy2log":[0,1,2,4]}]})").find("outside [0, 4)"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"version":1,"layers":[{"phy2log":[0,1,2,"3"]}]})").find("integers"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"version":1,"layers":[{"phy2log":[0,1,2,3]},{"phy2log":[0,1,2,3,0,1]}]})")
                .find("same count"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"version":1,"layers":[{"phy2log":[0,1,2]}]})").find("p.json: layer 1"),
            std::string::npos);
}

TEST(Placement, LoadNamesAMissingFile) {
  auto p = ExpertPlacement::load("/nonexistent/placement.json", 2, 4, kLayers);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("/nonexistent/placement.json"), std::string::npos);
}

}  // namespace
}  // namespace moeserve::parallel
