// The demand a gateway holds for a ModelDeployment that has no ready group, as the
// gateway writes it and the operator reads it: one annotation per gateway pod on the
// ModelDeployment,
//   waiting.gateway.moeserve.io/<pod>: "<requests> <RFC 3339 time written>"
// set with a JSON merge patch (so gateways never overwrite each other's keys), refreshed
// while requests wait and removed (null in the patch) when none do. The annotation
// change is itself a watch event on the ModelDeployment, so the operator reconciles at
// once instead of at its next autoscaler interval. A gateway that dies leaves its entry
// behind; entries older than a bound are ignored, so such demand fades. Pure.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace moeserve::deployment {

inline constexpr std::string_view kGatewayWaitingPrefix = "waiting.gateway.moeserve.io/";

// The annotation key of gateway pod `pod`. A key's name part is at most 63 characters of
// [A-Za-z0-9._-], starting and ending alphanumeric; longer or odd pod names are cut and
// suffixed with a hash of the whole name so two gateways never share a key.
std::string gateway_waiting_key(std::string_view pod);

// "<requests> <time>", e.g. "3 2026-01-01T00:00:05Z".
std::string format_gateway_waiting(int64_t requests, std::chrono::sys_seconds written);

struct GatewayWaiting {
  int64_t requests = 0;
  std::chrono::sys_seconds written;
};
// nullopt when `value` is not "<non-negative integer> <RFC 3339 time>".
std::optional<GatewayWaiting> parse_gateway_waiting(std::string_view value);

// The requests waiting over every gateway's entry in `annotations` (metadata.annotations,
// an object or null) written within `max_age` of `now` (entries from the future, a
// skewed clock, count as fresh); malformed entries are ignored. nullopt when no fresh
// entry exists, so "no gateway reports" differs from "gateways report 0".
std::optional<int64_t> fresh_gateway_waiting(const nlohmann::json& annotations,
                                             std::chrono::sys_seconds now,
                                             std::chrono::seconds max_age);

}  // namespace moeserve::deployment
