// Router: which group of a deployment serves a request. Pure (no I/O); time comes from
// an injected Clock, so every decision is deterministic and unit-tested.
//
// Load is a group's outstanding tokens: for each request in flight on it, the prompt's
// estimated tokens plus the tokens it may still generate (max_tokens less what it has
// streamed), as the gateway tracks them through begin() / progress() / end().
//
// Policies:
// - kAffinity (default): bounded-load consistent hashing on the prompt's prefix. The
//   prompt's canonical text is cut into blocks of kPrefixBlockBytes; the hash of each
//   block boundary's prefix (chained, so block i's hash covers blocks 0..i) is a key. A
//   key remembers the group that served it last; the deepest remembered key whose group
//   is eligible and within the load bound wins (reason kAffinity). A prefix never seen
//   goes to the group that rendezvous hashing ranks first for its first block, so
//   gateways that share no state agree, again only within the bound. The bound:
//   load(g) <= load_factor * (least load) + slack_tokens. Otherwise (no
//   key: a prompt shorter than one block, or every candidate over the bound) the least
//   loaded group (reason kLeastLoaded).
// - kLeastLoaded: always the least loaded group.
// - kRoundRobin: the next eligible group in id order (the baseline the benchmarks and
//   the e2e compare affinity against).
// Ties between equally loaded groups rotate in id order (the first tie goes to the
// smallest id), so idle groups share prompt-less or short requests. A retry (excluded
// groups given) reports kRetry.
//
// Down / up: failed() takes a group out for a backoff (backoff_initial, doubling per
// consecutive failure up to backoff_max); once the backoff has passed the group is
// eligible again (retried), and succeeded() forgets its failures.
//
// Thread-safety: none; the proxy holds one mutex around its Router.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace moeserve::gateway {

inline constexpr size_t kPrefixBlockBytes = 256;

enum class RoutingPolicy { kAffinity, kLeastLoaded, kRoundRobin };
// "affinity", "least-loaded" or "round-robin" (the gateway's --routing flag).
StatusOr<RoutingPolicy> parse_routing_policy(std::string_view name);

enum class RouteReason { kAffinity, kLeastLoaded, kRoundRobin, kRetry };
// The metric label: "affinity", "least_loaded", "round_robin", "retry".
std::string_view route_reason_name(RouteReason reason);

// Hashes of the prefixes of `text` that end at block boundaries: element i covers bytes
// [0, (i+1) * kPrefixBlockBytes), at most max_blocks of them; empty when text is shorter
// than one block. FNV-1a 64, chained, so equal prefixes give equal hashes anywhere.
std::vector<uint64_t> prefix_block_hashes(std::string_view text, size_t max_blocks);

struct RouterOptions {
  RoutingPolicy policy = RoutingPolicy::kAffinity;
  double load_factor = 1.25;   // c of the bound
  int64_t slack_tokens = 512;  // added to the bound, so small loads do not split prefixes
  size_t max_prefix_blocks = 8;
  size_t max_remembered_prefixes = 65536;  // oldest forgotten first
  std::chrono::milliseconds backoff_initial{2000};
  std::chrono::milliseconds backoff_max{30000};
};

struct RouteDecision {
  std::string group;
  RouteReason reason = RouteReason::kLeastLoaded;
};

// One candidate as choose_group() sees it.
struct GroupLoad {
  std::string group;
  int64_t outstanding_tokens = 0;
};

// The pure core of the affinity policy: `candidates` (non-empty, eligible groups),
// `remembered` (the group the deepest known prefix key names, if any), `rendezvous_key`
// (the first block's hash, if any). See the header comment for the rule; among equally
// least loaded groups (in id order) the one at tie_breaker modulo their count.
RouteDecision choose_group(const std::vector<GroupLoad>& candidates,
                           const std::optional<std::string>& remembered,
                           std::optional<uint64_t> rendezvous_key, double load_factor,
                           int64_t slack_tokens, uint64_t tie_breaker = 0);

class Router {
 public:
  explicit Router(RouterOptions options, const Clock* clock = RealClock::instance());

  // Picks a group among `ready` (ids; order does not matter) that is not down and not in
  // `exclude`; nullopt when none is eligible. prefix: prefix_block_hashes() of the
  // prompt. The choice is remembered for the prefix's keys. The bound compares loads
  // before this request is added (begin()).
  std::optional<RouteDecision> pick(const std::vector<std::string>& ready,
                                    const std::vector<uint64_t>& prefix,
                                    const std::vector<std::string>& exclude = {});

  // Load tracking of one request on `group`: begin() with its cost in tokens,
  // progress() as it streams `tokens` more (never below zero), end() when it is done.
  // Returns an id for progress()/end().
  uint64_t begin(const std::string& group, int64_t cost_tokens);
  void progress(uint64_t request, int64_t tokens);
  void end(uint64_t request);

  // Outcome of a request to `group`: failed() takes it out for its backoff.
  void failed(const std::string& group);
  void succeeded(const std::string& group);

  int64_t outstanding_tokens(const std::string& group) const;
  // False while `group` is in its failure backoff.
  bool is_up(const std::string& group) const;
  // Groups with load or failure state (for the per-group gauges).
  std::vector<std::string> known_groups() const;
  // Forgets the failure state of groups not in `live` (gone from discovery) and the
  // load entries of those with nothing in flight.
  void retain(const std::vector<std::string>& live);

 private:
  struct Health {
    int32_t failures = 0;
    Clock::TimePoint down_until{};
  };
  struct InFlight {
    std::string group;
    int64_t remaining = 0;
  };
  struct Remembered {
    std::string group;
    uint64_t stamp = 0;
  };

  void remember(const std::vector<uint64_t>& prefix, const std::string& group);

  RouterOptions options_;
  const Clock* clock_;
  std::map<std::string, int64_t> load_;
  std::map<std::string, Health> health_;
  std::unordered_map<uint64_t, InFlight> in_flight_;
  uint64_t next_request_ = 1;
  std::unordered_map<uint64_t, Remembered> prefixes_;
  std::map<uint64_t, uint64_t> prefix_age_;  // stamp -> key, oldest first
  uint64_t next_stamp_ = 1;
  uint64_t round_robin_ = 0;
  uint64_t ties_ = 0;
};

}  // namespace moeserve::gateway
