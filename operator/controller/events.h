// Kubernetes Events (core/v1) about the objects the operator manages: scaling, rollouts,
// invalid specs and errors, visible in `kubectl describe`.
//
// A repeat of the same (object, type, reason, message) within the dedupe window bumps
// the existing Event's count and lastTimestamp with a merge patch instead of creating a
// new Event, as the Kubernetes event recorder does. Failures to record are logged and
// never fail a reconcile. Thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "operator/kube/client.h"

namespace moeserve::controller {

class EventRecorder {
 public:
  EventRecorder(const kube::Client& client, std::string component,
                const Clock* clock = RealClock::instance());

  // `involved` is the object itself (its apiVersion, kind and metadata are read);
  // type is "Normal" or "Warning"; reason is CamelCase.
  void record(const nlohmann::json& involved, const std::string& type, const std::string& reason,
              const std::string& message);

 private:
  struct Recorded {
    std::string namespace_;
    std::string name;
    int64_t count = 0;
    Clock::TimePoint last;
  };

  const kube::Client& client_;
  std::string component_;
  const Clock* clock_;
  std::mutex mutex_;
  std::map<std::string, Recorded> recent_;
  uint64_t sequence_ = 0;
};

}  // namespace moeserve::controller
