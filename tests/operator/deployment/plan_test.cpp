#include "operator/deployment/plan.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "operator/deployment/names.h"
#include "operator/deployment/observe.h"
#include "operator/deployment/pod_template.h"
#include "tests/operator/deployment/fixtures.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;
using testing::v3_spec;

// Group i on template `hash`: "r" ready, "u" unready (pods starting), "t" terminating.
ObservedGroup group(int32_t index, const std::string& hash, char state) {
  ObservedGroup g;
  g.index = index;
  g.template_hash = hash;
  g.desired_pods = 2;
  g.ready_pods = state == 'r' ? 2 : 1;
  g.generation = 1;
  g.observed_generation = 1;
  g.terminating = state == 't';
  return g;
}

TEST(DecideGroups, Table) {
  struct Case {
    std::string name;
    int32_t desired;
    std::vector<ObservedGroup> observed;
    GroupDecision expected;  // current, old, create, remove
  };
  const std::string A = "new", B = "old";
  const std::vector<Case> cases = {
      {"fresh create makes every group at once", 3, {}, {{}, {}, {0, 1, 2}, {}}},
      {"steady state does nothing", 2, {group(0, A, 'r'), group(1, A, 'r')}, {{0, 1}, {}, {}, {}}},
      {"steady while pods start", 2, {group(0, A, 'r'), group(1, A, 'u')}, {{0, 1}, {}, {}, {}}},
      {"scale up adds after the highest index",
       4,
       {group(0, A, 'r'), group(3, A, 'r')},
       {{0, 3}, {}, {4, 5}, {}}},
      {"scale down removes the newest first",
       1,
       {group(0, A, 'r'), group(1, A, 'r'), group(2, A, 'r')},
       {{0}, {}, {}, {1, 2}}},
      {"scale to zero removes all", 0, {group(0, A, 'r'), group(1, B, 'r')}, {{}, {}, {}, {0, 1}}},
      {"template change surges one new group",
       2,
       {group(0, B, 'r'), group(1, B, 'r')},
       {{}, {0, 1}, {2}, {}}},
      {"new group not ready yet: nothing removed or added",
       2,
       {group(0, B, 'r'), group(1, B, 'r'), group(2, A, 'u')},
       {{2}, {0, 1}, {}, {}}},
      {"new group ready: newest old group goes, next new one starts",
       2,
       {group(0, B, 'r'), group(1, B, 'r'), group(2, A, 'r')},
       {{2}, {0}, {3}, {1}}},
      {"last old group goes once both new groups are ready",
       2,
       {group(0, B, 'r'), group(2, A, 'r'), group(3, A, 'r')},
       {{2, 3}, {}, {}, {0}}},
      {"last old group stays while the second new group starts",
       2,
       {group(0, B, 'r'), group(2, A, 'r'), group(3, A, 'u')},
       {{2, 3}, {0}, {}, {}}},
      {"unready old groups go at once and free the surge",
       2,
       {group(0, B, 'r'), group(1, B, 'u')},
       {{}, {0}, {2, 3}, {1}}},
      {"mixed: rollout and scale down together",
       1,
       {group(0, B, 'r'), group(1, B, 'r'), group(2, B, 'r')},
       {{}, {0}, {3}, {1, 2}}},
      {"mixed: rollout and scale up together, within the surge",
       3,
       {group(0, B, 'r'), group(1, A, 'r')},
       {{1}, {0}, {2, 3}, {}}},
      {"mixed: second template change mid-rollout",
       2,
       {group(0, B, 'r'), group(1, "older", 'r'), group(2, B, 'u')},
       {{}, {0, 1}, {3}, {2}}},
      {"terminating groups are ignored but their index is not reused",
       1,
       {group(0, A, 't'), group(1, B, 't')},
       {{}, {}, {2}, {}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const GroupDecision d = decide_groups(c.desired, A, c.observed);
    EXPECT_EQ(d.current, c.expected.current);
    EXPECT_EQ(d.old, c.expected.old);
    EXPECT_EQ(d.create, c.expected.create);
    EXPECT_EQ(d.remove, c.expected.remove);
  }
}

// Runs the rollout to completion, making every created group ready one step later,
// and checks the invariants at every step.
TEST(DecideGroups, RolloutNeverDropsBelowDesiredReadyNorSurgesMoreThanOneGroup) {
  for (int32_t desired = 1; desired <= 5; ++desired) {
    SCOPED_TRACE(desired);
    std::vector<ObservedGroup> groups;
    for (int32_t i = 0; i < desired; ++i) groups.push_back(group(i, "old", 'r'));
    int steps = 0;
    for (;; ++steps) {
      ASSERT_LT(steps, 4 * desired + 4);
      const GroupDecision d = decide_groups(desired, "new", groups);
      if (d.create.empty() && d.remove.empty() && d.old.empty()) break;
      std::vector<ObservedGroup> next;
      for (ObservedGroup g : groups) {
        if (std::find(d.remove.begin(), d.remove.end(), g.index) != d.remove.end()) continue;
        g.ready_pods = g.desired_pods;  // whatever was starting is ready by the next step
        next.push_back(g);
      }
      for (int32_t i : d.create) next.push_back(group(i, "new", 'u'));
      int32_t ready = 0;
      for (const ObservedGroup& g : next) ready += g.ready() ? 1 : 0;
      EXPECT_GE(ready, desired) << "step " << steps;
      EXPECT_LE(static_cast<int32_t>(next.size()), desired + 1) << "step " << steps;
      groups = next;
    }
    // Each new group: created in one step, ready by the next, when an old one goes.
    EXPECT_EQ(steps, 2 * desired + 1);
    for (const ObservedGroup& g : groups) EXPECT_EQ(g.template_hash, "new");
    EXPECT_EQ(static_cast<int32_t>(groups.size()), desired);
  }
}

TEST(DesiredReplicas, AutoscalingClampsTheRecommendation) {
  ModelDeploymentSpec s;
  s.replicas = 3;
  EXPECT_EQ(desired_replicas(s, 7), 3);  // autoscaling off: spec.replicas
  s.autoscaling.enabled = true;
  s.autoscaling.min_replicas = 2;
  s.autoscaling.max_replicas = 5;
  EXPECT_EQ(desired_replicas(s, std::nullopt), 3);
  EXPECT_EQ(desired_replicas(s, 4), 4);
  EXPECT_EQ(desired_replicas(s, 9), 5);
  EXPECT_EQ(desired_replicas(s, 0), 2);
  s.replicas = 0;
  EXPECT_EQ(desired_replicas(s, std::nullopt), 2);
}

TEST(DesiredReplicas, ScaleToZeroLetsTheRecommendationGoBelowMinReplicas) {
  ModelDeploymentSpec s;
  s.replicas = 1;
  s.autoscaling.enabled = true;
  s.autoscaling.min_replicas = 2;
  s.autoscaling.max_replicas = 5;
  s.autoscaling.scale_to_zero_after_idle_seconds = 300;
  EXPECT_EQ(desired_replicas(s, 0), 0);
  EXPECT_EQ(desired_replicas(s, 2), 2);
  EXPECT_EQ(desired_replicas(s, 9), 5);
}

ModelDeployment deployment(json spec) { return testing::valid_deployment(std::move(spec)); }

TEST(Layout, RanksPodsAndGpus) {
  const ModelDeployment md = deployment(v3_spec());
  const GroupLayout l = layout_of(md.spec);
  EXPECT_EQ(l, (GroupLayout{16, 8, 2, 8, 16}));
  EXPECT_DOUBLE_EQ(hourly_cost_usd(md.spec, l, 3), 3 * 16 * 2.0);
}

TEST(Plan, FreshDeploymentCreatesEveryGroupAndTheDefaultPlacement) {
  const ModelDeployment md = deployment(v3_spec());
  const Plan p = plan(md, Observed{});
  EXPECT_EQ(p.desired_replicas, 2);
  EXPECT_EQ(p.layout.pods_per_group, 2);
  EXPECT_EQ(p.template_hash, template_hash(md, p.layout));
  EXPECT_EQ(p.groups.create, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(p.rendered_groups(), (std::vector<int32_t>{0, 1}));
  ASSERT_TRUE(p.placement.map.has_value());
  EXPECT_EQ(p.placement.map->version, 1);
  EXPECT_EQ(p.placement.map->layers, default_phy2log(256, 58, 32));
}

TEST(Plan, TemplateHashIgnoresScalingAndCostButNotTheWorker) {
  const ModelDeployment base = deployment(v3_spec());
  const std::string hash = plan(base, Observed{}).template_hash;
  json spec = v3_spec();
  spec["replicas"] = 5;
  spec["cost"]["gpuHourUsd"] = 9.0;
  spec["autoscaling"] = {{"enabled", true}, {"maxReplicas", 9}, {"ttftP95SloSeconds", 1}};
  EXPECT_EQ(plan(deployment(spec), Observed{}).template_hash, hash);
  spec["worker"]["image"] = "w:2";
  EXPECT_NE(plan(deployment(spec), Observed{}).template_hash, hash);
}

TEST(Plan, RenderedGroupsLeaveOldGroupsAlone) {
  const ModelDeployment md = deployment(v3_spec());
  Observed observed;
  observed.groups = {group(0, "old", 'r'), group(1, "old", 'r')};
  const Plan p = plan(md, observed);
  EXPECT_EQ(p.groups.old, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(p.rendered_groups(), (std::vector<int32_t>{2}));
}

TEST(PlanPlacement, VersionMovesOnlyWhenTheMapChanges) {
  const ModelDeployment md = deployment(v3_spec());
  const auto default_map = default_phy2log(256, 58, 32);
  Observed observed;
  observed.current_placement = Placement{4, default_map};
  EXPECT_EQ(plan_placement(md.spec, observed).map, (Placement{4, default_map}));

  observed.current_placement = Placement{5, default_phy2log(256, 58, 32)};
  EXPECT_EQ(plan_placement(md.spec, observed).map->version, 5);
  // A current map that no longer fits: back to the default, version bumped.
  observed.current_placement = Placement{5, default_phy2log(64, 58, 0)};
  EXPECT_EQ(plan_placement(md.spec, observed).map, (Placement{6, default_map}));
}

// Loads on 2 MoE layers of 8 experts, expert 0 of every layer hot: 8 + 4 slots on 4 ranks.
json small_spec() {
  return json::parse(R"({
    "model": {"source": "/m", "routedExperts": 8, "moeLayers": 2},
    "parallelism": {"expertParallel": 4, "ranksPerPod": 1, "redundantExperts": 4},
    "worker": {"image": "w:1"}
  })");
}

std::vector<std::vector<double>> skewed_load() {
  std::vector<double> row(8, 100.0);
  row[0] = 5000;
  return {row, row};
}

TEST(PlanPlacement, SkewedLoadsProposeABetterMapAndVersionIt) {
  const ModelDeployment md = deployment(small_spec());
  Observed observed;
  observed.current_placement = Placement{3, default_phy2log(8, 2, 4)};
  observed.expert_load = skewed_load();
  const PlacementPlan p = plan_placement(md.spec, observed);
  ASSERT_TRUE(p.error.ok()) << p.error.to_string();
  EXPECT_TRUE(p.proposed);
  ASSERT_TRUE(p.map && p.current_balancedness && p.balancedness);
  EXPECT_EQ(p.map->version, 4);
  EXPECT_NE(p.map->layers, observed.current_placement->layers);
  EXPECT_TRUE(placement_fits(p.map->layers, 8, 2, 4));
  EXPECT_GT(*p.balancedness, *p.current_balancedness);
  // The same plan() gives the reconcile the same decision.
  EXPECT_EQ(plan(md, observed).placement.map, p.map);
}

TEST(PlanPlacement, LoadsOfAnotherShapeOrTooFewTokensKeepTheMap) {
  const ModelDeployment md = deployment(small_spec());
  Observed observed;
  observed.current_placement = Placement{3, default_phy2log(8, 2, 4)};
  observed.expert_load = {skewed_load()[0]};  // one layer: measured before a spec change
  PlacementPlan p = plan_placement(md.spec, observed);
  EXPECT_FALSE(p.proposed);
  EXPECT_FALSE(p.balancedness.has_value());
  EXPECT_EQ(p.map, observed.current_placement);

  observed.expert_load = {std::vector<double>(8, 1.0), std::vector<double>(8, 1.0)};
  p = plan_placement(md.spec, observed);  // 16 tokens: noise, below min_tokens
  EXPECT_FALSE(p.proposed);
  EXPECT_EQ(p.map, observed.current_placement);
}

TEST(PlanPlacement, ANewMapDoesNotChangeThePodTemplate) {
  const ModelDeployment md = deployment(small_spec());
  Observed observed;
  observed.current_placement = Placement{3, default_phy2log(8, 2, 4)};
  const Plan unchanged = plan(md, observed);
  observed.expert_load = skewed_load();
  const Plan proposed = plan(md, observed);
  ASSERT_TRUE(proposed.placement.proposed);
  EXPECT_EQ(proposed.template_hash, unchanged.template_hash)
      << "the map reaches pods through the ConfigMap volume, not the template";
}

TEST(PlanPlacement, OneSwitchInFlightAtATime) {
  const ModelDeployment md = deployment(small_spec());
  Observed observed;
  observed.current_placement = Placement{3, default_phy2log(8, 2, 4)};
  observed.expert_load = skewed_load();
  observed.group_placements[0] = {3, 0, 1.5, 0, ""};
  observed.group_placements[1] = {2, 3, 0, 0, ""};  // still preparing version 3
  PlacementPlan p = plan_placement(md.spec, observed);
  EXPECT_TRUE(p.switch_in_flight);
  EXPECT_FALSE(p.proposed);
  EXPECT_EQ(p.map, observed.current_placement);
  EXPECT_EQ(p.groups_reporting, 2);
  EXPECT_EQ(p.groups_switched, 1);

  observed.group_placements[1] = {2, 0, 0, 3, "rank 1: cannot read"};  // aborted version 3
  p = plan_placement(md.spec, observed);
  EXPECT_FALSE(p.switch_in_flight);
  EXPECT_EQ(p.switch_failure, "group 1: rank 1: cannot read");
  EXPECT_FALSE(p.proposed) << "a failed switch holds the map until it is looked at";

  observed.group_placements[1] = {3, 0, 2.5, 0, ""};
  p = plan_placement(md.spec, observed, {}, /*switch_open=*/true);
  EXPECT_FALSE(p.proposed) << "the end of the last switch is recorded first";
  EXPECT_EQ(p.switch_seconds, 2.5);
  p = plan_placement(md.spec, observed);
  EXPECT_TRUE(p.proposed);
}

TEST(PlanPlacement, MeasuredBalancednessIsWhatRanksCarried) {
  EXPECT_EQ(measured_balancedness({}), std::nullopt);
  EXPECT_EQ(measured_balancedness({{0, 0}}), std::nullopt);
  EXPECT_DOUBLE_EQ(*measured_balancedness({{1, 3}, {2, 2}, {0, 0}}), (2.0 / 3 + 1) / 2);
}

TEST(PlanPlacement, AbsentWithoutTheModelShape) {
  json spec = v3_spec();
  spec["model"].erase("routedExperts");
  spec["model"].erase("moeLayers");
  spec["parallelism"]["redundantExperts"] = 0;
  EXPECT_FALSE(plan_placement(deployment(spec).spec, Observed{}).map.has_value());
}

}  // namespace
}  // namespace moeserve::deployment
