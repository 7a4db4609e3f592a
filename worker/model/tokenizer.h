// Tokenizer: Hugging Face tokenizer.json byte-level BPE, as DeepSeek-V3 ships it.
//
// Supported tokenizer.json shape (anything else is rejected at load with an error that
// names the field):
//   model:         type "BPE" with vocab (token -> id) and merges ("a b" strings or
//                  [a, b] arrays); unk_token, ignore_merges; no byte_fallback, no
//                  continuing_subword_prefix / end_of_word_suffix, no dropout.
//   added_tokens:  id, content, special, lstrip, rstrip, single_word, normalized.
//   normalizer:    null or an empty Sequence.
//   pre_tokenizer: ByteLevel, Split (Regex pattern, behavior Isolated), Digits, or a
//                  Sequence of these. Split regexes are matched by hand-written
//                  scanners for a fixed set of known patterns: DeepSeek-V3's three
//                  (\p{N}{1,3}, its CJK run, its word/punctuation/space pattern), the
//                  GPT-2 pattern, the Llama-3 (cl100k) pattern and Qwen2's (see
//                  pretokenizer.h). Any other regex is rejected: there is no general
//                  regex engine here.
//   decoder:       ByteLevel.
//
// encode(): added tokens are matched first in the raw text (leftmost, longest); the
// text between them is pre-tokenized and each piece is BPE-merged by merge rank.
// encode() never adds BOS/EOS (a chat template or the caller puts them in).
// decode(): ids outside the vocabulary are skipped (never an error, never a crash);
// the result is always valid UTF-8 (invalid byte sequences become U+FFFD, as in
// Hugging Face's lossy decode).
//
// A Tokenizer is immutable after load and cheap to copy (copies share the data).
// All const methods are thread-safe; encode() keeps a bounded per-piece cache behind
// a mutex. IncrementalDecoder is single-threaded (one per stream).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace moeserve::model {

class Tokenizer {
 public:
  // Reads and parses a tokenizer.json file. Errors name the file and the field.
  static StatusOr<Tokenizer> load(const std::string& path_to_tokenizer_json);
  // Parses tokenizer.json text.
  static StatusOr<Tokenizer> parse(std::string_view json);

  // Token ids of `text`. With add_special_tokens_parsing, special added tokens that
  // occur in the text are emitted as their ids; without it, only non-special added
  // tokens are matched and special-token text is tokenized as ordinary text (use
  // this for untrusted content). Invalid UTF-8 in `text` is tokenized byte-wise.
  // With max_tokens, encoding may stop once more than max_tokens ids are produced: the
  // result is then longer than max_tokens but not the whole encoding (for refusing a
  // prompt over a context limit without tokenizing all of it).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens_parsing = true,
                              size_t max_tokens = SIZE_MAX) const;
  // A lower bound on the tokens of any text of `text_bytes` bytes: bytes / the longest
  // token's length, rounded up, when every byte has a token (byte-level BPE); else 0.
  size_t min_tokens_of(size_t text_bytes) const;

  // Text of `ids`; special tokens are dropped when skip_special. Unknown ids are skipped.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  // Raw bytes of one token (the byte-level mapping undone; an added token's content).
  // Empty for an unknown id.
  const std::string& token_bytes(int32_t id) const;

  // One past the largest id of the vocabulary and the added tokens.
  int32_t vocab_size() const;
  // Id of a token given in its tokenizer.json spelling (byte-level form for vocab
  // entries, e.g. "Ġthe"; content for added tokens).
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // tokenizer.json spelling of a token; empty for an unknown id.
  std::string id_to_token(int32_t id) const;
  // True for added tokens marked special.
  bool is_special(int32_t id) const;
  // Ids of all added tokens marked special, ascending.
  std::vector<int32_t> special_ids() const;

  struct Data;

 private:
  explicit Tokenizer(std::shared_ptr<const Data> data) : data_(std::move(data)) {}
  std::shared_ptr<const Data> data_;
};

// Turns a stream of token ids into text that is always whole UTF-8 characters:
// bytes of a multi-byte character split across tokens are held back until the
// character completes. Invalid sequences become U+FFFD. The concatenation of all
// push() results and flush() equals Tokenizer::decode of the same ids.
// Holds a (cheap, shared) copy of the tokenizer, so it may outlive the original.
class IncrementalDecoder {
 public:
  IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special);

  // Newly complete text after appending `id` (possibly empty).
  std::string push(int32_t id);
  // Whatever is held back, with an incomplete trailing character as U+FFFD; resets.
  std::string flush();

 private:
  Tokenizer tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace moeserve::model
