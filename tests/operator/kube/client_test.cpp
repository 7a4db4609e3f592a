// The client's request shapes and response handling, over a scripted transport.
#include "operator/kube/client.h"

#include <gtest/gtest.h>

#include <deque>

#include "operator/kube/errors.h"

namespace moeserve::kube {
namespace {

using nlohmann::json;

class ScriptedStream : public http::ResponseStream {
 public:
  ScriptedStream(int status, std::deque<std::string> chunks)
      : status_(status), chunks_(std::move(chunks)) {}
  int status() const override { return status_; }
  const http::Headers& headers() const override { return headers_; }
  StatusOr<std::string> read_some(int64_t) override {
    if (chunks_.empty()) {
      done_ = true;
      return std::string();
    }
    std::string next = std::move(chunks_.front());
    chunks_.pop_front();
    return next;
  }
  bool done() const override { return done_; }
  void close() override { done_ = true; }

 private:
  int status_;
  http::Headers headers_;
  std::deque<std::string> chunks_;
  bool done_ = false;
};

class ScriptedTransport : public Transport {
 public:
  std::function<http::ClientResponse(const http::ClientRequest&)> respond;
  std::deque<std::string> watch_chunks;
  std::vector<http::ClientRequest> requests;

  StatusOr<http::ClientResponse> send(const http::ClientRequest& request) override {
    requests.push_back(request);
    return respond(request);
  }
  StatusOr<std::unique_ptr<http::ResponseStream>> open(
      const http::ClientRequest& request) override {
    requests.push_back(request);
    return std::unique_ptr<http::ResponseStream>(
        std::make_unique<ScriptedStream>(200, watch_chunks));
  }
};

std::string header_of(const http::ClientRequest& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

http::ClientResponse json_reply(int status, const json& body) {
  http::ClientResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}

TEST(ClientPaths, CoreGroupNamespacedClusterScopedAndSubresources) {
  EXPECT_EQ(Client::path(resources::kPods, "ns", "p", "status"),
            "/api/v1/namespaces/ns/pods/p/status");
  EXPECT_EQ(Client::path(resources::kPods, "", ""), "/api/v1/pods");
  EXPECT_EQ(Client::path(resources::kStatefulSets, "a", "s", "scale"),
            "/apis/apps/v1/namespaces/a/statefulsets/s/scale");
  EXPECT_EQ(Client::path(resources::kNamespaces, "ignored", "kube-system"),
            "/api/v1/namespaces/kube-system");
  EXPECT_EQ(resources::kModelDeployments.api_version(), "moeserve.io/v1alpha1");
  EXPECT_EQ(url_encode("a=b,c in (d)"), "a%3Db%2Cc%20in%20%28d%29");
}

TEST(ClientRequests, WritesUseTheRightVerbPathAndContentType) {
  auto transport = std::make_shared<ScriptedTransport>();
  transport->respond = [](const http::ClientRequest&) { return json_reply(200, {{"ok", true}}); };
  Client client(transport, "http://server:1/", "team");
  json cm = {{"metadata", {{"name", "c"}, {"resourceVersion", "9"}}}, {"data", {{"k", "v"}}}};
  ASSERT_TRUE(client.create(resources::kConfigMaps, "", cm).ok());
  ASSERT_TRUE(client.update(resources::kConfigMaps, "other", cm).ok());
  ASSERT_TRUE(client.update_status(resources::kModelDeployments, "", cm).ok());
  ASSERT_TRUE(client
                  .patch(resources::kConfigMaps, "", "c", PatchType::kJson,
                         json::array({{{"op", "remove"}, {"path", "/data/k"}}}))
                  .ok());
  ASSERT_TRUE(client.remove(resources::kStatefulSets, "team", "s", Propagation::kOrphan).ok());

  const auto& r = transport->requests;
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0].method, "POST");
  EXPECT_EQ(r[0].url, "http://server:1/api/v1/namespaces/team/configmaps");
  EXPECT_EQ(header_of(r[0], "Content-Type"), "application/json");
  EXPECT_EQ(json::parse(r[0].body), cm);
  EXPECT_EQ(r[1].method, "PUT");
  EXPECT_EQ(r[1].url, "http://server:1/api/v1/namespaces/other/configmaps/c");
  EXPECT_EQ(r[2].url,
            "http://server:1/apis/moeserve.io/v1alpha1/namespaces/team/modeldeployments/c/status");
  EXPECT_EQ(r[3].method, "PATCH");
  EXPECT_EQ(header_of(r[3], "Content-Type"), "application/json-patch+json");
  EXPECT_EQ(r[4].method, "DELETE");
  EXPECT_EQ(json::parse(r[4].body)["propagationPolicy"], "Orphan");
}

TEST(ClientRequests, ErrorBodiesBecomeTypedStatuses) {
  auto transport = std::make_shared<ScriptedTransport>();
  transport->respond = [](const http::ClientRequest&) {
    return json_reply(409, {{"kind", "Status"},
                            {"status", "Failure"},
                            {"reason", "Conflict"},
                            {"message", "the object has been modified"},
                            {"code", 409}});
  };
  Client client(transport, "http://s");
  auto result = client.update(resources::kLeases, "ns", {{"metadata", {{"name", "l"}}}});
  EXPECT_EQ(result.status().code(), StatusCode::kConflict);
  EXPECT_NE(
      result.status().message().find("PUT /apis/coordination.k8s.io/v1/namespaces/ns/leases/l"),
      std::string::npos);
  EXPECT_EQ(client.update(resources::kLeases, "ns", json::object()).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ClientRequests, ListAllFollowsContinueTokensAndKeepsTheFirstResourceVersion) {
  auto transport = std::make_shared<ScriptedTransport>();
  transport->respond = [](const http::ClientRequest& request) {
    bool second = request.url.find("continue=page2") != std::string::npos;
    json items = json::array();
    for (int i = 0; i < 2; ++i)
      items.push_back({{"metadata", {{"name", (second ? "b" : "a") + std::to_string(i)}}}});
    return json_reply(
        200, {{"kind", "PodList"},
              {"metadata",
               {{"resourceVersion", second ? "99" : "42"}, {"continue", second ? "" : "page2"}}},
              {"items", items}});
  };
  Client client(transport, "http://s");
  ListOptions options;
  options.label_selector = "app=x";
  options.limit = 2;
  auto all = client.list_all(resources::kPods, "ns", options);
  ASSERT_TRUE(all.ok()) << all.status().to_string();
  ASSERT_EQ(all->items.size(), 4u);
  EXPECT_EQ(all->items[3]["metadata"]["name"], "b1");
  EXPECT_EQ(all->resource_version, "42");
  ASSERT_EQ(transport->requests.size(), 2u);
  EXPECT_NE(transport->requests[0].url.find("labelSelector=app%3Dx"), std::string::npos);
  EXPECT_NE(transport->requests[0].url.find("limit=2"), std::string::npos);
}

TEST(ClientWatch, EventsArriveAcrossArbitraryChunksAndErrorGoneEndsTheWatch) {
  auto transport = std::make_shared<ScriptedTransport>();
  std::string a = R"({"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"5"}}})"
                  "\n";
  std::string b = R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"6"}}})"
                  "\n";
  std::string gone =
      R"({"type":"ERROR","object":{"kind":"Status","status":"Failure","reason":"Expired","message":"too old","code":410}})"
      "\n";
  transport->watch_chunks = {a.substr(0, 7), a.substr(7) + b.substr(0, 3), b.substr(3) + gone};
  Client client(transport, "http://s");
  WatchOptions options;
  options.resource_version = "4";
  std::vector<std::string> seen;
  Status status = client.watch(resources::kConfigMaps, "ns", options, [&](const WatchEvent& e) {
    seen.push_back(std::string(watch_event_type_name(e.type)) + "@" +
                   e.object["metadata"]["resourceVersion"].get<std::string>());
    return true;
  });
  EXPECT_EQ(status.code(), StatusCode::kGone);
  EXPECT_EQ(seen, (std::vector<std::string>{"ADDED@5", "BOOKMARK@6"}));
  const std::string& url = transport->requests.at(0).url;
  EXPECT_NE(url.find("watch=true"), std::string::npos);
  EXPECT_NE(url.find("resourceVersion=4"), std::string::npos);
  EXPECT_NE(url.find("allowWatchBookmarks=true"), std::string::npos);
}

TEST(ClientWatch, TimeoutIsRandomisedWithinBoundsWhenUnset) {
  std::set<int64_t> values;
  for (int i = 0; i < 50; ++i) {
    int64_t t = random_watch_timeout_seconds();
    EXPECT_GE(t, kMinWatchTimeoutS);
    EXPECT_LE(t, kMaxWatchTimeoutS);
    values.insert(t);
  }
  EXPECT_GT(values.size(), 5u);
}

}  // namespace
}  // namespace moeserve::kube
