// Typed REST client for the Kubernetes API: resources addressed by ResourceRef
// (group, version, plural, namespaced) + namespace + name; objects are nlohmann::json.
//
// Every call returns the server's object or a Status mapped from the server's Status
// body (see errors.h): not_found, already_exists, conflict (stale resourceVersion),
// gone, invalid_argument, resource_exhausted (with retry_after_seconds), unauthenticated,
// permission_denied, unavailable. Transport failures keep the transport's code
// (unavailable, deadline_exceeded). The Client holds no mutable state and is safe to
// share between threads (as long as the Transport is).
//
// watch() streams events to a callback until the server ends the watch (ok), the
// callback returns false or `stop` becomes true (ok), an ERROR event arrives (its Status
// mapped, 410 -> gone: relist), or the connection fails. `stop` is checked after every
// read, so a watch stops at its next event, bookmark or read timeout.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "operator/kube/transport.h"
#include "operator/kube/watch.h"

namespace moeserve::kube {

struct ResourceRef {
  std::string group;     // "" for the core group
  std::string version;   // "v1"
  std::string resource;  // plural: "pods", "modeldeployments"
  bool namespaced = true;

  std::string api_version() const { return group.empty() ? version : group + "/" + version; }
};

// Well-known resources.
namespace resources {
inline const ResourceRef kNamespaces{"", "v1", "namespaces", false};
inline const ResourceRef kPods{"", "v1", "pods", true};
inline const ResourceRef kServices{"", "v1", "services", true};
inline const ResourceRef kConfigMaps{"", "v1", "configmaps", true};
inline const ResourceRef kEvents{"", "v1", "events", true};
inline const ResourceRef kStatefulSets{"apps", "v1", "statefulsets", true};
inline const ResourceRef kPodDisruptionBudgets{"policy", "v1", "poddisruptionbudgets", true};
inline const ResourceRef kNetworkPolicies{"networking.k8s.io", "v1", "networkpolicies", true};
inline const ResourceRef kLeases{"coordination.k8s.io", "v1", "leases", true};
inline const ResourceRef kCustomResourceDefinitions{"apiextensions.k8s.io", "v1",
                                                    "customresourcedefinitions", false};
inline const ResourceRef kModelDeployments{"moeserve.io", "v1alpha1", "modeldeployments", true};
}  // namespace resources

struct ListOptions {
  std::string label_selector;  // "app=x,tier=y"
  std::string field_selector;  // "metadata.name=x"
  int64_t limit = 0;           // page size; 0: no limit (list_all uses kDefaultPageSize)
  std::string continue_token;
  std::string resource_version;
};

struct ListResult {
  std::vector<nlohmann::json> items;
  std::string resource_version;  // the list's resourceVersion: watch from here
  std::string continue_token;    // "" on the last page
};

enum class PatchType {
  kMerge,           // application/merge-patch+json (RFC 7386)
  kJson,            // application/json-patch+json (RFC 6902)
  kStrategicMerge,  // application/strategic-merge-patch+json (built-in kinds only)
};

enum class Propagation { kDefault, kBackground, kForeground, kOrphan };

struct WatchOptions {
  std::string resource_version;
  // Server-side timeout; 0 picks a random value in [kMinWatchTimeoutS, kMaxWatchTimeoutS]
  // so that many watchers do not reconnect together.
  int64_t timeout_seconds = 0;
  bool allow_bookmarks = true;
  std::string label_selector;
  std::string field_selector;
  // Longest wait for the next bytes; 0: timeout_seconds + 30 s.
  int64_t read_timeout_ms = 0;
};

inline constexpr int64_t kMinWatchTimeoutS = 300;
inline constexpr int64_t kMaxWatchTimeoutS = 600;
inline constexpr int64_t kDefaultPageSize = 500;

// Returns false to end the watch.
using WatchCallback = std::function<bool(const WatchEvent&)>;

class Client {
 public:
  Client(std::shared_ptr<Transport> transport, std::string server,
         std::string default_namespace = "default");

  // A client over HttpTransport for `config` (TLS material validated).
  static StatusOr<std::unique_ptr<Client>> create_for(const Config& config);

  const std::string& default_namespace() const { return default_namespace_; }
  const std::string& server() const { return server_; }

  // `subresource` e.g. "status", "scale"; "" for the object itself.
  StatusOr<nlohmann::json> get(const ResourceRef& ref, const std::string& ns,
                               const std::string& name, const std::string& subresource = "") const;
  // One page; `ns` "" lists all namespaces.
  StatusOr<ListResult> list(const ResourceRef& ref, const std::string& ns,
                            const ListOptions& options = {}) const;
  // Every page (following continue tokens); resource_version is the first page's.
  StatusOr<ListResult> list_all(const ResourceRef& ref, const std::string& ns,
                                ListOptions options = {}) const;
  StatusOr<nlohmann::json> create(const ResourceRef& ref, const std::string& ns,
                                  const nlohmann::json& object) const;
  // PUT of the whole object (name from metadata.name); its metadata.resourceVersion
  // makes the update conditional: a stale one gives conflict.
  StatusOr<nlohmann::json> update(const ResourceRef& ref, const std::string& ns,
                                  const nlohmann::json& object) const;
  // PUT .../status.
  StatusOr<nlohmann::json> update_status(const ResourceRef& ref, const std::string& ns,
                                         const nlohmann::json& object) const;
  StatusOr<nlohmann::json> patch(const ResourceRef& ref, const std::string& ns,
                                 const std::string& name, PatchType type,
                                 const nlohmann::json& patch,
                                 const std::string& subresource = "") const;
  // Returns the server's answer: the object (finalizers pending) or a Status.
  StatusOr<nlohmann::json> remove(const ResourceRef& ref, const std::string& ns,
                                  const std::string& name,
                                  Propagation propagation = Propagation::kDefault) const;

  Status watch(const ResourceRef& ref, const std::string& ns, const WatchOptions& options,
               const WatchCallback& on_event, const std::atomic<bool>* stop = nullptr) const;

  // "/api/v1/namespaces/ns/pods/name/status" ("" parts omitted).
  static std::string path(const ResourceRef& ref, const std::string& ns, const std::string& name,
                          const std::string& subresource = "");

 private:
  StatusOr<nlohmann::json> call(const std::string& method, const std::string& target,
                                const std::string& content_type, const std::string& body) const;

  std::shared_ptr<Transport> transport_;
  std::string server_;
  std::string default_namespace_;
};

// Percent-encodes a query value.
std::string url_encode(std::string_view text);
// A random server-side watch timeout in [kMinWatchTimeoutS, kMaxWatchTimeoutS].
int64_t random_watch_timeout_seconds();

}  // namespace moeserve::kube
