// Kubernetes API errors as moeserve Status values.
//
// The API server answers errors with a Status object (kind Status: message, reason,
// details.causes[{field, message}], details.retryAfterSeconds, code). api_error_status
// maps the HTTP code to a StatusCode: 404 not_found, 409 conflict (reason AlreadyExists
// -> already_exists), 410 gone, 400/422 invalid_argument (the causes' field paths
// appended), 429 resource_exhausted, 401 unauthenticated, 403 permission_denied, 5xx
// and anything else unavailable. The message ends with "(retry after Ns)" when the
// server gave a Retry-After header or details.retryAfterSeconds, which
// retry_after_seconds() reads back. Pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace moeserve::kube {

struct ApiErrorCause {
  std::string field;
  std::string message;
  std::string reason;
};

struct ApiError {
  int code = 0;         // HTTP status
  std::string reason;   // "NotFound", "AlreadyExists", "Conflict", "Expired", "Invalid", ...
  std::string message;  // the server's message, or the body when it is not a Status
  std::vector<ApiErrorCause> causes;
  std::optional<int64_t> retry_after_seconds;
};

// `body` is the response body; `retry_after_header` the Retry-After value ("" if none).
ApiError parse_api_error(int http_status, std::string_view body,
                         std::string_view retry_after_header = "");
// Same from an already-parsed Status object (e.g. a watch ERROR event).
ApiError parse_status_object(int http_status, const nlohmann::json& status_object);

StatusCode status_code_for(const ApiError& error);
// `context` prefixes the message, e.g. "GET /api/v1/namespaces/default/pods/x".
Status to_status(const ApiError& error, std::string_view context);
Status api_error_status(int http_status, std::string_view body, std::string_view retry_after_header,
                        std::string_view context);

// Seconds from the "(retry after Ns)" suffix that to_status writes; nullopt when absent.
std::optional<int64_t> retry_after_seconds(const Status& status);

}  // namespace moeserve::kube
