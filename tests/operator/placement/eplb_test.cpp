// The EPLB planner: packing, replication, the hierarchical and global policies, the
// plan's invariants on random loads, and balancedness against hand-computed values.
#include "operator/placement/eplb.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace moeserve::placement {
namespace {

TEST(BalancedPackingTest, HeaviestFirstIntoTheLightestPackWithRoom) {
  const Packing p = balanced_packing({5, 4, 3, 2, 1, 1}, 2);
  // 5->0, 4->1, 3->1 (4 < 5), 2->0 (5 < 7), 1->0 (7 = 7: lowest index), 1->1 (pack 0 full).
  EXPECT_EQ(p.pack, (std::vector<int32_t>{0, 1, 1, 0, 0, 1}));
  EXPECT_EQ(p.rank_in_pack, (std::vector<int32_t>{0, 0, 1, 1, 2, 2}));
}

TEST(BalancedPackingTest, OneItemPerPackKeepsTheOrder) {
  const Packing p = balanced_packing({1, 9, 3}, 3);
  EXPECT_EQ(p.pack, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(p.rank_in_pack, (std::vector<int32_t>{0, 0, 0}));
}

TEST(ReplicateExpertsTest, ExtraSlotsGoToTheLargestLoadPerReplica) {
  const Replication r = replicate_experts({10, 2, 4}, 6);
  // slot 3: 10/1 -> e0; slot 4: 10/2=5 > 4 -> e0; slot 5: 10/3=3.3 < 4 -> e2.
  EXPECT_EQ(r.phy2log, (std::vector<int32_t>{0, 1, 2, 0, 0, 2}));
  EXPECT_EQ(r.rank, (std::vector<int32_t>{0, 0, 0, 1, 2, 1}));
  EXPECT_EQ(r.logcnt, (std::vector<int32_t>{3, 1, 2}));
}

TEST(BalancednessTest, MeanGpuLoadOverMaxGpuLoadAveragedOverLayers) {
  // Layer 0: GPUs carry 3+1 and 2+2 -> 1. Layer 1: 4+0 and 1+1 -> (6/2)/4 = 0.75.
  const double b = balancedness({{3, 1, 2, 2}, {4, 0, 1, 1}}, {{0, 1, 2, 3}, {0, 1, 2, 3}}, 2);
  EXPECT_DOUBLE_EQ(b, (1.0 + 0.75) / 2);
}

TEST(BalancednessTest, ReplicasShareTheirExpertsLoad) {
  // Expert 0 (load 4) has slots on both GPUs: 2+1 vs 2+1.
  EXPECT_DOUBLE_EQ(balancedness({{4, 1, 1}}, {{0, 1, 0, 2}}, 2), 1.0);
  EXPECT_DOUBLE_EQ(balancedness({{0, 0, 0}}, {{0, 1, 0, 2}}, 2), 1.0);
}

// Experts 0..E-1 in order, then one replica each of experts j*E/R (the operator's
// default map before any load is measured).
std::vector<int32_t> default_row(int32_t experts, int32_t redundant) {
  std::vector<int32_t> row;
  for (int32_t e = 0; e < experts; ++e) row.push_back(e);
  for (int32_t j = 0; j < redundant; ++j) row.push_back(j * experts / redundant);
  return row;
}

TEST(RebalanceExpertsTest, ReplicasOfTheHottestExpertRaiseBalancedness) {
  // 8 experts, 4 redundant slots, 4 GPUs of 3 slots; expert 5 carries most tokens.
  std::vector<std::vector<double>> load = {{10, 12, 9, 11, 10, 120, 8, 10}};
  auto plan = rebalance_experts(load, {12, 1, 1, 4});
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  // 120 -> 60 -> 40 -> 30 -> 24 per replica: all four redundant slots go to expert 5.
  EXPECT_EQ(plan->logcnt[0][5], 5);
  // Replicas of 24 spread first; the heaviest GPU then carries 24 + 24 + 8 = 56 against
  // a mean of 190 / 4 = 47.5.
  EXPECT_NEAR(balancedness(load, plan->phy2log, 4), 47.5 / 56, 1e-12);
  // The default map replicates experts 0, 2, 4, 6: GPU 1 holds 11 + 5 + 120 = 136.
  EXPECT_NEAR(balancedness(load, {default_row(8, 4)}, 4), 47.5 / 136, 1e-12);
}

TEST(RebalanceExpertsTest, HierarchicalKeepsExpertGroupsOnOneNode) {
  // 4 groups of 2 experts over 2 nodes of 2 GPUs; no redundancy.
  std::vector<std::vector<double>> load = {{50, 40, 1, 2, 30, 20, 3, 4}};
  auto plan = rebalance_experts(load, {8, 4, 2, 4});
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  for (int32_t node = 0; node < 2; ++node) {
    std::set<int32_t> groups;
    for (int32_t s = node * 4; s < node * 4 + 4; ++s) groups.insert(plan->phy2log[0][s] / 2);
    EXPECT_EQ(groups.size(), 2u) << "node " << node << " holds two whole groups";
  }
  // Group loads 90, 3, 50, 7: the heavy groups 0 and 2 land on different nodes.
  auto node_of = [&](int32_t expert) {
    for (int32_t s = 0; s < 8; ++s) {
      if (plan->phy2log[0][s] == expert) return s / 4;
    }
    return -1;
  };
  EXPECT_NE(node_of(0), node_of(4));
}

TEST(RebalanceExpertsTest, GroupsThatDoNotDivideOverNodesUseTheGlobalPolicy) {
  std::vector<std::vector<double>> load = {{9, 1, 1, 1, 1, 1}};
  auto global = rebalance_experts(load, {8, 1, 1, 2});
  auto fallback = rebalance_experts(load, {8, 3, 2, 2});  // 3 groups over 2 nodes
  ASSERT_TRUE(global.ok());
  ASSERT_TRUE(fallback.ok());
  EXPECT_EQ(global->phy2log, fallback->phy2log);
}

TEST(RebalanceExpertsTest, PlansAreConsistentOnRandomLoads) {
  std::mt19937 rng(7);
  std::lognormal_distribution<double> dist(0.0, 1.0);
  for (const EplbShape shape : {EplbShape{40, 1, 1, 4}, EplbShape{36, 4, 2, 4},
                                EplbShape{64, 8, 4, 8}, EplbShape{33, 2, 3, 3}}) {
    const int32_t experts = 32;
    std::vector<std::vector<double>> load(3, std::vector<double>(experts));
    for (auto& row : load) {
      for (double& w : row) w = dist(rng);
    }
    auto plan = rebalance_experts(load, shape);
    ASSERT_TRUE(plan.ok()) << plan.status().to_string();
    for (size_t l = 0; l < load.size(); ++l) {
      const auto& row = plan->phy2log[l];
      ASSERT_EQ(row.size(), static_cast<size_t>(shape.num_slots));
      std::vector<int32_t> count(experts, 0);
      for (int32_t e : row) {
        ASSERT_GE(e, 0);
        ASSERT_LT(e, experts);
        ++count[e];
      }
      EXPECT_EQ(count, plan->logcnt[l]);
      for (int32_t e = 0; e < experts; ++e) {
        EXPECT_GE(count[e], 1) << "expert " << e << " lost its slot";
        for (int32_t r = 0; r < static_cast<int32_t>(plan->log2phy[l][e].size()); ++r) {
          const int32_t slot = plan->log2phy[l][e][r];
          if (r < count[e]) {
            ASSERT_GE(slot, 0);
            EXPECT_EQ(row[slot], e);
          } else {
            EXPECT_EQ(slot, -1);
          }
        }
      }
    }
  }
}

TEST(RebalanceExpertsTest, RejectsShapesThatDoNotFit) {
  EXPECT_FALSE(rebalance_experts({}, {4, 1, 1, 2}).ok());
  EXPECT_FALSE(rebalance_experts({{1, 2}, {1}}, {4, 1, 1, 2}).ok());
  EXPECT_FALSE(rebalance_experts({{1, -2}}, {4, 1, 1, 2}).ok());
  EXPECT_FALSE(rebalance_experts({{1, 2, 3}}, {2, 1, 1, 1}).ok());      // slots < experts
  EXPECT_FALSE(rebalance_experts({{1, 2, 3}}, {5, 1, 1, 2}).ok());      // 5 % 2 gpus
  EXPECT_FALSE(rebalance_experts({{1, 2, 3, 4}}, {4, 1, 2, 3}).ok());   // 3 gpus % 2 nodes
  auto status = rebalance_experts({{1, 2, 3}}, {6, 2, 2, 2}).status();  // 3 experts % 2 groups
  EXPECT_NE(status.message().find("groups"), std::string::npos) << status.to_string();
}

}  // namespace
}  // namespace moeserve::placement
