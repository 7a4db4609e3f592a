// Where the Kubernetes API server is and how to authenticate to it: from a kubeconfig
// file (clusters/users/contexts, current-context) or from the in-cluster service
// account (KUBERNETES_SERVICE_HOST/PORT and the mounted token, ca.crt, namespace).
//
// Relative file paths in a kubeconfig are resolved against the kubeconfig's folder, as
// kubectl does. certificate-authority-data / client-*-data are base64 in the file and
// decoded to PEM here. A plain http:// server with no user credentials is valid (the
// test API server). TokenSource hands out the bearer token, re-reading a token file at
// most once per refresh interval or right after invalidate() (a 401), so rotated
// service-account tokens are picked up. TokenSource is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include "common/http_client.h"
#include "common/status.h"

namespace moeserve::kube {

struct Config {
  std::string server;  // "https://10.0.0.1:443", "http://127.0.0.1:8080"
  std::string ca_pem;  // decoded certificate-authority-data
  std::string ca_file;
  bool insecure_skip_tls_verify = false;
  std::string token;       // static bearer token
  std::string token_file;  // bearer token read from a file (wins over `token` when set)
  std::string client_cert_pem;
  std::string client_cert_file;
  std::string client_key_pem;
  std::string client_key_file;
  std::string namespace_name = "default";  // the context's (or service account's) namespace
};

inline constexpr std::string_view kServiceAccountDir =
    "/var/run/secrets/kubernetes.io/serviceaccount";

// Parses kubeconfig YAML; `context` "" means current-context. `base_dir` resolves
// relative file paths. Errors name the missing context/cluster/user or the bad field.
StatusOr<Config> parse_kubeconfig(std::string_view yaml_text, const std::string& base_dir,
                                  const std::string& context = "");
StatusOr<Config> load_kubeconfig(const std::string& path, const std::string& context = "");

// In-cluster configuration from KUBERNETES_SERVICE_HOST/PORT and `root`
// (token, ca.crt, namespace). The token is referenced as token_file so that it rotates.
StatusOr<Config> in_cluster_config(const std::string& root = std::string(kServiceAccountDir));

// The operator's default: `kubeconfig_path` when given, else in-cluster when
// KUBERNETES_SERVICE_HOST is set, else the first path of $KUBECONFIG (no merging), else
// ~/.kube/config.
StatusOr<Config> load_default_config(const std::string& kubeconfig_path);

// TLS options of the HTTP client for this configuration.
http::ClientOptions client_options(const Config& config);

// Decodes standard base64 (padding optional, whitespace ignored).
StatusOr<std::string> base64_decode(std::string_view text);

class TokenSource {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  static constexpr std::chrono::seconds kRefreshInterval{60};

  TokenSource(std::string token, std::string token_file, Clock clock = {});
  // "" when there are no credentials. Error only when the token file cannot be read.
  StatusOr<std::string> token();
  // Forces the next token() to re-read the file (call after a 401).
  void invalidate();
  bool from_file() const { return !token_file_.empty(); }

 private:
  std::mutex mutex_;
  std::string token_;
  std::string token_file_;
  Clock clock_;
  bool loaded_ = false;
  bool refresh_now_ = false;
  std::chrono::steady_clock::time_point loaded_at_{};
};

}  // namespace moeserve::kube
