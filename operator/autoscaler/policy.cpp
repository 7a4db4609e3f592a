#include "operator/autoscaler/policy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

namespace moeserve::autoscaler {
namespace {

// The operator's rate window: what the growth of the waiting requests is measured
// over, and how long after a group joined or left (when the groups' windows disagree)
// or a backlog drained no rise is learned.
constexpr double kRateWindowS = 60;
// The level is fitted over the last kLevelWindowS, in kFitRounds rounds that each
// leave out the points further than kClipSpreads robust spreads from the line before.
constexpr double kLevelWindowS = 1800;
constexpr int kFitRounds = 3;
constexpr double kClipSpreads = 3;
// The queue rule sizes for draining the backlog within kDrainS of new groups starting.
constexpr double kDrainS = 60;

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
// history kept. While requests wait, the groups serve what they can, not what arrives:
// with the requests started per second known, the demand is the served tokens/s times
// (1 + growth of the waiting requests per second / requests started per second), the
// queue's growth in the served mix of tokens per request.
void remember(const PolicySpec& spec, const PolicyInput& in, std::deque<DemandPoint>* demand) {
  const double waiting = in.requests_waiting.value_or(0);
  if (!demand->empty() && demand->back().at >= in.now) demand->pop_back();
  DemandPoint point{in.now, std::max(0.0, *in.tokens_per_second), waiting, in.ready_replicas,
                    false};
  const DemandPoint* before = nullptr;
  for (size_t j = demand->size();
       j-- > 0 && seconds_between((*demand)[j].at, in.now) <= kRateWindowS;) {
    before = &(*demand)[j];
  }
  if (before) {
    const double growth =
        (waiting - before->requests_waiting) / seconds_between(before->at, in.now);
    if (in.requests_per_second && *in.requests_per_second > 0) {
      point.tokens_per_second =
          std::max(0.0, point.tokens_per_second * (1 + growth / *in.requests_per_second));
    }
    point.draining = growth < 0 && before->requests_waiting / std::max(in.ready_replicas, 1) >
                                       spec.max_waiting_per_group;
  }
  demand->push_back(point);
  while (seconds_between(demand->front().at, in.now) > spec.history_seconds) demand->pop_front();
}

// Rules 2 to 6: the groups the measurement asks for before stabilization.
Decision recommend(const PolicySpec& spec, const PolicyInput& in, const Forecast& f) {
  const int32_t current = in.current_replicas;
  const int32_t ready = in.ready_replicas;
  const double tps = std::max(0.0, *in.tokens_per_second);
  int32_t want = current;
  std::string why;

  // 2. Throughput, proactive.
  if (spec.target_tokens_per_second_per_group) {
    const double target = *spec.target_tokens_per_second_per_group;
    const double demand = f.tokens_per_second();
    const double per_group = demand / std::max(ready, 1);
    // Up as soon as the forecast exceeds what the current groups hold; down only when
    // the smaller fleet holds it with `tolerance` to spare, so noise does not flap.
    const double ratio = current > 0 ? demand / (current * target) : (demand > 0 ? 2.0 : 1.0);
    const bool within = ratio <= 1.0 && ratio >= 1.0 - spec.tolerance;
    if (!within) want = static_cast<int32_t>(std::ceil(demand / target - 1e-9));
    const char* relation = per_group > target ? " > " : (per_group < target ? " < " : " = ");
    if (demand > f.measured) {
      const double ahead = f.trend_per_s * f.horizon_s;
      const bool burst = (f.level + ahead) * f.burst_factor > f.measured + ahead;
      std::string terms = "measured " + format_number(f.measured);
      if (burst) terms = "level " + format_number(f.level);
      if (ahead > 0) {
        terms +=
            " + trend " + format_number(f.trend_per_s) + "/s x " + format_number(f.horizon_s) + "s";
      }
      if (burst) {
        if (ahead > 0) terms = "(" + terms + ")";
        terms +=
            " x burst " + format_number(f.burst_factor) + "; measured " + format_number(f.measured);
      }
      why = "forecast " + format_number(demand) + " tokens/s = " + terms + "; per group " +
            format_number(per_group);
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
    int32_t queue_want = std::max(current, grow(ready, waiting / spec.max_waiting_per_group));
    std::string sizing;
    if (spec.target_tokens_per_second_per_group && in.requests_per_second &&
        *in.requests_per_second > 0) {
      // The backlog in tokens (the waiting requests in the served mix), as it will be
      // once new groups have started, drained within kDrainS on top of the demand.
      const double target = *spec.target_tokens_per_second_per_group;
      const double backlog = *in.requests_waiting * tps / *in.requests_per_second +
                             std::max(0.0, f.measured - ready * target) * f.horizon_s;
      const double needed = f.measured + backlog / kDrainS;
      queue_want = std::max(current, static_cast<int32_t>(std::ceil(needed / target - 1e-9)));
      sizing = " (measured " + format_number(f.measured) + " + backlog " + format_number(backlog) +
               " tokens in " + format_number(f.horizon_s) + "s / " + format_number(kDrainS) + "s)";
    }
    if (waiting > spec.max_waiting_per_group && queue_want > want) {
      want = queue_want;
      why = "requests waiting per group " + format_number(waiting) + " > " +
            format_number(spec.max_waiting_per_group) + sizing;
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

namespace {

// Least-squares line through the kept points (x: seconds, negative before now): its
// value at now and its slope; false with fewer than two points or no spread in time.
bool fit_line(const std::vector<double>& x, const std::vector<double>& y,
              const std::vector<bool>& kept, double* level, double* slope) {
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!kept[i]) continue;
    n += 1;
    sx += x[i];
    sy += y[i];
    sxx += x[i] * x[i];
    sxy += x[i] * y[i];
  }
  const double denominator = n * sxx - sx * sx;
  if (n < 2 || !(denominator > 0)) return false;
  *slope = (n * sxy - sx * sy) / denominator;
  *level = (sy - *slope * sx) / n;
  return true;
}

double median(std::vector<double> values) {
  const auto mid = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), mid, values.end());
  return *mid;
}

// The demand between bursts (rule 2): a line through the history within
// kLevelWindowS of now, first flat through the median (a least-squares line would tilt
// towards a burst at the window's end), then refitted without the points further than
// kClipSpreads robust spreads (1.4826 x the median distance, the standard deviation of
// normal noise) from the line before. A burst or a dip covering less than half of the
// window does not move it.
struct Baseline {
  double level = 0;  // the line now
  double slope = 0;  // tokens/s per second
  bool idle_seen = false;
};

Baseline baseline(const std::deque<DemandPoint>& history) {
  Baseline out;
  const Clock::TimePoint now = history.back().at;
  std::vector<double> x, y;
  for (size_t j = history.size();
       j-- > 0 && seconds_between(history[j].at, now) <= kLevelWindowS;) {
    x.push_back(-seconds_between(history[j].at, now));
    y.push_back(history[j].tokens_per_second);
    out.idle_seen = out.idle_seen || history[j].tokens_per_second <= 0;
  }
  out.level = median(y);
  std::vector<bool> kept(x.size(), true);
  std::vector<double> distance(x.size());
  for (int round = 0; round < kFitRounds; ++round) {
    for (size_t i = 0; i < x.size(); ++i) {
      distance[i] = std::fabs(y[i] - out.level - out.slope * x[i]);
    }
    const double spread = 1.4826 * median(distance);
    for (size_t i = 0; i < x.size(); ++i) kept[i] = distance[i] <= kClipSpreads * spread;
    fit_line(x, y, kept, &out.level, &out.slope);
  }
  out.level = std::max(0.0, out.level);
  return out;
}

}  // namespace

Forecast forecast(const std::deque<DemandPoint>& history, double horizon_s, double burst_factor) {
  Forecast f;
  f.horizon_s = horizon_s;
  f.burst_factor = burst_factor;
  if (history.empty()) return f;
  const size_t last = history.size() - 1;
  const Clock::TimePoint now = history[last].at;
  f.measured = history[last].tokens_per_second;
  f.level = f.measured;
  if (horizon_s <= 0) return f;
  const double span = seconds_between(history.front().at, now);
  const Baseline line = baseline(history);
  f.level = line.level;
  // A trend seen for half as long as a group takes to start is expected to go on for
  // that long.
  if (span >= horizon_s / 2) f.trend_per_s = std::max(0.0, line.slope);
  if (span >= horizon_s && !line.idle_seen && f.level > 0) {
    // The demand now over the level, unless within the last rate window a backlog
    // drained (what was served then overstates what came) or a group joined or left
    // (the groups' rates then cover different times, and their sum is off).
    bool clean = true;
    for (size_t j = last + 1; j-- > 0 && seconds_between(history[j].at, now) <= kRateWindowS;) {
      clean = clean && !history[j].draining &&
              history[j].ready_replicas == history[last].ready_replicas;
    }
    if (clean) f.rise = f.measured / f.level;
  }
  return f;
}

double BurstMemory::factor_at(Clock::TimePoint now, double half_life_s) const {
  if (!at || !(half_life_s > 0)) return factor;
  return 1 + (factor - 1) * std::exp2(-std::max(0.0, seconds_between(*at, now)) / half_life_s);
}

void BurstMemory::learn(Clock::TimePoint now, double rise, double half_life_s) {
  factor = std::max(factor_at(now, half_life_s), rise);
  at = now;
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
  if (in.tokens_per_second) remember(spec, in, &state.demand);

  Decision decision;
  if (spec.scale_to_zero_after_idle_seconds && current == 0) {
    decision = wake(spec, in);
  } else if (!in.tokens_per_second) {
    const int32_t kept = std::clamp(current, spec.min_replicas, spec.max_replicas);
    decision = stabilize(&state.recommendations, in.now,
                         std::chrono::seconds(spec.scale_down_stabilization_seconds), current,
                         {kept, "no token throughput measured yet: " + move_text(current, kept)});
  } else {
    const double half_life_s = spec.burst_half_life_seconds;
    Forecast f =
        forecast(state.demand, state.observed_startup_seconds.value_or(spec.startup_seconds),
                 state.burst.factor_at(in.now, half_life_s));
    state.burst.learn(in.now, f.rise, half_life_s);
    f.burst_factor = state.burst.factor_at(in.now, half_life_s);
    decision = stabilize(&state.recommendations, in.now,
                         std::chrono::seconds(spec.scale_down_stabilization_seconds), current,
                         recommend(spec, in, f));
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
