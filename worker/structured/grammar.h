// Grammar: a context-free grammar over bytes, and the pushdown matcher that runs it.
//
// A grammar is a set of rules; a rule is a list of alternatives; an alternative is a
// sequence of elements, each a set of bytes (matches one byte in the set) or a reference
// to a rule. GrammarBuilder assembles one; build() refuses undefined rules and left
// recursion (a rule that can reach itself without consuming a byte), so expansion
// always ends.
//
// Matching (after llama.cpp's GBNF matcher): a GrammarState is the set of parse stacks
// still alive after the bytes consumed so far. A stack lists positions in the grammar's
// sequences, the top (last) being the next element to match, always a byte set; the
// positions below are where to continue when the sequence above finishes. An empty stack
// means the root rule matched completely. advance() consumes one byte: every stack whose
// top set holds it moves on, finished sequences pop, rule references expand into one
// stack per alternative (a reference at the end of a sequence replaces it, so right
// recursion does not grow the stack). A state with no stacks is dead: the bytes are not
// a prefix of any sentence.
//
// States are canonical (stacks sorted, no duplicates), so equal states compare and hash
// equal whatever path reached them; TokenMaskCache (token_mask.h) relies on it.
//
// Grammar is immutable after build() and thread-safe; GrammarState is a value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace moeserve::structured {

// A set of byte values.
struct ByteSet {
  uint64_t words[4] = {0, 0, 0, 0};

  static ByteSet of(uint8_t byte);
  // Bytes lo..hi, both included.
  static ByteSet range(uint8_t lo, uint8_t hi);
  ByteSet& add(uint8_t byte);
  ByteSet& add_range(uint8_t lo, uint8_t hi);
  ByteSet& remove(uint8_t byte);
  bool contains(uint8_t byte) const { return (words[byte >> 6] >> (byte & 63)) & 1; }
  bool empty() const { return (words[0] | words[1] | words[2] | words[3]) == 0; }
};

struct Element {
  enum class Kind : uint8_t { kEnd, kBytes, kRule };
  Kind kind = Kind::kEnd;
  uint32_t index = 0;  // kBytes: into the grammar's byte sets; kRule: the rule id
};

// One alternative of a rule.
using Sequence = std::vector<Element>;

class Grammar;

class GrammarState {
 public:
  // No stacks: nothing more can be matched.
  bool dead() const { return stacks_ == 0; }
  // The bytes so far form a whole sentence of the grammar.
  bool accepting() const { return accepting_; }
  // Some stack can still consume a byte.
  bool can_continue() const { return stacks_ > (accepting_ ? 1 : 0); }
  // Canonical encoding: for each stack, its length then its positions, stacks sorted.
  const std::vector<uint32_t>& encoding() const { return flat_; }
  bool operator==(const GrammarState& other) const { return flat_ == other.flat_; }

 private:
  friend class Grammar;
  std::vector<uint32_t> flat_;
  uint32_t stacks_ = 0;
  bool accepting_ = false;
};

class Grammar {
 public:
  // The state before any byte.
  GrammarState initial() const;
  // The state after `byte`; dead() when no stack accepts it.
  GrammarState advance(const GrammarState& from, uint8_t byte) const;
  // The state after all of `bytes` (dead as soon as one is rejected).
  GrammarState advance(const GrammarState& from, std::string_view bytes) const;
  // True when `bytes` is a whole sentence.
  bool matches(std::string_view bytes) const;
  // True when `bytes` can be continued into a sentence (or is one).
  bool is_prefix(std::string_view bytes) const;

  int64_t num_rules() const { return static_cast<int64_t>(rules_.size()); }

 private:
  friend class GrammarBuilder;
  struct StackSet;
  void expand(std::vector<uint32_t>& stack, StackSet& out) const;
  GrammarState canonical(StackSet& set) const;

  std::vector<Element> elements_;             // every sequence, each ended by kEnd
  std::vector<std::vector<uint32_t>> rules_;  // rule -> start of each alternative
  std::vector<ByteSet> sets_;
  uint32_t root_ = 0;
};

// Assembles a Grammar. Rules may be declared before they are defined, so that they can
// refer to each other (and themselves, not on the left).
class GrammarBuilder {
 public:
  // A new rule id, to be defined later.
  uint32_t declare();
  void define(uint32_t rule, std::vector<Sequence> alternatives);
  // declare() and define() at once.
  uint32_t add_rule(std::vector<Sequence> alternatives);

  Element bytes(const ByteSet& set);
  static Element ref(uint32_t rule) { return {Element::Kind::kRule, rule}; }
  // The sequence matching exactly `text`.
  Sequence literal(std::string_view text);

  // invalid_argument when a rule is declared but not defined, or is left-recursive.
  StatusOr<Grammar> build(uint32_t root) &&;

 private:
  std::vector<std::vector<Sequence>> rules_;
  std::vector<bool> defined_;
  std::vector<ByteSet> sets_;
};

// Concatenation of sequences.
Sequence concat(std::initializer_list<Sequence> parts);

}  // namespace moeserve::structured
