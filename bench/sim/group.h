// One simulated group (one model copy) for the autoscaling simulator: a discrete-event
// model of a continuous-batching worker. Not thread-safe; single-threaded simulation.
//
// The model (stated, so results can be checked by hand):
// - Requests dispatched to the group wait in its FIFO queue.
// - Admission: the queue's head is admitted when the KV cache has room for its prompt
//   and all its output (tokens reserved up front, no preemption) and fewer than
//   max_batch sequences are admitted. Admitted requests are prefilled in batches of up
//   to max_prefill_tokens prompt tokens (a longer prompt alone), in
//   tokens / prefill_tokens_per_s(tokens) seconds; the batch's requests get their first
//   token when it ends (TTFT). A request of one output token finishes then.
// - Prefill and decode share the group's time (one engine): while a prefill batch runs,
//   decoding pauses, and a prefill starts whenever an admissible request waits.
// - Decode: b sequences decoding advance together at decode_tokens_per_s(b) / b
//   tokens/s each; a request finishes after its output tokens (the first from prefill).
// - Requests not yet started can be taken back (take_waiting) to be sent elsewhere (a
//   draining group's, by the simulator, which sends a draining group nothing new).
// Its worker metrics (sample()) are the cumulative counters a real worker exports:
// prompt and generated tokens, the TTFT histogram (measured from arrival at the group,
// with the worker's buckets) and the requests waiting.
#pragma once

#include <cstdint>
#include <deque>
#include <queue>
#include <vector>

#include "bench/sim/capacity.h"
#include "bench/sim/trace.h"
#include "operator/autoscaler/worker_sample.h"

namespace moeserve::sim {

// What happened to one request; negative times mean "not yet".
struct RequestTimes {
  double dispatched_s = -1;
  double first_token_s = -1;
  double finished_s = -1;
};

class Group {
 public:
  // `times` is indexed by request id and outlives the group.
  Group(const Capacity* capacity, std::vector<RequestTimes>* times, double created_s,
        double ready_s);

  double created_s() const { return created_s_; }
  double ready_s() const { return ready_s_; }
  bool ready(double now) const { return now >= ready_s_; }

  // Runs the group's events up to `t` (>= the last time it was advanced to).
  void advance(double t);
  // A request arrives at the group at `now` (advance(now) first).
  void enqueue(int64_t id, const Request& request, double now);

  // Tokens not yet processed of everything dispatched here (prompt + output).
  double outstanding_tokens() const;
  int64_t waiting() const { return static_cast<int64_t>(queue_.size()); }
  bool empty() const { return queue_.empty() && batch_.empty() && running_.empty(); }
  // When the last request finished (creation before any).
  double last_finish_s() const { return last_finish_s_; }

  // Moves the ids of the requests waiting for admission (not started) to `out`.
  void take_waiting(std::vector<int64_t>* out);

  autoscaler::WorkerSample sample() const;

 private:
  struct Queued {
    int64_t id;
    int64_t prompt;
    int64_t output;
    double arrived_s;
  };
  bool start_prefill();
  void end_prefill();
  void finish_decoded();

  const Capacity* capacity_;
  std::vector<RequestTimes>* times_;
  double created_s_;
  double ready_s_;
  double now_s_;
  double last_finish_s_;

  std::deque<Queued> queue_;
  std::vector<Queued> batch_;  // prefilling
  double batch_end_s_ = 0;
  struct Decoding {
    double finish_progress;  // progress_ at which it has all its output
    int64_t id;
    int64_t kv_tokens;  // reserved
    bool operator>(const Decoding& o) const { return finish_progress > o.finish_progress; }
  };
  std::priority_queue<Decoding, std::vector<Decoding>, std::greater<>> running_;  // soonest first
  double progress_ = 0;    // decode tokens each decoding sequence has made
  double finish_sum_ = 0;  // sum of running_'s finish progress
  int64_t kv_used_ = 0;
  double queued_tokens_ = 0;

  double prompt_tokens_total_ = 0;
  double generation_tokens_total_ = 0;
  std::vector<double> ttft_counts_;  // per bucket of kTtftBuckets, then +Inf
};

// The worker's moeserve_time_to_first_token_seconds buckets
// (worker/server/worker_metrics.cpp latency_buckets()).
extern const std::vector<double> kTtftBuckets;

}  // namespace moeserve::sim
