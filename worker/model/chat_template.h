// ChatTemplate: renders OpenAI-style chat messages into the prompt text a model was
// trained on, following the chat_template of its tokenizer_config.json.
//
// There is no Jinja engine here. The template text is recognised as one of a few
// families by distinctive markers, and the family is rendered natively, matching what
// Hugging Face's apply_chat_template produces for plain system/user/assistant turns:
//   deepseek-v3  "<｜User｜>"/"<｜Assistant｜>" markers: bos + all system prompts joined
//                by "\n\n", then "<｜User｜>"+content and
//                "<｜Assistant｜>"+content+"<｜end▁of▁sentence｜>"; the generation prompt
//                is "<｜Assistant｜>".
//   deepseek-r1  the same markers with a "<think>\n" generation prompt. In both
//                DeepSeek families, when the template mentions "</think>" (R1,
//                V3-0324), assistant content keeps only the text after its last
//                "</think>".
//   chatml       "<|im_start|>role\ncontent<|im_end|>\n"; generation prompt
//                "<|im_start|>assistant\n"; a default system prompt written literally in
//                the template (Qwen2.5) is used when the first message is not system.
//   llama-3      bos + "<|start_header_id|>role<|end_header_id|>\n\n" + trimmed content
//                + "<|eot_id|>"; generation prompt opens an assistant header.
//   llama-3.1    llama-3 plus the system header with "Cutting Knowledge Date" and
//                "Today Date: 26 Jul 2024" (the template's default date; today's
//                local date when the template calls strftime_now, as Llama-3.2's does).
// Anything else is an error listing these families. Roles other than system, user and
// assistant (e.g. tool) are rejected with an error naming the message.
//
// The rendered text already contains bos_token where the template puts it: encode it
// with special-token parsing and do not add another BOS. Immutable; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace moeserve::model {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class ChatTemplateFamily { kDeepSeekV3, kDeepSeekR1, kChatMl, kLlama3, kLlama31 };

class ChatTemplate {
 public:
  // From a parsed tokenizer_config.json: chat_template (a string, or a list of
  // {name, template} where "default" is used), bos_token and eos_token.
  static StatusOr<ChatTemplate> from_tokenizer_config(const nlohmann::json& tokenizer_config);
  // read_tokenizer_config(), then from_tokenizer_config().
  static StatusOr<ChatTemplate> load(const std::string& tokenizer_config_path);
  // From template text and the special-token strings it refers to.
  static StatusOr<ChatTemplate> from_template(std::string_view template_text, std::string bos_token,
                                              std::string eos_token);

  StatusOr<std::string> render(const std::vector<ChatMessage>& messages,
                               bool add_generation_prompt) const;

  ChatTemplateFamily family() const { return family_; }
  // "deepseek-v3", "deepseek-r1", "chatml", "llama-3" or "llama-3.1".
  std::string family_name() const;
  // The text that ends an assistant turn in this family (a natural stop string).
  std::string end_of_turn() const;
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }

 private:
  ChatTemplate() = default;

  std::string render_deepseek(const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt) const;
  std::string render_chatml(const std::vector<ChatMessage>& messages,
                            bool add_generation_prompt) const;
  std::string render_llama3(const std::vector<ChatMessage>& messages,
                            bool add_generation_prompt) const;

  ChatTemplateFamily family_ = ChatTemplateFamily::kChatMl;
  std::string bos_token_;
  std::string eos_token_;
  std::string default_system_prompt_;  // chatml only; empty when the template has none
  bool strip_reasoning_ = false;       // deepseek: keep only text after the last </think>
  bool uses_current_date_ = false;     // llama-3.1 templates that call strftime_now (3.2)
};

// Reads tokenizer_config.json; when it has no chat_template, the text of
// chat_template.jinja in the same folder (newer Hugging Face exports) is put there.
StatusOr<nlohmann::json> read_tokenizer_config(const std::string& tokenizer_config_path);

// The content of a special-token entry of tokenizer_config.json (e.g. "bos_token"),
// given either as a string or as {"content": ...}; nullopt when absent or null.
StatusOr<std::optional<std::string>> read_special_token(const nlohmann::json& tokenizer_config,
                                                        std::string_view key);

// Supported family names, comma separated (for error messages and docs).
std::string supported_chat_template_families();

}  // namespace moeserve::model
