#include "bench/sim/simulator.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <random>

#include "bench/sim/group.h"
#include "operator/autoscaler/metric_source.h"

namespace moeserve::sim {
namespace {

using autoscaler::Decision;
using autoscaler::Measurement;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kPeakWindowS = 60;

Clock::TimePoint time_point(double t_s) {
  return Clock::TimePoint() +
         std::chrono::duration_cast<Clock::Duration>(std::chrono::duration<double>(t_s));
}

// What a policy decides from: what the operator would see.
struct View {
  double now_s = 0;
  int32_t current = 0;
  int32_t ready = 0;
  Measurement measurement;
  int64_t tick = 0;
};

class Recommender {
 public:
  virtual ~Recommender() = default;
  virtual Decision decide(const View& view) = 0;
};

class MoeserveRecommender : public Recommender {
 public:
  explicit MoeserveRecommender(autoscaler::PolicySpec spec) : spec_(std::move(spec)) {}
  Decision decide(const View& v) override {
    autoscaler::Evaluation e =
        autoscaler::evaluate(spec_,
                             {time_point(v.now_s), v.current, v.ready,
                              v.measurement.tokens_per_second, v.measurement.ttft_p95_seconds,
                              v.measurement.requests_waiting, v.measurement.requests_per_second},
                             std::move(state_));
    state_ = std::move(e.state);
    return e.decision;
  }

 private:
  autoscaler::PolicySpec spec_;
  autoscaler::PolicyState state_;
};

class FixedRecommender : public Recommender {
 public:
  explicit FixedRecommender(int32_t groups) : groups_(groups) {}
  Decision decide(const View&) override { return {groups_, "static"}; }

 private:
  int32_t groups_;
};

// The HPA's replica formula on an average metric, with its tolerance and scale-down
// stabilization; `value` is the metric summed over the ready groups.
class HpaRecommender : public Recommender {
 public:
  HpaRecommender(const SimOptions& o, bool on_queue)
      : options_(o),
        on_queue_(on_queue),
        target_(on_queue ? o.queue_waiting_per_group
                         : o.target_utilization * o.slo_capacity_tokens_per_s) {}
  Decision decide(const View& v) override {
    const std::optional<double> value =
        on_queue_ ? v.measurement.requests_waiting : v.measurement.tokens_per_second;
    int32_t want = v.current;
    if (value && v.ready > 0) {
      const double ratio = *value / (v.ready * target_);
      if (std::fabs(ratio - 1) > 0.1) {
        want = static_cast<int32_t>(std::ceil(*value / target_ - 1e-9));
      }
    }
    // The HPA's default scale-up policy: at most double or four more per 15 s.
    want =
        std::clamp(want, 1, std::min(options_.max_groups, std::max(2 * v.current, v.current + 4)));
    return autoscaler::stabilize(&recommendations_, time_point(v.now_s),
                                 std::chrono::seconds(options_.stabilization_s), v.current,
                                 {want, (on_queue_ ? "requests waiting " : "tokens/s ") +
                                            autoscaler::format_number(value.value_or(0)) + " at " +
                                            autoscaler::format_number(target_) +
                                            " per group: " + std::to_string(want) + " groups"});
  }

 private:
  SimOptions options_;
  bool on_queue_;
  double target_;
  std::deque<std::pair<Clock::TimePoint, int32_t>> recommendations_;
};

class OracleRecommender : public Recommender {
 public:
  OracleRecommender(std::vector<int32_t> needed, const SimOptions& o)
      : needed_(std::move(needed)),
        lookahead_(static_cast<int64_t>(std::ceil(o.startup_s / o.interval_s)) + 1),
        max_(o.max_groups) {}
  Decision decide(const View& v) override { return {at(v.tick), "oracle"}; }
  int32_t at(int64_t tick) const {
    int32_t want = 1;
    for (int64_t k = tick; k <= tick + lookahead_ && k < static_cast<int64_t>(needed_.size());
         ++k) {
      want = std::max(want, needed_[k]);
    }
    return std::min(want, max_);
  }

 private:
  std::vector<int32_t> needed_;
  int64_t lookahead_;
  int32_t max_;
};

struct Slot {
  std::unique_ptr<Group> group;
  std::unique_ptr<autoscaler::GroupWindow> window;
  double drain_start_s = -1;
};

double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  const size_t k = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size()))) - 1;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
  return values[k];
}

// One run: the fleet, the held requests and the books.
class Run {
 public:
  Run(const std::vector<Request>& trace, const Capacity& capacity, const SimOptions& options)
      : trace_(trace), capacity_(capacity), options_(options), times_(trace.size()) {}

  PolicyResult go(Recommender* policy, int32_t initial, std::string name);

 private:
  void add_group(double now, double ready_s) {
    slots_.push_back({std::make_unique<Group>(&capacity_, &times_, now, ready_s),
                      std::make_unique<autoscaler::GroupWindow>(
                          std::chrono::duration_cast<Clock::Duration>(
                              std::chrono::duration<double>(options_.rate_window_s)),
                          std::chrono::minutes(10)),
                      -1});
  }
  void pay(const Slot& s, double until) {
    group_seconds_ += std::max(0.0, until - s.group->created_s());
  }
  Group* pick(double now) {
    Group* best = nullptr;
    double least = kInf;
    for (Slot& s : slots_) {
      if (s.drain_start_s >= 0 || !s.group->ready(now)) continue;
      s.group->advance(now);
      const double outstanding = s.group->outstanding_tokens();
      if (outstanding < least) {
        least = outstanding;
        best = s.group.get();
      }
    }
    return best;
  }
  void dispatch(int64_t id, double now) {
    Group* g = pick(now);
    if (!g) {
      held_.push_back(id);
      return;
    }
    times_[id].dispatched_s = now;
    g->enqueue(id, trace_[id], now);
  }
  // When the ready groups change, requests not yet started (held, or waiting in a
  // group's queue, a draining group's included) are sent again, oldest first, each to
  // the ready group with the fewest outstanding tokens, as a gateway that holds
  // requests until they start would place them.
  void rebalance(double now) {
    std::vector<int64_t> waiting(held_.begin(), held_.end());
    held_.clear();
    for (Slot& s : slots_) {
      if (!s.group->ready(now)) continue;
      s.group->advance(now);
      s.group->take_waiting(&waiting);
    }
    std::sort(waiting.begin(), waiting.end());  // ids are in arrival order
    for (int64_t id : waiting) dispatch(id, now);
  }
  double next_ready_s(double after) const {
    double t = kInf;
    for (const Slot& s : slots_) {
      if (s.drain_start_s < 0 && s.group->ready_s() > after) t = std::min(t, s.group->ready_s());
    }
    return t;
  }
  void resize(int32_t from, int32_t to, double now);

  const std::vector<Request>& trace_;
  const Capacity& capacity_;
  SimOptions options_;
  std::vector<RequestTimes> times_;
  std::vector<Slot> slots_;
  std::deque<int64_t> held_;
  double group_seconds_ = 0;
};

void Run::resize(int32_t from, int32_t to, double now) {
  for (int32_t g = from; g < to; ++g) add_group(now, now + options_.startup_s);
  int32_t remove = from - to;
  // Starting groups are cancelled first (newest first), then the ready groups with the
  // least outstanding work drain.
  for (size_t i = slots_.size(); i-- > 0 && remove > 0;) {
    Slot& s = slots_[i];
    if (s.drain_start_s < 0 && !s.group->ready(now)) {
      pay(s, now);
      slots_.erase(slots_.begin() + static_cast<std::ptrdiff_t>(i));
      --remove;
    }
  }
  while (remove > 0) {
    Slot* victim = nullptr;
    for (Slot& s : slots_) {
      if (s.drain_start_s >= 0) continue;
      if (!victim || s.group->outstanding_tokens() < victim->group->outstanding_tokens()) {
        victim = &s;
      }
    }
    if (!victim) break;
    victim->drain_start_s = now;
    --remove;
  }
  if (from > to) rebalance(now);
}

PolicyResult Run::go(Recommender* policy, int32_t initial, std::string name) {
  PolicyResult out;
  out.policy = std::move(name);
  for (int32_t g = 0; g < initial; ++g) add_group(0, 0);
  int32_t desired = initial;
  const double last_arrival = trace_.empty() ? 0 : trace_.back().arrival_s;
  size_t next = 0;
  double now = 0, next_tick = options_.interval_s, last_tick = 0;
  int64_t tick = 1;
  std::vector<bool> unservable(trace_.size(), false);
  while (true) {
    const double arrival = next < trace_.size() ? trace_[next].arrival_s : kInf;
    const double ready = next_ready_s(now);
    if (arrival <= next_tick && arrival <= ready) {
      now = arrival;
      const Request& r = trace_[next];
      if (r.prompt_tokens + r.output_tokens > capacity_.kv_tokens) {
        unservable[next] = true;
      } else {
        dispatch(static_cast<int64_t>(next), now);
      }
      ++next;
      continue;
    }
    if (ready <= next_tick) {
      now = ready;
      rebalance(now);
      continue;
    }
    now = next_tick;
    // Groups run to now; drained groups end when their last request finished.
    bool busy = !held_.empty() || next < trace_.size();
    for (size_t i = slots_.size(); i-- > 0;) {
      Slot& s = slots_[i];
      s.group->advance(now);
      if (!s.group->empty()) busy = true;
      if (s.drain_start_s >= 0 && s.group->empty()) {
        pay(s, std::max(s.drain_start_s, s.group->last_finish_s()));
        slots_.erase(slots_.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    if (!busy || now > last_arrival + options_.max_overrun_s) break;

    View v;
    v.now_s = now;
    v.current = desired;
    v.tick = tick;
    std::vector<const autoscaler::GroupWindow*> windows;
    double waiting = static_cast<double>(held_.size());
    for (Slot& s : slots_) {
      if (s.drain_start_s >= 0 || !s.group->ready(now)) continue;
      ++v.ready;
      const autoscaler::WorkerSample sample = s.group->sample();
      s.window->add(time_point(now), sample);
      waiting += sample.requests_waiting;
      windows.push_back(s.window.get());
    }
    autoscaler::fold_windows(windows, &v.measurement);
    if (!windows.empty() || waiting > 0) v.measurement.requests_waiting = waiting;
    const Decision d = policy->decide(v);
    out.decisions.push_back({now, v.current, v.ready, v.measurement.tokens_per_second,
                             v.measurement.ttft_p95_seconds, v.measurement.requests_waiting,
                             v.measurement.requests_per_second, d.replicas, d.reason});
    if (d.replicas != desired) {
      ++out.scale_events;
      out.reasons.push_back(std::to_string(static_cast<int64_t>(now)) + "s " + d.reason);
      resize(desired, d.replicas, now);
      desired = d.replicas;
    }
    out.timeline.push_back({now, demand_tokens_per_s(trace_, last_tick, now),
                            static_cast<int32_t>(slots_.size()), v.ready});
    last_tick = now;
    next_tick += options_.interval_s;
    ++tick;
  }
  for (const Slot& s : slots_) pay(s, now);

  double served = 0;
  int64_t ttft_ok = 0, tpot_ok = 0, both_ok = 0;
  std::vector<double> ttfts;
  for (size_t i = 0; i < trace_.size(); ++i) {
    const RequestTimes& t = times_[i];
    const Request& r = trace_[i];
    if (unservable[i] || t.finished_s < 0) {
      ++out.unserved;
      continue;
    }
    served += static_cast<double>(r.prompt_tokens + r.output_tokens);
    const double ttft = t.first_token_s - r.arrival_s;
    const double tpot = r.output_tokens > 1 ? (t.finished_s - t.first_token_s) /
                                                  static_cast<double>(r.output_tokens - 1)
                                            : 0;
    ttfts.push_back(ttft);
    const bool a = ttft <= options_.slo_ttft_s, b = tpot <= options_.slo_tpot_s;
    ttft_ok += a;
    tpot_ok += b;
    both_ok += a && b;
  }
  const double n = std::max<double>(1, static_cast<double>(trace_.size()));
  out.group_hours = group_seconds_ / 3600;
  out.cost_usd = out.group_hours * capacity_.usd_per_group_hour;
  out.usd_per_mtok = served > 0 ? out.cost_usd / (served / 1e6) : 0;
  out.slo_attainment = static_cast<double>(both_ok) / n;
  out.ttft_attainment = static_cast<double>(ttft_ok) / n;
  out.tpot_attainment = static_cast<double>(tpot_ok) / n;
  out.ttft_p50_s = quantile(ttfts, 0.50);
  out.ttft_p99_s = quantile(ttfts, 0.99);
  out.times = std::move(times_);
  return out;
}

}  // namespace

StatusOr<PolicyKind> parse_policy(std::string_view name) {
  for (PolicyKind k : kAllPolicies) {
    if (policy_name(k) == name) return k;
  }
  return invalid_argument_error(
      "--policy: expected moeserve, static-peak, utilization, queue, oracle or all, got '" +
      std::string(name) + "'");
}

std::string_view policy_name(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::kMoeserve: return "moeserve";
    case PolicyKind::kStaticPeak: return "static-peak";
    case PolicyKind::kUtilization: return "utilization";
    case PolicyKind::kQueue: return "queue";
    case PolicyKind::kOracle: return "oracle";
  }
  return "moeserve";
}

double demand_tokens_per_s(const std::vector<Request>& trace, double from_s, double to_s) {
  if (to_s <= from_s) return 0;
  auto first = std::lower_bound(trace.begin(), trace.end(), from_s,
                                [](const Request& r, double t) { return r.arrival_s < t; });
  double tokens = 0;
  for (auto it = first; it != trace.end() && it->arrival_s < to_s; ++it) {
    tokens += static_cast<double>(it->prompt_tokens + it->output_tokens);
  }
  return tokens / (to_s - from_s);
}

std::vector<int32_t> groups_needed(const std::vector<Request>& trace, const SimOptions& o) {
  const double end = trace.empty() ? 0 : trace.back().arrival_s;
  std::vector<int32_t> out;
  for (double t = 0; t <= end + o.interval_s; t += o.interval_s) {
    const double d = demand_tokens_per_s(trace, t, t + kPeakWindowS);
    out.push_back(static_cast<int32_t>(std::ceil(d / o.slo_capacity_tokens_per_s - 1e-9)));
  }
  return out;
}

int32_t static_peak_groups(const std::vector<Request>& trace, const SimOptions& o) {
  const std::vector<int32_t> needed = groups_needed(trace, o);
  const int32_t peak = needed.empty() ? 1 : *std::max_element(needed.begin(), needed.end());
  return std::clamp(peak, 1, o.max_groups);
}

double slo_capacity_tokens_per_s(const std::vector<Request>& shapes, const Capacity& capacity,
                                 const SimOptions& options, double attainment, double duration_s) {
  double prompt = 0, output = 0;
  for (const Request& r : shapes) {
    prompt += static_cast<double>(r.prompt_tokens);
    output += static_cast<double>(r.output_tokens);
  }
  const double n = static_cast<double>(std::max<size_t>(1, shapes.size()));
  const double tokens_per_request = (prompt + output) / n;
  auto attained = [&](double rps) {
    std::mt19937_64 rng(7);
    std::exponential_distribution<double> gap(rps);
    std::uniform_int_distribution<size_t> pick(0, shapes.size() - 1);
    std::vector<Request> load;
    for (double t = gap(rng); t < duration_s; t += gap(rng)) {
      Request r = shapes[pick(rng)];
      r.arrival_s = t;
      if (r.prompt_tokens + r.output_tokens <= capacity.kv_tokens) load.push_back(r);
    }
    Run run(load, capacity, options);
    FixedRecommender one(1);
    return run.go(&one, 1, "calibration").slo_attainment >= attainment;
  };
  // Bisection between an idle group and 1.5 x the saturated estimate (which queueing
  // and small prefill batches keep out of reach).
  double lo = 0;
  double hi = 1.5 * saturated_tokens_per_s(capacity, prompt / n, output / n) / tokens_per_request;
  for (int i = 0; i < 14; ++i) {
    const double mid = (lo + hi) / 2;
    (attained(mid) ? lo : hi) = mid;
  }
  return lo * tokens_per_request;
}

autoscaler::PolicySpec moeserve_policy(const Capacity& capacity, const SimOptions& options) {
  autoscaler::PolicySpec spec;
  spec.min_replicas = 1;
  spec.max_replicas = options.max_groups;
  spec.target_tokens_per_second_per_group = options.slo_capacity_tokens_per_s;
  spec.ttft_p95_slo_seconds = options.slo_ttft_s;
  spec.scale_down_stabilization_seconds = options.stabilization_s;
  spec.scale_to_zero_after_idle_seconds = options.scale_to_zero_after_s;
  spec.usd_per_group_hour = capacity.usd_per_group_hour;
  spec.max_waiting_per_group = options.max_waiting_per_group;
  return spec;
}

PolicyResult simulate(const std::vector<Request>& trace, const Capacity& capacity,
                      const SimOptions& options, PolicyKind kind) {
  const std::vector<int32_t> needed = groups_needed(trace, options);
  // Every policy starts with the groups the first minute needs, as if it had been
  // running before the trace; static-peak with its peak.
  const int32_t initial = std::clamp(needed.empty() ? 1 : needed.front(), 1, options.max_groups);
  Run run(trace, capacity, options);
  const std::string name(policy_name(kind));
  switch (kind) {
    case PolicyKind::kMoeserve: {
      MoeserveRecommender r(moeserve_policy(capacity, options));
      return run.go(&r, initial, name);
    }
    case PolicyKind::kStaticPeak: {
      const int32_t peak = static_peak_groups(trace, options);
      FixedRecommender r(peak);
      return run.go(&r, peak, name);
    }
    case PolicyKind::kUtilization:
    case PolicyKind::kQueue: {
      HpaRecommender r(options, kind == PolicyKind::kQueue);
      return run.go(&r, initial, name);
    }
    case PolicyKind::kOracle: {
      // The cheapest such schedule that holds the SLO: the share of the SLO capacity
      // it sizes groups at is bisected down from 1 until attainment reaches the goal.
      auto at_share = [&](double share) {
        SimOptions sized = options;
        sized.slo_capacity_tokens_per_s *= share;
        OracleRecommender r(groups_needed(trace, sized), sized);
        Run fresh(trace, capacity, options);
        return fresh.go(&r, r.at(0), name);
      };
      PolicyResult best = at_share(1);
      if (best.slo_attainment >= options.oracle_attainment) return best;
      double lo = 0.3, hi = 1;
      best = at_share(lo);
      if (best.slo_attainment < options.oracle_attainment) return best;
      for (int i = 0; i < 5; ++i) {
        const double mid = (lo + hi) / 2;
        PolicyResult r = at_share(mid);
        if (r.slo_attainment >= options.oracle_attainment) {
          lo = mid;
          best = std::move(r);
        } else {
          hi = mid;
        }
      }
      return best;
    }
  }
  return {};
}

}  // namespace moeserve::sim
