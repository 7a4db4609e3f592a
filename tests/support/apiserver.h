// A strict in-memory Kubernetes API server for tests (plain HTTP on 127.0.0.1).
//
// Serves discovery (/api, /api/v1, /apis, /apis/<group>[/<version>], /version) enough
// for kubectl, and CRUD + list + watch for the built-in kinds the operator touches
// (namespaces, pods, services, configmaps, secrets, events (core and events.k8s.io),
// apps/v1 statefulsets and deployments, policy/v1 poddisruptionbudgets,
// networking.k8s.io/v1 networkpolicies,
// coordination.k8s.io/v1 leases, apiextensions.k8s.io/v1 customresourcedefinitions)
// and for every custom resource whose CRD has been created.
//
// Strict where the real server is: resourceVersion is one global counter; an update
// or patch carrying a stale resourceVersion gets 409 Conflict, a duplicate create 409
// AlreadyExists, a watch from a resourceVersion older than the kept event history an
// ERROR event with a 410 Expired Status; writes into a missing namespace get 404;
// metadata.generation moves only when something outside metadata (and outside status,
// when the status subresource is on) changes; with the status subresource create drops
// .status, the main resource ignores .status and /status changes only .status; /scale reads and
// writes the replicas paths; custom resources reject strategic merge patch (415); objects with
// finalizers get a deletionTimestamp and stay until the finalizers are removed; deleting an owner
// deletes its dependents (by ownerReference uid, recursively) unless propagationPolicy is Orphan.
// CRD schemas' defaults are applied on create and update and their basic constraints (type,
// required, enum, minimum/maximum, min/maxLength) are validated (422 Invalid with field paths).
// Error bodies are Kubernetes Status objects. Custom resources are served as meta.k8s.io/v1
// Tables (Name + the CRD's additionalPrinterColumns) when the Accept header asks for them, as
// kubectl get does; built-in kinds are not (kubectl prints those client-side). Not served:
// server-side apply, foreground deletion (treated as background), protobuf bodies beyond
// kube_protobuf.h, CEL rules.
//
// Lists support labelSelector (=, ==, !=, in, notin, exists, !exists), fieldSelector
// (metadata.name, metadata.namespace), limit/continue (continue resumes after the last
// returned key in the live store); like the real server, items of built-in kinds carry
// no kind/apiVersion. Watches stream JSON lines from a resourceVersion
// (or the current state as ADDED events when none or "0" is given), translate
// label-selector transitions into ADDED/DELETED, send BOOKMARK events every
// bookmark_interval_ms when asked, and end after timeoutSeconds.
//
// Fault injection and counters are for tests; everything is thread-safe (one mutex
// over the store). Each watch holds one of the server's handler threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "common/http_server.h"
#include "common/status.h"

namespace moeserve::testing {

struct ApiServerOptions {
  uint16_t port = 0;  // 0: ephemeral
  int64_t bookmark_interval_ms = 1000;
  size_t history_limit = 2000;  // watch events kept for replay
  int handler_threads = 128;    // bounds concurrent requests, watches included
};

// A kubeconfig (YAML) whose current context points at `server_url` with no credentials.
std::string test_kubeconfig(const std::string& server_url,
                            const std::string& namespace_name = "default");

class ApiServer {
 public:
  explicit ApiServer(ApiServerOptions options = {});
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  Status start();
  void shutdown();
  uint16_t port() const;
  std::string url() const;  // "http://127.0.0.1:<port>"
  // A kubeconfig (YAML) whose current context points at this server, no credentials.
  std::string kubeconfig(const std::string& namespace_name = "default") const;

  // --- fault injection ---
  // Ends every open watch stream (clients see the stream end and must re-watch).
  void drop_watches();
  // The next `count` requests whose method equals `method` ("" = any) and whose target
  // contains `path_substring` ("" = any) are answered with `http_status` (500, 429, ...)
  // and a Status body; a positive retry_after_s adds Retry-After (and
  // details.retryAfterSeconds).
  void fail_next(int count, int http_status = 500, const std::string& method = "",
                 const std::string& path_substring = "", int retry_after_s = 0);
  // Delay before every request is handled.
  void set_latency_ms(int64_t latency_ms);
  // Forgets the watch history: any watch from an older resourceVersion gets 410.
  void compact_history();

  // --- observation ---
  // Requests by verb: get, list, watch, create, update, patch, delete, discovery.
  int64_t request_count(const std::string& verb) const;
  std::map<std::string, int64_t> request_counts() const;
  int64_t open_watches() const;
  int64_t resource_version() const;

  struct State;  // implementation detail

 private:
  std::shared_ptr<State> state_;
  std::unique_ptr<http::Server> server_;
  ApiServerOptions options_;
};

}  // namespace moeserve::testing
