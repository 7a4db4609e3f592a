#include "common/http_client.h"

#include <poll.h>

#include <cctype>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>

#include "common/beast.h"

namespace moeserve::http {
namespace {

using namespace moeserve::net_ns;  // NOLINT: asio, beast, bhttp, tcp

constexpr size_t kMaxResponseBodyBytes = size_t{1} << 30;
constexpr size_t kStreamReadBytes = 64 * 1024;
// How often a request with a cancel predicate checks it while waiting.
constexpr int64_t kCancelPollMs = 50;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string find_header(const Headers& headers, std::string_view name) {
  std::string key = lower(name);
  for (const auto& [k, v] : headers) {
    if (k == key) return v;
  }
  return "";
}

template <typename Message>
Headers collect_headers(const Message& msg) {
  Headers out;
  for (const auto& field : msg)
    out.emplace_back(lower(field.name_string()), std::string(field.value()));
  return out;
}

Status network_error(const std::string& what, const Url& url, const beast::error_code& ec,
                     bool cancelled = false) {
  std::string where = what + " " + url.scheme + "://" + url.host + ":" + std::to_string(url.port);
  if (cancelled) return unavailable_error(where + ": cancelled by the caller");
  if (ec == beast::error::timeout) return deadline_exceeded_error(where + ": timed out");
  return unavailable_error(where + ": " + ec.message());
}

// One connection, plain or TLS, driven by its own io_context on the calling thread.
class Connection {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  Connection(const Url& url, asio::ssl::context* tls_context, std::string server_name,
             std::function<bool()> cancelled)
      : url_(url), server_name_(std::move(server_name)), cancelled_(std::move(cancelled)) {
    if (url.scheme == "https") {
      tls_.emplace(ioc_, *tls_context);
    } else {
      plain_.emplace(ioc_);
    }
  }

  beast::tcp_stream& lowest() { return tls_ ? beast::get_lowest_layer(*tls_) : *plain_; }

  // Runs the io_context until the started operation completes. With a cancel predicate,
  // polls it every kCancelPollMs and closes the connection once it holds, which ends the
  // operation with an error (operation_aborted). With a deadline (reads, which a stream
  // makes once per chunk), the deadline is enforced here too, closing the connection when
  // it passes, instead of by a timer armed per operation: timed_out() tells.
  void run(std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt) {
    ioc_.restart();
    timed_out_ = false;
    if (!cancelled_ && !deadline) {
      ioc_.run();
      return;
    }
    while (!ioc_.stopped()) {
      auto slice = std::chrono::steady_clock::duration(std::chrono::milliseconds(kCancelPollMs));
      if (deadline) slice = std::min(slice, *deadline - std::chrono::steady_clock::now());
      if (slice.count() > 0) ioc_.run_for(slice);
      if (ioc_.stopped()) break;
      if (cancelled_ && cancelled_()) {
        was_cancelled_ = true;
      } else if (deadline && std::chrono::steady_clock::now() >= *deadline) {
        timed_out_ = true;
      } else {
        continue;
      }
      close();
      ioc_.run();  // the closed socket's operations complete with operation_aborted
      break;
    }
  }

  bool was_cancelled() const { return was_cancelled_; }

  // For the next request on a kept connection.
  void reset_for_reuse(std::function<bool()> cancelled) {
    cancelled_ = std::move(cancelled);
    was_cancelled_ = false;
  }

  // Parks the connection after a complete response: no timer pending, idle from now.
  void park() {
    lowest().expires_never();
    idle_since_ = std::chrono::steady_clock::now();
  }
  TimePoint idle_since() const { return idle_since_; }

  // False when the connection cannot carry another request: bytes left over from the
  // last response, or the peer closed it (or sent something) while it sat idle.
  bool still_usable() {
    if (buffer_.size() != 0) return false;
    if (!lowest().socket().is_open()) return false;
    pollfd p{lowest().socket().native_handle(), POLLIN, 0};
    const int ready = ::poll(&p, 1, 0);
    return ready == 0;  // readable, hung up or an error: not reusable
  }

  template <typename Fn>
  void with_stream(Fn&& fn) {
    if (tls_) {
      fn(*tls_);
    } else {
      fn(*plain_);
    }
  }

  Status connect(int64_t timeout_ms, bool verify) {
    beast::error_code ec;
    // An IP literal needs no resolver (Asio's resolves on a thread of its own).
    const asio::ip::address literal = asio::ip::make_address(url_.host, ec);
    if (!ec) {
      lowest().expires_after(std::chrono::milliseconds(timeout_ms));
      lowest().async_connect(tcp::endpoint(literal, url_.port),
                             [&](beast::error_code e) { ec = e; });
    } else {
      ec = {};
      tcp::resolver resolver(ioc_);
      tcp::resolver::results_type endpoints;
      resolver.async_resolve(url_.host, std::to_string(url_.port),
                             [&](beast::error_code e, tcp::resolver::results_type r) {
                               ec = e;
                               endpoints = std::move(r);
                             });
      run();
      if (ec) return network_error("resolve", url_, ec, was_cancelled_);
      lowest().expires_after(std::chrono::milliseconds(timeout_ms));
      lowest().async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    }
    run();
    if (ec) return network_error("connect", url_, ec, was_cancelled_);
    if (!tls_) return ok_status();
    if (!SSL_set_tlsext_host_name(tls_->native_handle(), server_name_.c_str())) {
      return invalid_argument_error("TLS: cannot set server name \"" + server_name_ + "\"");
    }
    if (verify) tls_->set_verify_callback(asio::ssl::host_name_verification(server_name_));
    lowest().expires_after(std::chrono::milliseconds(timeout_ms));
    tls_->async_handshake(asio::ssl::stream_base::client, [&](beast::error_code e) { ec = e; });
    run();
    if (ec) return network_error("TLS handshake with", url_, ec, was_cancelled_);
    return ok_status();
  }

  Status write(bhttp::request<bhttp::string_body>& request, int64_t timeout_ms) {
    beast::error_code ec;
    lowest().expires_after(std::chrono::milliseconds(timeout_ms));
    with_stream([&](auto& s) {
      bhttp::async_write(s, request, [&](beast::error_code e, size_t) { ec = e; });
    });
    run();
    if (ec) return network_error("send request to", url_, ec, was_cancelled_);
    return ok_status();
  }

  template <typename Parser>
  beast::error_code read(Parser& parser, int64_t timeout_ms, bool header_only, bool some) {
    beast::error_code ec;
    lowest().expires_never();  // run() keeps the deadline
    with_stream([&](auto& s) {
      auto done = [&](beast::error_code e, size_t) { ec = e; };
      if (header_only) {
        bhttp::async_read_header(s, buffer_, parser, done);
      } else if (some) {
        bhttp::async_read_some(s, buffer_, parser, done);
      } else {
        bhttp::async_read(s, buffer_, parser, done);
      }
    });
    run(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms));
    if (timed_out_) ec = beast::error::timeout;
    return ec;
  }

  void close() {
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().socket().close(ec);
  }

  const Url& url() const { return url_; }

 private:
  Url url_;
  std::string server_name_;
  std::function<bool()> cancelled_;
  bool was_cancelled_ = false;
  bool timed_out_ = false;
  asio::io_context ioc_;
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  beast::flat_buffer buffer_;
  TimePoint idle_since_{};
};

// Idle keep-alive connections by "scheme://host:port/server-name", most recent last.
class ConnectionPool {
 public:
  ConnectionPool(int max_per_host, int64_t idle_timeout_ms)
      : max_per_host_(max_per_host), idle_timeout_(std::chrono::milliseconds(idle_timeout_ms)) {}

  bool enabled() const { return max_per_host_ > 0; }

  // The most recently parked usable connection for `key`, or null. Expired and closed
  // ones found on the way are dropped.
  std::unique_ptr<Connection> take(const std::string& key) {
    if (!enabled()) return nullptr;
    std::vector<std::unique_ptr<Connection>> dropped;  // closed outside the lock
    std::unique_ptr<Connection> found;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = idle_.find(key);
      if (it == idle_.end()) return nullptr;
      const auto oldest_allowed = std::chrono::steady_clock::now() - idle_timeout_;
      auto& list = it->second;
      while (!list.empty() && !found) {
        std::unique_ptr<Connection> c = std::move(list.back());
        list.pop_back();
        if (c->idle_since() >= oldest_allowed && c->still_usable()) {
          found = std::move(c);
        } else {
          dropped.push_back(std::move(c));
        }
      }
    }
    for (auto& c : dropped) c->close();
    return found;
  }

  // Keeps `connection` for the next request to `key` (or closes it when the pool for that
  // key is full).
  void give_back(const std::string& key, std::unique_ptr<Connection> connection) {
    connection->park();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto& list = idle_[key];
      if (static_cast<int>(list.size()) < max_per_host_) {
        list.push_back(std::move(connection));
        return;
      }
    }
    connection->close();
  }

 private:
  const int max_per_host_;
  const std::chrono::steady_clock::duration idle_timeout_;
  std::mutex mutex_;
  std::map<std::string, std::deque<std::unique_ptr<Connection>>> idle_;
};

// Where a finished connection goes: back to the pool when the exchange allows it, else
// closed.
struct Checkout {
  std::shared_ptr<ConnectionPool> pool;
  std::string key;
  bool reused = false;
};

void release(std::unique_ptr<Connection> conn, const Checkout& checkout, bool keep_alive) {
  if (!conn) return;
  if (keep_alive && checkout.pool && checkout.pool->enabled() && !conn->was_cancelled()) {
    checkout.pool->give_back(checkout.key, std::move(conn));
  } else {
    conn->close();
  }
}

// A reused connection that the server closed while the request was on its way: nothing
// of a response arrived, so the request can go again on a fresh connection.
bool stale_reuse(const beast::error_code& ec, bool got_response_bytes) {
  if (got_response_bytes) return false;
  return ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
}

bhttp::request<bhttp::string_body> make_request(const ClientRequest& request, const Url& url) {
  bhttp::request<bhttp::string_body> req;
  req.method_string(request.method);
  req.target(url.target);
  req.version(11);
  bool default_port =
      (url.scheme == "http" && url.port == 80) || (url.scheme == "https" && url.port == 443);
  req.set(bhttp::field::host, default_port ? url.host : url.host + ":" + std::to_string(url.port));
  req.set(bhttp::field::user_agent, "moeserve/" MOESERVE_VERSION);
  for (const auto& [k, v] : request.headers) req.set(k, v);
  req.body() = request.body;
  req.prepare_payload();
  return req;
}

class StreamImpl : public ResponseStream {
 public:
  StreamImpl(std::unique_ptr<Connection> conn, Checkout checkout, int64_t default_timeout_ms)
      : conn_(std::move(conn)),
        checkout_(std::move(checkout)),
        default_timeout_ms_(default_timeout_ms) {
    // Streams are unbounded (a watch runs for minutes). Not boost::none: Beast 1.74
    // compares a Content-Length against an empty optional as "over the limit".
    parser_.body_limit(std::numeric_limits<std::uint64_t>::max());
  }

  ~StreamImpl() override { close(); }

  // Error code, not Status, so that the caller can tell a stale kept connection.
  beast::error_code read_headers(int64_t timeout_ms) {
    beast::error_code ec = conn_->read(parser_, timeout_ms, /*header_only=*/true, false);
    if (ec) return ec;
    status_ = static_cast<int>(parser_.get().result_int());
    headers_ = collect_headers(parser_.get());
    if (parser_.is_done()) finish();
    return ec;
  }
  bool got_some() const { return parser_.got_some(); }
  bool was_cancelled() const { return conn_ && conn_->was_cancelled(); }
  Status error_status(const beast::error_code& ec) const {
    return network_error("read response from", conn_->url(), ec, conn_->was_cancelled());
  }

  int status() const override { return status_; }
  const Headers& headers() const override { return headers_; }
  bool done() const override { return done_; }

  StatusOr<std::string> read_some(int64_t timeout_ms) override {
    if (done_) return std::string();
    if (buffer_.empty()) buffer_.resize(kStreamReadBytes);
    while (true) {
      parser_.get().body().data = buffer_.data();
      parser_.get().body().size = buffer_.size();
      beast::error_code ec = conn_->read(parser_, timeout_ms > 0 ? timeout_ms : default_timeout_ms_,
                                         false, /*some=*/true);
      const size_t got = buffer_.size() - parser_.get().body().size;
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec == bhttp::error::end_of_stream || ec == asio::error::eof) {
        ec = {};
        if (!parser_.is_done()) end_without_reuse();  // body delimited by the close
      }
      if (ec) {
        Status error =
            network_error("read response body from", conn_->url(), ec, conn_->was_cancelled());
        end_without_reuse();
        return error;
      }
      if (parser_.is_done()) finish();
      if (got > 0 || done_) return std::string(buffer_.data(), got);
      // Only framing (chunk headers) was consumed; read again.
    }
  }

  void close() override {
    if (!done_) end_without_reuse();
  }

 private:
  // The body is complete: the connection goes back to the pool when both sides allow.
  void finish() {
    done_ = true;
    release(std::move(conn_), checkout_, parser_.get().keep_alive());
  }
  void end_without_reuse() {
    done_ = true;
    release(std::move(conn_), checkout_, false);
  }

  std::unique_ptr<Connection> conn_;
  Checkout checkout_;
  std::string buffer_;
  int64_t default_timeout_ms_;
  bhttp::response_parser<bhttp::buffer_body> parser_;
  int status_ = 0;
  Headers headers_;
  bool done_ = false;
};

}  // namespace

StatusOr<Url> parse_url(std::string_view text) {
  Url url;
  size_t scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    return invalid_argument_error("URL \"" + std::string(text) + "\": missing scheme");
  }
  url.scheme = lower(text.substr(0, scheme_end));
  if (url.scheme != "http" && url.scheme != "https") {
    return invalid_argument_error("URL \"" + std::string(text) +
                                  "\": scheme must be http or https");
  }
  std::string_view rest = text.substr(scheme_end + 3);
  size_t path_start = rest.find('/');
  std::string_view authority = rest.substr(0, path_start);
  url.target = path_start == std::string_view::npos ? "/" : std::string(rest.substr(path_start));
  if (authority.empty()) {
    return invalid_argument_error("URL \"" + std::string(text) + "\": missing host");
  }
  std::string_view port_text;
  if (authority.front() == '[') {  // [ipv6]:port
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return invalid_argument_error("URL \"" + std::string(text) + "\": unclosed IPv6 bracket");
    }
    url.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size() && authority[close + 1] == ':') {
      port_text = authority.substr(close + 2);
    }
  } else {
    size_t colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (url.host.empty()) {
    return invalid_argument_error("URL \"" + std::string(text) + "\": missing host");
  }
  if (port_text.empty()) {
    url.port = url.scheme == "https" ? 443 : 80;
  } else {
    int port = 0;
    for (char c : port_text) {
      if (!std::isdigit(static_cast<unsigned char>(c)) || port > 65535) {
        return invalid_argument_error("URL \"" + std::string(text) + "\": bad port");
      }
      port = port * 10 + (c - '0');
    }
    if (port <= 0 || port > 65535) {
      return invalid_argument_error("URL \"" + std::string(text) + "\": bad port");
    }
    url.port = static_cast<uint16_t>(port);
  }
  return url;
}

std::string ClientResponse::header(std::string_view name) const {
  return find_header(headers, name);
}

std::string ResponseStream::header(std::string_view name) const {
  return find_header(headers(), name);
}

struct Client::Impl {
  ClientOptions options;
  std::shared_ptr<ConnectionPool> pool;
  std::mutex mutex;
  std::optional<asio::ssl::context> tls;  // built once, by init()
  Status init_status = failed_precondition_error("http client not initialised");

  Status build_tls() {
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    beast::error_code ec;
    ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                    asio::ssl::context::no_tlsv1_1);
    ctx.set_verify_mode(options.insecure_skip_verify ? asio::ssl::verify_none
                                                     : asio::ssl::verify_peer);
    if (!options.ca_pem.empty()) {
      ctx.add_certificate_authority(asio::buffer(options.ca_pem), ec);
      if (ec) return invalid_argument_error("TLS: CA certificate (PEM data): " + ec.message());
    }
    if (!options.ca_file.empty()) {
      ctx.load_verify_file(options.ca_file, ec);
      if (ec)
        return invalid_argument_error("TLS: CA file " + options.ca_file + ": " + ec.message());
    }
    if (options.ca_pem.empty() && options.ca_file.empty()) ctx.set_default_verify_paths(ec);
    if (!options.client_cert_pem.empty()) {
      ctx.use_certificate_chain(asio::buffer(options.client_cert_pem), ec);
      if (ec) return invalid_argument_error("TLS: client certificate (PEM data): " + ec.message());
    } else if (!options.client_cert_file.empty()) {
      ctx.use_certificate_chain_file(options.client_cert_file, ec);
      if (ec) {
        return invalid_argument_error("TLS: client certificate " + options.client_cert_file + ": " +
                                      ec.message());
      }
    }
    if (!options.client_key_pem.empty()) {
      ctx.use_private_key(asio::buffer(options.client_key_pem), asio::ssl::context::pem, ec);
      if (ec) return invalid_argument_error("TLS: client key (PEM data): " + ec.message());
    } else if (!options.client_key_file.empty()) {
      ctx.use_private_key_file(options.client_key_file, asio::ssl::context::pem, ec);
      if (ec) {
        return invalid_argument_error("TLS: client key " + options.client_key_file + ": " +
                                      ec.message());
      }
    }
    tls.emplace(std::move(ctx));
    return ok_status();
  }

  // Sends the request on a kept connection (unless `fresh`) or a new one; the caller
  // reads the response. A kept connection whose write fails is dropped for a new one.
  StatusOr<std::unique_ptr<Connection>> start(const ClientRequest& request, int64_t timeout_ms,
                                              bool fresh, Checkout* checkout) {
    MOESERVE_ASSIGN_OR_RETURN(Url url, parse_url(request.url));
    // The TLS context (which parses the whole CA bundle) only for https: a plain-http
    // client made per call, as probes and proxies do, must not pay milliseconds for it.
    if (url.scheme == "https") {
      std::lock_guard<std::mutex> lock(mutex);
      if (!tls) init_status = build_tls();
      if (!init_status.ok()) return init_status;
    }
    std::string server_name = options.server_name.empty() ? url.host : options.server_name;
    auto req = make_request(request, url);
    checkout->pool = pool;
    checkout->key =
        url.scheme + "://" + url.host + ":" + std::to_string(url.port) + "/" + server_name;
    checkout->reused = false;
    if (!fresh) {
      if (std::unique_ptr<Connection> kept = pool->take(checkout->key)) {
        kept->reset_for_reuse(request.cancelled);
        if (kept->write(req, timeout_ms).ok()) {
          checkout->reused = true;
          return kept;
        }
        kept->close();
      }
    }
    auto conn = std::make_unique<Connection>(url, url.scheme == "https" ? &*tls : nullptr,
                                             server_name, request.cancelled);
    MOESERVE_RETURN_IF_ERROR(conn->connect(std::min(options.connect_timeout_ms, timeout_ms),
                                           !options.insecure_skip_verify));
    MOESERVE_RETURN_IF_ERROR(conn->write(req, timeout_ms));
    return conn;
  }
};

Client::Client(ClientOptions options) : impl_(std::make_shared<Impl>()) {
  impl_->pool = std::make_shared<ConnectionPool>(options.max_idle_connections_per_host,
                                                 options.idle_connection_timeout_ms);
  impl_->options = std::move(options);
}

Client::~Client() = default;

Status Client::init() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (!impl_->tls) impl_->init_status = impl_->build_tls();
  return impl_->init_status;
}

namespace {

std::string origin_of(const Url& url) {
  const std::string host =
      url.host.find(':') == std::string::npos ? url.host : "[" + url.host + "]";
  return url.scheme + "://" + host + ":" + std::to_string(url.port);
}

// The request that follows `response_status` + `location` from `current`; `original` is
// the URL the caller asked for (its origin decides whether Authorization goes along).
StatusOr<ClientRequest> redirected(const ClientRequest& current, const Url& original,
                                   int response_status, std::string_view location) {
  MOESERVE_ASSIGN_OR_RETURN(Url from, parse_url(current.url));
  ClientRequest next = current;
  MOESERVE_ASSIGN_OR_RETURN(next.url, resolve_redirect(from, location));
  MOESERVE_ASSIGN_OR_RETURN(Url to, parse_url(next.url));
  if (origin_of(to) != origin_of(original)) {
    std::erase_if(next.headers, [](const auto& h) { return lower(h.first) == "authorization"; });
  }
  if (response_status == 303) {
    next.method = "GET";
    next.body.clear();
  }
  return next;
}

}  // namespace

bool is_redirect_status(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

StatusOr<std::string> resolve_redirect(const Url& from, std::string_view location) {
  if (location.empty()) return invalid_argument_error("redirect without a Location");
  if (location.find("://") != std::string_view::npos) {
    MOESERVE_RETURN_IF_ERROR(parse_url(location).status());
    return std::string(location);
  }
  if (location.substr(0, 2) == "//") {
    std::string url = from.scheme + ":" + std::string(location);
    MOESERVE_RETURN_IF_ERROR(parse_url(url).status());
    return url;
  }
  std::string path;
  if (location.front() == '/') {
    path = std::string(location);
  } else {
    const std::string base = from.target.substr(0, from.target.find('?'));
    path = base.substr(0, base.rfind('/') + 1) + std::string(location);
  }
  return origin_of(from) + path;
}

StatusOr<ClientResponse> Client::send(const ClientRequest& request) const {
  MOESERVE_ASSIGN_OR_RETURN(Url original, parse_url(request.url));
  ClientRequest current = request;
  for (int32_t hops = 0;; ++hops) {
    MOESERVE_ASSIGN_OR_RETURN(ClientResponse response, send_once(current));
    const std::string location = response.header("location");
    if (hops >= request.max_redirects || !is_redirect_status(response.status) || location.empty()) {
      return response;
    }
    MOESERVE_ASSIGN_OR_RETURN(current, redirected(current, original, response.status, location));
  }
}

StatusOr<std::unique_ptr<ResponseStream>> Client::open(const ClientRequest& request) const {
  MOESERVE_ASSIGN_OR_RETURN(Url original, parse_url(request.url));
  ClientRequest current = request;
  for (int32_t hops = 0;; ++hops) {
    MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<ResponseStream> stream, open_once(current));
    const std::string location = stream->header("location");
    if (hops >= request.max_redirects || !is_redirect_status(stream->status()) ||
        location.empty()) {
      return stream;
    }
    stream->close();
    MOESERVE_ASSIGN_OR_RETURN(current, redirected(current, original, stream->status(), location));
  }
}

StatusOr<ClientResponse> Client::send_once(const ClientRequest& request) const {
  int64_t timeout_ms =
      request.timeout_ms > 0 ? request.timeout_ms : impl_->options.request_timeout_ms;
  for (bool fresh : {false, true}) {
    Checkout checkout;
    MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn,
                              impl_->start(request, timeout_ms, fresh, &checkout));
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(kMaxResponseBodyBytes);
    if (request.method == "HEAD") parser.skip(true);
    beast::error_code ec = conn->read(parser, timeout_ms, false, false);
    if (ec) {
      Status error = network_error("read response from", conn->url(), ec, conn->was_cancelled());
      const bool retry =
          checkout.reused && !conn->was_cancelled() && stale_reuse(ec, parser.got_some());
      release(std::move(conn), checkout, false);
      if (retry) continue;
      return error;
    }
    ClientResponse response;
    response.status = static_cast<int>(parser.get().result_int());
    response.headers = collect_headers(parser.get());
    response.body = std::move(parser.get().body());
    release(std::move(conn), checkout, parser.get().keep_alive());
    return response;
  }
  return unavailable_error("unreachable");
}

StatusOr<std::unique_ptr<ResponseStream>> Client::open_once(const ClientRequest& request) const {
  int64_t timeout_ms =
      request.timeout_ms > 0 ? request.timeout_ms : impl_->options.request_timeout_ms;
  for (bool fresh : {false, true}) {
    Checkout checkout;
    MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn,
                              impl_->start(request, timeout_ms, fresh, &checkout));
    const bool reused = checkout.reused;
    auto stream = std::make_unique<StreamImpl>(std::move(conn), std::move(checkout), timeout_ms);
    beast::error_code ec = stream->read_headers(timeout_ms);
    if (!ec) return std::unique_ptr<ResponseStream>(std::move(stream));
    Status error = stream->error_status(ec);
    const bool retry = reused && !stream->was_cancelled() && stale_reuse(ec, stream->got_some());
    stream->close();
    if (retry) continue;
    return error;
  }
  return unavailable_error("unreachable");
}

}  // namespace moeserve::http
