// Streaming checksums for verifying downloads against the Hub's published ones
// (hub_api.h): SHA-256 of the content for LFS files, the git blob id (SHA-1 of
// "blob <size>\0" + content) for the others. OpenSSL EVP underneath. Not thread-safe;
// movable, not copyable.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace moeserve::fetch {

class Digest {
 public:
  static Digest sha256();
  // A git blob id of content of `size` bytes: the header is hashed here.
  static Digest git_blob(int64_t size);
  Digest(Digest&&) noexcept;
  Digest& operator=(Digest&&) noexcept;
  ~Digest();

  void update(std::string_view bytes);
  // Lowercase hex of the digest so far (the state is left untouched).
  std::string hex() const;

 private:
  struct Impl;
  explicit Digest(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moeserve::fetch
