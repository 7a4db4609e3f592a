// TokenVocabulary: a model's vocabulary as byte strings, in a trie laid out in
// depth-first order, which is how a grammar decides which tokens may come next
// (token_constraint.h): walk the trie once from the grammar's state, skipping a whole
// subtree at the first byte the grammar rejects.
//
// Built once per model from each token's bytes (for byte-level BPE, the byte-level
// mapping undone: model::Tokenizer::token_bytes). Excluded tokens (special tokens, whose
// text the output drops; ids without bytes) are not in the trie, so no grammar ever
// allows them. Immutable after construction; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moeserve::structured {

class TokenVocabulary {
 public:
  // token_bytes[id] for every id; excluded[id] true keeps the id out (excluded may be
  // shorter than token_bytes: missing entries are false). Empty byte strings are left out.
  TokenVocabulary(std::vector<std::string> token_bytes, const std::vector<bool>& excluded);

  // One past the largest id.
  int32_t size() const { return static_cast<int32_t>(bytes_.size()); }
  const std::string& bytes(int32_t id) const { return bytes_[id]; }
  // Tokens in the trie.
  int64_t num_tokens() const { return static_cast<int64_t>(token_ids_.size()); }

  // A trie node: the byte on the edge from its parent, its depth (1 for a first byte),
  // the index of the first node after its subtree, and the tokens that end here
  // (token_ids()[first_token, first_token + token_count)).
  struct Node {
    uint8_t byte = 0;
    uint16_t depth = 0;
    uint16_t token_count = 0;
    uint32_t skip = 0;
    uint32_t first_token = 0;
  };
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<int32_t>& token_ids() const { return token_ids_; }
  int32_t max_depth() const { return max_depth_; }

 private:
  std::vector<std::string> bytes_;
  std::vector<Node> nodes_;
  std::vector<int32_t> token_ids_;
  int32_t max_depth_ = 0;
};

}  // namespace moeserve::structured
