#include "common/status.h"

namespace moeserve {

std::string_view status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid_argument";
    case StatusCode::kNotFound: return "not_found";
    case StatusCode::kAlreadyExists: return "already_exists";
    case StatusCode::kConflict: return "conflict";
    case StatusCode::kGone: return "gone";
    case StatusCode::kUnavailable: return "unavailable";
    case StatusCode::kDeadlineExceeded: return "deadline_exceeded";
    case StatusCode::kResourceExhausted: return "resource_exhausted";
    case StatusCode::kInternal: return "internal";
    case StatusCode::kUnauthenticated: return "unauthenticated";
    case StatusCode::kPermissionDenied: return "permission_denied";
    case StatusCode::kFailedPrecondition: return "failed_precondition";
  }
  return "unknown";
}

Status::Status(StatusCode code, std::string message)
    : code_(code), message_(code == StatusCode::kOk ? std::string() : std::move(message)) {}

std::string Status::to_string() const {
  if (ok()) return "ok";
  std::string out(status_code_name(code_));
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

Status Status::with_context(std::string_view context) const {
  if (ok()) return *this;
  std::string message(context);
  if (!message_.empty()) {
    message += ": ";
    message += message_;
  }
  return Status(code_, std::move(message));
}

Status invalid_argument_error(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
Status not_found_error(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
Status already_exists_error(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
Status conflict_error(std::string m) { return {StatusCode::kConflict, std::move(m)}; }
Status gone_error(std::string m) { return {StatusCode::kGone, std::move(m)}; }
Status unavailable_error(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
Status deadline_exceeded_error(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
Status resource_exhausted_error(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
Status internal_error(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
Status unauthenticated_error(std::string m) { return {StatusCode::kUnauthenticated, std::move(m)}; }
Status permission_denied_error(std::string m) {
  return {StatusCode::kPermissionDenied, std::move(m)};
}
Status failed_precondition_error(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}

}  // namespace moeserve
