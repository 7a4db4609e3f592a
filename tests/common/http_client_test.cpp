#include "common/http_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/test_util.h"

namespace moeserve::http {
namespace {

using moeserve::testing::free_port;
using moeserve::testing::Process;
using moeserve::testing::read_file;
using moeserve::testing::run_command;
using moeserve::testing::TempDir;
using moeserve::testing::wait_until;
using namespace std::chrono_literals;

TEST(ParseUrl, SchemesHostsPortsTargets) {
  auto a = parse_url("https://10.0.0.1:6443/api/v1/pods?watch=1");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->scheme, "https");
  EXPECT_EQ(a->host, "10.0.0.1");
  EXPECT_EQ(a->port, 6443);
  EXPECT_EQ(a->target, "/api/v1/pods?watch=1");
  auto b = parse_url("http://localhost");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->port, 80);
  EXPECT_EQ(b->target, "/");
  EXPECT_EQ(parse_url("https://kubernetes.default.svc")->port, 443);
  auto v6 = parse_url("http://[::1]:8080/x");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 8080);
  EXPECT_FALSE(parse_url("ftp://x").ok());
  EXPECT_FALSE(parse_url("no-scheme").ok());
  EXPECT_FALSE(parse_url("http://host:99999/").ok());
  EXPECT_FALSE(parse_url("http://:80/").ok());
}

TEST(HttpClient, RefusedConnectionIsUnavailable) {
  Client client;
  auto r = client.send({"GET", "http://127.0.0.1:" + std::to_string(free_port()) + "/", {}, ""});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
}

TEST(HttpClient, SilentServerTimesOut) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  Client client;
  ClientRequest request{
      "GET", "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/", {}, ""};
  request.timeout_ms = 200;
  auto r = client.send(request);
  close(fd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().to_string();
}

TEST(HttpClientRedirects, ResolveAgainstTheAnsweringUrl) {
  const Url from = *parse_url("https://hub.example:8443/org/model/resolve/abc/w/a.json?x=1");
  EXPECT_EQ(*resolve_redirect(from, "https://cdn.example/obj?sig=1"), "https://cdn.example/obj?sig=1");
  EXPECT_EQ(*resolve_redirect(from, "//cdn.example/obj"), "https://cdn.example/obj");
  EXPECT_EQ(*resolve_redirect(from, "/api/resolve-cache/x"),
            "https://hub.example:8443/api/resolve-cache/x");
  EXPECT_EQ(*resolve_redirect(from, "b.json"), "https://hub.example:8443/org/model/resolve/abc/w/b.json");
  EXPECT_EQ(*resolve_redirect(*parse_url("http://[::1]:80/a"), "/b"), "http://[::1]:80/b");
  EXPECT_FALSE(resolve_redirect(from, "").ok());
  EXPECT_FALSE(resolve_redirect(from, "ftp://x/y").ok());
}

// /hop/N redirects to /hop/N-1 (relative), /hop/0 to the other origin (localhost), which
// echoes the Authorization it received; /see-other answers 303.
class RedirectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.route_prefix("*", "/hop/", [this](const Request& r, Responder& out) {
      const int n = std::stoi(r.path.substr(5));
      Response response = text_response(n % 2 ? 302 : 307, "");
      response.headers.emplace_back(
          "Location", n > 0 ? std::to_string(n - 1)
                            : "http://localhost:" + std::to_string(server_.port()) + "/echo");
      out.send(response);
    });
    server_.route("*", "/echo", SimpleHandler([](const Request& r) {
                    return text_response(200, r.method + " auth=" + r.header("authorization") +
                                                  " body=" + r.body);
                  }));
    server_.route("POST", "/see-other", SimpleHandler([](const Request&) {
                    Response response = text_response(303, "");
                    response.headers.emplace_back("Location", "/echo");
                    return response;
                  }));
    ASSERT_TRUE(server_.start().ok());
  }
  std::string url(const std::string& path) {
    return "http://127.0.0.1:" + std::to_string(server_.port()) + path;
  }
  Server server_{ServerOptions{}};
  Client client_;
};

TEST_F(RedirectTest, FollowsUpToTheLimitAndDropsTheTokenAtAnotherOrigin) {
  ClientRequest request{"GET", url("/hop/3"), {{"Authorization", "Bearer t"}}, ""};
  StatusOr<ClientResponse> not_followed = client_.send(request);
  ASSERT_TRUE(not_followed.ok());
  EXPECT_EQ(not_followed->status, 302);
  EXPECT_EQ(not_followed->header("location"), "2");
  request.max_redirects = 3;
  StatusOr<ClientResponse> short_of_it = client_.send(request);
  ASSERT_TRUE(short_of_it.ok());
  EXPECT_EQ(short_of_it->status, 307);  // /hop/0 still redirects
  request.max_redirects = 4;
  StatusOr<ClientResponse> followed = client_.send(request);
  ASSERT_TRUE(followed.ok()) << followed.status().message();
  EXPECT_EQ(followed->status, 200);
  EXPECT_EQ(followed->body, "GET auth= body=");
  // Same origin: the token stays.
  ClientRequest same{"GET", url("/echo"), {{"Authorization", "Bearer t"}}, ""};
  same.max_redirects = 1;
  EXPECT_EQ(client_.send(same)->body, "GET auth=Bearer t body=");
}

TEST_F(RedirectTest, StreamsFollowRedirectsAndSeeOtherBecomesGet) {
  ClientRequest request{"GET", url("/hop/1"), {}, ""};
  request.max_redirects = 2;
  StatusOr<std::unique_ptr<ResponseStream>> stream = client_.open(request);
  ASSERT_TRUE(stream.ok()) << stream.status().message();
  EXPECT_EQ((*stream)->status(), 200);
  std::string body;
  while (true) {
    StatusOr<std::string> chunk = (*stream)->read_some();
    ASSERT_TRUE(chunk.ok());
    if (chunk->empty()) break;
    body += *chunk;
  }
  EXPECT_EQ(body, "GET auth= body=");
  ClientRequest post{"POST", url("/see-other"), {}, "payload"};
  post.max_redirects = 1;
  EXPECT_EQ(client_.send(post)->body, "GET auth= body=");
}

TEST(HttpClient, BadTlsMaterialIsRejectedAtInit) {
  ClientOptions options;
  options.ca_pem = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
  Client client(options);
  Status s = client.init();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("CA certificate"), std::string::npos) << s.message();
  ClientOptions missing;
  missing.ca_file = "/nonexistent/ca.crt";
  EXPECT_NE(Client(missing).init().message().find("/nonexistent/ca.crt"), std::string::npos);
}

// A throwaway PKI (CA, server certificate for localhost/127.0.0.1, client certificate) and
// openssl s_server as the TLS peer.
class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string d = dir_.path();
    std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
    std::string script =
        "set -e; cd " + d + "; openssl req -x509" + key +
        "-keyout ca.key -out ca.crt -days 1 -subj /CN=test-ca"
        "; openssl req -x509" +
        key +
        "-keyout other-ca.key -out other-ca.crt -days 1 -subj /CN=other"
        "; openssl req" +
        key +
        "-keyout server.key -out server.csr -subj /CN=localhost"
        "; printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext"
        "; openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial"
        "  -out server.crt -days 1 -extfile san.ext"
        "; openssl req" +
        key +
        "-keyout client.key -out client.csr -subj /CN=client"
        "; openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial"
        "  -out client.crt -days 1";
    ASSERT_EQ(run_command("bash -c \"" + script + "\" >/dev/null 2>&1"), 0);
  }

  void start_server(bool require_client_cert) {
    port_ = free_port();
    std::vector<std::string> argv = {"/usr/bin/openssl",
                                     "s_server",
                                     "-accept",
                                     "127.0.0.1:" + std::to_string(port_),
                                     "-cert",
                                     dir_.file("server.crt"),
                                     "-key",
                                     dir_.file("server.key"),
                                     "-www",
                                     "-quiet"};
    if (require_client_cert) {
      argv.insert(argv.end(), {"-Verify", "1", "-CAfile", dir_.file("ca.crt")});
    }
    server_ = std::make_unique<Process>(argv, dir_.file("s_server.log"));
    ASSERT_TRUE(wait_until(
        [&] { return !moeserve::testing::raw_exchange(port_, "", 50ms).empty() || probe(); }, 10s));
  }

  // True once something accepts connections on the port.
  bool probe() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    return ok;
  }

  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/"; }

  TempDir dir_;
  uint16_t port_ = 0;
  std::unique_ptr<Process> server_;
};

TEST_F(TlsTest, VerifiesServerAgainstCaPem) {
  start_server(false);
  ClientOptions options;
  options.ca_pem = read_file(dir_.file("ca.crt"));
  Client client(options);
  ASSERT_TRUE(client.init().ok());
  auto r = client.send({"GET", url(), {}, ""});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("s_server"), std::string::npos);
}

TEST_F(TlsTest, ServerNameOverrideIsVerified) {
  start_server(false);
  ClientOptions good;
  good.ca_file = dir_.file("ca.crt");
  good.server_name = "localhost";
  auto ok = Client(good).send({"GET", url(), {}, ""});
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  ClientOptions bad = good;
  bad.server_name = "api.other.example";
  auto refused = Client(bad).send({"GET", url(), {}, ""});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("TLS handshake"), std::string::npos);
}

TEST_F(TlsTest, UntrustedCaIsRefusedUnlessVerificationIsOff) {
  start_server(false);
  ClientOptions options;
  options.ca_file = dir_.file("other-ca.crt");
  auto refused = Client(options).send({"GET", url(), {}, ""});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("TLS handshake"), std::string::npos)
      << refused.status().to_string();
  options.insecure_skip_verify = true;
  auto r = Client(options).send({"GET", url(), {}, ""});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->status, 200);
}

TEST_F(TlsTest, ClientCertificateForMutualTls) {
  start_server(true);
  ClientOptions without;
  without.ca_file = dir_.file("ca.crt");
  auto refused = Client(without).send({"GET", url(), {}, ""});
  EXPECT_FALSE(refused.ok() && refused->status == 200);
  ClientOptions with = without;
  with.client_cert_file = dir_.file("client.crt");
  with.client_key_pem = read_file(dir_.file("client.key"));
  auto r = Client(with).send({"GET", url(), {}, ""});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->status, 200);
}

}  // namespace
}  // namespace moeserve::http
