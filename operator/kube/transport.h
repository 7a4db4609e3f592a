// The HTTP transport under the Kubernetes client, behind an interface so tests can
// inject faults (or count requests) while still talking to a real server.
//
// HttpTransport sends over http::Client with the configuration's TLS material and adds
// "Authorization: Bearer <token>" when there is a token. On a 401 with a file-backed
// token it re-reads the file once and retries (service-account tokens rotate).
// Implementations must be thread-safe: the client is shared by informers and workers.
#pragma once

#include <memory>

#include "common/http_client.h"
#include "common/status.h"
#include "operator/kube/config.h"

namespace moeserve::kube {

class Transport {
 public:
  virtual ~Transport() = default;
  // A whole request/response. HTTP error statuses are responses, not errors.
  virtual StatusOr<http::ClientResponse> send(const http::ClientRequest& request) = 0;
  // A streamed response (watch), returned once the headers have arrived.
  virtual StatusOr<std::unique_ptr<http::ResponseStream>> open(
      const http::ClientRequest& request) = 0;
};

class HttpTransport : public Transport {
 public:
  explicit HttpTransport(const Config& config, TokenSource::Clock clock = {});
  // Validates the TLS material.
  Status init();
  StatusOr<http::ClientResponse> send(const http::ClientRequest& request) override;
  StatusOr<std::unique_ptr<http::ResponseStream>> open(const http::ClientRequest& request) override;

 private:
  StatusOr<http::ClientRequest> authorize(const http::ClientRequest& request);

  http::Client client_;
  TokenSource tokens_;
};

}  // namespace moeserve::kube
