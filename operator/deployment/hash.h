// Stable hashes of rendered Kubernetes objects, for skip-unchanged writes and for
// telling worker templates apart.
//
// The hash is 64-bit FNV-1a over the canonical JSON text (nlohmann::json keeps object
// keys sorted and dump() adds no whitespace), written as 16 lowercase hex digits. It
// is stable across calls, processes and machines for equal JSON values; it is not a
// cryptographic hash and must not guard anything against an adversary.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace moeserve::deployment {

uint64_t fnv1a64(std::string_view bytes);
// 16 hex digits of fnv1a64(value.dump()).
std::string json_hash(const nlohmann::json& value);

}  // namespace moeserve::deployment
