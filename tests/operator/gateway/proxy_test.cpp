// Proxy against in-process fake upstreams on common/http_server: what it forwards, how it
// streams, fails over, holds requests while waking, and refuses at the edge.
#include "operator/gateway/proxy.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/http_client.h"
#include "common/http_server.h"
#include "tests/support/test_util.h"

namespace moeserve::gateway {
namespace {

using moeserve::testing::wait_until;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kDeployment = "ns/tiny";

class FakeDiscovery : public Discovery {
 public:
  Snapshot snapshot() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return snapshot_;
  }
  void report_waiting(const std::string& deployment, int64_t waiting) override {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting_[deployment] = waiting;
    if (waiting > max_waiting_) max_waiting_ = waiting;
  }
  void set(Snapshot s) {
    std::lock_guard<std::mutex> lock(mutex_);
    snapshot_ = std::move(s);
  }
  int64_t waiting(const std::string& d) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = waiting_.find(d);
    return it == waiting_.end() ? 0 : it->second;
  }

 private:
  mutable std::mutex mutex_;
  Snapshot snapshot_;
  std::map<std::string, int64_t> waiting_;
  int64_t max_waiting_ = 0;
};

// A fake worker: records every request it receives; `handler` answers it.
class FakeUpstream {
 public:
  explicit FakeUpstream(http::Handler handler) {
    http::ServerOptions options;
    options.handler_threads = 8;
    server_ = std::make_unique<http::Server>(options);
    auto record = [this, handler](const http::Request& r, http::Responder& out) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        received_.push_back(r);
      }
      handler(r, out);
    };
    server_->route_prefix("*", "/", record);
    EXPECT_TRUE(server_->start().ok());
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }
  std::vector<http::Request> received() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return received_;
  }
  size_t count() const { return received().size(); }

 private:
  mutable std::mutex mutex_;
  std::vector<http::Request> received_;
  std::unique_ptr<http::Server> server_;
};

void send_events(http::Responder& out, const std::vector<std::string>& events) {
  for (const std::string& e : events) {
    if (!out.write("data: " + e + "\n\n")) return;
  }
}

const std::vector<std::string> kEvents = {
    R"({"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]})",
    R"({"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]})",
    R"({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})", "[DONE]"};

std::string sse_of(const std::vector<std::string>& events) {
  std::string body;
  for (const std::string& e : events) body += "data: " + e + "\n\n";
  return body;
}

void serve_stream(const http::Request&, http::Responder& out) {
  if (!out.begin_stream(200, "text/event-stream")) return;
  send_events(out, kEvents);
  out.end_stream();
}

void serve_json(const http::Request& r, http::Responder& out) {
  out.send(http::json_response(200, json({{"echo", json::parse(r.body)}}).dump()));
}

ServedModel model_of(const std::vector<const FakeUpstream*>& upstreams, bool ready = true) {
  ServedModel m;
  m.model = "tiny";
  m.deployment = kDeployment;
  for (size_t i = 0; i < upstreams.size(); ++i) {
    m.groups.push_back(
        {std::string(kDeployment) + "/g" + std::to_string(i), upstreams[i]->url(), ready});
  }
  return m;
}

class ProxyTest : public ::testing::Test {
 protected:
  void start(ProxyOptions options = least_loaded()) {
    proxy_ = std::make_unique<Proxy>(options, &discovery_);
    http::ServerOptions server_options;
    server_options.handler_threads = 32;
    server_options.max_body_bytes = 4096;
    server_options.error_response = Proxy::server_error_response;
    server_ = std::make_unique<http::Server>(server_options);
    proxy_->add_routes(*server_);
    ASSERT_TRUE(server_->start().ok());
  }
  static ProxyOptions least_loaded() {
    ProxyOptions o;
    o.router.policy = RoutingPolicy::kLeastLoaded;  // ties: g0 first, so tests know the order
    o.upstream_connect_timeout_ms = 500;
    o.upstream_timeout_ms = 5000;
    o.wake_poll = 10ms;
    return o;
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + path;
  }
  http::ClientResponse post(const std::string& path, const json& body, http::Headers headers = {}) {
    headers.emplace_back("Content-Type", "application/json");
    auto r = client_.send({"POST", url(path), headers, body.dump(), 20000});
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? *r : http::ClientResponse{};
  }
  std::string metrics() {
    auto r = client_.send({"GET", url("/metrics"), {}, ""});
    return r.ok() ? r->body : "";
  }
  static json chat(bool stream = false) {
    return {{"model", "tiny"},
            {"messages", {{{"role", "user"}, {"content", "Hello"}}}},
            {"max_tokens", 4},
            {"stream", stream}};
  }

  FakeDiscovery discovery_;
  std::unique_ptr<Proxy> proxy_;
  std::unique_ptr<http::Server> server_;
  http::Client client_;
};

TEST_F(ProxyTest, ForwardsTheBodyAndHeadersUnchangedAndReturnsTheAnswer) {
  FakeUpstream up(serve_json);
  discovery_.set({{model_of({&up})}});
  start();
  const json body = chat();
  auto r = post("/v1/chat/completions", body,
                {{"Authorization", "Bearer sk-x"}, {"X-Request-Id", "req-7"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["echo"], body);
  EXPECT_EQ(r.header("x-moeserve-group"), "ns/tiny/g0");
  ASSERT_EQ(up.count(), 1u);
  const http::Request got = up.received()[0];
  EXPECT_EQ(got.path, "/v1/chat/completions");
  EXPECT_EQ(got.body, body.dump()) << "the body goes upstream byte for byte";
  EXPECT_EQ(got.header("authorization"), "Bearer sk-x");
  EXPECT_EQ(got.header("x-request-id"), "req-7");
  EXPECT_EQ(got.header("x-forwarded-for"), "127.0.0.1");
}

TEST_F(ProxyTest, StreamsChunkByChunkBeforeTheUpstreamHasFinished) {
  std::promise<void> client_saw_first;
  std::shared_future<void> released = client_saw_first.get_future().share();
  FakeUpstream up([&](const http::Request&, http::Responder& out) {
    out.begin_stream(200, "text/event-stream");
    send_events(out, {kEvents[0]});
    // The rest only once the client has read the first event through the gateway.
    if (released.wait_for(10s) != std::future_status::ready) return;
    send_events(out, {kEvents.begin() + 1, kEvents.end()});
    out.end_stream();
  });
  discovery_.set({{model_of({&up})}});
  start();
  auto stream = client_.open({"POST",
                              url("/v1/chat/completions"),
                              {{"Content-Type", "application/json"}},
                              chat(true).dump(),
                              20000});
  ASSERT_TRUE(stream.ok()) << stream.status().to_string();
  EXPECT_EQ((*stream)->status(), 200);
  EXPECT_EQ((*stream)->header("content-type"), "text/event-stream");
  std::string body;
  while (body.find("\n\n") == std::string::npos) {
    auto chunk = (*stream)->read_some(5000);
    ASSERT_TRUE(chunk.ok()) << "the first event arrives while the upstream still waits";
    body += *chunk;
  }
  EXPECT_EQ(body, sse_of({kEvents[0]}));
  client_saw_first.set_value();
  while (!(*stream)->done()) {
    auto chunk = (*stream)->read_some(5000);
    ASSERT_TRUE(chunk.ok());
    body += *chunk;
  }
  EXPECT_EQ(body, sse_of(kEvents));
}

TEST_F(ProxyTest, AStreamBrokenMidwayEndsWithAnErrorEventAndNoFinishReason) {
  FakeUpstream up([](const http::Request&, http::Responder& out) {
    out.begin_stream(200, "text/event-stream");
    send_events(out, {kEvents[0]});
    out.write("data: {\"choices\":[{\"ind");  // torn mid-event, then the connection drops
  });
  discovery_.set({{model_of({&up})}});
  start();
  auto r = post("/v1/chat/completions", chat(true));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.find("finish_reason\":\"stop"), std::string::npos) << r.body;
  ASSERT_TRUE(r.body.starts_with(sse_of({kEvents[0]}))) << r.body;
  const size_t error_at = r.body.find("\n\ndata: {\"error\":");
  ASSERT_NE(error_at, std::string::npos)
      << "the error event starts on an event boundary: " << r.body;
  EXPECT_TRUE(r.body.ends_with("\n\ndata: [DONE]\n\n")) << r.body;
  const std::string event =
      r.body.substr(error_at + 8, r.body.find("\n\n", error_at + 2) - error_at - 8);
  const json error = json::parse(event);
  EXPECT_EQ(error["error"]["type"], "server_error");
  EXPECT_NE(error["error"]["message"].get<std::string>().find("ns/tiny/g0"), std::string::npos);
  // The handler records the failure after the client has its last byte.
  EXPECT_TRUE(wait_until(
      [&] {
        return metrics().find(
                   "moeserve_gateway_upstream_failures_total{upstream=\"ns/tiny/g0\"} 1") !=
               std::string::npos;
      },
      5s));
}

TEST_F(ProxyTest, AFailureBeforeTheFirstByteIsRetriedOnceOnAnotherGroup) {
  // g0 sends headers, then drops the connection before any event.
  FakeUpstream broken([](const http::Request&, http::Responder& out) {
    out.begin_stream(200, "text/event-stream");
  });
  FakeUpstream healthy(serve_stream);
  discovery_.set({{model_of({&broken, &healthy})}});
  start();
  auto r = post("/v1/chat/completions", chat(true));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, sse_of(kEvents));
  EXPECT_EQ(r.header("x-moeserve-group"), "ns/tiny/g1");
  EXPECT_EQ(broken.count(), 1u);
  ASSERT_EQ(healthy.count(), 1u);
  EXPECT_EQ(healthy.received()[0].body, chat(true).dump());
  // g0 is now out for its backoff: the next request goes to g1 directly.
  EXPECT_EQ(post("/v1/chat/completions", chat(true)).status, 200);
  EXPECT_EQ(broken.count(), 1u);
  const std::string m = metrics();
  EXPECT_NE(m.find("moeserve_gateway_routing_decisions_total{model=\"tiny\",reason=\"retry\"} 1"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("moeserve_gateway_upstream_up{model=\"tiny\",upstream=\"ns/tiny/g0\"} 0"),
            std::string::npos)
      << m;
}

TEST_F(ProxyTest, A5xxIsRetriedAndTwoFailuresAnswer502) {
  FakeUpstream draining([](const http::Request&, http::Responder& out) {
    out.send(http::json_response(503, R"({"error":{"message":"draining"}})"));
  });
  FakeUpstream also([](const http::Request&, http::Responder& out) {
    out.send(http::json_response(500, R"({"error":{"message":"engine failed"}})"));
  });
  discovery_.set({{model_of({&draining, &also})}});
  start();
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "hi"}});
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(draining.count(), 1u);
  EXPECT_EQ(also.count(), 1u) << "retried once, not more";
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "upstream_unavailable");
}

TEST_F(ProxyTest, ClientErrorsOfTheUpstreamPassThroughWithoutRetry) {
  FakeUpstream up([](const http::Request&, http::Responder& out) {
    out.send(http::json_response(400, R"({"error":{"message":"bad","param":"top_p"}})"));
  });
  FakeUpstream other(serve_json);
  discovery_.set({{model_of({&up, &other})}});
  start();
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "hi"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["param"], "top_p");
  EXPECT_EQ(other.count(), 0u);
}

TEST_F(ProxyTest, AClientThatLeavesCancelsTheUpstreamRequest) {
  std::atomic<bool> upstream_saw_gone{false};
  FakeUpstream up([&](const http::Request&, http::Responder& out) {
    out.begin_stream(200, "text/event-stream");
    for (int i = 0; i < 1000; ++i) {
      if (!out.write("data: " + kEvents[0] + "\n\n")) {
        upstream_saw_gone = true;
        return;
      }
      std::this_thread::sleep_for(10ms);
    }
    out.end_stream();
  });
  discovery_.set({{model_of({&up})}});
  start();
  {
    auto stream = client_.open({"POST",
                                url("/v1/chat/completions"),
                                {{"Content-Type", "application/json"}},
                                chat(true).dump(),
                                20000});
    ASSERT_TRUE(stream.ok());
    ASSERT_TRUE((*stream)->read_some(5000).ok());
    (*stream)->close();
  }
  EXPECT_TRUE(wait_until([&] { return upstream_saw_gone.load(); }, 5s))
      << "the upstream's writes fail once the gateway closed its connection";
}

TEST_F(ProxyTest, AClientThatLeavesDuringPrefillCancelsTheUpstreamToo) {
  std::atomic<bool> upstream_saw_gone{false};
  FakeUpstream up([&](const http::Request&, http::Responder& out) {
    // No byte at all until the client has gone (a long prefill).
    for (int i = 0; i < 500 && !out.client_gone(); ++i) std::this_thread::sleep_for(10ms);
    upstream_saw_gone = out.client_gone();
    out.send(http::json_response(200, "{}"));
  });
  discovery_.set({{model_of({&up})}});
  start();
  {
    http::ClientRequest request{"POST",
                                url("/v1/completions"),
                                {{"Content-Type", "application/json"}},
                                json({{"model", "tiny"}, {"prompt", "x"}}).dump(),
                                200};
    EXPECT_FALSE(client_.send(request).ok()) << "the client gives up after 200 ms";
  }
  EXPECT_TRUE(wait_until([&] { return upstream_saw_gone.load(); }, 5s));
}

TEST_F(ProxyTest, AnUnknownModelIsAnOpenAi404) {
  FakeUpstream up(serve_json);
  discovery_.set({{model_of({&up})}});
  start();
  auto r = post("/v1/chat/completions", {{"model", "gpt-9"}, {"messages", json::array()}});
  EXPECT_EQ(r.status, 404);
  const json e = json::parse(r.body)["error"];
  EXPECT_EQ(e["code"], "model_not_found");
  EXPECT_EQ(e["type"], "invalid_request_error");
  EXPECT_NE(e["message"].get<std::string>().find("gpt-9"), std::string::npos);
  EXPECT_EQ(up.count(), 0u);
  auto missing = post("/v1/chat/completions", {{"messages", json::array()}});
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(json::parse(missing.body)["error"]["param"], "model");
}

TEST_F(ProxyTest, ModelsListsEveryServedModel) {
  FakeUpstream up(serve_json);
  ServedModel a = model_of({&up});
  ServedModel b = model_of({&up}, false);
  b.model = "other";
  b.deployment = "ns/other";
  discovery_.set({{a, b}});
  start();
  auto r = client_.send({"GET", url("/v1/models"), {}, ""});
  ASSERT_TRUE(r.ok());
  const json list = json::parse(r->body);
  EXPECT_EQ(list["object"], "list");
  ASSERT_EQ(list["data"].size(), 2u);
  EXPECT_EQ(list["data"][0]["id"], "tiny");
  EXPECT_EQ(list["data"][1]["id"], "other");
  EXPECT_EQ(list["data"][1]["object"], "model");
}

TEST_F(ProxyTest, ABodyOverTheLimitIs413InOpenAisShape) {
  FakeUpstream up(serve_json);
  discovery_.set({{model_of({&up})}});
  start();
  json body = chat();
  body["messages"][0]["content"] = std::string(8192, 'x');
  auto r = post("/v1/chat/completions", body);
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(json::parse(r.body)["error"].contains("message"));
  EXPECT_EQ(up.count(), 0u);
}

TEST_F(ProxyTest, NoReadyGroupAndNothingToWakeIs503AtOnce) {
  FakeUpstream up(serve_json);
  discovery_.set({{model_of({&up}, false)}});  // can_wake false
  start();
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "hi"}});
  EXPECT_EQ(r.status, 503);
  EXPECT_FALSE(r.header("retry-after").empty());
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "no_ready_group");
  EXPECT_EQ(discovery_.waiting(kDeployment), 0);
}

TEST_F(ProxyTest, AHeldRequestIsServedOnceAGroupIsReadyAndReportsTtftFromZero) {
  FakeUpstream up(serve_stream);
  ServedModel asleep = model_of({&up}, false);
  asleep.can_wake = true;
  discovery_.set({{asleep}});
  start();
  auto held =
      std::async(std::launch::async, [&] { return post("/v1/chat/completions", chat(true)); });
  ASSERT_TRUE(wait_until([&] { return discovery_.waiting(kDeployment) == 1; }, 5s))
      << "the held request is reported to whatever wakes the deployment";
  EXPECT_NE(metrics().find("moeserve_gateway_requests_waiting{deployment=\"ns/tiny\"} 1"),
            std::string::npos);
  EXPECT_EQ(up.count(), 0u);
  ServedModel awake = asleep;
  awake.groups[0].ready = true;
  discovery_.set({{awake}});
  const http::ClientResponse r = held.get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, sse_of(kEvents));
  EXPECT_EQ(discovery_.waiting(kDeployment), 0);
  const std::string m = metrics();
  EXPECT_NE(
      m.find("moeserve_gateway_time_to_first_token_from_zero_seconds_count{model=\"tiny\"} 1"),
      std::string::npos)
      << m;
}

TEST_F(ProxyTest, AFullWakeQueueAndATimeoutAre503WithRetryAfter) {
  FakeUpstream up(serve_json);
  ServedModel asleep = model_of({&up}, false);
  asleep.can_wake = true;
  asleep.queue_size = 1;
  asleep.queue_timeout_seconds = 1;
  discovery_.set({{asleep}});
  start();
  auto held = std::async(std::launch::async, [&] {
    return post("/v1/completions", {{"model", "tiny"}, {"prompt", "a"}});
  });
  ASSERT_TRUE(wait_until([&] { return discovery_.waiting(kDeployment) == 1; }, 5s));
  auto full = post("/v1/completions", {{"model", "tiny"}, {"prompt", "b"}});
  EXPECT_EQ(full.status, 503);
  EXPECT_FALSE(full.header("retry-after").empty());
  EXPECT_NE(json::parse(full.body)["error"]["message"].get<std::string>().find("queue is full"),
            std::string::npos);
  const http::ClientResponse timed_out = held.get();
  EXPECT_EQ(timed_out.status, 503);
  EXPECT_FALSE(timed_out.header("retry-after").empty());
  EXPECT_NE(json::parse(timed_out.body)["error"]["message"].get<std::string>().find("within 1s"),
            std::string::npos);
  EXPECT_EQ(discovery_.waiting(kDeployment), 0);
  EXPECT_EQ(up.count(), 0u);
  const std::string m = metrics();
  EXPECT_NE(m.find("reason=\"full\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("reason=\"timeout\"} 1"), std::string::npos) << m;
}

class KeyFile {
 public:
  explicit KeyFile(const std::string& keys) { std::ofstream(dir_.file("keys")) << keys; }
  std::string path() const { return dir_.file("keys"); }

 private:
  moeserve::testing::TempDir dir_;
};

TEST_F(ProxyTest, ApiKeysAreRequiredAndEachKeyHasAConcurrencyLimit) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  FakeUpstream up([&](const http::Request& r, http::Responder& out) {
    if (r.body.find("slow") != std::string::npos) released.wait_for(10s);
    serve_json(r, out);
  });
  discovery_.set({{model_of({&up})}});
  KeyFile keys("sk-a\nsk-b\n");
  ProxyOptions options = least_loaded();
  options.api_keys = std::move(*auth::ApiKeys::load(keys.path()));
  options.max_concurrent_per_key = 1;
  start(options);
  const json slow = {{"model", "tiny"}, {"prompt", "slow"}};
  const json fast = {{"model", "tiny"}, {"prompt", "fast"}};
  EXPECT_EQ(post("/v1/completions", fast).status, 401);
  auto wrong = post("/v1/completions", fast, {{"Authorization", "Bearer sk-z"}});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(json::parse(wrong.body)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(up.count(), 0u);
  auto first = std::async(std::launch::async, [&] {
    return post("/v1/completions", slow, {{"Authorization", "Bearer sk-a"}});
  });
  ASSERT_TRUE(wait_until([&] { return up.count() == 1; }, 5s));
  auto limited = post("/v1/completions", fast, {{"Authorization", "bearer sk-a"}});
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.header("retry-after"), "1");
  EXPECT_EQ(json::parse(limited.body)["error"]["type"], "rate_limit_exceeded");
  EXPECT_EQ(post("/v1/completions", fast, {{"Authorization", "Bearer sk-b"}}).status, 200)
      << "another key has its own limit";
  release.set_value();
  EXPECT_EQ(first.get().status, 200);
  EXPECT_EQ(post("/v1/completions", fast, {{"Authorization", "Bearer sk-a"}}).status, 200);
  EXPECT_EQ(client_.send({"GET", url("/v1/models"), {}, ""})->status, 401);
}

TEST_F(ProxyTest, SharedPrefixesStayOnOneGroupUnderAffinity) {
  FakeUpstream g0(serve_json);
  FakeUpstream g1(serve_json);
  discovery_.set({{model_of({&g0, &g1})}});
  ProxyOptions options = least_loaded();
  options.router.policy = RoutingPolicy::kAffinity;
  start(options);
  const std::string system(1024, 's');
  std::set<std::string> groups;
  for (int i = 0; i < 6; ++i) {
    json body = {{"model", "tiny"},
                 {"messages",
                  {{{"role", "system"}, {"content", system}},
                   {{"role", "user"}, {"content", "question " + std::to_string(i)}}}}};
    groups.insert(post("/v1/chat/completions", body).header("x-moeserve-group"));
  }
  EXPECT_EQ(groups.size(), 1u);
  EXPECT_NE(metrics().find("reason=\"affinity\"} 6"), std::string::npos);
}

}  // namespace
}  // namespace moeserve::gateway
