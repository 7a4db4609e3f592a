#include "operator/deployment/hash.h"

#include <cstdio>

namespace moeserve::deployment {

uint64_t fnv1a64(std::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV offset basis
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ull;  // FNV prime
  }
  return hash;
}

std::string json_hash(const nlohmann::json& value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx",
                static_cast<unsigned long long>(fnv1a64(value.dump())));
  return text;
}

}  // namespace moeserve::deployment
