// bench-serving: the cost of serving through HTTP + SSE, measured side by side in one
// run (DESIGN.md, Performance method).
//
// One model (the generated tiny preset, or bench-1b, or --model DIR) is loaded once.
// For each concurrency C in {1, 8, 32}:
//   engine alone: C threads submit requests straight to an in-process Scheduler and read
//     their RequestStreams (continuous batching, no HTTP);
//   HTTP + SSE:   C client threads send streaming /v1/completions to the same code as
//     `moeserve-worker serve` (OpenAiApi on a common http::Server over loopback) and
//     parse the SSE chunks; the server side runs its own Scheduler of the same options.
// The two sides alternate --repeats times and the best of each is reported.
// Both generate fixed-length outputs (ignore_eos, --tokens per request) from distinct
// prompts, and report aggregate generated tokens/s; the ratio HTTP / engine is the
// serving efficiency (goal >= 0.95). Then, under the C = 32 load, time to first token
// (client side, the first SSE chunk) p50/p99, and requests/s for tiny requests
// (max_tokens 1, not streamed) at concurrency 8.
//
// Usage: bench-serving [--model DIR | --preset tiny|bench-1b] [--threads N]
//                      [--tokens N] [--rounds N] [--repeats N] [--tiny-requests N]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/flags.h"
#include "common/http_server.h"
#include "common/log.h"
#include "tools/fixtures/tiny_model.h"
#include "worker/engine/scheduler.h"
#include "worker/model/weights.h"
#include "worker/server/openai_server.h"
#include "worker/server/worker_metrics.h"

namespace {

using namespace moeserve;
using SteadyClock = std::chrono::steady_clock;
using nlohmann::json;

struct BenchFlags {
  std::string model;
  std::string preset = "tiny";
  int64_t threads = 2;
  int64_t tokens = 64;
  int64_t rounds = 2;
  int64_t tiny_requests = 200;
  int64_t repeats = 5;
};

double seconds_since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

std::string prompt_text(int client, int round) {
  return "benchmark client " + std::to_string(client) + " round " + std::to_string(round) +
         " tells a story about";
}

std::unique_ptr<engine::Scheduler> make_scheduler(
    const std::shared_ptr<const model::LoadedModel>& model, const BenchFlags& f) {
  engine::EngineOptions eo;
  eo.threads = static_cast<int>(f.threads);
  eo.kv_cache_tokens = 512 * engine::kBlockSize;
  eo.record_routing = true;
  auto engine = engine::Engine::create(model, eo);
  if (!engine.ok()) {
    std::fprintf(stderr, "engine: %s\n", engine.status().to_string().c_str());
    std::exit(1);
  }
  engine::SchedulerOptions so;
  so.max_num_seqs = 64;
  so.max_queue = 256;
  auto s = std::make_unique<engine::Scheduler>(std::move(engine).value(), so);
  s->start();
  return s;
}

// Engine alone: tokens/s of `clients` concurrent request loops.
double engine_tokens_per_s(engine::Scheduler& scheduler, const server::PromptContext& prompt,
                           int clients, const BenchFlags& f) {
  std::atomic<int64_t> tokens{0};
  const auto start = SteadyClock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (int r = 0; r < f.rounds; ++r) {
        engine::GenerationRequest g;
        g.prompt = prompt.encoder.encode(prompt_text(c, r));
        g.max_tokens = f.tokens;
        auto stream = scheduler.submit(g);
        if (!stream.ok()) continue;
        while (!(*stream)->done()) {
          for (const auto& e : (*stream)->next(std::chrono::milliseconds(50))) {
            if (e.has_token) tokens.fetch_add(1);
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return static_cast<double>(tokens.load()) / seconds_since(start);
}

struct HttpResult {
  double tokens_per_s = 0;
  std::vector<double> ttft_s;
};

// One request on a fresh loopback connection with a minimal blocking client (the
// client's own cost should not count as serving overhead): sends it with
// "Connection: close" and hands every received piece to `on_bytes` until the server
// closes. False when the connection failed.
bool raw_request(uint16_t port, const std::string& body,
                 const std::function<void(std::string_view)>& on_bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return false;
  }
  const std::string request =
      "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Content-Type: application/json\r\nConnection: close\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  char buf[16384];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    on_bytes(std::string_view(buf, static_cast<size_t>(n)));
  }
  ::close(fd);
  return true;
}

// HTTP + SSE: tokens/s (from each stream's usage chunk) and client-side TTFT.
HttpResult http_tokens_per_s(uint16_t port, int clients, const BenchFlags& f) {
  std::atomic<int64_t> tokens{0};
  std::vector<std::vector<double>> ttft(clients);
  const auto start = SteadyClock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (int r = 0; r < f.rounds; ++r) {
        const json body = {{"prompt", prompt_text(c, r)},
                           {"max_tokens", f.tokens},
                           {"temperature", 0},
                           {"ignore_eos", true},
                           {"stream", true},
                           {"stream_options", {{"include_usage", true}}}};
        const auto sent = SteadyClock::now();
        std::string tail;  // the last bytes: the usage chunk and [DONE]
        bool first = true;
        raw_request(port, body.dump(), [&](std::string_view piece) {
          if (first && piece.find("data: {") != std::string_view::npos) {
            ttft[c].push_back(seconds_since(sent));
            first = false;
          }
          tail.append(piece);
          if (tail.size() > 4096) tail.erase(0, tail.size() - 1024);
        });
        const size_t usage = tail.rfind("\"completion_tokens\":");
        if (usage != std::string::npos) tokens.fetch_add(std::stoll(tail.substr(usage + 20)));
      }
    });
  }
  for (auto& t : threads) t.join();
  HttpResult result;
  result.tokens_per_s = static_cast<double>(tokens.load()) / seconds_since(start);
  for (const auto& v : ttft) result.ttft_s.insert(result.ttft_s.end(), v.begin(), v.end());
  return result;
}

double tiny_requests_per_s(uint16_t port, int clients, int64_t total) {
  std::atomic<int64_t> next{0}, ok{0};
  const auto start = SteadyClock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      while (next.fetch_add(1) < total) {
        std::string response;
        raw_request(port, R"({"prompt":"hi","max_tokens":1,"temperature":0})",
                    [&](std::string_view piece) { response.append(piece); });
        if (response.rfind("HTTP/1.1 200", 0) == 0) ok.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  return static_cast<double>(ok.load()) / seconds_since(start);
}

int run(const BenchFlags& f) {
  std::string dir = f.model;
  if (dir.empty()) {
    dir = (std::filesystem::temp_directory_path() / ("bench-serving-" + f.preset)).string();
    auto preset = fixtures::parse_preset_flag(f.preset);
    if (!preset.ok()) {
      std::fprintf(stderr, "%s\n", preset.status().to_string().c_str());
      return 2;
    }
    std::fprintf(stderr, "writing the %s model to %s\n", f.preset.c_str(), dir.c_str());
    fixtures::TinyModelOptions options;
    options.preset = *preset;
    if (Status s = fixtures::write_tiny_model(dir, options); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.to_string().c_str());
      return 1;
    }
  }
  auto loaded = model::load_model(dir, {.load_mtp = false, .prefault = true});
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.status().to_string().c_str());
    return 1;
  }
  auto shared = std::make_shared<const model::LoadedModel>(std::move(loaded).value());
  auto prompt = server::load_prompt_context(dir, shared->config);
  if (!prompt.ok()) {
    std::fprintf(stderr, "%s\n", prompt.status().to_string().c_str());
    return 1;
  }

  // Two schedulers of the same options: one driven directly, one behind HTTP. An idle
  // one sleeps, so each measurement has the compute threads to itself. The two sides
  // alternate --repeats times per concurrency and the best of each is kept, which
  // cancels most of the noise of a shared machine.
  auto direct = make_scheduler(shared, f);
  auto served = make_scheduler(shared, f);
  server::WorkerInfo info{"bench", "bench", "bf16"};
  server::WorkerMetrics metrics(info, *served);
  server::ApiOptions api;
  api.served_model_name = "bench";
  api.max_model_len = 4096;
  server::OpenAiApi openai(api, *prompt, *served, metrics);
  http::ServerOptions ho;
  ho.handler_threads = 128;
  http::Server server(ho);
  openai.add_routes(server);
  if (Status s = server.start(); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.to_string().c_str());
    return 1;
  }
  const BenchFlags warmup{f.model, f.preset, f.threads, 4, 1, 0, 1};
  engine_tokens_per_s(*direct, *prompt, 4, warmup);
  http_tokens_per_s(server.port(), 4, warmup);

  const std::vector<int> concurrency = {1, 8, 32};
  std::vector<double> engine_tps(concurrency.size(), 0), http_tps(concurrency.size(), 0);
  std::vector<double> ttft_under_load;
  for (size_t i = 0; i < concurrency.size(); ++i) {
    for (int64_t rep = 0; rep < f.repeats; ++rep) {
      std::fprintf(stderr, "concurrency %d, repeat %lld: engine alone, then HTTP + SSE\n",
                   concurrency[i], static_cast<long long>(rep + 1));
      engine_tps[i] =
          std::max(engine_tps[i], engine_tokens_per_s(*direct, *prompt, concurrency[i], f));
      HttpResult r = http_tokens_per_s(server.port(), concurrency[i], f);
      if (r.tokens_per_s > http_tps[i]) {
        http_tps[i] = r.tokens_per_s;
        if (i + 1 == concurrency.size()) ttft_under_load = r.ttft_s;
      }
    }
  }
  std::fprintf(stderr, "tiny requests...\n");
  const double rps = tiny_requests_per_s(server.port(), 8, f.tiny_requests);
  server.shutdown(1000);

  std::printf("model: %s (%s), threads %lld, %lld tokens per request, %lld rounds\n", dir.c_str(),
              f.model.empty() ? f.preset.c_str() : "given", static_cast<long long>(f.threads),
              static_cast<long long>(f.tokens), static_cast<long long>(f.rounds));
  std::printf("%-12s %16s %16s %8s\n", "concurrency", "engine tok/s", "http+sse tok/s", "ratio");
  for (size_t i = 0; i < concurrency.size(); ++i) {
    std::printf("%-12d %16.1f %16.1f %8.3f\n", concurrency[i], engine_tps[i], http_tps[i],
                http_tps[i] / engine_tps[i]);
  }
  std::printf("TTFT under concurrency %d: p50 %.1f ms, p99 %.1f ms (%zu requests)\n",
              concurrency.back(), 1e3 * percentile(ttft_under_load, 0.5),
              1e3 * percentile(ttft_under_load, 0.99), ttft_under_load.size());
  std::printf("tiny requests (max_tokens 1, concurrency 8): %.1f requests/s\n", rps);
  if (f.model.empty()) std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  BenchFlags f;
  FlagSet flags("bench-serving [flags]",
                "Serving overhead: HTTP + SSE tokens/s against the engine alone.");
  flags.add_string("model", &f.model, "model folder (default: generate --preset)");
  flags.add_string("preset", &f.preset, "generated model preset: tiny or bench-1b");
  flags.add_int("threads", &f.threads, "compute threads");
  flags.add_int("tokens", &f.tokens, "tokens generated per request");
  flags.add_int("rounds", &f.rounds, "requests per client at each concurrency");
  flags.add_int("tiny-requests", &f.tiny_requests, "requests in the tiny-request phase");
  flags.add_int("repeats", &f.repeats, "alternating measurements per concurrency (best kept)");
  std::vector<std::string> args(argv + 1, argv + argc);
  if (Status s = flags.parse(args); !s.ok()) {
    std::fprintf(stderr, "%s\n%s", s.message().c_str(), flags.help().c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::printf("%s", flags.help().c_str());
    return 0;
  }
  log::configure(log::Level::kWarn, log::Format::kJson);
  return run(f);
}
