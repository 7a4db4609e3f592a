// Status and StatusOr<T>: errors as values (after LevelDB and abseil).
//
// A Status is ok or carries one code from a small closed set plus a message that
// says what failed and where ("config.json: hidden_size: expected integer"). No
// exceptions cross API or thread boundaries; functions that can fail return Status
// or StatusOr<T>. Both types are cheap to move and safe to copy between threads.
//
// Both are [[nodiscard]] (abseil's ABSL_MUST_USE_RESULT), so dropping a result does not
// compile: handle it, or discard it with `(void)` and a comment that says why.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace moeserve {

// Each code says how a caller should react (after abseil's status codes). Codes that
// come from a Kubernetes API answer map its HTTP status (operator/kube/errors.cpp).
enum class StatusCode {
  kOk = 0,
  // The input is wrong (a flag, a config field, a request body; HTTP 400/415/422).
  // Retrying the same call cannot help: report it to whoever supplied the input.
  kInvalidArgument,
  // The named thing does not exist (a file, an object; HTTP 404). Create it, or treat
  // it as already deleted.
  kNotFound,
  // A create found the object there already (HTTP 409 AlreadyExists). Read it and
  // update it instead.
  kAlreadyExists,
  // The object changed since it was read (HTTP 409 on a stale resourceVersion). Read
  // again and retry; an expected outcome under concurrency, not a fault.
  kConflict,
  // What the call resumed from has expired (HTTP 410: a watch's resourceVersion).
  // Start over from a fresh read (relist).
  kGone,
  // A peer or server could not be reached or is not serving now (connection refused,
  // a draining worker, HTTP 5xx). Retry with backoff.
  kUnavailable,
  // The call ran past its deadline. Retry with backoff if the call is idempotent; a
  // read timeout on a watch only means a quiet stream.
  kDeadlineExceeded,
  // A limit is reached (the scheduler's queue, HTTP 429). Retry later, honouring any
  // Retry-After; do not retry at once.
  kResourceExhausted,
  // A bug or a broken invariant in this process. Do not retry; log it with its context.
  kInternal,
  // The credentials are missing or were rejected (HTTP 401). Fix or refresh them;
  // retrying with the same ones cannot help.
  kUnauthenticated,
  // The caller is known but not allowed (HTTP 403, RBAC). Fix the permissions.
  kPermissionDenied,
  // The system is not in the state the call needs (a rank joining a group out of
  // order, a rendezvous the leader refused). Retrying unchanged cannot help until that
  // state changes; fix the order or the configuration.
  kFailedPrecondition,
};

// Stable snake_case name of a code, e.g. "invalid_argument".
std::string_view status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(StatusCode code, std::string message);

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "invalid_argument: config.json: hidden_size must be positive"; "ok" when ok.
  std::string to_string() const;

  // Returns a copy whose message is prefixed with `context` (": " joined); ok stays ok.
  Status with_context(std::string_view context) const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status ok_status() { return Status(); }
Status invalid_argument_error(std::string message);
Status not_found_error(std::string message);
Status already_exists_error(std::string message);
Status conflict_error(std::string message);
Status gone_error(std::string message);
Status unavailable_error(std::string message);
Status deadline_exceeded_error(std::string message);
Status resource_exhausted_error(std::string message);
Status internal_error(std::string message);
Status unauthenticated_error(std::string message);
Status permission_denied_error(std::string message);
Status failed_precondition_error(std::string message);

// Either a value or a non-ok Status. Constructing from an ok Status is a programming
// error and yields an internal error instead of an empty value.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const T& value) : state_(value) {}        // NOLINT: implicit by design
  StatusOr(T&& value) : state_(std::move(value)) {}  // NOLINT
  StatusOr(Status status)                            // NOLINT
      : state_(status.ok() ? internal_error("StatusOr constructed from an ok Status")
                           : std::move(status)) {}

  bool ok() const { return std::holds_alternative<T>(state_); }
  Status status() const { return ok() ? Status() : std::get<Status>(state_); }

  // Precondition: ok().
  const T& value() const& {
    assert(ok());
    return std::get<T>(state_);
  }
  T& value() & {
    assert(ok());
    return std::get<T>(state_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(state_));
  }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

  T value_or(T fallback) const& { return ok() ? value() : std::move(fallback); }

 private:
  std::variant<Status, T> state_;
};

}  // namespace moeserve

#define MOESERVE_CONCAT_INNER(a, b) a##b
#define MOESERVE_CONCAT(a, b) MOESERVE_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function when it is not ok.
#define MOESERVE_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    ::moeserve::Status moeserve_status_ = (expr);        \
    if (!moeserve_status_.ok()) return moeserve_status_; \
  } while (0)

// Declares or assigns `lhs` from a StatusOr expression, returning its Status on error:
//   MOESERVE_ASSIGN_OR_RETURN(auto config, load_config(path));
#define MOESERVE_ASSIGN_OR_RETURN(lhs, expr) \
  MOESERVE_ASSIGN_OR_RETURN_IMPL(MOESERVE_CONCAT(moeserve_statusor_, __LINE__), lhs, expr)
#define MOESERVE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()
