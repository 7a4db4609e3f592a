// HttpTransport: bearer tokens from a rotating file, re-read after a 401.
#include "operator/kube/transport.h"

#include <gtest/gtest.h>

#include <atomic>

#include "tests/support/test_util.h"

namespace moeserve::kube {
namespace {

using moeserve::testing::TempDir;
using moeserve::testing::write_file;

// A server that accepts only "Bearer <accepted>".
class TokenCheckingServer {
 public:
  explicit TokenCheckingServer(std::string accepted) : accepted_(std::move(accepted)) {
    server_.route("GET", "/api", [this](const http::Request& req) {
      ++requests_;
      if (req.header("authorization") != "Bearer " + accepted_) {
        return http::json_response(401, R"({"kind":"Status","code":401,"reason":"Unauthorized"})");
      }
      return http::json_response(200, R"({"kind":"APIVersions","versions":["v1"]})");
    });
  }
  Status start() { return server_.start(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()); }
  int requests() const { return requests_.load(); }

 private:
  std::string accepted_;
  std::atomic<int> requests_{0};
  http::Server server_{http::ServerOptions{}};
};

TEST(HttpTransport, RotatedTokenFileIsReReadAfterAn401) {
  TokenCheckingServer server("token-two");
  ASSERT_TRUE(server.start().ok());
  TempDir dir;
  write_file(dir.file("token"), "token-one\n");
  Config config;
  config.server = server.url();
  config.token_file = dir.file("token");
  HttpTransport transport(config);
  ASSERT_TRUE(transport.init().ok());

  auto first = transport.send({"GET", server.url() + "/api"});
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->status, 401);  // still token-one after one retry
  EXPECT_EQ(server.requests(), 2);

  write_file(dir.file("token"), "token-two\n");  // the kubelet rotated it
  auto second = transport.send({"GET", server.url() + "/api"});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->status, 200);
  EXPECT_EQ(server.requests(), 4);  // cached token-one refused, re-read token-two accepted
}

TEST(HttpTransport, StaticTokenIsSentAndNoCredentialsSendNoHeader) {
  TokenCheckingServer server("static");
  ASSERT_TRUE(server.start().ok());
  Config with_token;
  with_token.server = server.url();
  with_token.token = "static";
  HttpTransport authorized(with_token);
  EXPECT_EQ(authorized.send({"GET", server.url() + "/api"})->status, 200);

  Config anonymous;
  anonymous.server = server.url();
  HttpTransport plain(anonymous);
  EXPECT_EQ(plain.send({"GET", server.url() + "/api"})->status, 401);
  EXPECT_EQ(server.requests(), 2);  // no retry without a token file
}

}  // namespace
}  // namespace moeserve::kube
