// A small byte-level BPE tokenizer in the Hugging Face tokenizer.json format that
// DeepSeek-V3 ships (BPE model with 256 byte tokens and learned merges, pre_tokenizer
// Sequence of DeepSeek-V3's three Split regexes and ByteLevel, ByteLevel decoder,
// DeepSeek's special tokens), for generated test models.
//
// The merges are learned when called, by plain greedy BPE training (most frequent
// adjacent pair first, ties broken by the pair's text) over a short English text built
// into the library, so common English words become single tokens. Deterministic: the
// same vocab_size always gives the same files. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace moeserve::model {

struct TinyTokenizer {
  nlohmann::ordered_json tokenizer_json;         // tokenizer.json
  nlohmann::ordered_json tokenizer_config_json;  // tokenizer_config.json (with chat_template)
  int64_t vocab_size = 0;                        // ids are 0 .. vocab_size-1, all used
  int64_t bos_token_id = 0;                      // <｜begin▁of▁sentence｜>
  int64_t eos_token_id = 1;                      // <｜end▁of▁sentence｜>
  int64_t merges = 0;                            // learned merges
};

// vocab_size counts everything: 3 leading special tokens, 256 bytes, the merges and 13
// trailing added tokens (<｜User｜>, <｜Assistant｜>, <think>, </think>, tool-call
// markers). When the text runs out of pairs, the rest is filled with DeepSeek-style
// <｜place▁holder▁no▁N｜> added tokens. vocab_size must be at least 272.
StatusOr<TinyTokenizer> make_tiny_tokenizer(int64_t vocab_size);

// The chat template written into tokenizer_config.json: DeepSeek-V3's message layout
// (bos, system prompts, <｜User｜>, <｜Assistant｜> ... <｜end▁of▁sentence｜>) without tool calls.
extern const char* const kTinyChatTemplate;

}  // namespace moeserve::model
