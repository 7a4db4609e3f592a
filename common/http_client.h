// HTTP/1.1 client on Boost.Beast, with TLS (CA bundle or PEM, client certificate,
// server name verification), connect and request timeouts, and a streaming body
// reader for long responses such as a Kubernetes watch.
//
// Each call runs its own I/O on the calling thread, so a Client may be shared by threads.
// By default each call opens its own connection; with max_idle_connections_per_host > 0
// a connection whose response ended cleanly with keep-alive is kept for the next call to
// the same host (a proxy's upstream pool). A kept connection the server has closed in
// the meantime is detected before reuse, and a reused connection that fails before any
// response byte arrives is retried once on a fresh one. Errors: connection refused or reset ->
// unavailable; timeouts -> deadline_exceeded; TLS verification failures -> unavailable with the
// reason; a malformed URL -> invalid_argument. HTTP error statuses are not Status
// errors: the response carries them. Redirects are followed only when a request asks
// (ClientRequest::max_redirects).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/http_server.h"
#include "common/status.h"

namespace moeserve::http {

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;
  uint16_t port = 0;
  std::string target;  // path + query, at least "/"
};
StatusOr<Url> parse_url(std::string_view url);

struct ClientOptions {
  // Trust: ca_pem and/or ca_file; neither means the system bundle.
  std::string ca_file;
  std::string ca_pem;
  // Client certificate (mutual TLS): PEM text or files.
  std::string client_cert_file;
  std::string client_cert_pem;
  std::string client_key_file;
  std::string client_key_pem;
  bool insecure_skip_verify = false;
  std::string server_name;  // overrides the name sent (SNI) and verified; default: URL host
  int64_t connect_timeout_ms = 10000;
  int64_t request_timeout_ms = 30000;  // whole exchange for send(); per read for streams
  // Keep-alive pool: idle connections kept per scheme/host/port (0: none, every call
  // connects anew), each for at most idle_connection_timeout_ms.
  int max_idle_connections_per_host = 0;
  int64_t idle_connection_timeout_ms = 30000;
};

struct ClientRequest {
  std::string method = "GET";
  std::string url;
  Headers headers;
  std::string body;
  int64_t timeout_ms = 0;  // 0: ClientOptions::request_timeout_ms
  // Optional: polled every 50 ms while the call (and, for open(), every later read of
  // its stream) waits on the network; once it returns true the connection is closed and
  // the call fails with unavailable ("cancelled by the caller"). A proxy passes "my
  // client has gone", so a departed client cancels the upstream request.
  std::function<bool()> cancelled;
  // Up to this many answers 301, 302, 303, 307 or 308 with a Location header are
  // followed (a relative Location resolves against the URL that answered); a 303
  // continues as GET without a body, the others keep method and body. Every header goes
  // along except Authorization, which is dropped once a redirect leaves the scheme, host
  // and port of `url` (a CDN's signed URL must not receive the caller's token). Each hop
  // gets the whole timeout. Past the limit the last 3xx response is returned as is.
  int32_t max_redirects = 0;
};

// The URL a redirect from `from` to `location` (absolute, scheme-relative "//host/x",
// absolute-path "/x" or relative "x") leads to. invalid_argument when it is malformed.
StatusOr<std::string> resolve_redirect(const Url& from, std::string_view location);
bool is_redirect_status(int status);

struct ClientResponse {
  int status = 0;
  Headers headers;  // names lower-cased
  std::string body;
  std::string header(std::string_view name) const;
};

// The body of a response being received. Not thread-safe.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  virtual int status() const = 0;
  virtual const Headers& headers() const = 0;
  std::string header(std::string_view name) const;
  // The next bytes of the body as they arrive (any size, never assumed to align with
  // messages); "" once the body has ended. deadline_exceeded when nothing arrives
  // within timeout_ms (0: the client's request timeout).
  virtual StatusOr<std::string> read_some(int64_t timeout_ms = 0) = 0;
  virtual bool done() const = 0;
  // Closes the connection; later reads return "".
  virtual void close() = 0;
};

class Client {
 public:
  explicit Client(ClientOptions options = {});
  ~Client();
  // Validates the TLS material once (bad PEM or missing file -> invalid_argument).
  Status init();
  StatusOr<ClientResponse> send(const ClientRequest& request) const;
  // Sends the request and returns once the response headers have arrived.
  StatusOr<std::unique_ptr<ResponseStream>> open(const ClientRequest& request) const;

 private:
  // One exchange, no redirects followed.
  StatusOr<ClientResponse> send_once(const ClientRequest& request) const;
  StatusOr<std::unique_ptr<ResponseStream>> open_once(const ClientRequest& request) const;

  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace moeserve::http
