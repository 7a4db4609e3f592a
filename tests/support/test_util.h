// Helpers shared by tests: temporary folders, child processes stopped by PID, free
// ports, raw TCP exchanges on 127.0.0.1, and polling with a deadline.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/process.h"

namespace moeserve::testing {

// A fresh folder under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A child process (common/process.h's PosixLauncher), killed with SIGKILL on
// destruction if still running. Throws when it cannot be started.
class Process {
 public:
  // stdout and stderr go to `log_path` when given, else are inherited.
  Process(const std::vector<std::string>& argv, const std::string& log_path = "",
          const std::vector<std::string>& extra_env = {});
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return child_->pid(); }
  bool running() { return child_->running(); }
  void signal(int sig) { child_->signal(sig); }
  // Waits for exit; returns the exit code, 128+signal for a signal, -1 on timeout.
  int wait(std::chrono::milliseconds timeout);

 private:
  std::unique_ptr<ChildProcess> child_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
uint16_t free_port();
// A free port to start a block of `span` consecutive ports (local mode's --base-port)
// whose block does not contain `avoid` (the --port given with it); every port of the
// block could be bound a moment ago.
uint16_t free_base_port(uint16_t avoid, int span = 64);

// Sends `bytes` to 127.0.0.1:port and reads until the peer closes or `timeout`.
std::string raw_exchange(uint16_t port, const std::string& bytes,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

// Polls `condition` every 20 ms until true or `timeout`; returns the last result.
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& contents);

// Runs a shell command, returning its exit code; output goes to the test's stderr.
int run_command(const std::string& command);

// Fault-injection runs: the base seed (MOESERVE_FAULT_SEED, else `fallback`) and the
// number of randomized iterations (MOESERVE_FAULT_ITERATIONS, else 1). Tests print the
// seed of each iteration so a failure replays with MOESERVE_FAULT_SEED=<seed>.
uint64_t fault_seed(uint64_t fallback);
int fault_iterations();

// Source and binary folders as CTest passes them (MOESERVE_SOURCE_DIR, MOESERVE_BIN_DIR).
std::string source_dir();
std::string bin_dir();

}  // namespace moeserve::testing
