// The rendezvous store against strangers on its port: random bytes, oversized length
// prefixes, truncated frames, lying counts, an HTTP probe, a silent connection, a
// stranger taking a rank. The server neither crashes nor hangs nor reserves memory for
// bytes that never come, and the joined ranks keep working. Seeds are printed;
// MOESERVE_FAULT_SEED replays one, MOESERVE_FAULT_ITERATIONS=N runs N.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <thread>

#include "tests/support/test_util.h"
#include "worker/parallel/store.h"

namespace moeserve::parallel {
namespace {

using std::chrono::milliseconds;
using namespace std::chrono_literals;
using moeserve::testing::raw_exchange;

std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string u64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string frame(const std::string& payload) {
  return u32(static_cast<uint32_t>(payload.size())) + payload;
}

// Resident set of this process (the server's), from /proc.
int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * 4096;
}

class StoreFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = StoreServer::start({"127.0.0.1", 0}, 3, milliseconds(500));
    ASSERT_TRUE(server.ok()) << server.status().to_string();
    server_ = std::move(server).value();
    for (int rank = 0; rank < 2; ++rank) {
      auto client =
          StoreClient::connect({"127.0.0.1", server_->port()}, rank, 3, deadline_after(5000ms));
      ASSERT_TRUE(client.ok()) << client.status().to_string();
      ranks_.push_back(std::move(client).value());
    }
  }

  // The joined ranks still see each other's writes.
  void expect_ranks_work(const std::string& what) {
    const std::string key = "after/" + what;
    ASSERT_TRUE(ranks_[0]->set(key, what, milliseconds(1000)).ok()) << what;
    auto got = ranks_[1]->get(key, milliseconds(1000));
    ASSERT_TRUE(got.ok()) << what << ": " << got.status().to_string();
    EXPECT_EQ(*got, what);
  }

  std::unique_ptr<StoreServer> server_;
  std::vector<std::unique_ptr<StoreClient>> ranks_;
};

TEST_F(StoreFaultTest, MalformedFramesAreAnsweredOrDroppedAndRanksKeepWorking) {
  // A reply is u8 code + u32 length + message; strangers get a refusal, then the close.
  // (Each exchange here returns when the server closes; a 500 ms join timeout bounds it.)
  const std::string truncated = raw_exchange(server_->port(), u32(100) + "only part", 3000ms);
  EXPECT_EQ(truncated, "") << "a truncated frame is dropped once the join timeout passes";
  expect_ranks_work("truncated");

  // Joined as rank 2, then a wait for 2^32 - 1 keys in a 5-byte frame (it used to
  // allocate 2^32 strings and abort the process).
  const std::string huge_count = raw_exchange(server_->port(),
                                              frame(std::string(1, '\x01') + u32(2) + u32(3)) +
                                                  frame(std::string(1, '\x04') + u32(0xffffffffu)),
                                              500ms);
  EXPECT_NE(huge_count.find("malformed request"), std::string::npos);
  expect_ranks_work("huge-count");

  const std::string not_joined = raw_exchange(
      server_->port(), frame(std::string(1, '\x03') + u32(1) + "k" + u64(1000)), 3000ms);
  EXPECT_NE(not_joined.find("join before any other request"), std::string::npos);
  expect_ranks_work("get-before-join");

  // A wait of 2^64 - 1 ms (over the protocol's 2^40 ms bound) is refused as malformed.
  const std::string forever = raw_exchange(
      server_->port(), frame(std::string(1, '\x03') + u32(1) + "k" + u64(~0ull)), 3000ms);
  EXPECT_NE(forever.find("malformed"), std::string::npos) << forever;
  expect_ranks_work("forever-wait");

  const std::string bad_join =
      raw_exchange(server_->port(), frame(std::string(1, '\x01') + u32(7) + u32(3)), 3000ms);
  EXPECT_NE(bad_join.find("outside [0, 3)"), std::string::npos);
  expect_ranks_work("bad-join");

  const std::string http = raw_exchange(server_->port(), "GET / HTTP/1.1\r\n\r\n", 3000ms);
  EXPECT_EQ(http, "") << "an HTTP probe is a 542 MB length prefix: dropped at the join timeout";
  expect_ranks_work("http");
  EXPECT_EQ(server_->joined_ranks(), (std::vector<int>{0, 1}));
}

TEST_F(StoreFaultTest, LengthPrefixesWithoutBytesReserveNoMemory) {
  const int64_t before = resident_bytes();
  // Twenty connections each announcing 1 GiB - 1 (and 0xffffffff, refused outright).
  for (int i = 0; i < 20; ++i) {
    raw_exchange(server_->port(), u32((1u << 30) - 1) + "x", 100ms);
    raw_exchange(server_->port(), u32(0xffffffffu), 100ms);
  }
  EXPECT_LT(resident_bytes() - before, int64_t{64} << 20);
  expect_ranks_work("prefixes");
}

TEST_F(StoreFaultTest, RandomBytesNeverCrashTheServer) {
  const uint64_t base = moeserve::testing::fault_seed(11);
  for (int i = 0; i < moeserve::testing::fault_iterations() * 20; ++i) {
    const uint64_t seed = base + static_cast<uint64_t>(i);
    std::mt19937_64 rng(seed);
    const size_t size = std::uniform_int_distribution<size_t>(1, 512)(rng);
    std::string bytes(size, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    // Half the time, a well-framed payload of random bytes (reaches the decoder).
    if (rng() % 2) bytes = frame(bytes);
    raw_exchange(server_->port(), bytes, 100ms);
    SCOPED_TRACE("seed " + std::to_string(seed));
    ASSERT_NO_FATAL_FAILURE(expect_ranks_work("random-" + std::to_string(seed)));
  }
  std::cout << "random frames from seed " << base << " (replay: MOESERVE_FAULT_SEED=" << base << ")"
            << std::endl;
  EXPECT_EQ(server_->joined_ranks(), (std::vector<int>{0, 1}));
}

TEST_F(StoreFaultTest, AStrangerTakingARankMakesThatRanksJoinFailFastAndClearly) {
  // The protocol has no credentials: whoever joins as rank 2 first is rank 2.
  std::thread stranger([port = server_->port()] {
    raw_exchange(port, frame(std::string(1, '\x01') + u32(2) + u32(3)), 1000ms);
  });
  std::this_thread::sleep_for(200ms);
  auto real = StoreClient::connect({"127.0.0.1", server_->port()}, 2, 3, deadline_after(5000ms));
  stranger.join();
  ASSERT_FALSE(real.ok());
  EXPECT_EQ(real.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(real.status().message().find("duplicate rank: rank 2"), std::string::npos)
      << real.status().message();
  expect_ranks_work("stranger");
}

}  // namespace
}  // namespace moeserve::parallel
