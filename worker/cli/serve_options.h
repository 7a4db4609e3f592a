// The flags of `moeserve-worker serve`, parsed and checked without side effects, so the
// command line the operator renders is testable on its own.
//
//   serve --model DIR [--port 8000] [--host 127.0.0.1] [--served-model-name NAME]
//         [--api-key-file F] [--max-num-seqs 32] [--max-model-len N] [--kv-cache-blocks N]
//         [--max-num-batched-tokens 1024] [--max-queue 128] [--threads N]
//         [--grpc-port P] [--grpc-host 127.0.0.1] [--metrics-port P]
//         [--metrics-host 127.0.0.1] [--deployment NAME]
//         [--shutdown-grace-seconds 30] [--max-body-bytes N]
//         [--precision fp8|bf16] [--speculative mtp|ngram|none] [--num-draft-tokens K]
//         [--speculative-max-batch N]
//         [--rank R --world-size N --leader HOST:PORT [--placement FILE]
//          [--collective-timeout-ms T] [--rendezvous-timeout-ms T]]
//
// Environment: MOESERVE_RANK, MOESERVE_WORLD_SIZE, MOESERVE_LEADER_ADDR,
// MOESERVE_DEPLOYMENT (and the others named in --help). Without MOESERVE_RANK/--rank the
// rank is MOESERVE_POD_INDEX x MOESERVE_RANKS_PER_POD (the operator's pod layout).
// --host, --grpc-host and --metrics-host are IP literals (IPv4 or IPv6); anything else is
// refused. Without --metrics-port, /metrics is served on --port beside the API.
// A world size of 1 is a single process: --leader is then ignored. The speculative
// flags are speculative_flags.h's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/cli/group_flags.h"
#include "worker/cli/speculative_flags.h"
#include "worker/model/config.h"

namespace moeserve::cli {

struct ServeFlags {
  std::string model;
  std::string host = "127.0.0.1";
  int64_t port = 8000;
  std::string served_model_name;
  std::string api_key_file;
  int64_t max_num_seqs = 32;
  int64_t max_model_len = 0;
  int64_t kv_cache_blocks = 256;
  int64_t max_num_batched_tokens = 1024;
  int64_t max_queue = 128;
  int64_t threads = 0;
  int64_t grpc_port = -1;
  std::string grpc_host = "127.0.0.1";
  int64_t metrics_port = -1;  // -1: /metrics on --port
  std::string metrics_host = "127.0.0.1";
  std::string deployment = "default";
  double shutdown_grace_seconds = 30;
  int64_t max_body_bytes = 8 << 20;
  std::string precision;                  // "", "fp8" or "bf16": checked against config.json
  SpeculativeFlags speculative;           // drafter, drafts per step, per-step switch
  std::string reasoning_parser = "auto";  // auto, none or think (chat reasoning_content)
  GroupFlags group;                       // rank, world size, leader, placement, timeouts
};

struct ParsedServeFlags {
  ServeFlags flags;
  bool help = false;  // --help: print help_text and exit 0
  std::string help_text;
};

// Parses and checks the command line (plus environment). invalid_argument names the
// flag at fault.
StatusOr<ParsedServeFlags> parse_serve_flags(const std::vector<std::string>& args);

// ok when `host` is an IPv4 or IPv6 literal; invalid_argument naming `flag` otherwise.
Status check_listen_address(const std::string& flag, const std::string& host);

// True when the flags describe an expert-parallel group (world size > 1).
bool in_group(const ServeFlags& f);

// "fp8" for a checkpoint with an FP8 quantization_config, else "bf16".
std::string checkpoint_precision(const model::ModelConfig& config);
// ok when --precision is empty or names the checkpoint's precision.
Status check_precision(const std::string& precision, const model::ModelConfig& config);

}  // namespace moeserve::cli
