// The worker's Prometheus metrics (names documented in docs/metrics.md; keep them
// stable). Every series carries the constant labels model and deployment.
//
// Request-level counters and histograms are recorded by the API handlers as requests
// end; the token counters therefore equal the sum of the `usage` the clients received.
// Gauges (running, waiting, KV usage), the prefix-cache hit counter, the speculative-
// decoding counters (drafts verified and accepted, labelled by draft position; series
// only when the scheduler has a drafter) and the per-expert token counters (from the
// scheduler's ExpertLoadRecorder) are refreshed from the scheduler when /metrics is
// scraped (refresh()). Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "worker/engine/scheduler.h"

namespace moeserve::server {

struct WorkerInfo {
  std::string model;
  std::string deployment;
  std::string precision;  // "bf16", "fp8", ...
  int32_t rank = 0;
  int32_t world_size = 1;
};

// Registers moeserve_worker_info (constant 1, labels from `info`) in `registry`. Ranks
// > 0 of a group, which have no scheduler, export only this.
void add_worker_info(prometheus::Registry& registry, const WorkerInfo& info);

class WorkerMetrics {
 public:
  WorkerMetrics(const WorkerInfo& info, const engine::Scheduler& scheduler);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // One request that completed (finish_reason "stop" or "length").
  void record_success(const std::string& finish_reason, int64_t prompt_tokens,
                      int64_t completion_tokens);
  // One request answered with an error status (HTTP code, or 499: the client left).
  void record_error(int status);
  void observe_time_to_first_token(double seconds);
  void observe_inter_token_latency(double seconds);
  void observe_e2e_latency(double seconds);
  void observe_queue_time(double seconds);

  // Copies the scheduler's gauges and expert counts into the registry.
  void refresh();

  int64_t prompt_tokens_total() const { return prompt_tokens_.load(); }
  int64_t generation_tokens_total() const { return generation_tokens_.load(); }

 private:
  const engine::Scheduler& scheduler_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter* prompt_tokens_counter_;
  prometheus::Counter* generation_tokens_counter_;
  prometheus::Counter* prefix_hits_counter_;
  prometheus::Family<prometheus::Counter>* success_;
  prometheus::Family<prometheus::Counter>* errors_;
  prometheus::Gauge* running_;
  prometheus::Gauge* waiting_;
  prometheus::Gauge* kv_usage_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* e2e_;
  prometheus::Histogram* queue_;
  std::vector<std::vector<prometheus::Counter*>> expert_counters_;  // per MoE layer slot
  std::vector<prometheus::Counter*> spec_draft_counters_;           // per draft position
  std::vector<prometheus::Counter*> spec_accepted_counters_;

  std::mutex refresh_mutex_;
  int64_t prefix_hits_seen_ = 0;
  std::vector<std::vector<uint64_t>> experts_seen_;
  std::vector<int64_t> spec_draft_seen_;
  std::vector<int64_t> spec_accepted_seen_;
  std::atomic<int64_t> prompt_tokens_{0};
  std::atomic<int64_t> generation_tokens_{0};
};

}  // namespace moeserve::server
