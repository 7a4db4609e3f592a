#include "operator/kube/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace moeserve::kube {
namespace {

StatusOr<std::string> read_text_file(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found_error(std::string(what) + " " + path + ": cannot open");
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string trim(std::string text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

std::string resolve(const std::string& path, const std::string& base_dir) {
  if (path.empty() || path.front() == '/' || base_dir.empty()) return path;
  return base_dir + "/" + path;
}

// The entry named `name` in a kubeconfig list (clusters, users, contexts), or null.
YAML::Node find_named(const YAML::Node& list, const std::string& name) {
  if (!list || !list.IsSequence()) return YAML::Node();
  for (const auto& entry : list) {
    if (entry["name"] && entry["name"].as<std::string>() == name) return entry;
  }
  return YAML::Node();
}

std::string scalar(const YAML::Node& node, const char* key) {
  const YAML::Node value = node[key];
  return value && value.IsScalar() ? value.as<std::string>() : std::string();
}

// Reads `<key>-data` (base64) into *pem or `<key>` (a path) into *file.
Status read_pem_field(const YAML::Node& node, const std::string& key, const std::string& base_dir,
                      std::string_view where, std::string* pem, std::string* file) {
  std::string data = scalar(node, (key + "-data").c_str());
  if (!data.empty()) {
    auto decoded = base64_decode(data);
    if (!decoded.ok()) {
      return invalid_argument_error(std::string(where) + "." + key +
                                    "-data: " + decoded.status().message());
    }
    *pem = *decoded;
    return ok_status();
  }
  *file = resolve(scalar(node, key.c_str()), base_dir);
  return ok_status();
}

StatusOr<Config> parse_kubeconfig_node(const YAML::Node& root, const std::string& base_dir,
                                       const std::string& context) {
  std::string context_name = context.empty() ? scalar(root, "current-context") : context;
  if (context_name.empty()) {
    return invalid_argument_error("kubeconfig: no context given and no current-context set");
  }
  YAML::Node ctx = find_named(root["contexts"], context_name);
  if (!ctx || !ctx["context"]) {
    return not_found_error("kubeconfig: context \"" + context_name + "\" not found");
  }
  YAML::Node ctx_body = ctx["context"];
  std::string cluster_name = scalar(ctx_body, "cluster");
  YAML::Node cluster = find_named(root["clusters"], cluster_name);
  if (!cluster || !cluster["cluster"]) {
    return not_found_error("kubeconfig: context \"" + context_name + "\": cluster \"" +
                           cluster_name + "\" not found");
  }
  YAML::Node cluster_body = cluster["cluster"];
  Config config;
  config.server = scalar(cluster_body, "server");
  if (config.server.empty()) {
    return invalid_argument_error("kubeconfig: cluster \"" + cluster_name + "\": server is empty");
  }
  auto url = http::parse_url(config.server);
  if (!url.ok()) {
    return invalid_argument_error("kubeconfig: cluster \"" + cluster_name +
                                  "\": server: " + url.status().message());
  }
  while (!config.server.empty() && config.server.back() == '/') config.server.pop_back();
  std::string where = "kubeconfig: cluster \"" + cluster_name + "\"";
  MOESERVE_RETURN_IF_ERROR(read_pem_field(cluster_body, "certificate-authority", base_dir, where,
                                          &config.ca_pem, &config.ca_file));
  config.insecure_skip_tls_verify = scalar(cluster_body, "insecure-skip-tls-verify") == "true";

  std::string user_name = scalar(ctx_body, "user");
  if (!user_name.empty()) {
    YAML::Node user = find_named(root["users"], user_name);
    if (!user) {
      return not_found_error("kubeconfig: context \"" + context_name + "\": user \"" + user_name +
                             "\" not found");
    }
    YAML::Node user_body = user["user"];
    if (user_body && user_body.IsMap()) {
      std::string user_where = "kubeconfig: user \"" + user_name + "\"";
      config.token = scalar(user_body, "token");
      config.token_file = resolve(scalar(user_body, "tokenFile"), base_dir);
      MOESERVE_RETURN_IF_ERROR(read_pem_field(user_body, "client-certificate", base_dir, user_where,
                                              &config.client_cert_pem, &config.client_cert_file));
      MOESERVE_RETURN_IF_ERROR(read_pem_field(user_body, "client-key", base_dir, user_where,
                                              &config.client_key_pem, &config.client_key_file));
    }
  }
  std::string ns = scalar(ctx_body, "namespace");
  if (!ns.empty()) config.namespace_name = ns;
  return config;
}

}  // namespace

StatusOr<std::string> base64_decode(std::string_view text) {
  std::string out;
  uint32_t accumulator = 0;
  int bits = 0;
  size_t padding = 0;
  for (char c : text) {
    int value;
    if (c >= 'A' && c <= 'Z') {
      value = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      value = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      value = c - '0' + 52;
    } else if (c == '+') {
      value = 62;
    } else if (c == '/') {
      value = 63;
    } else if (c == '=') {
      ++padding;
      continue;
    } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      continue;
    } else {
      return invalid_argument_error("invalid base64 character");
    }
    if (padding > 0) return invalid_argument_error("invalid base64: data after padding");
    accumulator = (accumulator << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((accumulator >> bits) & 0xFF));
    }
  }
  if (bits >= 6) return invalid_argument_error("invalid base64: truncated input");
  return out;
}

StatusOr<Config> parse_kubeconfig(std::string_view yaml_text, const std::string& base_dir,
                                  const std::string& context) {
  try {
    YAML::Node root = YAML::Load(std::string(yaml_text));
    if (!root.IsMap()) return invalid_argument_error("kubeconfig: not a YAML mapping");
    return parse_kubeconfig_node(root, base_dir, context);
  } catch (const YAML::Exception& e) {
    return invalid_argument_error(std::string("kubeconfig: ") + e.what());
  }
}

StatusOr<Config> load_kubeconfig(const std::string& path, const std::string& context) {
  MOESERVE_ASSIGN_OR_RETURN(std::string text, read_text_file(path, "kubeconfig"));
  std::string base_dir = std::filesystem::path(path).parent_path().string();
  auto config = parse_kubeconfig(text, base_dir, context);
  if (!config.ok()) return config.status().with_context(path);
  return config;
}

StatusOr<Config> in_cluster_config(const std::string& root) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host || !port || !*port) {
    return failed_precondition_error(
        "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set");
  }
  std::string host_text = host;
  if (host_text.find(':') != std::string::npos) host_text = "[" + host_text + "]";  // IPv6
  Config config;
  config.server = "https://" + host_text + ":" + port;
  config.token_file = root + "/token";
  MOESERVE_RETURN_IF_ERROR(read_text_file(config.token_file, "service account token").status());
  config.ca_file = root + "/ca.crt";
  MOESERVE_RETURN_IF_ERROR(read_text_file(config.ca_file, "service account CA").status());
  auto ns = read_text_file(root + "/namespace", "service account namespace");
  if (ns.ok() && !trim(*ns).empty()) config.namespace_name = trim(*ns);
  return config;
}

StatusOr<Config> load_default_config(const std::string& kubeconfig_path) {
  if (!kubeconfig_path.empty()) return load_kubeconfig(kubeconfig_path);
  const char* service_host = std::getenv("KUBERNETES_SERVICE_HOST");
  if (service_host && *service_host) return in_cluster_config();
  const char* env_path = std::getenv("KUBECONFIG");
  if (env_path && *env_path) {
    std::string first = env_path;
    return load_kubeconfig(first.substr(0, first.find(':')));
  }
  const char* home = std::getenv("HOME");
  if (!home || !*home) {
    return failed_precondition_error(
        "no kubeconfig: not in a cluster, $KUBECONFIG and $HOME unset");
  }
  return load_kubeconfig(std::string(home) + "/.kube/config");
}

http::ClientOptions client_options(const Config& config) {
  http::ClientOptions options;
  options.ca_pem = config.ca_pem;
  options.ca_file = config.ca_file;
  options.insecure_skip_verify = config.insecure_skip_tls_verify;
  options.client_cert_pem = config.client_cert_pem;
  options.client_cert_file = config.client_cert_file;
  options.client_key_pem = config.client_key_pem;
  options.client_key_file = config.client_key_file;
  return options;
}

TokenSource::TokenSource(std::string token, std::string token_file, Clock clock)
    : token_(std::move(token)), token_file_(std::move(token_file)), clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return std::chrono::steady_clock::now(); };
}

StatusOr<std::string> TokenSource::token() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (token_file_.empty()) return token_;
  auto now = clock_();
  if (!loaded_ || refresh_now_ || now - loaded_at_ >= kRefreshInterval) {
    auto text = read_text_file(token_file_, "token file");
    if (!text.ok()) {
      if (!loaded_) return text.status();
      return token_;  // keep the last good token while the file is being replaced
    }
    token_ = trim(*text);
    loaded_ = true;
    refresh_now_ = false;
    loaded_at_ = now;
  }
  return token_;
}

void TokenSource::invalidate() {
  std::lock_guard<std::mutex> lock(mutex_);
  refresh_now_ = true;
}

}  // namespace moeserve::kube
