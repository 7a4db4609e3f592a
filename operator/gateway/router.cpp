#include "operator/gateway/router.h"

#include <algorithm>
#include <limits>
#include <set>

namespace moeserve::gateway {
namespace {

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t fnv1a(std::string_view bytes, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= kFnvPrime;
  }
  return h;
}

// splitmix64's finaliser: spreads a key and a group id into one well-mixed score.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t rendezvous_score(uint64_t key, const std::string& group) {
  return mix(key ^ fnv1a(group, kFnvOffset));
}

bool within_bound(int64_t load, int64_t least, double load_factor, int64_t slack_tokens) {
  return static_cast<double>(load) <=
         load_factor * static_cast<double>(least) + static_cast<double>(slack_tokens);
}

}  // namespace

StatusOr<RoutingPolicy> parse_routing_policy(std::string_view name) {
  if (name == "affinity") return RoutingPolicy::kAffinity;
  if (name == "least-loaded") return RoutingPolicy::kLeastLoaded;
  if (name == "round-robin") return RoutingPolicy::kRoundRobin;
  return invalid_argument_error("--routing \"" + std::string(name) +
                                "\": expected affinity, least-loaded or round-robin");
}

std::string_view route_reason_name(RouteReason reason) {
  switch (reason) {
    case RouteReason::kAffinity: return "affinity";
    case RouteReason::kLeastLoaded: return "least_loaded";
    case RouteReason::kRoundRobin: return "round_robin";
    case RouteReason::kRetry: return "retry";
  }
  return "unknown";
}

std::vector<uint64_t> prefix_block_hashes(std::string_view text, size_t max_blocks) {
  std::vector<uint64_t> hashes;
  uint64_t h = kFnvOffset;
  for (size_t i = 0; i < max_blocks && (i + 1) * kPrefixBlockBytes <= text.size(); ++i) {
    h = fnv1a(text.substr(i * kPrefixBlockBytes, kPrefixBlockBytes), h);
    hashes.push_back(h);
  }
  return hashes;
}

RouteDecision choose_group(const std::vector<GroupLoad>& candidates,
                           const std::optional<std::string>& remembered,
                           std::optional<uint64_t> rendezvous_key, double load_factor,
                           int64_t slack_tokens, uint64_t tie_breaker) {
  int64_t least_load = candidates.front().outstanding_tokens;
  for (const GroupLoad& c : candidates) least_load = std::min(least_load, c.outstanding_tokens);
  std::vector<const GroupLoad*> lightest;
  for (const GroupLoad& c : candidates) {
    if (c.outstanding_tokens == least_load) lightest.push_back(&c);
  }
  std::sort(lightest.begin(), lightest.end(),
            [](const GroupLoad* a, const GroupLoad* b) { return a->group < b->group; });
  const GroupLoad* least = lightest[tie_breaker % lightest.size()];
  if (remembered) {
    for (const GroupLoad& c : candidates) {
      if (c.group == *remembered &&
          within_bound(c.outstanding_tokens, least_load, load_factor, slack_tokens)) {
        return {c.group, RouteReason::kAffinity};
      }
    }
  }
  if (rendezvous_key) {
    const GroupLoad* first = nullptr;
    uint64_t best = 0;
    for (const GroupLoad& c : candidates) {
      const uint64_t score = rendezvous_score(*rendezvous_key, c.group);
      if (!first || score > best || (score == best && c.group < first->group)) {
        first = &c;
        best = score;
      }
    }
    if (within_bound(first->outstanding_tokens, least_load, load_factor, slack_tokens)) {
      return {first->group, RouteReason::kAffinity};
    }
  }
  return {least->group, RouteReason::kLeastLoaded};
}

Router::Router(RouterOptions options, const Clock* clock)
    : options_(std::move(options)), clock_(clock) {}

std::optional<RouteDecision> Router::pick(const std::vector<std::string>& ready,
                                          const std::vector<uint64_t>& prefix,
                                          const std::vector<std::string>& exclude) {
  std::vector<GroupLoad> candidates;
  std::set<std::string> sorted(ready.begin(), ready.end());
  for (const std::string& g : sorted) {
    if (std::find(exclude.begin(), exclude.end(), g) != exclude.end() || !is_up(g)) continue;
    candidates.push_back({g, outstanding_tokens(g)});
  }
  if (candidates.empty()) return std::nullopt;

  RouteDecision decision;
  if (options_.policy == RoutingPolicy::kRoundRobin) {
    decision = {candidates[round_robin_++ % candidates.size()].group, RouteReason::kRoundRobin};
  } else if (options_.policy == RoutingPolicy::kLeastLoaded || prefix.empty()) {
    decision = choose_group(candidates, std::nullopt, std::nullopt, 1.0, 0, ties_++);
  } else {
    std::optional<std::string> remembered;
    for (auto key = prefix.rbegin(); key != prefix.rend() && !remembered; ++key) {
      auto found = prefixes_.find(*key);
      if (found == prefixes_.end()) continue;
      for (const GroupLoad& c : candidates) {
        if (c.group == found->second.group) remembered = c.group;
      }
    }
    decision = choose_group(candidates, remembered, prefix.front(), options_.load_factor,
                            options_.slack_tokens, ties_);
    if (decision.reason == RouteReason::kLeastLoaded) ++ties_;
  }
  if (!exclude.empty()) decision.reason = RouteReason::kRetry;
  if (options_.policy == RoutingPolicy::kAffinity) remember(prefix, decision.group);
  return decision;
}

void Router::remember(const std::vector<uint64_t>& prefix, const std::string& group) {
  for (uint64_t key : prefix) {
    auto [it, inserted] = prefixes_.try_emplace(key);
    if (!inserted) prefix_age_.erase(it->second.stamp);
    it->second.group = group;
    it->second.stamp = next_stamp_++;
    prefix_age_[it->second.stamp] = key;
  }
  while (prefixes_.size() > options_.max_remembered_prefixes) {
    auto oldest = prefix_age_.begin();
    prefixes_.erase(oldest->second);
    prefix_age_.erase(oldest);
  }
}

uint64_t Router::begin(const std::string& group, int64_t cost_tokens) {
  const uint64_t id = next_request_++;
  const int64_t cost = std::max<int64_t>(cost_tokens, 0);
  in_flight_[id] = {group, cost};
  load_[group] += cost;
  return id;
}

void Router::progress(uint64_t request, int64_t tokens) {
  auto it = in_flight_.find(request);
  if (it == in_flight_.end() || tokens <= 0) return;
  const int64_t taken = std::min(tokens, it->second.remaining);
  it->second.remaining -= taken;
  load_[it->second.group] -= taken;
}

void Router::end(uint64_t request) {
  auto it = in_flight_.find(request);
  if (it == in_flight_.end()) return;
  load_[it->second.group] -= it->second.remaining;
  in_flight_.erase(it);
}

void Router::failed(const std::string& group) {
  Health& h = health_[group];
  const int64_t initial_ms = options_.backoff_initial.count();
  int64_t backoff_ms = initial_ms;
  for (int32_t i = 0; i < h.failures && backoff_ms < options_.backoff_max.count(); ++i) {
    backoff_ms *= 2;
  }
  backoff_ms = std::min<int64_t>(backoff_ms, options_.backoff_max.count());
  h.failures += 1;
  h.down_until = clock_->now() + std::chrono::milliseconds(backoff_ms);
}

void Router::succeeded(const std::string& group) { health_.erase(group); }

int64_t Router::outstanding_tokens(const std::string& group) const {
  auto it = load_.find(group);
  return it == load_.end() ? 0 : it->second;
}

bool Router::is_up(const std::string& group) const {
  auto it = health_.find(group);
  return it == health_.end() || clock_->now() >= it->second.down_until;
}

std::vector<std::string> Router::known_groups() const {
  std::set<std::string> groups;
  for (const auto& [g, load] : load_) groups.insert(g);
  for (const auto& [g, health] : health_) groups.insert(g);
  return {groups.begin(), groups.end()};
}

void Router::retain(const std::vector<std::string>& live) {
  const std::set<std::string> keep(live.begin(), live.end());
  for (auto it = health_.begin(); it != health_.end();) {
    it = keep.count(it->first) ? std::next(it) : health_.erase(it);
  }
  for (auto it = load_.begin(); it != load_.end();) {
    it = keep.count(it->first) || it->second != 0 ? std::next(it) : load_.erase(it);
  }
}

}  // namespace moeserve::gateway
