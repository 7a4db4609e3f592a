// moeserve-gateway: flags -> components. One OpenAI endpoint in front of the groups of
// every model it discovers (from the cluster's ModelDeployments with --kubeconfig or
// --in-cluster, or from --static-config), routing by model, load and cached prefix
// (operator/gateway/proxy.h).
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <vector>

#include "common/api_keys.h"
#include "common/cli.h"
#include "common/flags.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/signals.h"
#include "operator/gateway/kube_discovery.h"
#include "operator/gateway/proxy.h"
#include "operator/gateway/static_discovery.h"

namespace {

using namespace moeserve;

int serve(const std::vector<std::string>& args) {
  std::string static_config;
  std::string host = "127.0.0.1";
  int64_t port = 8080;
  std::string routing = "affinity";
  double load_factor = 1.25;
  int64_t slack_tokens = 512;
  std::string api_key_file;
  int64_t max_concurrent_per_key = 0;
  int64_t max_body_bytes = 8 << 20;
  double upstream_timeout_s = 300;
  double connect_timeout_s = 2;
  int64_t assumed_max_tokens = 512;
  int64_t upstream_idle_connections = 64;
  int64_t handler_threads = 256;
  int64_t io_threads = 2;
  int64_t probe_interval_ms = 1000;
  double grace_s = 10;
  gateway::KubeDiscoveryOptions kube;
  FlagSet flags(
      "moeserve-gateway (--in-cluster | --kubeconfig FILE | --static-config FILE) [flags]",
      "One OpenAI-compatible endpoint for the groups of every model it knows: routes\n"
      "by `model`, balances by outstanding tokens with prefix affinity, retries a\n"
      "failed group once, holds requests while a deployment wakes.");
  flags.add_string("static-config", &static_config,
                   "models and their groups' base URLs (YAML or JSON; see "
                   "operator/gateway/static_discovery.h)");
  gateway::add_kube_discovery_flags(&flags, &kube);
  flags.add_string("host", &host, "listen address (an IP)", "MOESERVE_HOST");
  flags.add_int("port", &port, "listen port (0: an ephemeral port)", "MOESERVE_PORT");
  flags.add_string("routing", &routing, "affinity | least-loaded | round-robin");
  flags.add_double("load-factor", &load_factor,
                   "affinity holds while a group's load <= factor x least load + slack");
  flags.add_int("slack-tokens", &slack_tokens, "the slack of that bound, in tokens");
  flags.add_string("api-key-file", &api_key_file,
                   "API keys clients must send (one per line), re-read when the file changes");
  flags.add_int("max-concurrent-per-key", &max_concurrent_per_key,
                "requests in flight per API key before 429 (0: no limit; needs --api-key-file)");
  flags.add_int("max-body-bytes", &max_body_bytes, "largest request body (413 beyond)");
  flags.add_double("upstream-timeout-seconds", &upstream_timeout_s,
                   "a group that sends nothing this long has failed");
  flags.add_double("upstream-connect-timeout-seconds", &connect_timeout_s,
                   "a group that does not accept a connection this fast has failed");
  flags.add_int("upstream-idle-connections", &upstream_idle_connections,
                "kept-alive connections per group for the next requests (0: a new connection "
                "per request)");
  flags.add_int("assumed-max-tokens", &assumed_max_tokens,
                "tokens a request without max_tokens counts as in the router's load");
  flags.add_int("handler-threads", &handler_threads,
                "requests handled at once (held and streaming ones included)");
  flags.add_int("io-threads", &io_threads, "socket I/O threads");
  flags.add_int("probe-interval-ms", &probe_interval_ms, "how often upstream /readyz is polled");
  flags.add_double("grace-seconds", &grace_s, "time in-flight requests get on shutdown");
  if (Status s = flags.parse(args); !s.ok()) {
    std::cerr << "moeserve-gateway: " << s.to_string() << "\n\n" << flags.help();
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  if (!flags.positional().empty()) {
    std::cerr << "moeserve-gateway: unexpected argument \"" << flags.positional()[0] << "\"\n";
    return 2;
  }
  auto refuse = [](const std::string& message) {
    std::cerr << "moeserve-gateway: " << message << "\n";
    return 2;
  };
  if (Status s = gateway::check_kube_discovery_flags(kube); !s.ok()) return refuse(s.message());
  const bool from_cluster = gateway::kube_discovery_selected(kube);
  if (from_cluster == !static_config.empty()) {
    return refuse(
        "give one source of models: --in-cluster, --kubeconfig FILE or --static-config FILE");
  }
  StatusOr<gateway::RoutingPolicy> policy = gateway::parse_routing_policy(routing);
  if (!policy.ok()) return refuse(policy.status().message());
  if (load_factor < 1) return refuse("--load-factor must be >= 1");
  if (slack_tokens < 0) return refuse("--slack-tokens must be >= 0");
  if (max_concurrent_per_key < 0) return refuse("--max-concurrent-per-key must be >= 0");
  if (max_concurrent_per_key > 0 && api_key_file.empty()) {
    return refuse("--max-concurrent-per-key limits per API key: it needs --api-key-file");
  }
  if (max_body_bytes < 1) return refuse("--max-body-bytes must be positive");
  if (upstream_timeout_s <= 0 || connect_timeout_s <= 0) {
    return refuse("--upstream-timeout-seconds and --upstream-connect-timeout-seconds must be > 0");
  }
  if (assumed_max_tokens < 1) return refuse("--assumed-max-tokens must be positive");
  if (upstream_idle_connections < 0) return refuse("--upstream-idle-connections must be >= 0");
  if (handler_threads < 1 || io_threads < 1) {
    return refuse("--handler-threads and --io-threads must be positive");
  }
  if (probe_interval_ms < 10) return refuse("--probe-interval-ms must be >= 10");
  if (port < 0 || port > 65535) return refuse("--port must be 0..65535");

  std::unique_ptr<gateway::StaticDiscovery> static_discovery;
  std::unique_ptr<gateway::Discovery> kube_discovery;
  if (from_cluster) {
    StatusOr<std::unique_ptr<gateway::Discovery>> made = gateway::make_kube_discovery(kube);
    if (!made.ok()) return refuse(made.status().message());
    kube_discovery = std::move(*made);  // started; stops in its destructor
  } else {
    StatusOr<gateway::Snapshot> models = gateway::load_static_config(static_config);
    if (!models.ok()) return refuse(models.status().message());
    static_discovery = std::make_unique<gateway::StaticDiscovery>(
        std::move(*models), std::chrono::milliseconds(probe_interval_ms));
    static_discovery->start();
  }
  gateway::Discovery* discovery = kube_discovery
                                      ? kube_discovery.get()
                                      : static_cast<gateway::Discovery*>(static_discovery.get());
  gateway::ProxyOptions options;
  options.router.policy = *policy;
  options.router.load_factor = load_factor;
  options.router.slack_tokens = slack_tokens;
  options.cost.assumed_max_tokens = assumed_max_tokens;
  options.max_concurrent_per_key = max_concurrent_per_key;
  options.upstream_timeout_ms = static_cast<int64_t>(upstream_timeout_s * 1000);
  options.upstream_connect_timeout_ms = static_cast<int64_t>(connect_timeout_s * 1000);
  options.upstream_idle_connections = static_cast<int>(upstream_idle_connections);
  if (!api_key_file.empty()) {
    StatusOr<std::unique_ptr<auth::ApiKeys>> keys = auth::ApiKeys::load(api_key_file);
    if (!keys.ok()) return refuse(keys.status().message());
    options.api_keys = std::move(*keys);
  }

  std::mutex mutex;
  std::condition_variable cv;
  bool stop = false;
  install_shutdown_signals([&](int signo) {
    log::info("shutdown signal received", {{"signal", signo}});
    std::lock_guard<std::mutex> lock(mutex);
    stop = true;
    cv.notify_all();
  });

  gateway::Proxy proxy(options, discovery);
  http::ServerOptions server_options;
  server_options.host = host;
  server_options.port = static_cast<uint16_t>(port);
  server_options.max_body_bytes = static_cast<size_t>(max_body_bytes);
  server_options.handler_threads = static_cast<int>(handler_threads);
  server_options.io_threads = static_cast<int>(io_threads);
  server_options.request_timeout_ms = 60000;
  server_options.error_response = gateway::Proxy::server_error_response;
  http::Server server(server_options);
  proxy.add_routes(server);
  http::add_health_routes(server, [] { return ok_status(); });
  if (Status s = server.start(); !s.ok()) {
    log::error("gateway: cannot listen", {{"error", s.to_string()}});
    return 1;
  }
  log::info("gateway: serving",
            {{"endpoint", "http://" + host + ":" + std::to_string(server.port()) + "/v1"},
             {"routing", routing},
             {"models_from", from_cluster ? "cluster" : static_config}});
  std::unique_lock<std::mutex> lock(mutex);
  cv.wait(lock, [&] { return stop; });
  lock.unlock();
  server.shutdown(static_cast<int64_t>(grace_s * 1000));
  if (static_discovery) static_discovery->stop();
  log::info("gateway: stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<Command> commands = {
      {"serve", "serve the OpenAI endpoint (the default)", serve},
  };
  return run_cli("moeserve-gateway",
                 "OpenAI-compatible gateway for moeserve ModelDeployments: routing by model, load "
                 "and cached prefix.",
                 commands, argc, argv, "serve");
}
