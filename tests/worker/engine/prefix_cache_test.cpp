// PrefixCache over a bare KvCache: chained block hashes, attach/insert reference
// counting, LRU eviction of blocks that only the cache holds.
#include "worker/engine/prefix_cache.h"

#include <gtest/gtest.h>

#include <numeric>

namespace moeserve::engine {
namespace {

std::vector<int32_t> tokens(int64_t n, int32_t salt) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 31 + salt * 977) % 5000);
  return t;
}

KvCache make_cache(int64_t blocks) {
  return *KvCache::create({.num_layers = 1, .latent_dim = 4, .rope_dim = 2, .num_blocks = blocks});
}

TEST(PrefixBlockHash, ChainsOverTheWholePrefix) {
  const std::vector<int32_t> a = tokens(3 * kBlockSize + 10, 1);
  std::vector<int32_t> b = a;
  b[5] += 1;  // differs in the first block only
  const std::vector<uint64_t> ha = prefix_block_hashes(a);
  const std::vector<uint64_t> hb = prefix_block_hashes(b);
  ASSERT_EQ(ha.size(), 3u);  // the partial tail block has no hash
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(ha[i], hb[i]) << "block " << i;
  EXPECT_EQ(ha[1], prefix_block_hash(ha[0], std::span(a).subspan(kBlockSize, kBlockSize)));
  EXPECT_NE(prefix_block_hash(0, std::span(a).subspan(0, kBlockSize)),
            prefix_block_hash(1, std::span(a).subspan(0, kBlockSize)));
  EXPECT_EQ(prefix_block_hashes(a), ha);  // deterministic
}

TEST(PrefixCache, AttachSharesWholeCachedBlocks) {
  KvCache cache = make_cache(8);
  PrefixCache prefix(cache);
  const std::vector<int32_t> prompt = tokens(2 * kBlockSize + 5, 2);
  SequenceKv first;
  ASSERT_TRUE(cache.reserve(first, static_cast<int64_t>(prompt.size())).ok());
  first.length = static_cast<int64_t>(prompt.size());
  prefix.insert(prompt, first);
  EXPECT_EQ(prefix.num_cached(), 2);
  EXPECT_EQ(cache.allocator().ref_count(first.blocks[0]), 2);
  EXPECT_EQ(cache.allocator().ref_count(first.blocks[2]), 1);  // partial: not cached

  SequenceKv second;
  EXPECT_EQ(prefix.attach(prompt, static_cast<int64_t>(prompt.size()) - 1, second), 2 * kBlockSize);
  EXPECT_EQ(second.length, 2 * kBlockSize);
  EXPECT_EQ(second.blocks, std::vector<int32_t>(first.blocks.begin(), first.blocks.begin() + 2));
  EXPECT_EQ(cache.allocator().ref_count(first.blocks[0]), 3);

  // A limit inside the second block reuses only the first.
  SequenceKv third;
  EXPECT_EQ(prefix.attach(prompt, 2 * kBlockSize - 1, third), kBlockSize);
  // A different first block matches nothing.
  SequenceKv fourth;
  EXPECT_EQ(prefix.attach(tokens(2 * kBlockSize, 3), 1000, fourth), 0);
  EXPECT_TRUE(fourth.blocks.empty());
  cache.release(second);
  cache.release(third);
}

TEST(PrefixCache, EvictsOnlyUnreferencedBlocksLeastRecentlyUsedFirst) {
  KvCache cache = make_cache(6);
  PrefixCache prefix(cache);
  const std::vector<int32_t> old_prompt = tokens(kBlockSize, 4);
  const std::vector<int32_t> new_prompt = tokens(2 * kBlockSize, 5);
  SequenceKv a, b;
  ASSERT_TRUE(cache.reserve(a, kBlockSize).ok());
  a.length = kBlockSize;
  prefix.insert(old_prompt, a);
  ASSERT_TRUE(cache.reserve(b, 2 * kBlockSize).ok());
  b.length = 2 * kBlockSize;
  prefix.insert(new_prompt, b);
  EXPECT_EQ(prefix.num_evictable(), 0);  // the sequences still hold them
  const int32_t old_block = a.blocks[0];
  cache.release(a);
  cache.release(b);
  EXPECT_EQ(prefix.num_evictable(), 3);
  EXPECT_EQ(cache.num_free_blocks(), 3);

  EXPECT_EQ(prefix.evict(1), 1);  // the oldest entry goes first
  EXPECT_EQ(cache.allocator().ref_count(old_block), 0);
  SequenceKv again;
  EXPECT_EQ(prefix.attach(old_prompt, kBlockSize, again), 0);
  EXPECT_EQ(prefix.attach(new_prompt, 2 * kBlockSize, again), 2 * kBlockSize);
  EXPECT_EQ(prefix.evict(5), 0);  // `again` holds the rest
  cache.release(again);
  EXPECT_EQ(prefix.evict(5), 2);
  EXPECT_EQ(cache.num_free_blocks(), 6);
  EXPECT_EQ(prefix.num_cached(), 0);
}

TEST(PrefixCache, DestructorGivesBackItsReferences) {
  KvCache cache = make_cache(2);
  {
    PrefixCache prefix(cache);
    SequenceKv s;
    ASSERT_TRUE(cache.reserve(s, kBlockSize).ok());
    s.length = kBlockSize;
    prefix.insert(tokens(kBlockSize, 6), s);
    cache.release(s);
    EXPECT_EQ(cache.num_free_blocks(), 1);
  }
  EXPECT_EQ(cache.num_free_blocks(), 2);
}

}  // namespace
}  // namespace moeserve::engine
