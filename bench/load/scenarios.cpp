#include "bench/load/scenarios.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

#include "bench/load/arrivals.h"
#include "bench/load/load_generator.h"
#include "common/http_client.h"
#include "common/log.h"

namespace moeserve::load {
namespace {

using SteadyClock = std::chrono::steady_clock;

double seconds_since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

LoadOptions load_options(const std::string& url, const ScenarioOptions& options, int64_t cap) {
  LoadOptions lo;
  lo.base_url = url;
  lo.model = "tiny";
  lo.concurrency_cap = cap;
  lo.prompt_seed = options.seed * 1000003;
  return lo;
}

std::vector<sim::Request> poisson(const ScenarioOptions& options, double rate, double duration_s,
                                  uint64_t seed) {
  PoissonOptions p;
  p.rate_per_s = rate;
  p.duration_s = duration_s;
  p.prompt_tokens = options.prompt_tokens;
  p.output_tokens = options.output_tokens;
  p.seed = seed;
  return poisson_schedule(p);
}

// The client threads a Poisson run needs: enough for every request the worker can hold
// (running and queued), plus a few for refusals in flight. The worker's HTTP server has
// max_num_seqs + max_queue + 16 handler threads, so this never waits on those.
int64_t open_loop_cap(const ScenarioOptions& options) {
  return options.max_num_seqs + options.max_queue + 8;
}

StatusOr<std::unique_ptr<WorkerProcess>> start_worker(const ScenarioOptions& options,
                                                      std::vector<std::string> more_flags = {}) {
  WorkerOptions wo;
  wo.binary = options.worker_binary;
  wo.dir = options.dir;
  wo.extra_args = worker_flags(options);
  wo.extra_args.insert(wo.extra_args.end(), more_flags.begin(), more_flags.end());
  return WorkerProcess::start(wo);
}

double capacity_of(const std::string& url, const ScenarioOptions& options) {
  if (options.capacity_rps > 0) return options.capacity_rps;
  const double rps = measure_capacity(url, options);
  log::info("load: capacity measured", {{"requests_per_s", rps},
                                        {"concurrency", options.max_num_seqs},
                                        {"seconds", options.capacity_s}});
  return rps;
}

// Samples `pid` every interval until `stop`; the samples' at_s count from `start`.
class Sampler {
 public:
  Sampler(pid_t pid, double interval_s, SteadyClock::time_point start)
      : thread_([this, pid, interval_s, start] {
          auto at = start;
          while (!stop_.load()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            if (SteadyClock::now() < at) continue;
            at += std::chrono::duration_cast<SteadyClock::duration>(
                std::chrono::duration<double>(interval_s));
            StatusOr<ProcSample> s = sample_process(pid);
            if (!s.ok()) continue;
            s->at_s = seconds_since(start);
            log::info("load: sample",
                      {{"at_s", s->at_s}, {"rss_bytes", s->rss_bytes}, {"open_fds", s->open_fds}});
            samples_.push_back(*s);
          }
        }) {}
  // Stops sampling and returns the series.
  std::vector<ProcSample> finish() {
    stop_ = true;
    thread_.join();
    return std::move(samples_);
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<ProcSample> samples_;
  std::thread thread_;
};

// Waits for the worker to go idle after a run (no request running) and samples it.
StatusOr<ProcSample> idle_sample(pid_t pid) {
  std::this_thread::sleep_for(std::chrono::seconds(2));
  return sample_process(pid);
}

}  // namespace

std::vector<Window> windows_of(const std::vector<TimedResult>& requests, double width_s) {
  std::vector<Window> out;
  std::vector<std::vector<double>> ttft;
  for (const TimedResult& t : requests) {
    const size_t i = static_cast<size_t>(std::max(0.0, t.started_s) / width_s);
    while (out.size() <= i) {
      out.push_back({static_cast<double>(out.size()) * width_s});
      ttft.emplace_back();
    }
    Window& w = out[i];
    w.sent += 1;
    if (t.result.outcome == Outcome::kOk) {
      w.ok += 1;
      ttft[i].push_back(t.result.ttft_s);
    } else if (t.result.http_status == 429) {
      w.rate_limited += 1;
    } else {
      w.failed += 1;
    }
  }
  for (size_t i = 0; i < out.size(); ++i) out[i].ttft_p50_s = percentile(ttft[i], 0.5);
  return out;
}

std::vector<std::string> worker_flags(const ScenarioOptions& options) {
  return {"--threads",      std::to_string(options.threads),
          "--max-num-seqs", std::to_string(options.max_num_seqs),
          "--max-queue",    std::to_string(options.max_queue),
          "--log-level",    "warn"};
}

double measure_capacity(const std::string& url, const ScenarioOptions& options) {
  // Every arrival at 0: each client thread sends back to back, a closed loop of
  // max_num_seqs requests in flight, stopped after capacity_s.
  const std::vector<sim::Request> schedule(
      20000, sim::Request{0, options.prompt_tokens, options.output_tokens});
  std::atomic<bool> stop{false};
  std::thread timer([&] {
    const auto end = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                              std::chrono::duration<double>(options.capacity_s));
    while (!stop.load() && SteadyClock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    stop = true;
  });
  LoadOptions lo = load_options(url, options, options.max_num_seqs);
  lo.log_progress = false;
  const LoadRun run = run_load(schedule, lo, &stop);
  stop = true;
  timer.join();
  return summarize(results_of(run), run.wall_s).requests_per_s;
}

StatusOr<SoakResult> run_soak(const ScenarioOptions& options, const SoakOptions& soak) {
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<WorkerProcess> worker, start_worker(options));
  SoakResult r;
  r.capacity_rps = capacity_of(worker->url(), options);
  r.rate_rps = soak.rate_fraction * r.capacity_rps;
  MOESERVE_ASSIGN_OR_RETURN(r.idle_before, idle_sample(worker->pid()));
  const std::vector<sim::Request> schedule =
      poisson(options, r.rate_rps, soak.duration_s, options.seed);
  const auto start = SteadyClock::now();
  Sampler sampler(worker->pid(), soak.sample_interval_s, start);
  const LoadRun run =
      run_load(schedule, load_options(worker->url(), options, open_loop_cap(options)));
  r.samples = sampler.finish();
  r.report = summarize(results_of(run), run.wall_s);
  r.delayed_by_cap = run.delayed_by_cap;
  MOESERVE_ASSIGN_OR_RETURN(r.idle_after, idle_sample(worker->pid()));
  // The memory reference: the first sample after the warm-up (allocator arenas and the
  // KV cache reach their working size in the first minutes), else the idle one.
  ProcSample reference = r.idle_before;
  for (const ProcSample& s : r.samples) {
    if (s.at_s >= soak.warmup_fraction * soak.duration_s) {
      reference = s;
      break;
    }
  }
  r.rss_growth_bytes = r.idle_after.rss_bytes - reference.rss_bytes;
  r.fd_growth = r.idle_after.open_fds - r.idle_before.open_fds;
  return r;
}

StatusOr<OverloadResult> run_overload(const ScenarioOptions& options, const OverloadOptions& o) {
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<WorkerProcess> worker, start_worker(options));
  OverloadResult r;
  r.capacity_rps = capacity_of(worker->url(), options);
  std::vector<sim::Request> schedule =
      poisson(options, o.overload_factor * r.capacity_rps, o.overload_s, options.seed);
  for (sim::Request q :
       poisson(options, o.recovery_factor * r.capacity_rps, o.recovery_s, options.seed + 1)) {
    q.arrival_s += o.overload_s;
    schedule.push_back(q);
  }
  const LoadRun run =
      run_load(schedule, load_options(worker->url(), options, open_loop_cap(options)));
  std::vector<CompletionResult> during, after;
  double last_failure_s = -1;
  double last_start_s = -1;
  for (const TimedResult& t : run.requests) {
    (t.scheduled_s < o.overload_s ? during : after).push_back(t.result);
    if (t.started_s < o.overload_s) continue;
    last_start_s = std::max(last_start_s, t.started_s);
    if (t.result.outcome != Outcome::kOk) last_failure_s = std::max(last_failure_s, t.started_s);
  }
  r.overload = summarize(during, o.overload_s);
  r.recovery = summarize(after, std::max(0.0, run.wall_s - o.overload_s));
  if (last_failure_s < 0) {
    r.time_to_full_service_s = 0;
  } else if (last_failure_s < last_start_s) {
    r.time_to_full_service_s = last_failure_s - o.overload_s;
  }
  r.windows = windows_of(run.requests, 1.0);
  r.worker_alive = !worker->wait_for(std::chrono::milliseconds(0)).has_value() &&
                   wait_ready(worker->url(), std::chrono::seconds(5));
  return r;
}

StatusOr<DrainResult> run_drain(const ScenarioOptions& options, const DrainOptions& o) {
  char grace[32];
  std::snprintf(grace, sizeof grace, "%g", o.grace_s);
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<WorkerProcess> worker,
                            start_worker(options, {"--shutdown-grace-seconds", grace}));
  DrainResult r;
  r.capacity_rps = capacity_of(worker->url(), options);
  const std::vector<sim::Request> schedule =
      poisson(options, o.rate_fraction * r.capacity_rps, o.load_s, options.seed);
  std::atomic<bool> done{false};
  std::atomic<double> sigterm_s{-1};
  std::atomic<int64_t> open_streams{0};
  const auto start = SteadyClock::now();
  std::thread killer([&] {
    // At sigterm_at_s, or as soon after as a stream is open (a drain with nothing in
    // flight tests nothing), but within the run.
    auto waiting = [&] {
      const double t = seconds_since(start);
      return t < o.sigterm_at_s || (open_streams.load() == 0 && t < o.load_s);
    };
    while (!done.load() && waiting()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (done.load()) return;
    sigterm_s = seconds_since(start);
    worker->signal(SIGTERM);
    log::info("load: SIGTERM sent to the worker", {{"at_s", sigterm_s.load()}});
  });
  LoadOptions lo = load_options(worker->url(), options, open_loop_cap(options));
  lo.timeout_ms = static_cast<int64_t>((o.grace_s + 10) * 1000);
  lo.open_streams = &open_streams;
  const LoadRun run = run_load(schedule, lo);
  done = true;
  killer.join();
  const double t_sig = sigterm_s.load();
  r.sigterm_s = t_sig;
  for (const TimedResult& t : run.requests) {
    const CompletionResult& c = t.result;
    r.ok += c.outcome == Outcome::kOk ? 1 : 0;
    const bool before = t_sig < 0 || t.started_s < t_sig;
    if (before && t.started_s + c.e2e_s > t_sig && t_sig >= 0 && c.http_status == 200) {
      r.in_flight_at_sigterm += 1;
      r.completed_of_in_flight += c.outcome == Outcome::kOk ? 1 : 0;
    }
    if (c.outcome == Outcome::kMidStream) {
      r.lost += 1;
    } else if (c.outcome != Outcome::kOk) {
      const bool refusal = c.http_status == 503 || c.outcome == Outcome::kConnection;
      if (!before && refusal) {
        r.refused_after_sigterm += 1;
      } else if (!(before && c.http_status == 503)) {
        // A 503 for a request sent just before the signal is a refusal the server made
        // while draining (it had not received it yet); anything else before is a loss.
        r.lost += 1;
      }
    }
  }
  const std::optional<int> code =
      worker->wait_for(std::chrono::milliseconds(static_cast<int64_t>((o.grace_s + 10) * 1000)));
  r.exit_code = code.value_or(-1);
  return r;
}

StatusOr<MemoryResult> run_memory(const ScenarioOptions& options, const MemoryOptions& o) {
  MOESERVE_ASSIGN_OR_RETURN(
      std::unique_ptr<WorkerProcess> worker,
      start_worker(options, {"--max-body-bytes", std::to_string(o.prompt_bytes + (1 << 20))}));
  MemoryResult r;
  MOESERVE_ASSIGN_OR_RETURN(ProcSample before, idle_sample(worker->pid()));
  r.rss_idle_before = before.rss_bytes;
  std::string text;
  text.reserve(static_cast<size_t>(o.prompt_bytes));
  while (static_cast<int64_t>(text.size()) + 12 <= o.prompt_bytes) text += "hello world ";
  const std::string body =
      nlohmann::json{{"model", "tiny"}, {"prompt", text}, {"max_tokens", 1}}.dump();
  http::ClientOptions co;
  co.request_timeout_ms = 300000;
  const http::Client client(co);
  r.statuses.assign(static_cast<size_t>(o.concurrent), 0);
  std::atomic<int64_t> running{o.concurrent};
  std::vector<std::thread> senders;
  for (int64_t i = 0; i < o.concurrent; ++i) {
    senders.emplace_back([&, i] {
      StatusOr<http::ClientResponse> resp = client.send({"POST",
                                                         worker->url() + "/v1/completions",
                                                         {{"Content-Type", "application/json"}},
                                                         body});
      r.statuses[static_cast<size_t>(i)] = resp.ok() ? resp->status : 0;
      running -= 1;
    });
  }
  while (running.load() > 0) {
    if (StatusOr<ProcSample> s = sample_process(worker->pid()); s.ok()) {
      r.rss_peak = std::max(r.rss_peak, s->rss_bytes);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (std::thread& t : senders) t.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(o.settle_s * 1000)));
  MOESERVE_ASSIGN_OR_RETURN(ProcSample after, sample_process(worker->pid()));
  r.rss_idle_after = after.rss_bytes;
  return r;
}

}  // namespace moeserve::load
