// Prefix cache: KV blocks of already computed token prefixes, reused by later
// sequences that start with the same tokens (block-aligned).
//
// A full block (kBlockSize tokens) is keyed by a hash of its tokens chained with the
// hash of the block before it, so a key names the whole prefix up to the block's end:
// KV entries at a position depend on every token before it, never on what follows.
// Entries also keep their tokens, so a hash collision is a miss, never wrong KV.
//
// The cache holds one reference on every block it lists (KvCache::retain_block). A
// block referenced only by the cache is "evictable": evict() frees such blocks, least
// recently used first (ties: the deepest block of a chain first, so chains shrink from
// their ends). Cached blocks are read-only: a sequence that reuses a prefix gets whole
// blocks and writes its next token into a fresh block.
//
// Not thread-safe: the scheduler thread owns it, as it owns the KvCache.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "worker/engine/kv_cache.h"

namespace moeserve::engine {

// Hash of one block of tokens chained with its parent's hash (0 for the first block).
uint64_t prefix_block_hash(uint64_t parent_hash, std::span<const int32_t> block_tokens);

// Chained hashes of every full block of `tokens` (tokens.size() / kBlockSize of them).
std::vector<uint64_t> prefix_block_hashes(std::span<const int32_t> tokens);

class PrefixCache {
 public:
  explicit PrefixCache(KvCache& cache) : cache_(cache) {}
  ~PrefixCache();  // gives back every cached block
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // Makes the empty `seq` start with the longest cached block-aligned prefix of
  // `tokens` that is at most `max_tokens` long: its blocks are shared (retained) and
  // seq.length is set. Returns the number of tokens reused (a multiple of kBlockSize).
  int64_t attach(std::span<const int32_t> tokens, int64_t max_tokens, SequenceKv& seq);

  // Lists the full blocks of `seq` whose tokens are known (`tokens` is what the
  // sequence holds: seq.length <= tokens.size()). Blocks already listed are skipped,
  // and a prefix already listed with another block keeps its block.
  void insert(std::span<const int32_t> tokens, const SequenceKv& seq);

  // Frees up to `blocks` evictable blocks; returns how many were freed.
  int64_t evict(int64_t blocks);

  // Blocks referenced only by the cache (freeable on demand).
  int64_t num_evictable() const;
  int64_t num_cached() const { return static_cast<int64_t>(entries_.size()); }

 private:
  struct Entry {
    int32_t block = 0;
    int64_t depth = 0;  // index of the block in its chain
    uint64_t last_used = 0;
    std::vector<int32_t> tokens;
  };
  const Entry* find(uint64_t hash, std::span<const int32_t> block_tokens) const;

  KvCache& cache_;
  std::unordered_map<uint64_t, Entry> entries_;
  std::unordered_map<int32_t, uint64_t> hash_of_block_;
  uint64_t tick_ = 0;
};

}  // namespace moeserve::engine
