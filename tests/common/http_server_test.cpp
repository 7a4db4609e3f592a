#include "common/http_server.h"

#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include "common/http_client.h"
#include "common/metrics.h"
#include "tests/support/test_util.h"

namespace moeserve::http {
namespace {

using moeserve::testing::raw_exchange;
using moeserve::testing::wait_until;
using namespace std::chrono_literals;

std::string url(const Server& s, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(s.port()) + path;
}

ClientResponse get(const Server& s, const std::string& path, const std::string& method = "GET",
                   const std::string& body = "") {
  Client client;
  auto r = client.send({method, url(s, path), {}, body});
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : ClientResponse{};
}

class HttpServerTest : public ::testing::Test {
 protected:
  void start(ServerOptions options = {}) {
    server_ = std::make_unique<Server>(options);
    server_->route("GET", "/hello", SimpleHandler([](const Request& r) {
                     return text_response(200, "hello " + r.query_param("name"));
                   }));
    server_->route("POST", "/echo", SimpleHandler([](const Request& r) {
                     Response out = json_response(201, r.body);
                     out.headers.emplace_back("X-Seen-Header", r.header("X-Custom"));
                     return out;
                   }));
    server_->route_prefix("GET", "/files/", [](const Request& r, Responder& out) {
      out.send(text_response(200, "file " + r.path));
    });
    server_->route("GET", "/silent", [](const Request&, Responder&) {});
    add_health_routes(*server_, [this] {
      return ready_.load() ? ok_status() : unavailable_error("model not loaded");
    });
    ASSERT_TRUE(server_->start().ok());
  }

  std::unique_ptr<Server> server_;
  std::atomic<bool> ready_{false};
};

TEST_F(HttpServerTest, RoutesByMethodAndPath) {
  start();
  auto ok = get(*server_, "/hello?name=a%20b");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "hello a b");
  auto echo = get(*server_, "/echo", "POST", "{\"x\":1}");
  EXPECT_EQ(echo.status, 201);
  EXPECT_EQ(echo.body, "{\"x\":1}");
  EXPECT_EQ(echo.header("content-type"), "application/json");
  auto prefix = get(*server_, "/files/a/b");
  EXPECT_EQ(prefix.body, "file /files/a/b");
  EXPECT_EQ(get(*server_, "/nope").status, 404);
  auto wrong_method = get(*server_, "/hello", "DELETE");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.header("allow"), "GET");
}

TEST_F(HttpServerTest, HandlerWithoutAnswerGets500) {
  start();
  EXPECT_EQ(get(*server_, "/silent").status, 500);
}

TEST_F(HttpServerTest, HealthAndReadiness) {
  start();
  EXPECT_EQ(get(*server_, "/healthz").status, 200);
  auto not_ready = get(*server_, "/readyz");
  EXPECT_EQ(not_ready.status, 503);
  EXPECT_EQ(not_ready.body, "model not loaded\n");
  ready_ = true;
  EXPECT_EQ(get(*server_, "/readyz").status, 200);
}

TEST_F(HttpServerTest, MalformedRequestLineIs400) {
  start();
  std::string reply = raw_exchange(server_->port(), "GARBAGE\r\n\r\n");
  EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << reply;
  reply = raw_exchange(server_->port(), "GET /hello HTTP/9.9\r\n\r\n");
  EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << reply;
}

TEST_F(HttpServerTest, BodyOverLimitIs413) {
  ServerOptions options;
  options.max_body_bytes = 1024;
  start(options);
  auto r = get(*server_, "/echo", "POST", std::string(4096, 'x'));
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(get(*server_, "/echo", "POST", std::string(1000, 'x')).status, 201);
}

TEST_F(HttpServerTest, HeaderOverLimitIs431) {
  ServerOptions options;
  options.max_header_bytes = 1024;
  start(options);
  Client client;
  auto r = client.send({"GET", url(*server_, "/hello"), {{"X-Big", std::string(4000, 'h')}}, ""});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->status, 431);
}

TEST_F(HttpServerTest, IncompleteRequestTimesOutWith408) {
  ServerOptions options;
  options.request_timeout_ms = 200;
  start(options);
  std::string reply = raw_exchange(server_->port(),
                                   "POST /echo HTTP/1.1\r\nHost: x\r\n"
                                   "Content-Length: 100\r\n\r\nonly-part",
                                   5000ms);
  EXPECT_EQ(reply.rfind("HTTP/1.1 408", 0), 0u) << reply;
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  start();
  std::string two =
      "GET /hello?name=1 HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /hello?name=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  std::string reply = raw_exchange(server_->port(), two);
  EXPECT_NE(reply.find("hello 1"), std::string::npos) << reply;
  EXPECT_NE(reply.find("hello 2"), std::string::npos) << reply;
}

// One keep-alive connection, requests sent one after another, each response read
// whole (by Content-Length) before the next request: how kubectl and Go clients talk.
// Connects socket `fd` to 127.0.0.1:port; false when it cannot.
bool connect_loopback(int fd, uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  return connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

class KeepAliveConnection {
 public:
  explicit KeepAliveConnection(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    ok_ = connect_loopback(fd_, port);
  }
  ~KeepAliveConnection() { close(fd_); }

  // Returns "<status> <body>" or "" on a transport error.
  std::string post(const std::string& path, const std::string& body) {
    if (!ok_) return "";
    std::string req = "POST " + path +
                      " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) +
                      "\r\n\r\n" + body;
    if (send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
      return "";
    }
    std::string in;
    char buf[65536];
    size_t header_end = std::string::npos;
    size_t need = 0;
    while (true) {
      if (header_end == std::string::npos &&
          (header_end = in.find("\r\n\r\n")) != std::string::npos) {
        size_t cl = in.find("Content-Length: ");
        need = header_end + 4 + std::stoul(in.substr(cl + 16));
      }
      if (header_end != std::string::npos && in.size() >= need) break;
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return "";
      in.append(buf, static_cast<size_t>(n));
    }
    return in.substr(9, 3) + " " + in.substr(header_end + 4, need - header_end - 4);
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

TEST_F(HttpServerTest, SequentialKeepAliveRequestsWithBodiesOnSeveralIoThreads) {
  ServerOptions options;
  options.io_threads = 4;
  start(options);
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      KeepAliveConnection conn(server_->port());
      for (int i = 0; i < 40; ++i) {
        std::string body(20000 + t * 7 + i, static_cast<char>('a' + i % 26));
        if (conn.post("/echo", body) == "201 " + body) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 6 * 40);
}

TEST_F(HttpServerTest, ConcurrentClients) {
  start();
  constexpr int kThreads = 8;
  constexpr int kRequests = 25;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Client client;
      for (int i = 0; i < kRequests; ++i) {
        std::string name = std::to_string(t) + "-" + std::to_string(i);
        auto r = client.send({"GET", url(*server_, "/hello?name=" + name), {}, ""});
        if (r.ok() && r->status == 200 && r->body == "hello " + name) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), kThreads * kRequests);
}

TEST_F(HttpServerTest, StreamedResponseArrivesIncrementally) {
  std::promise<void> first_chunk_read;
  auto first_chunk_read_future = first_chunk_read.get_future().share();
  ServerOptions options;
  server_ = std::make_unique<Server>(options);
  server_->route("GET", "/stream", [&](const Request&, Responder& out) {
    ASSERT_TRUE(out.begin_stream(200, "text/event-stream"));
    out.write("data: one\n\n");
    // The second chunk is written only after the client has read the first.
    first_chunk_read_future.wait_for(5s);
    out.write("data: two\n\n");
    out.end_stream();
  });
  ASSERT_TRUE(server_->start().ok());
  Client client;
  auto stream = client.open({"GET", url(*server_, "/stream"), {}, ""});
  ASSERT_TRUE(stream.ok()) << stream.status().to_string();
  EXPECT_EQ((*stream)->status(), 200);
  EXPECT_EQ((*stream)->header("content-type"), "text/event-stream");
  auto first = (*stream)->read_some(5000);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, "data: one\n\n");
  first_chunk_read.set_value();
  std::string rest;
  while (!(*stream)->done()) {
    auto more = (*stream)->read_some(5000);
    ASSERT_TRUE(more.ok()) << more.status().to_string();
    rest += *more;
  }
  EXPECT_EQ(rest, "data: two\n\n");
}

// The stream header is written by the handler's thread, not the I/O strand: the strand
// must still learn the keep-alive decision, so the connection serves the next request
// after the last chunk, and closes after a request that asked for it.
TEST_F(HttpServerTest, StreamedResponsesKeepTheConnectionAliveUnlessAskedToClose) {
  server_ = std::make_unique<Server>(ServerOptions{});
  server_->route("GET", "/s", [](const Request& r, Responder& out) {
    ASSERT_TRUE(out.begin_stream(200, "text/plain", {{"X-Which", r.query_param("n")}}));
    out.write("part " + r.query_param("n") + "\n");
    out.end_stream();
  });
  ASSERT_TRUE(server_->start().ok());
  const std::string reply =
      raw_exchange(server_->port(),
                   "GET /s?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                   "GET /s?n=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const size_t second = reply.find("HTTP/1.1 200", 1);
  ASSERT_NE(second, std::string::npos) << reply;
  const std::string one = reply.substr(0, second);
  const std::string two = reply.substr(second);
  for (const std::string& part : {one, two}) {
    EXPECT_TRUE(part.starts_with("HTTP/1.1 200 OK\r\n")) << part;
    EXPECT_NE(part.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << part;
    EXPECT_NE(part.find("Content-Type: text/plain\r\n"), std::string::npos) << part;
    EXPECT_TRUE(part.ends_with("\r\n\r\n7\r\npart " + std::string(part == one ? "1" : "2") +
                               "\n\r\n0\r\n\r\n"))
        << part;
  }
  EXPECT_NE(one.find("X-Which: 1\r\n"), std::string::npos) << one;
  EXPECT_EQ(one.find("Connection: close"), std::string::npos) << one;
  EXPECT_NE(two.find("X-Which: 2\r\n"), std::string::npos) << two;
  EXPECT_NE(two.find("Connection: close\r\n"), std::string::npos) << two;
}

TEST_F(HttpServerTest, StreamReaderReadsContentLengthBodies) {
  start();
  Client client;
  auto stream = client.open({"GET", url(*server_, "/hello?name=plain"), {}, ""});
  ASSERT_TRUE(stream.ok()) << stream.status().to_string();
  std::string body;
  while (!(*stream)->done()) {
    auto more = (*stream)->read_some(5000);
    ASSERT_TRUE(more.ok()) << more.status().to_string();
    body += *more;
  }
  EXPECT_EQ(body, "hello plain");
}

TEST_F(HttpServerTest, StreamingHandlerLearnsClientLeft) {
  std::promise<int> writes_until_gone;
  server_ = std::make_unique<Server>(ServerOptions{});
  server_->route("GET", "/forever", [&](const Request&, Responder& out) {
    out.begin_stream(200, "text/plain");
    int writes = 0;
    while (writes < 100000 && out.write("tick\n")) {
      ++writes;
      std::this_thread::sleep_for(2ms);
    }
    writes_until_gone.set_value(writes);
  });
  ASSERT_TRUE(server_->start().ok());
  {
    Client client;
    auto stream = client.open({"GET", url(*server_, "/forever"), {}, ""});
    ASSERT_TRUE(stream.ok());
    ASSERT_TRUE((*stream)->read_some(5000).ok());
    (*stream)->close();
  }
  auto future = writes_until_gone.get_future();
  ASSERT_EQ(future.wait_for(10s), std::future_status::ready);
  EXPECT_LT(future.get(), 100000);
}

// A raw connection that sends one GET and then reads only when told to, with a small
// receive buffer so that the server's socket fills quickly.
class LazyReader {
 public:
  LazyReader(uint16_t port, const std::string& path) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int buffer = 4096;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
    connected_ = connect_loopback(fd_, port);
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    connected_ = connected_ && ::send(fd_, request.data(), request.size(), 0) ==
                                   static_cast<ssize_t>(request.size());
  }
  ~LazyReader() { ::close(fd_); }
  bool connected() const { return connected_; }
  // Reads what is there, up to `max` bytes; 0 at end of stream or on error.
  size_t read_some(size_t max) {
    std::string buffer(max, '\0');
    const ssize_t n = ::recv(fd_, buffer.data(), max, 0);
    return n > 0 ? static_cast<size_t>(n) : 0;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// A streaming handler whose client never reads gives up after request_timeout_ms without
// progress: its thread (on the worker: a decoding sequence) is not held forever, and
// other clients are served meanwhile.
TEST_F(HttpServerTest, ClientThatNeverReadsReleasesTheHandler) {
  ServerOptions options;
  options.request_timeout_ms = 500;
  server_ = std::make_unique<Server>(options);
  std::promise<size_t> bytes_until_gone;
  server_->route("GET", "/flood", [&](const Request&, Responder& out) {
    out.begin_stream(200, "text/plain");
    const std::string chunk(64 << 10, 'x');
    size_t bytes = 0;
    while (bytes < (size_t(1) << 30) && out.write(chunk)) bytes += chunk.size();
    bytes_until_gone.set_value(bytes);
  });
  server_->route("GET", "/hello",
                 SimpleHandler([](const Request&) { return text_response(200, "hello"); }));
  ASSERT_TRUE(server_->start().ok());

  LazyReader lazy(server_->port(), "/flood");
  ASSERT_TRUE(lazy.connected());
  ASSERT_TRUE(wait_until([&] { return server_->in_flight() == 1; }, 5s));
  EXPECT_EQ(get(*server_, "/hello").body, "hello");  // while the flood is stuck

  auto future = bytes_until_gone.get_future();
  ASSERT_EQ(future.wait_for(20s), std::future_status::ready);
  EXPECT_LT(future.get(), size_t(64) << 20);  // socket buffers, not a gigabyte
  EXPECT_TRUE(wait_until([&] { return server_->in_flight() == 0; }, 5s));
}

// A client that reads slowly but steadily gets the whole stream even when it takes far
// longer than request_timeout_ms: the limit is on a write making no progress.
TEST_F(HttpServerTest, SlowButSteadyReaderGetsTheWholeStream) {
  ServerOptions options;
  options.request_timeout_ms = 1000;
  server_ = std::make_unique<Server>(options);
  constexpr size_t kChunk = 64 << 10;
  constexpr int kChunks = 10;
  std::atomic<bool> all_written{false};
  server_->route("GET", "/slow", [&](const Request&, Responder& out) {
    out.begin_stream(200, "text/plain");
    const std::string chunk(kChunk, 'y');
    int written = 0;
    while (written < kChunks && out.write(chunk)) ++written;
    out.end_stream();
    all_written = written == kChunks;
  });
  ASSERT_TRUE(server_->start().ok());

  LazyReader reader(server_->port(), "/slow");
  ASSERT_TRUE(reader.connected());
  const auto start = std::chrono::steady_clock::now();
  size_t received = 0;
  // About 8 KiB (the receive buffer) per 20 ms: a 64 KiB chunk takes ~160 ms to drain.
  while (const size_t n = reader.read_some(16 << 10)) {
    received += n;
    std::this_thread::sleep_for(20ms);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(all_written.load());
  EXPECT_GE(received, kChunk * kChunks);  // the body plus chunk framing and headers
  EXPECT_GT(elapsed, 2 * 1000ms) << "the reader was not slow: the test proves nothing";
}

TEST_F(HttpServerTest, GracefulShutdownFinishesInFlightRequest) {
  std::promise<void> entered;
  server_ = std::make_unique<Server>(ServerOptions{});
  server_->route("GET", "/slow", SimpleHandler([&](const Request&) {
                   entered.set_value();
                   std::this_thread::sleep_for(300ms);
                   return text_response(200, "finished");
                 }));
  ASSERT_TRUE(server_->start().ok());
  uint16_t port = server_->port();
  auto reply = std::async(std::launch::async, [&] { return get(*server_, "/slow"); });
  entered.get_future().wait();
  EXPECT_EQ(server_->in_flight(), 1);
  server_->shutdown(5000);
  ClientResponse r = reply.get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "finished");
  Client client;
  auto refused = client.send({"GET", "http://127.0.0.1:" + std::to_string(port) + "/slow", {}, ""});
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
}

TEST_F(HttpServerTest, RequestsArrivingWhileDrainingGet503NotARefusal) {
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  server_ = std::make_unique<Server>(ServerOptions{});
  server_->route("GET", "/slow", SimpleHandler([&](const Request&) {
                   entered.set_value();
                   released.wait();
                   return text_response(200, "finished");
                 }));
  ASSERT_TRUE(server_->start().ok());
  auto reply = std::async(std::launch::async, [&] { return get(*server_, "/slow"); });
  entered.get_future().wait();
  auto shutdown = std::async(std::launch::async, [&] { server_->shutdown(10000); });
  while (!server_->draining()) std::this_thread::sleep_for(1ms);
  // A new connection during the grace period: answered, 503 with Retry-After, and the
  // handler never runs (it would block on `released`).
  ClientResponse drained = get(*server_, "/slow");
  EXPECT_EQ(drained.status, 503);
  EXPECT_EQ(drained.header("retry-after"), "1");
  EXPECT_NE(drained.body.find("draining"), std::string::npos);
  release.set_value();
  EXPECT_EQ(reply.get().status, 200);
  shutdown.get();
}

TEST_F(HttpServerTest, ShutdownGraceIsBounded) {
  std::promise<void> entered;
  server_ = std::make_unique<Server>(ServerOptions{});
  server_->route("GET", "/stuck", [&](const Request&, Responder& out) {
    out.begin_stream(200, "text/plain");
    entered.set_value();
    while (out.write("x")) std::this_thread::sleep_for(10ms);
  });
  ASSERT_TRUE(server_->start().ok());
  auto stream_thread = std::async(std::launch::async, [&] {
    Client client;
    auto s = client.open({"GET", url(*server_, "/stuck"), {}, ""});
    while (s.ok() && !(*s)->done() && (*s)->read_some(2000).ok()) {
    }
  });
  entered.get_future().wait();
  server_->shutdown(100);  // returns although the handler never finishes on its own
  EXPECT_EQ(server_->in_flight(), 0);
  stream_thread.get();
}

TEST_F(HttpServerTest, MetricsServesPrometheusText) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& family = prometheus::BuildCounter()
                     .Name("moeserve_test_events_total")
                     .Help("events")
                     .Register(*registry);
  family.Add({{"kind", "a"}}).Increment(3);
  server_ = std::make_unique<Server>(ServerOptions{});
  metrics::add_metrics_route(*server_, {registry});
  ASSERT_TRUE(server_->start().ok());
  auto r = get(*server_, "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("# TYPE moeserve_test_events_total counter"), std::string::npos);
  EXPECT_NE(r.body.find("moeserve_test_events_total{kind=\"a\"} 3"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace moeserve::http
