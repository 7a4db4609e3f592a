// moeserve-autoscale-sim: replays a request trace (a public LLM trace or a synthetic
// one) through the capacity model of bench/sim under the autoscaling policies and
// compares cost and latency (docs/autoscaling-sim.md). Bad input exits 2.
//
// moeserve-autoscale-sim --trace FILE [--format auto|azure|burstgpt|mooncake|csv]
//     [--policy moeserve|static-peak|utilization|queue|oracle|all] [--demand-scale X]
//     [--capacity FILE] [--startup-s S] [--slo-ttft-s T] [--json] [--plot FILE.png]
// moeserve-autoscale-sim --synthetic diurnal|bursty|onoff [--duration-s S] [--peak-rps R]
//     [--seed N] [--write-trace FILE] ...
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "bench/sim/capacity.h"
#include "bench/sim/report.h"
#include "bench/sim/simulator.h"
#include "bench/sim/trace.h"
#include "common/flags.h"

namespace {

using namespace moeserve::sim;

int fail(const std::string& message) {
  std::cerr << "moeserve-autoscale-sim: " << message << "\n";
  return 2;
}

bool write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  std::string trace_path, format_name = "auto", policy_name_flag = "all", synthetic;
  std::string capacity_path = "bench/capacity-deepseek-v3-8xh200.json", plot_path, write_trace;
  double demand_scale = 1, jitter_s = 2, startup_s = -1;
  double duration_s = -1, peak_rps = -1;
  int64_t seed = 1, max_groups = 0, scale_to_zero_s = 0;
  bool json = false, reasons = false;
  SimOptions options;
  moeserve::FlagSet flags(
      "moeserve-autoscale-sim (--trace FILE | --synthetic NAME) [flags]",
      "Replays a request trace through the autoscaling policies against a group capacity "
      "model and reports cost per million tokens and SLO attainment per policy.");
  flags.add_string("trace", &trace_path, "request trace file");
  flags.add_string("format", &format_name, "auto, azure, burstgpt, mooncake or csv");
  flags.add_string("synthetic", &synthetic, "generate a trace: diurnal, bursty or onoff");
  flags.add_double("duration-s", &duration_s, "synthetic trace length (default 6 h)");
  flags.add_double("peak-rps", &peak_rps, "synthetic requests/s at the diurnal peak");
  flags.add_int("seed", &seed, "synthetic trace and demand-scale jitter seed");
  flags.add_string("write-trace", &write_trace, "also write the (scaled) trace as CSV here");
  flags.add_string("policy", &policy_name_flag,
                   "moeserve, static-peak, utilization, queue, oracle or all");
  flags.add_double("demand-scale", &demand_scale, "replicate arrivals this many times (> 0)");
  flags.add_double("jitter-s", &jitter_s, "demand-scale copies move by up to this much");
  flags.add_string("capacity", &capacity_path, "group capacity JSON (bench/capacity-*.json)");
  flags.add_double("startup-s", &startup_s,
                   "a new group's start-up (default: the capacity file's)");
  flags.add_double("slo-ttft-s", &options.slo_ttft_s, "time-to-first-token SLO");
  flags.add_double("slo-tpot-s", &options.slo_tpot_s, "time-per-output-token SLO");
  flags.add_double("interval-s", &options.interval_s, "seconds between autoscaling decisions");
  flags.add_double("target-utilization", &options.target_utilization,
                   "utilization/queue: their tokens/s target as a share of what one group serves "
                   "within the SLO");
  flags.add_int("max-groups", &max_groups, "maxReplicas (0: twice the static-peak groups)");
  flags.add_int("scale-to-zero-after-s", &scale_to_zero_s,
                "moeserve: scale to zero after this idle time (0: off)");
  flags.add_bool("json", &json, "one JSON object per policy");
  flags.add_string("plot", &plot_path, "draw demand, capacity and groups to this PNG (gnuplot)");
  flags.add_bool("reasons", &reasons, "print the reason of each scale event");
  std::vector<std::string> args(argv + 1, argv + argc);
  if (auto s = flags.parse(args); !s.ok()) return fail(s.to_string());
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  if (trace_path.empty() == synthetic.empty()) {
    return fail("give exactly one of --trace FILE and --synthetic NAME");
  }
  if (!(demand_scale > 0)) return fail("--demand-scale must be > 0");
  if (!(options.target_utilization > 0 && options.target_utilization <= 1)) {
    return fail("--target-utilization must be in (0, 1]");
  }
  if (!(options.interval_s > 0) || !(options.slo_ttft_s > 0) || !(options.slo_tpot_s > 0)) {
    return fail("--interval-s, --slo-ttft-s and --slo-tpot-s must be > 0");
  }
  if (max_groups < 0 || scale_to_zero_s < 0) {
    return fail("--max-groups and --scale-to-zero-after-s must be >= 0");
  }
  if (!synthetic.empty() && flags.is_set("format")) return fail("--format needs --trace");
  if (synthetic.empty() && (duration_s >= 0 || peak_rps >= 0)) {
    return fail("--duration-s and --peak-rps need --synthetic");
  }

  std::vector<Request> trace;
  if (!synthetic.empty()) {
    auto o = synthetic_preset(synthetic);
    if (!o.ok()) return fail(o.status().message());
    if (duration_s >= 0) o->duration_s = duration_s;
    if (peak_rps >= 0) o->peak_rps = peak_rps;
    if (!(o->duration_s > 0) || !(o->peak_rps > 0)) {
      return fail("--duration-s and --peak-rps must be > 0");
    }
    o->seed = static_cast<uint64_t>(seed);
    trace = synthetic_trace(*o);
  } else {
    auto format = parse_trace_format(format_name);
    if (!format.ok()) return fail(format.status().message());
    auto read = read_trace_file(trace_path, *format);
    if (!read.ok()) return fail(read.status().message());
    trace = std::move(read).value();
  }
  trace = scale_demand(trace, demand_scale, jitter_s, static_cast<uint64_t>(seed) + 1);
  if (trace.empty()) return fail("the trace has no requests");
  if (!write_trace.empty() && !write_text(write_trace, to_csv(trace))) {
    return fail(write_trace + ": cannot write");
  }

  auto capacity = read_capacity_file(capacity_path);
  if (!capacity.ok()) return fail(capacity.status().message());
  std::vector<PolicyKind> policies;
  if (policy_name_flag == "all") {
    policies.assign(std::begin(kAllPolicies), std::end(kAllPolicies));
  } else {
    auto kind = parse_policy(policy_name_flag);
    if (!kind.ok()) return fail(kind.status().message());
    policies.push_back(*kind);
  }
  if (!plot_path.empty() && std::system("command -v gnuplot > /dev/null 2>&1") != 0) {
    return fail("--plot needs gnuplot (Debian: apt-get install gnuplot-nox)");
  }

  double prompt = 0, output = 0;
  for (const Request& r : trace) {
    prompt += static_cast<double>(r.prompt_tokens);
    output += static_cast<double>(r.output_tokens);
  }
  const double n = static_cast<double>(trace.size());
  options.startup_s = startup_s >= 0 ? startup_s : capacity->startup_s;
  options.slo_capacity_tokens_per_s = slo_capacity_tokens_per_s(trace, *capacity, options);
  if (!(options.slo_capacity_tokens_per_s > 0)) {
    return fail(
        "one group cannot hold the SLO even at the lowest load: loosen --slo-ttft-s "
        "or --slo-tpot-s");
  }
  options.max_groups =
      max_groups > 0 ? static_cast<int32_t>(max_groups) : 2 * static_peak_groups(trace, options);
  if (scale_to_zero_s > 0) options.scale_to_zero_after_s = static_cast<int32_t>(scale_to_zero_s);

  std::vector<PolicyResult> results;
  for (PolicyKind kind : policies) results.push_back(simulate(trace, *capacity, options, kind));

  if (json) {
    for (const PolicyResult& r : results) std::cout << json_line(r);
  } else {
    std::printf(
        "trace: %zu requests over %.2f h, mean prompt %.0f / output %.0f tokens, peak 60 s "
        "demand %d groups\n",
        trace.size(), trace.back().arrival_s / 3600, prompt / n, output / n,
        static_peak_groups(trace, options));
    std::printf(
        "capacity: %s; %.0f tokens/s per group within the SLO (99 %% at constant load), "
        "the recipes' target %.0f%% of it, $%.2f per group-hour, start-up %.0f s\nSLO: TTFT <= "
        "%.2f s and TPOT <= %.3f s\n\n",
        capacity->name.c_str(), options.slo_capacity_tokens_per_s, options.target_utilization * 100,
        capacity->usd_per_group_hour, options.startup_s, options.slo_ttft_s, options.slo_tpot_s);
    std::cout << table(results);
  }
  if (reasons) {
    for (const PolicyResult& r : results) {
      for (const std::string& why : r.reasons) std::cout << r.policy << " " << why << "\n";
    }
  }
  if (!plot_path.empty()) {
    const std::string data = plot_path + ".dat", script = plot_path + ".gp";
    if (!write_text(data, plot_data(results, options.slo_capacity_tokens_per_s)) ||
        !write_text(script, plot_script(results, data, plot_path))) {
      return fail(plot_path + ": cannot write the plot data");
    }
    if (std::system(("gnuplot '" + script + "'").c_str()) != 0) {
      return fail("gnuplot failed on " + script);
    }
  }
  return 0;
}
