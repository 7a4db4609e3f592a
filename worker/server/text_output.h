// Turning one choice's generated tokens into the text a client sees.
//
// StopMatcher finds stop strings in text that arrives in pieces: a stop string may span
// any number of pieces (tokens), so the longest tail that could still be the start of a
// stop string is held back until it either completes one (then the text before it is
// released, the stop string and everything after are dropped) or cannot (then it is
// released). flush() releases what is held when generation ends without a stop string.
//
// ChoiceText runs a choice's tokens through the tokenizer's IncrementalDecoder (whole
// UTF-8 characters; special tokens skipped unless DecodeOptions say otherwise) and a
// StopMatcher, and records per-token log-probabilities with each token's own bytes. A
// token that ended the choice as a stop token (SampleResult::stop) is counted but its
// text is left out, as vLLM does, unless include_stop_str. Tokens after a stop string
// are ignored and not counted. Before DecodeOptions::min_tokens tokens no stop string
// ends the text (the engine masks EOS and stop tokens up to then).
// Single-threaded: one per choice of one request.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "worker/engine/sampler.h"
#include "worker/model/tokenizer.h"
#include "worker/server/openai_protocol.h"

namespace moeserve::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops, bool include_stop = false);

  // Text that can be released after appending `piece`; "" once stopped. With may_stop
  // false no stop string ends the text yet: everything is released but a tail that may
  // still begin one (min_tokens: stop strings end a choice only from that token on).
  std::string push(std::string_view piece, bool may_stop = true);
  // Releases the held-back text (no stop string completed); "" once stopped.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  bool include_stop_;
  std::string held_;
  bool stopped_ = false;
};

struct DecodeOptions {
  bool skip_special_tokens = true;
  bool include_stop_str = false;  // keep a matched stop string or stop token's text
  // Stop strings end the text only in or after this token (1-based), as in vLLM.
  int64_t min_tokens = 0;
};

class ChoiceText {
 public:
  // `top_logprobs` alternatives are recorded per token when `logprobs`.
  ChoiceText(const model::Tokenizer& tokenizer, std::vector<std::string> stops, bool logprobs,
             DecodeOptions options = {});

  // Consumes one generated token (ignored once a stop string was found).
  void push(const engine::SampleResult& sample);
  // Generation ended: releases held-back text.
  void finish();

  // Text and log-probabilities produced since the last take_delta().
  ChoiceOutput take_delta();

  bool stopped_by_string() const { return matcher_.stopped(); }
  // Tokens consumed (counted as completion tokens).
  int64_t tokens() const { return tokens_; }
  const std::string& text() const { return text_; }
  const std::vector<TokenLogprobs>& logprobs() const { return logprobs_; }

 private:
  const model::Tokenizer& tokenizer_;
  model::IncrementalDecoder decoder_;
  StopMatcher matcher_;
  int64_t min_tokens_;
  bool want_logprobs_;
  bool include_stop_token_;
  int64_t tokens_ = 0;
  int64_t decoded_chars_ = 0;  // characters decoded so far (before stop filtering)
  std::string text_;           // released text
  std::vector<TokenLogprobs> logprobs_;
  size_t delta_text_from_ = 0;
  size_t delta_logprobs_from_ = 0;
};

}  // namespace moeserve::server
