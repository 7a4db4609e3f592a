// The `moeserve-worker serve` command: loads a model folder, starts the scheduler, the
// OpenAI-compatible HTTP API with /healthz, /readyz and /metrics, and (with
// --grpc-port) the WorkerControl gRPC service; serves until SIGTERM or SIGINT.
//
//   serve --model DIR [--port 8000] [--host 127.0.0.1] [--served-model-name NAME]
//         [--api-key-file F] [--max-num-seqs 32] [--max-model-len N] [--kv-cache-blocks N]
//         [--max-num-batched-tokens 1024] [--max-queue 128] [--threads N]
//         [--grpc-port P] [--grpc-host 127.0.0.1] [--deployment NAME]
//         [--shutdown-grace-seconds 30] [--max-body-bytes N]
//
// On SIGTERM/SIGINT: /readyz answers 503 and new generation requests 503, the HTTP
// server stops accepting connections, requests in flight finish within the grace
// period (then they are cut), and the process exits 0.
#pragma once

#include <string>
#include <vector>

namespace moeserve::server {

// The `serve` command; returns the process exit code.
int run_serve_command(const std::vector<std::string>& args);

}  // namespace moeserve::server
