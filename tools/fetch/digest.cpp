#include "tools/fetch/digest.h"

#include <openssl/evp.h>

#include <stdexcept>

namespace moeserve::fetch {

struct Digest::Impl {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

namespace {

// OpenSSL fails these only when out of memory or misbuilt: not a recoverable input error.
void check(int ok, const char* what) {
  if (ok != 1) throw std::runtime_error(std::string("OpenSSL ") + what + " failed");
}

}  // namespace

Digest::Digest(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Digest::Digest(Digest&&) noexcept = default;
Digest& Digest::operator=(Digest&&) noexcept = default;
Digest::~Digest() = default;

Digest Digest::sha256() {
  auto impl = std::make_unique<Impl>();
  check(EVP_DigestInit_ex(impl->ctx, EVP_sha256(), nullptr), "SHA-256 init");
  return Digest(std::move(impl));
}

Digest Digest::git_blob(int64_t size) {
  auto impl = std::make_unique<Impl>();
  check(EVP_DigestInit_ex(impl->ctx, EVP_sha1(), nullptr), "SHA-1 init");
  Digest digest(std::move(impl));
  const std::string header = "blob " + std::to_string(size);
  digest.update(std::string_view(header.c_str(), header.size() + 1));  // with the NUL
  return digest;
}

void Digest::update(std::string_view bytes) {
  check(EVP_DigestUpdate(impl_->ctx, bytes.data(), bytes.size()), "digest update");
}

std::string Digest::hex() const {
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  check(EVP_MD_CTX_copy_ex(copy, impl_->ctx), "digest copy");
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  const int ok = EVP_DigestFinal_ex(copy, out, &length);
  EVP_MD_CTX_free(copy);
  check(ok, "digest final");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  for (unsigned int i = 0; i < length; ++i) {
    text += kHex[out[i] >> 4];
    text += kHex[out[i] & 15];
  }
  return text;
}

}  // namespace moeserve::fetch
