#include "operator/local/run_local.h"

#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <mutex>

#include "common/api_keys.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/process.h"
#include "common/signals.h"
#include "common/yaml_json.h"
#include "operator/deployment/parse.h"
#include "operator/deployment/plan.h"
#include "operator/gateway/router.h"
#include "operator/local/local_runner.h"
#include "operator/local/port_check.h"

namespace moeserve::local {

int run_local(const std::vector<std::string>& args) {
  std::string file;
  std::string model;
  std::string host = "127.0.0.1";
  int64_t port = 8000;
  int64_t base_port = 8100;
  int64_t replicas = -1;
  int64_t threads = 1;
  std::string worker = executable_dir() + "/moeserve-worker";
  std::string logs_dir;
  std::string api_key_file;
  double grace_s = 10;
  std::string routing = "affinity";
  FlagSet flags("moeserve-operator local -f FILE [--model DIR] [flags]",
                "Runs a ModelDeployment on this machine: each group's ranks as local\n"
                "moeserve-worker processes, supervised (a lost rank restarts its group), behind\n"
                "the gateway: one OpenAI endpoint routing over ready groups by load and prefix,\n"
                "holding requests while a group starts (and, with scale to zero, waking one).");
  flags.add_string("file", &file,
                   "ModelDeployment YAML, also -f (e.g. deploy/examples/tiny-cpu.yaml)");
  flags.add_string("model", &model, "model folder (default: spec.model.source)");
  flags.add_string("host", &host, "address of the endpoint and the workers");
  flags.add_int("port", &port, "OpenAI endpoint port");
  flags.add_int("base-port", &base_port, "first worker port");
  flags.add_int("replicas", &replicas, "groups to run (default: spec.replicas)");
  flags.add_int("threads-per-rank", &threads, "compute threads per worker");
  flags.add_string("worker", &worker, "moeserve-worker binary");
  flags.add_string("logs-dir", &logs_dir, "worker logs folder (default: inherit stderr)");
  flags.add_string("api-key-file", &api_key_file,
                   "API keys (one per line) rank 0 of every group requires, re-read when the "
                   "file changes; the local stand-in for spec.auth's Secret");
  flags.add_double("grace-seconds", &grace_s, "time workers get to finish on shutdown");
  flags.add_string("routing", &routing,
                   "the gateway's routing: affinity | least-loaded | round-robin");
  std::vector<std::string> normalized = args;
  for (auto& a : normalized) {
    if (a == "-f") a = "--file";  // kubectl's spelling
  }
  if (Status s = flags.parse(normalized); !s.ok()) {
    std::cerr << "moeserve-operator local: " << s.to_string() << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  if (file.empty()) {
    std::cerr << "moeserve-operator local: -f FILE is required\n";
    return 2;
  }
  auto docs = load_yaml_documents(file);
  if (!docs.ok() || docs->size() != 1) {
    std::cerr << "moeserve-operator local: " << file << ": "
              << (docs.ok() ? "expected one ModelDeployment" : docs.status().to_string()) << "\n";
    return 2;
  }
  nlohmann::json object = (*docs)[0];
  if (object.value("kind", "") != "ModelDeployment") {
    std::cerr << "moeserve-operator local: " << file << ": kind is \"" << object.value("kind", "")
              << "\", expected ModelDeployment\n";
    return 2;
  }
  if (!object["metadata"].contains("namespace")) object["metadata"]["namespace"] = "local";
  deployment::ModelDeployment md = deployment::parse_model_deployment(object);
  if (!md.valid()) {
    std::cerr << "moeserve-operator local: " << file << " is invalid:\n";
    for (const auto& e : md.errors) std::cerr << "  " << e.path << ": " << e.message << "\n";
    return 2;
  }
  if (md.spec.engine.kind != deployment::EngineKind::kMoeserve) {
    std::cerr << "moeserve-operator local: spec.engine.kind is \""
              << deployment::engine_name(md.spec.engine.kind)
              << "\": local mode runs moeserve's own worker only (vLLM and SGLang need "
                 "GPUs; deploy with the operator on a cluster)\n";
    return 2;
  }
  if (!model.empty() && !std::filesystem::exists(model + "/config.json")) {
    std::cerr << "moeserve-operator local: --model " << model << ": no config.json there\n";
    return 2;
  }
  if (md.spec.auth.enabled() && api_key_file.empty()) {
    std::cerr << "moeserve-operator local: spec.auth.secretName names Secret \""
              << md.spec.auth.secret_name
              << "\", which local mode cannot read: pass --api-key-file FILE (one key per line)\n";
    return 2;
  }
  if (!api_key_file.empty() && !std::filesystem::is_regular_file(api_key_file)) {
    std::cerr << "moeserve-operator local: --api-key-file " << api_key_file << ": no such file\n";
    return 2;
  }
  StatusOr<gateway::RoutingPolicy> policy = gateway::parse_routing_policy(routing);
  if (!policy.ok()) {
    std::cerr << "moeserve-operator local: " << policy.status().message() << "\n";
    return 2;
  }
  int32_t groups = replicas >= 0 ? static_cast<int32_t>(replicas)
                                 : deployment::desired_replicas(md.spec, std::nullopt);
  const std::optional<int32_t> idle_s = md.spec.autoscaling.scale_to_zero_after_idle_seconds;
  // At zero groups with scale to zero, one group is planned and starts on demand.
  const bool start_at_zero = groups == 0 && idle_s.has_value();
  if (start_at_zero) groups = 1;
  if (port < 0 || port > 65535) {
    std::cerr << "moeserve-operator local: --port " << port << " is not a port (0-65535)\n";
    return 2;
  }
  const int64_t last_port = base_port + static_cast<int64_t>(groups) * port_stride(md) - 1;
  if (base_port < 1 || last_port > 65535) {
    std::cerr << "moeserve-operator local: --base-port " << base_port << " with " << groups
              << " group(s) of " << port_stride(md) << " ports each needs ports " << base_port
              << "-" << last_port << ", outside 1-65535: pick a --base-port that fits\n";
    return 2;
  }
  LocalOptions options;
  options.model_dir = model;
  options.worker_binary = worker;
  options.host = host;
  options.base_port = static_cast<uint16_t>(base_port);
  options.threads_per_rank = threads;
  if (!api_key_file.empty()) options.api_key_file = std::filesystem::absolute(api_key_file);

  std::mutex mutex;
  std::condition_variable cv;
  bool stop = false;
  install_shutdown_signals([&](int signo) {
    log::info("shutdown signal received", {{"signal", signo}});
    std::lock_guard<std::mutex> lock(mutex);
    stop = true;
    cv.notify_all();
  });

  PosixLauncher launcher;
  RunnerOptions runner_options;
  runner_options.front_host = host;
  runner_options.front_port = static_cast<uint16_t>(port);
  runner_options.logs_dir = logs_dir;
  runner_options.grace = std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000));
  runner_options.served_model = deployment::served_model_name(md.spec.model);
  runner_options.queue_size = md.spec.gateway.queue_size;
  runner_options.queue_timeout_seconds = md.spec.gateway.queue_timeout_seconds;
  runner_options.proxy.router.policy = *policy;
  if (idle_s) runner_options.scale_to_zero_after_idle = std::chrono::seconds(*idle_s);
  runner_options.start_at_zero = start_at_zero;
  if (!api_key_file.empty()) {
    StatusOr<std::unique_ptr<auth::ApiKeys>> keys = auth::ApiKeys::load(api_key_file);
    if (!keys.ok()) {
      std::cerr << "moeserve-operator local: " << keys.status().message() << "\n";
      return 2;
    }
    runner_options.proxy.api_keys = std::move(*keys);
  }
  runner_options.worker_host = host;
  std::vector<GroupProcesses> processes = local_processes(md, groups, options);
  // Every port is checked before anything starts, so that a port another process holds
  // is refused by name rather than mistaken for one of our groups.
  const std::vector<PlannedPort> ports = planned_ports(processes, static_cast<uint16_t>(port));
  Status ports_ok = check_distinct_ports(ports);
  if (ports_ok.ok()) ports_ok = check_ports_free(host, ports);
  if (!ports_ok.ok()) {
    std::cerr << "moeserve-operator local: " << ports_ok.message() << "\n";
    return ports_ok.code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  LocalRunner runner(std::move(processes), md.metadata.name, runner_options, &launcher);
  if (Status s = runner.start(); !s.ok()) {
    log::error("local: cannot start", {{"error", s.to_string()}});
    return 1;
  }
  log::info("local: serving",
            {{"deployment", md.metadata.name},
             {"groups", start_at_zero ? 0 : groups},
             {"routing", routing},
             {"endpoint", "http://" + host + ":" + std::to_string(runner.front_port()) + "/v1"}});
  std::unique_lock<std::mutex> lock(mutex);
  cv.wait(lock, [&] { return stop; });
  lock.unlock();
  runner.stop();
  return 0;
}

}  // namespace moeserve::local
