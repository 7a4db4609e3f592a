// kubeconfig YAML (operator/kube/config.h): parse_kubeconfig with the current context
// and with a named one. Never throws; an error is a message naming the kubeconfig; an
// accepted config has a server URL that parses, without a trailing '/', a namespace,
// and its relative file paths resolved against the base folder.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/http_client.h"
#include "operator/kube/config.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

constexpr const char* kBaseDir = "/nonexistent-kubeconfig-dir";

void check_file(const std::string& path) {
  FUZZ_CHECK(path.empty() || path.front() == '/', "a relative path was not resolved: " + path);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view yaml(reinterpret_cast<const char*>(data), size);
  for (const std::string context : {"", "fuzz"}) {
    moeserve::StatusOr<moeserve::kube::Config> config =
        moeserve::kube::parse_kubeconfig(yaml, kBaseDir, context);
    if (!config.ok()) {
      FUZZ_CHECK(config.status().message().starts_with("kubeconfig: "), config.status().message());
      continue;
    }
    FUZZ_CHECK(!config->server.empty() && !config->server.ends_with("/"), config->server);
    FUZZ_CHECK(moeserve::http::parse_url(config->server).ok(), config->server);
    FUZZ_CHECK(!config->namespace_name.empty(), "empty namespace");
    check_file(config->ca_file);
    check_file(config->token_file);
    check_file(config->client_cert_file);
    check_file(config->client_key_file);
  }
  return 0;
}
