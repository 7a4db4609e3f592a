#include "operator/controller/run_operator.h"

#include <atomic>
#include <condition_variable>
#include <iostream>
#include <mutex>

#include "common/flags.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/signals.h"
#include "operator/autoscaler/prometheus_source.h"
#include "operator/autoscaler/scrape_source.h"
#include "operator/controller/controller.h"
#include "operator/controller/events.h"
#include "operator/controller/leader_election.h"
#include "operator/controller/reconciler.h"

namespace moeserve::controller {
namespace {

struct OperatorFlags {
  std::string kubeconfig;
  std::string ns;
  bool leader_elect = false;
  std::string leader_election_namespace;
  std::string operator_namespace;
  std::string gateway_namespace;
  int64_t gateway_waiting_max_age_seconds = 60;
  std::string leader_election_id = "moeserve-operator";
  int64_t lease_duration_ms = 15000;
  int64_t renew_deadline_ms = 10000;
  int64_t retry_period_ms = 2000;
  std::string metrics_host = "0.0.0.0";
  int64_t metrics_port = 8080;
  int64_t workers = 4;
  int64_t resync_seconds = 600;
  // The API server sends a bookmark about once a minute on an otherwise quiet watch.
  int64_t watch_read_timeout_seconds = 150;
  std::string prometheus_url;
  int64_t autoscaler_interval_seconds = 15;
  int64_t autoscaler_threads = 4;
  int64_t rate_window_seconds = 60;
  int64_t expert_load_window_seconds = 600;
  int64_t scrape_timeout_ms = 2000;
  double max_waiting_per_group = 16;
  double placement_min_improvement = 0.05;
};

// Set by the signal thread; main waits on it.
struct StopSignal {
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::condition_variable cv;
  void raise() {
    std::lock_guard<std::mutex> lock(mutex);
    stop = true;
    cv.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex);
    cv.wait(lock, [this] { return stop.load(); });
  }
};

}  // namespace

int run_operator(const std::vector<std::string>& args) {
  OperatorFlags f;
  FlagSet flags(
      "moeserve-operator [flags]",
      "Reconciles ModelDeployment resources (moeserve.io/v1alpha1) into groups of worker\n"
      "pods. Uses the in-cluster service account unless --kubeconfig is given (then\n"
      "$KUBECONFIG, then ~/.kube/config).");
  flags.add_string("kubeconfig", &f.kubeconfig, "kubeconfig file", "KUBECONFIG_PATH");
  flags.add_string("namespace", &f.ns, "watch only this namespace (default: all)",
                   "MOESERVE_WATCH_NAMESPACE");
  flags.add_bool("leader-elect", &f.leader_elect, "take a Lease before reconciling (HA)");
  flags.add_string("leader-election-namespace", &f.leader_election_namespace,
                   "namespace of the Lease (default: the configuration's namespace)",
                   "POD_NAMESPACE");
  flags.add_string("operator-namespace", &f.operator_namespace,
                   "this operator's namespace: its pods (app.kubernetes.io/component=operator) "
                   "may scrape the workers' metrics port through their NetworkPolicy",
                   "POD_NAMESPACE");
  flags.add_string("gateway-namespace", &f.gateway_namespace,
                   "moeserve-gateway's namespace: its pods (app.kubernetes.io/component=gateway) "
                   "may reach the workers' API port through their NetworkPolicy (\"\": none)",
                   "MOESERVE_GATEWAY_NAMESPACE");
  flags.add_int("gateway-waiting-max-age-seconds", &f.gateway_waiting_max_age_seconds,
                "ignore gateway waiting annotations older than this (a gateway refreshes its "
                "entry while requests wait)");
  flags.add_string("leader-election-id", &f.leader_election_id, "name of the Lease");
  flags.add_int("lease-duration-ms", &f.lease_duration_ms, "Lease duration");
  flags.add_int("renew-deadline-ms", &f.renew_deadline_ms,
                "give up leadership after failing to renew for this long");
  flags.add_int("retry-period-ms", &f.retry_period_ms, "Lease acquire/renew interval");
  flags.add_string("metrics-host", &f.metrics_host, "address of /metrics, /healthz, /readyz");
  flags.add_int("metrics-port", &f.metrics_port, "port of /metrics, /healthz, /readyz");
  flags.add_int("workers", &f.workers, "concurrent reconciles");
  flags.add_int("resync-seconds", &f.resync_seconds,
                "reconcile every deployment at least this often");
  flags.add_int("watch-read-timeout-seconds", &f.watch_read_timeout_seconds,
                "re-open a watch that delivered nothing (not even a bookmark) for this long; "
                "a stalled connection otherwise holds changes back until the watch's own "
                "timeout (5-10 min); 0: that timeout + 30 s");
  flags.add_string("prometheus-url", &f.prometheus_url,
                   "measure through this Prometheus server's HTTP API instead of scraping "
                   "each group's rank-0 worker /metrics");
  flags.add_int("autoscaler-interval-seconds", &f.autoscaler_interval_seconds,
                "measure every deployment this often");
  flags.add_int("autoscaler-threads", &f.autoscaler_threads, "concurrent measurements");
  flags.add_int("rate-window-seconds", &f.rate_window_seconds, "window of tokens/s and TTFT p95");
  flags.add_int("expert-load-window-seconds", &f.expert_load_window_seconds,
                "window of the expert loads the placement planner uses");
  flags.add_int("scrape-timeout-ms", &f.scrape_timeout_ms, "timeout of one request");
  flags.add_double("max-waiting-per-group", &f.max_waiting_per_group,
                   "queued requests per ready group above which a group is added");
  flags.add_double("placement-min-improvement", &f.placement_min_improvement,
                   "balancedness gain (0..1) a new expert placement must bring to be adopted");
  if (Status s = flags.parse(args); !s.ok()) {
    std::cerr << "moeserve-operator: " << s.to_string() << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  if (f.watch_read_timeout_seconds < 0) {
    std::cerr << "moeserve-operator: --watch-read-timeout-seconds must not be negative\n";
    return 2;
  }

  StopSignal stop;
  install_shutdown_signals([&stop](int signo) {
    log::info("shutdown signal received", {{"signal", signo}});
    stop.raise();
  });

  auto config = kube::load_default_config(f.kubeconfig);
  if (!config.ok()) {
    log::error("cannot configure the Kubernetes client", {{"error", config.status().to_string()}});
    return 1;
  }
  auto client = kube::Client::create_for(*config);
  if (!client.ok()) {
    log::error("cannot create the Kubernetes client", {{"error", client.status().to_string()}});
    return 1;
  }
  log::info("operator starting", {{"server", config->server},
                                  {"namespace", f.ns.empty() ? "(all)" : f.ns},
                                  {"leader_elect", f.leader_elect},
                                  {"version", MOESERVE_VERSION}});

  auto registry = std::make_shared<prometheus::Registry>();
  http::ServerOptions server_options;
  server_options.host = f.metrics_host;
  server_options.port = static_cast<uint16_t>(f.metrics_port);
  server_options.handler_threads = 2;
  http::Server server(server_options);
  std::atomic<bool> lost_leadership{false};
  http::add_health_routes(server, [&]() -> Status {
    if (lost_leadership) return unavailable_error("lost leadership");
    return ok_status();
  });
  metrics::add_metrics_route(server, {registry});
  if (Status s = server.start(); !s.ok()) {
    log::error("cannot start the metrics server", {{"error", s.to_string()}});
    return 1;
  }

  ControllerOptions options;
  options.ns = f.ns;
  options.workers = static_cast<int>(std::max<int64_t>(1, f.workers));
  options.resync_period = std::chrono::seconds(std::max<int64_t>(1, f.resync_seconds));
  options.reflector_options.watch_read_timeout_ms = f.watch_read_timeout_seconds * 1000;
  // Pods: not owned by the ModelDeployment (their events requeue nothing); read for the
  // rank-0 addresses the autoscaler scrapes and for restart counts.
  Controller controller(**client, kube::resources::kModelDeployments,
                        {kube::resources::kStatefulSets, kube::resources::kServices,
                         kube::resources::kConfigMaps, kube::resources::kPodDisruptionBudgets,
                         kube::resources::kNetworkPolicies, kube::resources::kPods},
                        options, registry);
  EventRecorder events(**client, "moeserve-operator");
  auto http_client = std::make_shared<http::Client>();
  std::unique_ptr<autoscaler::MetricSource> source;
  if (f.prometheus_url.empty()) {
    autoscaler::ScrapeOptions scrape;
    scrape.rate_window = std::chrono::seconds(f.rate_window_seconds);
    scrape.load_window = std::chrono::seconds(f.expert_load_window_seconds);
    scrape.timeout_ms = f.scrape_timeout_ms;
    source = std::make_unique<autoscaler::ScrapeSource>(http_client, scrape);
  } else {
    autoscaler::PrometheusOptions prometheus;
    prometheus.url = f.prometheus_url;
    prometheus.rate_window_seconds = f.rate_window_seconds;
    prometheus.load_window_seconds = f.expert_load_window_seconds;
    prometheus.timeout_ms = f.scrape_timeout_ms;
    source = std::make_unique<autoscaler::PrometheusSource>(http_client, prometheus);
  }
  autoscaler::Autoscaler scaler(
      source.get(), RealClock::instance(),
      {std::chrono::seconds(std::max<int64_t>(1, f.autoscaler_interval_seconds)),
       static_cast<int>(std::max<int64_t>(1, f.autoscaler_threads))});
  scaler.set_on_change([&controller](const std::string& key) { controller.enqueue(key); });
  autoscaler::DeploymentGauges gauges(*registry);
  AutoscalingHooks hooks{
      &scaler, &gauges, {f.placement_min_improvement, 1000}, f.max_waiting_per_group};
  hooks.operator_namespace = f.operator_namespace;
  hooks.gateway_namespace = f.gateway_namespace;
  hooks.gateway_waiting_max_age =
      std::chrono::seconds(std::max<int64_t>(1, f.gateway_waiting_max_age_seconds));
  ModelDeploymentReconciler reconciler(**client, controller, &events, RealClock::instance(), hooks);
  controller.set_reconciler(&reconciler);
  scaler.start();

  int exit_code = 0;
  if (f.leader_elect) {
    LeaderElectionConfig le;
    le.lease_namespace =
        f.leader_election_namespace.empty() ? config->namespace_name : f.leader_election_namespace;
    le.lease_name = f.leader_election_id;
    le.identity = make_identity();
    le.lease_duration = std::chrono::milliseconds(f.lease_duration_ms);
    le.renew_deadline = std::chrono::milliseconds(f.renew_deadline_ms);
    le.retry_period = std::chrono::milliseconds(f.retry_period_ms);
    LeaderElector elector(**client, le);
    if (elector.acquire(stop.stop)) {
      controller.start();
      if (!elector.hold(stop.stop)) {
        lost_leadership = true;
        exit_code = 1;  // a new process starts as a candidate; never reconcile unelected
      }
    }
  } else {
    controller.start();
    stop.wait();
  }
  scaler.stop();
  controller.stop();
  server.shutdown(2000);
  log::info("operator stopped", {{"exit_code", exit_code}});
  return exit_code;
}

}  // namespace moeserve::controller
