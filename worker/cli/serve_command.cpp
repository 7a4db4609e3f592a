#include "worker/cli/serve_command.h"

#include <signal.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>

#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "worker/cli/allocator.h"
#include "worker/cli/serve_options.h"
#include "worker/engine/engine.h"
#include "worker/engine/group_step.h"
#include "worker/engine/placement_switch.h"
#include "worker/engine/placement_watch.h"
#include "worker/engine/scheduler.h"
#include "worker/server/control_service.h"
#include "worker/server/openai_server.h"
#include "worker/server/placement_metrics.h"
#include "worker/server/worker_metrics.h"

namespace moeserve::cli {
namespace {

using server::ControlContext;
using server::ControlServer;
using server::WorkerInfo;
using server::WorkerMetrics;

// How often rank 0 re-stats the placement file for a new version.
constexpr std::chrono::milliseconds kPlacementWatchInterval{1000};

StatusOr<std::shared_ptr<auth::ApiKeys>> load_api_keys(const std::string& path) {
  if (path.empty()) return std::shared_ptr<auth::ApiKeys>();
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<auth::ApiKeys> keys, auth::ApiKeys::load(path));
  return std::shared_ptr<auth::ApiKeys>(std::move(keys));
}

std::string default_model_name(const std::string& dir) {
  std::filesystem::path p = std::filesystem::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

// Blocks SIGTERM and SIGINT in this thread and every thread it starts afterwards, so
// that wait_for_signal() receives them.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// Waits for SIGTERM/SIGINT (returns its number) or for the scheduler's group to fail
// (returns 0).
int wait_for_stop(const sigset_t& signals, const engine::Scheduler& scheduler) {
  for (;;) {
    timespec tick{0, 100 * 1000 * 1000};
    const int signal_number = sigtimedwait(&signals, nullptr, &tick);
    if (signal_number > 0) return signal_number;
    if (!scheduler.failure().ok()) return 0;
  }
}

http::ServerOptions health_server_options(const ServeFlags& f, int64_t handler_threads) {
  http::ServerOptions ho;
  ho.host = f.host;
  ho.port = static_cast<uint16_t>(f.port);
  ho.max_body_bytes = static_cast<size_t>(f.max_body_bytes);
  ho.handler_threads = static_cast<int>(handler_threads);
  ho.error_response = server::server_error_response;
  return ho;
}

// The API port while the model loads: bound before anything slow, so a port clash
// fails the start at once, and answering, so probes and clients learn why the worker
// is not ready. /healthz is 200; /readyz and every other path are 503 "loading" with the
// share of the weights read so far (and Retry-After). Shut it down just before the
// serving listener binds the same port.
StatusOr<std::unique_ptr<http::Server>> start_loading_server(
    const ServeFlags& f, std::shared_ptr<const std::atomic<double>> progress) {
  auto server = std::make_unique<http::Server>(health_server_options(f, 2));
  auto loading = [progress] {
    return "loading the model: " + std::to_string(static_cast<int>(progress->load() * 100)) +
           "% of the weights read";
  };
  server->route("GET", "/healthz", http::SimpleHandler([](const http::Request&) {
                  return http::text_response(200, "ok\n");
                }));
  server->route("GET", "/readyz", http::SimpleHandler([loading](const http::Request&) {
                  return http::text_response(503, loading() + "\n");
                }));
  server->route_prefix("*", "/", [loading](const http::Request&, http::Responder& out) {
    http::Response r = server::server_error_response(503, loading());
    r.headers.emplace_back("Retry-After", "5");
    out.send(std::move(r));
  });
  MOESERVE_RETURN_IF_ERROR(server->start());
  log::info("loading; the API port answers 503 until the model is ready",
            {{"port", static_cast<int64_t>(server->port())}});
  return server;
}

// The serving listener's options: the loading server's port (the same one, also when
// --port 0 picked it), which is released first.
http::ServerOptions take_over_port(const ServeFlags& f, std::unique_ptr<http::Server>& loading,
                                   int64_t handler_threads) {
  http::ServerOptions o = health_server_options(f, handler_threads);
  if (loading) {
    o.port = loading->port();
    loading->shutdown(0);
    loading.reset();
  }
  return o;
}

// GET /metrics: refresh() (when set), then the registry in Prometheus' text format.
void add_metrics_route(http::Server& server, std::function<void()> refresh,
                       std::shared_ptr<prometheus::Registry> registry) {
  server.route("GET", "/metrics", http::SimpleHandler([refresh, registry](const http::Request&) {
                 if (refresh) refresh();
                 http::Response r = http::text_response(200, metrics::serialize({registry}));
                 r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                 return r;
               }));
}

// /metrics on its own listener (returned, started) with --metrics-port, else on `main`
// (null returned).
StatusOr<std::unique_ptr<http::Server>> serve_metrics(
    const ServeFlags& f, http::Server& main, std::function<void()> refresh,
    std::shared_ptr<prometheus::Registry> registry) {
  if (f.metrics_port < 0) {
    add_metrics_route(main, std::move(refresh), std::move(registry));
    return std::unique_ptr<http::Server>();
  }
  http::ServerOptions mo;
  mo.host = f.metrics_host;
  mo.port = static_cast<uint16_t>(f.metrics_port);
  mo.handler_threads = 2;
  auto server = std::make_unique<http::Server>(mo);
  add_metrics_route(*server, std::move(refresh), std::move(registry));
  MOESERVE_RETURN_IF_ERROR(server->start());
  return server;
}

// Ranks > 0: lend this rank's experts to rank 0's steps until rank 0 stops the group
// (ok) or a collective fails (the error names the lost rank). Serves /healthz, /readyz
// and /metrics meanwhile. SIGTERM stays pending on purpose: rank 0 decides when the
// group ends, after finishing its requests in flight.
Status follow(const ServeFlags& f, parallel::Group& group,
              engine::ExpertParallelDispatcher& dispatcher, engine::PlacementSwitch& placement,
              const WorkerInfo& info, std::unique_ptr<http::Server> loading) {
  auto registry = std::make_shared<prometheus::Registry>();
  server::add_worker_info(*registry, info);
  std::atomic<bool> failed{false};
  http::Server server(take_over_port(f, loading, 4));
  http::add_health_routes(server, [&]() -> Status {
    return failed.load() ? unavailable_error("the expert-parallel group failed") : ok_status();
  });
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<http::Server> metrics_server,
                            serve_metrics(f, server, nullptr, registry));
  MOESERVE_RETURN_IF_ERROR(server.start());
  log::info("following rank 0", {{"rank", group.rank()},
                                 {"world_size", group.size()},
                                 {"port", static_cast<int64_t>(server.port())},
                                 {"deployment", f.deployment}});
  Status status = engine::follow_leader(group.comm(), dispatcher, &placement);
  if (!status.ok()) {
    failed.store(true);
    log::error("expert-parallel group failed: exiting so the group restarts",
               {{"rank", group.rank()}, {"error", status.to_string()}});
  } else {
    log::info("rank 0 stopped the group", {{"rank", group.rank()}});
  }
  server.shutdown(0);
  if (metrics_server) metrics_server->shutdown(0);
  return status;
}

Status serve(const ServeFlags& f) {
  const bool fixed_mmap_threshold = configure_allocator_for_serving();
  const sigset_t signals = block_stop_signals();
  MOESERVE_ASSIGN_OR_RETURN(std::shared_ptr<auth::ApiKeys> api_keys, load_api_keys(f.api_key_file));
  auto progress = std::make_shared<std::atomic<double>>(0.0);
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<http::Server> loading,
                            start_loading_server(f, progress));
  MOESERVE_ASSIGN_OR_RETURN(
      RankStart start, join_and_load(f.group, f.model, needs_mtp_layers(f.speculative),
                                     [progress](double fraction) { progress->store(fraction); }));
  std::unique_ptr<parallel::Group>& group = start.group;
  const model::ModelConfig& config = start.model->config;
  MOESERVE_RETURN_IF_ERROR(check_precision(f.precision, config));

  engine::EngineOptions eo;
  eo.threads = static_cast<int>(f.threads);
  eo.kv_cache_tokens = f.kv_cache_blocks * engine::kBlockSize;
  eo.record_routing = true;
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                            engine::Engine::create(start.model, eo));
  WorkerInfo info;
  info.model = f.served_model_name.empty() ? default_model_name(f.model) : f.served_model_name;
  info.deployment = f.deployment;
  info.precision = checkpoint_precision(config);
  info.rank = group ? group->rank() : 0;
  info.world_size = group ? group->size() : 1;
  engine::SchedulerOptions so;
  so.max_num_seqs = f.max_num_seqs;
  so.max_num_batched_tokens = f.max_num_batched_tokens;
  so.max_queue = f.max_queue;
  std::optional<engine::LeaderStepper> leader;
  engine::ExpertParallelDispatcher* dispatcher = nullptr;
  std::optional<engine::PlacementSwitch> placement;
  std::optional<engine::PlacementFileWatch> placement_watch;
  if (group) {
    MOESERVE_ASSIGN_OR_RETURN(
        dispatcher, engine::attach_expert_parallel(*engine, group->comm(), *start.placement));
    placement.emplace(group->comm(), *dispatcher);
    if (group->rank() != 0) {
      return follow(f, *group, *dispatcher, *placement, info, std::move(loading));
    }
    leader.emplace(group->comm());
    if (!f.group.placement.empty()) {
      // A new version of the file (the kubelet updates a ConfigMap volume in place) is
      // switched to live.
      placement_watch.emplace(f.group.placement, kPlacementWatchInterval);
      leader->enable_live_placement(&*placement, [&] { return placement_watch->changed(); });
    } else {
      leader->enable_live_placement(&*placement, {});
    }
    engine::install_leader_hooks(*leader, f.group.collective_timeout_ms, so);
  }
  MOESERVE_RETURN_IF_ERROR(
      configure_speculation(f.speculative, *engine, &so, engine::leader_draft_hook(leader)));
  MOESERVE_ASSIGN_OR_RETURN(server::PromptContext prompt,
                            server::load_prompt_context(f.model, config));
  engine::Scheduler scheduler(std::move(engine), so);

  server::ApiOptions api;
  api.served_model_name = info.model;
  api.api_keys = api_keys;
  api.max_model_len = std::min(config.max_position_embeddings, scheduler.kv_capacity_tokens());
  if (f.max_model_len > 0) api.max_model_len = std::min(api.max_model_len, f.max_model_len);
  MOESERVE_ASSIGN_OR_RETURN(api.reasoning, server::parse_reasoning_mode(f.reasoning_parser));

  WorkerMetrics metrics(info, scheduler);
  std::optional<server::PlacementMetrics> placement_metrics;
  if (placement) placement_metrics.emplace(*metrics.registry(), info, *dispatcher, *placement);
  server::OpenAiApi openai(api, std::move(prompt), scheduler, metrics);

  std::atomic<bool> draining{false};
  auto ready = [&]() -> Status {
    if (Status failed = scheduler.failure(); !failed.ok()) return failed;
    return draining.load() ? unavailable_error("draining") : ok_status();
  };
  auto drain = [&] {
    draining.store(true);
    scheduler.drain();
  };

  // Every running or queued request holds a handler thread while it streams.
  http::Server server(take_over_port(f, loading, f.max_num_seqs + f.max_queue + 16));
  openai.add_routes(server);
  http::add_health_routes(server, ready);
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<http::Server> metrics_server,
                            serve_metrics(
                                f, server,
                                [&] {
                                  metrics.refresh();
                                  if (placement_metrics) placement_metrics->refresh();
                                },
                                metrics.registry()));
  scheduler.start();
  MOESERVE_RETURN_IF_ERROR(server.start());

  std::unique_ptr<ControlServer> control;
  if (f.grpc_port >= 0) {
    ControlContext cc{&scheduler, &metrics, info, ready, drain};
    MOESERVE_ASSIGN_OR_RETURN(control,
                              ControlServer::start(cc, f.grpc_host, static_cast<int>(f.grpc_port)));
  }
  log::info("serving",
            {{"model", api.served_model_name},
             {"host", f.host},
             {"port", static_cast<int64_t>(server.port())},
             {"grpc_port", static_cast<int64_t>(control ? control->port() : -1)},
             {"metrics_port", static_cast<int64_t>(metrics_server ? metrics_server->port() : -1)},
             {"max_model_len", api.max_model_len},
             {"kv_cache_blocks", f.kv_cache_blocks},
             {"max_num_seqs", f.max_num_seqs},
             {"mmap_threshold_bytes", fixed_mmap_threshold ? kServeMmapThresholdBytes : -1},
             {"deployment", f.deployment}});

  const int signal_number = wait_for_stop(signals, scheduler);
  if (signal_number == 0) {
    const Status failed = scheduler.failure();
    log::error("expert-parallel group failed: exiting so the group restarts",
               {{"rank", 0}, {"error", failed.to_string()}});
    server.shutdown(0);
    scheduler.stop();
    if (control) control->shutdown();
    if (metrics_server) metrics_server->shutdown(0);
    return failed;
  }
  log::info("shutting down: finishing requests in flight", {{"signal", signal_number},
                                                            {"grace_s", f.shutdown_grace_seconds},
                                                            {"in_flight", server.in_flight()}});
  drain();
  server.shutdown(static_cast<int64_t>(f.shutdown_grace_seconds * 1000));
  scheduler.stop();
  if (leader && scheduler.failure().ok()) {
    if (Status s = leader->stop(); !s.ok()) {
      log::warn("could not stop the other ranks", {{"error", s.to_string()}});
    }
  }
  if (control) control->shutdown();
  if (metrics_server) metrics_server->shutdown(0);
  log::info("stopped", {});
  return ok_status();
}

}  // namespace

int run_serve_command(const std::vector<std::string>& args) {
  StatusOr<ParsedServeFlags> parsed = parse_serve_flags(args);
  if (!parsed.ok()) {
    std::cerr << "serve: " << parsed.status().message() << "\n(see serve --help)\n";
    return 2;
  }
  if (parsed->help) {
    std::cout << parsed->help_text;
    return 0;
  }
  if (Status s = serve(parsed->flags); !s.ok()) {
    log::error("serve failed", {{"error", s.to_string()}});
    return 1;
  }
  return 0;
}

}  // namespace moeserve::cli
