// Router: least outstanding tokens, bounded-load prefix affinity, down and back up.
#include "operator/gateway/router.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "common/clock.h"

namespace moeserve::gateway {
namespace {

using namespace std::chrono_literals;

const std::vector<std::string> kGroups = {"d/g0", "d/g1", "d/g2"};

std::string text_of(char fill, size_t bytes) { return std::string(bytes, fill); }

TEST(PrefixBlockHashes, EqualPrefixesGiveEqualHashesAtBlockBoundaries) {
  const std::string system = text_of('s', 2 * kPrefixBlockBytes);
  const auto a = prefix_block_hashes(system + "question one", 8);
  const auto b = prefix_block_hashes(
      system + "another question entirely" + text_of('x', kPrefixBlockBytes), 8);
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(a[0], b[0]);
  EXPECT_EQ(a[1], b[1]);
  EXPECT_TRUE(prefix_block_hashes(text_of('s', kPrefixBlockBytes - 1), 8).empty());
  EXPECT_EQ(prefix_block_hashes(text_of('s', 20 * kPrefixBlockBytes), 8).size(), 8u);
  EXPECT_NE(prefix_block_hashes(text_of('t', kPrefixBlockBytes), 8)[0], a[0]);
}

TEST(Router, LeastOutstandingTokensPicksTheLightestGroup) {
  FakeClock clock;
  Router router({.policy = RoutingPolicy::kLeastLoaded}, &clock);
  router.begin("d/g0", 900);
  router.begin("d/g1", 300);
  const uint64_t busy = router.begin("d/g2", 500);
  auto d = router.pick(kGroups, {});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->group, "d/g1");
  EXPECT_EQ(d->reason, RouteReason::kLeastLoaded);
  // g2 streams 400 of its 500 tokens: now it is the lightest.
  router.progress(busy, 400);
  EXPECT_EQ(router.outstanding_tokens("d/g2"), 100);
  EXPECT_EQ(router.pick(kGroups, {})->group, "d/g2");
  router.end(busy);
  EXPECT_EQ(router.outstanding_tokens("d/g2"), 0);
}

TEST(Router, ProgressNeverTakesMoreThanARequestAdded) {
  Router router({});
  const uint64_t r = router.begin("d/g0", 10);
  router.progress(r, 25);
  EXPECT_EQ(router.outstanding_tokens("d/g0"), 0);
  router.end(r);
  EXPECT_EQ(router.outstanding_tokens("d/g0"), 0);
}

TEST(Router, TiesRotateInIdOrderStartingWithTheSmallest) {
  Router router({.policy = RoutingPolicy::kLeastLoaded});
  std::vector<std::string> seen;
  for (int i = 0; i < 4; ++i) seen.push_back(router.pick({"d/g2", "d/g1", "d/g0"}, {})->group);
  EXPECT_EQ(seen, (std::vector<std::string>{"d/g0", "d/g1", "d/g2", "d/g0"}));
  // Only the lightest groups take part.
  router.begin("d/g1", 10);
  std::set<std::string> lightest;
  for (int i = 0; i < 2; ++i) lightest.insert(router.pick(kGroups, {})->group);
  EXPECT_EQ(lightest, (std::set<std::string>{"d/g0", "d/g2"}));
}

TEST(Router, APrefixReturnsToTheGroupThatServedItLast) {
  FakeClock clock;
  Router router({}, &clock);
  const auto prefix = prefix_block_hashes(text_of('a', 3 * kPrefixBlockBytes), 8);
  auto first = router.pick(kGroups, prefix);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->reason, RouteReason::kAffinity);
  for (int i = 0; i < 5; ++i) {
    auto again = router.pick(kGroups, prefix);
    EXPECT_EQ(again->group, first->group);
    EXPECT_EQ(again->reason, RouteReason::kAffinity);
  }
  // A longer prompt sharing the first two blocks follows the deepest known key.
  auto longer = prefix_block_hashes(text_of('a', 2 * kPrefixBlockBytes) + text_of('b', 512), 8);
  EXPECT_EQ(router.pick(kGroups, longer)->group, first->group);
}

TEST(Router, DifferentPrefixesSpreadOverGroups) {
  Router router({});
  std::map<std::string, int> per_group;
  for (char c = 'a'; c <= 'z'; ++c) {
    per_group[router.pick(kGroups, prefix_block_hashes(text_of(c, kPrefixBlockBytes), 8))->group]++;
  }
  EXPECT_EQ(per_group.size(), 3u) << "rendezvous hashing uses every group";
}

TEST(Router, AffinityGivesWayWhenItsGroupIsOverTheBound) {
  Router router({.load_factor = 1.25, .slack_tokens = 100});
  const auto prefix = prefix_block_hashes(text_of('p', kPrefixBlockBytes), 8);
  const std::string home = router.pick(kGroups, prefix)->group;
  // Within the bound: 1.25 * 0 + 100 >= 100.
  const uint64_t r1 = router.begin(home, 100);
  EXPECT_EQ(router.pick(kGroups, prefix)->group, home);
  // Over it: 101 > 100 while another group is idle.
  const uint64_t r2 = router.begin(home, 1);
  auto spilled = router.pick(kGroups, prefix);
  EXPECT_NE(spilled->group, home);
  EXPECT_EQ(spilled->reason, RouteReason::kLeastLoaded);
  router.end(r1);
  router.end(r2);
  // The spill-over group served it last, so it is now the prefix's home.
  EXPECT_EQ(router.pick(kGroups, prefix)->group, spilled->group);
}

TEST(Router, BoundScalesWithTheLeastLoad) {
  const std::vector<GroupLoad> loads = {{"d/g0", 1200}, {"d/g1", 1000}};
  // 1200 <= 1.25 * 1000 + 0: affinity holds.
  EXPECT_EQ(choose_group(loads, "d/g0", std::nullopt, 1.25, 0).group, "d/g0");
  // 1200 > 1.1 * 1000: least loaded.
  auto d = choose_group(loads, "d/g0", std::nullopt, 1.1, 0);
  EXPECT_EQ(d.group, "d/g1");
  EXPECT_EQ(d.reason, RouteReason::kLeastLoaded);
}

TEST(Router, ShortPromptsHaveNoAffinity) {
  Router router({});
  auto d = router.pick(kGroups, prefix_block_hashes("short", 8));
  EXPECT_EQ(d->reason, RouteReason::kLeastLoaded);
}

TEST(Router, RoundRobinCyclesInIdOrder) {
  Router router({.policy = RoutingPolicy::kRoundRobin});
  const auto prefix = prefix_block_hashes(text_of('a', kPrefixBlockBytes), 8);
  std::vector<std::string> seen;
  for (int i = 0; i < 4; ++i) seen.push_back(router.pick(kGroups, prefix)->group);
  EXPECT_EQ(seen, (std::vector<std::string>{"d/g0", "d/g1", "d/g2", "d/g0"}));
}

TEST(Router, AFailedGroupIsOutForItsBackoffThenRetried) {
  FakeClock clock;
  Router router(
      {.policy = RoutingPolicy::kLeastLoaded, .backoff_initial = 2000ms, .backoff_max = 5000ms},
      &clock);
  router.failed("d/g0");
  EXPECT_FALSE(router.is_up("d/g0"));
  EXPECT_EQ(router.pick(kGroups, {})->group, "d/g1");
  clock.advance(1999ms);
  EXPECT_FALSE(router.is_up("d/g0"));
  clock.advance(1ms);
  EXPECT_TRUE(router.is_up("d/g0")) << "retried after the backoff";
  EXPECT_EQ(router.pick({"d/g0"}, {})->group, "d/g0");
  // Failing again doubles the backoff (4 s), then caps it (5 s).
  router.failed("d/g0");
  clock.advance(3999ms);
  EXPECT_FALSE(router.is_up("d/g0"));
  clock.advance(1ms);
  EXPECT_TRUE(router.is_up("d/g0"));
  router.failed("d/g0");
  clock.advance(4999ms);
  EXPECT_FALSE(router.is_up("d/g0"));
  clock.advance(1ms);
  EXPECT_TRUE(router.is_up("d/g0"));
  // A success forgets the failures: the next backoff is the initial one again.
  router.succeeded("d/g0");
  router.failed("d/g0");
  clock.advance(2000ms);
  EXPECT_TRUE(router.is_up("d/g0"));
}

TEST(Router, NoEligibleGroupGivesNothing) {
  FakeClock clock;
  Router router({}, &clock);
  EXPECT_FALSE(router.pick({}, {}));
  router.failed("d/g0");
  EXPECT_FALSE(router.pick({"d/g0"}, {}));
  EXPECT_FALSE(router.pick({"d/g1"}, {}, {"d/g1"}));
}

TEST(Router, ARetryAvoidsTheExcludedGroupAndSaysSo) {
  Router router({});
  const auto prefix = prefix_block_hashes(text_of('r', kPrefixBlockBytes), 8);
  const std::string home = router.pick(kGroups, prefix)->group;
  auto retry = router.pick(kGroups, prefix, {home});
  ASSERT_TRUE(retry);
  EXPECT_NE(retry->group, home);
  EXPECT_EQ(retry->reason, RouteReason::kRetry);
}

TEST(Router, RememberedPrefixesAreBoundedOldestFirst) {
  Router router({.slack_tokens = 0, .max_prefix_blocks = 1, .max_remembered_prefixes = 2});
  const std::vector<std::string> two = {"d/g0", "d/g1"};
  const auto a = prefix_block_hashes(text_of('a', kPrefixBlockBytes), 1);
  const std::string hashed = router.pick(two, a)->group;  // rendezvous choice
  const std::string other = hashed == "d/g0" ? "d/g1" : "d/g0";
  // Load on the hashed group makes `a` spill to the other one, which remembers it.
  const uint64_t load = router.begin(hashed, 1000);
  EXPECT_EQ(router.pick(two, a)->group, other);
  router.end(load);
  EXPECT_EQ(router.pick(two, a)->group, other) << "memory wins over hashing";
  // Two newer prefixes evict `a`: hashing decides again.
  router.pick(two, prefix_block_hashes(text_of('b', kPrefixBlockBytes), 1));
  router.pick(two, prefix_block_hashes(text_of('c', kPrefixBlockBytes), 1));
  EXPECT_EQ(router.pick(two, a)->group, hashed);
}

TEST(RoutingPolicy, ParsesTheFlagValuesAndRefusesOthers) {
  EXPECT_EQ(*parse_routing_policy("affinity"), RoutingPolicy::kAffinity);
  EXPECT_EQ(*parse_routing_policy("least-loaded"), RoutingPolicy::kLeastLoaded);
  EXPECT_EQ(*parse_routing_policy("round-robin"), RoutingPolicy::kRoundRobin);
  auto bad = parse_routing_policy("random");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("affinity, least-loaded or round-robin"),
            std::string::npos);
}

}  // namespace
}  // namespace moeserve::gateway
