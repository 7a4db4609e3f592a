// Controller: informers for a root kind and the kinds it owns feed a rate-limited work
// queue of root keys ("namespace/name"); N worker threads call Reconciler::reconcile(key),
// never two at once for one key (WorkQueue's guarantee). Level-triggered: an event on
// the root object, or on an object owned by it, only queues the root's key; the
// reconciler reads everything it needs from the informer caches and never learns which
// event fired.
//
// An owned object maps to its root through its controller ownerReference whose kind is
// the root kind; objects without one are ignored. Errors requeue the key with per-item
// backoff; success forgets the backoff and honours requeue_after. Metrics:
// moeserve_operator_reconcile_total{result}, moeserve_operator_reconcile_duration_seconds,
// moeserve_operator_queue_depth.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "operator/controller/work_queue.h"
#include "operator/kube/client.h"
#include "operator/kube/reflector.h"

namespace moeserve::controller {

struct ReconcileResult {
  Status status;
  std::optional<std::chrono::milliseconds> requeue_after;
};

class Reconciler {
 public:
  virtual ~Reconciler() = default;
  virtual ReconcileResult reconcile(const std::string& key) = 0;
};

struct ControllerOptions {
  std::string ns;  // "" watches all namespaces
  int workers = 2;
  RateLimit rate_limit;
  std::string root_kind = "ModelDeployment";
  // Every root is queued again this often even without events (drift repair).
  std::chrono::milliseconds resync_period{std::chrono::minutes(10)};
  kube::ReflectorOptions reflector_options;
};

// Read access to the informer caches, for reconcilers.
class Informers {
 public:
  virtual ~Informers() = default;
  virtual std::optional<nlohmann::json> get(const std::string& resource,
                                            const std::string& key) const = 0;
  // Objects of `resource` in namespace `ns` whose labels include every pair of `labels`.
  virtual std::vector<nlohmann::json> list(
      const std::string& resource, const std::string& ns,
      const std::map<std::string, std::string>& labels) const = 0;
};

// The root key an object belongs to: itself for the root kind, its controller owner's
// key for owned kinds, nullopt otherwise.
std::optional<std::string> root_key_for(const nlohmann::json& object, const std::string& root_kind,
                                        bool is_root);

class Controller : public Informers {
 public:
  // `owned` are the kinds the root owns (their events requeue the owner).
  Controller(const kube::Client& client, kube::ResourceRef root,
             std::vector<kube::ResourceRef> owned, ControllerOptions options,
             std::shared_ptr<prometheus::Registry> registry);
  ~Controller() override;

  void set_reconciler(Reconciler* reconciler) { reconciler_ = reconciler; }

  // Starts the informers and, once every cache has synced, the workers.
  void start();
  // Stops workers and informers and joins their threads.
  void stop();
  bool synced() const;

  void enqueue(const std::string& key) { queue_.add(key); }
  const WorkQueue& queue() const { return queue_; }

  std::optional<nlohmann::json> get(const std::string& resource,
                                    const std::string& key) const override;
  std::vector<nlohmann::json> list(const std::string& resource, const std::string& ns,
                                   const std::map<std::string, std::string>& labels) const override;

 private:
  void worker_loop();
  void resync_loop();
  void process(const std::string& key);
  kube::ReflectorHandlers handlers_for(bool is_root);

  const kube::Client& client_;
  kube::ResourceRef root_;
  std::vector<kube::ResourceRef> owned_;
  ControllerOptions options_;
  Reconciler* reconciler_ = nullptr;
  WorkQueue queue_;
  std::map<std::string, std::unique_ptr<kube::Reflector>> reflectors_;  // by resource plural
  std::mutex threads_mutex_;  // guards threads_ (workers are added once caches sync)
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::mutex resync_mutex_;
  std::condition_variable resync_cv_;

  std::shared_ptr<prometheus::Registry> registry_;  // keeps the metrics below alive
  prometheus::Family<prometheus::Counter>* reconcile_total_;
  prometheus::Histogram* reconcile_duration_;
  prometheus::Gauge* queue_depth_;
};

}  // namespace moeserve::controller
