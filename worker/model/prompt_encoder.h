// PromptEncoder: a model folder's rule for turning text into prompt token ids, read
// once. load() reads tokenizer.json and tokenizer_config.json (when present) a single
// time; encode() is then pure.
//
// The BOS rule: when tokenizer_config.json sets add_bos_token, a text prompt starts
// with its bos_token (a string or {"content": ...}) looked up in the tokenizer, else
// with config.json's bos_token_id; load() fails when neither names an id. Without the
// file or the flag no BOS is added. The same file yields the chat template
// (chat_template.h; chat_template.jinja beside it when the file has none); a folder
// without a usable one still loads, and chat_template() then says why.
//
// Both `moeserve-worker generate --prompt` and the OpenAI API encode text prompts
// with it. Immutable after load(); thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "worker/model/chat_template.h"
#include "worker/model/config.h"
#include "worker/model/tokenizer.h"

namespace moeserve::model {

class PromptEncoder {
 public:
  // failed_precondition naming dir/tokenizer.json when it is missing.
  static StatusOr<PromptEncoder> load(const std::string& dir, const ModelConfig& config);

  // The BOS prefix followed by tokenizer().encode(text) (special tokens parsed).
  std::vector<int32_t> encode(std::string_view text) const;

  const Tokenizer& tokenizer() const { return tokenizer_; }
  // Ids put before a text prompt: the BOS id, or none.
  const std::vector<int32_t>& bos_prefix() const { return bos_prefix_; }
  // The folder's chat template, or why it has no usable one.
  const StatusOr<ChatTemplate>& chat_template() const { return chat_template_; }

 private:
  PromptEncoder(Tokenizer tokenizer, std::vector<int32_t> bos_prefix,
                StatusOr<ChatTemplate> chat_template)
      : tokenizer_(std::move(tokenizer)),
        bos_prefix_(std::move(bos_prefix)),
        chat_template_(std::move(chat_template)) {}

  Tokenizer tokenizer_;
  std::vector<int32_t> bos_prefix_;
  StatusOr<ChatTemplate> chat_template_;
};

}  // namespace moeserve::model
