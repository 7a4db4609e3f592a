#include "common/http_server.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "common/beast.h"
#include "common/log.h"

namespace moeserve::http {
namespace {

using namespace moeserve::net_ns;  // NOLINT: asio, beast, bhttp, tcp

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Calls fn(name, value) for each "name=value" pair of a query string.
template <typename Fn>
void for_each_query_param(std::string_view query, Fn fn) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    std::string name = percent_decode(pair.substr(0, eq));
    std::string value = eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1));
    if (fn(name, value)) return;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
}

const char* reason_body(int status) {
  switch (status) {
    case 400: return "bad request\n";
    case 404: return "not found\n";
    case 405: return "method not allowed\n";
    case 408: return "request timeout\n";
    case 413: return "request body too large\n";
    case 431: return "request header fields too large\n";
    case 500: return "internal server error: handler sent no response\n";
    case 503: return "draining: the server is shutting down\n";
    default: return "\n";
  }
}

struct Route {
  std::string method;
  Handler handler;
};

using RequestParser = bhttp::request_parser<bhttp::string_body>;

// A parser for one request, with the server's limits.
void start_parser(std::optional<RequestParser>& parser, const ServerOptions& options) {
  parser.emplace();
  parser->body_limit(options.max_body_bytes);
  parser->header_limit(static_cast<uint32_t>(options.max_header_bytes));
}

// The status the server answers a request the parser refused with: 413, 431 or 400.
int status_of_parse_error(const beast::error_code& ec) {
  if (ec == bhttp::error::body_limit) return 413;
  if (ec == bhttp::error::header_limit) return 431;
  return 400;
}

// The handlers' view of a parsed message; moves the body out.
Request request_of_message(bhttp::request<bhttp::string_body>& msg) {
  Request request;
  request.method = std::string(msg.method_string());
  request.target = std::string(msg.target());
  size_t q = request.target.find('?');
  request.path = request.target.substr(0, q);
  if (q != std::string::npos) request.query = request.target.substr(q + 1);
  for (const auto& field : msg) {
    request.headers.emplace_back(lower(field.name_string()), std::string(field.value()));
  }
  request.body = std::move(msg.body());
  return request;
}

}  // namespace

ParsedHttpRequest parse_http_request(std::string_view bytes, const ServerOptions& limits) {
  std::optional<RequestParser> parser;
  start_parser(parser, limits);
  parser->eager(true);
  ParsedHttpRequest out;
  while (!parser->is_done() && out.consumed_bytes < bytes.size()) {
    beast::error_code ec;
    const size_t used = parser->put(
        asio::buffer(bytes.data() + out.consumed_bytes, bytes.size() - out.consumed_bytes), ec);
    out.consumed_bytes += used;
    if (ec == bhttp::error::need_more) return out;  // the bytes end inside a line
    if (ec) {
      out.error_status = status_of_parse_error(ec);
      return out;
    }
    if (used == 0) return out;
  }
  if (!parser->is_done()) return out;
  out.complete = true;
  out.keep_alive = parser->get().keep_alive();
  out.request = request_of_message(parser->get());
  return out;
}

std::string Request::header(std::string_view name) const {
  std::string key = lower(name);
  for (const auto& [k, v] : headers) {
    if (k == key) return v;
  }
  return "";
}

std::string Request::query_param(std::string_view name) const {
  std::string found;
  for_each_query_param(query, [&](const std::string& k, const std::string& v) {
    if (k != name) return false;
    found = v;
    return true;
  });
  return found;
}

bool Request::has_query_param(std::string_view name) const {
  bool found = false;
  for_each_query_param(query, [&](const std::string& k, const std::string&) {
    found = k == name;
    return found;
  });
  return found;
}

Response text_response(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response json_response(int status, std::string json_body) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(json_body);
  return r;
}

class Session;

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  explicit Impl(ServerOptions o)
      : options(std::move(o)),
        acceptor(asio::make_strand(ioc)),
        handler_pool(static_cast<size_t>(std::max(1, options.handler_threads))) {}

  // Returns the handler for a request, or an error response status (404/405 + Allow).
  const Handler* find_route(const std::string& method, const std::string& path, int* status,
                            std::string* allow) const;
  void do_accept();
  bool accept_failed(const beast::error_code& ec);
  void register_session(const std::shared_ptr<Session>& s);
  void unregister_session(Session* s);

  ServerOptions options;
  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  tcp::acceptor acceptor;
  asio::steady_timer accept_timer{acceptor.get_executor()};
  // Accept failures (acceptor strand only).
  int64_t accept_backoff_ms = 0;
  int64_t accept_failures_unlogged = 0;
  std::chrono::steady_clock::time_point next_accept_log{};
  asio::thread_pool handler_pool;
  std::vector<std::thread> io_threads;

  std::map<std::string, std::vector<Route>> exact_routes;
  std::vector<std::pair<std::string, std::vector<Route>>> prefix_routes;  // longest first

  std::atomic<bool> started{false};
  std::atomic<bool> draining{false};
  std::atomic<bool> stopped{false};
  std::atomic<int> in_flight{0};
  uint16_t bound_port = 0;

  std::mutex mutex;  // guards sessions
  std::condition_variable idle_cv;
  std::map<Session*, std::weak_ptr<Session>> sessions;
};

// One connection. All socket work runs on the session's strand; handler threads reach it
// only through SessionResponder, which posts to the strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Server::Impl> server)
      : stream_(std::move(socket)),
        server_(std::move(server)),
        request_timer_(stream_.get_executor()) {
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  void start() {
    asio::dispatch(stream_.get_executor(),
                   [self = shared_from_this()] { self->wait_for_request(); });
  }

  // Closes the connection if no request is being handled (shutdown of idle keep-alive).
  void close_if_idle() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (!self->handling_) self->close();
    });
  }

  void force_close() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->close(); });
  }

  // --- called on the strand by SessionResponder ---
  void write_response(Response response, std::shared_ptr<std::promise<bool>> done);
  // Records that the handler began a chunked stream with this keep-alive decision (the
  // header is already on its way, sent by the handler thread).
  void note_stream_started(bool keep_alive);
  // --- called by the handler thread of a stream ---
  // The header and each chunk go straight to the socket instead of through the strand,
  // which cost two thread switches per chunk (most of a proxied token's CPU) and a round
  // trip before the first. Safe because only the handler writes while its stream is open
  // (the strand writes nothing between dispatching the request and the last chunk, which
  // is waited for), and fd_mutex_ keeps close() from releasing the descriptor while a
  // send is on it. Each waits for socket space at most request_timeout_ms; false once
  // the client has gone.
  bool write_stream_header_direct(int status, const std::string& content_type,
                                  const Headers& headers);
  bool write_chunk_direct(std::string_view data);
  bool send_direct(std::string_view bytes);
  void write_last_chunk(std::shared_ptr<std::promise<bool>> done);
  void handler_finished(bool responded);

  bool gone() const { return gone_.load(); }
  bool closed() const { return closed_.load(); }
  beast::tcp_stream::executor_type executor() { return stream_.get_executor(); }

 private:
  void wait_for_request();
  void on_first_bytes(beast::error_code ec, size_t n);
  void read_request();
  void on_read(beast::error_code ec);
  void dispatch_request();
  void monitor_peer();
  void send_error(int status, bool close_after);
  void after_response();
  void close();

  beast::tcp_stream stream_;
  std::shared_ptr<Server::Impl> server_;
  // Bounds the time to receive one request. Unlike the stream's own expiry (which closes
  // the socket), it only cancels the read, so a 408 can still be written.
  asio::steady_timer request_timer_;
  bool request_timed_out_ = false;
  beast::flat_buffer buffer_;
  std::optional<RequestParser> parser_;
  std::string remote_;
  bool first_request_ = true;
  bool handling_ = false;       // a handler owns the current request
  bool response_done_ = false;  // the handler's response is fully written
  bool keep_alive_ = false;
  bool monitor_pending_ = false;  // a read watching for peer close is outstanding
  bool streaming_ = false;
  std::atomic<bool> gone_{false};
  std::atomic<bool> closed_{false};
  std::mutex fd_mutex_;  // held by close() and by each direct send
};

class SessionResponder : public Responder {
 public:
  SessionResponder(std::shared_ptr<Session> session, std::shared_ptr<Server::Impl> server)
      : session_(std::move(session)), server_(std::move(server)) {}

  ~SessionResponder() override {
    asio::post(session_->executor(),
               [s = session_, responded = responded_] { s->handler_finished(responded); });
  }

  void send(Response response) override {
    if (responded_) return;
    responded_ = true;
    auto done = std::make_shared<std::promise<bool>>();
    asio::post(session_->executor(), [s = session_, r = std::move(response), done]() mutable {
      s->write_response(std::move(r), done);
    });
  }

  bool begin_stream(int status, std::string content_type, Headers headers) override {
    if (responded_) return false;
    responded_ = true;
    streaming_ = true;
    return session_->write_stream_header_direct(status, content_type, headers);
  }

  bool write(std::string_view data) override {
    if (!streaming_ || ended_) return false;
    if (data.empty()) return !session_->gone();
    return session_->write_chunk_direct(data);
  }

  void end_stream() override {
    if (!streaming_ || ended_) return;
    ended_ = true;
    auto done = std::make_shared<std::promise<bool>>();
    auto future = done->get_future();
    asio::post(session_->executor(), [s = session_, done] { s->write_last_chunk(done); });
    wait(future);
  }

  bool client_gone() const override { return session_->gone() || session_->closed(); }

 private:
  // Waits for a strand operation; gives up when the server has stopped its I/O.
  bool wait(std::future<bool>& future) {
    while (future.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
      if (server_->stopped.load()) return false;
    }
    return future.get();
  }

  std::shared_ptr<Session> session_;
  std::shared_ptr<Server::Impl> server_;
  bool responded_ = false;
  bool streaming_ = false;
  bool ended_ = false;
};

void Session::wait_for_request() {
  if (closed_) return;
  if (server_->draining && !first_request_) {
    close();
    return;
  }
  if (buffer_.size() > 0) {  // pipelined bytes already here
    read_request();
    return;
  }
  stream_.expires_after(std::chrono::milliseconds(
      first_request_ ? server_->options.request_timeout_ms : server_->options.idle_timeout_ms));
  stream_.async_read_some(buffer_.prepare(4096),
                          beast::bind_front_handler(&Session::on_first_bytes, shared_from_this()));
}

void Session::on_first_bytes(beast::error_code ec, size_t n) {
  if (ec) {  // idle timeout, peer closed, or shutdown: nothing was asked, so nothing to answer
    close();
    return;
  }
  buffer_.commit(n);
  read_request();
}

void Session::read_request() {
  start_parser(parser_, server_->options);
  stream_.expires_never();
  request_timed_out_ = false;
  request_timer_.expires_after(std::chrono::milliseconds(server_->options.request_timeout_ms));
  request_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec) return;  // cancelled: the request arrived in time
    self->request_timed_out_ = true;
    beast::error_code ignored;
    self->stream_.socket().cancel(ignored);
  });
  bhttp::async_read(
      stream_, buffer_, *parser_,
      [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
}

void Session::on_read(beast::error_code ec) {
  first_request_ = false;
  request_timer_.cancel();
  if (request_timed_out_) {
    send_error(408, true);
    return;
  }
  if (ec == bhttp::error::end_of_stream || ec == asio::error::connection_reset ||
      ec == asio::error::operation_aborted) {
    close();
    return;
  }
  if (ec) {
    send_error(status_of_parse_error(ec), true);
    return;
  }
  dispatch_request();
}

void Session::dispatch_request() {
  auto& msg = parser_->get();
  keep_alive_ = msg.keep_alive();
  auto request = std::make_shared<Request>(request_of_message(msg));
  request->remote_address = remote_;

  int status = 503;
  std::string allow;
  // While draining, requests that arrive get 503 from the server itself (and the
  // connection closes), so clients learn to go elsewhere instead of being refused at
  // the TCP level; requests already running finish.
  const Handler* handler =
      server_->draining ? nullptr
                        : server_->find_route(request->method, request->path, &status, &allow);
  if (!handler) {
    const auto& custom = server_->options.error_response;
    Response r =
        custom ? custom(status, reason_body(status)) : text_response(status, reason_body(status));
    if (!allow.empty()) r.headers.emplace_back("Allow", allow);
    if (status == 503) r.headers.emplace_back("Retry-After", "1");
    handling_ = true;
    response_done_ = false;
    write_response(std::move(r), nullptr);
    handling_ = false;
    return;
  }
  handling_ = true;
  response_done_ = false;
  streaming_ = false;
  server_->in_flight.fetch_add(1);
  // The handler may run long (streams); the connection has no deadline meanwhile, and a
  // read watches for the peer closing so handlers can cancel.
  stream_.expires_never();
  if (buffer_.size() == 0) monitor_peer();  // pipelined bytes: the next request is here already
  auto responder = std::make_shared<SessionResponder>(shared_from_this(), server_);
  asio::post(server_->handler_pool, [h = *handler, request, responder]() mutable {
    try {
      h(*request, *responder);
    } catch (const std::exception& e) {
      log::error("http handler threw", {{"path", request->path}, {"error", e.what()}});
    }
    responder.reset();  // ~SessionResponder posts handler_finished
  });
}

void Session::monitor_peer() {
  if (monitor_pending_ || closed_) return;
  monitor_pending_ = true;
  stream_.async_read_some(buffer_.prepare(4096),
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            self->monitor_pending_ = false;
                            if (ec) {
                              self->gone_ = true;
                              if (!self->handling_) self->close();
                              return;
                            }
                            self->buffer_.commit(n);
                            // Only when after_response() already ran and left the wait to
                            // this read; otherwise after_response() starts it (a second
                            // read would replace the parser under the first).
                            if (!self->handling_ && self->response_done_ && !self->closed_) {
                              self->wait_for_request();
                            }
                          });
}

void Session::write_response(Response response, std::shared_ptr<std::promise<bool>> done) {
  if (closed_) {
    if (done) done->set_value(false);
    return;
  }
  auto res = std::make_shared<bhttp::response<bhttp::string_body>>(
      static_cast<bhttp::status>(response.status), 11);
  res->set(bhttp::field::server, "moeserve");
  res->set(bhttp::field::content_type, response.content_type);
  for (const auto& [k, v] : response.headers) res->set(k, v);
  res->body() = std::move(response.body);
  bool keep = keep_alive_ && !server_->draining && response.status != 408 &&
              response.status != 413 && response.status != 431 && response.status != 400;
  res->keep_alive(keep);
  keep_alive_ = keep;
  res->prepare_payload();
  stream_.expires_after(std::chrono::milliseconds(server_->options.request_timeout_ms));
  bhttp::async_write(stream_, *res,
                     [self = shared_from_this(), res, done](beast::error_code ec, size_t) {
                       if (done) done->set_value(!ec);
                       if (ec) self->gone_ = true;
                       self->response_done_ = true;
                       self->after_response();
                     });
}

void Session::note_stream_started(bool keep_alive) {
  streaming_ = true;
  keep_alive_ = keep_alive;
}

bool Session::write_stream_header_direct(int status, const std::string& content_type,
                                         const Headers& headers) {
  if (closed_ || gone_) return false;
  // keep_alive_ was set before the request was handed to this thread, and the strand
  // leaves it alone while a handler runs.
  const bool keep_alive = keep_alive_ && !server_->draining;
  bhttp::response<bhttp::empty_body> header{static_cast<bhttp::status>(status), 11};
  header.set(bhttp::field::server, "moeserve");
  header.set(bhttp::field::content_type, content_type);
  for (const auto& [k, v] : headers) header.set(k, v);
  header.keep_alive(keep_alive);
  header.chunked(true);
  bhttp::response_serializer<bhttp::empty_body> serializer{header};
  std::string bytes;
  beast::error_code ec;
  while (!ec && !serializer.is_header_done()) {
    serializer.next(ec, [&](beast::error_code&, const auto& buffers) {
      for (const auto b : beast::buffers_range_ref(buffers)) {
        bytes.append(static_cast<const char*>(b.data()), b.size());
      }
      serializer.consume(beast::buffer_bytes(buffers));
    });
  }
  if (ec) return false;
  asio::post(executor(),
             [self = shared_from_this(), keep_alive] { self->note_stream_started(keep_alive); });
  return send_direct(bytes);
}

bool Session::write_chunk_direct(std::string_view data) {
  char size_line[24];
  const int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
  std::string frame;
  frame.reserve(static_cast<size_t>(n) + data.size() + 2);
  frame.append(size_line, static_cast<size_t>(n)).append(data).append("\r\n");
  return send_direct(frame);
}

bool Session::send_direct(std::string_view frame) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(server_->options.request_timeout_ms);
  size_t sent = 0;
  while (sent < frame.size()) {
    int fd = -1;
    {
      std::lock_guard<std::mutex> lock(fd_mutex_);
      if (closed_ || gone_) return false;
      fd = stream_.socket().native_handle();
      const ssize_t w =
          ::send(fd, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) {
        sent += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        gone_ = true;
        return false;
      }
    }
    // The client reads slower than we write: wait for space, in slices, so that close()
    // is never held up (the descriptor may close meanwhile; the next send sees closed_).
    if (std::chrono::steady_clock::now() >= deadline) {
      gone_ = true;
      force_close();
      return false;
    }
    pollfd p{fd, POLLOUT, 0};
    ::poll(&p, 1, 50);
  }
  return true;
}

void Session::write_last_chunk(std::shared_ptr<std::promise<bool>> done) {
  if (closed_ || gone_) {
    done->set_value(false);
    response_done_ = true;
    return;
  }
  stream_.expires_after(std::chrono::milliseconds(server_->options.request_timeout_ms));
  asio::async_write(stream_, bhttp::make_chunk_last(),
                    [self = shared_from_this(), done](beast::error_code ec, size_t) {
                      if (ec) self->gone_ = true;
                      done->set_value(!ec);
                      self->response_done_ = true;
                      self->after_response();
                    });
}

void Session::handler_finished(bool responded) {
  if (!responded && !closed_) {
    // The handler returned without answering: answer for it.
    write_response(text_response(500, reason_body(500)), nullptr);
  } else if (streaming_ && !response_done_ && !closed_) {
    // A stream the handler did not end: the body is incomplete, so the connection closes.
    close();
  }
  handling_ = false;
  server_->in_flight.fetch_sub(1);
  server_->idle_cv.notify_all();
  after_response();
}

void Session::after_response() {
  if (handling_ || !response_done_ || closed_) return;
  streaming_ = false;
  if (!keep_alive_ || gone_ || server_->draining) {
    close();
    return;
  }
  if (!monitor_pending_) {
    wait_for_request();
    return;
  }
  // The outstanding monitor read continues as the wait for the next request. A read
  // already pending keeps the deadline it started with (none), so the keep-alive idle
  // timeout runs on the request timer; read_request() re-arms it when a request comes.
  request_timer_.expires_after(std::chrono::milliseconds(server_->options.idle_timeout_ms));
  request_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec) return;  // re-armed or cancelled: a request came, or the session closed
    beast::error_code ignored;
    self->stream_.socket().cancel(ignored);
  });
}

void Session::send_error(int status, bool close_after) {
  if (close_after) keep_alive_ = false;
  handling_ = true;
  const auto& custom = server_->options.error_response;
  write_response(
      custom ? custom(status, reason_body(status)) : text_response(status, reason_body(status)),
      nullptr);
  handling_ = false;
}

void Session::close() {
  if (closed_.exchange(true)) return;
  beast::error_code ec;
  request_timer_.cancel();
  std::lock_guard<std::mutex> lock(fd_mutex_);
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.socket().close(ec);
  server_->unregister_session(this);
}

const Handler* Server::Impl::find_route(const std::string& method, const std::string& path,
                                        int* status, std::string* allow) const {
  const std::vector<Route>* routes = nullptr;
  if (auto it = exact_routes.find(path); it != exact_routes.end()) {
    routes = &it->second;
  } else {
    for (const auto& [prefix, r] : prefix_routes) {
      if (path.compare(0, prefix.size(), prefix) == 0) {
        routes = &r;
        break;
      }
    }
  }
  if (!routes) {
    *status = 404;
    return nullptr;
  }
  for (const Route& r : *routes) {
    if (r.method == method || r.method == "*") return &r.handler;
  }
  if (method == "HEAD") {
    for (const Route& r : *routes) {
      if (r.method == "GET") return &r.handler;
    }
  }
  *status = 405;
  for (const Route& r : *routes) {
    if (!allow->empty()) *allow += ", ";
    *allow += r.method;
  }
  return nullptr;
}

void Server::Impl::register_session(const std::shared_ptr<Session>& s) {
  std::lock_guard<std::mutex> lock(mutex);
  sessions[s.get()] = s;
}

void Server::Impl::unregister_session(Session* s) {
  std::lock_guard<std::mutex> lock(mutex);
  sessions.erase(s);
  idle_cv.notify_all();
}

// Out of file descriptors (EMFILE, ENFILE), accept fails at once and would fail again
// at once: spinning on it burns a core and floods the log. Wait (5 ms doubling to 1 s)
// and log at most once per 10 s, with how many failures that line stands for. Keep-alive
// connections (a kubelet's probes among them) keep being served meanwhile. Returns true
// when the next accept is scheduled here.
bool Server::Impl::accept_failed(const beast::error_code& ec) {
  const bool out_of_descriptors =
      ec == asio::error::no_descriptors ||
      ec == beast::errc::make_error_code(beast::errc::too_many_files_open_in_system) ||
      ec == beast::errc::make_error_code(beast::errc::too_many_files_open);
  const auto now = std::chrono::steady_clock::now();
  ++accept_failures_unlogged;
  if (now >= next_accept_log) {
    log::warn("http accept failed",
              {{"error", ec.message()}, {"failures", accept_failures_unlogged}});
    accept_failures_unlogged = 0;
    next_accept_log = now + std::chrono::seconds(10);
  }
  if (!out_of_descriptors) return false;
  accept_backoff_ms = std::clamp<int64_t>(accept_backoff_ms * 2, 5, 1000);
  accept_timer.expires_after(std::chrono::milliseconds(accept_backoff_ms));
  accept_timer.async_wait([self = shared_from_this()](beast::error_code timer_ec) {
    if (!timer_ec && self->acceptor.is_open()) self->do_accept();
  });
  return true;
}

void Server::Impl::do_accept() {
  acceptor.async_accept(asio::make_strand(ioc),
                        [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
                          if (ec) {
                            if (ec == asio::error::operation_aborted || !self->acceptor.is_open())
                              return;
                            if (self->accept_failed(ec)) return;  // retried after a backoff
                          } else {
                            self->accept_backoff_ms = 0;
                            // Streams send many small chunks: no Nagle delay between them.
                            beast::error_code ignored;
                            socket.set_option(tcp::no_delay(true), ignored);
                            auto session = std::make_shared<Session>(std::move(socket), self);
                            self->register_session(session);
                            session->start();
                          }
                          if (self->acceptor.is_open()) self->do_accept();
                        });
}

Server::Server(ServerOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}

Server::~Server() { shutdown(0); }

void Server::route(std::string method, std::string path, Handler handler) {
  impl_->exact_routes[std::move(path)].push_back({std::move(method), std::move(handler)});
}

void Server::route(std::string method, std::string path, SimpleHandler handler) {
  route(
      std::move(method), std::move(path),
      Handler([h = std::move(handler)](const Request& req, Responder& out) { out.send(h(req)); }));
}

void Server::route_prefix(std::string method, std::string prefix, Handler handler) {
  auto& prefixes = impl_->prefix_routes;
  auto it = std::find_if(prefixes.begin(), prefixes.end(),
                         [&](const auto& p) { return p.first == prefix; });
  if (it == prefixes.end()) {
    prefixes.emplace_back(prefix, std::vector<Route>{});
    it = prefixes.end() - 1;
  }
  it->second.push_back({std::move(method), std::move(handler)});
  std::stable_sort(prefixes.begin(), prefixes.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

Status Server::start() {
  Impl& s = *impl_;
  if (s.started) return failed_precondition_error("http server already started");
  beast::error_code ec;
  auto address = asio::ip::make_address(s.options.host, ec);
  if (ec) return invalid_argument_error("http server: bad host \"" + s.options.host + "\"");
  tcp::endpoint endpoint(address, s.options.port);
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return unavailable_error("http server: cannot listen on " + s.options.host + ":" +
                             std::to_string(s.options.port) + ": " + ec.message());
  }
  s.bound_port = s.acceptor.local_endpoint().port();
  s.started = true;
  s.work.emplace(s.ioc.get_executor());
  s.do_accept();
  for (int i = 0; i < std::max(1, s.options.io_threads); ++i) {
    s.io_threads.emplace_back([impl = impl_] { impl->ioc.run(); });
  }
  log::info("http server listening", {{"address", s.options.host}, {"port", s.bound_port}});
  return ok_status();
}

uint16_t Server::port() const { return impl_->bound_port; }

bool Server::draining() const { return impl_->draining.load(); }

int Server::in_flight() const { return impl_->in_flight.load(); }

void Server::shutdown(int64_t grace_ms) {
  Impl& s = *impl_;
  if (!s.started || s.stopped) return;
  s.draining = true;
  auto snapshot = [&s] {
    std::vector<std::shared_ptr<Session>> out;
    std::lock_guard<std::mutex> lock(s.mutex);
    for (auto& [_, weak] : s.sessions) {
      if (auto p = weak.lock()) out.push_back(p);
    }
    return out;
  };
  for (auto& session : snapshot()) session->close_if_idle();
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    s.idle_cv.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(0, grace_ms)),
                       [&s] { return s.in_flight.load() == 0; });
  }
  if (s.in_flight.load() > 0) {
    log::warn("http shutdown grace period over; closing in-flight requests",
              {{"in_flight", s.in_flight.load()}, {"grace_ms", grace_ms}});
  }
  asio::post(s.acceptor.get_executor(), [impl = impl_] {
    beast::error_code ec;
    impl->acceptor.close(ec);
    impl->accept_timer.cancel();
  });
  for (auto& session : snapshot()) session->force_close();
  // Let the closes and their completions run, then stop the I/O threads.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  s.stopped = true;
  s.work.reset();
  s.ioc.stop();
  for (auto& t : s.io_threads) t.join();
  s.io_threads.clear();
  s.handler_pool.join();
  log::info("http server stopped", {{"port", s.bound_port}});
}

void add_health_routes(Server& server, std::function<Status()> ready) {
  server.route("GET", "/healthz",
               SimpleHandler([](const Request&) { return text_response(200, "ok\n"); }));
  server.route("GET", "/readyz", SimpleHandler([&server, ready = std::move(ready)](const Request&) {
                 if (server.draining()) return text_response(503, "draining\n");
                 Status s = ready ? ready() : ok_status();
                 if (!s.ok()) return text_response(503, s.message() + "\n");
                 return text_response(200, "ok\n");
               }));
}

}  // namespace moeserve::http
