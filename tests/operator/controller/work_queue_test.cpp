#include "operator/controller/work_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace moeserve::controller {
namespace {

using namespace std::chrono_literals;

TEST(WorkQueue, DeduplicatesQueuedKeys) {
  WorkQueue q;
  q.add("ns/a");
  q.add("ns/b");
  q.add("ns/a");
  EXPECT_EQ(q.depth(), 2u);
  EXPECT_EQ(q.get_for(100ms), "ns/a");
  EXPECT_EQ(q.get_for(100ms), "ns/b");
  EXPECT_EQ(q.get_for(20ms), std::nullopt);
}

TEST(WorkQueue, KeyBeingProcessedIsNotHandedOutAgainUntilDone) {
  WorkQueue q;
  q.add("ns/a");
  ASSERT_EQ(q.get_for(100ms), "ns/a");
  q.add("ns/a");  // changed while being reconciled
  EXPECT_EQ(q.get_for(50ms), std::nullopt) << "a second worker must not get ns/a now";
  q.done("ns/a");
  EXPECT_EQ(q.get_for(100ms), "ns/a") << "requeued once the first worker finished";
  q.done("ns/a");
  EXPECT_EQ(q.get_for(20ms), std::nullopt);
}

TEST(WorkQueue, NoKeyIsReconciledTwiceAtOnceUnderConcurrency) {
  WorkQueue q;
  std::atomic<int> concurrent{0};
  std::atomic<bool> overlap{false};
  std::atomic<int> handled{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      while (auto key = q.get()) {
        if (concurrent.fetch_add(1) != 0) overlap = true;
        std::this_thread::sleep_for(1ms);
        concurrent.fetch_sub(1);
        ++handled;
        q.done(*key);
      }
    });
  }
  for (int i = 0; i < 200; ++i) q.add("ns/only");
  std::this_thread::sleep_for(100ms);
  q.shut_down();
  for (auto& t : workers) t.join();
  EXPECT_FALSE(overlap.load());
  EXPECT_GE(handled.load(), 1);
}

TEST(WorkQueue, PerItemBackoffDoublesAndForgetResets) {
  FakeClock clock;
  RateLimit limit;
  limit.base_delay = 100ms;
  limit.max_delay = 1000ms;
  WorkQueue q(limit, &clock);
  q.add_rate_limited("ns/a");  // 100 ms
  EXPECT_EQ(q.failures("ns/a"), 1);
  EXPECT_EQ(q.get_for(30ms), std::nullopt);
  clock.advance(100ms);
  ASSERT_EQ(q.get_for(200ms), "ns/a");
  q.done("ns/a");
  q.add_rate_limited("ns/a");  // 200 ms
  clock.advance(150ms);
  EXPECT_EQ(q.get_for(30ms), std::nullopt);
  clock.advance(50ms);
  ASSERT_EQ(q.get_for(200ms), "ns/a");
  q.done("ns/a");
  for (int i = 0; i < 10; ++i) {
    q.add_rate_limited("ns/b");
    clock.advance(1000ms);
    ASSERT_EQ(q.get_for(200ms), "ns/b");
    q.done("ns/b");
  }
  q.add_rate_limited("ns/b");  // 100 ms * 2^10, capped
  clock.advance(999ms);
  EXPECT_EQ(q.get_for(30ms), std::nullopt) << "capped at max_delay (1 s), not earlier";
  clock.advance(1ms);
  EXPECT_EQ(q.get_for(200ms), "ns/b");
  q.forget("ns/a");
  EXPECT_EQ(q.failures("ns/a"), 0);
}

TEST(WorkQueue, TokenBucketDelaysBeyondBurst) {
  FakeClock clock;
  RateLimit limit;
  limit.base_delay = 1ms;
  limit.qps = 10;
  limit.burst = 2;
  WorkQueue q(limit, &clock);
  q.add_rate_limited("a");
  q.add_rate_limited("b");
  q.add_rate_limited("c");  // third within the burst of 2: waits 100 ms for a token
  clock.advance(1ms);
  std::set<std::string> got;
  while (auto k = q.get_for(30ms)) got.insert(*k);
  EXPECT_EQ(got, (std::set<std::string>{"a", "b"}));
  clock.advance(100ms);
  EXPECT_EQ(q.get_for(200ms), "c");
}

TEST(WorkQueue, AddAfterKeepsTheEarliestAndPlainAddWins) {
  FakeClock clock;
  WorkQueue q({}, &clock);
  q.add_after("ns/a", 10s);
  q.add_after("ns/a", 2s);
  clock.advance(2s);
  EXPECT_EQ(q.get_for(200ms), "ns/a");
  q.done("ns/a");
  q.add_after("ns/b", 60s);
  q.add("ns/b");
  EXPECT_EQ(q.get_for(200ms), "ns/b");
  q.done("ns/b");
  clock.advance(61s);
  EXPECT_EQ(q.get_for(50ms), std::nullopt) << "the delayed add was superseded";
}

TEST(WorkQueue, ShutDownReleasesWaitingWorkers) {
  WorkQueue q;
  std::thread worker([&] { EXPECT_EQ(q.get(), std::nullopt); });
  std::this_thread::sleep_for(20ms);
  q.shut_down();
  worker.join();
  q.add("x");
  EXPECT_EQ(q.depth(), 0u);
}

}  // namespace
}  // namespace moeserve::controller
