#include "kernels/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace moeserve::kernels {
namespace {

// Runs parallel_for(n) and returns how often each index was visited plus the chunks seen.
// With `balanced_chunks_per_thread` > 0, through parallel_for_balanced with that many.
std::pair<std::vector<int>, std::vector<std::pair<int64_t, int64_t>>> visit(
    ThreadPool& pool, int64_t n, int balanced_chunks_per_thread = 0) {
  std::vector<std::atomic<int>> counts(static_cast<size_t>(n));
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  const auto fn = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) counts[static_cast<size_t>(i)].fetch_add(1);
    std::lock_guard<std::mutex> lock(mu);
    chunks.emplace_back(begin, end);
  };
  if (balanced_chunks_per_thread > 0) {
    pool.parallel_for_balanced(n, fn, balanced_chunks_per_thread);
  } else {
    pool.parallel_for(n, fn);
  }
  std::vector<int> plain;
  for (auto& c : counts) plain.push_back(c.load());
  return {plain, chunks};
}

TEST(ThreadPoolTest, SizeCountsTheCallingThread) {
  EXPECT_EQ(ThreadPool(1).size(), 1);
  EXPECT_EQ(ThreadPool(3).size(), 3);
  EXPECT_GE(ThreadPool(0).size(), 1);
}

TEST(ThreadPoolTest, EveryIndexRunsExactlyOnceInAtMostSizeContiguousChunks) {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 5, 7, 100, 1001}) {
      auto [counts, chunks] = visit(pool, n);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(counts[i], 1) << "threads " << threads;
      EXPECT_LE(static_cast<int64_t>(chunks.size()), std::max<int64_t>(threads, 1));
      int64_t covered = 0;
      for (auto [begin, end] : chunks) {
        EXPECT_LT(begin, end);
        covered += end - begin;
      }
      EXPECT_EQ(covered, n);
    }
  }
}

TEST(ThreadPoolTest, BalancedCoversEveryIndexOnceInFinerChunksAndMixesWithStaticCalls) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int round = 0; round < 200; ++round) {
      for (int64_t n : {0, 1, 2, 5, 13, 100}) {
        // Static, then balanced with the default, 2 and 1 chunks per thread.
        const int per_thread = std::array{0, ThreadPool::kBalancedChunksPerThread, 2, 1}[round % 4];
        const bool balanced = per_thread > 0;
        auto [counts, chunks] = visit(pool, n, per_thread);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(counts[i], 1) << "threads " << threads;
        const int64_t limit = threads * (balanced ? per_thread : 1);
        EXPECT_LE(static_cast<int64_t>(chunks.size()), std::min<int64_t>(n, limit));
        if (balanced && threads > 1 && n >= limit) {
          EXPECT_EQ(static_cast<int64_t>(chunks.size()), limit);
        }
        for (auto [begin, end] : chunks) EXPECT_LT(begin, end);
      }
    }
  }
}

TEST(ThreadPoolTest, WorkRunsOnSeveralThreads) {
  ThreadPool pool(3);
  std::mutex mu;
  std::vector<std::thread::id> ids;
  pool.parallel_for(3, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mu);
    ids.push_back(std::this_thread::get_id());
  });
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_NE(ids[1], ids[2]);
  EXPECT_NE(ids[0], ids[2]);
}

TEST(ThreadPoolTest, ManyBackToBackCallsAndCallsAfterWorkersSleptAllComplete) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  for (int round = 0; round < 2000; ++round) {
    if (round % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    pool.parallel_for(10, [&](int64_t begin, int64_t end) { total.fetch_add(end - begin); });
  }
  EXPECT_EQ(total.load(), 2000 * 10);
}

TEST(ThreadPoolTest, NestedCallsRunInlineAndConcurrentCallersAreSerialised) {
  ThreadPool pool(2);
  std::atomic<int64_t> inner{0};
  pool.parallel_for(4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      pool.parallel_for(5, [&](int64_t b, int64_t e) { inner.fetch_add(e - b); });
    }
  });
  EXPECT_EQ(inner.load(), 20);

  std::atomic<int64_t> total{0};
  auto caller = [&] {
    for (int i = 0; i < 300; ++i) {
      pool.parallel_for(7, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
    }
  };
  std::thread a(caller);
  std::thread b(caller);
  a.join();
  b.join();
  EXPECT_EQ(total.load(), 2 * 300 * 7);
}

}  // namespace
}  // namespace moeserve::kernels
