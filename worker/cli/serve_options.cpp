#include "worker/cli/serve_options.h"

#include <arpa/inet.h>

#include "common/flags.h"
#include "worker/server/openai_server.h"

namespace moeserve::cli {
namespace {

void add_flags(FlagSet& flags, ServeFlags& f, int64_t* pod_index, int64_t* ranks_per_pod) {
  flags.add_string("model", &f.model, "model folder (config.json, safetensors, tokenizer.json)",
                   "MOESERVE_MODEL");
  flags.add_string("host", &f.host, "HTTP listen address (an IP)", "MOESERVE_HOST");
  flags.add_int("port", &f.port, "HTTP port (0: an ephemeral port)", "MOESERVE_PORT");
  flags.add_string("served-model-name", &f.served_model_name,
                   "model name in the API (default: the folder's name)");
  flags.add_string("api-key-file", &f.api_key_file,
                   "file of API keys, one per line, clients send as Authorization: Bearer; "
                   "re-read when it changes");
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
  flags.add_string("grpc-host", &f.grpc_host, "WorkerControl gRPC listen address (an IP)");
  flags.add_int("metrics-port", &f.metrics_port,
                "port of /metrics on its own listener (-1: on --port, 0: ephemeral)");
  flags.add_string("metrics-host", &f.metrics_host, "listen address of --metrics-port (an IP)");
  flags.add_string("deployment", &f.deployment, "deployment label on every metric",
                   "MOESERVE_DEPLOYMENT");
  flags.add_double("shutdown-grace-seconds", &f.shutdown_grace_seconds,
                   "on SIGTERM, how long requests in flight may take to finish");
  flags.add_int("max-body-bytes", &f.max_body_bytes, "largest request body (413 beyond)");
  flags.add_string("precision", &f.precision,
                   "fp8 or bf16: must match the checkpoint (config.json's quantization_config)");
  add_speculative_flags(flags, &f.speculative);
  flags.add_string("reasoning-parser", &f.reasoning_parser,
                   "chat output split into reasoning_content at </think>: auto (DeepSeek-R1-style "
                   "templates), none, or think (always)");
  add_group_flags(flags, &f.group);
  flags.add_int("pod-index", pod_index, "pod index in the group (rank = index x ranks per pod)",
                "MOESERVE_POD_INDEX");
  flags.add_int("ranks-per-pod", ranks_per_pod, "ranks per pod", "MOESERVE_RANKS_PER_POD");
}

Status check_flags(const ServeFlags& f) {
  if (f.model.empty()) return invalid_argument_error("--model is required");
  if (f.port < 0 || f.port > 65535) return invalid_argument_error("--port must be in [0, 65535]");
  if (f.grpc_port < -1 || f.grpc_port > 65535) {
    return invalid_argument_error("--grpc-port must be in [0, 65535] (or -1: off)");
  }
  if (f.metrics_port < -1 || f.metrics_port > 65535) {
    return invalid_argument_error("--metrics-port must be in [0, 65535] (or -1: on --port)");
  }
  if (f.metrics_port > 0 && f.metrics_port == f.port) {
    return invalid_argument_error("--metrics-port must differ from --port (" +
                                  std::to_string(f.port) + ")");
  }
  MOESERVE_RETURN_IF_ERROR(check_listen_address("--host", f.host));
  MOESERVE_RETURN_IF_ERROR(check_listen_address("--grpc-host", f.grpc_host));
  MOESERVE_RETURN_IF_ERROR(check_listen_address("--metrics-host", f.metrics_host));
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
  if (!f.precision.empty() && f.precision != "fp8" && f.precision != "bf16") {
    return invalid_argument_error("--precision must be fp8 or bf16, not '" + f.precision + "'");
  }
  MOESERVE_RETURN_IF_ERROR(check_speculative_flags(f.speculative));
  if (Status reasoning = server::parse_reasoning_mode(f.reasoning_parser).status();
      !reasoning.ok()) {
    return invalid_argument_error("--reasoning-parser: " + reasoning.message());
  }
  return check_group_flags(f.group);
}

}  // namespace

StatusOr<ParsedServeFlags> parse_serve_flags(const std::vector<std::string>& args) {
  ParsedServeFlags out;
  ServeFlags& f = out.flags;
  int64_t pod_index = 0;
  int64_t ranks_per_pod = 1;
  FlagSet flags("moeserve-worker serve --model DIR [flags]",
                "Serves a Hugging Face DeepSeek-V2/V3 checkpoint through an OpenAI-compatible "
                "HTTP API (/v1/completions, /v1/chat/completions, /v1/models) with /metrics. "
                "With --world-size N > 1 the ranks hold one model copy with the routed experts "
                "sharded over them; rank 0 serves the API, the others /healthz, /readyz and "
                "/metrics.");
  add_flags(flags, f, &pod_index, &ranks_per_pod);
  MOESERVE_RETURN_IF_ERROR(flags.parse(args));
  out.help = flags.help_requested();
  out.help_text = flags.help();
  if (out.help) return out;
  if (!flags.is_set("rank") && flags.is_set("pod-index")) {
    if (pod_index < 0 || ranks_per_pod < 1) {
      return invalid_argument_error(
          "MOESERVE_POD_INDEX must be >= 0 and MOESERVE_RANKS_PER_POD >= 1");
    }
    f.group.rank = pod_index * ranks_per_pod;
  }
  MOESERVE_RETURN_IF_ERROR(check_flags(f));
  return out;
}

Status check_listen_address(const std::string& flag, const std::string& host) {
  unsigned char address[sizeof(in6_addr)];
  if (inet_pton(AF_INET, host.c_str(), address) == 1 ||
      inet_pton(AF_INET6, host.c_str(), address) == 1) {
    return ok_status();
  }
  return invalid_argument_error(flag +
                                " must be an IPv4 or IPv6 address such as 0.0.0.0, "
                                "127.0.0.1 or ::, not '" +
                                host + "'");
}

bool in_group(const ServeFlags& f) { return in_group(f.group); }

std::string checkpoint_precision(const model::ModelConfig& config) {
  return config.quantization.fp8 ? "fp8" : "bf16";
}

Status check_precision(const std::string& precision, const model::ModelConfig& config) {
  const std::string actual = checkpoint_precision(config);
  if (precision.empty() || precision == actual) return ok_status();
  return invalid_argument_error(
      "--precision " + precision + " does not match the checkpoint, which is " + actual +
      (actual == "fp8" ? " (config.json has an FP8 quantization_config)"
                       : " (config.json has no FP8 quantization_config)") +
      "; deploy it with precision: " + actual);
}

}  // namespace moeserve::cli
