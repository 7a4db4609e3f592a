// bench-operator-scale: N ModelDeployments applied at once to the test API server, one
// moeserve-operator process reconciling them. Reports the time until every deployment
// has its groups and a status for its current generation, reconciles per second (from
// the operator's own /metrics), the operator's peak RSS, and, as the baseline measured
// in the same run, how long the API server takes for the same number of writes issued
// directly (the floor: the operator cannot converge faster than its writes land).
//
//   build/bin/bench-operator-scale [--deployments 1000] [--workers 4] [--operator PATH]
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "common/flags.h"
#include "common/http_client.h"
#include "common/log.h"
#include "common/yaml_json.h"
#include "operator/kube/client.h"
#include "operator/kube/transport.h"
#include "tests/support/apiserver.h"
#include "tests/support/test_util.h"

using namespace moeserve;
using Clock = std::chrono::steady_clock;
namespace res = kube::resources;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int64_t peak_rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// Sum of a counter family's samples in Prometheus text.
double sum_metric(const std::string& text, const std::string& name) {
  double total = 0;
  size_t pos = 0;
  while ((pos = text.find(name, pos)) != std::string::npos) {
    bool at_line_start = pos == 0 || text[pos - 1] == '\n';
    size_t end = text.find('\n', pos);
    std::string line = text.substr(pos, end - pos);
    pos = end == std::string::npos ? text.size() : end;
    if (!at_line_start || line.size() <= name.size()) continue;
    char next = line[name.size()];
    if (next != '{' && next != ' ') continue;
    total += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return total;
}

// Runs fn(i) for i in [0, n) on `threads` threads.
template <typename Fn>
void parallel(int n, int threads, Fn fn) {
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < n; i = next++) fn(i);
    });
  }
  for (auto& t : pool) t.join();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t deployments = 1000;
  int64_t workers = 4;
  std::string operator_path = "build/bin/moeserve-operator";
  std::string source = ".";
  FlagSet flags("bench-operator-scale [flags]", "Operator convergence at scale.");
  flags.add_int("deployments", &deployments, "ModelDeployments to apply");
  flags.add_int("workers", &workers, "operator --workers");
  flags.add_string("operator", &operator_path, "moeserve-operator binary");
  flags.add_string("source-dir", &source, "repository root (for deploy/)");
  if (Status s = flags.parse(std::vector<std::string>(argv + 1, argv + argc));
      !s.ok() || flags.help_requested()) {
    std::cerr << (s.ok() ? flags.help() : s.to_string() + "\n");
    return s.ok() ? 0 : 2;
  }
  log::configure(log::Level::kWarn, log::Format::kJson);

  testing::ApiServerOptions api_options;
  api_options.history_limit = static_cast<size_t>(deployments) * 40;
  testing::ApiServer api(api_options);
  if (!api.start().ok()) return 1;
  kube::Config config;
  config.server = api.url();
  auto transport = std::make_shared<kube::HttpTransport>(config);
  if (!transport->init().ok()) return 1;
  kube::Client client(transport, api.url(), "default");
  auto crd = load_yaml_documents(source + "/deploy/crds/modeldeployments.moeserve.io.yaml");
  auto example = load_yaml_documents(source + "/deploy/examples/tiny-cpu.yaml");
  if (!crd.ok() || !example.ok()) {
    std::cerr << "run from the repository root or pass --source-dir\n";
    return 1;
  }
  if (auto created = client.create(res::kCustomResourceDefinitions, "", (*crd)[0]); !created.ok()) {
    std::cerr << "creating the CRD: " << created.status().to_string() << "\n";
    return 1;
  }
  nlohmann::json base = (*example)[0];
  base["spec"]["autoscaling"]["enabled"] = false;
  base["spec"]["replicas"] = 1;
  const int n = static_cast<int>(deployments);
  // A lost write would skew the baseline or leave a deployment that never converges.
  std::atomic<int> failed_writes{0};

  // Baseline: the writes one converged deployment costs (5 objects + status), issued
  // directly against the same server, for as many deployments.
  std::fprintf(stderr, "baseline: %d x 6 direct writes...\n", n);
  auto baseline_start = Clock::now();
  parallel(n, static_cast<int>(workers), [&](int i) {
    std::string name = "baseline-" + std::to_string(i);
    for (const char* kind : {"a", "b", "c", "d", "e", "f"}) {
      auto created = client.create(res::kConfigMaps, "default",
                                   {{"apiVersion", "v1"},
                                    {"kind", "ConfigMap"},
                                    {"metadata", {{"name", name + "-" + kind}}},
                                    {"data", {{"k", "v"}}}});
      if (!created.ok()) ++failed_writes;
    }
  });
  double baseline_s = seconds_since(baseline_start);

  testing::TempDir dir;
  testing::write_file(dir.file("kubeconfig"), api.kubeconfig());
  uint16_t metrics_port = testing::free_port();
  testing::Process op({operator_path, "--kubeconfig", dir.file("kubeconfig"), "--workers",
                       std::to_string(workers), "--metrics-host", "127.0.0.1", "--metrics-port",
                       std::to_string(metrics_port), "--log-level", "warn"},
                      dir.file("operator.log"));

  std::fprintf(stderr, "applying %d ModelDeployments...\n", n);
  auto start = Clock::now();
  parallel(n, 8, [&](int i) {
    nlohmann::json md = base;
    md["metadata"]["name"] = "md-" + std::to_string(i);
    if (!client.create(res::kModelDeployments, "default", md).ok()) ++failed_writes;
  });
  double apply_s = seconds_since(start);
  if (failed_writes > 0) {
    std::cerr << failed_writes << " creates failed; the figures would be wrong\n";
    return 1;
  }

  int converged = 0;
  while (seconds_since(start) < 600) {
    auto mds = client.list_all(res::kModelDeployments, "default");
    auto sets = client.list_all(res::kStatefulSets, "default");
    if (mds.ok() && sets.ok()) {
      converged = 0;
      for (const auto& md : mds->items) {
        if (md.contains("status") &&
            md["status"].value("observedGeneration", 0) == md["metadata"].value("generation", -1)) {
          ++converged;
        }
      }
      std::fprintf(stderr, "  %.1f s: %d/%d with status, %zu groups\n", seconds_since(start),
                   converged, n, sets->items.size());
      if (converged == n && static_cast<int>(sets->items.size()) >= n) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  double converge_s = seconds_since(start);
  http::Client http;
  auto metrics =
      http.send({"GET", "http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics", {}, ""});
  double reconciles =
      metrics.ok() ? sum_metric(metrics->body, "moeserve_operator_reconcile_total") : 0;
  int64_t rss = peak_rss_kib(op.pid());
  op.signal(SIGTERM);
  op.wait(std::chrono::seconds(20));

  std::printf("deployments            %d (converged %d)\n", n, converged);
  std::printf("apply (8 clients)      %.2f s\n", apply_s);
  std::printf("steady state after     %.2f s\n", converge_s);
  std::printf("reconciles             %.0f (%.1f /s)\n", reconciles, reconciles / converge_s);
  std::printf("operator peak RSS      %.1f MiB\n", static_cast<double>(rss) / 1024.0);
  std::printf("baseline: %d x 6 direct writes in %.2f s\n", n, baseline_s);
  std::printf("ratio converge / direct-write floor: %.2f\n", converge_s / baseline_s);
  return converged == n ? 0 : 1;
}
