// The placement policies: refined/global/auto against EPLB on random inputs (never
// below it, per layer), the plan invariants (every expert placed, slot counts, groups
// on nodes), determinism, the balancedness bound, the local search on hand-made cases,
// the locality cost model and the loads JSON.
#include "operator/placement/planner.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>

#include "operator/placement/bound.h"
#include "operator/placement/loads_json.h"
#include "operator/placement/locality.h"
#include "operator/placement/refine.h"

namespace moeserve::placement {
namespace {

using Loads = std::vector<std::vector<double>>;

Loads random_loads(std::mt19937_64& rng, int32_t layers, int32_t experts) {
  std::uniform_real_distribution<double> exponent(0.2, 1.6);
  Loads out;
  for (int32_t l = 0; l < layers; ++l) {
    std::vector<int32_t> order(experts);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    const double s = exponent(rng);
    std::vector<double> row(experts);
    for (int32_t i = 0; i < experts; ++i) row[order[i]] = 1000 / std::pow(i + 1.0, s);
    if (l % 3 == 2) row[order[experts - 1]] = 0;  // an idle expert
    out.push_back(std::move(row));
  }
  return out;
}

double layer_balancedness(const Loads& loads, const EplbPlan& plan, size_t l, int32_t ranks) {
  return balancedness({loads[l]}, {plan.phy2log[l]}, ranks);
}

PlannerResult plan_or_die(const Loads& loads, const EplbShape& shape, Policy policy) {
  auto result = plan_experts(loads, shape, {policy, {}});
  EXPECT_TRUE(result.ok()) << result.status().to_string();
  return result.ok() ? *result : PlannerResult{};
}

void expect_valid(const EplbPlan& plan, int32_t experts, int32_t slots) {
  for (size_t l = 0; l < plan.phy2log.size(); ++l) {
    ASSERT_EQ(plan.phy2log[l].size(), static_cast<size_t>(slots));
    std::vector<int32_t> count(experts, 0);
    for (int32_t e : plan.phy2log[l]) {
      ASSERT_GE(e, 0);
      ASSERT_LT(e, experts);
      ++count[e];
    }
    EXPECT_EQ(count, plan.logcnt[l]);
    for (int32_t e = 0; e < experts; ++e) {
      EXPECT_GE(count[e], 1) << "layer " << l << " expert " << e;
      for (int32_t r = 0; r < count[e]; ++r) EXPECT_EQ(plan.phy2log[l][plan.log2phy[l][e][r]], e);
    }
  }
}

// Each node holds whole groups, groups / nodes of them.
void expect_groups_on_nodes(const EplbPlan& plan, const EplbShape& shape, int32_t experts) {
  const int32_t group_size = experts / shape.num_groups;
  const int32_t per_node = shape.num_slots / shape.num_nodes;
  for (const auto& row : plan.phy2log) {
    std::vector<int32_t> node_of_group(shape.num_groups, -1);
    for (int32_t s = 0; s < shape.num_slots; ++s) {
      const int32_t g = row[s] / group_size, node = s / per_node;
      if (node_of_group[g] < 0) node_of_group[g] = node;
      EXPECT_EQ(node_of_group[g], node) << "group " << g << " spans nodes";
    }
  }
}

struct Case {
  int32_t experts, slots, groups, nodes, ranks;
};

TEST(PlannerTest, NeverBelowEplbOnRandomInputsAndKeepsTheRules) {
  std::mt19937_64 rng(42);
  const Case cases[] = {{16, 20, 4, 2, 4},  {32, 40, 8, 4, 8},  {32, 48, 4, 2, 8},
                        {64, 72, 8, 4, 24}, {64, 80, 8, 8, 16}, {24, 30, 4, 3, 6},
                        {16, 16, 4, 2, 4},  {64, 96, 8, 2, 32}, {48, 64, 8, 4, 16}};
  for (const Case& c : cases) {
    for (int trial = 0; trial < 3; ++trial) {
      const Loads loads = random_loads(rng, 6, c.experts);
      const EplbShape shape{c.slots, c.groups, c.nodes, c.ranks};
      const bool grouped = hierarchical_applies(shape);
      const PlannerResult eplb = plan_or_die(loads, shape, Policy::kEplb);
      const PlannerResult refined = plan_or_die(loads, shape, Policy::kRefined);
      const PlannerResult global = plan_or_die(loads, shape, Policy::kGlobal);
      const PlannerResult chosen = plan_or_die(loads, shape, Policy::kAuto);
      for (const PlannerResult* r : {&refined, &global, &chosen}) {
        expect_valid(r->plan, c.experts, c.slots);
      }
      if (grouped) expect_groups_on_nodes(refined.plan, shape, c.experts);
      const double bound = balancedness_bound(loads, shape, grouped);
      const double global_bound = balancedness_bound(loads, shape, false);
      for (size_t l = 0; l < loads.size(); ++l) {
        const double b_eplb = layer_balancedness(loads, eplb.plan, l, c.ranks);
        const double b_refined = layer_balancedness(loads, refined.plan, l, c.ranks);
        const double b_global = layer_balancedness(loads, global.plan, l, c.ranks);
        EXPECT_GE(b_refined, b_eplb) << "layer " << l;
        EXPECT_GE(b_global, b_refined) << "layer " << l;
        EXPECT_GE(layer_balancedness(loads, chosen.plan, l, c.ranks), b_eplb);
        EXPECT_LE(b_refined, balancedness_bound({loads[l]}, shape, grouped) + 1e-12);
        EXPECT_LE(b_global, balancedness_bound({loads[l]}, shape, false) + 1e-12);
      }
      EXPECT_LE(balancedness(loads, refined.plan.phy2log, c.ranks), bound + 1e-12);
      EXPECT_LE(global_bound + 1e-12, 1.0 + 1e-12);
      // Deterministic: the same input gives the same map.
      EXPECT_EQ(plan_or_die(loads, shape, Policy::kRefined).plan.phy2log, refined.plan.phy2log);
      EXPECT_EQ(plan_or_die(loads, shape, Policy::kGlobal).plan.phy2log, global.plan.phy2log);
    }
  }
}

TEST(PlannerTest, RefinedBeatsEplbOnASkewedLayer) {
  // 8 experts, one very hot, 12 slots over 4 ranks: EPLB gives all 4 redundant slots to
  // the hot expert, 5 replicas over 4 ranks, so one rank carries two of them.
  const Loads loads = {{10, 12, 9, 11, 10, 120, 8, 10}};
  const EplbShape shape{12, 1, 1, 4};
  const double b_eplb =
      balancedness(loads, plan_or_die(loads, shape, Policy::kEplb).plan.phy2log, 4);
  const double b_refined =
      balancedness(loads, plan_or_die(loads, shape, Policy::kRefined).plan.phy2log, 4);
  EXPECT_NEAR(b_eplb, 47.5 / 56, 1e-12);
  EXPECT_GT(b_refined, b_eplb + 0.05);
  EXPECT_LE(b_refined, balancedness_bound(loads, shape, false));
}

TEST(PlannerTest, EplbPolicyIsRebalanceExperts) {
  std::mt19937_64 rng(5);
  const Loads loads = random_loads(rng, 4, 32);
  const EplbShape shape{40, 8, 4, 8};
  auto eplb = rebalance_experts(loads, shape);
  ASSERT_TRUE(eplb.ok());
  const PlannerResult planned = plan_or_die(loads, shape, Policy::kEplb);
  EXPECT_EQ(planned.plan.phy2log, eplb->phy2log);
  EXPECT_EQ(planned.plan.logcnt, eplb->logcnt);
}

TEST(PlannerTest, RefusesBadInput) {
  EXPECT_FALSE(plan_experts({{1, 2}, {1}}, {4, 1, 1, 2}).ok());        // ragged
  EXPECT_FALSE(plan_experts({{1, -2}}, {4, 1, 1, 2}).ok());            // negative
  EXPECT_FALSE(plan_experts({{1, std::nan("")}}, {4, 1, 1, 2}).ok());  // non-finite
  EXPECT_FALSE(plan_experts({{1, 2, 3}}, {4, 1, 1, 3}).ok());          // slots % ranks
  EXPECT_FALSE(plan_experts({{1, 2, 3}}, {2, 1, 1, 2}).ok());          // slots < experts
  EXPECT_FALSE(plan_experts({{1, 2, 3}}, {6, 2, 2, 2}).ok());          // groups
  PlannerOptions bad;
  bad.traffic.inter_node_bytes_per_s = 0;
  auto status = plan_experts({{1, 2}}, {4, 1, 1, 2}, bad).status();
  EXPECT_NE(status.message().find("inter_node_bytes_per_s"), std::string::npos);
}

TEST(PolicyTest, NamesRoundTrip) {
  for (Policy p : {Policy::kEplb, Policy::kRefined, Policy::kGlobal, Policy::kAuto}) {
    auto parsed = parse_policy(policy_name(p));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, p);
  }
  EXPECT_FALSE(parse_policy("best").ok());
}

TEST(RefineTest, SwapLowersTheHeaviestRank) {
  // Ranks of 2 slots: {9, 8} and {1, 2}: swapping 8 and 1 gives {9, 1} and {8, 2}.
  std::vector<int32_t> slots = {0, 1, 2, 3};
  const double max = refine_domain({9, 8, 1, 2}, 2, &slots, 100);
  EXPECT_DOUBLE_EQ(max, 10);
  EXPECT_DOUBLE_EQ(max_rank_load({9, 8, 1, 2}, slots, 2), 10);
}

TEST(RefineTest, ReReplicationMovesARedundantSlotToTheExpertThatNeedsIt) {
  // Expert 0 (load 2) has two replicas, expert 1 (load 12) one: ranks {0:1, 1:12} and
  // {0:1, 2:1}. Giving expert 1 the slot of one replica of expert 0 lowers the max.
  std::vector<int32_t> slots = {0, 1, 0, 2};
  const double max = refine_domain({2, 12, 1}, 2, &slots, 100);
  EXPECT_LT(max, 12);
  std::vector<int32_t> count(3, 0);
  for (int32_t e : slots) ++count[e];
  EXPECT_EQ(count, (std::vector<int32_t>{1, 2, 1}));
}

TEST(RefineTest, LeavesAnOptimalMapAlone) {
  std::vector<int32_t> slots = {0, 3, 1, 2};
  EXPECT_DOUBLE_EQ(refine_domain({4, 3, 2, 1}, 2, &slots, 100), 5);
  EXPECT_EQ(slots, (std::vector<int32_t>{0, 3, 1, 2}));
}

TEST(BoundTest, MinMaxShareIsTheWaterFill) {
  EXPECT_DOUBLE_EQ(min_max_share({10, 2, 4}, 3), 10);
  // 10 -> 5 -> 3.33, then 4 is the max.
  EXPECT_DOUBLE_EQ(min_max_share({10, 2, 4}, 5), 4);
  EXPECT_DOUBLE_EQ(min_max_share({10, 2, 4}, 6), 10.0 / 3);
}

TEST(BoundTest, DomainBoundTakesTheLargerOfItsTwoTerms) {
  EXPECT_DOUBLE_EQ(domain_load_bound({6, 6, 6, 6}, 4, 2), 12);   // average
  EXPECT_DOUBLE_EQ(domain_load_bound({30, 1, 1, 1}, 4, 4), 30);  // one replica of 30
  EXPECT_DOUBLE_EQ(domain_load_bound({30, 1, 1, 1}, 5, 4), 15);  // two replicas of 30
}

TEST(BoundTest, GroupAssignmentPairsTheHotGroupWithTheColdest) {
  // 4 groups of one expert over 2 nodes of 2 slots and 1 rank: best {0,3} {1,2}.
  auto best = best_group_assignment({10, 6, 5, 1}, {4, 4, 2, 2});
  ASSERT_TRUE(best.has_value());
  EXPECT_EQ(best->node_of_group, (std::vector<int32_t>{0, 1, 1, 0}));
  EXPECT_DOUBLE_EQ(best->load_bound, 11);
  // 8 groups over 4 nodes: 105 partitions, enumerated.
  EXPECT_TRUE(best_group_assignment(std::vector<double>(16, 1), {16, 8, 4, 4}).has_value());
  // 32 groups over 4 nodes: far too many; the bound falls back to its weaker form.
  EXPECT_FALSE(best_group_assignment(std::vector<double>(32, 1), {32, 32, 4, 4}).has_value());
  EXPECT_GE(max_load_bound(std::vector<double>(32, 1), {32, 32, 4, 4}, true), 2.0);
}

TEST(LocalityTest, DestinationNodes) {
  TrafficModel m;
  // 4 of 8 groups, one group per node: 4 nodes.
  EXPECT_DOUBLE_EQ(destination_nodes(m, 8, 8, true), 4);
  // 2 groups per node on 4 nodes: a node is missed with C(6,4)/C(8,4) = 15/70.
  EXPECT_NEAR(destination_nodes(m, 8, 4, true), 4 * (1 - 15.0 / 70), 1e-12);
  EXPECT_NEAR(destination_nodes(m, 8, 2, true), 2 * (1 - 1.0 / 70), 1e-12);
  EXPECT_NEAR(destination_nodes(m, 8, 8, false), 8 * (1 - std::pow(7.0 / 8, 8)), 1e-12);
  EXPECT_DOUBLE_EQ(destination_nodes(m, 1, 1, false), 1);
}

TEST(LocalityTest, SpreadsOnlyWhenTheComputeSavedPaysForTheTraffic) {
  LocalityInput in;
  in.grouped_max_load = {200};
  in.spread_max_load = {100};
  in.total_load = {3200};
  in.ranks = 32;
  in.groups = 8;
  in.nodes = 8;
  TrafficModel fast_network;
  fast_network.inter_node_bytes_per_s = 1e15;
  fast_network.intra_node_bytes_per_s = 1e15;
  EXPECT_FALSE(choose_locality(fast_network, in).keep_groups_on_nodes);
  TrafficModel slow_network;
  slow_network.inter_node_bytes_per_s = 1e6;
  const LocalityChoice slow = choose_locality(slow_network, in);
  EXPECT_TRUE(slow.keep_groups_on_nodes);
  EXPECT_LT(slow.grouped_step_s, slow.spread_step_s);
  in.spread_max_load = {200};  // no compute saved: keep groups (less traffic), ties too
  EXPECT_TRUE(choose_locality(fast_network, in).keep_groups_on_nodes);
  // The model itself: compute + traffic, by hand.
  TrafficModel m;
  const double tokens_per_rank = 3200 / m.experts_per_token / 32;
  const double expected =
      200 * m.compute_s_per_token_expert +
      tokens_per_rank * m.bytes_per_token_hop *
          (4 * 0.875 / m.inter_node_bytes_per_s + m.experts_per_token / m.intra_node_bytes_per_s);
  EXPECT_DOUBLE_EQ(layer_step_seconds(m, 200, 3200, 32, 8, 8, true), expected);
}

TEST(LocalityTest, RefusesNonPositiveFigures) {
  TrafficModel m;
  EXPECT_TRUE(check_traffic_model(m).ok());
  m.compute_s_per_token_expert = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(check_traffic_model(m).ok());
}

TEST(LoadsJsonTest, ParsesRowsAndRefusesBadOnes) {
  auto loads = parse_loads_json(R"({"load": [[1, 2.5], [0, 3]]})");
  ASSERT_TRUE(loads.ok()) << loads.status().to_string();
  EXPECT_EQ(*loads, (Loads{{1, 2.5}, {0, 3}}));
  auto message = [](const char* text) { return parse_loads_json(text).status().message(); };
  EXPECT_NE(message(R"({"load": [[1, 2], [1]]})").find("ragged"), std::string::npos);
  EXPECT_NE(message(R"({"load": [[1, -1]]})").find("non-negative"), std::string::npos);
  EXPECT_NE(message(R"({"load": [[1, true]]})").find("not a number"), std::string::npos);
  EXPECT_NE(message(R"({"load": [1, 2]})").find("load[0]"), std::string::npos);
  EXPECT_NE(message(R"({"load": []})").find("non-empty"), std::string::npos);
  EXPECT_NE(message(R"([1])").find("object"), std::string::npos);
  EXPECT_NE(message("{").find("not valid JSON"), std::string::npos);
}

TEST(LoadsJsonTest, PlanJsonHasTheDocumentedFields) {
  PlannerResult r;
  r.plan = plan_from_phy2log({{0, 1, 0}}, 2);
  r.used = Policy::kRefined;
  const nlohmann::json doc = plan_to_json(r, 0.5, 0.75, 0.01);
  EXPECT_EQ(doc["phy2log"], nlohmann::json::parse("[[0, 1, 0]]"));
  EXPECT_EQ(doc["logcnt"], nlohmann::json::parse("[[2, 1]]"));
  EXPECT_EQ(doc["balancedness"], 0.5);
  EXPECT_EQ(doc["bound"], 0.75);
  EXPECT_EQ(doc["policy"], "refined");
  EXPECT_EQ(doc["time_s"], 0.01);
  EXPECT_EQ(r.plan.log2phy[0], (std::vector<std::vector<int32_t>>{{0, 2}, {1, -1}}));
}

}  // namespace
}  // namespace moeserve::placement
