// Status and StatusOr<T>: errors as values (after LevelDB and abseil).
//
// A Status is ok or carries one code from a small closed set plus a message that
// says what failed and where ("config.json: hidden_size: expected integer"). No
// exceptions cross API or thread boundaries; functions that can fail return Status
// or StatusOr<T>. Both types are cheap to move and safe to copy between threads.
//
// Both are [[nodiscard]] (abseil's ABSL_MUST_USE_RESULT), so dropping a result does not
// compile: handle it, or discard it with `(void)` and a comment that says why. Each code
// below says how a caller should react to it.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace moeserve {

enum class StatusCode {
  kOk = 0,
  // The input is wrong whatever the state of the system (a malformed config, an
  // out-of-range flag, a 400/422 from the API server). Do not retry; fix the input.
  kInvalidArgument,
  // The named thing (file, object, key) does not exist. Retrying the same call does not
  // help unless something else creates it; callers that read-or-create treat it as absent.
  kNotFound,
  // A create found the object already there. Read it and converge on what exists
  // (update it, or accept it as yours); do not retry the create.
  kAlreadyExists,
  // An optimistic-concurrency write lost (stale resourceVersion). Re-read and redo the
  // whole read-modify-write; expected under contention, not worth a warning.
  kConflict,
  // The version the caller holds has expired (a watch's resourceVersion, 410). Start
  // over from a fresh read (relist), then resume.
  kGone,
  // Transient: the peer is down, unreachable or draining (5xx, refused connection).
  // Retry with backoff; the request may be repeated if it is idempotent.
  kUnavailable,
  // The deadline passed before an answer came; the operation may or may not have taken
  // effect. Retry with backoff if it is idempotent, otherwise read back what happened.
  kDeadlineExceeded,
  // Out of capacity or throttled (KV blocks, a full queue, 429). Retry later with
  // backoff (honouring Retry-After when given) or ask for less.
  kResourceExhausted,
  // An invariant is broken: a bug, not the caller's input. Do not retry; report it.
  kInternal,
  // Credentials are missing, invalid or expired (401). Reload them (e.g. re-read the
  // token file) and retry once; otherwise give up and report.
  kUnauthenticated,
  // Authenticated but not allowed (403). Do not retry; fix the permissions (RBAC).
  kPermissionDenied,
  // The system is not in the state the call requires (join before any other request,
  // not running in a cluster). Do not retry until that state has been established.
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
