// A rate-limited work queue of object keys ("namespace/name"), after client-go's:
//
// - add(key) is deduplicated: a key waiting in the queue is queued once;
// - a key is never handed to two workers at once: a key added while being processed is
//   queued again when its worker calls done(key);
// - add_rate_limited(key) delays by the larger of a per-item exponential backoff
//   (base_delay * 2^failures, capped at max_delay) and an overall token bucket
//   (qps, burst); forget(key) resets the key's failures after a success;
// - add_after(key, delay) queues a key later (requeue-after); an earlier add wins.
//
// Time comes from an injected Clock; waiting threads re-check at least every 50 ms, so a
// FakeClock advanced by a test is noticed promptly. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "common/clock.h"

namespace moeserve::controller {

struct RateLimit {
  std::chrono::milliseconds base_delay{5};
  std::chrono::milliseconds max_delay{1000 * 1000};
  double qps = 10;
  int burst = 100;
};

class WorkQueue {
 public:
  explicit WorkQueue(RateLimit limit = {}, const Clock* clock = RealClock::instance());

  void add(const std::string& key);
  void add_after(const std::string& key, Clock::Duration delay);
  void add_rate_limited(const std::string& key);
  void forget(const std::string& key);
  int failures(const std::string& key) const;

  // Blocks until a key is ready or the queue shuts down (then nullopt). The caller must
  // call done(key) when finished with it.
  std::optional<std::string> get();
  // Like get(), but gives up after `timeout` of real time.
  std::optional<std::string> get_for(std::chrono::milliseconds timeout);
  void done(const std::string& key);

  // Wakes every get(); later adds are ignored.
  void shut_down();
  bool shutting_down() const;

  // Keys ready or waiting for their time (not those being processed).
  size_t depth() const;

 private:
  void add_locked(const std::string& key);
  Clock::Duration rate_limit_delay_locked(const std::string& key);
  void promote_due_locked();
  std::optional<std::string> get_until(std::chrono::steady_clock::time_point real_deadline);

  RateLimit limit_;
  const Clock* clock_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;  // ready, in order
  std::set<std::string> dirty_;    // queued (or to be requeued on done)
  std::set<std::string> processing_;
  std::map<std::string, Clock::TimePoint> waiting_;  // add_after: key -> ready time
  std::map<std::string, int> failures_;
  double tokens_;
  Clock::TimePoint tokens_at_;
  bool shut_down_ = false;
};

}  // namespace moeserve::controller
