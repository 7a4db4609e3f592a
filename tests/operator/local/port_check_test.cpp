#include "operator/local/port_check.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace moeserve::local {
namespace {

// A socket of "another process" listening on 127.0.0.1 at a kernel-picked port.
class HeldPort {
 public:
  HeldPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 1), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  ~HeldPort() { ::close(fd_); }
  uint16_t port() const { return port_; }
  void release() {
    ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

TEST(PortCheck, APortAnotherProcessListensOnIsRefusedWithItsUseAndTheFlagToChange) {
  HeldPort held;
  const Status s =
      check_port_free("127.0.0.1", {held.port(), "group 0 rank 0 HTTP API", "--base-port"});
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "local: port " + std::to_string(held.port()) +
                             " on 127.0.0.1 (group 0 rank 0 HTTP API) is already in use by "
                             "another process; stop that process or change --base-port so that "
                             "local mode's ports are free");
}

TEST(PortCheck, AFreePortPassesAndTheCheckLeavesItFree) {
  HeldPort held;
  const uint16_t port = held.port();
  held.release();
  const PlannedPort planned{port, "the OpenAI endpoint", "--port"};
  EXPECT_TRUE(check_port_free("127.0.0.1", planned).ok());
  EXPECT_TRUE(check_port_free("127.0.0.1", planned).ok()) << "the probe released it";
}

TEST(PortCheck, TheFirstHeldPortOfAListIsTheOneNamed) {
  HeldPort free_one;
  const uint16_t free_port = free_one.port();
  free_one.release();
  HeldPort held;
  const Status s = check_ports_free(
      "127.0.0.1", {{free_port, "the OpenAI endpoint", "--port"},
                    {held.port(), "group 1 rendezvous store (collective setup)", "--base-port"}});
  EXPECT_NE(s.message().find("port " + std::to_string(held.port()) +
                             " on 127.0.0.1 (group 1 rendezvous store"),
            std::string::npos)
      << s.message();
}

TEST(PortCheck, AHostThatIsNotAnIpLiteralIsInvalid) {
  const Status s = check_port_free("localhost", {8000, "the OpenAI endpoint", "--port"});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--host localhost is not an IP address"), std::string::npos);
}

}  // namespace
}  // namespace moeserve::local
