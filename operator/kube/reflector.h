// Reflector: keeps a local cache of one resource in sync with the API server (after
// client-go's reflector + informer store) and reports changes to handlers.
//
// run() lists (paginated), then watches from the list's resourceVersion, advancing it
// with every event and bookmark. When the watch ends normally (or its read times out)
// it re-watches from the last resourceVersion; when the server says 410 Gone it
// relists, diffing the new list against the cache (adds, updates for a changed
// resourceVersion, deletes for objects that vanished); on any other error (dropped
// connection, 5xx, 429) it waits with exponential backoff and jitter (at least a 429's
// Retry-After) and retries what failed: the list, or the watch from the last
// resourceVersion. The backoff resets once a watch delivers an event.
//
// The cache is keyed "namespace/name" (just "name" for cluster-scoped objects).
// Handlers run on the run() thread, without the cache lock held; the cache already
// reflects the event when a handler runs. stop() may be called from any thread; run()
// returns after its current read (the watch read timeout bounds that) or at once when
// sleeping. Sleeping goes through an injectable function for deterministic tests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/kube/client.h"

namespace moeserve::kube {

struct ReflectorHandlers {
  std::function<void(const nlohmann::json& object)> on_add;
  std::function<void(const nlohmann::json& old_object, const nlohmann::json& new_object)> on_update;
  std::function<void(const nlohmann::json& object)> on_delete;
};

struct ReflectorOptions {
  std::string label_selector;
  std::string field_selector;
  int64_t page_size = kDefaultPageSize;
  int64_t watch_timeout_seconds = 0;  // 0: randomised per watch (client default)
  int64_t watch_read_timeout_ms = 0;  // 0: client default
  bool allow_bookmarks = true;
  int64_t backoff_initial_ms = 800;
  int64_t backoff_max_ms = 30000;
  double jitter = 1.0;  // a delay d becomes d * (1 + jitter * U[0,1)), capped at max
  uint64_t seed = 0;    // 0: random
  // Waits `delay_ms` unless stopped first; returns false when stopped. Default: a
  // condition variable wait that stop() interrupts.
  std::function<bool(int64_t delay_ms)> sleep;
};

// "namespace/name", or "name" without a namespace.
std::string object_key(const nlohmann::json& object);

class Reflector {
 public:
  Reflector(const Client& client, ResourceRef ref, std::string ns, ReflectorHandlers handlers,
            ReflectorOptions options = {});
  Reflector(const Reflector&) = delete;
  Reflector& operator=(const Reflector&) = delete;

  // Blocks until stop().
  void run();
  void stop();
  bool stopped() const { return stop_.load(); }

  // True once the first list has been applied to the cache.
  bool has_synced() const { return synced_.load(); }
  std::optional<nlohmann::json> get(const std::string& key) const;
  std::vector<nlohmann::json> items() const;
  // Copies of the cached objects for which `match` is true; `match` runs under the
  // cache lock and must not call back into the reflector.
  std::vector<nlohmann::json> items_where(
      const std::function<bool(const nlohmann::json&)>& match) const;
  std::string resource_version() const;

  // Counters for tests and metrics.
  int64_t list_count() const { return lists_.load(); }
  int64_t watch_count() const { return watches_.load(); }
  int64_t error_count() const { return errors_.load(); }

 private:
  Status list_and_sync();
  Status watch_once();
  void apply(WatchEventType type, const nlohmann::json& object);
  bool sleep_ms(int64_t delay_ms);
  int64_t next_backoff_ms(const Status& error);

  const Client& client_;
  ResourceRef ref_;
  std::string ns_;
  ReflectorHandlers handlers_;
  ReflectorOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::map<std::string, nlohmann::json> cache_;
  std::string resource_version_;

  std::atomic<bool> stop_{false};
  std::atomic<bool> synced_{false};
  std::atomic<int64_t> lists_{0};
  std::atomic<int64_t> watches_{0};
  std::atomic<int64_t> errors_{0};
  int64_t failures_ = 0;  // consecutive, for the backoff (run() thread only)
  std::mt19937_64 rng_;
};

}  // namespace moeserve::kube
