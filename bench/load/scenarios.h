// bench-load's scenarios on a real moeserve-worker (worker_process.h) over loopback,
// each bounded in time and count:
//   capacity  closed loop at max_num_seqs concurrent requests for capacity_s: completed
//             requests/s, the reference the others scale;
//   soak      Poisson at rate_fraction x capacity for duration_s, /proc sampled every
//             sample_interval_s: zero failed requests, resident memory and descriptors
//             flat within the stated bounds;
//   overload  overload_factor x capacity for overload_s (the worker's --max-queue
//             fills: 429 with Retry-After), then recovery_factor x capacity for
//             recovery_s: the worker stays up and serves every request again;
//   drain     Poisson load, SIGTERM at sigterm_at_s (or, past it, once a stream is
//             open, within the run): every request in flight then
//             completes, later ones are refused (503 or connection refused), exit 0;
//   memory    four concurrent prompts of prompt_bytes each: resident memory idle
//             before, at the peak, and idle after.
// Results are plain structs; printing is the caller's. A worker that cannot start is an
// error Status, not a failed scenario.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/load/load_generator.h"
#include "bench/load/load_report.h"
#include "bench/load/worker_process.h"

namespace moeserve::load {

struct ScenarioOptions {
  std::string worker_binary;
  std::string dir;  // the model, the worker's log
  int64_t threads = 1;
  int64_t max_num_seqs = 8;
  int64_t max_queue = 16;
  int64_t prompt_tokens = 32;
  int64_t output_tokens = 16;
  double capacity_s = 20;
  double capacity_rps = 0;  // > 0: use it instead of measuring
  uint64_t seed = 1;
};

// The worker flags every scenario passes (threads, max-num-seqs, max-queue, warn logs).
std::vector<std::string> worker_flags(const ScenarioOptions& options);

// Closed-loop capacity of the running worker at `url`: completed requests/s.
double measure_capacity(const std::string& url, const ScenarioOptions& options);

struct SoakOptions {
  double rate_fraction = 0.8;
  double duration_s = 1800;
  double sample_interval_s = 10;
  double warmup_fraction = 0.1;          // samples before this share of the run are warm-up
  int64_t rss_bound_bytes = 16ll << 20;  // idle RSS at the end minus the first warm sample
  int64_t fd_bound = 4;                  // idle descriptors at the end minus before the load
};
struct SoakResult {
  double capacity_rps = 0;
  double rate_rps = 0;
  LoadReport report;
  int64_t delayed_by_cap = 0;
  std::vector<ProcSample> samples;  // under load, every sample_interval_s
  ProcSample idle_before, idle_after;
  int64_t rss_growth_bytes = 0;
  int64_t fd_growth = 0;
  bool passed(const SoakOptions& o) const {
    return report.failed() == 0 && report.rate_limited == 0 &&
           rss_growth_bytes <= o.rss_bound_bytes && fd_growth <= o.fd_bound;
  }
};
StatusOr<SoakResult> run_soak(const ScenarioOptions& options, const SoakOptions& soak);

// One second (or `width_s`) of a run, by the time its requests were sent.
struct Window {
  double start_s = 0;
  int64_t sent = 0;
  int64_t ok = 0;
  int64_t rate_limited = 0;
  int64_t failed = 0;
  double ttft_p50_s = 0;  // of the successful ones
};
// The run's requests bucketed by started_s into consecutive windows from 0.
std::vector<Window> windows_of(const std::vector<TimedResult>& requests, double width_s);

struct OverloadOptions {
  double overload_factor = 3;
  double overload_s = 20;
  double recovery_factor = 0.5;
  double recovery_s = 20;
};
struct OverloadResult {
  double capacity_rps = 0;
  LoadReport overload;  // requests scheduled during the overload
  LoadReport recovery;  // requests scheduled after the drop
  // From the drop to the start of the first request after which every request
  // succeeded; 0 when none failed after the drop; -1 when the last one still failed.
  double time_to_full_service_s = -1;
  bool worker_alive = false;    // running and ready after the run
  std::vector<Window> windows;  // 1 s each, the whole run
};
StatusOr<OverloadResult> run_overload(const ScenarioOptions& options, const OverloadOptions& o);

struct DrainOptions {
  double rate_fraction = 0.8;
  double load_s = 10;
  double sigterm_at_s = 5;
  double grace_s = 30;  // the worker's --shutdown-grace-seconds
};
struct DrainResult {
  double capacity_rps = 0;
  double sigterm_s = -1;             // when SIGTERM went, from the load's start; -1: never
  int64_t in_flight_at_sigterm = 0;  // started before SIGTERM, ended after it
  int64_t completed_of_in_flight = 0;
  int64_t lost = 0;  // sent before SIGTERM without a whole answer, or broken mid-stream
  int64_t refused_after_sigterm = 0;  // 503 or connection refused, sent after SIGTERM
  int64_t ok = 0;
  int exit_code = -1;  // the worker's; -1 when it had not exited within grace + 10 s
};
StatusOr<DrainResult> run_drain(const ScenarioOptions& options, const DrainOptions& o);

struct MemoryOptions {
  int64_t prompt_bytes = 6 << 20;
  int64_t concurrent = 4;
  double settle_s = 3;  // idle time before the last sample
};
struct MemoryResult {
  int64_t rss_idle_before = 0;
  int64_t rss_peak = 0;  // the highest sample taken every 50 ms during the requests
  int64_t rss_idle_after = 0;
  std::vector<int> statuses;  // each prompt's HTTP status
};
StatusOr<MemoryResult> run_memory(const ScenarioOptions& options, const MemoryOptions& o);

}  // namespace moeserve::load
