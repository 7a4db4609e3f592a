// The `moeserve-worker serve` command (flags: serve_options.h): loads a model folder,
// starts the scheduler, the OpenAI-compatible HTTP API with /healthz, /readyz and
// /metrics, and (with --grpc-port) the WorkerControl gRPC service; serves until SIGTERM
// or SIGINT.
//
// With --world-size N > 1 the process first joins its expert-parallel group (rank 0 at
// --leader), then loads the model and keeps only its share of the routed experts. Rank
// 0 runs the scheduler and the API with every request in its batch, driving the other
// ranks with the group protocol of worker/engine/group_step.h (as `generate` does).
// Ranks > 0 serve /healthz, /readyz and /metrics only. When a collective fails (a rank
// died or hung), each surviving rank logs the lost rank, reports not-ready and exits 1
// so that the group restarts.
//
// On SIGTERM/SIGINT (rank 0): /readyz answers 503 and new generation requests 503, the
// HTTP server stops accepting connections, requests in flight finish within the grace
// period (then they are cut), the other ranks are told to stop, and the process exits
// 0. Ranks > 0 leave when rank 0 stops them.
#pragma once

#include <string>
#include <vector>

namespace moeserve::cli {

// The `serve` command; returns the process exit code.
int run_serve_command(const std::vector<std::string>& args);

}  // namespace moeserve::cli
