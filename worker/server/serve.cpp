#include "worker/server/serve.h"

#include <signal.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <memory>

#include "common/file.h"
#include "common/flags.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "worker/engine/engine.h"
#include "worker/engine/scheduler.h"
#include "worker/model/weights.h"
#include "worker/server/control_service.h"
#include "worker/server/openai_server.h"
#include "worker/server/worker_metrics.h"

namespace moeserve::server {
namespace {

constexpr int64_t kDefaultKvCacheBlocks = 256;

struct ServeFlags {
  std::string model;
  std::string host = "127.0.0.1";
  int64_t port = 8000;
  std::string served_model_name;
  std::string api_key_file;
  int64_t max_num_seqs = 32;
  int64_t max_model_len = 0;
  int64_t kv_cache_blocks = kDefaultKvCacheBlocks;
  int64_t max_num_batched_tokens = 1024;
  int64_t max_queue = 128;
  int64_t threads = 0;
  int64_t grpc_port = -1;
  std::string grpc_host = "127.0.0.1";
  std::string deployment = "default";
  double shutdown_grace_seconds = 30;
  int64_t max_body_bytes = 8 << 20;
};

Status check_flags(const ServeFlags& f) {
  if (f.model.empty()) return invalid_argument_error("--model is required");
  if (f.port < 0 || f.port > 65535) return invalid_argument_error("--port must be in [0, 65535]");
  if (f.grpc_port < -1 || f.grpc_port > 65535) {
    return invalid_argument_error("--grpc-port must be in [0, 65535] (or -1: off)");
  }
  if (f.max_num_seqs < 1) return invalid_argument_error("--max-num-seqs must be >= 1");
  if (f.kv_cache_blocks < 1) return invalid_argument_error("--kv-cache-blocks must be >= 1");
  if (f.max_num_batched_tokens < 1) {
    return invalid_argument_error("--max-num-batched-tokens must be >= 1");
  }
  if (f.max_queue < 0) return invalid_argument_error("--max-queue must be >= 0");
  if (f.max_model_len < 0) return invalid_argument_error("--max-model-len must be >= 0");
  if (f.shutdown_grace_seconds < 0) {
    return invalid_argument_error("--shutdown-grace-seconds must be >= 0");
  }
  return ok_status();
}

StatusOr<std::string> read_api_key(const std::string& path) {
  if (path.empty()) return std::string();
  MOESERVE_ASSIGN_OR_RETURN(std::string key, read_file(path));
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.front()))) key.erase(0, 1);
  if (key.empty()) return invalid_argument_error("--api-key-file " + path + " is empty");
  return key;
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

Status serve(const ServeFlags& f) {
  const sigset_t signals = block_stop_signals();
  MOESERVE_ASSIGN_OR_RETURN(std::string api_key, read_api_key(f.api_key_file));
  MOESERVE_ASSIGN_OR_RETURN(
      model::LoadedModel loaded,
      model::load_model(f.model, model::BindOptions{.load_mtp = false, .prefault = true}));
  auto shared = std::make_shared<const model::LoadedModel>(std::move(loaded));
  const model::ModelConfig& config = shared->config;
  MOESERVE_ASSIGN_OR_RETURN(PromptContext prompt, load_prompt_context(f.model, config));

  engine::EngineOptions eo;
  eo.threads = static_cast<int>(f.threads);
  eo.kv_cache_tokens = f.kv_cache_blocks * engine::kBlockSize;
  eo.record_routing = true;
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                            engine::Engine::create(shared, eo));
  engine::SchedulerOptions so;
  so.max_num_seqs = f.max_num_seqs;
  so.max_num_batched_tokens = f.max_num_batched_tokens;
  so.max_queue = f.max_queue;
  engine::Scheduler scheduler(std::move(engine), so);

  ApiOptions api;
  api.served_model_name =
      f.served_model_name.empty() ? default_model_name(f.model) : f.served_model_name;
  api.api_key = api_key;
  api.max_model_len = std::min(config.max_position_embeddings, scheduler.kv_capacity_tokens());
  if (f.max_model_len > 0) api.max_model_len = std::min(api.max_model_len, f.max_model_len);

  WorkerInfo info;
  info.model = api.served_model_name;
  info.deployment = f.deployment;
  info.precision = config.quantization.fp8 ? "fp8" : "bf16";
  WorkerMetrics metrics(info, scheduler);
  OpenAiApi openai(api, std::move(prompt), scheduler, metrics);

  std::atomic<bool> draining{false};
  auto ready = [&]() -> Status {
    return draining.load() ? unavailable_error("draining") : ok_status();
  };
  auto drain = [&] {
    draining.store(true);
    scheduler.drain();
  };

  http::ServerOptions ho;
  ho.host = f.host;
  ho.port = static_cast<uint16_t>(f.port);
  ho.max_body_bytes = static_cast<size_t>(f.max_body_bytes);
  // Every running or queued request holds a handler thread while it streams.
  ho.handler_threads = static_cast<int>(f.max_num_seqs + f.max_queue + 16);
  ho.error_response = server_error_response;
  http::Server server(ho);
  openai.add_routes(server);
  http::add_health_routes(server, ready);
  server.route("GET", "/metrics", http::SimpleHandler([&](const http::Request&) {
                 metrics.refresh();
                 http::Response r =
                     http::text_response(200, metrics::serialize({metrics.registry()}));
                 r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                 return r;
               }));
  scheduler.start();
  MOESERVE_RETURN_IF_ERROR(server.start());

  std::unique_ptr<ControlServer> control;
  if (f.grpc_port >= 0) {
    ControlContext cc{&scheduler, &metrics, info, ready, drain};
    MOESERVE_ASSIGN_OR_RETURN(control,
                              ControlServer::start(cc, f.grpc_host, static_cast<int>(f.grpc_port)));
  }
  log::info("serving", {{"model", api.served_model_name},
                        {"host", f.host},
                        {"port", static_cast<int64_t>(server.port())},
                        {"grpc_port", static_cast<int64_t>(control ? control->port() : -1)},
                        {"max_model_len", api.max_model_len},
                        {"kv_cache_blocks", f.kv_cache_blocks},
                        {"max_num_seqs", f.max_num_seqs},
                        {"deployment", f.deployment}});

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  log::info("shutting down: finishing requests in flight", {{"signal", signal_number},
                                                            {"grace_s", f.shutdown_grace_seconds},
                                                            {"in_flight", server.in_flight()}});
  drain();
  server.shutdown(static_cast<int64_t>(f.shutdown_grace_seconds * 1000));
  scheduler.stop();
  if (control) control->shutdown();
  log::info("stopped", {});
  return ok_status();
}

}  // namespace

int run_serve_command(const std::vector<std::string>& args) {
  ServeFlags f;
  FlagSet flags("moeserve-worker serve --model DIR [flags]",
                "Serves a Hugging Face DeepSeek-V2/V3 checkpoint through an OpenAI-compatible "
                "HTTP API (/v1/completions, /v1/chat/completions, /v1/models) with /metrics.");
  flags.add_string("model", &f.model, "model folder (config.json, safetensors, tokenizer.json)",
                   "MOESERVE_MODEL");
  flags.add_string("host", &f.host, "HTTP listen address", "MOESERVE_HOST");
  flags.add_int("port", &f.port, "HTTP port (0: an ephemeral port)", "MOESERVE_PORT");
  flags.add_string("served-model-name", &f.served_model_name,
                   "model name in the API (default: the folder's name)");
  flags.add_string("api-key-file", &f.api_key_file,
                   "file holding the API key clients must send as Authorization: Bearer");
  flags.add_int("max-num-seqs", &f.max_num_seqs, "sequences generated at once");
  flags.add_int("max-model-len", &f.max_model_len,
                "context length: prompt + max_tokens (0: the model's, capped by the KV cache)");
  flags.add_int("kv-cache-blocks", &f.kv_cache_blocks, "KV cache size in blocks of 64 tokens");
  flags.add_int("max-num-batched-tokens", &f.max_num_batched_tokens,
                "tokens per scheduler step (prefill chunks + decodes)");
  flags.add_int("max-queue", &f.max_queue, "waiting requests before 429");
  flags.add_int("threads", &f.threads, "compute threads; 0 is one per hardware thread",
                "MOESERVE_THREADS");
  flags.add_int("grpc-port", &f.grpc_port, "WorkerControl gRPC port (-1: off, 0: ephemeral)");
  flags.add_string("grpc-host", &f.grpc_host, "WorkerControl gRPC listen address");
  flags.add_string("deployment", &f.deployment, "deployment label on every metric",
                   "MOESERVE_DEPLOYMENT");
  flags.add_double("shutdown-grace-seconds", &f.shutdown_grace_seconds,
                   "on SIGTERM, how long requests in flight may take to finish");
  flags.add_int("max-body-bytes", &f.max_body_bytes, "largest request body (413 beyond)");
  if (Status s = flags.parse(args); !s.ok()) {
    std::cerr << "serve: " << s.message() << "\n" << flags.help();
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  if (Status s = check_flags(f); !s.ok()) {
    std::cerr << "serve: " << s.message() << "\n";
    return 2;
  }
  if (Status s = serve(f); !s.ok()) {
    log::error("serve failed", {{"error", s.to_string()}});
    return 1;
  }
  return 0;
}

}  // namespace moeserve::server
