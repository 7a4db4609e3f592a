#include "common/process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

using namespace std::chrono_literals;

// True while `pid` exists and is not a zombie.
bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, comm, state;
  if (!(stat >> pid_field >> comm >> state)) return false;
  return state != "Z" && state != "X";
}

TEST(PosixLauncherTest, RunsTheCommandAndReportsItsExitCode) {
  PosixLauncher launcher;
  auto child = launcher.start({"sh", "-c", "exit 3"}, {}, "");
  ASSERT_TRUE(child.ok()) << child.status().to_string();
  EXPECT_EQ((*child)->wait_for(10s), 3);
}

TEST(PosixLauncherTest, ChildrenDieWithASupervisorKilledBySigkill) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t supervisor = fork();
  ASSERT_GE(supervisor, 0);
  if (supervisor == 0) {  // the supervisor: starts a long child, reports its pid, waits
    close(fds[0]);
    PosixLauncher launcher;
    auto child = launcher.start({"sleep", "60"}, {}, "");
    const pid_t pid = child.ok() ? (*child)->pid() : -1;
    if (write(fds[1], &pid, sizeof pid) != sizeof pid) _exit(1);
    pause();
    _exit(0);
  }
  close(fds[1]);
  pid_t grandchild = -1;
  ASSERT_EQ(read(fds[0], &grandchild, sizeof grandchild), static_cast<ssize_t>(sizeof grandchild));
  close(fds[0]);
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(alive(grandchild));
  kill(supervisor, SIGKILL);
  waitpid(supervisor, nullptr, 0);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (alive(grandchild) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_FALSE(alive(grandchild)) << "the supervisor's child outlived it";
  if (alive(grandchild)) kill(grandchild, SIGKILL);
}

}  // namespace
}  // namespace moeserve
