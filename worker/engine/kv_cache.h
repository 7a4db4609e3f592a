// Paged KV cache for multi-head latent attention (MLA).
//
// The cache is a pool of fixed-size blocks (kBlockSize = 64 token slots each). A
// sequence owns a block table (SequenceKv): position p lives in slot p % 64 of block
// blocks[p / 64]. For MLA one slot holds, for every layer, the compressed latent
// (kv_lora_rank floats, after kv_a_layernorm) followed by the rope key
// (qk_rope_head_dim floats, after RoPE, shared by all heads): not the per-head K/V, which
// the attention re-derives from the latent (or absorbs into the query).
//
// Storage layout: [block][layer][slot][latent | rope], so the entries of one layer in
// one block are contiguous (the attention walks them in order).
//
// Blocks carry reference counts so that sequences can share a prefix (fork): a shared
// block is read-only by convention, and fork copies a partially filled tail block so
// that the new sequence never writes into a block someone else reads.
//
// Speculative decoding writes draft positions past a sequence's accepted length and
// truncate()s them away when they are rejected; those positions only ever land in the
// sequence's own tail blocks (shared blocks are full, hence all before its length).
//
// Running out of blocks is a resource_exhausted Status, never a crash; a failed reserve
// leaves the sequence as it was. Not thread-safe: one scheduler thread owns the cache.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace moeserve::engine {

inline constexpr int64_t kBlockSize = 64;

// Reference-counted free list of block ids [0, num_blocks).
class BlockAllocator {
 public:
  explicit BlockAllocator(int64_t num_blocks);

  // A free block with reference count 1, or resource_exhausted.
  StatusOr<int32_t> allocate();
  // One more owner of an allocated block.
  void retain(int32_t block);
  // One owner fewer; the block returns to the free list at zero.
  void release(int32_t block);

  int32_t ref_count(int32_t block) const { return ref_counts_[block]; }
  int64_t num_blocks() const { return static_cast<int64_t>(ref_counts_.size()); }
  int64_t num_free() const { return static_cast<int64_t>(free_.size()); }

 private:
  std::vector<int32_t> ref_counts_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
};

// The block table of one sequence. `length` counts the positions whose entries are
// written (the engine advances it after a forward pass).
struct SequenceKv {
  std::vector<int32_t> blocks;
  int64_t length = 0;

  int64_t capacity() const { return static_cast<int64_t>(blocks.size()) * kBlockSize; }
};

struct KvCacheConfig {
  int64_t num_layers = 0;
  int64_t latent_dim = 0;  // kv_lora_rank
  int64_t rope_dim = 0;    // qk_rope_head_dim
  int64_t num_blocks = 0;
};

class KvCache {
 public:
  // Allocates num_blocks x num_layers x 64 x (latent_dim + rope_dim) floats.
  static StatusOr<KvCache> create(const KvCacheConfig& config);
  // Bytes that create() allocates for `config`.
  static int64_t bytes_for(const KvCacheConfig& config);

  // Makes room for positions [0, tokens): allocates blocks as needed. On failure no
  // block is taken and `seq` is unchanged.
  Status reserve(SequenceKv& seq, int64_t tokens);
  // Gives back every block of `seq` and empties it.
  void release(SequenceKv& seq);
  // Keeps positions [0, tokens) of `seq` (tokens <= seq.length) and gives back the blocks
  // past them: speculative decoding's rollback of rejected drafts. The entries past
  // `tokens` in the kept tail block are garbage the next forward overwrites.
  void truncate(SequenceKv& seq, int64_t tokens);
  // One more / one fewer owner of an allocated block, for holders other than a
  // sequence (the prefix cache keeps computed blocks alive after their sequence ends).
  void retain_block(int32_t block) { allocator_.retain(block); }
  void release_block(int32_t block) { allocator_.release(block); }
  // Makes `dst` (which must be empty) hold the first `tokens` positions of `src`: whole
  // blocks are shared, a partial tail block is copied into a new block.
  Status fork(const SequenceKv& src, int64_t tokens, SequenceKv& dst);

  // The entry of `layer` at `position` (< seq.capacity()): latent_dim floats of latent
  // followed by rope_dim floats of rope key.
  float* entry(const SequenceKv& seq, int64_t layer, int64_t position);
  const float* entry(const SequenceKv& seq, int64_t layer, int64_t position) const;

  int64_t entry_dim() const { return config_.latent_dim + config_.rope_dim; }
  const KvCacheConfig& config() const { return config_; }
  int64_t num_free_blocks() const { return allocator_.num_free(); }
  int64_t num_blocks() const { return allocator_.num_blocks(); }
  // Fraction of blocks in use, in [0, 1].
  double usage() const;
  const BlockAllocator& allocator() const { return allocator_; }

 private:
  explicit KvCache(const KvCacheConfig& config);
  float* block_layer(int32_t block, int64_t layer);

  KvCacheConfig config_;
  BlockAllocator allocator_;
  std::vector<float> storage_;
};

}  // namespace moeserve::engine
