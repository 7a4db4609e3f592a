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
constexpr std::string_view kThinkEnd = "</think>";
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

// Undoes the escapes of a Jinja string literal (\n, \t, \\, \', \").
std::string unescape_jinja_literal(std::string_view literal) {
  std::string out;
  for (size_t i = 0; i < literal.size(); ++i) {
    if (literal[i] != '\\' || i + 1 == literal.size()) {
      out.push_back(literal[i]);
      continue;
    }
    const char next = literal[++i];
    out.push_back(next == 'n' ? '\n' : next == 't' ? '\t' : next);
  }
  return out;
}

// A default system prompt written as one literal in a ChatML template, e.g. Qwen2.5's
// '<|im_start|>system\nYou are Qwen, ...<|im_end|>\n'. Empty when there is none.
std::string chatml_default_system_prompt(std::string_view tmpl) {
  const std::string open = "'<|im_start|>system\\n";
  const std::string close = "<|im_end|>\\n'";
  for (size_t pos = tmpl.find(open); pos != std::string_view::npos;
       pos = tmpl.find(open, pos + 1)) {
    const size_t body = pos + open.size();
    const size_t quote = tmpl.find('\'', body);
    if (quote == std::string_view::npos) break;
    const std::string_view literal = tmpl.substr(body, quote + 1 - body);
    if (literal.size() > close.size() && literal.ends_with(close)) {
      return unescape_jinja_literal(literal.substr(0, literal.size() - close.size()));
    }
  }
  return {};
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

// Today as "%d %b %Y" in local time: Llama-3.2's strftime_now("%d %b %Y").
std::string today_date() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buffer[32];
  const size_t n = std::strftime(buffer, sizeof(buffer), "%d %b %Y", &local);
  return std::string(buffer, n);
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

std::string supported_chat_template_families() {
  return "deepseek-v3, deepseek-r1, chatml, llama-3, llama-3.1";
}

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
  ChatTemplate t;
  t.bos_token_ = std::move(bos_token);
  t.eos_token_ = std::move(eos_token);
  if (contains(tmpl, kDeepSeekUser) && contains(tmpl, kDeepSeekAssistant)) {
    // R1 opens the generation with "<think>\n"; R1 and V3-0324 drop the reasoning
    // (up to the last "</think>") from earlier assistant turns.
    const bool think_prompt = contains(tmpl, "<｜Assistant｜><think>\\n'");
    t.family_ = think_prompt ? ChatTemplateFamily::kDeepSeekR1 : ChatTemplateFamily::kDeepSeekV3;
    t.strip_reasoning_ = contains(tmpl, kThinkEnd);
  } else if (contains(tmpl, kImStart) && contains(tmpl, kImEnd)) {
    t.family_ = ChatTemplateFamily::kChatMl;
    t.default_system_prompt_ = chatml_default_system_prompt(tmpl);
  } else if (contains(tmpl, kHeaderStart) && contains(tmpl, kEotId)) {
    t.family_ = contains(tmpl, "Cutting Knowledge Date") ? ChatTemplateFamily::kLlama31
                                                         : ChatTemplateFamily::kLlama3;
    t.uses_current_date_ = contains(tmpl, "strftime_now");
  } else {
    return invalid_argument_error("chat_template: unrecognised template family (supported: " +
                                  supported_chat_template_families() + ")");
  }
  return t;
}

StatusOr<ChatTemplate> ChatTemplate::from_tokenizer_config(const json& config) {
  if (!config.is_object()) return invalid_argument_error("tokenizer_config: expected an object");
  MOESERVE_ASSIGN_OR_RETURN(const std::string tmpl, template_text(config));
  MOESERVE_ASSIGN_OR_RETURN(const auto bos, read_special_token(config, "bos_token"));
  MOESERVE_ASSIGN_OR_RETURN(const auto eos, read_special_token(config, "eos_token"));
  return from_template(tmpl, bos.value_or(""), eos.value_or(""));
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
  }
  return {};
}

StatusOr<std::string> ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                           bool add_generation_prompt) const {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      return invalid_argument_error("messages[" + std::to_string(i) + "].role: '" + role +
                                    "' is not supported by the " + family_name() +
                                    " chat template (system, user, assistant)");
    }
  }
  switch (family_) {
    case ChatTemplateFamily::kDeepSeekV3:
    case ChatTemplateFamily::kDeepSeekR1: return render_deepseek(messages, add_generation_prompt);
    case ChatTemplateFamily::kChatMl: return render_chatml(messages, add_generation_prompt);
    case ChatTemplateFamily::kLlama3:
    case ChatTemplateFamily::kLlama31: return render_llama3(messages, add_generation_prompt);
  }
  return internal_error("chat template: unknown family");
}

std::string ChatTemplate::render_deepseek(const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt) const {
  const bool r1 = family_ == ChatTemplateFamily::kDeepSeekR1;
  std::string out = bos_token_;
  bool first_system = true;
  for (const ChatMessage& m : messages) {
    if (m.role != "system") continue;
    if (!first_system) out += "\n\n";
    out += m.content;
    first_system = false;
  }
  for (const ChatMessage& m : messages) {
    if (m.role == "user") {
      out.append(kDeepSeekUser).append(m.content);
    } else if (m.role == "assistant") {
      std::string_view content = m.content;
      const size_t think_end = content.rfind(kThinkEnd);
      if (strip_reasoning_ && think_end != std::string_view::npos) {
        content.remove_prefix(think_end + kThinkEnd.size());
      }
      out.append(kDeepSeekAssistant).append(content).append(kDeepSeekEnd);
    }
  }
  if (add_generation_prompt) {
    out.append(kDeepSeekAssistant);
    if (r1) out += "<think>\n";
  }
  return out;
}

std::string ChatTemplate::render_chatml(const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) const {
  std::string out;
  const auto turn = [&](std::string_view role, std::string_view content) {
    out.append(kImStart).append(role).append("\n").append(content).append(kImEnd).append("\n");
  };
  if (!default_system_prompt_.empty() && (messages.empty() || messages[0].role != "system")) {
    turn("system", default_system_prompt_);
  }
  for (const ChatMessage& m : messages) turn(m.role, m.content);
  if (add_generation_prompt) out.append(kImStart).append("assistant\n");
  return out;
}

std::string ChatTemplate::render_llama3(const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) const {
  std::string out;
  const auto turn = [&](std::string_view role, std::string_view content) {
    out.append(kHeaderStart).append(role).append(kHeaderEnd).append("\n\n");
    out.append(content).append(kEotId);
  };
  size_t first = 0;
  if (family_ == ChatTemplateFamily::kLlama31) {
    // 3.1 always opens with a system turn carrying the knowledge and current dates.
    out = bos_token_;
    std::string system = "Cutting Knowledge Date: December 2023\nToday Date: ";
    system.append(uses_current_date_ ? today_date() : std::string(kLlama31DefaultDate));
    system.append("\n\n");
    if (!messages.empty() && messages[0].role == "system") {
      system.append(trim(messages[0].content));
      first = 1;
    }
    turn("system", system);
  }
  for (size_t i = first; i < messages.size(); ++i) {
    // Llama-3.0 puts bos in front of the first message only.
    if (family_ == ChatTemplateFamily::kLlama3 && i == 0) out += bos_token_;
    turn(messages[i].role, trim(messages[i].content));
  }
  if (add_generation_prompt)
    out.append(kHeaderStart).append("assistant").append(kHeaderEnd).append("\n\n");
  return out;
}

}  // namespace moeserve::model
