// The Autoscaler: measures every tracked deployment periodically on its own threads and
// keeps the latest Snapshot (measurement + stabilized decision) for the reconciler to
// read, so reconciles never wait on a scrape.
//
// The reconciler calls track() on every reconcile with the deployment's scrape targets,
// policy and current/ready groups (a new deployment is evaluated at once), reads
// snapshot() while gathering, and calls forget() when the deployment is gone. Each
// deployment is evaluated every `interval` (real time) by one of `threads` threads,
// never by two at once, and its PolicyState is carried from one evaluation to the next; rates,
// forecasts and stabilization windows use the injected Clock. After an
// evaluation whose decision or (3-digit) tokens/s differs from the previous snapshot,
// on_change(key) runs (the controller enqueues the key). A track() whose gateway_waiting
// differs from the last one makes the deployment due at once, so a request held for a
// deployment at zero wakes it without waiting for the interval. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "operator/autoscaler/metric_source.h"
#include "operator/autoscaler/policy.h"

namespace moeserve::autoscaler {

struct Tracked {
  ScrapeTarget target;
  PolicySpec policy;
  int32_t current_replicas = 0;
  int32_t ready_replicas = 0;
  // Requests the gateways hold for the deployment because no group is ready
  // (deployment/gateway_waiting.h); nullopt when no gateway reports. Added to the
  // measured requests_waiting, which is how a deployment at zero groups wakes.
  std::optional<int64_t> gateway_waiting;
};

struct Snapshot {
  Measurement measurement;
  Decision decision;
  int64_t evaluations = 0;  // how many evaluations this deployment has had
};

struct AutoscalerOptions {
  std::chrono::milliseconds interval{15000};
  int threads = 2;
};

class Autoscaler {
 public:
  Autoscaler(MetricSource* source, const Clock* clock, AutoscalerOptions options = {});
  ~Autoscaler();  // stop()
  Autoscaler(const Autoscaler&) = delete;
  Autoscaler& operator=(const Autoscaler&) = delete;

  // Before start().
  void set_on_change(std::function<void(const std::string& key)> on_change) {
    on_change_ = std::move(on_change);
  }
  void start();
  void stop();

  void track(const std::string& key, Tracked tracked);
  void forget(const std::string& key);
  std::optional<Snapshot> snapshot(const std::string& key) const;

  // Measures and decides for `key` now, on the calling thread (the threads call this);
  // no-op when the key is not tracked or is being evaluated.
  void evaluate(const std::string& key);

 private:
  struct Entry {
    Tracked tracked;
    std::chrono::steady_clock::time_point next_due;
    bool busy = false;
    bool forgotten = false;
    PolicyState state;  // carried from one decision to the next
    std::optional<Snapshot> snapshot;
  };
  void loop();

  MetricSource* source_;
  const Clock* clock_;
  AutoscalerOptions options_;
  std::function<void(const std::string&)> on_change_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, Entry> entries_;
  std::vector<std::thread> threads_;
};

}  // namespace moeserve::autoscaler
