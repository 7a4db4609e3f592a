// Proposing a new placement only when it is measurably better.
#include "operator/placement/propose.h"

#include <gtest/gtest.h>

namespace moeserve::placement {
namespace {

const std::vector<std::vector<int32_t>> kContiguous = {{0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 4, 6}};

TEST(ProposeTest, SkewedLoadAdoptsTheBalancedMap) {
  const std::vector<std::vector<double>> load = {{1000, 1200, 900, 1100, 1000, 12000, 800, 1000}};
  auto p = propose(load, kContiguous, {12, 1, 1, 4});
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ASSERT_TRUE(p->phy2log);
  EXPECT_NEAR(p->current_balancedness, 47.5 / 136, 1e-9);
  EXPECT_NEAR(p->balancedness, balancedness(load, *p->phy2log, 4), 1e-12);
  EXPECT_GT(p->balancedness, p->current_balancedness + 0.4);
}

TEST(ProposeTest, KeepsTheCurrentMapWhenTheGainIsBelowTheThreshold) {
  // Uniform load: the default map leaves 3 + 0.5 + 0.5 ... rank loads 0.8 balanced; EPLB
  // reaches 1, a gain of 0.2.
  const std::vector<std::vector<double>> load = {{1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000}};
  auto small = propose(load, kContiguous, {12, 1, 1, 4}, {0.25, 1000});
  ASSERT_TRUE(small.ok());
  EXPECT_FALSE(small->phy2log);
  EXPECT_NEAR(small->current_balancedness, 0.8, 1e-12);
  EXPECT_EQ(small->balancedness, small->current_balancedness);
  auto enough = propose(load, kContiguous, {12, 1, 1, 4}, {0.15, 1000});
  ASSERT_TRUE(enough.ok());
  EXPECT_TRUE(enough->phy2log);
  EXPECT_NEAR(enough->balancedness, 1.0, 1e-12);
}

TEST(ProposeTest, AnAdoptedMapIsNotProposedAgain) {
  const std::vector<std::vector<double>> load = {{1000, 1200, 900, 1100, 1000, 12000, 800, 1000}};
  auto first = propose(load, kContiguous, {12, 1, 1, 4});
  ASSERT_TRUE(first.ok() && first->phy2log);
  auto second = propose(load, *first->phy2log, {12, 1, 1, 4});
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->phy2log);
  EXPECT_EQ(second->current_balancedness, first->balancedness);
}

TEST(ProposeTest, TooFewTokensProposeNothing) {
  const std::vector<std::vector<double>> load = {{1, 1, 1, 1, 1, 120, 1, 1}};
  auto p = propose(load, kContiguous, {12, 1, 1, 4});
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->phy2log);
  EXPECT_LT(p->current_balancedness, 0.5);
}

TEST(ProposeTest, LoadsThatDoNotMatchTheMapAreRejected) {
  EXPECT_FALSE(propose({{1, 2}}, kContiguous, {12, 1, 1, 4}).ok());  // 2 experts, map names 7
  EXPECT_FALSE(propose({}, kContiguous, {12, 1, 1, 4}).ok());        // no layers
  EXPECT_FALSE(propose({{1, 1, 1, 1, 1, 1, 1, 1}}, kContiguous, {8, 1, 1, 4}).ok());  // slots
}

}  // namespace
}  // namespace moeserve::placement
