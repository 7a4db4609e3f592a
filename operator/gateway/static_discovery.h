// StaticDiscovery: the gateway's discovery source without a cluster, from a file
// (--static-config) listing models and their groups' base URLs:
//
//   models:
//     - model: tiny                      # the OpenAI `model`
//       deployment: default/tiny         # optional; default "static/<model>"
//       upstreams: [http://127.0.0.1:8101, http://127.0.0.1:8111]
//       queueSize: 64                    # optional, as spec.gateway
//       queueTimeoutSeconds: 300         # optional
//
// (YAML or JSON.) Upstream i of a model has id "<deployment>/g<i>". A prober thread GETs
// each upstream's /readyz every probe interval; an upstream is ready while it answers
// 200. Static groups cannot be woken (can_wake is false), so report_waiting() only
// records the count (waiting()). Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "operator/gateway/discovery.h"

namespace moeserve::gateway {

// The models of a static config document, no group ready yet. invalid_argument naming
// the field (prefixed with `source`) for anything malformed or unknown.
StatusOr<Snapshot> parse_static_config(const nlohmann::json& document, const std::string& source);
// Reads and parses the file.
StatusOr<Snapshot> load_static_config(const std::string& path);

class StaticDiscovery : public Discovery {
 public:
  explicit StaticDiscovery(
      Snapshot models, std::chrono::milliseconds probe_interval = std::chrono::milliseconds(1000));
  ~StaticDiscovery() override;

  // Probes once at once (so a healthy upstream is ready before start() returns), then
  // every probe interval on a thread, until stop().
  void start();
  void stop();

  Snapshot snapshot() const override;
  void report_waiting(const std::string& deployment, int64_t waiting) override;
  int64_t waiting(const std::string& deployment) const;

 private:
  void probe_all();

  std::chrono::milliseconds probe_interval_;
  mutable std::mutex mutex_;
  Snapshot snapshot_;
  std::map<std::string, int64_t> waiting_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread prober_;
};

}  // namespace moeserve::gateway
