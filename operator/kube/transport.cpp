#include "operator/kube/transport.h"

namespace moeserve::kube {

HttpTransport::HttpTransport(const Config& config, TokenSource::Clock clock)
    : client_(client_options(config)), tokens_(config.token, config.token_file, std::move(clock)) {}

Status HttpTransport::init() { return client_.init(); }

StatusOr<http::ClientRequest> HttpTransport::authorize(const http::ClientRequest& request) {
  MOESERVE_ASSIGN_OR_RETURN(std::string token, tokens_.token());
  http::ClientRequest out = request;
  if (!token.empty()) out.headers.emplace_back("Authorization", "Bearer " + token);
  return out;
}

StatusOr<http::ClientResponse> HttpTransport::send(const http::ClientRequest& request) {
  MOESERVE_ASSIGN_OR_RETURN(http::ClientRequest authorized, authorize(request));
  MOESERVE_ASSIGN_OR_RETURN(http::ClientResponse response, client_.send(authorized));
  if (response.status != 401 || !tokens_.from_file()) return response;
  tokens_.invalidate();
  MOESERVE_ASSIGN_OR_RETURN(authorized, authorize(request));
  return client_.send(authorized);
}

StatusOr<std::unique_ptr<http::ResponseStream>> HttpTransport::open(
    const http::ClientRequest& request) {
  MOESERVE_ASSIGN_OR_RETURN(http::ClientRequest authorized, authorize(request));
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<http::ResponseStream> stream, client_.open(authorized));
  if (stream->status() != 401 || !tokens_.from_file()) return stream;
  stream->close();
  tokens_.invalidate();
  MOESERVE_ASSIGN_OR_RETURN(authorized, authorize(request));
  return client_.open(authorized);
}

}  // namespace moeserve::kube
