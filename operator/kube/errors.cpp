#include "operator/kube/errors.h"

#include <charconv>

namespace moeserve::kube {
namespace {

constexpr std::string_view kRetryPrefix = " (retry after ";

std::optional<int64_t> parse_seconds(std::string_view text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data() || value < 0) return std::nullopt;
  return value;
}

std::string json_string(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

ApiError parse_status_object(int http_status, const nlohmann::json& status_object) {
  ApiError error;
  error.code = http_status;
  if (!status_object.is_object()) return error;
  if (auto code = status_object.find("code"); code != status_object.end() && code->is_number()) {
    if (error.code == 0 || error.code == 200) error.code = code->get<int>();
  }
  error.reason = json_string(status_object, "reason");
  error.message = json_string(status_object, "message");
  auto details = status_object.find("details");
  if (details != status_object.end() && details->is_object()) {
    auto retry = details->find("retryAfterSeconds");
    if (retry != details->end() && retry->is_number_integer() && retry->get<int64_t>() > 0) {
      error.retry_after_seconds = retry->get<int64_t>();
    }
    auto causes = details->find("causes");
    if (causes != details->end() && causes->is_array()) {
      for (const auto& cause : *causes) {
        if (!cause.is_object()) continue;
        error.causes.push_back({json_string(cause, "field"), json_string(cause, "message"),
                                json_string(cause, "reason")});
      }
    }
  }
  return error;
}

ApiError parse_api_error(int http_status, std::string_view body,
                         std::string_view retry_after_header) {
  nlohmann::json object = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  ApiError error;
  if (object.is_object() && json_string(object, "kind") == "Status") {
    error = parse_status_object(http_status, object);
  } else {
    error.code = http_status;
    error.message = std::string(body.substr(0, 512));
  }
  error.code = http_status;
  if (auto header_seconds = parse_seconds(retry_after_header)) {
    error.retry_after_seconds = header_seconds;
  }
  return error;
}

StatusCode status_code_for(const ApiError& error) {
  switch (error.code) {
    case 400:
    case 422: return StatusCode::kInvalidArgument;
    case 401: return StatusCode::kUnauthenticated;
    case 403: return StatusCode::kPermissionDenied;
    case 404: return StatusCode::kNotFound;
    case 409:
      return error.reason == "AlreadyExists" ? StatusCode::kAlreadyExists : StatusCode::kConflict;
    case 410: return StatusCode::kGone;
    case 415: return StatusCode::kInvalidArgument;
    case 429: return StatusCode::kResourceExhausted;
    default: return StatusCode::kUnavailable;
  }
}

Status to_status(const ApiError& error, std::string_view context) {
  std::string message(context);
  if (!message.empty()) message += ": ";
  message += std::to_string(error.code);
  if (!error.reason.empty()) message += " " + error.reason;
  if (!error.message.empty()) message += ": " + error.message;
  std::string fields;
  for (const auto& cause : error.causes) {
    if (cause.field.empty()) continue;
    if (!fields.empty()) fields += "; ";
    fields += cause.field;
    if (!cause.message.empty()) fields += ": " + cause.message;
  }
  if (!fields.empty()) message += " [" + fields + "]";
  if (error.retry_after_seconds) {
    message += std::string(kRetryPrefix) + std::to_string(*error.retry_after_seconds) + "s)";
  }
  return Status(status_code_for(error), message);
}

Status api_error_status(int http_status, std::string_view body, std::string_view retry_after_header,
                        std::string_view context) {
  return to_status(parse_api_error(http_status, body, retry_after_header), context);
}

std::optional<int64_t> retry_after_seconds(const Status& status) {
  const std::string& message = status.message();
  size_t at = message.rfind(kRetryPrefix);
  if (at == std::string::npos || message.size() < 2 || message.substr(message.size() - 2) != "s)") {
    return std::nullopt;
  }
  size_t begin = at + kRetryPrefix.size();
  return parse_seconds(std::string_view(message).substr(begin, message.size() - 2 - begin));
}

}  // namespace moeserve::kube
