// ChatTemplate: renders OpenAI-style chat messages into the prompt text a model was
// trained on.
//
// A checkpoint's own Jinja chat_template (tokenizer_config.json, or chat_template.jinja
// beside it) is rendered by the Jinja interpreter (jinja/template.h) with the variables
// vLLM and SGLang pass through Hugging Face's apply_chat_template: messages (role,
// content or None, tool_calls as {id, type, function: {name, arguments}} with arguments
// the JSON string the client sent, tool_call_id, name, reasoning_content; keys present
// only when set), tools (the request's tool objects, or None), documents (None),
// add_generation_prompt, bos_token, eos_token, the request's chat_template_kwargs, and
// strftime_now(format) (local time). A template that does not parse is an error naming
// its line; a render error (raise_exception, a type error) is an invalid_argument the API
// answers with a 400.
//
// Only when a checkpoint has no template at all, one of five built-in families is
// rendered natively, chosen by the eos_token: "<｜end▁of▁sentence｜>" deepseek-v3,
// "<|im_end|>" chatml, "<|eot_id|>" llama-3.1. They match apply_chat_template on plain
// system/user/assistant turns (no tools; a tool message is an error naming it):
//   deepseek-v3  bos + all system prompts joined by "\n\n", then "<｜User｜>"+content and
//                "<｜Assistant｜>"+content+"<｜end▁of▁sentence｜>"; the generation prompt
//                is "<｜Assistant｜>".
//   deepseek-r1  the same markers with a "<think>\n" generation prompt, and assistant
//                content keeps only the text after its last "</think>".
//   chatml       "<|im_start|>role\ncontent<|im_end|>\n"; generation prompt
//                "<|im_start|>assistant\n".
//   llama-3      bos + "<|start_header_id|>role<|end_header_id|>\n\n" + trimmed content
//                + "<|eot_id|>"; generation prompt opens an assistant header.
//   llama-3.1    llama-3 plus the system header with "Cutting Knowledge Date" and
//                "Today Date: 26 Jul 2024".
//
// family() also names the family of a Jinja template, recognised by the same markers
// ("generic" when none match): the API picks its tool-call and reasoning parsers by it.
//
// The rendered text already contains bos_token where the template puts it: encode it
// with special-token parsing and do not add another BOS. Immutable; thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "worker/model/jinja/template.h"

namespace moeserve::model {

// One function call of an assistant turn, as the OpenAI API carries it.
struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text
};

struct ChatMessage {
  std::string role;                              // "system", "user", "assistant" or "tool"
  std::optional<std::string> content;            // nullopt: null (an assistant turn of tool calls)
  std::vector<ToolCall> tool_calls;              // assistant
  std::string tool_call_id;                      // tool
  std::string name;                              // optional participant or tool name
  std::optional<std::string> reasoning_content;  // assistant, when the client sent it
};

// What a request adds to the messages.
struct ChatRenderOptions {
  bool add_generation_prompt = true;
  nlohmann::ordered_json tools;  // the request's tools (an array), or null
  // chat_template_kwargs: extra template variables (e.g. enable_thinking).
  nlohmann::ordered_json template_kwargs = nlohmann::ordered_json::object();
};

enum class ChatTemplateFamily { kDeepSeekV3, kDeepSeekR1, kChatMl, kLlama3, kLlama31, kGeneric };

class ChatTemplate {
 public:
  // From a parsed tokenizer_config.json: chat_template (a string, or a list of
  // {name, template} where "default" is used), bos_token and eos_token; without a
  // chat_template, the built-in family its eos_token names (else not_found).
  static StatusOr<ChatTemplate> from_tokenizer_config(const nlohmann::json& tokenizer_config);
  // read_tokenizer_config(), then from_tokenizer_config().
  static StatusOr<ChatTemplate> load(const std::string& tokenizer_config_path);
  // From Jinja template text and the special-token strings it refers to.
  static StatusOr<ChatTemplate> from_template(std::string_view template_text, std::string bos_token,
                                              std::string eos_token);

  StatusOr<std::string> render(const std::vector<ChatMessage>& messages,
                               const ChatRenderOptions& options) const;
  StatusOr<std::string> render(const std::vector<ChatMessage>& messages,
                               bool add_generation_prompt) const {
    ChatRenderOptions options;
    options.add_generation_prompt = add_generation_prompt;
    return render(messages, options);
  }

  ChatTemplateFamily family() const { return family_; }
  // "deepseek-v3", "deepseek-r1", "chatml", "llama-3", "llama-3.1" or "generic".
  std::string family_name() const;
  // True when the checkpoint's Jinja template renders; false for a built-in fallback.
  bool is_jinja() const { return jinja_ != nullptr; }
  // The text that ends an assistant turn in this family (a natural stop string).
  std::string end_of_turn() const;
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }

 private:
  ChatTemplate() = default;

  StatusOr<std::string> render_jinja(const std::vector<ChatMessage>& messages,
                                     const ChatRenderOptions& options) const;
  std::string render_deepseek(const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt) const;
  std::string render_chatml(const std::vector<ChatMessage>& messages,
                            bool add_generation_prompt) const;
  std::string render_llama31(const std::vector<ChatMessage>& messages,
                             bool add_generation_prompt) const;

  ChatTemplateFamily family_ = ChatTemplateFamily::kGeneric;
  std::string bos_token_;
  std::string eos_token_;
  std::shared_ptr<const jinja::Template> jinja_;  // null: a built-in family renders
};

// Reads tokenizer_config.json; when it has no chat_template, the text of
// chat_template.jinja in the same folder (newer Hugging Face exports) is put there.
StatusOr<nlohmann::json> read_tokenizer_config(const std::string& tokenizer_config_path);

// The content of a special-token entry of tokenizer_config.json (e.g. "bos_token"),
// given either as a string or as {"content": ...}; nullopt when absent or null.
StatusOr<std::optional<std::string>> read_special_token(const nlohmann::json& tokenizer_config,
                                                        std::string_view key);

// The built-in family names, comma separated (for error messages and docs).
std::string supported_chat_template_families();

}  // namespace moeserve::model
