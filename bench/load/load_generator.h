// The open-loop driver of bench-load: sends each scheduled request at its arrival time
// (arrivals.h), whatever the server's pace, from `concurrency_cap` client threads. A
// request whose time comes while every thread is busy waits for the next free one (it
// is counted as delayed by the cap: the cap bounds the client, not the offered load
// shape, and a run with many delayed requests measured the cap, not the server).
// Requests stop being started at the schedule's end, at `stop`, or past
// duration_s; the ones in flight then finish. Progress is logged every 10 s.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/load/completion.h"
#include "bench/sim/trace.h"

namespace moeserve::load {

struct LoadOptions {
  std::string base_url;
  std::string model;
  bool stream = true;
  int64_t concurrency_cap = 64;
  double duration_s = 0;  // 0: the schedule's own length
  int64_t timeout_ms = 120000;
  uint64_t prompt_seed = 0;  // request i's prompt is derived from prompt_seed + i
  bool log_progress = true;
  std::atomic<int64_t>* open_streams = nullptr;  // CompletionRequest::open_streams
};

struct TimedResult {
  double scheduled_s = 0;  // the arrival time, from the run's start
  double started_s = 0;    // when it was sent (later than scheduled when the cap delayed it)
  CompletionResult result;
};

struct LoadRun {
  std::vector<TimedResult> requests;  // in arrival order, only the ones sent
  double wall_s = 0;                  // start to the last request's end
  int64_t delayed_by_cap = 0;         // sent more than 10 ms after their arrival time
};

// Precondition: schedule sorted by arrival_s.
LoadRun run_load(const std::vector<sim::Request>& schedule, const LoadOptions& options,
                 const std::atomic<bool>* stop = nullptr);

// The results alone, for summarize().
std::vector<CompletionResult> results_of(const LoadRun& run);

}  // namespace moeserve::load
