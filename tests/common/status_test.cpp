#include "common/status.h"

#include <gtest/gtest.h>

#include <memory>

namespace moeserve {
namespace {

StatusOr<int> parse_positive(int v) {
  if (v <= 0) return invalid_argument_error("value " + std::to_string(v) + " must be positive");
  return v;
}

StatusOr<int> doubled(int v) {
  MOESERVE_ASSIGN_OR_RETURN(int x, parse_positive(v));
  return 2 * x;
}

Status check_both(int a, int b) {
  MOESERVE_RETURN_IF_ERROR(parse_positive(a).status().with_context("a"));
  MOESERVE_RETURN_IF_ERROR(parse_positive(b).status().with_context("b"));
  return ok_status();
}

TEST(Status, DefaultIsOkAndPrintsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.to_string(), "ok");
}

TEST(Status, OkCodeDropsMessage) {
  Status s(StatusCode::kOk, "ignored");
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.message(), "");
}

TEST(Status, EveryCodeHasAStableName) {
  EXPECT_EQ(invalid_argument_error("x").to_string(), "invalid_argument: x");
  EXPECT_EQ(not_found_error("x").code(), StatusCode::kNotFound);
  EXPECT_EQ(status_code_name(StatusCode::kAlreadyExists), "already_exists");
  EXPECT_EQ(status_code_name(StatusCode::kConflict), "conflict");
  EXPECT_EQ(status_code_name(StatusCode::kGone), "gone");
  EXPECT_EQ(status_code_name(StatusCode::kUnavailable), "unavailable");
  EXPECT_EQ(status_code_name(StatusCode::kDeadlineExceeded), "deadline_exceeded");
  EXPECT_EQ(status_code_name(StatusCode::kResourceExhausted), "resource_exhausted");
  EXPECT_EQ(status_code_name(StatusCode::kInternal), "internal");
  EXPECT_EQ(status_code_name(StatusCode::kUnauthenticated), "unauthenticated");
  EXPECT_EQ(status_code_name(StatusCode::kPermissionDenied), "permission_denied");
  EXPECT_EQ(status_code_name(StatusCode::kFailedPrecondition), "failed_precondition");
  EXPECT_EQ(gone_error("x").code(), StatusCode::kGone);
  EXPECT_EQ(conflict_error("x").code(), StatusCode::kConflict);
  EXPECT_EQ(deadline_exceeded_error("x").code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(resource_exhausted_error("x").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(unauthenticated_error("x").code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(permission_denied_error("x").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(failed_precondition_error("x").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(unavailable_error("x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(internal_error("x").code(), StatusCode::kInternal);
  EXPECT_EQ(already_exists_error("x").code(), StatusCode::kAlreadyExists);
}

TEST(Status, WithContextPrefixesWhereAndKeepsCode) {
  Status s = not_found_error("tensor missing").with_context("model-00001.safetensors");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "model-00001.safetensors: tensor missing");
  EXPECT_TRUE(ok_status().with_context("ignored").ok());
}

TEST(Status, Equality) {
  EXPECT_EQ(gone_error("a"), gone_error("a"));
  EXPECT_NE(gone_error("a"), conflict_error("a"));
  EXPECT_NE(gone_error("a"), gone_error("b"));
}

TEST(StatusOr, HoldsValueOrError) {
  StatusOr<int> good = parse_positive(3);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 3);
  EXPECT_TRUE(good.status().ok());
  StatusOr<int> bad = parse_positive(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "value -1 must be positive");
  EXPECT_EQ(bad.value_or(7), 7);
}

TEST(StatusOr, FromOkStatusIsAnInternalError) {
  StatusOr<int> s{ok_status()};
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInternal);
}

TEST(StatusOr, MoveOnlyValues) {
  StatusOr<std::unique_ptr<int>> p = std::make_unique<int>(5);
  ASSERT_TRUE(p.ok());
  std::unique_ptr<int> taken = std::move(p).value();
  EXPECT_EQ(*taken, 5);
}

TEST(StatusMacros, PropagateFirstError) {
  EXPECT_EQ(*doubled(4), 8);
  EXPECT_EQ(doubled(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(check_both(1, 2).ok());
  Status s = check_both(1, -2);
  EXPECT_EQ(s.message(), "b: value -2 must be positive");
}

}  // namespace
}  // namespace moeserve
