#include "worker/engine/kv_cache.h"

#include <gtest/gtest.h>

#include <set>

namespace moeserve::engine {
namespace {

KvCacheConfig small_config(int64_t blocks) {
  return KvCacheConfig{.num_layers = 3, .latent_dim = 8, .rope_dim = 4, .num_blocks = blocks};
}

// A value unique to (sequence tag, layer, position, element).
float mark(int tag, int64_t layer, int64_t position, int64_t i) {
  return static_cast<float>(tag * 1000000 + layer * 10000 + position * 16 + i) + 0.5f;
}

void fill(KvCache& cache, const SequenceKv& seq, int tag, int64_t from, int64_t to) {
  for (int64_t layer = 0; layer < cache.config().num_layers; ++layer) {
    for (int64_t p = from; p < to; ++p) {
      float* e = cache.entry(seq, layer, p);
      for (int64_t i = 0; i < cache.entry_dim(); ++i) e[i] = mark(tag, layer, p, i);
    }
  }
}

void expect_filled(const KvCache& cache, const SequenceKv& seq, int tag, int64_t from, int64_t to) {
  for (int64_t layer = 0; layer < cache.config().num_layers; ++layer) {
    for (int64_t p = from; p < to; ++p) {
      const float* e = cache.entry(seq, layer, p);
      for (int64_t i = 0; i < cache.entry_dim(); ++i) {
        ASSERT_EQ(e[i], mark(tag, layer, p, i)) << "layer " << layer << " position " << p;
      }
    }
  }
}

TEST(BlockAllocatorTest, AllocatesEveryBlockOnceThenReportsExhaustion) {
  BlockAllocator allocator(4);
  std::set<int32_t> seen;
  for (int i = 0; i < 4; ++i) {
    auto block = allocator.allocate();
    ASSERT_TRUE(block.ok());
    EXPECT_TRUE(seen.insert(*block).second);
    EXPECT_EQ(allocator.ref_count(*block), 1);
  }
  auto none = allocator.allocate();
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kResourceExhausted);
}

TEST(BlockAllocatorTest, SharedBlockReturnsToFreeListOnlyAfterLastRelease) {
  BlockAllocator allocator(2);
  const int32_t block = *allocator.allocate();
  allocator.retain(block);
  EXPECT_EQ(allocator.ref_count(block), 2);
  allocator.release(block);
  EXPECT_EQ(allocator.num_free(), 1);
  allocator.release(block);
  EXPECT_EQ(allocator.num_free(), 2);
}

TEST(KvCacheTest, RejectsNonPositiveSizes) {
  EXPECT_EQ(KvCache::create(small_config(0)).status().code(), StatusCode::kInvalidArgument);
}

TEST(KvCacheTest, ReserveAllocatesWholeBlocksOfSixtyFour) {
  auto cache = KvCache::create(small_config(4));
  ASSERT_TRUE(cache.ok());
  SequenceKv seq;
  ASSERT_TRUE(cache->reserve(seq, 1).ok());
  EXPECT_EQ(seq.blocks.size(), 1u);
  ASSERT_TRUE(cache->reserve(seq, 64).ok());
  EXPECT_EQ(seq.blocks.size(), 1u);
  ASSERT_TRUE(cache->reserve(seq, 65).ok());
  EXPECT_EQ(seq.blocks.size(), 2u);
  EXPECT_EQ(cache->num_free_blocks(), 2);
  EXPECT_DOUBLE_EQ(cache->usage(), 0.5);
}

TEST(KvCacheTest, EntriesOfSequencesAndLayersDoNotAlias) {
  auto cache = KvCache::create(small_config(8));
  ASSERT_TRUE(cache.ok());
  SequenceKv a, b;
  ASSERT_TRUE(cache->reserve(a, 150).ok());
  ASSERT_TRUE(cache->reserve(b, 70).ok());
  fill(*cache, a, 1, 0, 150);
  fill(*cache, b, 2, 0, 70);
  expect_filled(*cache, a, 1, 0, 150);
  expect_filled(*cache, b, 2, 0, 70);
}

TEST(KvCacheTest, ExhaustionIsAnErrorThatLeavesTheSequenceUnchanged) {
  auto cache = KvCache::create(small_config(3));
  ASSERT_TRUE(cache.ok());
  SequenceKv a, b;
  ASSERT_TRUE(cache->reserve(a, 128).ok());
  ASSERT_TRUE(cache->reserve(b, 10).ok());
  const Status status = cache->reserve(b, 200);
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(status.message().find("only 0 of 3"), std::string::npos) << status.message();
  EXPECT_EQ(b.blocks.size(), 1u);
  cache->release(a);
  EXPECT_EQ(cache->num_free_blocks(), 2);
  EXPECT_TRUE(cache->reserve(b, 192).ok());
}

TEST(KvCacheTest, ForkSharesWholeBlocksAndCopiesThePartialTail) {
  auto cache = KvCache::create(small_config(6));
  ASSERT_TRUE(cache.ok());
  SequenceKv parent;
  ASSERT_TRUE(cache->reserve(parent, 100).ok());
  fill(*cache, parent, 1, 0, 100);
  parent.length = 100;

  SequenceKv child;
  ASSERT_TRUE(cache->fork(parent, 90, child).ok());
  EXPECT_EQ(child.length, 90);
  ASSERT_EQ(child.blocks.size(), 2u);
  EXPECT_EQ(child.blocks[0], parent.blocks[0]);
  EXPECT_EQ(cache->allocator().ref_count(parent.blocks[0]), 2);
  EXPECT_NE(child.blocks[1], parent.blocks[1]);
  expect_filled(*cache, child, 1, 0, 90);

  // The child writes past the fork point without touching the parent.
  fill(*cache, child, 2, 90, 128);
  expect_filled(*cache, parent, 1, 64, 100);

  cache->release(parent);
  expect_filled(*cache, child, 1, 0, 64);
  EXPECT_EQ(cache->num_free_blocks(), 4);
  cache->release(child);
  EXPECT_EQ(cache->num_free_blocks(), 6);
}

TEST(KvCacheTest, TruncateKeepsTheFirstPositionsAndFreesTheBlocksPastThem) {
  auto cache = *KvCache::create(small_config(6));
  SequenceKv seq;
  ASSERT_TRUE(cache.reserve(seq, 3 * kBlockSize).ok());
  seq.length = 2 * kBlockSize + 5;
  fill(cache, seq, 4, 0, seq.length);
  cache.truncate(seq, kBlockSize + 1);
  EXPECT_EQ(seq.length, kBlockSize + 1);
  EXPECT_EQ(seq.blocks.size(), 2u);
  EXPECT_EQ(cache.num_free_blocks(), 4);
  expect_filled(cache, seq, 4, 0, kBlockSize + 1);

  // A block shared with another holder stays allocated for it.
  cache.retain_block(seq.blocks[1]);
  const int32_t shared = seq.blocks[1];
  cache.truncate(seq, kBlockSize);
  EXPECT_EQ(seq.blocks.size(), 1u);
  EXPECT_EQ(cache.allocator().ref_count(shared), 1);
  EXPECT_EQ(cache.num_free_blocks(), 4);
  cache.release_block(shared);
  EXPECT_EQ(cache.num_free_blocks(), 5);

  cache.truncate(seq, 0);
  EXPECT_TRUE(seq.blocks.empty());
  EXPECT_EQ(seq.length, 0);
  EXPECT_EQ(cache.num_free_blocks(), 6);
}

TEST(KvCacheTest, ForkBeyondTheWrittenLengthIsRejected) {
  auto cache = KvCache::create(small_config(4));
  ASSERT_TRUE(cache.ok());
  SequenceKv parent, child;
  ASSERT_TRUE(cache->reserve(parent, 10).ok());
  parent.length = 10;
  EXPECT_EQ(cache->fork(parent, 11, child).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moeserve::engine
