#include "operator/gateway/proxy.h"

#include <algorithm>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/metrics.h"

namespace moeserve::gateway {
namespace {

constexpr int kClientClosedRequest = 499;  // nginx's code for "the client went away"
constexpr int64_t kRetryAfterBusyS = 1;    // per-key limit, an upstream's 5xx
constexpr int64_t kRetryAfterWakeS = 5;    // queue full or timed out while waking
constexpr size_t kErrorExcerptBytes = 300;
constexpr std::string_view kSseDone = "data: [DONE]";

double seconds_between(Clock::TimePoint a, Clock::TimePoint b) {
  return std::chrono::duration<double>(b - a).count();
}

bool hop_by_hop(const std::string& name) {
  static const std::set<std::string> kNames = {"host",
                                               "connection",
                                               "content-length",
                                               "transfer-encoding",
                                               "keep-alive",
                                               "te",
                                               "trailer",
                                               "upgrade",
                                               "proxy-authorization",
                                               "expect",
                                               "proxy-authenticate"};
  return kNames.count(name) > 0;
}

// The upstream response headers a client gets back (the body's framing is ours).
http::Headers passed_back_headers(const http::ResponseStream& upstream, const std::string& group) {
  http::Headers headers;
  for (const auto& [k, v] : upstream.headers()) {
    if (k == "retry-after" || k == "www-authenticate" || k == "x-request-id") {
      headers.emplace_back(k, v);
    }
  }
  headers.emplace_back("X-Moeserve-Group", group);
  return headers;
}

// "10.0.0.7:51234" -> "10.0.0.7", "[::1]:51234" -> "::1".
std::string address_without_port(const std::string& address) {
  std::string host = address;
  const size_t colon = host.rfind(':');
  if (colon != std::string::npos && host.find(']') != std::string::npos) {
    host = host.substr(1, host.rfind(']') - 1);
  } else if (colon != std::string::npos && host.find(':') == colon) {
    host = host.substr(0, colon);
  }
  return host;
}

const ServedModel* find_model(const Snapshot& snapshot, const std::string& model) {
  for (const ServedModel& m : snapshot.models) {
    if (m.model == model) return &m;
  }
  return nullptr;
}

std::vector<std::string> ready_ids(const ServedModel& model) {
  std::vector<std::string> ids;
  for (const Upstream& u : model.groups) {
    if (u.ready) ids.push_back(u.id);
  }
  return ids;
}

// Tracks what an SSE stream has carried: events completed ("\n\n" seen), whether it ended
// on an event boundary, and whether its last event was [DONE].
class SseTail {
 public:
  // Events that `bytes` completed.
  int64_t feed(std::string_view bytes) {
    int64_t events = 0;
    for (char c : bytes) {
      if (c == '\n' && last_ == '\n') ++events;
      last_ = c;
    }
    tail_ += bytes;
    if (tail_.size() > 64) tail_.erase(0, tail_.size() - 64);
    return events;
  }
  // What to write before an event of our own so that it starts on a boundary.
  std::string_view boundary() const {
    if (tail_.empty() || tail_.ends_with("\n\n")) return "";
    return tail_.ends_with("\n") ? "\n" : "\n\n";
  }
  bool ended_with_done() const {
    std::string_view t = tail_;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) {
      t.remove_suffix(1);
    }
    return t.ends_with(kSseDone);
  }

 private:
  std::string tail_;
  char last_ = '\0';
};

}  // namespace

Proxy::Proxy(ProxyOptions options, Discovery* discovery, const Clock* clock)
    : options_(std::move(options)),
      discovery_(discovery),
      clock_(clock),
      client_([&] {
        http::ClientOptions c;
        c.connect_timeout_ms = options_.upstream_connect_timeout_ms;
        c.request_timeout_ms = options_.upstream_timeout_ms;
        // Keep-alive to the groups: a new TCP connection per request was most of the
        // gateway's overhead (bench-gateway).
        c.max_idle_connections_per_host = options_.upstream_idle_connections;
        return c;
      }()),
      wake_slots_([this](const std::string& deployment, int64_t waiting) {
        metrics_.set_waiting(deployment, waiting);
        discovery_->report_waiting(deployment, waiting);
      }),
      router_(options_.router, clock),
      created_unix_s_(clock->unix_seconds()) {}

http::Response Proxy::server_error_response(int status, std::string_view reason) {
  std::string_view type = status >= 500 ? "server_error" : "invalid_request_error";
  std::string_view code = status == 404 ? "not_found" : "";
  return openai_error(status, reason, type, code);
}

void Proxy::add_routes(http::Server& server,
                       std::vector<std::shared_ptr<prometheus::Registry>> extra_registries) {
  auto forward = [this](const http::Request& r, http::Responder& out) { handle(r, out); };
  server.route("POST", "/v1/chat/completions", forward);
  server.route("POST", "/v1/completions", forward);
  server.route("POST", "/tokenize", forward);
  server.route("POST", "/detokenize", forward);
  server.route("GET", "/v1/models",
               http::SimpleHandler([this](const http::Request& r) { return handle_models(r); }));
  extra_registries.insert(extra_registries.begin(), metrics_.registry());
  server.route(
      "GET", "/metrics",
      http::SimpleHandler([this, registries = std::move(extra_registries)](const http::Request&) {
        refresh_upstream_gauges();
        http::Response r;
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = metrics::serialize(registries);
        return r;
      }));
}

DeploymentActivity Proxy::activity(const std::string& deployment) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = activity_.find(deployment);
  return it == activity_.end() ? DeploymentActivity{} : it->second;
}

void Proxy::note_activity(const std::string& deployment, int64_t delta) {
  std::lock_guard<std::mutex> lock(mutex_);
  DeploymentActivity& a = activity_[deployment];
  a.in_flight += delta;
  a.last_request_end = clock_->now();
}

std::optional<http::Response> Proxy::check_key(const http::Request& request,
                                               std::string* key) const {
  if (!options_.api_keys) return std::nullopt;
  const std::string header = request.header("authorization");
  const std::optional<std::string_view> token = auth::bearer_token(header);
  if (token && options_.api_keys->accepts(*token)) {
    *key = std::string(*token);
    return std::nullopt;
  }
  http::Response r =
      openai_error(401,
                   header.empty() ? "missing API key: send Authorization: Bearer <key>"
                                  : "incorrect API key provided",
                   "invalid_request_error", "invalid_api_key");
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

http::Response Proxy::handle_models(const http::Request& request) {
  std::string key;
  if (auto refused = check_key(request, &key)) return *refused;
  nlohmann::json data = nlohmann::json::array();
  std::set<std::string> listed;
  for (const ServedModel& m : discovery_->snapshot().models) {
    if (!listed.insert(m.model).second) continue;
    data.push_back({{"id", m.model},
                    {"object", "model"},
                    {"created", created_unix_s_},
                    {"owned_by", "moeserve"}});
  }
  return http::json_response(200, nlohmann::json({{"object", "list"}, {"data", data}}).dump());
}

void Proxy::handle(const http::Request& request, http::Responder& out) {
  const Clock::TimePoint arrived = clock_->now();
  std::string model_label;
  int answered = 0;
  auto reply = [&](http::Response r) {
    answered = r.status;
    out.send(std::move(r));
  };
  struct RecordOnExit {
    std::function<void()> fn;
    ~RecordOnExit() { fn(); }
  } record{[&] {
    metrics_.record_request(model_label, answered, seconds_between(arrived, clock_->now()));
  }};

  std::string key;
  if (auto refused = check_key(request, &key)) return reply(std::move(*refused));
  std::optional<KeyedSlots::Slot> key_slot;
  if (options_.max_concurrent_per_key > 0) {
    key_slot = key_slots_.try_take(key, options_.max_concurrent_per_key);
    if (!key_slot) {
      return reply(openai_error(429,
                                "too many concurrent requests for this API key (limit " +
                                    std::to_string(options_.max_concurrent_per_key) +
                                    "); retry after one finishes",
                                "rate_limit_exceeded", "rate_limit_exceeded", kRetryAfterBusyS));
    }
  }
  StatusOr<InspectedRequest> inspected = inspect_request(request.path, request.body, options_.cost);
  if (!inspected.ok()) {
    http::Response r = http::json_response(
        400, openai_error_body(inspected.status().message(), "invalid_request_error", "",
                               inspected.status().message().starts_with("model") ? "model" : ""));
    return reply(std::move(r));
  }
  const Snapshot snapshot = discovery_->snapshot();
  const ServedModel* served = find_model(snapshot, inspected->model);
  if (!served) {
    return reply(openai_error(404,
                              "The model `" + inspected->model +
                                  "` does not exist: GET /v1/models lists the models served",
                              "invalid_request_error", "model_not_found"));
  }
  model_label = served->model;
  const std::string deployment = served->deployment;
  note_activity(deployment, +1);
  struct EndActivity {
    Proxy* proxy;
    std::string deployment;
    ~EndActivity() { proxy->note_activity(deployment, -1); }
  } end_activity{this, deployment};

  const std::vector<uint64_t> prefix =
      prefix_block_hashes(inspected->prefix_text, options_.router.max_prefix_blocks);
  std::vector<std::string> exclude;
  std::string last_error;
  for (int attempt = 0; attempt < 2; ++attempt) {
    RouteDecision decision;
    Upstream upstream;
    bool waited = false;
    if (attempt == 0) {
      if (auto refusal = route(out, model_label, prefix, exclude, &decision, &upstream, &waited)) {
        return reply(std::move(*refusal));
      }
    } else {
      std::optional<std::pair<RouteDecision, Upstream>> next;
      const Snapshot now = discovery_->snapshot();
      if (const ServedModel* m = find_model(now, model_label)) {
        std::optional<RouteDecision> d;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          d = router_.pick(ready_ids(*m), prefix, exclude);
        }
        for (const Upstream& u : m->groups) {
          if (d && u.id == d->group) next.emplace(*d, u);
        }
      }
      if (!next) break;
      decision = next->first;
      upstream = next->second;
    }
    metrics_.record_route(model_label, route_reason_name(decision.reason));
    uint64_t load_id = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      load_id = router_.begin(decision.group, inspected->cost_tokens());
    }
    Attempt a = forward(request, out, upstream, load_id, model_label, arrived, waited, [&] {
      key_slot.reset();
      std::lock_guard<std::mutex> lock(mutex_);
      router_.end(load_id);
    });
    {
      std::lock_guard<std::mutex> lock(mutex_);
      router_.end(load_id);
      if (a.outcome == Outcome::kServed) router_.succeeded(decision.group);
      if (a.outcome == Outcome::kFailedBeforeFirstByte || a.outcome == Outcome::kFailedMidStream) {
        router_.failed(decision.group);
      }
    }
    if (a.outcome == Outcome::kServed || a.outcome == Outcome::kFailedMidStream) {
      answered = a.status;
      if (a.outcome == Outcome::kFailedMidStream) {
        metrics_.record_upstream_failure(decision.group);
        log::warn("gateway: upstream failed mid-stream; the client got an error event",
                  {{"model", model_label}, {"upstream", decision.group}, {"error", a.error}});
      }
      return;
    }
    if (a.outcome == Outcome::kClientGone) {
      answered = kClientClosedRequest;
      return;
    }
    metrics_.record_upstream_failure(decision.group);
    log::warn("gateway: upstream failed before the first byte", {{"model", model_label},
                                                                 {"upstream", decision.group},
                                                                 {"attempt", attempt + 1},
                                                                 {"error", a.error}});
    exclude.push_back(decision.group);
    last_error = decision.group + ": " + a.error;
  }
  reply(openai_error(502, "the model's groups did not answer: " + last_error, "server_error",
                     "upstream_unavailable", kRetryAfterBusyS));
}

std::optional<http::Response> Proxy::route(http::Responder& out, const std::string& model_name,
                                           const std::vector<uint64_t>& prefix,
                                           const std::vector<std::string>& exclude,
                                           RouteDecision* decision, Upstream* upstream,
                                           bool* waited) {
  // One look at the snapshot: a decision, or why there is none.
  enum class Look { kRouted, kGone, kHoldable, kNothingToWake };
  ServedModel model;
  auto look = [&]() {
    const Snapshot snapshot = discovery_->snapshot();
    const ServedModel* m = find_model(snapshot, model_name);
    if (!m) return Look::kGone;
    model = *m;
    const std::vector<std::string> ready = ready_ids(*m);
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto d = router_.pick(ready, prefix, exclude)) {
      *decision = *d;
      for (const Upstream& u : m->groups) {
        if (u.id == d->group) *upstream = u;
      }
      return Look::kRouted;
    }
    return m->can_wake || !ready.empty() ? Look::kHoldable : Look::kNothingToWake;
  };
  auto no_group = [&](std::string_view why, std::string_view reason) {
    metrics_.record_queue_refusal(model_name, reason);
    return openai_error(503, why, "service_unavailable", "no_ready_group", kRetryAfterWakeS);
  };

  Look first = look();
  if (first == Look::kRouted) return std::nullopt;
  if (first == Look::kGone) {
    return openai_error(404, "The model `" + model_name + "` is no longer served",
                        "invalid_request_error", "model_not_found");
  }
  if (first == Look::kNothingToWake || model.queue_size <= 0) {
    return no_group("no group of model " + model_name + " is ready; retry shortly", "no_group");
  }
  std::optional<KeyedSlots::Slot> slot = wake_slots_.try_take(model.deployment, model.queue_size);
  if (!slot) {
    return no_group("model " + model_name + " is waking and its queue is full (" +
                        std::to_string(model.queue_size) + " requests); retry shortly",
                    "full");
  }
  const Clock::TimePoint held_at = clock_->now();
  const auto deadline = held_at + std::chrono::seconds(model.queue_timeout_seconds);
  log::info("gateway: holding a request until a group is ready",
            {{"model", model_name},
             {"deployment", model.deployment},
             {"waiting", wake_slots_.count(model.deployment)}});
  while (true) {
    std::this_thread::sleep_for(options_.wake_poll);
    if (out.client_gone()) {
      return openai_error(kClientClosedRequest, "client closed the request",
                          "invalid_request_error");
    }
    const Look now = look();
    if (now == Look::kRouted) {
      *waited = true;
      log::info("gateway: a group is ready; serving the held request",
                {{"model", model_name},
                 {"upstream", decision->group},
                 {"waited_seconds", seconds_between(held_at, clock_->now())}});
      return std::nullopt;
    }
    if (now == Look::kGone) {
      return openai_error(404, "The model `" + model_name + "` is no longer served",
                          "invalid_request_error", "model_not_found");
    }
    if (now == Look::kNothingToWake) {
      return no_group("model " + model_name + " stopped waking; retry later", "no_group");
    }
    if (clock_->now() >= deadline) {
      return no_group("no group of model " + model_name + " became ready within " +
                          std::to_string(model.queue_timeout_seconds) + "s; retry shortly",
                      "timeout");
    }
  }
}

Proxy::Attempt Proxy::forward(const http::Request& request, http::Responder& out,
                              const Upstream& upstream, uint64_t load_id, const std::string& model,
                              Clock::TimePoint arrived, bool waited,
                              const std::function<void()>& finishing) {
  http::ClientRequest forward;
  forward.method = request.method;
  forward.url = upstream.base_url + request.target;
  forward.body = request.body;
  forward.timeout_ms = options_.upstream_timeout_ms;
  for (const auto& [k, v] : request.headers) {
    if (!hop_by_hop(k)) forward.headers.emplace_back(k, v);
  }
  if (std::string client_ip = address_without_port(request.remote_address); !client_ip.empty()) {
    forward.headers.emplace_back("X-Forwarded-For", client_ip);
  }
  forward.cancelled = [&out] { return out.client_gone(); };

  auto failed_before = [&](const Status& s) {
    if (out.client_gone()) return Attempt{Outcome::kClientGone, kClientClosedRequest, ""};
    return Attempt{Outcome::kFailedBeforeFirstByte, 0, s.to_string()};
  };
  auto first_byte = [&] {
    const double ttft = seconds_between(arrived, clock_->now());
    metrics_.record_first_byte(model, ttft, waited);
    if (waited) {
      log::info("gateway: first token after waking from zero",
                {{"model", model}, {"upstream", upstream.id}, {"ttft_from_zero_seconds", ttft}});
    }
  };

  StatusOr<std::unique_ptr<http::ResponseStream>> opened = client_.open(forward);
  if (!opened.ok()) return failed_before(opened.status());
  http::ResponseStream& up = **opened;
  if (up.status() >= 500) {
    std::string excerpt;
    while (!up.done() && excerpt.size() < kErrorExcerptBytes) {
      StatusOr<std::string> c = up.read_some();
      if (!c.ok()) break;
      excerpt += *c;
    }
    up.close();
    return failed_before(
        unavailable_error("HTTP " + std::to_string(up.status()) + ": " +
                          excerpt.substr(0, std::min(excerpt.size(), kErrorExcerptBytes))));
  }
  http::Headers headers = passed_back_headers(up, upstream.id);
  const std::string content_type = up.header("content-type");
  if (!content_type.starts_with("text/event-stream")) {
    http::Response whole;
    whole.status = up.status();
    whole.content_type = content_type.empty() ? "application/json" : content_type;
    whole.headers = std::move(headers);
    while (!up.done()) {
      StatusOr<std::string> c = up.read_some();
      if (!c.ok()) return failed_before(c.status());
      whole.body += *c;
    }
    first_byte();
    const int status = whole.status;
    finishing();
    out.send(std::move(whole));
    return {Outcome::kServed, status, ""};
  }

  StatusOr<std::string> chunk = up.read_some();
  if (!chunk.ok()) return failed_before(chunk.status());
  if (!out.begin_stream(up.status(), content_type, std::move(headers))) {
    up.close();
    return {Outcome::kClientGone, kClientClosedRequest, ""};
  }
  first_byte();
  SseTail tail;
  auto pass_on = [&](const std::string& bytes) {
    const int64_t events = tail.feed(bytes);
    if (events > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      router_.progress(load_id, events);
    }
    return out.write(bytes);
  };
  if (!chunk->empty() && !pass_on(*chunk)) {
    up.close();
    return {Outcome::kClientGone, kClientClosedRequest, ""};
  }
  std::string error;
  while (!up.done()) {
    chunk = up.read_some();
    if (!chunk.ok()) {
      if (out.client_gone()) return {Outcome::kClientGone, kClientClosedRequest, ""};
      error = chunk.status().to_string();
      break;
    }
    if (!chunk->empty() && !pass_on(*chunk)) {
      up.close();
      return {Outcome::kClientGone, kClientClosedRequest, ""};
    }
  }
  if (error.empty() && !tail.ended_with_done()) {
    error = "the stream ended without data: [DONE]";
  }
  finishing();
  if (error.empty()) {
    out.end_stream();
    return {Outcome::kServed, up.status(), ""};
  }
  out.write(std::string(tail.boundary()) + "data: " +
            openai_error_body("upstream group " + upstream.id + " failed mid-stream: " + error,
                              "server_error", "upstream_stream_broken") +
            "\n\n" + std::string(kSseDone) + "\n\n");
  out.end_stream();
  return {Outcome::kFailedMidStream, up.status(), error};
}

void Proxy::refresh_upstream_gauges() {
  const Snapshot snapshot = discovery_->snapshot();
  std::vector<std::string> live;
  std::lock_guard<std::mutex> lock(mutex_);
  for (const ServedModel& m : snapshot.models) {
    for (const Upstream& u : m.groups) {
      live.push_back(u.id);
      metrics_.set_upstream(m.model, u.id, u.ready && router_.is_up(u.id),
                            router_.outstanding_tokens(u.id));
      gauged_[u.id] = m.model;
    }
  }
  for (auto it = gauged_.begin(); it != gauged_.end();) {
    if (std::find(live.begin(), live.end(), it->first) == live.end()) {
      metrics_.forget_upstream(it->first);
      it = gauged_.erase(it);
    } else {
      ++it;
    }
  }
  router_.retain(live);
}

}  // namespace moeserve::gateway
