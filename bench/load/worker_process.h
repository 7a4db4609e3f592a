// A real `moeserve-worker serve` process on a generated tiny model, for the benchmarks
// that drive a worker over loopback (bench-load's scenarios, bench-gateway), and the
// /proc samples (resident memory, open descriptors) a soak watches.
//
// start() writes the tiny model (tools/fixtures) into `dir`, picks a free loopback port,
// launches the worker with the given extra flags and its log at <dir>/worker.log, and
// waits until /readyz answers 200. The process is killed when the WorkerProcess is
// destroyed if still running. Not thread-safe (one owner), but url() and pid() may be
// read from any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/process.h"
#include "common/status.h"

namespace moeserve::load {

struct WorkerOptions {
  std::string binary;  // the moeserve-worker to run
  std::string dir;     // the model and the log go here (created)
  std::string served_model_name = "tiny";
  uint64_t model_seed = 3;
  std::vector<std::string> extra_args;  // e.g. {"--threads", "1", "--max-queue", "8"}
  std::chrono::seconds ready_timeout{60};
};

class WorkerProcess {
 public:
  static StatusOr<std::unique_ptr<WorkerProcess>> start(const WorkerOptions& options);

  const std::string& url() const { return url_; }
  pid_t pid() const { return child_->pid(); }
  const std::string& log_path() const { return log_path_; }
  void signal(int signo) { child_->signal(signo); }
  // The exit code (128 + signal when killed), nullopt while still running at the timeout.
  std::optional<int> wait_for(std::chrono::milliseconds timeout) {
    return child_->wait_for(timeout);
  }

 private:
  WorkerProcess() = default;
  PosixLauncher launcher_;
  std::unique_ptr<ChildProcess> child_;
  std::string url_;
  std::string log_path_;
};

// A loopback TCP port that was free a moment ago (the kernel's pick).
StatusOr<uint16_t> free_loopback_port();

// Polls GET <url>/readyz every 100 ms until it answers 200 or `timeout` passes.
bool wait_ready(const std::string& url, std::chrono::milliseconds timeout);

// One sample of a process: VmRSS from /proc/<pid>/status and the entries of
// /proc/<pid>/fd. not_found once the process is gone.
struct ProcSample {
  double at_s = 0;  // seconds from the start of the series (the caller's clock)
  int64_t rss_bytes = 0;
  int64_t open_fds = 0;
};
StatusOr<ProcSample> sample_process(pid_t pid);

}  // namespace moeserve::load
