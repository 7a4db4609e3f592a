#include "bench/load/load_generator.h"

#include <chrono>
#include <thread>

#include "common/log.h"

namespace moeserve::load {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr double kDelayedThresholdS = 0.010;
constexpr auto kProgressInterval = std::chrono::seconds(10);

double seconds_since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

}  // namespace

LoadRun run_load(const std::vector<sim::Request>& schedule, const LoadOptions& options,
                 const std::atomic<bool>* stop) {
  const int64_t n = static_cast<int64_t>(schedule.size());
  std::vector<TimedResult> slots(schedule.size());
  std::vector<char> sent(schedule.size(), 0);
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0}, ok{0}, refused{0}, failed{0};
  std::atomic<bool> finished{false};
  http::ClientOptions client_options;
  client_options.connect_timeout_ms = 5000;
  client_options.request_timeout_ms = options.timeout_ms;
  const http::Client client(client_options);
  const auto start = SteadyClock::now();
  auto past_end = [&](double t) {
    return (options.duration_s > 0 && t >= options.duration_s) || (stop && stop->load());
  };
  auto client_loop = [&] {
    while (true) {
      const int64_t i = next.fetch_add(1);
      if (i >= n) return;
      const sim::Request& r = schedule[static_cast<size_t>(i)];
      if (past_end(r.arrival_s)) return;
      std::this_thread::sleep_until(start + std::chrono::duration_cast<SteadyClock::duration>(
                                                std::chrono::duration<double>(r.arrival_s)));
      if (stop && stop->load()) return;
      TimedResult& slot = slots[static_cast<size_t>(i)];
      slot.scheduled_s = r.arrival_s;
      slot.started_s = seconds_since(start);
      CompletionRequest request;
      request.base_url = options.base_url;
      request.model = options.model;
      request.prompt_tokens = r.prompt_tokens;
      request.output_tokens = r.output_tokens;
      request.stream = options.stream;
      request.prompt_seed = options.prompt_seed + static_cast<uint64_t>(i);
      request.timeout_ms = options.timeout_ms;
      request.open_streams = options.open_streams;
      slot.result = send_completion(client, request);
      sent[static_cast<size_t>(i)] = 1;
      done += 1;
      if (slot.result.outcome == Outcome::kOk) {
        ok += 1;
      } else if (slot.result.http_status == 429) {
        refused += 1;
      } else {
        failed += 1;
      }
    }
  };
  std::thread progress([&] {
    auto at = SteadyClock::now() + kProgressInterval;
    while (!finished.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!options.log_progress || SteadyClock::now() < at) continue;
      at += kProgressInterval;
      log::info("load: progress", {{"elapsed_s", seconds_since(start)},
                                   {"done", done.load()},
                                   {"ok", ok.load()},
                                   {"rate_limited", refused.load()},
                                   {"failed", failed.load()},
                                   {"scheduled", n}});
    }
  });
  std::vector<std::thread> clients;
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(options.concurrency_cap, n));
  for (int64_t t = 0; t < threads; ++t) clients.emplace_back(client_loop);
  for (std::thread& t : clients) t.join();
  LoadRun run;
  run.wall_s = seconds_since(start);
  finished = true;
  progress.join();
  for (size_t i = 0; i < slots.size(); ++i) {
    if (!sent[i]) continue;
    if (slots[i].started_s - slots[i].scheduled_s > kDelayedThresholdS) run.delayed_by_cap += 1;
    run.requests.push_back(std::move(slots[i]));
  }
  return run;
}

std::vector<CompletionResult> results_of(const LoadRun& run) {
  std::vector<CompletionResult> out;
  out.reserve(run.requests.size());
  for (const TimedResult& r : run.requests) out.push_back(r.result);
  return out;
}

}  // namespace moeserve::load
