// Token-level constrained decoding: which vocabulary tokens keep a generation inside a
// grammar (grammar.h), per step.
//
// TokenConstraint pairs a compiled Grammar with a model's TokenVocabulary and caches,
// per grammar state, the mask of tokens allowed from it. It determinises the grammar
// lazily: states are interned (GrammarState is canonical) and every (state, byte)
// transition is computed once, so walking the vocabulary trie from a state costs a table
// lookup per trie node visited, and a subtree is skipped at the first rejected byte.
// Inside a JSON string most tokens are allowed and the string's state repeats token
// after token, so the mask is computed once per such state and then served from the
// cache. The caches are bounded (kMaxStates states, kMaxMasks masks); past a bound they
// are cleared and refilled on demand. One TokenConstraint may serve many requests
// (share it through a shared_ptr); its methods lock a mutex.
//
// TokenMatcher is one choice's position in the grammar: allowed() is the mask for the
// next token (bit t set: token t's bytes keep the output a prefix of a sentence; ids at
// or past the vocabulary's size are never allowed), accepting() says whether the output
// so far is a whole sentence (when the end-of-sequence tokens may come, which the
// sampler decides: the mask covers only the vocabulary's bytes), accept() moves on by
// one token. Single-threaded: one per choice.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "worker/structured/grammar.h"
#include "worker/structured/token_vocabulary.h"

namespace moeserve::structured {

// Bit t (words[t / 64] >> (t % 64)) set when token t is allowed.
using TokenMask = std::vector<uint64_t>;

class TokenConstraint {
 public:
  static constexpr int32_t kMaxStates = 16384;
  static constexpr int32_t kMaxMasks = 1024;

  TokenConstraint(Grammar grammar, std::shared_ptr<const TokenVocabulary> vocabulary);

  const Grammar& grammar() const { return grammar_; }
  const TokenVocabulary& vocabulary() const { return *vocabulary_; }

  // Counters of the caches, for benchmarks and tests.
  struct Stats {
    int64_t masks_computed = 0;
    int64_t mask_hits = 0;
    int64_t transitions_computed = 0;
    int64_t trie_nodes_visited = 0;
    int64_t resets = 0;
  };
  Stats stats() const;

 private:
  friend class TokenMatcher;
  struct Handle {
    int32_t id = -1;
    uint64_t epoch = 0;
  };
  // The interned id of `state` in the current epoch (locked).
  int32_t intern(const GrammarState& state);
  // -1 when `byte` kills the state (locked).
  int32_t transition(int32_t state, uint8_t byte);
  std::shared_ptr<const TokenMask> mask(Handle& handle, const GrammarState& state);
  // Advances by `bytes`; false when the grammar rejects them.
  bool advance(Handle& handle, GrammarState& state, const std::string& bytes);
  void refresh(Handle& handle, const GrammarState& state);
  void maybe_reset();

  struct VectorHash {
    size_t operator()(const std::vector<uint32_t>& v) const;
  };

  const Grammar grammar_;
  const std::shared_ptr<const TokenVocabulary> vocabulary_;
  mutable std::mutex mutex_;
  uint64_t epoch_ = 1;
  std::vector<GrammarState> states_;
  std::unordered_map<std::vector<uint32_t>, int32_t, VectorHash> ids_;
  std::vector<int32_t> next_;  // 256 per state: -2 unknown, -1 dead, else the state
  std::vector<std::shared_ptr<const TokenMask>> masks_;  // per state; null: not computed
  int32_t num_masks_ = 0;
  std::vector<int32_t> walk_;  // scratch: the state at each trie depth
  Stats stats_;
};

class TokenMatcher {
 public:
  explicit TokenMatcher(std::shared_ptr<TokenConstraint> constraint);

  // The tokens that may come next (see the top of this file).
  std::shared_ptr<const TokenMask> allowed();
  bool accepting() const { return state_.accepting(); }
  // Some token may still extend the output (false once a sentence cannot grow).
  bool can_continue() const { return state_.can_continue(); }
  // invalid_argument when `token` is outside the vocabulary or its bytes leave the grammar
  // (the state is then unchanged).
  Status accept(int32_t token);

 private:
  std::shared_ptr<TokenConstraint> constraint_;
  GrammarState state_;
  TokenConstraint::Handle handle_;
};

// True when bit `token` of `mask` is set.
inline bool mask_allows(const TokenMask& mask, int32_t token) {
  const size_t word = static_cast<size_t>(token) >> 6;
  return token >= 0 && word < mask.size() && ((mask[word] >> (token & 63)) & 1) != 0;
}

}  // namespace moeserve::structured
