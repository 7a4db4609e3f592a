#include "common/http_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

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
  EXPECT_EQ(*resolve_redirect(from, "https://cdn.example/obj?sig=1"),
            "https://cdn.example/obj?sig=1");
  EXPECT_EQ(*resolve_redirect(from, "//cdn.example/obj"), "https://cdn.example/obj");
  EXPECT_EQ(*resolve_redirect(from, "/api/resolve-cache/x"),
            "https://hub.example:8443/api/resolve-cache/x");
  EXPECT_EQ(*resolve_redirect(from, "b.json"),
            "https://hub.example:8443/org/model/resolve/abc/w/b.json");
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
                    return text_response(
                        200, r.method + " auth=" + r.header("authorization") + " body=" + r.body);
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

// A server whose handlers answer with the client's address ("127.0.0.1:<port>"), so a
// test can tell whether two requests came over one connection.
class PoolTest : public ::testing::Test {
 public:
  static ClientOptions pooled_options() {
    ClientOptions o;
    o.max_idle_connections_per_host = 4;
    return o;
  }

 protected:
  void SetUp() override {
    ServerOptions options;
    options.idle_timeout_ms = 300;
    server_ = std::make_unique<Server>(options);
    server_->route("GET", "/peer", SimpleHandler([](const Request& r) {
                     return text_response(200, r.remote_address);
                   }));
    server_->route("GET", "/stream", [](const Request& r, Responder& out) {
      out.begin_stream(200, "text/event-stream");
      out.write("data: " + r.remote_address + "\n\n");
      out.write("data: [DONE]\n\n");
      out.end_stream();
    });
    ASSERT_TRUE(server_->start().ok());
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override { server_->shutdown(0); }

  std::string peer(const Client& client) {
    auto r = client.send({"GET", base_ + "/peer", {}, ""});
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? r->body : "";
  }
  std::string streamed_peer(const Client& client, bool read_to_end = true) {
    auto s = client.open({"GET", base_ + "/stream", {}, ""});
    EXPECT_TRUE(s.ok()) << s.status().to_string();
    if (!s.ok()) return "";
    std::string body;
    while (!(*s)->done()) {
      auto chunk = (*s)->read_some();
      EXPECT_TRUE(chunk.ok());
      if (!chunk.ok()) break;
      body += *chunk;
      if (!read_to_end) break;
    }
    (*s)->close();
    const size_t start = body.find("data: ") + 6;
    return body.substr(start, body.find('\n') - start);
  }
  std::unique_ptr<Server> server_;
  std::string base_;
};

TEST_F(PoolTest, WithoutAPoolEveryRequestConnectsAnew) {
  Client client;
  EXPECT_NE(peer(client), peer(client));
}

TEST_F(PoolTest, KeptConnectionCarriesTheNextRequests) {
  Client client(pooled_options());
  const std::string first = peer(client);
  EXPECT_EQ(peer(client), first);
  EXPECT_EQ(streamed_peer(client), first);  // a whole stream, then back to the pool
  EXPECT_EQ(peer(client), first);
}

TEST_F(PoolTest, AbandonedStreamIsNotReused) {
  Client client(pooled_options());
  const std::string first = streamed_peer(client, /*read_to_end=*/false);
  EXPECT_NE(peer(client), first);
}

TEST_F(PoolTest, ConcurrentRequestsEachGetTheirOwnConnection) {
  Client client(pooled_options());
  auto a = client.open({"GET", base_ + "/stream", {}, ""});
  auto b = client.open({"GET", base_ + "/stream", {}, ""});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  std::string body_a;
  std::string body_b;
  while (!(*a)->done()) body_a += *(*a)->read_some();
  while (!(*b)->done()) body_b += *(*b)->read_some();
  EXPECT_NE(body_a.substr(0, body_a.find('\n')), body_b.substr(0, body_b.find('\n')));
}

TEST_F(PoolTest, ConnectionTheServerClosedWhileIdleIsReplaced) {
  Client client(pooled_options());
  const std::string first = peer(client);
  std::this_thread::sleep_for(800ms);  // past the server's 300 ms idle timeout
  const std::string second = peer(client);
  EXPECT_FALSE(second.empty());
  EXPECT_NE(second, first);
}

// A server that answers the first request on a connection with keep-alive and then
// closes that connection when the second request arrives, without a byte of answer:
// the race of a keep-alive timeout against a request on its way.
TEST(HttpClientPool, RequestOnAConnectionClosedUnderItIsRetriedOnceOnAFreshOne) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 8), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::atomic<int> connections{0};
  std::thread server([&] {
    for (int c = 0; c < 2; ++c) {
      int conn = accept(fd, nullptr, nullptr);
      if (conn < 0) return;
      connections += 1;
      std::string seen;
      char buf[4096];
      int answered = 0;
      while (true) {
        ssize_t n = read(conn, buf, sizeof buf);
        if (n <= 0) break;
        seen.append(buf, static_cast<size_t>(n));
        size_t end;
        bool closed = false;
        while ((end = seen.find("\r\n\r\n")) != std::string::npos) {
          seen.erase(0, end + 4);
          if (c == 0 && answered == 1) {  // the second request on the first connection
            closed = true;
            break;
          }
          const std::string reply =
              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";
          (void)!write(conn, reply.data(), reply.size());
          ++answered;
          if (c == 1) closed = true;  // the retry: answered, done
        }
        if (closed) break;
      }
      close(conn);
    }
  });
  Client client(PoolTest::pooled_options());
  const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/";
  auto first = client.send({"GET", url, {}, ""});
  EXPECT_TRUE(first.ok()) << first.status().to_string();
  auto second = client.send({"GET", url, {}, ""});
  EXPECT_TRUE(second.ok()) << second.status().to_string();
  if (second.ok()) {
    EXPECT_EQ(second->body, "ok");
  }
  EXPECT_EQ(connections.load(), 2);
  shutdown(fd, SHUT_RDWR);
  close(fd);
  server.join();
}

}  // namespace
}  // namespace moeserve::http
