// The local platform: runs a ModelDeployment's groups as local worker processes,
// supervises them as the operator would supervise pods, and serves one OpenAI endpoint
// in front of them (the stand-in for Service x).
//
// - Every rank of every group is started (local_plan.h); when any rank of a group exits,
//   the whole group is stopped and restarted with exponential backoff (1 s to 30 s),
//   because a group with a lost rank cannot serve.
// - A group is ready when its rank 0 answers /readyz with 200 (polled every 500 ms).
// - The front door proxies /v1/* to the rank 0 of ready groups, round-robin, streaming
//   the response through (SSE included); with no ready group it answers 503 in OpenAI's
//   error shape. /healthz, /readyz (ready when a group is) and /metrics (groups desired
//   and ready) are its own.
// - stop(): the front door drains, then every worker gets SIGTERM and `grace` to exit,
//   then SIGKILL.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "common/http_server.h"
#include "common/process.h"
#include "operator/local/local_plan.h"

namespace moeserve::local {

struct RunnerOptions {
  std::string front_host = "127.0.0.1";
  uint16_t front_port = 8000;
  std::string logs_dir;  // worker logs: <logs_dir>/<deployment>-g<i>-r<r>.log; "" inherits
  std::chrono::milliseconds grace{10000};
};

class LocalRunner {
 public:
  LocalRunner(std::vector<GroupProcesses> groups, std::string deployment, RunnerOptions options,
              ProcessLauncher* launcher);
  ~LocalRunner();

  // Starts the workers, the supervisor and the front door.
  Status start();
  void stop();
  uint16_t front_port() const;
  int ready_groups() const;
  // Restarts so far (all groups).
  int64_t restarts() const { return restarts_.load(); }

 private:
  struct Group {
    GroupProcesses spec;
    std::vector<std::unique_ptr<ChildProcess>> ranks;
    std::atomic<bool> ready{false};
    int failures = 0;
    std::chrono::steady_clock::time_point restart_at{};
  };

  Status start_group(Group& group);
  void stop_group(Group& group, std::chrono::milliseconds grace);
  void supervise();
  void proxy(const http::Request& request, http::Responder& out);

  std::vector<std::unique_ptr<Group>> groups_;
  std::string deployment_;
  RunnerOptions options_;
  ProcessLauncher* launcher_;
  std::mutex mutex_;  // guards the processes of every group
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> restarts_{0};
  std::atomic<uint64_t> next_group_{0};
  std::thread supervisor_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge* groups_desired_ = nullptr;
  prometheus::Gauge* groups_ready_ = nullptr;
  std::unique_ptr<http::Server> front_;
};

}  // namespace moeserve::local
