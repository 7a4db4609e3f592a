#include "operator/autoscaler/policy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace moeserve::autoscaler {
namespace {

std::string groups_text(int32_t n) { return std::to_string(n) + (n == 1 ? " group" : " groups"); }

std::string move_text(int32_t from, int32_t to) {
  if (from == to) return "keeping " + groups_text(to);
  return std::to_string(from) + " -> " + groups_text(to);
}

// Groups for `ready` groups overloaded by `ratio` (> 1): proportionally more, at least
// one more and at most twice as many (the HPA's default scale-up limit), counted from
// the ready groups so growth does not stack while new groups load.
int32_t grow(int32_t ready, double ratio) {
  const int32_t proportional = static_cast<int32_t>(std::ceil(ready * std::min(ratio, 2.0)));
  return std::max({ready + 1, proportional, 1});
}

std::string usd(double value) {
  std::string out = format_number(value);
  out.insert(out.begin(), '$');
  return out;
}

}  // namespace

std::string format_number(double value) {
  if (!std::isfinite(value)) return value > 0 ? "inf" : "nan";
  char buffer[32];
  if (std::fabs(value) >= 1000 && std::fabs(value) < 1e7) {
    std::snprintf(buffer, sizeof(buffer), "%.0f", value);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.3g", value);
  }
  return buffer;
}

std::optional<double> cost_per_million_tokens(double usd_per_group_hour, int32_t groups,
                                              double tokens_per_second) {
  if (!(tokens_per_second > 0) || !(usd_per_group_hour > 0)) return std::nullopt;
  return usd_per_group_hour * groups / 3600.0 / tokens_per_second * 1e6;
}

Decision recommend(const PolicySpec& spec, const PolicyInput& in) {
  const int32_t current = in.current_replicas;
  const int32_t ready = in.ready_replicas;
  if (!in.tokens_per_second) {
    const int32_t kept = std::clamp(current, spec.min_replicas, spec.max_replicas);
    return {kept, "no token throughput measured yet: " + move_text(current, kept)};
  }
  const double tps = std::max(0.0, *in.tokens_per_second);
  const double per_group = tps / std::max(ready, 1);
  int32_t want = current;
  std::string why;

  // 2. Throughput.
  if (spec.target_tokens_per_second_per_group) {
    const double target = *spec.target_tokens_per_second_per_group;
    const double ratio = current > 0 ? tps / (current * target) : (tps > 0 ? 2.0 : 1.0);
    const bool within = std::fabs(ratio - 1.0) <= spec.tolerance;
    if (!within) want = static_cast<int32_t>(std::ceil(tps / target - 1e-9));
    const char* relation = per_group > target ? " > " : (per_group < target ? " < " : " = ");
    why = "tokens/s per group " + format_number(per_group) + relation + "target " +
          format_number(target);
    if (within && per_group != target) {
      why += " (within " + format_number(spec.tolerance * 100) + "%)";
    }
  } else {
    why = "tokens/s " + format_number(tps);
  }

  // 3. Queue.
  if (in.requests_waiting) {
    const double waiting = *in.requests_waiting / std::max(ready, 1);
    const int32_t queue_want = std::max(current, grow(ready, waiting / spec.max_waiting_per_group));
    if (waiting > spec.max_waiting_per_group && queue_want > want) {
      want = queue_want;
      why = "requests waiting per group " + format_number(waiting) + " > " +
            format_number(spec.max_waiting_per_group);
    }
  }

  // 4. Cost budget.
  if (spec.max_cost_per_million_tokens && spec.usd_per_group_hour > 0) {
    const double budget = *spec.max_cost_per_million_tokens;
    const int32_t affordable = static_cast<int32_t>(
        std::floor(budget * tps * 3600.0 / 1e6 / spec.usd_per_group_hour + 1e-9));
    if (want > affordable) {
      const std::optional<double> cost =
          cost_per_million_tokens(spec.usd_per_group_hour, want, tps);
      why += "; cost budget " + usd(budget) + "/Mtok allows " + groups_text(affordable) +
             (cost ? " (" + groups_text(want) + " would cost " + usd(*cost) + "/Mtok)" : "");
      want = affordable;
    }
  }

  // 5. Latency SLO.
  if (spec.ttft_p95_slo_seconds && in.ttft_p95_seconds &&
      *in.ttft_p95_seconds > *spec.ttft_p95_slo_seconds) {
    const int32_t slo_want =
        std::max(current, grow(ready, *in.ttft_p95_seconds / *spec.ttft_p95_slo_seconds));
    if (slo_want > want) {
      const std::optional<double> cost =
          cost_per_million_tokens(spec.usd_per_group_hour, slo_want, tps);
      why = "TTFT p95 " + format_number(*in.ttft_p95_seconds) + "s > SLO " +
            format_number(*spec.ttft_p95_slo_seconds) + "s";
      if (spec.max_cost_per_million_tokens && cost && *cost > *spec.max_cost_per_million_tokens) {
        why += " (overrides the cost budget: " + usd(*cost) + "/Mtok > " +
               usd(*spec.max_cost_per_million_tokens) + ")";
      }
      want = slo_want;
    }
  }

  // 6. Bounds.
  if (want > spec.max_replicas) {
    why += "; capped at maxReplicas " + std::to_string(spec.max_replicas);
    want = spec.max_replicas;
  } else if (want < spec.min_replicas) {
    why += "; raised to minReplicas " + std::to_string(spec.min_replicas);
    want = spec.min_replicas;
  }
  return {want, why + ": " + move_text(current, want)};
}

Decision Stabilizer::apply(Clock::TimePoint now, std::chrono::seconds window, int32_t current,
                           const Decision& raw) {
  history_.emplace_back(now, raw.replicas);
  while (!history_.empty() && now - history_.front().first > window) history_.pop_front();
  if (raw.replicas >= current) return raw;
  int32_t held = raw.replicas;
  for (const auto& [_, replicas] : history_) held = std::max(held, replicas);
  held = std::min(held, current);
  if (held == raw.replicas) return raw;
  return {held, raw.reason.substr(0, raw.reason.rfind(": ")) + "; scale-down to " +
                    std::to_string(raw.replicas) + " held: the highest recommendation within " +
                    std::to_string(window.count()) + "s is " + std::to_string(held) + ": " +
                    move_text(current, held)};
}

}  // namespace moeserve::autoscaler
