#include "worker/engine/kv_cache.h"

#include <algorithm>
#include <string>

namespace moeserve::engine {

BlockAllocator::BlockAllocator(int64_t num_blocks) : ref_counts_(num_blocks, 0) {
  free_.reserve(num_blocks);
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

StatusOr<int32_t> BlockAllocator::allocate() {
  if (free_.empty()) {
    return resource_exhausted_error("KV cache: all " + std::to_string(num_blocks()) +
                                    " blocks of " + std::to_string(kBlockSize) +
                                    " tokens are in use");
  }
  const int32_t block = free_.back();
  free_.pop_back();
  ref_counts_[block] = 1;
  return block;
}

void BlockAllocator::retain(int32_t block) { ++ref_counts_[block]; }

void BlockAllocator::release(int32_t block) {
  if (--ref_counts_[block] == 0) free_.push_back(block);
}

KvCache::KvCache(const KvCacheConfig& config)
    : config_(config),
      allocator_(config.num_blocks),
      storage_(static_cast<size_t>(bytes_for(config) / sizeof(float))) {}

int64_t KvCache::bytes_for(const KvCacheConfig& config) {
  return config.num_blocks * config.num_layers * kBlockSize *
         (config.latent_dim + config.rope_dim) * static_cast<int64_t>(sizeof(float));
}

StatusOr<KvCache> KvCache::create(const KvCacheConfig& config) {
  if (config.num_layers <= 0 || config.latent_dim <= 0 || config.rope_dim < 0 ||
      config.num_blocks <= 0) {
    return invalid_argument_error(
        "KV cache: num_layers, latent_dim and num_blocks must be positive (got " +
        std::to_string(config.num_layers) + ", " + std::to_string(config.latent_dim) + ", " +
        std::to_string(config.num_blocks) + ")");
  }
  return KvCache(config);
}

Status KvCache::reserve(SequenceKv& seq, int64_t tokens) {
  const int64_t needed = (tokens + kBlockSize - 1) / kBlockSize;
  const int64_t missing = needed - static_cast<int64_t>(seq.blocks.size());
  if (missing <= 0) return ok_status();
  if (missing > allocator_.num_free()) {
    return resource_exhausted_error("KV cache: " + std::to_string(tokens) + " tokens need " +
                                    std::to_string(missing) + " more blocks of " +
                                    std::to_string(kBlockSize) + " but only " +
                                    std::to_string(allocator_.num_free()) + " of " +
                                    std::to_string(num_blocks()) + " are free");
  }
  for (int64_t i = 0; i < missing; ++i) seq.blocks.push_back(*allocator_.allocate());
  return ok_status();
}

void KvCache::release(SequenceKv& seq) {
  for (int32_t block : seq.blocks) allocator_.release(block);
  seq.blocks.clear();
  seq.length = 0;
}

void KvCache::truncate(SequenceKv& seq, int64_t tokens) {
  const size_t keep = static_cast<size_t>((tokens + kBlockSize - 1) / kBlockSize);
  for (size_t i = keep; i < seq.blocks.size(); ++i) allocator_.release(seq.blocks[i]);
  if (seq.blocks.size() > keep) seq.blocks.resize(keep);
  seq.length = std::min(seq.length, tokens);
}

Status KvCache::fork(const SequenceKv& src, int64_t tokens, SequenceKv& dst) {
  if (!dst.blocks.empty())
    return invalid_argument_error("KV cache: fork into a non-empty sequence");
  if (tokens > src.length) {
    return invalid_argument_error("KV cache: fork of " + std::to_string(tokens) +
                                  " tokens from a sequence of " + std::to_string(src.length));
  }
  const int64_t whole = tokens / kBlockSize;
  const int64_t tail = tokens % kBlockSize;
  if (tail > 0 && allocator_.num_free() == 0) {
    return resource_exhausted_error("KV cache: no free block to copy a forked tail into");
  }
  for (int64_t i = 0; i < whole; ++i) {
    allocator_.retain(src.blocks[i]);
    dst.blocks.push_back(src.blocks[i]);
  }
  if (tail > 0) {
    const int32_t copy = *allocator_.allocate();
    const int32_t from = src.blocks[whole];
    for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
      std::copy_n(block_layer(from, layer), tail * entry_dim(), block_layer(copy, layer));
    }
    dst.blocks.push_back(copy);
  }
  dst.length = tokens;
  return ok_status();
}

float* KvCache::block_layer(int32_t block, int64_t layer) {
  return storage_.data() + ((block * config_.num_layers + layer) * kBlockSize) * entry_dim();
}

float* KvCache::entry(const SequenceKv& seq, int64_t layer, int64_t position) {
  return block_layer(seq.blocks[position / kBlockSize], layer) +
         (position % kBlockSize) * entry_dim();
}

const float* KvCache::entry(const SequenceKv& seq, int64_t layer, int64_t position) const {
  return const_cast<KvCache*>(this)->entry(seq, layer, position);
}

double KvCache::usage() const {
  return static_cast<double>(num_blocks() - num_free_blocks()) / static_cast<double>(num_blocks());
}

}  // namespace moeserve::engine
