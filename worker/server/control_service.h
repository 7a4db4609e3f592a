// The gRPC WorkerControl service (proto/moeserve/v1/worker.proto) of a worker, served
// with --grpc-port: statistics, drain and health for a client that manages the worker
// directly. (The operator does not call it: it reads /metrics.)
//
// GetStats: token counters (those of the HTTP API's usage, as in /metrics), queue and
// KV usage, and the tokens routed to each expert of each MoE layer over the retained
// steps after `since_sequence`, from the scheduler's ExpertLoadRecorder (the account
// that also feeds moeserve_expert_tokens_total); `sequence` is the last step included.
// Drain: stops admitting (new requests get 503, /readyz turns 503); running and queued
// requests finish; the process keeps running. Health: live always; ready while the
// model is loaded and not draining.
//
// ControlServer owns a grpc::Server listening on host:port (127.0.0.1 by default).
// Thread-safe; gRPC calls run on gRPC's threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "worker/engine/scheduler.h"
#include "worker/server/worker_metrics.h"

namespace moeserve::server {

struct ControlContext {
  engine::Scheduler* scheduler = nullptr;
  const WorkerMetrics* metrics = nullptr;
  WorkerInfo info;
  // ok when ready, else the reason (e.g. "draining").
  std::function<Status()> ready;
  // Called by Drain (idempotent).
  std::function<void()> drain;
};

class ControlServer {
 public:
  ~ControlServer();  // shutdown()
  // Listens on host:port (port 0: an ephemeral port, see port()).
  static StatusOr<std::unique_ptr<ControlServer>> start(ControlContext context,
                                                        const std::string& host, int port);
  int port() const { return port_; }
  void shutdown();

  struct Impl;

 private:
  ControlServer() = default;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace moeserve::server
