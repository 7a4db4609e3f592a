#include "worker/engine/prefix_cache.h"

#include <algorithm>

namespace moeserve::engine {
namespace {

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t prefix_block_hash(uint64_t parent_hash, std::span<const int32_t> block_tokens) {
  uint64_t h = mix(parent_hash ^ 0x6d6f657365727665ull);
  for (int32_t t : block_tokens) h = mix(h ^ static_cast<uint32_t>(t));
  return h;
}

std::vector<uint64_t> prefix_block_hashes(std::span<const int32_t> tokens) {
  std::vector<uint64_t> hashes;
  uint64_t parent = 0;
  for (size_t start = 0; start + kBlockSize <= tokens.size(); start += kBlockSize) {
    parent = prefix_block_hash(parent, tokens.subspan(start, kBlockSize));
    hashes.push_back(parent);
  }
  return hashes;
}

PrefixCache::~PrefixCache() {
  for (const auto& [hash, entry] : entries_) cache_.release_block(entry.block);
}

const PrefixCache::Entry* PrefixCache::find(uint64_t hash,
                                            std::span<const int32_t> block_tokens) const {
  auto it = entries_.find(hash);
  if (it == entries_.end()) return nullptr;
  if (!std::equal(block_tokens.begin(), block_tokens.end(), it->second.tokens.begin(),
                  it->second.tokens.end())) {
    return nullptr;
  }
  return &it->second;
}

int64_t PrefixCache::attach(std::span<const int32_t> tokens, int64_t max_tokens, SequenceKv& seq) {
  const int64_t limit = std::min<int64_t>(max_tokens, static_cast<int64_t>(tokens.size()));
  ++tick_;
  uint64_t parent = 0;
  int64_t matched = 0;
  while (matched + kBlockSize <= limit) {
    std::span<const int32_t> block = tokens.subspan(matched, kBlockSize);
    parent = prefix_block_hash(parent, block);
    auto it = entries_.find(parent);
    if (it == entries_.end() || find(parent, block) == nullptr) break;
    it->second.last_used = tick_;
    cache_.retain_block(it->second.block);
    seq.blocks.push_back(it->second.block);
    matched += kBlockSize;
  }
  seq.length = matched;
  return matched;
}

void PrefixCache::insert(std::span<const int32_t> tokens, const SequenceKv& seq) {
  const int64_t full =
      std::min<int64_t>(seq.length, static_cast<int64_t>(tokens.size())) / kBlockSize;
  ++tick_;
  uint64_t parent = 0;
  for (int64_t i = 0; i < full; ++i) {
    std::span<const int32_t> block = tokens.subspan(i * kBlockSize, kBlockSize);
    parent = prefix_block_hash(parent, block);
    const int32_t id = seq.blocks[i];
    auto existing = entries_.find(parent);
    if (existing != entries_.end()) {
      existing->second.last_used = tick_;
      continue;  // listed already (this block, or an equal prefix computed elsewhere)
    }
    if (hash_of_block_.count(id) > 0) continue;  // the block is listed under a colliding key
    cache_.retain_block(id);
    entries_.emplace(parent, Entry{id, i, tick_, std::vector<int32_t>(block.begin(), block.end())});
    hash_of_block_.emplace(id, parent);
  }
}

int64_t PrefixCache::num_evictable() const {
  int64_t n = 0;
  for (const auto& [hash, entry] : entries_) {
    if (cache_.allocator().ref_count(entry.block) == 1) ++n;
  }
  return n;
}

int64_t PrefixCache::evict(int64_t blocks) {
  if (blocks <= 0) return 0;
  std::vector<std::pair<const Entry*, uint64_t>> candidates;
  for (const auto& [hash, entry] : entries_) {
    if (cache_.allocator().ref_count(entry.block) == 1) candidates.emplace_back(&entry, hash);
  }
  std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
    if (a.first->last_used != b.first->last_used) return a.first->last_used < b.first->last_used;
    return a.first->depth > b.first->depth;
  });
  int64_t freed = 0;
  for (const auto& [entry, hash] : candidates) {
    if (freed == blocks) break;
    const int32_t block = entry->block;
    hash_of_block_.erase(block);
    entries_.erase(hash);
    cache_.release_block(block);
    ++freed;
  }
  return freed;
}

}  // namespace moeserve::engine
