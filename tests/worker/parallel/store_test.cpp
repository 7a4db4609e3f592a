// The rendezvous store: set/get/wait with timeouts, join refusals, and the connect
// retry that lets ranks start before rank 0.
#include "worker/parallel/store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/support/test_util.h"

namespace moeserve::parallel {
namespace {

using std::chrono::milliseconds;

HostPort loopback(uint16_t port) { return HostPort{"127.0.0.1", port}; }

std::unique_ptr<StoreServer> start_server(int world_size) {
  auto server = StoreServer::start(loopback(0), world_size);
  EXPECT_TRUE(server.ok()) << server.status().to_string();
  return std::move(server).value();
}

std::unique_ptr<StoreClient> join(uint16_t port, int rank, int world_size) {
  auto client =
      StoreClient::connect(loopback(port), rank, world_size, deadline_after(milliseconds(5000)));
  EXPECT_TRUE(client.ok()) << client.status().to_string();
  return client.ok() ? std::move(client).value() : nullptr;
}

TEST(Store, SetThenGetReturnsTheBytesFromAnotherClient) {
  auto server = start_server(2);
  auto a = join(server->port(), 0, 2);
  auto b = join(server->port(), 1, 2);
  const std::string value("bin\0ary\xff", 8);
  ASSERT_TRUE(a->set("k", value, milliseconds(1000)).ok());
  auto got = b->get("k", milliseconds(1000));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(*got, value);
  EXPECT_EQ(server->joined_ranks(), (std::vector<int>{0, 1}));
}

TEST(Store, GetWaitsForAKeySetLater) {
  auto server = start_server(2);
  auto a = join(server->port(), 0, 2);
  auto b = join(server->port(), 1, 2);
  std::thread setter([&] {
    std::this_thread::sleep_for(milliseconds(100));
    EXPECT_TRUE(a->set("late", "v", milliseconds(1000)).ok());
  });
  auto got = b->get("late", milliseconds(5000));
  setter.join();
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(*got, "v");
}

TEST(Store, WaitTimesOutNamingTheMissingKeys) {
  auto server = start_server(1);
  auto a = join(server->port(), 0, 1);
  ASSERT_TRUE(a->set("present", "1", milliseconds(1000)).ok());
  Status s = a->wait({"present", "absent"}, milliseconds(100));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(s.message().find("absent"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("present"), std::string::npos) << s.message();
  EXPECT_EQ(a->get("absent", milliseconds(50)).status().code(), StatusCode::kDeadlineExceeded);
}

TEST(Store, RefusesAWrongWorldSizeWithAClearMessage) {
  auto server = start_server(2);
  auto client =
      StoreClient::connect(loopback(server->port()), 1, 3, deadline_after(milliseconds(2000)));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(client.status().message().find("world size mismatch"), std::string::npos)
      << client.status().message();
  EXPECT_NE(client.status().message().find("--world-size 3"), std::string::npos);
  EXPECT_TRUE(server->joined_ranks().empty());
}

TEST(Store, RefusesADuplicateRankWhileTheFirstIsConnected) {
  auto server = start_server(2);
  auto first = join(server->port(), 1, 2);
  auto second =
      StoreClient::connect(loopback(server->port()), 1, 2, deadline_after(milliseconds(2000)));
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("duplicate rank"), std::string::npos)
      << second.status().message();
  first.reset();  // the rank leaves: its slot is free again
  ASSERT_TRUE(
      testing::wait_until([&] { return server->joined_ranks().empty(); }, milliseconds(5000)));
  EXPECT_NE(join(server->port(), 1, 2), nullptr);
}

TEST(Store, RefusesARankOutsideTheGroup) {
  auto server = start_server(2);
  auto client =
      StoreClient::connect(loopback(server->port()), 2, 2, deadline_after(milliseconds(2000)));
  ASSERT_FALSE(client.ok());
  EXPECT_NE(client.status().message().find("outside"), std::string::npos);
}

TEST(Store, ClientRetriesUntilTheLeaderListens) {
  const uint16_t port = testing::free_port();
  std::unique_ptr<StoreServer> server;
  std::thread late_leader([&] {
    std::this_thread::sleep_for(milliseconds(300));
    auto started = StoreServer::start(loopback(port), 1);
    ASSERT_TRUE(started.ok()) << started.status().to_string();
    server = std::move(started).value();
  });
  auto client = StoreClient::connect(loopback(port), 0, 1, deadline_after(milliseconds(5000)));
  late_leader.join();
  EXPECT_TRUE(client.ok()) << client.status().to_string();
}

TEST(Store, ClientGivesUpAtTheDeadlineWhenNoLeaderComes) {
  const uint16_t port = testing::free_port();
  auto client = StoreClient::connect(loopback(port), 1, 2, deadline_after(milliseconds(200)));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(client.status().message().find("rank 0"), std::string::npos);
}

TEST(Store, ALostLeaderIsUnavailable) {
  auto server = start_server(1);
  auto a = join(server->port(), 0, 1);
  server.reset();
  EXPECT_EQ(a->get("k", milliseconds(1000)).status().code(), StatusCode::kUnavailable);
}

TEST(HostPortParse, AcceptsHostAndPortAndRejectsTheRest) {
  auto ok = parse_host_port("leader.ns.svc:29500", "--leader");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->host, "leader.ns.svc");
  EXPECT_EQ(ok->port, 29500);
  EXPECT_FALSE(parse_host_port("nohost", "--leader").ok());
  EXPECT_FALSE(parse_host_port("h:0", "--leader").ok());
  EXPECT_FALSE(parse_host_port("h:70000", "--leader").ok());
  EXPECT_NE(parse_host_port("h:x", "--leader").status().message().find("--leader"),
            std::string::npos);
}

}  // namespace
}  // namespace moeserve::parallel
