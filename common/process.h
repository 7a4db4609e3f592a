// Child processes behind an interface (after LevelDB's Env), so supervisors are
// testable: start(argv, env, log) forks and execs; a ChildProcess is stopped by its PID.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace moeserve {

class ChildProcess {
 public:
  virtual ~ChildProcess() = default;
  virtual pid_t pid() const = 0;
  // False once the process has exited (reaps it).
  virtual bool running() = 0;
  virtual void signal(int signo) = 0;
  // Waits for exit: the exit code, 128 + signal when killed, nullopt on timeout.
  virtual std::optional<int> wait_for(std::chrono::milliseconds timeout) = 0;
};

class ProcessLauncher {
 public:
  virtual ~ProcessLauncher() = default;
  // `env` entries (NAME=value) are added to the inherited environment; stdout and stderr
  // go to `log_path` (appended) when it is not empty.
  virtual StatusOr<std::unique_ptr<ChildProcess>> start(const std::vector<std::string>& argv,
                                                        const std::vector<std::string>& env,
                                                        const std::string& log_path) = 0;
};

// fork + execvp. A child still running when its ChildProcess is destroyed is killed.
// Children get SIGTERM when the thread that started them exits (PR_SET_PDEATHSIG), so
// a supervisor killed with SIGKILL leaves no orphans; start children from a thread that
// lives as long as they should.
class PosixLauncher : public ProcessLauncher {
 public:
  StatusOr<std::unique_ptr<ChildProcess>> start(const std::vector<std::string>& argv,
                                                const std::vector<std::string>& env,
                                                const std::string& log_path) override;
};

// The folder of the running executable (/proc/self/exe), for finding sibling binaries.
std::string executable_dir();

}  // namespace moeserve
