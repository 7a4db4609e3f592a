#include "operator/autoscaler/policy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

namespace moeserve::autoscaler {
namespace {

// How long a rise must hold to count as a burst for the headroom.
constexpr double kBurstHoldS = 60;

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

double seconds_between(Clock::TimePoint from, Clock::TimePoint to) {
  return std::chrono::duration<double>(to - from).count();
}

// Adds the measurement to the demand history and drops what is older than the
// history the headroom is sized from.
void remember(const PolicySpec& spec, Clock::TimePoint now, double tokens_per_second,
              std::deque<DemandPoint>* demand) {
  if (!demand->empty() && demand->back().at >= now) demand->pop_back();
  demand->push_back({now, tokens_per_second});
  while (seconds_between(demand->front().at, now) > spec.history_seconds) demand->pop_front();
}

// Rules 2 to 6: the groups the measurement asks for before stabilization, and whether
// the queue or latency rule decided (the groups are then overloaded).
struct Recommendation {
  Decision decision;
  bool overloaded = false;
};

Recommendation recommend(const PolicySpec& spec, const PolicyInput& in, const PolicyState& state) {
  const int32_t current = in.current_replicas;
  const int32_t ready = in.ready_replicas;
  const double tps = std::max(0.0, *in.tokens_per_second);
  int32_t want = current;
  std::string why;
  bool overloaded = false;

  // 2. Throughput, proactive.
  if (spec.target_tokens_per_second_per_group) {
    const double target = *spec.target_tokens_per_second_per_group;
    const Forecast f =
        forecast(state.demand, state.observed_startup_seconds.value_or(spec.startup_seconds),
                 spec.tolerance);
    const double demand = f.tokens_per_second();
    const double per_group = demand / std::max(ready, 1);
    // Up as soon as the forecast exceeds what the current groups hold; down only when
    // the smaller fleet holds it with `tolerance` to spare, so noise does not flap.
    const double ratio = current > 0 ? demand / (current * target) : (demand > 0 ? 2.0 : 1.0);
    const bool within = ratio <= 1.0 && ratio >= 1.0 - spec.tolerance;
    if (!within) want = static_cast<int32_t>(std::ceil(demand / target - 1e-9));
    const char* relation = per_group > target ? " > " : (per_group < target ? " < " : " = ");
    if (f.trend_per_s > 0 || f.headroom > 0) {
      why = "forecast tokens/s per group " + format_number(per_group) + " in " +
            format_number(f.horizon_s) + "s (measured " + format_number(f.measured) + ", trend +" +
            format_number(f.trend_per_s) + "/s, headroom " + format_number(f.headroom) + ")";
    } else {
      why = "tokens/s per group " + format_number(per_group);
    }
    why += relation + std::string("target ") + format_number(target);
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
      overloaded = true;
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
      overloaded = false;
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
      overloaded = true;
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
  return {{want, why + ": " + move_text(current, want)}, overloaded};
}

// Rule 0, for a deployment scaled to zero.
Decision wake(const PolicySpec& spec, const PolicyInput& in) {
  const double waiting = in.requests_waiting.value_or(0);
  const double tps = in.tokens_per_second.value_or(0);
  if (waiting <= 0 && tps <= 0) return {0, "scaled to zero, no request waiting: keeping 0 groups"};
  const int32_t want = std::clamp(1, spec.min_replicas, spec.max_replicas);
  const std::string why = waiting > 0
                              ? format_number(waiting) + " requests waiting while scaled to zero"
                              : "tokens/s " + format_number(tps) + " while scaled to zero";
  return {want, why + ": " + move_text(0, want)};
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

Forecast forecast(const std::deque<DemandPoint>& history, double horizon_s, double tolerance) {
  Forecast f;
  f.horizon_s = horizon_s;
  if (history.empty()) return f;
  const Clock::TimePoint now = history.back().at;
  f.measured = history.back().tokens_per_second;
  const double span = seconds_between(history.front().at, now);
  if (horizon_s <= 0) return f;
  if (span >= horizon_s / 2) {
    // Least-squares slope over the last horizon: a trend seen for as long as a group
    // takes to start is expected to go on for that long.
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (const DemandPoint& p : history) {
      const double x = -seconds_between(p.at, now);
      if (x < -horizon_s) continue;
      n += 1;
      sx += x;
      sy += p.tokens_per_second;
      sxx += x * x;
      sxy += x * p.tokens_per_second;
    }
    const double denominator = n * sxx - sx * sx;
    if (n >= 2 && denominator > 0) f.trend_per_s = std::max(0.0, (n * sxy - sx * sy) / denominator);
  }
  if (span >= horizon_s) {
    // The largest rise within any start-up horizon of the history, held for a minute
    // (a burst, not one noisy rate): a burst like one already seen must be served by
    // the groups already running. The trend's part of a rise is the trend's; rises
    // within `tolerance` of the level they start from are noise the band absorbs.
    std::vector<double> held(history.size());
    for (size_t k = 0; k < history.size(); ++k) {
      held[k] = history[k].tokens_per_second;
      for (size_t j = k; j-- > 0 && seconds_between(history[j].at, history[k].at) <= kBurstHoldS;) {
        held[k] = std::min(held[k], history[j].tokens_per_second);
      }
    }
    for (size_t i = 0; i < history.size(); ++i) {
      for (size_t k = i + 1;
           k < history.size() && seconds_between(history[i].at, history[k].at) <= horizon_s; ++k) {
        const double rise = held[k] - history[i].tokens_per_second -
                            f.trend_per_s * seconds_between(history[i].at, history[k].at);
        f.headroom = std::max(f.headroom, rise - tolerance * history[i].tokens_per_second);
      }
    }
  }
  return f;
}

Decision stabilize(std::deque<std::pair<Clock::TimePoint, int32_t>>* recommendations,
                   Clock::TimePoint now, std::chrono::seconds window, int32_t current,
                   const Decision& raw) {
  recommendations->emplace_back(now, raw.replicas);
  while (!recommendations->empty() && now - recommendations->front().first > window) {
    recommendations->pop_front();
  }
  if (raw.replicas >= current) return raw;
  int32_t held = raw.replicas;
  for (const auto& [_, replicas] : *recommendations) held = std::max(held, replicas);
  held = std::min(held, current);
  if (held == raw.replicas) return raw;
  return {held, raw.reason.substr(0, raw.reason.rfind(": ")) + "; scale-down to " +
                    std::to_string(raw.replicas) + " held: the highest recommendation within " +
                    std::to_string(window.count()) + "s is " + std::to_string(held) + ": " +
                    move_text(current, held)};
}

Evaluation evaluate(const PolicySpec& spec, const PolicyInput& in, PolicyState state) {
  const int32_t current = in.current_replicas;
  // The start-up time is learned from the last scale-up that completed.
  if (state.scale_up_at && in.ready_replicas >= state.scale_up_to) {
    state.observed_startup_seconds = seconds_between(*state.scale_up_at, in.now);
    state.scale_up_at.reset();
  }
  if (in.tokens_per_second) remember(spec, in.now, *in.tokens_per_second, &state.demand);

  Decision decision;
  if (spec.scale_to_zero_after_idle_seconds && current == 0) {
    decision = wake(spec, in);
  } else if (!in.tokens_per_second) {
    const int32_t kept = std::clamp(current, spec.min_replicas, spec.max_replicas);
    decision = stabilize(&state.recommendations, in.now,
                         std::chrono::seconds(spec.scale_down_stabilization_seconds), current,
                         {kept, "no token throughput measured yet: " + move_text(current, kept)});
  } else {
    const Recommendation r = recommend(spec, in, state);
    // Served tokens/s saturate at capacity: when the queue or latency rule decided, the
    // groups it asks for are the demand seen, and the history keeps that, so the
    // headroom learns the burst's real height.
    if (r.overloaded && spec.target_tokens_per_second_per_group) {
      state.demand.back().tokens_per_second =
          std::max(state.demand.back().tokens_per_second,
                   r.decision.replicas * *spec.target_tokens_per_second_per_group);
    }
    decision =
        stabilize(&state.recommendations, in.now,
                  std::chrono::seconds(spec.scale_down_stabilization_seconds), current, r.decision);
  }

  // 8. Scale to zero.
  const bool idle =
      in.tokens_per_second && *in.tokens_per_second <= 0 && in.requests_waiting.value_or(0) <= 0;
  if (!spec.scale_to_zero_after_idle_seconds || !idle) {
    if (in.tokens_per_second || in.requests_waiting.value_or(0) > 0) state.idle_since.reset();
  } else if (current > 0) {
    if (!state.idle_since) state.idle_since = in.now;
    const double idle_s = seconds_between(*state.idle_since, in.now);
    if (idle_s >= *spec.scale_to_zero_after_idle_seconds) {
      decision = {0, "no tokens and no request waiting for " + format_number(idle_s) +
                         "s (scaleToZeroAfterIdleSeconds " +
                         std::to_string(*spec.scale_to_zero_after_idle_seconds) +
                         "): " + move_text(current, 0)};
    }
  }

  // Only a scale-up from a fleet with every group ready times a whole start-up; one
  // called off (fewer groups asked than it waits for) teaches nothing.
  if (state.scale_up_at && decision.replicas < state.scale_up_to) state.scale_up_at.reset();
  if (!state.scale_up_at && decision.replicas > current && current == in.ready_replicas) {
    state.scale_up_at = in.now;
    state.scale_up_to = decision.replicas;
  }
  return {decision, std::move(state)};
}

}  // namespace moeserve::autoscaler
