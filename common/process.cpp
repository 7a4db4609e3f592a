#include "common/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

extern char** environ;

namespace moeserve {
namespace {

class PosixChild : public ChildProcess {
 public:
  explicit PosixChild(pid_t pid) : pid_(pid) {}
  ~PosixChild() override {
    if (running()) {
      ::kill(pid_, SIGKILL);
      wait_for(std::chrono::milliseconds(5000));
    }
  }
  pid_t pid() const override { return pid_; }
  bool running() override {
    if (exit_code_) return false;
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == 0) return true;
    exit_code_ = r < 0 ? -1 : (WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return false;
  }
  void signal(int signo) override {
    if (running()) ::kill(pid_, signo);
  }
  std::optional<int> wait_for(std::chrono::milliseconds timeout) override {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (running()) {
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return exit_code_;
  }

 private:
  pid_t pid_;
  std::optional<int> exit_code_;
};

}  // namespace

StatusOr<std::unique_ptr<ChildProcess>> PosixLauncher::start(const std::vector<std::string>& argv,
                                                             const std::vector<std::string>& env,
                                                             const std::string& log_path) {
  if (argv.empty()) return invalid_argument_error("start process: empty command line");
  // Everything the child needs is prepared before fork (no allocation after it).
  std::vector<std::string> environment;
  for (char** e = environ; *e; ++e) environment.emplace_back(*e);
  environment.insert(environment.end(), env.begin(), env.end());
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : environment) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int log_fd = -1;
  if (!log_path.empty()) {
    log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      return unavailable_error("start " + argv[0] + ": cannot open log " + log_path + ": " +
                               std::strerror(errno));
    }
  }
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    if (log_fd >= 0) close(log_fd);
    return unavailable_error("start " + argv[0] + ": fork failed: " + std::strerror(errno));
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);  // undo the parent's blocked signals
    // Die with the supervisor, however it dies (SIGKILL included), so no orphan keeps
    // its ports; SIGTERM lets a worker drain. If the parent is already gone, exit now.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(128 + SIGTERM);
    if (log_fd >= 0) {
      dup2(log_fd, 1);
      dup2(log_fd, 2);
    }
    execvpe(args[0], args.data(), envp.data());
    _exit(127);
  }
  if (log_fd >= 0) close(log_fd);
  return std::unique_ptr<ChildProcess>(std::make_unique<PosixChild>(pid));
}

std::string executable_dir() {
  std::error_code ec;
  auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : path.parent_path().string();
}

}  // namespace moeserve
