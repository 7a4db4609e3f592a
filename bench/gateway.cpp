// bench-gateway: what the gateway costs, measured side by side in one run (DESIGN.md,
// Performance method).
//
// 1. Overhead on a real worker: a `moeserve-worker serve` process on the generated tiny
//    model, and an in-process gateway (Proxy + StaticDiscovery, as moeserve-gateway runs)
//    in front of it. For each concurrency C in {1, 8, 32}, C clients send streaming
//    /v1/completions (ignore_eos, --tokens each, distinct prompts) either straight to the
//    worker or through the gateway; the two alternate --repeats times, the best of each
//    is kept. Reported: generated tokens/s and median time to first token (client side,
//    the first SSE chunk) of each, and the ratios gateway / direct (goal >= 0.95 for
//    throughput; TTFT ratio near 1). --think-ms makes each client pause after every
//    request, on both paths: back to back, a worker answering directly never goes idle
//    between requests, while through the gateway it idles for the relay's time, and on a
//    VM waking an idle worker measured about 1 ms, which the gateway would be charged.
// 2. The gateway alone: an in-process stub upstream that answers every request at once
//    with a small fixed JSON; requests/s of --stub-requests non-streamed requests at
//    concurrency 8 and 32, direct to the stub and through the gateway.
//
// With --worker-cpus and --bench-cpus the worker process and this one (clients and
// gateway) run on disjoint CPUs, as in a cluster where the gateway has pods of its own:
// the ratio then shows the latency and throughput the gateway adds, not the CPU it takes
// from a worker sharing its cores (which the run without them shows).
//
// Usage: bench-gateway [--worker BIN] [--threads N] [--tokens N] [--requests N]
//                      [--repeats N] [--stub-requests N] [--upstream-idle-connections N]
//                      [--think-ms MS] [--worker-cpus LIST --bench-cpus LIST]
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/load/completion.h"
#include "bench/load/load_report.h"
#include "bench/load/worker_process.h"
#include "common/flags.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/process.h"
#include "operator/gateway/proxy.h"
#include "operator/gateway/static_discovery.h"

namespace {

using namespace moeserve;
using SteadyClock = std::chrono::steady_clock;
using nlohmann::json;

struct LoadResult {
  double tokens_per_s = 0;
  double ttft_median_ms = 0;
  double cpu_us_per_token = 0;  // of this process: the clients, plus the gateway if in use
  int64_t failures = 0;
};

// CPU time this process has used, user + system.
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

// C clients, each sending `requests` streaming completions of `tokens` tokens, distinct
// prompts per round, client and request.
LoadResult streaming_load(const std::string& base_url, int concurrency, int64_t requests,
                          int64_t tokens, int round, std::chrono::microseconds think = {}) {
  std::vector<std::thread> clients;
  std::vector<std::vector<double>> ttft(concurrency);
  std::atomic<int64_t> generated{0};
  std::atomic<int64_t> failures{0};
  const http::Client client;
  const auto start = SteadyClock::now();
  const double cpu_start = process_cpu_seconds();
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&, c] {
      for (int64_t i = 0; i < requests; ++i) {
        load::CompletionRequest request;
        request.base_url = base_url;
        request.model = "tiny";
        request.prompt_tokens = 8;
        request.output_tokens = tokens;
        request.prompt_seed =
            static_cast<uint64_t>(((round + 1) * 1000 + c) * 1000 + static_cast<int>(i));
        const load::CompletionResult r = load::send_completion(client, request);
        if (r.outcome != load::Outcome::kOk) {
          if (failures.fetch_add(1) == 0) {
            std::fprintf(stderr, "  first failure: %s: %s\n",
                         std::string(load::outcome_name(r.outcome)).c_str(), r.error.c_str());
          }
          continue;
        }
        ttft[c].push_back(r.ttft_s * 1e3);
        generated += r.output_tokens;
        if (think.count() > 0) std::this_thread::sleep_for(think);
      }
    });
  }
  for (auto& t : clients) t.join();
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  const double cpu = process_cpu_seconds() - cpu_start;
  std::vector<double> all;
  for (const auto& v : ttft) all.insert(all.end(), v.begin(), v.end());
  const double tokens_made = static_cast<double>(std::max<int64_t>(1, generated.load()));
  return {static_cast<double>(generated) / seconds, load::percentile(all, 0.5),
          cpu * 1e6 / tokens_made, failures};
}

double requests_per_s(const std::string& base_url, int concurrency, int64_t total) {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> failures{0};
  std::vector<std::thread> clients;
  const http::Client client;
  load::CompletionRequest request;
  request.base_url = base_url;
  request.model = "tiny";
  request.prompt_tokens = 1;
  request.output_tokens = 1;
  request.stream = false;
  request.timeout_ms = 10000;
  const auto start = SteadyClock::now();
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&] {
      while (next.fetch_add(1) < total) {
        if (load::send_completion(client, request).outcome != load::Outcome::kOk) failures += 1;
      }
    });
  }
  for (auto& t : clients) t.join();
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  if (failures > 0)
    std::fprintf(stderr, "  %lld requests failed\n", static_cast<long long>(failures.load()));
  return static_cast<double>(total) / seconds;
}

// An in-process gateway in front of `upstream_url`, as moeserve-gateway wires it.
struct Gateway {
  Gateway(const std::string& upstream_url, int idle_connections) {
    gateway::Snapshot s;
    gateway::ServedModel m;
    m.model = "tiny";
    m.deployment = "bench/tiny";
    m.groups.push_back({"bench/tiny/g0", upstream_url, false});
    s.models.push_back(m);
    discovery = std::make_unique<gateway::StaticDiscovery>(s);
    discovery->start();
    gateway::ProxyOptions proxy_options;
    proxy_options.upstream_idle_connections = idle_connections;
    proxy = std::make_unique<gateway::Proxy>(proxy_options, discovery.get());
    http::ServerOptions options;
    options.handler_threads = 64;
    options.io_threads = 1;
    server = std::make_unique<http::Server>(options);
    proxy->add_routes(*server);
    if (Status st = server->start(); !st.ok()) {
      std::fprintf(stderr, "gateway: %s\n", st.to_string().c_str());
      std::exit(1);
    }
  }
  ~Gateway() {
    server->shutdown(1000);
    discovery->stop();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server->port()); }
  std::unique_ptr<gateway::StaticDiscovery> discovery;
  std::unique_ptr<gateway::Proxy> proxy;
  std::unique_ptr<http::Server> server;
};

// "0,2-3" -> a CPU set; nullopt when malformed or naming a CPU this machine lacks.
std::optional<cpu_set_t> parse_cpu_list(const std::string& text) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  size_t start = 0;
  while (start < text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(start, comma - start);
    const size_t dash = item.find('-');
    char* end = nullptr;
    const long first = std::strtol(item.c_str(), &end, 10);
    long last = first;
    if (dash != std::string::npos) last = std::strtol(item.c_str() + dash + 1, &end, 10);
    if (item.empty() || *end != '\0' || first < 0 || last < first || last >= cpus) {
      return std::nullopt;
    }
    for (long cpu = first; cpu <= last; ++cpu) CPU_SET(static_cast<int>(cpu), &set);
    start = comma + 1;
  }
  if (CPU_COUNT(&set) == 0) return std::nullopt;
  return set;
}

// Confines the calling thread, and the threads and processes it starts from now on.
bool pin_to(const cpu_set_t& set) { return ::sched_setaffinity(0, sizeof set, &set) == 0; }

}  // namespace

int main(int argc, char** argv) {
  std::string worker = executable_dir() + "/moeserve-worker";
  int64_t threads = 1;
  int64_t tokens = 32;
  int64_t requests = 4;
  int64_t repeats = 2;
  int64_t stub_requests = 4000;
  double think_ms = 0;
  int64_t idle_connections = gateway::ProxyOptions{}.upstream_idle_connections;
  std::string worker_cpus, bench_cpus;
  FlagSet flags("bench-gateway [flags]",
                "Gateway overhead on a tiny-model worker (tokens/s and TTFT, gateway / direct, at\n"
                "concurrency 1, 8, 32) and requests/s of the gateway alone on a stub upstream.");
  flags.add_string("worker", &worker, "moeserve-worker binary");
  flags.add_int("threads", &threads, "the worker's compute threads");
  flags.add_int("tokens", &tokens, "tokens generated per request");
  flags.add_int("requests", &requests, "requests per client per measurement");
  flags.add_int("repeats", &repeats, "alternations of direct and gateway (best kept)");
  flags.add_int("stub-requests", &stub_requests, "requests per stub measurement");
  flags.add_double("think-ms", &think_ms,
                   "each client's pause after every request, direct and through the gateway");
  flags.add_int("upstream-idle-connections", &idle_connections,
                "the gateway's kept-alive connections per group (0: a new one per request)");
  flags.add_string("worker-cpus", &worker_cpus,
                   "CPUs of the worker process, e.g. 0 or 0-1 (with --bench-cpus)");
  flags.add_string("bench-cpus", &bench_cpus,
                   "CPUs of this process: the clients and the gateway (with --worker-cpus)");
  if (std::optional<int> exit_code = flags.parse_main(argc, argv)) return *exit_code;
  log::configure(log::Level::kWarn, log::Format::kJson);
  if (!(think_ms >= 0 && think_ms <= 10000)) {
    std::fprintf(stderr, "bench-gateway: --think-ms must be between 0 and 10000\n");
    return 2;
  }
  const auto think = std::chrono::microseconds(static_cast<int64_t>(think_ms * 1000));
  if (worker_cpus.empty() != bench_cpus.empty()) {
    std::fprintf(stderr, "bench-gateway: --worker-cpus and --bench-cpus go together\n");
    return 2;
  }
  const std::optional<cpu_set_t> worker_set =
      worker_cpus.empty() ? std::nullopt : parse_cpu_list(worker_cpus);
  const std::optional<cpu_set_t> bench_set =
      bench_cpus.empty() ? std::nullopt : parse_cpu_list(bench_cpus);
  if (!worker_cpus.empty() && (!worker_set || !bench_set)) {
    std::fprintf(stderr,
                 "bench-gateway: --worker-cpus/--bench-cpus: expected lists such as 0 or 1-3 of "
                 "this machine's %ld CPUs\n",
                 ::sysconf(_SC_NPROCESSORS_ONLN));
    return 2;
  }
  if (worker_set && !pin_to(*worker_set)) {  // the worker inherits it when started
    std::perror("bench-gateway: sched_setaffinity");
    return 1;
  }

  const std::string dir =
      (std::filesystem::temp_directory_path() / ("bench-gateway-" + std::to_string(::getpid())))
          .string();
  load::WorkerOptions worker_options;
  worker_options.binary = worker;
  worker_options.dir = dir;
  worker_options.extra_args = {"--threads", std::to_string(threads), "--max-num-seqs",
                               "32",        "--log-level",           "warn"};
  auto child = load::WorkerProcess::start(worker_options);
  if (!child.ok()) {
    std::fprintf(stderr, "worker: %s\n", child.status().to_string().c_str());
    return 1;
  }
  if (bench_set && !pin_to(*bench_set)) {
    std::perror("bench-gateway: sched_setaffinity");
    return 1;
  }
  if (worker_set) {
    std::printf("worker on CPUs %s, clients and gateway on CPUs %s\n", worker_cpus.c_str(),
                bench_cpus.c_str());
  }
  const std::string direct = (*child)->url();
  {
    Gateway gw(direct, static_cast<int>(idle_connections));
    if (!load::wait_ready(direct, std::chrono::seconds(5))) return 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::printf(
        "gateway overhead on a tiny-model worker (%lld tokens per request, best of %lld, %.1f ms "
        "think time after each request)\n",
        static_cast<long long>(tokens), static_cast<long long>(repeats), think_ms);
    std::printf("%4s %14s %14s %7s %12s %12s %7s %14s\n", "C", "direct tok/s", "gateway tok/s",
                "ratio", "direct ttft", "gateway ttft", "ratio", "gw CPU/token");
    streaming_load(direct, 2, 1, tokens, -1);  // warm-up
    int round = 0;
    for (int c : {1, 8, 32}) {
      LoadResult best_direct;
      LoadResult best_gateway;
      best_direct.ttft_median_ms = best_gateway.ttft_median_ms = 1e18;
      best_direct.cpu_us_per_token = best_gateway.cpu_us_per_token = 1e18;
      for (int64_t r = 0; r < repeats; ++r) {
        LoadResult d = streaming_load(direct, c, requests, tokens, round++, think);
        LoadResult g = streaming_load(gw.url(), c, requests, tokens, round++, think);
        if (d.failures || g.failures) {
          std::fprintf(stderr, "  failures: direct %lld, gateway %lld\n",
                       static_cast<long long>(d.failures), static_cast<long long>(g.failures));
        }
        best_direct.tokens_per_s = std::max(best_direct.tokens_per_s, d.tokens_per_s);
        best_gateway.tokens_per_s = std::max(best_gateway.tokens_per_s, g.tokens_per_s);
        best_direct.ttft_median_ms = std::min(best_direct.ttft_median_ms, d.ttft_median_ms);
        best_gateway.ttft_median_ms = std::min(best_gateway.ttft_median_ms, g.ttft_median_ms);
        best_direct.cpu_us_per_token = std::min(best_direct.cpu_us_per_token, d.cpu_us_per_token);
        best_gateway.cpu_us_per_token = std::min(best_gateway.cpu_us_per_token, g.cpu_us_per_token);
      }
      // The gateway's own CPU per streamed token: this process's CPU through the gateway
      // less its CPU direct (the clients' share).
      std::printf("%4d %14.1f %14.1f %7.3f %10.1fms %10.1fms %7.3f %12.1fus\n", c,
                  best_direct.tokens_per_s, best_gateway.tokens_per_s,
                  best_gateway.tokens_per_s / best_direct.tokens_per_s, best_direct.ttft_median_ms,
                  best_gateway.ttft_median_ms,
                  best_gateway.ttft_median_ms / best_direct.ttft_median_ms,
                  best_gateway.cpu_us_per_token - best_direct.cpu_us_per_token);
    }
  }
  (*child)->signal(SIGTERM);
  (*child)->wait_for(std::chrono::milliseconds(10000));
  child->reset();

  http::ServerOptions stub_options;
  stub_options.handler_threads = 64;
  http::Server stub(stub_options);
  const std::string answer =
      R"({"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":"x","finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}})";
  stub.route("POST", "/v1/completions", http::SimpleHandler([&](const http::Request&) {
               return http::json_response(200, answer);
             }));
  stub.route("GET", "/readyz", http::SimpleHandler([](const http::Request&) {
               return http::text_response(200, "ok");
             }));
  if (Status s = stub.start(); !s.ok()) return 1;
  const std::string stub_url = "http://127.0.0.1:" + std::to_string(stub.port());
  {
    Gateway gw(stub_url, static_cast<int>(idle_connections));
    std::printf("\nthe gateway alone, stub upstream (%lld requests per measurement)\n",
                static_cast<long long>(stub_requests));
    std::printf("%4s %14s %14s %7s\n", "C", "stub req/s", "gateway req/s", "ratio");
    for (int c : {8, 32}) {
      double best_stub = 0;
      double best_gateway = 0;
      for (int64_t r = 0; r < repeats; ++r) {
        best_stub = std::max(best_stub, requests_per_s(stub_url, c, stub_requests));
        best_gateway = std::max(best_gateway, requests_per_s(gw.url(), c, stub_requests));
      }
      std::printf("%4d %14.0f %14.0f %7.3f\n", c, best_stub, best_gateway,
                  best_gateway / best_stub);
    }
  }
  stub.shutdown(1000);
  std::filesystem::remove_all(dir);
  return 0;
}
