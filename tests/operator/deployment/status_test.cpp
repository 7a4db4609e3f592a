#include "operator/deployment/status.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "operator/deployment/names.h"
#include "operator/deployment/rfc3339.h"
#include "tests/operator/deployment/fixtures.h"

namespace moeserve::deployment {
namespace {

using nlohmann::json;
using std::chrono::sys_seconds;
using testing::v3_spec;

const sys_seconds kCreated = *parse_rfc3339("2026-05-01T12:00:00Z");
const sys_seconds kNow = kCreated + std::chrono::minutes(10);

ModelDeployment deployment(json spec, int64_t generation = 3) {
  return testing::make_deployment(std::move(spec), generation);
}

// The status one reconcile writes: from its plan for a valid spec.
ModelDeploymentStatus status_of(const ModelDeployment& md, const Observed& observed,
                                sys_seconds now) {
  if (!md.valid()) return invalid_spec_status(md, observed, now);
  return compute_status(md, observed, plan(md, observed), now);
}

// Group i on the desired template of `md` (or on "old"), "r" ready / "u" starting.
ObservedGroup group(const ModelDeployment& md, int32_t index, bool current, char state) {
  ObservedGroup g;
  g.index = index;
  g.template_hash = current ? plan(md, Observed{}).template_hash : "old";
  g.desired_pods = 2;
  g.ready_pods = state == 'r' ? 2 : 0;
  g.generation = g.observed_generation = 1;
  g.created_at = kCreated;
  return g;
}

const Condition& condition(const ModelDeploymentStatus& s, const std::string& type) {
  for (const Condition& c : s.conditions) {
    if (c.type == type) return c;
  }
  static const Condition kMissing{"missing"};
  ADD_FAILURE() << "no condition " << type;
  return kMissing;
}

// "True/Reason" of a condition, for compact tables.
std::string brief(const ModelDeploymentStatus& s, const std::string& type) {
  const Condition& c = condition(s, type);
  return c.status + "/" + c.reason;
}

TEST(ComputeStatus, ConditionTable) {
  const ModelDeployment md = deployment(v3_spec());
  struct Case {
    std::string name;
    std::vector<ObservedGroup> groups;
    std::string ready, progressing, degraded;
    int32_t replicas, ready_replicas, updated;
  };
  const std::vector<Case> cases = {
      {"fresh", {}, "False/GroupsNotReady", "True/ScalingUp", "False/Healthy", 0, 0, 0},
      {"groups starting",
       {group(md, 0, true, 'u'), group(md, 1, true, 'u')},
       "False/GroupsNotReady",
       "True/GroupsStarting",
       "False/Healthy",
       2,
       0,
       0},
      {"one of two ready",
       {group(md, 0, true, 'r'), group(md, 1, true, 'u')},
       "False/GroupsNotReady",
       "True/GroupsStarting",
       "False/Healthy",
       2,
       1,
       1},
      {"all ready",
       {group(md, 0, true, 'r'), group(md, 1, true, 'r')},
       "True/AllGroupsReady",
       "False/Complete",
       "False/Healthy",
       2,
       2,
       2},
      {"rolling out, old groups still serving",
       {group(md, 0, false, 'r'), group(md, 1, false, 'r'), group(md, 2, true, 'u')},
       "True/AllGroupsReady",
       "True/RollingOut",
       "False/Healthy",
       3,
       2,
       0},
      {"scaling down",
       {group(md, 0, true, 'r'), group(md, 1, true, 'r'), group(md, 2, true, 'r')},
       "True/AllGroupsReady",
       "True/ScalingDown",
       "False/Healthy",
       3,
       3,
       3},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Observed observed;
    observed.groups = c.groups;
    const ModelDeploymentStatus s = status_of(md, observed, kNow);
    EXPECT_EQ(brief(s, "Ready"), c.ready);
    EXPECT_EQ(brief(s, "Progressing"), c.progressing);
    EXPECT_EQ(brief(s, "Degraded"), c.degraded);
    EXPECT_EQ(s.replicas, c.replicas);
    EXPECT_EQ(s.ready_replicas, c.ready_replicas);
    EXPECT_EQ(s.updated_replicas, c.updated);
    EXPECT_EQ(s.desired_replicas, 2);
    EXPECT_EQ(s.observed_generation, 3);
    for (const Condition& cond : s.conditions) EXPECT_EQ(cond.observed_generation, 3);
  }
}

TEST(ComputeStatus, MessagesCountGroups) {
  const ModelDeployment md = deployment(v3_spec());
  Observed observed;
  observed.groups = {group(md, 0, true, 'r'), group(md, 1, true, 'u')};
  const ModelDeploymentStatus s = status_of(md, observed, kNow);
  EXPECT_EQ(condition(s, "Ready").message, "1/2 groups ready");
  EXPECT_EQ(condition(s, "Progressing").message, "1/2 groups ready");
}

TEST(ComputeStatus, GroupPastItsDeadlineIsDegraded) {
  const ModelDeployment md = deployment(v3_spec());
  Observed observed;
  observed.groups = {group(md, 0, true, 'r'), group(md, 1, true, 'u')};
  const sys_seconds late = kCreated + std::chrono::seconds(1800 + 2 * 3600);
  const ModelDeploymentStatus s = status_of(md, observed, late);
  EXPECT_EQ(brief(s, "Degraded"), "True/GroupNotReady");
  EXPECT_EQ(condition(s, "Degraded").message,
            "group ds-g1 not ready for 2h30m (0/2 pods ready); progressDeadlineSeconds is 1800");
  // Exactly at the deadline is still within it.
  EXPECT_EQ(brief(status_of(md, observed, kCreated + std::chrono::seconds(1800)), "Degraded"),
            "False/Healthy");
}

TEST(ComputeStatus, ScaledToZero) {
  json spec = v3_spec();
  spec["replicas"] = 0;
  const ModelDeploymentStatus s = status_of(deployment(spec), Observed{}, kNow);
  EXPECT_EQ(brief(s, "Ready"), "False/ScaledToZero");
  EXPECT_EQ(brief(s, "Progressing"), "False/Complete");
}

TEST(ComputeStatus, AutoscalerDecidesSaysWhenSpecReplicasIsIgnored) {
  json spec = v3_spec();
  const ModelDeploymentStatus manual = status_of(deployment(spec), Observed{}, kNow);
  for (const Condition& c : manual.conditions) EXPECT_NE(c.type, "AutoscalerDecides");

  spec["autoscaling"] = {{"enabled", true},
                         {"minReplicas", 1},
                         {"maxReplicas", 4},
                         {"targetTokensPerSecondPerGroup", 100}};
  spec["replicas"] = 2;
  EXPECT_EQ(brief(status_of(deployment(spec), Observed{}, kNow), "AutoscalerDecides"),
            "True/Autoscaling");
  Observed measured;
  measured.recommended_replicas = 3;  // the autoscaler wants 3; `kubectl scale` wrote 2
  const ModelDeploymentStatus ignored = status_of(deployment(spec), measured, kNow);
  EXPECT_EQ(ignored.desired_replicas, 3);
  EXPECT_EQ(brief(ignored, "AutoscalerDecides"), "True/SpecReplicasIgnored");
  EXPECT_EQ(condition(ignored, "AutoscalerDecides").message,
            "spec.replicas is 2 but spec.autoscaling is enabled: the autoscaler decides the "
            "groups (minReplicas..maxReplicas = 1..4); spec.replicas only seeds the count until "
            "the first measurement");
  spec["replicas"] = 9;  // beyond the bounds, before any measurement
  EXPECT_EQ(brief(status_of(deployment(spec), Observed{}, kNow), "AutoscalerDecides"),
            "True/SpecReplicasIgnored");
}

TEST(ComputeStatus, InvalidSpecNamesTheFieldAndKeepsWhatItCannotCompute) {
  json spec = v3_spec();
  spec["parallelism"]["ranksPerPod"] = 3;
  ModelDeployment md = deployment(spec, 4);
  ASSERT_FALSE(md.valid());
  md.status.desired_replicas = 2;
  md.status.updated_replicas = 2;
  md.status.placement = PlacementStatus{7, 0.9};
  Observed observed;
  observed.groups = {group(md, 0, false, 'r')};
  const ModelDeploymentStatus s = status_of(md, observed, kNow);
  EXPECT_EQ(brief(s, "Ready"), "False/InvalidSpec");
  EXPECT_EQ(brief(s, "Progressing"), "False/InvalidSpec");
  EXPECT_EQ(brief(s, "Degraded"), "True/InvalidSpec");
  EXPECT_NE(
      condition(s, "Ready")
          .message.find(
              "spec.parallelism.expertParallel: must be divisible by ranksPerPod (16 % 3 != 0)"),
      std::string::npos)
      << condition(s, "Ready").message;
  EXPECT_EQ(s.observed_generation, 4);
  EXPECT_EQ(s.replicas, 1);
  EXPECT_EQ(s.ready_replicas, 1);
  EXPECT_EQ(s.desired_replicas, 2);
  EXPECT_EQ(s.updated_replicas, 2);
  EXPECT_EQ(s.placement, (PlacementStatus{7, 0.9}));
  EXPECT_FALSE(s.cost_per_million_tokens.has_value());
}

TEST(ComputeStatus, LastTransitionTimeMovesOnlyWithTheStatus) {
  ModelDeployment md = deployment(v3_spec());
  Observed starting;
  starting.groups = {group(md, 0, true, 'u'), group(md, 1, true, 'u')};
  md.status = status_of(md, starting, kNow);
  const std::string t0 = format_rfc3339(kNow);
  EXPECT_EQ(condition(md.status, "Ready").last_transition_time, t0);

  // Later, one group ready: Ready still False (reason and message change), time stays.
  const sys_seconds t1 = kNow + std::chrono::minutes(5);
  Observed half;
  half.groups = {group(md, 0, true, 'r'), group(md, 1, true, 'u')};
  md.status = status_of(md, half, t1);
  EXPECT_EQ(condition(md.status, "Ready").last_transition_time, t0);
  EXPECT_EQ(condition(md.status, "Progressing").last_transition_time, t0);

  // Both ready: Ready flips to True and Progressing to False, at t2; Degraded stays.
  const sys_seconds t2 = kNow + std::chrono::minutes(9);
  Observed all;
  all.groups = {group(md, 0, true, 'r'), group(md, 1, true, 'r')};
  md.status = status_of(md, all, t2);
  EXPECT_EQ(condition(md.status, "Ready").last_transition_time, format_rfc3339(t2));
  EXPECT_EQ(condition(md.status, "Progressing").last_transition_time, format_rfc3339(t2));
  EXPECT_EQ(condition(md.status, "Degraded").last_transition_time, t0);

  // Nothing changes: the status is equal, so no write.
  const ModelDeploymentStatus again = status_of(md, all, t2 + std::chrono::hours(1));
  EXPECT_FALSE(status_changed(md.status, again));
}

TEST(ComputeStatus, CostPerMillionTokens) {
  const ModelDeployment md = deployment(v3_spec());
  Observed observed;
  observed.groups = {group(md, 0, true, 'r'), group(md, 1, true, 'r')};
  observed.tokens_per_second = 20000;
  // 2 groups x 16 GPUs x $2/h = $64/h; 64 / 3600 / 20000 x 1e6 = 0.8889 $/Mtok.
  const ModelDeploymentStatus s = status_of(md, observed, kNow);
  ASSERT_TRUE(s.cost_per_million_tokens.has_value());
  EXPECT_DOUBLE_EQ(*s.cost_per_million_tokens, 0.889);
  EXPECT_DOUBLE_EQ(*s.tokens_per_second, 20000);

  observed.tokens_per_second = 0;
  EXPECT_FALSE(status_of(md, observed, kNow).cost_per_million_tokens.has_value());
  observed.tokens_per_second.reset();
  EXPECT_FALSE(status_of(md, observed, kNow).cost_per_million_tokens.has_value());
  EXPECT_FALSE(status_of(md, observed, kNow).tokens_per_second.has_value());

  json free = v3_spec();
  free["cost"]["gpuHourUsd"] = 0;
  observed.tokens_per_second = 20000;
  EXPECT_FALSE(status_of(deployment(free), observed, kNow).cost_per_million_tokens.has_value());

  json cpu = json::parse(R"({"model": {"source": "/tiny"}, "parallelism": {"expertParallel": 2},
                             "worker": {"image": "w"}, "cost": {"podHourUsd": 0.05}})");
  observed.groups.clear();
  observed.groups = {group(deployment(cpu), 0, true, 'r')};
  observed.tokens_per_second = 50;
  // 1 group x 2 pods x $0.05/h = $0.10/h over 50 tokens/s = 0.556 $/Mtok.
  EXPECT_DOUBLE_EQ(*status_of(deployment(cpu), observed, kNow).cost_per_million_tokens, 0.556);
}

TEST(ComputeStatus, SelectorAndPlacement) {
  const ModelDeployment md = deployment(v3_spec());
  Observed observed;
  ModelDeploymentStatus s = status_of(md, observed, kNow);
  EXPECT_EQ(s.selector,
            "app.kubernetes.io/name=moeserve-worker,apps.kubernetes.io/pod-index=0,"
            "moeserve.io/deployment=ds");
  ASSERT_TRUE(s.placement.has_value());
  EXPECT_EQ(s.placement->version, 1);
  // Before loads are measured: the default map's balancedness under uniform load.
  EXPECT_DOUBLE_EQ(s.placement->balancedness,
                   round_significant(uniform_balancedness(default_phy2log(256, 58, 32), 16), 3));
  // With measured loads: the plan's balancedness.
  Plan measured = plan(md, observed);
  measured.placement.balancedness = 0.91234;
  s = compute_status(md, observed, measured, kNow);
  EXPECT_DOUBLE_EQ(s.placement->balancedness, 0.912);
}

TEST(StatusChanged, SemanticEquality) {
  ModelDeploymentStatus a;
  a.conditions = {{"Ready", "True", "AllGroupsReady", "2/2", 1, "t"},
                  {"Degraded", "False", "Healthy", "", 1, "t"}};
  ModelDeploymentStatus b = a;
  std::swap(b.conditions[0], b.conditions[1]);
  EXPECT_FALSE(status_changed(a, b));
  b.conditions[0].message = "x";
  EXPECT_TRUE(status_changed(a, b));
  ModelDeploymentStatus c = a;
  c.tokens_per_second = 1;
  EXPECT_TRUE(status_changed(a, c));
  ModelDeploymentStatus d = a;
  d.observed_generation = 2;
  EXPECT_TRUE(status_changed(a, d));
}

TEST(RoundSignificant, Table) {
  EXPECT_DOUBLE_EQ(round_significant(0.88888, 3), 0.889);
  EXPECT_DOUBLE_EQ(round_significant(123456, 3), 123000);
  EXPECT_DOUBLE_EQ(round_significant(-0.0012345, 3), -0.00123);
  EXPECT_DOUBLE_EQ(round_significant(0, 3), 0);
}

}  // namespace
}  // namespace moeserve::deployment
