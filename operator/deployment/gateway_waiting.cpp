#include "operator/deployment/gateway_waiting.h"

#include <cctype>
#include <charconv>
#include <cstdio>

#include "operator/deployment/rfc3339.h"

namespace moeserve::deployment {
namespace {

constexpr size_t kMaxNameLength = 63;

bool key_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

// FNV-1a, 32 bits: stable across processes and builds (std::hash is not).
uint32_t fnv1a(std::string_view text) {
  uint32_t h = 2166136261u;
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619u;
  }
  return h;
}

}  // namespace

std::string gateway_waiting_key(std::string_view pod) {
  std::string name;
  bool clean = !pod.empty();
  for (char c : pod) {
    if (key_char(c)) {
      name += c;
    } else {
      name += '-';
      clean = false;
    }
  }
  const bool alnum_ends = !name.empty() && std::isalnum(static_cast<unsigned char>(name.front())) &&
                          std::isalnum(static_cast<unsigned char>(name.back()));
  if (!clean || !alnum_ends || name.size() > kMaxNameLength) {
    char suffix[10];
    std::snprintf(suffix, sizeof(suffix), "-%08x", fnv1a(pod));
    name = name.substr(0, kMaxNameLength - 9);
    while (!name.empty() && !std::isalnum(static_cast<unsigned char>(name.back()))) name.pop_back();
    while (!name.empty() && !std::isalnum(static_cast<unsigned char>(name.front()))) {
      name.erase(name.begin());
    }
    name = (name.empty() ? std::string("gw") : name) + suffix;
  }
  return std::string(kGatewayWaitingPrefix) + name;
}

std::string format_gateway_waiting(int64_t requests, std::chrono::sys_seconds written) {
  return std::to_string(requests) + " " + format_rfc3339(written);
}

std::optional<GatewayWaiting> parse_gateway_waiting(std::string_view value) {
  const size_t space = value.find(' ');
  if (space == std::string_view::npos || space == 0) return std::nullopt;
  int64_t requests = 0;
  const char* begin = value.data();
  const char* end = value.data() + space;
  auto [ptr, ec] = std::from_chars(begin, end, requests);
  if (ec != std::errc() || ptr != end || requests < 0) return std::nullopt;
  auto written = parse_rfc3339(value.substr(space + 1));
  if (!written) return std::nullopt;
  return GatewayWaiting{requests, *written};
}

std::optional<int64_t> fresh_gateway_waiting(const nlohmann::json& annotations,
                                             std::chrono::sys_seconds now,
                                             std::chrono::seconds max_age) {
  if (!annotations.is_object()) return std::nullopt;
  std::optional<int64_t> total;
  for (const auto& [key, value] : annotations.items()) {
    if (key.rfind(kGatewayWaitingPrefix, 0) != 0 || !value.is_string()) continue;
    auto entry = parse_gateway_waiting(value.get<std::string>());
    if (!entry || now - entry->written > max_age) continue;
    total = total.value_or(0) + entry->requests;
  }
  return total;
}

}  // namespace moeserve::deployment
