#include "worker/model/chat_template.h"

#include <ctime>
#include <filesystem>

#include "common/file.h"
#include "worker/model/unicode.h"

namespace moeserve::model {
namespace {

using nlohmann::json;

constexpr std::string_view kDeepSeekUser = "<｜User｜>";
constexpr std::string_view kDeepSeekAssistant = "<｜Assistant｜>";
constexpr std::string_view kDeepSeekEnd = "<｜end▁of▁sentence｜>";
constexpr std::string_view kImStart = "<|im_start|>";
constexpr std::string_view kImEnd = "<|im_end|>";
constexpr std::string_view kHeaderStart = "<|start_header_id|>";
constexpr std::string_view kHeaderEnd = "<|end_header_id|>";
constexpr std::string_view kEotId = "<|eot_id|>";
// Llama-3.1's template fills "Today Date" with this when no date_string is given.
constexpr std::string_view kLlama31DefaultDate = "26 Jul 2024";

bool contains(std::string_view text, std::string_view needle) {
  return text.find(needle) != std::string_view::npos;
}

// Python's str.strip(), which Jinja's trim filter uses.
std::string_view trim(std::string_view s) {
  const auto is_space = [](char32_t cp) { return is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F); };
  size_t begin = 0;
  while (begin < s.size()) {
    const Utf8Char c = decode_utf8(s, begin);
    if (c.status != Utf8Status::kValid || !is_space(c.cp)) break;
    begin += c.length;
  }
  size_t end = s.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (uint8_t(s[start]) & 0xC0) == 0x80) --start;
    const Utf8Char c = decode_utf8(s, start);
    if (c.status != Utf8Status::kValid || start + c.length != end || !is_space(c.cp)) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

// strftime_now(format): the local time, as Hugging Face's template global.
jinja::Value strftime_now() {
  return jinja::Value::callable(
      "strftime_now", [](const jinja::CallArgs& args) -> StatusOr<jinja::Value> {
        const jinja::Value* format = args.get("format", 0);
        if (format == nullptr || !format->is_string()) {
          return invalid_argument_error("strftime_now() needs a format string");
        }
        const std::time_t now = std::time(nullptr);
        std::tm local{};
        localtime_r(&now, &local);
        char buffer[256];
        const size_t n = std::strftime(buffer, sizeof(buffer), format->as_string().c_str(), &local);
        return jinja::Value::string(std::string(buffer, n));
      });
}

// Template names that a request's chat_template_kwargs may not replace.
bool reserved_variable(const std::string& name) {
  return name == "messages" || name == "tools" || name == "documents" ||
         name == "add_generation_prompt" || name == "bos_token" || name == "eos_token";
}

jinja::Value message_value(const ChatMessage& m) {
  jinja::Dict d;
  d.set("role", jinja::Value::string(m.role));
  d.set("content", m.content.has_value() ? jinja::Value::string(*m.content) : jinja::Value::none());
  if (!m.name.empty()) d.set("name", jinja::Value::string(m.name));
  if (m.role == "tool") d.set("tool_call_id", jinja::Value::string(m.tool_call_id));
  if (m.reasoning_content.has_value()) {
    d.set("reasoning_content", jinja::Value::string(*m.reasoning_content));
  }
  if (!m.tool_calls.empty()) {
    std::vector<jinja::Value> calls;
    for (const ToolCall& call : m.tool_calls) {
      jinja::Dict function;
      function.set("name", jinja::Value::string(call.name));
      function.set("arguments", jinja::Value::string(call.arguments));
      jinja::Dict c;
      c.set("id", jinja::Value::string(call.id));
      c.set("type", jinja::Value::string("function"));
      c.set("function", jinja::Value::dict(std::move(function)));
      calls.push_back(jinja::Value::dict(std::move(c)));
    }
    d.set("tool_calls", jinja::Value::list(std::move(calls)));
  }
  return jinja::Value::dict(std::move(d));
}

// The family a template's text belongs to, by its distinctive markers.
ChatTemplateFamily family_of(std::string_view tmpl) {
  if (contains(tmpl, kDeepSeekUser) && contains(tmpl, kDeepSeekAssistant)) {
    // R1 opens the generation with "<think>\n".
    return contains(tmpl, "<｜Assistant｜><think>\\n'") ? ChatTemplateFamily::kDeepSeekR1
                                                        : ChatTemplateFamily::kDeepSeekV3;
  }
  if (contains(tmpl, kImStart) && contains(tmpl, kImEnd)) return ChatTemplateFamily::kChatMl;
  if (contains(tmpl, kHeaderStart) && contains(tmpl, kEotId)) {
    return contains(tmpl, "Cutting Knowledge Date") ? ChatTemplateFamily::kLlama31
                                                    : ChatTemplateFamily::kLlama3;
  }
  return ChatTemplateFamily::kGeneric;
}

StatusOr<std::string> template_text(const json& config) {
  const auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) {
    return not_found_error("chat_template: missing");
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const json& entry : *it) {
      if (entry.is_object() && entry.value("name", json()) == "default" &&
          entry.contains("template") && entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
    return invalid_argument_error("chat_template: a list without a \"default\" template");
  }
  return invalid_argument_error("chat_template: expected a string or a list of templates");
}

}  // namespace

std::string supported_chat_template_families() { return "deepseek-v3, chatml, llama-3.1"; }

StatusOr<std::optional<std::string>> read_special_token(const json& config, std::string_view key) {
  const auto it = config.find(std::string(key));
  if (it == config.end() || it->is_null()) return std::optional<std::string>();
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (it->is_object()) {
    const auto content = it->find("content");
    if (content != it->end() && content->is_string()) {
      return std::optional<std::string>(content->get<std::string>());
    }
  }
  return invalid_argument_error(std::string(key) +
                                ": expected a string or an object with string \"content\"");
}

StatusOr<ChatTemplate> ChatTemplate::from_template(std::string_view tmpl, std::string bos_token,
                                                   std::string eos_token) {
  StatusOr<jinja::Template> compiled = jinja::Template::parse(tmpl);
  if (!compiled.ok()) return compiled.status().with_context("chat_template");
  ChatTemplate t;
  t.bos_token_ = std::move(bos_token);
  t.eos_token_ = std::move(eos_token);
  t.family_ = family_of(tmpl);
  t.jinja_ = std::make_shared<const jinja::Template>(std::move(compiled).value());
  return t;
}

StatusOr<ChatTemplate> ChatTemplate::from_tokenizer_config(const json& config) {
  if (!config.is_object()) return invalid_argument_error("tokenizer_config: expected an object");
  MOESERVE_ASSIGN_OR_RETURN(const auto bos, read_special_token(config, "bos_token"));
  MOESERVE_ASSIGN_OR_RETURN(const auto eos, read_special_token(config, "eos_token"));
  StatusOr<std::string> tmpl = template_text(config);
  if (tmpl.ok()) return from_template(*tmpl, bos.value_or(""), eos.value_or(""));
  if (tmpl.status().code() != StatusCode::kNotFound) return tmpl.status();
  // No template: the built-in family the eos_token names.
  ChatTemplate t;
  t.bos_token_ = bos.value_or("");
  t.eos_token_ = eos.value_or("");
  if (t.eos_token_ == kDeepSeekEnd) {
    t.family_ = ChatTemplateFamily::kDeepSeekV3;
  } else if (t.eos_token_ == kImEnd) {
    t.family_ = ChatTemplateFamily::kChatMl;
  } else if (t.eos_token_ == kEotId) {
    t.family_ = ChatTemplateFamily::kLlama31;
  } else {
    return not_found_error("chat_template: missing, and eos_token '" + t.eos_token_ +
                           "' names none of the built-in families (" +
                           supported_chat_template_families() + ")");
  }
  return t;
}

StatusOr<json> read_tokenizer_config(const std::string& path) {
  MOESERVE_ASSIGN_OR_RETURN(const std::string text, read_file(path));
  json config = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return invalid_argument_error(path + ": not a JSON object");
  }
  if (!config.contains("chat_template") || config["chat_template"].is_null()) {
    const auto jinja = std::filesystem::path(path).parent_path() / "chat_template.jinja";
    if (std::filesystem::exists(jinja)) {
      MOESERVE_ASSIGN_OR_RETURN(config["chat_template"], read_file(jinja.string()));
    }
  }
  return config;
}

StatusOr<ChatTemplate> ChatTemplate::load(const std::string& path) {
  MOESERVE_ASSIGN_OR_RETURN(const json config, read_tokenizer_config(path));
  auto result = from_tokenizer_config(config);
  if (!result.ok()) return result.status().with_context(path);
  return result;
}

std::string ChatTemplate::family_name() const {
  switch (family_) {
    case ChatTemplateFamily::kDeepSeekV3: return "deepseek-v3";
    case ChatTemplateFamily::kDeepSeekR1: return "deepseek-r1";
    case ChatTemplateFamily::kChatMl: return "chatml";
    case ChatTemplateFamily::kLlama3: return "llama-3";
    case ChatTemplateFamily::kLlama31: return "llama-3.1";
    case ChatTemplateFamily::kGeneric: return "generic";
  }
  return "unknown";
}

std::string ChatTemplate::end_of_turn() const {
  switch (family_) {
    case ChatTemplateFamily::kDeepSeekV3:
    case ChatTemplateFamily::kDeepSeekR1: return std::string(kDeepSeekEnd);
    case ChatTemplateFamily::kChatMl: return std::string(kImEnd);
    case ChatTemplateFamily::kLlama3:
    case ChatTemplateFamily::kLlama31: return std::string(kEotId);
    case ChatTemplateFamily::kGeneric: return eos_token_;
  }
  return {};
}

StatusOr<std::string> ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                           const ChatRenderOptions& options) const {
  if (jinja_ != nullptr) return render_jinja(messages, options);
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      return invalid_argument_error("messages[" + std::to_string(i) + "].role: '" + m.role +
                                    "' needs the checkpoint's own chat template; the built-in " +
                                    family_name() + " fallback has system, user, assistant");
    }
    if (!m.tool_calls.empty()) {
      return invalid_argument_error("messages[" + std::to_string(i) +
                                    "].tool_calls: need the checkpoint's own chat template");
    }
  }
  if (options.tools.is_array() && !options.tools.empty()) {
    return invalid_argument_error("tools: need the checkpoint's own chat template; the built-in " +
                                  family_name() + " fallback renders none");
  }
  switch (family_) {
    case ChatTemplateFamily::kDeepSeekV3:
      return render_deepseek(messages, options.add_generation_prompt);
    case ChatTemplateFamily::kChatMl: return render_chatml(messages, options.add_generation_prompt);
    case ChatTemplateFamily::kLlama31:
      return render_llama31(messages, options.add_generation_prompt);
    default: return internal_error("chat template: no built-in rendering for " + family_name());
  }
}

StatusOr<std::string> ChatTemplate::render_jinja(const std::vector<ChatMessage>& messages,
                                                 const ChatRenderOptions& options) const {
  jinja::Dict variables;
  std::vector<jinja::Value> list;
  for (const ChatMessage& m : messages) list.push_back(message_value(m));
  variables.set("messages", jinja::Value::list(std::move(list)));
  variables.set("tools", options.tools.is_array() ? jinja::Value::from_json(options.tools)
                                                  : jinja::Value::none());
  variables.set("documents", jinja::Value::none());
  variables.set("add_generation_prompt", jinja::Value::boolean(options.add_generation_prompt));
  variables.set("bos_token", jinja::Value::string(bos_token_));
  variables.set("eos_token", jinja::Value::string(eos_token_));
  variables.set("strftime_now", strftime_now());
  if (options.template_kwargs.is_object()) {
    for (const auto& [key, value] : options.template_kwargs.items()) {
      if (reserved_variable(key)) {
        return invalid_argument_error("chat_template_kwargs." + key +
                                      ": set by the request itself, not a template argument");
      }
      variables.set(key, jinja::Value::from_json(value));
    }
  }
  StatusOr<std::string> text = jinja_->render(variables);
  if (!text.ok()) return text.status().with_context("chat_template");
  return text;
}

std::string ChatTemplate::render_deepseek(const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt) const {
  std::string out = bos_token_;
  bool first_system = true;
  for (const ChatMessage& m : messages) {
    if (m.role != "system") continue;
    if (!first_system) out += "\n\n";
    out += m.content.value_or("");
    first_system = false;
  }
  for (const ChatMessage& m : messages) {
    if (m.role == "user") {
      out.append(kDeepSeekUser).append(m.content.value_or(""));
    } else if (m.role == "assistant") {
      out.append(kDeepSeekAssistant).append(m.content.value_or("")).append(kDeepSeekEnd);
    }
  }
  if (add_generation_prompt) out.append(kDeepSeekAssistant);
  return out;
}

std::string ChatTemplate::render_chatml(const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) const {
  std::string out;
  for (const ChatMessage& m : messages) {
    out.append(kImStart).append(m.role).append("\n").append(m.content.value_or(""));
    out.append(kImEnd).append("\n");
  }
  if (add_generation_prompt) out.append(kImStart).append("assistant\n");
  return out;
}

std::string ChatTemplate::render_llama31(const std::vector<ChatMessage>& messages,
                                         bool add_generation_prompt) const {
  std::string out = bos_token_;
  const auto turn = [&](std::string_view role, std::string_view content) {
    out.append(kHeaderStart).append(role).append(kHeaderEnd).append("\n\n");
    out.append(content).append(kEotId);
  };
  // 3.1 always opens with a system turn carrying the knowledge and default dates.
  size_t first = 0;
  std::string system = "Cutting Knowledge Date: December 2023\nToday Date: ";
  system.append(kLlama31DefaultDate).append("\n\n");
  if (!messages.empty() && messages[0].role == "system") {
    system.append(trim(messages[0].content.value_or("")));
    first = 1;
  }
  turn("system", system);
  for (size_t i = first; i < messages.size(); ++i) {
    turn(messages[i].role, trim(messages[i].content.value_or("")));
  }
  if (add_generation_prompt)
    out.append(kHeaderStart).append("assistant").append(kHeaderEnd).append("\n\n");
  return out;
}

}  // namespace moeserve::model
