// KubeDiscovery: the gateway's Discovery on a cluster, fed by two informers (reflector.h):
//   ModelDeployments  (moeserve.io/v1alpha1), for each deployment's served model name,
//                     spec.gateway and whether it can wake;
//   Pods              labelled app.kubernetes.io/name=moeserve-worker and
//                     apps.kubernetes.io/pod-index=0: the rank-0 pod of every group, whose
//                     Ready condition is the worker's /readyz (true once its whole group
//                     has formed) and whose status.podIP:spec.worker.port is the group's
//                     OpenAI endpoint.
// Pods rather than EndpointSlices: the operator already reads these pods (it scrapes the
// same rank-0 pods) and its Service x selects exactly them, so the readiness the gateway
// routes on is the readiness the Service routes on, without a second watched kind.
//
// The snapshot is rebuilt (build_snapshot, pure) whenever either cache changes, and
// snapshot() copies the latest one. A deleted deployment, or one being deleted, and a
// deleted or terminating pod disappear at the next event. Until both caches have synced
// the snapshot is empty (synced() says when they have).
//
// report_waiting() publishes held demand as the annotation gateway_waiting.h describes,
// from a writer thread (request threads never wait on the API server): a change is
// written at most once per `waiting_min_interval` per deployment, a non-zero count is
// re-written every `waiting_refresh` so it stays fresh for the operator, and 0 removes
// the key. A failed write is retried after the minimum interval; a deployment that no
// longer exists is dropped.
//
// Thread-safe. The destructor stops the informers and the writer.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/flags.h"
#include "common/status.h"
#include "operator/gateway/discovery.h"
#include "operator/kube/client.h"
#include "operator/kube/reflector.h"

namespace moeserve::gateway {

// The pod-label selector of the rank-0 pods watched.
inline constexpr const char* kRankZeroPodSelector =
    "app.kubernetes.io/name=moeserve-worker,apps.kubernetes.io/pod-index=0";

struct KubeDiscoveryOptions {
  std::string kubeconfig;  // kubeconfig file ("" with in_cluster: the service account)
  bool in_cluster = false;
  std::string ns;  // watch only this namespace; "" watches all
  // This gateway's identity in the waiting annotation (the pod name; POD_NAME in the
  // chart). Required to report waiting.
  std::string pod_name;
  std::chrono::milliseconds waiting_min_interval{1000};
  std::chrono::milliseconds waiting_refresh{10000};
  std::chrono::milliseconds writer_poll{100};  // real time between writer passes
  const Clock* clock = RealClock::instance();
  kube::ReflectorOptions reflector_options;
};

// The snapshot of `deployments` (ModelDeployment objects) and `pods` (rank-0 pods):
// one ServedModel per deployment that is valid and not being deleted, in
// "<namespace>/<name>" order, with one Upstream per rank-0 pod that has an IP and is
// not terminating, in group order. can_wake: scale to zero is configured
// (autoscaling.enabled with scaleToZeroAfterIdleSeconds), or groups are wanted or exist
// (status.desiredReplicas or status.replicas > 0, or a rank-0 pod exists). Pure.
Snapshot build_snapshot(const std::vector<nlohmann::json>& deployments,
                        const std::vector<nlohmann::json>& pods);

class KubeDiscovery : public Discovery {
 public:
  // Uses `client`, which must outlive this object; start() begins watching.
  KubeDiscovery(const kube::Client& client, KubeDiscoveryOptions options);
  // Owns `client`.
  KubeDiscovery(std::unique_ptr<kube::Client> client, KubeDiscoveryOptions options);
  ~KubeDiscovery() override;
  KubeDiscovery(const KubeDiscovery&) = delete;
  KubeDiscovery& operator=(const KubeDiscovery&) = delete;

  void start();
  void stop();
  bool synced() const;

  Snapshot snapshot() const override;
  void report_waiting(const std::string& deployment, int64_t waiting) override;

  // Annotation writes that succeeded (for tests and logs).
  int64_t waiting_writes() const { return waiting_writes_.load(); }

 private:
  struct Waiting {
    int64_t want = 0;
    int64_t written = 0;  // last value the API server accepted (0: no key)
    bool ever_written = false;
    Clock::TimePoint last_attempt{};
    bool attempted = false;
  };
  void rebuild();
  void writer_loop();
  // Patches the annotation of `deployment` to `want` (0 removes it); not_found when the
  // deployment is gone.
  Status write_waiting(const std::string& deployment, int64_t want);

  std::unique_ptr<kube::Client> owned_client_;
  const kube::Client& client_;
  KubeDiscoveryOptions options_;
  std::unique_ptr<kube::Reflector> deployments_;
  std::unique_ptr<kube::Reflector> pods_;

  std::mutex rebuild_mutex_;  // one rebuild at a time (two informer threads)
  mutable std::mutex snapshot_mutex_;
  Snapshot snapshot_;
  std::atomic<bool> built_once_{false};

  std::mutex waiting_mutex_;
  std::condition_variable waiting_cv_;
  std::map<std::string, Waiting> waiting_;
  std::atomic<int64_t> waiting_writes_{0};

  std::atomic<bool> stopping_{false};
  std::vector<std::thread> threads_;
};

// Builds the client from options (kubeconfig, else in-cluster) and starts watching.
// Errors: no configuration (neither given), an unreadable kubeconfig or service
// account, a missing pod_name.
StatusOr<std::unique_ptr<Discovery>> make_kube_discovery(const KubeDiscoveryOptions& options);

// The gateway's cluster flags, for its main:
//   --kubeconfig FILE   (env KUBECONFIG_PATH)  watch the cluster of this kubeconfig
//   --in-cluster        (env MOESERVE_IN_CLUSTER) use the pod's service account
//   --namespace NS      (env MOESERVE_WATCH_NAMESPACE) watch one namespace (default all)
//   --pod-name NAME     (env POD_NAME) this gateway's key in the waiting annotation
// Call add_kube_discovery_flags before parsing; after parsing, kube_discovery_selected
// says whether either of the first two was given, and check_kube_discovery_flags refuses
// combinations that would be ignored (both selectors; --namespace without a selector).
void add_kube_discovery_flags(FlagSet* flags, KubeDiscoveryOptions* options);
bool kube_discovery_selected(const KubeDiscoveryOptions& options);
Status check_kube_discovery_flags(const KubeDiscoveryOptions& options);

}  // namespace moeserve::gateway
