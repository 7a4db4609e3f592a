#include "worker/server/text_output.h"

#include <algorithm>

namespace moeserve::server {

StopMatcher::StopMatcher(std::vector<std::string> stops, bool include_stop)
    : stops_(std::move(stops)), include_stop_(include_stop) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

std::string StopMatcher::push(std::string_view piece, bool may_stop) {
  if (stopped_) return "";
  held_.append(piece);
  // The earliest complete stop string wins.
  size_t first = std::string::npos;
  size_t first_length = 0;
  for (const std::string& s : stops_) {
    if (!may_stop) break;
    const size_t at = held_.find(s);
    if (at < first || (at == first && at != std::string::npos && s.size() > first_length)) {
      first = at;
      first_length = s.size();
    }
  }
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first + (include_stop_ ? first_length : 0));
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - 1, held_.size()); len > keep; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  if (stopped_) return "";
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

ChoiceText::ChoiceText(const model::Tokenizer& tokenizer, std::vector<std::string> stops,
                       bool logprobs, DecodeOptions options)
    : tokenizer_(tokenizer),
      decoder_(tokenizer, options.skip_special_tokens),
      matcher_(std::move(stops), options.include_stop_str),
      min_tokens_(options.min_tokens),
      want_logprobs_(logprobs),
      include_stop_token_(options.include_stop_str) {}

void ChoiceText::push(const engine::SampleResult& sample) {
  if (matcher_.stopped()) return;
  ++tokens_;
  if (want_logprobs_) {
    TokenLogprobs entry;
    entry.token = tokenizer_.decode({sample.token});
    entry.bytes = tokenizer_.token_bytes(sample.token);
    entry.logprob = sample.logprob;
    for (const engine::TokenLogprob& alt : sample.top) {
      entry.top.push_back(
          {tokenizer_.decode({alt.token}), tokenizer_.token_bytes(alt.token), alt.logprob});
    }
    entry.text_offset = decoded_chars_;
    logprobs_.push_back(std::move(entry));
  }
  if (sample.stop && !include_stop_token_) return;
  const std::string piece = decoder_.push(sample.token);
  decoded_chars_ += utf8_length(piece);
  text_ += matcher_.push(piece, tokens_ >= min_tokens_);
}

void ChoiceText::finish() {
  if (matcher_.stopped()) return;
  text_ += matcher_.push(decoder_.flush(), tokens_ >= min_tokens_);
  text_ += matcher_.flush();
}

ChoiceOutput ChoiceText::take_delta() {
  ChoiceOutput delta;
  delta.text = text_.substr(delta_text_from_);
  delta.logprobs.assign(logprobs_.begin() + static_cast<std::ptrdiff_t>(delta_logprobs_from_),
                        logprobs_.end());
  delta_text_from_ = text_.size();
  delta_logprobs_from_ = logprobs_.size();
  return delta;
}

}  // namespace moeserve::server
