// HTTP/1.1 server on Boost.Beast, shared by the worker and the operator.
//
// Routing is by method + exact path, or by method + path prefix (route_prefix). A path
// that matches no route gets 404; a path that matches with another method gets 405 with
// an Allow header. Limits: body size (413), header size (431), time to receive a whole
// request (408); malformed requests get 400. Connections are kept alive.
//
// Handlers run on a handler thread pool, never on the I/O threads, so a handler may
// block (e.g. waiting for generated tokens). A handler answers through its Responder:
// either one send(), or begin_stream() + write()... + end_stream() for a chunked
// response (Server-Sent Events, Kubernetes watch). write() blocks until the bytes are
// handed to the socket and returns false once the client has gone, which is how a
// streaming handler learns to cancel. A handler that returns without answering gets 500.
//
// shutdown(grace_ms): drain, then stop. While draining, idle keep-alive connections
// close, in-flight handlers get up to the grace period to finish, and every request
// that arrives meanwhile (on a new connection or a kept-alive one) is answered 503 with
// Retry-After by the server itself, through error_response, and its connection closed:
// clients are told to go elsewhere rather than refused at the TCP level. Then the
// listening socket closes, everything else is closed and the threads are joined.
// Accepting backs off when the process is out of file descriptors (EMFILE/ENFILE)
// instead of spinning, and logs that at most once per 10 s.
// Thread-safety: route() before start(); everything else may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace moeserve::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;  // upper case, e.g. "GET"
  std::string target;  // as sent: "/v1/models?x=1"
  std::string path;    // "/v1/models"
  std::string query;   // "x=1" (undecoded)
  Headers headers;     // names lower-cased
  std::string body;
  std::string remote_address;

  // First value of a header (name compared case-insensitively); "" when absent.
  std::string header(std::string_view name) const;
  // Percent-decoded value of a query parameter; "" when absent.
  std::string query_param(std::string_view name) const;
  bool has_query_param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  Headers headers;
  std::string body;
};

Response text_response(int status, std::string body);
Response json_response(int status, std::string json_body);

class Responder {
 public:
  virtual ~Responder() = default;
  // Sends a whole response. Call at most once, and not after begin_stream().
  virtual void send(Response response) = 0;
  // Starts a chunked response. Returns false when the client has already gone.
  virtual bool begin_stream(int status, std::string content_type, Headers headers = {}) = 0;
  // Writes one chunk and waits until it is on the socket; false once the client has gone.
  virtual bool write(std::string_view data) = 0;
  // Ends a chunked response (sends the last chunk).
  virtual void end_stream() = 0;
  // True once the peer is known to have closed the connection.
  virtual bool client_gone() const = 0;
};

using Handler = std::function<void(const Request&, Responder&)>;
using SimpleHandler = std::function<Response(const Request&)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: an ephemeral port, see Server::port()
  size_t max_body_bytes = 8u << 20;
  size_t max_header_bytes = 16u << 10;
  int64_t request_timeout_ms = 30000;  // to receive one whole request
  int64_t idle_timeout_ms = 75000;     // keep-alive connection with no request
  int io_threads = 1;
  int handler_threads = 16;
  // Optional: the response for errors the server answers itself before any handler
  // runs (400 malformed, 404, 405, 408, 413, 431), e.g. to give them an API's JSON error
  // shape.
  // Default: a short plain-text reason.
  std::function<Response(int status, std::string_view reason)> error_response;
};

// What the server makes of the bytes of one request, parsed under `limits` exactly as a
// connection parses them (max_body_bytes, max_header_bytes; the other options are not
// used). Pure; the seam for testing and fuzzing the request parser.
struct ParsedHttpRequest {
  bool complete = false;      // a whole request was read
  int error_status = 0;       // refused: 400 malformed, 413 body or 431 header too large
  size_t consumed_bytes = 0;  // of the input, by the request so far (pipelined bytes follow)
  bool keep_alive = false;    // complete: whether the connection stays open after it
  Request request;            // complete: as handlers see it (remote_address empty)
};
// Neither complete nor refused: the bytes end inside the request.
ParsedHttpRequest parse_http_request(std::string_view bytes, const ServerOptions& limits);

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();  // shutdown(0) if still running
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // method "*" matches any method.
  void route(std::string method, std::string path, Handler handler);
  void route(std::string method, std::string path, SimpleHandler handler);
  // Matches every path that starts with `prefix`; exact routes win over prefixes,
  // longer prefixes over shorter ones.
  void route_prefix(std::string method, std::string prefix, Handler handler);

  // Binds and starts serving. Error when the address cannot be bound.
  Status start();
  uint16_t port() const;
  // Stops accepting; in-flight requests get up to grace_ms to finish. Idempotent.
  void shutdown(int64_t grace_ms);
  bool draining() const;
  // Number of requests whose handlers are running now.
  int in_flight() const;

  struct Impl;  // implementation detail, public only for the .cpp's session classes

 private:
  std::shared_ptr<Impl> impl_;
};

// GET /healthz: 200 "ok" while the process serves. GET /readyz: 200 "ok" when `ready`
// returns ok, else 503 with the status message (and 503 "draining" during shutdown).
void add_health_routes(Server& server, std::function<Status()> ready);

}  // namespace moeserve::http
