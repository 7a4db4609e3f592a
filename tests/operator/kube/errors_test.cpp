#include "operator/kube/errors.h"

#include <gtest/gtest.h>

namespace moeserve::kube {
namespace {

std::string status_body(int code, const std::string& reason, const std::string& message,
                        const nlohmann::json& details = nlohmann::json::object()) {
  return nlohmann::json{{"kind", "Status"},   {"apiVersion", "v1"}, {"status", "Failure"},
                        {"message", message}, {"reason", reason},   {"details", details},
                        {"code", code}}
      .dump();
}

TEST(ApiErrors, HttpCodesMapToStatusCodes) {
  struct Case {
    int http;
    std::string reason;
    StatusCode expected;
  };
  std::vector<Case> cases = {
      {404, "NotFound", StatusCode::kNotFound},
      {409, "AlreadyExists", StatusCode::kAlreadyExists},
      {409, "Conflict", StatusCode::kConflict},
      {410, "Expired", StatusCode::kGone},
      {422, "Invalid", StatusCode::kInvalidArgument},
      {400, "BadRequest", StatusCode::kInvalidArgument},
      {429, "TooManyRequests", StatusCode::kResourceExhausted},
      {401, "Unauthorized", StatusCode::kUnauthenticated},
      {403, "Forbidden", StatusCode::kPermissionDenied},
      {500, "InternalError", StatusCode::kUnavailable},
      {503, "ServiceUnavailable", StatusCode::kUnavailable},
  };
  for (const Case& c : cases) {
    Status status = api_error_status(c.http, status_body(c.http, c.reason, "boom"), "", "GET /x");
    EXPECT_EQ(status.code(), c.expected) << c.http << " " << c.reason;
    EXPECT_NE(status.message().find("GET /x"), std::string::npos);
    EXPECT_NE(status.message().find("boom"), std::string::npos);
  }
}

TEST(ApiErrors, InvalidNamesTheCausesFieldPaths) {
  nlohmann::json details = {
      {"causes",
       {{{"reason", "FieldValueInvalid"}, {"field", "spec.replicas"}, {"message", "must be >= 0"}},
        {{"reason", "FieldValueRequired"},
         {"field", "spec.worker.image"},
         {"message", "Required"}}}}};
  ApiError error = parse_api_error(
      422, status_body(422, "Invalid", "ModelDeployment \"x\" is invalid", details));
  ASSERT_EQ(error.causes.size(), 2u);
  EXPECT_EQ(error.causes[1].field, "spec.worker.image");
  Status status = to_status(error, "");
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("spec.replicas: must be >= 0"), std::string::npos);
  EXPECT_NE(status.message().find("spec.worker.image"), std::string::npos);
}

TEST(ApiErrors, RetryAfterFromHeaderOrDetailsIsExposed) {
  Status from_header =
      api_error_status(429, status_body(429, "TooManyRequests", "slow down"), "7", "GET /x");
  EXPECT_EQ(from_header.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(retry_after_seconds(from_header), 7);

  Status from_details = api_error_status(
      429, status_body(429, "TooManyRequests", "slow", {{"retryAfterSeconds", 3}}), "", "");
  EXPECT_EQ(retry_after_seconds(from_details), 3);

  EXPECT_EQ(retry_after_seconds(api_error_status(404, status_body(404, "NotFound", "x"), "", "")),
            std::nullopt);
  EXPECT_EQ(retry_after_seconds(unavailable_error("plain")), std::nullopt);
}

TEST(ApiErrors, NonStatusBodyKeepsTheHttpCodeAndText) {
  Status status = api_error_status(502, "<html>bad gateway</html>", "", "GET /y");
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("bad gateway"), std::string::npos);
  EXPECT_NE(status.message().find("502"), std::string::npos);
}

TEST(ApiErrors, WatchErrorEventStatusObjectMapsGone) {
  nlohmann::json object =
      nlohmann::json::parse(status_body(410, "Expired", "too old resource version: 5 (20)"));
  ApiError error = parse_status_object(object.value("code", 0), object);
  EXPECT_EQ(status_code_for(error), StatusCode::kGone);
  EXPECT_EQ(error.reason, "Expired");
}

}  // namespace
}  // namespace moeserve::kube
