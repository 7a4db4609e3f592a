// The autoscaling trace simulator: replays a synthetic day of load (a diurnal curve with
// bursts and noise, seeded) through the operator's real autoscaling policy and
// scale-down stabilizer (operator/autoscaler/policy.h) against a simple group capacity
// model, and compares it in the same run with a static deployment provisioned for the
// peak. Prints groups over the day, SLO violations and cost per million tokens.
//
// The model (stated, not measured): a group serves up to --group-capacity tokens/s
// (DeepSeek's published day works out to ~40k tokens/s of all kinds per 8-GPU node, so
// ~80k for a 16-GPU group; the default 60k leaves headroom); demand beyond capacity
// queues. TTFT p95 = base / (1 - utilization) while nothing is queued, plus the time
// to drain the queue when something is. A new group serves only after --startup-s; it
// is paid for from creation. Each step is one autoscaler interval.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "common/flags.h"
#include "operator/autoscaler/policy.h"

namespace {

using moeserve::autoscaler::Decision;
using moeserve::autoscaler::PolicyInput;
using moeserve::autoscaler::PolicySpec;
using moeserve::autoscaler::Stabilizer;

struct Model {
  double group_capacity = 60000;  // tokens/s one group serves
  double base_ttft_s = 0.4;       // p95 at low utilization
  double startup_s = 240;         // a new group loads the model this long
  double usd_per_group_hour = 32;
  double tokens_per_request = 1500;
};

struct Load {
  double peak = 600000;  // tokens/s at the diurnal peak
  double trough = 0.25;  // trough as a fraction of the peak
  int bursts = 8;        // bursts of +40..100 % lasting 5..30 min
  double noise = 0.05;   // relative, per step
  uint64_t seed = 1;
};

// Demand in tokens/s for each step of a day.
std::vector<double> make_trace(const Load& load, double step_s) {
  const int steps = static_cast<int>(86400 / step_s);
  std::mt19937_64 rng(load.seed);
  std::uniform_real_distribution<double> unit(0, 1);
  std::normal_distribution<double> noise(0, load.noise);
  std::vector<double> burst(steps, 0.0);
  for (int b = 0; b < load.bursts; ++b) {
    const int start = static_cast<int>(unit(rng) * steps);
    const int length = static_cast<int>((300 + unit(rng) * 1500) / step_s);
    const double height = 0.4 + 0.6 * unit(rng);
    for (int i = start; i < std::min(steps, start + length); ++i) burst[i] += height;
  }
  std::vector<double> out(steps);
  for (int i = 0; i < steps; ++i) {
    const double t = i * step_s;
    // Trough at 04:00, peak at 16:00.
    const double diurnal = 0.5 * (1 - std::cos(2 * M_PI * (t - 4 * 3600) / 86400));
    const double base = load.peak * (load.trough + (1 - load.trough) * diurnal);
    out[i] = std::max(0.0, base * (1 + burst[i]) * (1 + noise(rng)));
  }
  return out;
}

struct Totals {
  double served_tokens = 0;
  double group_seconds = 0;
  int slo_violation_steps = 0;
  int max_groups = 0;
  double max_ttft = 0;
  int scale_events = 0;
  std::vector<int> groups_per_step;
};

// One deployment under the trace, its groups following the policy (min = max pins them:
// the static baseline). It starts with `initial` ready groups (as if it had been running).
Totals simulate(const std::vector<double>& demand, double step_s, const Model& model,
                const PolicySpec& policy, int initial) {
  Totals totals;
  std::deque<double> starting;  // seconds until each starting group is ready
  int ready = std::clamp(initial, policy.min_replicas, policy.max_replicas);
  int desired = ready;
  double backlog = 0;  // tokens queued
  std::deque<double> served_history;
  Stabilizer stabilizer;
  moeserve::Clock::TimePoint now;
  double measured_ttft = model.base_ttft_s;
  for (size_t i = 0; i < demand.size(); ++i) {
    now += std::chrono::seconds(static_cast<int64_t>(step_s));
    // Groups that finished loading start serving.
    for (double& left : starting) left -= step_s;
    while (!starting.empty() && starting.front() <= 0) {
      starting.pop_front();
      ++ready;
    }
    const double capacity = ready * model.group_capacity;
    const double offered = demand[i] + backlog / step_s;
    const double served = std::min(offered, capacity);
    backlog = (offered - served) * step_s;
    const double utilization = capacity > 0 ? std::min(0.99, served / capacity) : 0.99;
    const double ttft =
        model.base_ttft_s / (1 - utilization) + (capacity > 0 ? backlog / capacity : 3600.0);
    const int existing = ready + static_cast<int>(starting.size());
    totals.served_tokens += served * step_s;
    totals.group_seconds += existing * step_s;
    totals.max_groups = std::max(totals.max_groups, existing);
    totals.max_ttft = std::max(totals.max_ttft, ttft);
    totals.groups_per_step.push_back(existing);
    if (policy.ttft_p95_slo_seconds && ttft > *policy.ttft_p95_slo_seconds) {
      ++totals.slo_violation_steps;
    }
    measured_ttft = ttft;

    // The autoscaler's view: tokens/s over the last minute, TTFT and queue now.
    served_history.push_back(served);
    if (served_history.size() * step_s > 60) served_history.pop_front();
    double rate = 0;
    for (double s : served_history) rate += s;
    rate /= static_cast<double>(served_history.size());
    const PolicyInput input{desired, ready, rate, measured_ttft,
                            backlog / model.tokens_per_request};
    const Decision raw = moeserve::autoscaler::recommend(policy, input);
    const Decision decision = stabilizer.apply(
        now, std::chrono::seconds(policy.scale_down_stabilization_seconds), desired, raw);
    if (decision.replicas == desired) continue;
    ++totals.scale_events;
    if (decision.replicas > desired) {
      for (int g = desired; g < decision.replicas; ++g) starting.push_back(model.startup_s);
    } else {
      // Scale-down removes the newest groups first: starting ones, then ready ones.
      int remove = desired - decision.replicas;
      while (remove > 0 && !starting.empty()) {
        starting.pop_back();
        --remove;
      }
      ready -= remove;
    }
    desired = decision.replicas;
  }
  return totals;
}

double usd_per_mtok(const Totals& t, const Model& m) {
  return t.group_seconds / 3600 * m.usd_per_group_hour / (t.served_tokens / 1e6);
}

void report(const char* name, const Totals& t, const Model& m, double step_s) {
  std::printf("%-26s %8.3f %10.1f %9.1f %9d %11.1f %8.2f %7d\n", name, usd_per_mtok(t, m),
              t.group_seconds / 3600, t.served_tokens / 1e9, t.max_groups,
              t.slo_violation_steps * step_s / 60, t.max_ttft, t.scale_events);
}

}  // namespace

int main(int argc, char** argv) {
  Model model;
  Load load;
  double step_s = 15;
  double target_utilization = 0.7;
  double slo_s = 2.0;
  int64_t seed = 1, bursts = 8, stabilization_s = 300;
  moeserve::FlagSet flags("bench-autoscaling [flags]",
                          "Replays a synthetic day of load through the autoscaling policy and "
                          "compares it with a static peak-provisioned deployment.");
  flags.add_double("peak-tokens-per-s", &load.peak, "demand at the diurnal peak");
  flags.add_double("group-capacity", &model.group_capacity, "tokens/s one group serves");
  flags.add_double("startup-s", &model.startup_s, "seconds a new group needs to serve");
  flags.add_double("usd-per-group-hour", &model.usd_per_group_hour, "price of one group");
  flags.add_double("target-utilization", &target_utilization,
                   "targetTokensPerSecondPerGroup as a fraction of the capacity");
  flags.add_double("slo-s", &slo_s, "ttftP95SloSeconds");
  flags.add_int("stabilization-s", &stabilization_s, "scaleDownStabilizationSeconds");
  flags.add_int("bursts", &bursts, "bursts in the day");
  flags.add_int("seed", &seed, "trace seed");
  flags.add_double("step-s", &step_s, "autoscaler interval");
  std::vector<std::string> args(argv + 1, argv + argc);
  if (auto s = flags.parse(args); !s.ok()) {
    std::cerr << s.to_string() << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  load.seed = static_cast<uint64_t>(seed);
  load.bursts = static_cast<int>(bursts);
  const std::vector<double> demand = make_trace(load, step_s);
  const double peak = *std::max_element(demand.begin(), demand.end());

  PolicySpec policy;
  policy.min_replicas = 1;
  policy.max_replicas = 64;
  policy.target_tokens_per_second_per_group = target_utilization * model.group_capacity;
  policy.ttft_p95_slo_seconds = slo_s;
  policy.scale_down_stabilization_seconds = static_cast<int32_t>(stabilization_s);
  policy.usd_per_group_hour = model.usd_per_group_hour;
  policy.max_waiting_per_group = 16;
  // The static baseline: enough groups for the trace's peak at the same utilization.
  const int static_groups =
      static_cast<int>(std::ceil(peak / (target_utilization * model.group_capacity)));
  PolicySpec pinned = policy;
  pinned.min_replicas = pinned.max_replicas = static_groups;

  const int initial =
      static_cast<int>(std::ceil(demand[0] / *policy.target_tokens_per_second_per_group));
  const Totals autoscaled = simulate(demand, step_s, model, policy, initial);
  const Totals baseline = simulate(demand, step_s, model, pinned, static_groups);

  std::printf(
      "trace: 24 h in %zu steps of %.0f s, peak %.0f tokens/s (diurnal %.0f%%..100%%, "
      "%d bursts, seed %lld)\n",
      demand.size(), step_s, peak, load.trough * 100, load.bursts, static_cast<long long>(seed));
  std::printf(
      "model: %.0f tokens/s per group, startup %.0f s, $%.2f per group-hour; policy: "
      "target %.0f tokens/s/group, TTFT p95 SLO %.1f s, stabilization %lld s\n\n",
      model.group_capacity, model.startup_s, model.usd_per_group_hour,
      *policy.target_tokens_per_second_per_group, slo_s, static_cast<long long>(stabilization_s));
  std::printf("%5s %12s %11s %9s\n", "hour", "demand tok/s", "autoscaled", "static");
  const size_t per_hour = static_cast<size_t>(3600 / step_s);
  for (size_t h = 0; h < 24; ++h) {
    double mean = 0;
    int groups_max = 0;
    for (size_t i = h * per_hour; i < std::min(demand.size(), (h + 1) * per_hour); ++i) {
      mean += demand[i] / static_cast<double>(per_hour);
      groups_max = std::max(groups_max, autoscaled.groups_per_step[i]);
    }
    std::printf("%5zu %12.0f %11d %9d\n", h, mean, groups_max, static_groups);
  }
  std::printf("\n%-26s %8s %10s %9s %9s %11s %8s %7s\n", "", "$/Mtok", "group-h", "Gtokens",
              "max grps", "SLO-viol m", "max TTFT", "scales");
  report("autoscaled", autoscaled, model, step_s);
  report("static (peak-provisioned)", baseline, model, step_s);
  std::printf("\ncost per million tokens, autoscaled / static: %.3f\n",
              usd_per_mtok(autoscaled, model) / usd_per_mtok(baseline, model));
  return 0;
}
