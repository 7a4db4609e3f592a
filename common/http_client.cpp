#include "common/http_client.h"

#include <cctype>
#include <functional>
#include <limits>
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
  // operation with an error (operation_aborted).
  void run() {
    ioc_.restart();
    if (!cancelled_) {
      ioc_.run();
      return;
    }
    while (!ioc_.stopped()) {
      ioc_.run_for(std::chrono::milliseconds(kCancelPollMs));
      if (!ioc_.stopped() && cancelled_()) {
        was_cancelled_ = true;
        close();
      }
    }
  }

  bool was_cancelled() const { return was_cancelled_; }

  template <typename Fn>
  void with_stream(Fn&& fn) {
    if (tls_) {
      fn(*tls_);
    } else {
      fn(*plain_);
    }
  }

  Status connect(int64_t timeout_ms, bool verify) {
    tcp::resolver resolver(ioc_);
    beast::error_code ec;
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
    lowest().expires_after(std::chrono::milliseconds(timeout_ms));
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
    run();
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
  asio::io_context ioc_;
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  beast::flat_buffer buffer_;
};

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
  StreamImpl(std::unique_ptr<Connection> conn, int64_t default_timeout_ms)
      : conn_(std::move(conn)), default_timeout_ms_(default_timeout_ms) {
    // Streams are unbounded (a watch runs for minutes). Not boost::none: Beast 1.74
    // compares a Content-Length against an empty optional as "over the limit".
    parser_.body_limit(std::numeric_limits<std::uint64_t>::max());
  }

  Status read_headers(int64_t timeout_ms) {
    beast::error_code ec = conn_->read(parser_, timeout_ms, /*header_only=*/true, false);
    if (ec) return network_error("read response from", conn_->url(), ec, conn_->was_cancelled());
    status_ = static_cast<int>(parser_.get().result_int());
    headers_ = collect_headers(parser_.get());
    done_ = parser_.is_done();
    return ok_status();
  }

  int status() const override { return status_; }
  const Headers& headers() const override { return headers_; }
  bool done() const override { return done_; }

  StatusOr<std::string> read_some(int64_t timeout_ms) override {
    if (done_) return std::string();
    std::string chunk(kStreamReadBytes, '\0');
    while (true) {
      parser_.get().body().data = chunk.data();
      parser_.get().body().size = chunk.size();
      beast::error_code ec = conn_->read(parser_, timeout_ms > 0 ? timeout_ms : default_timeout_ms_,
                                         false, /*some=*/true);
      size_t got = chunk.size() - parser_.get().body().size;
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec == bhttp::error::end_of_stream || ec == asio::error::eof) {
        done_ = true;
        ec = {};
      }
      if (ec) {
        done_ = true;
        conn_->close();
        return network_error("read response body from", conn_->url(), ec, conn_->was_cancelled());
      }
      if (parser_.is_done()) done_ = true;
      if (got > 0 || done_) {
        chunk.resize(got);
        if (done_) conn_->close();
        return chunk;
      }
      // Only framing (chunk headers) was consumed; read again.
    }
  }

  void close() override {
    if (!done_) conn_->close();
    done_ = true;
  }

 private:
  std::unique_ptr<Connection> conn_;
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

  // Connects and sends the request; the caller reads the response.
  StatusOr<std::unique_ptr<Connection>> start(const ClientRequest& request, int64_t timeout_ms) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!tls) init_status = build_tls();
      if (!init_status.ok()) return init_status;
    }
    MOESERVE_ASSIGN_OR_RETURN(Url url, parse_url(request.url));
    std::string server_name = options.server_name.empty() ? url.host : options.server_name;
    auto conn = std::make_unique<Connection>(url, &*tls, server_name, request.cancelled);
    MOESERVE_RETURN_IF_ERROR(conn->connect(std::min(options.connect_timeout_ms, timeout_ms),
                                           !options.insecure_skip_verify));
    auto req = make_request(request, url);
    MOESERVE_RETURN_IF_ERROR(conn->write(req, timeout_ms));
    return conn;
  }
};

Client::Client(ClientOptions options) : impl_(std::make_shared<Impl>()) {
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
  const std::string host = url.host.find(':') == std::string::npos ? url.host : "[" + url.host + "]";
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
    if (hops >= request.max_redirects || !is_redirect_status(response.status) ||
        location.empty()) {
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
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, impl_->start(request, timeout_ms));
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(kMaxResponseBodyBytes);
  if (request.method == "HEAD") parser.skip(true);
  beast::error_code ec = conn->read(parser, timeout_ms, false, false);
  conn->close();
  if (ec) return network_error("read response from", conn->url(), ec, conn->was_cancelled());
  ClientResponse response;
  response.status = static_cast<int>(parser.get().result_int());
  response.headers = collect_headers(parser.get());
  response.body = std::move(parser.get().body());
  return response;
}

StatusOr<std::unique_ptr<ResponseStream>> Client::open_once(const ClientRequest& request) const {
  int64_t timeout_ms =
      request.timeout_ms > 0 ? request.timeout_ms : impl_->options.request_timeout_ms;
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, impl_->start(request, timeout_ms));
  auto stream = std::make_unique<StreamImpl>(std::move(conn), timeout_ms);
  MOESERVE_RETURN_IF_ERROR(stream->read_headers(timeout_ms));
  return std::unique_ptr<ResponseStream>(std::move(stream));
}

}  // namespace moeserve::http
