// GlooCommunicator collectives on real TCP groups of 1-4 ranks (threads of this
// process, each with its own Group: store, rendezvous and gloo mesh on 127.0.0.1).
#include "worker/parallel/gloo_communicator.h"

#include <gtest/gtest.h>

#include <dirent.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "tests/support/test_util.h"
#include "worker/parallel/group.h"

namespace moeserve::parallel {
namespace {

using std::chrono::milliseconds;

GroupOptions options_for(int rank, int world_size, uint16_t port) {
  GroupOptions o;
  o.rank = rank;
  o.world_size = world_size;
  o.leader = "127.0.0.1:" + std::to_string(port);
  o.rendezvous_timeout = milliseconds(10000);
  o.collective_timeout = milliseconds(10000);
  return o;
}

// Runs body(group) on `world_size` ranks, one thread each, started in reverse order.
void run_group(int world_size, const std::function<void(Group&)>& body) {
  const uint16_t port = testing::free_port();
  std::vector<std::thread> threads;
  for (int rank = world_size - 1; rank >= 0; --rank) {
    threads.emplace_back([=] {
      auto group = Group::join(options_for(rank, world_size, port));
      ASSERT_TRUE(group.ok()) << group.status().to_string();
      body(**group);
      // Rank 0 serves the store: keep every rank until all are done with it.
      ASSERT_TRUE((*group)->comm().barrier().ok());
    });
  }
  for (std::thread& t : threads) t.join();
}

class Collectives : public ::testing::TestWithParam<int> {};

TEST_P(Collectives, AllToAllVMovesVariableByteCountsIncludingEmptyOnes) {
  const int n = GetParam();
  run_group(n, [n](Group& g) {
    Communicator& comm = g.comm();
    const int me = comm.rank();
    // Rank r sends (r + p) % 3 bytes to p, each byte = 16 * r + p + index.
    std::vector<int64_t> send_bytes(n);
    std::vector<char> send;
    for (int p = 0; p < n; ++p) {
      send_bytes[p] = (me + p) % 3;
      for (int64_t i = 0; i < send_bytes[p]; ++i)
        send.push_back(static_cast<char>(16 * me + p + i));
    }
    auto recv_bytes = exchange_counts(comm, send_bytes);
    ASSERT_TRUE(recv_bytes.ok()) << recv_bytes.status().to_string();
    std::vector<char> recv(std::accumulate(recv_bytes->begin(), recv_bytes->end(), int64_t{0}));
    ASSERT_TRUE(comm.all_to_all_v(send.data(), send_bytes, recv.data(), *recv_bytes).ok());
    size_t at = 0;
    for (int p = 0; p < n; ++p) {
      ASSERT_EQ((*recv_bytes)[p], (p + me) % 3);
      for (int64_t i = 0; i < (*recv_bytes)[p]; ++i) {
        EXPECT_EQ(recv[at++], static_cast<char>(16 * p + me + i)) << "from " << p;
      }
    }
  });
}

TEST_P(Collectives, AllReduceSumIsTheRankOrderSumOnEveryRank) {
  const int n = GetParam();
  run_group(n, [n](Group& g) {
    auto values_of = [](int rank) {
      std::mt19937 rng(rank + 1);
      std::normal_distribution<float> normal;
      std::vector<float> v(37);
      for (float& x : v) x = normal(rng);
      return v;
    };
    std::vector<float> data = values_of(g.rank());
    std::vector<float> expected(data.size(), 0.0f);
    for (int r = 0; r < n; ++r) {
      const std::vector<float> peer = values_of(r);
      for (size_t i = 0; i < expected.size(); ++i) expected[i] += peer[i];
    }
    ASSERT_TRUE(g.comm().all_reduce_sum(data.data(), static_cast<int64_t>(data.size())).ok());
    for (size_t i = 0; i < data.size(); ++i) EXPECT_FLOAT_EQ(data[i], expected[i]);
  });
}

TEST_P(Collectives, AllGatherBroadcastAndMax) {
  const int n = GetParam();
  run_group(n, [n](Group& g) {
    Communicator& comm = g.comm();
    const int64_t mine[2] = {100 + comm.rank(), -comm.rank()};
    std::vector<int64_t> all(2 * n);
    ASSERT_TRUE(comm.all_gather(mine, sizeof(mine), all.data()).ok());
    for (int r = 0; r < n; ++r) {
      EXPECT_EQ(all[2 * r], 100 + r);
      EXPECT_EQ(all[2 * r + 1], -r);
    }
    auto max = all_reduce_max(comm, std::span<const int64_t>(mine, 2));
    ASSERT_TRUE(max.ok());
    EXPECT_EQ((*max)[0], 100 + n - 1);
    EXPECT_EQ((*max)[1], 0);
    std::string text = comm.rank() == n - 1 ? "from the last rank" : std::string(18, '?');
    ASSERT_TRUE(comm.broadcast(text.data(), static_cast<int64_t>(text.size()), n - 1).ok());
    EXPECT_EQ(text, "from the last rank");
    EXPECT_TRUE(comm.barrier().ok());
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, Collectives, ::testing::Values(1, 2, 4));

TEST(GlooFailure, AHungPeerIsDeadlineExceededNamingIt) {
  const uint16_t port = testing::free_port();
  std::thread quiet([&] {
    auto group = Group::join(options_for(1, 2, port));
    ASSERT_TRUE(group.ok());
    // Never calls the collective; stays connected until rank 0 gave up.
    std::this_thread::sleep_for(milliseconds(1500));
  });
  auto group = Group::join(options_for(0, 2, port));
  ASSERT_TRUE(group.ok()) << group.status().to_string();
  (*group)->comm().set_timeout(milliseconds(300));
  Status s = (*group)->comm().barrier();
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(s.message().find("lost rank 1"), std::string::npos) << s.message();
  // Broken from now on: the same error without waiting again.
  EXPECT_EQ((*group)->comm().barrier(), s);
  quiet.join();
}

TEST(GlooFailure, AClosedPeerIsUnavailableNamingIt) {
  const uint16_t port = testing::free_port();
  std::thread leaver([&] {
    auto group = Group::join(options_for(1, 2, port));
    ASSERT_TRUE(group.ok());
    ASSERT_TRUE((*group)->comm().barrier().ok());
  });  // rank 1's group (and its connections) close here
  auto group = Group::join(options_for(0, 2, port));
  ASSERT_TRUE(group.ok()) << group.status().to_string();
  ASSERT_TRUE((*group)->comm().barrier().ok());
  leaver.join();
  Status s = (*group)->comm().barrier();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("lost rank 1"), std::string::npos) << s.message();
}

// The TCP ports this process listens on: /proc/net/tcp{,6} rows in state LISTEN (0A)
// whose socket inode is one of this process's descriptors.
std::set<uint16_t> listening_ports_of_this_process() {
  std::set<std::string> inodes;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* entry = ::readdir(dir)) {
      char target[128] = {};
      const std::string link = std::string("/proc/self/fd/") + entry->d_name;
      const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
      const std::string text(target, n > 0 ? size_t(n) : 0);
      if (text.rfind("socket:[", 0) == 0) inodes.insert(text.substr(8, text.size() - 9));
    }
    ::closedir(dir);
  }
  std::set<uint16_t> ports;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream row(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      row >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
          inode;
      if (state != "0A" || !inodes.count(inode)) continue;
      ports.insert(
          static_cast<uint16_t>(std::stoul(local.substr(local.rfind(':') + 1), nullptr, 16)));
    }
  }
  return ports;
}

// A stranger cannot send garbage to a collective port of a formed group: once the gloo
// mesh is connected no gloo socket listens, and the only listener left is rank 0's
// rendezvous store (whose malformed-frame handling store_fault_test.cpp covers).
TEST(GlooFailure, NoCollectivePortListensOnceTheGroupHasFormed) {
  const std::set<uint16_t> before = listening_ports_of_this_process();
  const uint16_t port = testing::free_port();
  std::atomic<bool> checked{false};
  std::thread other([&] {
    auto group = Group::join(options_for(1, 2, port));
    ASSERT_TRUE(group.ok()) << group.status().to_string();
    ASSERT_TRUE((*group)->comm().barrier().ok());
    while (!checked) std::this_thread::sleep_for(milliseconds(5));
    ASSERT_TRUE((*group)->comm().barrier().ok());
  });
  auto group = Group::join(options_for(0, 2, port));
  ASSERT_TRUE(group.ok()) << group.status().to_string();
  ASSERT_TRUE((*group)->comm().barrier().ok());
  std::set<uint16_t> opened;
  for (uint16_t p : listening_ports_of_this_process()) {
    if (!before.count(p)) opened.insert(p);
  }
  checked = true;
  ASSERT_TRUE((*group)->comm().barrier().ok());
  other.join();
  EXPECT_EQ(opened, (std::set<uint16_t>{port}));
}

TEST(GroupJoin, WrongWorldSizeTimesOutOnRankZeroListingTheMissingRank) {
  const uint16_t port = testing::free_port();
  GroupOptions leader = options_for(0, 2, port);
  leader.rendezvous_timeout = milliseconds(1500);
  Status refused;
  std::thread other([&] {
    GroupOptions wrong = options_for(1, 3, port);
    wrong.rendezvous_timeout = milliseconds(1500);
    refused = Group::join(wrong).status();
  });
  Status s = Group::join(leader).status();
  other.join();
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("world size mismatch"), std::string::npos) << refused.message();
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(s.message().find("joined/1"), std::string::npos) << s.message();
}

TEST(GroupJoin, ValidatesOptionsBeforeConnecting) {
  GroupOptions o = options_for(2, 2, 1234);
  EXPECT_NE(validate(o).message().find("--rank 2"), std::string::npos);
  o = options_for(0, 2, 1234);
  o.leader = "nohostport";
  EXPECT_NE(validate(o).message().find("--leader"), std::string::npos);
}

}  // namespace
}  // namespace moeserve::parallel
