// The local runner's start against a held port: no rank is launched onto a port that
// another process holds (the supervisor would take that process for the group).
#include "operator/local/local_runner.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace moeserve::local {
namespace {

class FakeChild : public ChildProcess {
 public:
  pid_t pid() const override { return 4242; }
  bool running() override { return true; }
  void signal(int) override {}
  std::optional<int> wait_for(std::chrono::milliseconds) override { return 0; }
};

class CountingLauncher : public ProcessLauncher {
 public:
  StatusOr<std::unique_ptr<ChildProcess>> start(const std::vector<std::string>&,
                                                const std::vector<std::string>&,
                                                const std::string&) override {
    starts += 1;
    return std::unique_ptr<ChildProcess>(new FakeChild());
  }
  int starts = 0;
};

// A listener on a kernel-picked loopback port, closed on destruction.
struct Listener {
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd, 1), 0);
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port = ntohs(addr.sin_port);
  }
  ~Listener() { ::close(fd); }
  int fd = -1;
  uint16_t port = 0;
};

std::vector<GroupProcesses> one_group(uint16_t port) {
  GroupProcesses g;
  g.endpoint = "http://127.0.0.1:" + std::to_string(port);
  RankProcess r;
  r.http_port = port;
  r.argv = {"moeserve-worker", "serve"};
  g.ranks.push_back(r);
  return {g};
}

RunnerOptions options() {
  RunnerOptions o;
  o.front_port = 0;
  o.grace = std::chrono::milliseconds(0);
  return o;
}

TEST(LocalRunner, AGroupWhosePortAnotherProcessHoldsIsNotLaunched) {
  Listener stranger;
  CountingLauncher launcher;
  LocalRunner runner(one_group(stranger.port), "demo", options(), &launcher);
  const Status s = runner.start();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("port " + std::to_string(stranger.port) +
                             " on 127.0.0.1 (group 0 rank 0 HTTP API) is already in use"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(launcher.starts, 0);
}

TEST(LocalRunner, AGroupWithFreePortsIsLaunched) {
  uint16_t port = 0;
  {
    Listener probe;
    port = probe.port;
  }
  CountingLauncher launcher;
  LocalRunner runner(one_group(port), "demo", options(), &launcher);
  ASSERT_TRUE(runner.start().ok());
  EXPECT_EQ(launcher.starts, 1);
  runner.stop();
}

}  // namespace
}  // namespace moeserve::local
