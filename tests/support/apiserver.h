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
// deletes its dependents (by ownerReference uid, recursively) unless propagationPolicy is Orphan,
// and an object created with owners that are all gone is deleted at once (the garbage
// collector's absent-owner rule).
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

// Random faults for fault-injection runs, each drawn per request from one generator seeded
// with `seed` (one request order replays the same faults; concurrent clients interleave).
// Probabilities are in [0, 1]; 0 turns a fault off. Each answer is what a real API server
// sends in that situation:
// - conflict: a PUT to an existing object gets 409 Conflict (as for a stale resourceVersion);
// - gone: a list with a resourceVersion or continue token gets 410 Expired; a watch from a
//   resourceVersion gets the ERROR event with a 410 Expired Status (the history moved on);
// - throttle: 429 TooManyRequests with Retry-After: retry_after_s (API priority and
//   fairness);
// - server_error: 500 InternalError;
// - lost_response: a create/update/patch/delete is applied, then answered 504 Timeout (the
//   write committed after the server's deadline; the client cannot tell it happened);
// - watch_drop: a watch's connection is cut (no last chunk) after U[0, watch_fault_after_ms];
// - watch_stall: a watch goes silent (no events, no bookmarks, no close) after
//   U[0, watch_fault_after_ms] for stall_ms, then its connection is cut;
// - max_latency_ms: every request waits U[0, max_latency_ms] ms first.
// Discovery, /version and the health endpoints are never faulted.
struct FaultProfile {
  uint64_t seed = 1;
  double conflict = 0;
  double gone = 0;
  double throttle = 0;
  int retry_after_s = 1;
  double server_error = 0;
  double lost_response = 0;
  double watch_drop = 0;
  double watch_stall = 0;
  int64_t watch_fault_after_ms = 2000;
  int64_t stall_ms = 5000;
  int64_t max_latency_ms = 0;
};

// invalid_argument naming the field when a probability is outside [0, 1] or a duration
// or retry_after_s is negative.
Status validate_fault_profile(const FaultProfile& profile);

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
  // Replaces the random faults (FaultProfile{} turns them off) and reseeds their
  // generator; refuses an invalid profile.
  Status set_fault_profile(const FaultProfile& profile);
  // Random faults injected so far, by name: conflict, gone, throttle, server_error,
  // lost_response, watch_drop, watch_stall.
  std::map<std::string, int64_t> injected_faults() const;

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
