// bench-load: open-loop load on an OpenAI-compatible server, and the soak, overload,
// drain and memory scenarios on a tiny-model worker of its own (bench/load/, flags in
// bench/load/load_flags.h, how to run them in docs/serving.md, Load and soak).
//
// --url mode prints throughput (req/s, output tok/s), TTFT and inter-token latency
// p50/p90/p99, errors by kind and 429s apart; exit 0. A scenario prints its
// measurements and exits 0 when its checks hold, 1 when one failed, 2 on bad flags.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "bench/load/arrivals.h"
#include "bench/load/load_flags.h"
#include "bench/load/load_generator.h"
#include "bench/load/load_report.h"
#include "bench/load/scenarios.h"
#include "common/log.h"
#include "common/process.h"

namespace {

using namespace moeserve;
using namespace moeserve::load;
using nlohmann::json;

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

json sample_json(const ProcSample& s) {
  return {{"at_s", s.at_s}, {"rss_bytes", s.rss_bytes}, {"open_fds", s.open_fds}};
}

void print(bool as_json, const json& j, const std::string& text) {
  if (as_json) {
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s\n", text.c_str());
  }
}

int drive_url(const LoadFlags& f) {
  std::vector<sim::Request> schedule;
  if (f.rate > 0) {
    PoissonOptions p;
    p.rate_per_s = f.rate;
    p.duration_s = f.duration_s;
    p.max_requests = f.max_requests;
    p.prompt_tokens = f.prompt_tokens > 0 ? f.prompt_tokens : 32;
    p.output_tokens = f.max_tokens > 0 ? f.max_tokens : 16;
    p.seed = f.seed;
    schedule = poisson_schedule(p);
  } else {
    StatusOr<std::vector<sim::Request>> trace = sim::read_trace_file(f.trace, f.trace_format);
    if (!trace.ok()) {
      std::fprintf(stderr, "bench-load: --trace %s: %s\n", f.trace.c_str(),
                   trace.status().message().c_str());
      return 2;
    }
    schedule = limit_trace(std::move(trace).value(), {f.duration_s, f.max_requests, f.prompt_tokens,
                                                      f.max_tokens, f.max_output_tokens});
  }
  LoadOptions lo;
  lo.base_url = f.url;
  lo.model = f.model;
  lo.stream = f.stream;
  lo.concurrency_cap = f.concurrency_cap;
  lo.duration_s = f.duration_s;
  lo.prompt_seed = f.seed * 1000003;
  log::info("load: starting",
            {{"url", f.url}, {"requests", static_cast<int64_t>(schedule.size())}});
  const LoadRun run = run_load(schedule, lo);
  const LoadReport report = summarize(results_of(run), run.wall_s);
  json j = report_json(report);
  j["delayed_by_cap"] = run.delayed_by_cap;
  print(f.json, j,
        report_text(report) +
            "\ndelayed by the concurrency cap: " + std::to_string(run.delayed_by_cap));
  return 0;
}

int soak(const LoadFlags& f) {
  StatusOr<SoakResult> r = run_soak(f.scenario_options, f.soak);
  if (!r.ok()) {
    std::fprintf(stderr, "bench-load: soak: %s\n", r.status().to_string().c_str());
    return 1;
  }
  const bool passed = r->passed(f.soak);
  json series = json::array();
  char line[256];
  std::snprintf(line, sizeof line, "soak: capacity %.2f req/s, load %.2f req/s for %.0f s\n",
                r->capacity_rps, r->rate_rps, f.soak.duration_s);
  std::string text = line + report_text(r->report) +
                     "\ndelayed by the concurrency cap: " + std::to_string(r->delayed_by_cap) +
                     "\nseries (at_s rss_mib open_fds):";
  for (const ProcSample& s : r->samples) {
    series.push_back(sample_json(s));
    std::snprintf(line, sizeof line, "\n  %8.1f %9.1f %5lld", s.at_s, mib(s.rss_bytes),
                  static_cast<long long>(s.open_fds));
    text += line;
  }
  std::snprintf(line, sizeof line,
                "\nidle before: %.1f MiB, %lld fds; idle after: %.1f MiB, %lld fds",
                mib(r->idle_before.rss_bytes), static_cast<long long>(r->idle_before.open_fds),
                mib(r->idle_after.rss_bytes), static_cast<long long>(r->idle_after.open_fds));
  text += line;
  std::snprintf(line, sizeof line,
                "\nfailed %lld, 429 %lld (both must be 0); RSS growth after warm-up %.1f MiB "
                "(bound %.1f), fd growth %lld (bound %lld): %s",
                static_cast<long long>(r->report.failed()),
                static_cast<long long>(r->report.rate_limited), mib(r->rss_growth_bytes),
                mib(f.soak.rss_bound_bytes), static_cast<long long>(r->fd_growth),
                static_cast<long long>(f.soak.fd_bound), passed ? "PASS" : "FAIL");
  text += line;
  json j = {{"scenario", "soak"},
            {"capacity_rps", r->capacity_rps},
            {"rate_rps", r->rate_rps},
            {"duration_s", f.soak.duration_s},
            {"report", report_json(r->report)},
            {"delayed_by_cap", r->delayed_by_cap},
            {"samples", series},
            {"idle_before", sample_json(r->idle_before)},
            {"idle_after", sample_json(r->idle_after)},
            {"rss_growth_bytes", r->rss_growth_bytes},
            {"rss_bound_bytes", f.soak.rss_bound_bytes},
            {"fd_growth", r->fd_growth},
            {"fd_bound", f.soak.fd_bound},
            {"passed", passed}};
  print(f.json, j, text);
  return passed ? 0 : 1;
}

int overload(const LoadFlags& f) {
  StatusOr<OverloadResult> r = run_overload(f.scenario_options, f.overload);
  if (!r.ok()) {
    std::fprintf(stderr, "bench-load: overload: %s\n", r.status().to_string().c_str());
    return 1;
  }
  const bool refused_right = r->overload.rate_limited > 0 &&
                             r->overload.rate_limited_retry_after == r->overload.rate_limited;
  const bool passed = refused_right && r->worker_alive && r->time_to_full_service_s >= 0 &&
                      r->overload.failed() == 0;
  char line[256];
  std::snprintf(line, sizeof line,
                "overload: capacity %.2f req/s; %.1fx for %.0f s, then %.1fx for %.0f s",
                r->capacity_rps, f.overload.overload_factor, f.overload.overload_s,
                f.overload.recovery_factor, f.overload.recovery_s);
  std::string text = line;
  text += "\n-- during the overload\n" + report_text(r->overload);
  text += "\n-- after the drop\n" + report_text(r->recovery);
  std::snprintf(line, sizeof line, "\ntime to full service after the drop: %.2f s; worker %s: %s",
                r->time_to_full_service_s, r->worker_alive ? "up and ready" : "DOWN",
                passed ? "PASS" : "FAIL");
  text += line;
  text += "\nper second (start_s sent ok 429 failed ttft_p50_ms):";
  json windows = json::array();
  for (const Window& w : r->windows) {
    std::snprintf(line, sizeof line, "\n  %5.0f %5lld %5lld %5lld %4lld %8.1f", w.start_s,
                  static_cast<long long>(w.sent), static_cast<long long>(w.ok),
                  static_cast<long long>(w.rate_limited), static_cast<long long>(w.failed),
                  w.ttft_p50_s * 1e3);
    text += line;
    windows.push_back({{"start_s", w.start_s},
                       {"sent", w.sent},
                       {"ok", w.ok},
                       {"rate_limited", w.rate_limited},
                       {"failed", w.failed},
                       {"ttft_p50_s", w.ttft_p50_s}});
  }
  json j = {{"scenario", "overload"},
            {"windows", windows},
            {"capacity_rps", r->capacity_rps},
            {"overload", report_json(r->overload)},
            {"recovery", report_json(r->recovery)},
            {"time_to_full_service_s", r->time_to_full_service_s},
            {"worker_alive", r->worker_alive},
            {"passed", passed}};
  print(f.json, j, text);
  return passed ? 0 : 1;
}

int drain(const LoadFlags& f) {
  StatusOr<DrainResult> r = run_drain(f.scenario_options, f.drain);
  if (!r.ok()) {
    std::fprintf(stderr, "bench-load: drain: %s\n", r.status().to_string().c_str());
    return 1;
  }
  const bool passed =
      r->lost == 0 && r->exit_code == 0 && r->completed_of_in_flight == r->in_flight_at_sigterm;
  char text[512];
  std::snprintf(text, sizeof text,
                "drain: capacity %.2f req/s, load %.2f req/s, SIGTERM at %.1f s\n"
                "in flight at SIGTERM %lld, completed %lld; lost %lld; refused after SIGTERM "
                "%lld; ok %lld; worker exit code %d: %s",
                r->capacity_rps, f.drain.rate_fraction * r->capacity_rps, r->sigterm_s,
                static_cast<long long>(r->in_flight_at_sigterm),
                static_cast<long long>(r->completed_of_in_flight), static_cast<long long>(r->lost),
                static_cast<long long>(r->refused_after_sigterm), static_cast<long long>(r->ok),
                r->exit_code, passed ? "PASS" : "FAIL");
  json j = {{"scenario", "drain"},
            {"capacity_rps", r->capacity_rps},
            {"sigterm_s", r->sigterm_s},
            {"in_flight_at_sigterm", r->in_flight_at_sigterm},
            {"completed_of_in_flight", r->completed_of_in_flight},
            {"lost", r->lost},
            {"refused_after_sigterm", r->refused_after_sigterm},
            {"ok", r->ok},
            {"exit_code", r->exit_code},
            {"passed", passed}};
  print(f.json, j, text);
  return passed ? 0 : 1;
}

int memory(const LoadFlags& f) {
  StatusOr<MemoryResult> r = run_memory(f.scenario_options, f.memory);
  if (!r.ok()) {
    std::fprintf(stderr, "bench-load: memory: %s\n", r.status().to_string().c_str());
    return 1;
  }
  std::string statuses;
  for (int s : r->statuses) statuses += " " + std::to_string(s);
  char text[512];
  std::snprintf(text, sizeof text,
                "memory: %lld concurrent prompts of %.1f MiB (statuses:%s)\n"
                "RSS idle before %.1f MiB, peak %.1f MiB, idle after %.1f MiB",
                static_cast<long long>(f.memory.concurrent), mib(f.memory.prompt_bytes),
                statuses.c_str(), mib(r->rss_idle_before), mib(r->rss_peak),
                mib(r->rss_idle_after));
  json j = {{"scenario", "memory"},
            {"prompt_bytes", f.memory.prompt_bytes},
            {"concurrent", f.memory.concurrent},
            {"statuses", r->statuses},
            {"rss_idle_before_bytes", r->rss_idle_before},
            {"rss_peak_bytes", r->rss_peak},
            {"rss_idle_after_bytes", r->rss_idle_after}};
  print(f.json, j, text);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  StatusOr<ParsedLoadFlags> parsed = parse_load_flags(
      std::vector<std::string>(argv + 1, argv + argc), executable_dir() + "/moeserve-worker");
  if (!parsed.ok()) {
    std::fprintf(stderr, "bench-load: %s\n(see bench-load --help)\n",
                 parsed.status().message().c_str());
    return 2;
  }
  if (parsed->help) {
    std::cout << parsed->help_text;
    return 0;
  }
  log::configure(log::Level::kInfo, log::Format::kLogfmt, &std::cerr);
  LoadFlags f = parsed->flags;
  if (f.scenario == Scenario::kNone) return drive_url(f);
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("bench-load-" + std::to_string(::getpid())))
          .string();
  f.scenario_options.dir = dir;
  int code = 1;
  switch (f.scenario) {
    case Scenario::kSoak: code = soak(f); break;
    case Scenario::kOverload: code = overload(f); break;
    case Scenario::kDrain: code = drain(f); break;
    case Scenario::kMemory: code = memory(f); break;
    case Scenario::kNone: break;
  }
  if (code != 0) {
    std::fprintf(stderr, "bench-load: the worker's log is kept in %s\n", dir.c_str());
    return code;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return code;
}
