// PreTokenizer: splits text into the pieces that byte-level BPE merges independently,
// as the pre_tokenizer section of a Hugging Face tokenizer.json describes.
//
// Supported steps: Split with a Regex pattern and behavior Isolated (matches and the
// text between them become pieces), Digits, ByteLevel (with or without its GPT-2
// regex; add_prefix_space only as the first step), and Sequence of these, each step
// applied to every piece of the previous one, exactly as Hugging Face does. Split
// regexes are not interpreted by a regex engine: each supported pattern is recognised
// by its text and matched by a hand-written scanner with Oniguruma's semantics
// (leftmost match, alternatives in order, greedy with backtracking, lookahead bounded
// by the piece). Supported patterns: DeepSeek-V3's three, GPT-2's, Llama-3's
// (cl100k) and Qwen2's. Anything else is an error naming the field.
//
// Immutable after construction; split() is pure and thread-safe.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace moeserve::model {

// One split rule: a recognised regex (or Digits step) used with Isolated behavior.
enum class SplitRule : uint8_t {
  kNumbersUpTo3,      // \p{N}{1,3}
  kCjkRun,            // DeepSeek-V3: [一-龥぀-ゟ゠-ヿ]+
  kDeepSeekWords,     // DeepSeek-V3: ASCII punct+letters | letters/marks | punct | spaces
  kGpt2,              // GPT-2 / ByteLevel(use_regex) pattern
  kLlama3,            // Llama-3 / cl100k pattern (numbers in runs of up to 3)
  kQwen2,             // Qwen2 pattern (the Llama-3 one with single numbers)
  kDigitsIndividual,  // Digits(individual_digits=true)
  kDigitsContiguous,  // Digits(individual_digits=false)
};

// A piece of the input: bytes [begin, end).
struct Piece {
  uint32_t begin = 0;
  uint32_t end = 0;
};

class PreTokenizer {
 public:
  // No splitting at all: the whole text is one piece.
  PreTokenizer() = default;
  explicit PreTokenizer(std::vector<SplitRule> rules, bool add_prefix_space = false)
      : rules_(std::move(rules)), add_prefix_space_(add_prefix_space) {}

  // From the "pre_tokenizer" value of tokenizer.json (null means no splitting).
  // Errors name the field, e.g. "pre_tokenizer.pretokenizers[2].pattern.Regex".
  static StatusOr<PreTokenizer> from_json(const nlohmann::json& pre_tokenizer);

  // Non-empty pieces covering `text` in order. Bytes that are not valid UTF-8 are
  // treated as characters of no category (never letters, digits or spaces).
  std::vector<Piece> split(std::string_view text) const;

  // True when a space must be prepended to each text segment that does not start
  // with one before split() (ByteLevel add_prefix_space).
  bool add_prefix_space() const { return add_prefix_space_; }
  const std::vector<SplitRule>& rules() const { return rules_; }

 private:
  std::vector<SplitRule> rules_;
  bool add_prefix_space_ = false;
};

// The rule for a Split regex (as it appears in tokenizer.json after JSON unescaping),
// or an error listing the supported patterns.
StatusOr<SplitRule> recognize_split_regex(std::string_view regex);

}  // namespace moeserve::model
