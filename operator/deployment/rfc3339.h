// RFC 3339 timestamps as Kubernetes writes them ("2026-11-28T13:00:05Z", UTC, whole
// seconds), to and from std::chrono::sys_seconds. Pure: no clock is read here.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace moeserve::deployment {

std::string format_rfc3339(std::chrono::sys_seconds time);
// Accepts "YYYY-MM-DDTHH:MM:SS" with optional fraction and "Z" or "+HH:MM"/"-HH:MM";
// the fraction is dropped. nullopt when malformed.
std::optional<std::chrono::sys_seconds> parse_rfc3339(std::string_view text);

}  // namespace moeserve::deployment
