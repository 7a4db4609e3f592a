// Proxy: the gateway's OpenAI reverse proxy, on common/http_server and common/http_client.
//
// Routes: GET /v1/models (every served model of the Discovery snapshot, OpenAI's list
// shape), POST /v1/chat/completions and /v1/completions (forwarded by `model`), POST
// /tokenize and /detokenize (forwarded by `model`, as vLLM's), and GET /metrics.
//
// A forwarded request:
// 1. Edge: with api_keys, a Bearer key from the file (401 otherwise); with
//    max_concurrent_per_key, at most that many requests in flight per key (429 with
//    Retry-After). The body limit is the http::Server's (413).
// 2. The body's `model` picks the ServedModel (400 without one; 404 model_not_found for
//    a model no deployment serves). The body goes upstream unchanged.
// 3. The Router picks one of the model's ready groups. With none ready, a model that
//    can wake (ServedModel::can_wake) or whose ready groups are only in their failure
//    backoff holds the request: at most queue_size held per deployment (reported through
//    Discovery::report_waiting), each for at most queue_timeout_seconds, served as soon
//    as a group is ready; a full queue, a timeout or a model that cannot wake answer 503
//    with Retry-After. A request that waited reports its time to first token "from zero"
//    (metric and log line).
// 4. Upstream: no answer, a 5xx, or a body that breaks before the first byte went to the
//    client marks the group failed (Router backoff) and retries once on another group.
//    SSE responses stream chunk by chunk (the blocking Responder::write is the
//    backpressure); other responses are read whole, then sent. A stream that breaks
//    after its first byte ends with an error event, data: {"error":{...}}, then
//    data: [DONE] (the worker's own mid-stream error shape; OpenAI's SDKs raise it), never
//    a finish_reason. A client that goes away closes the upstream connection, which
//    cancels the request there.
// Responses carry X-Moeserve-Group (the upstream id). Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/registry.h>

#include "common/api_keys.h"
#include "common/clock.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "operator/gateway/discovery.h"
#include "operator/gateway/gateway_metrics.h"
#include "operator/gateway/keyed_slots.h"
#include "operator/gateway/openai_request.h"
#include "operator/gateway/router.h"

namespace moeserve::gateway {

struct ProxyOptions {
  RouterOptions router;
  RequestCostOptions cost;
  std::shared_ptr<auth::ApiKeys> api_keys;  // null: no authentication at the gateway
  int64_t max_concurrent_per_key = 0;       // 0: no limit (needs api_keys otherwise)
  int64_t upstream_connect_timeout_ms = 2000;
  int64_t upstream_timeout_ms = 300000;     // to the first byte, and between later bytes
  int upstream_idle_connections = 64;       // kept-alive connections per group (0: none)
  std::chrono::milliseconds wake_poll{50};  // how often a held request looks for a group
};

// In flight and last activity of one deployment (local mode's scale to zero reads it).
struct DeploymentActivity {
  int64_t in_flight = 0;
  Clock::TimePoint last_request_end{};  // or its arrival while one is in flight
};

class Proxy {
 public:
  // `discovery` outlives the Proxy.
  Proxy(ProxyOptions options, Discovery* discovery, const Clock* clock = RealClock::instance());

  // The routes above; /metrics serves this proxy's registry and `extra_registries`.
  void add_routes(http::Server& server,
                  std::vector<std::shared_ptr<prometheus::Registry>> extra_registries = {});
  std::shared_ptr<prometheus::Registry> registry() const { return metrics_.registry(); }
  DeploymentActivity activity(const std::string& deployment) const;

  // For http::ServerOptions::error_response: the server's own errors in OpenAI's shape.
  static http::Response server_error_response(int status, std::string_view reason);

 private:
  enum class Outcome { kServed, kFailedBeforeFirstByte, kFailedMidStream, kClientGone };
  struct Attempt {
    Outcome outcome = Outcome::kServed;
    int status = 0;     // what the client got (kServed, kFailedMidStream)
    std::string error;  // why the upstream failed
  };
  void handle(const http::Request& request, http::Responder& out);
  http::Response handle_models(const http::Request& request);
  // The API key of the request, or the 401 to answer.
  std::optional<http::Response> check_key(const http::Request& request, std::string* key) const;
  // A decision for `model`, waiting in the wake queue when needed; or the response to
  // send (503, or 499 once the client left).
  std::optional<http::Response> route(http::Responder& out, const std::string& model_name,
                                      const std::vector<uint64_t>& prefix,
                                      const std::vector<std::string>& exclude,
                                      RouteDecision* decision, Upstream* upstream, bool* waited);
  // `finishing` runs just before the last byte goes to the client (it gives back the
  // request's per-key slot and its load, so a client's next request never meets them).
  Attempt forward(const http::Request& request, http::Responder& out, const Upstream& upstream,
                  uint64_t load_id, const std::string& model, Clock::TimePoint arrived, bool waited,
                  const std::function<void()>& finishing);
  void refresh_upstream_gauges();
  void note_activity(const std::string& deployment, int64_t delta);

  ProxyOptions options_;
  Discovery* discovery_;
  const Clock* clock_;
  http::Client client_;
  GatewayMetrics metrics_;
  KeyedSlots wake_slots_;
  KeyedSlots key_slots_;
  mutable std::mutex mutex_;  // guards router_, activity_, gauged_
  Router router_;
  std::map<std::string, DeploymentActivity> activity_;
  std::map<std::string, std::string> gauged_;  // upstream id -> model, with live gauges
  int64_t created_unix_s_;
};

}  // namespace moeserve::gateway
