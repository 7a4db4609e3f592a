// The local platform: runs a ModelDeployment's groups as local worker processes,
// supervises them as the operator would supervise pods, and serves one OpenAI endpoint
// in front of them: the gateway's Proxy (operator/gateway/proxy.h), for which the runner
// is the Discovery.
//
// - Every rank of every wanted group is started (local_plan.h); when any rank of a group
//   exits, the whole group is stopped and restarted with exponential backoff (1 s to
//   30 s), because a group with a lost rank cannot serve.
// - Before a group starts (the first time, after a loss, on waking from zero) its ports
//   (local_plan.h's group_ports) are checked free on worker_host (port_check.h): a port
//   another process holds fails the start, naming the port, instead of that process
//   being polled as the group's rank 0; the supervisor retries with the same backoff.
// - A group is ready when its rank 0 answers /readyz with 200 (polled every 500 ms).
// - The front door is the gateway: routing by load and prefix over ready groups, retry
//   on another group before the first byte, requests held while no group is ready and
//   one is starting (the deployment's spec.gateway queue). /healthz, /readyz (ready when
//   a group is) and /metrics (the gateway's, plus groups desired and ready) are its own.
// - Scale to zero (scale_to_zero_after_idle set): groups that ran no request for that
//   long are stopped; a request held by the gateway (report_waiting > 0) starts them
//   again. With start_at_zero no group starts until a request waits.
// - stop(): the front door drains, then every worker gets SIGTERM and `grace` to exit,
//   then SIGKILL.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "common/http_server.h"
#include "common/process.h"
#include "operator/gateway/discovery.h"
#include "operator/gateway/proxy.h"
#include "operator/local/local_plan.h"

namespace moeserve::local {

struct RunnerOptions {
  std::string front_host = "127.0.0.1";
  uint16_t front_port = 8000;
  std::string worker_host = "127.0.0.1";  // LocalOptions::host: where the workers bind
  std::string logs_dir;  // worker logs: <logs_dir>/<deployment>-g<i>-r<r>.log; "" inherits
  std::chrono::milliseconds grace{10000};
  std::string served_model;  // the OpenAI `model` of the deployment
  int32_t queue_size = 64;   // spec.gateway
  int32_t queue_timeout_seconds = 300;
  gateway::ProxyOptions proxy;
  std::optional<std::chrono::seconds> scale_to_zero_after_idle;
  bool start_at_zero = false;  // needs scale_to_zero_after_idle
};

class LocalRunner : public gateway::Discovery {
 public:
  LocalRunner(std::vector<GroupProcesses> groups, std::string deployment, RunnerOptions options,
              ProcessLauncher* launcher);
  ~LocalRunner() override;

  // Starts the workers, the supervisor and the front door.
  Status start();
  void stop();
  uint16_t front_port() const;
  int ready_groups() const;
  // Restarts so far (all groups).
  int64_t restarts() const { return restarts_.load(); }

  // gateway::Discovery: the deployment's groups as the proxy routes to them.
  gateway::Snapshot snapshot() const override;
  void report_waiting(const std::string& deployment, int64_t waiting) override;

 private:
  struct Group {
    GroupProcesses spec;
    std::vector<std::unique_ptr<ChildProcess>> ranks;
    std::atomic<bool> wanted{true};
    std::atomic<bool> ready{false};
    int failures = 0;
    std::chrono::steady_clock::time_point restart_at{};
  };

  Status start_group(Group& group);
  void stop_group(Group& group, std::chrono::milliseconds grace);
  void supervise();
  // Schedules the group's next start after the backoff of its failures so far.
  void back_off(Group& group, std::chrono::steady_clock::time_point now);
  // Scale to zero: stops every group once the deployment has been idle long enough.
  void stop_if_idle();
  int wanted_groups() const;
  std::string upstream_id(const Group& group) const;
  std::string qualified_name() const { return "local/" + deployment_; }

  std::vector<std::unique_ptr<Group>> groups_;
  std::string deployment_;
  RunnerOptions options_;
  ProcessLauncher* launcher_;
  std::mutex mutex_;  // guards the processes of every group
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> restarts_{0};
  std::atomic<int64_t> woke_at_ns_{0};  // steady clock, when the groups were last wanted
  std::thread supervisor_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge* groups_desired_ = nullptr;
  prometheus::Gauge* groups_ready_ = nullptr;
  std::unique_ptr<gateway::Proxy> proxy_;
  std::unique_ptr<http::Server> front_;
};

}  // namespace moeserve::local
