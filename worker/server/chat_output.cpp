#include "worker/server/chat_output.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace moeserve::server {
namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kToolSep = "<｜tool▁sep｜>";
constexpr std::string_view kJsonFence = "```json\n";
constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";

// Length of the longest proper suffix of `text` that is a prefix of `marker`.
size_t partial_suffix(std::string_view text, std::string_view marker) {
  for (size_t len = std::min(text.size(), marker.size() - 1); len > 0; --len) {
    if (text.substr(text.size() - len) == marker.substr(0, len)) return len;
  }
  return 0;
}

bool is_blank(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// Trailing whitespace and backticks: never part of JSON arguments, maybe a fence.
size_t trailing_fence(std::string_view text) {
  size_t n = 0;
  while (n < text.size() &&
         (is_blank(text[text.size() - 1 - n]) || text[text.size() - 1 - n] == '`')) {
    ++n;
  }
  return n;
}

std::string_view trim_blank(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// The end (one past the closing brace) of the JSON object that starts text, or npos.
size_t object_end(std::string_view text) {
  int64_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

}  // namespace

ToolCallFormat tool_call_format(model::ChatTemplateFamily family) {
  switch (family) {
    case model::ChatTemplateFamily::kDeepSeekV3:
    case model::ChatTemplateFamily::kDeepSeekR1: return ToolCallFormat::kDeepSeek;
    case model::ChatTemplateFamily::kChatMl: return ToolCallFormat::kHermes;
    case model::ChatTemplateFamily::kLlama3:
    case model::ChatTemplateFamily::kLlama31: return ToolCallFormat::kLlama3Json;
    default: return ToolCallFormat::kNone;
  }
}

std::string tool_call_format_name(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::kDeepSeek: return "deepseek";
    case ToolCallFormat::kHermes: return "hermes";
    case ToolCallFormat::kLlama3Json: return "llama3_json";
    case ToolCallFormat::kNone: return "";
  }
  return "";
}

ChatOutputParser::ChatOutputParser(bool reasoning, ToolCallFormat tools, bool parallel_tool_calls,
                                   std::function<std::string()> make_id)
    : format_(tools),
      parallel_(parallel_tool_calls),
      make_id_(std::move(make_id)),
      state_(reasoning ? State::kReasoning : State::kContent) {}

ChoiceOutput ChatOutputParser::push(std::string_view text) {
  ChoiceOutput out;
  held_.append(text);
  run(/*final=*/false, &out);
  return out;
}

ChoiceOutput ChatOutputParser::finish() {
  ChoiceOutput out;
  run(/*final=*/true, &out);
  return out;
}

void ChatOutputParser::emit_content(std::string_view text, ChoiceOutput* out) {
  // Between and after tool calls only text that says something is content.
  if (text.empty() || (!calls_.empty() && trim_blank(text).empty())) return;
  content_.append(text);
  out->text.append(text);
}

void ChatOutputParser::emit_reasoning(std::string_view text, ChoiceOutput* out) {
  reasoning_.append(text);
  out->reasoning.append(text);
}

void ChatOutputParser::start_call(std::string name, ChoiceOutput* out) {
  keep_call_ = parallel_ || calls_.empty();
  if (!keep_call_) return;
  ToolCallOutput call;
  call.index = static_cast<int32_t>(calls_.size());
  call.id = make_id_();
  call.name = std::move(name);
  calls_.push_back(call);
  out->tool_calls.push_back(std::move(call));
}

void ChatOutputParser::add_arguments(std::string_view text, ChoiceOutput* out) {
  if (!keep_call_ || text.empty()) return;
  calls_.back().arguments.append(text);
  if (out->tool_calls.empty() || out->tool_calls.back().index != calls_.back().index) {
    ToolCallOutput piece;
    piece.index = calls_.back().index;
    out->tool_calls.push_back(std::move(piece));
  }
  out->tool_calls.back().arguments.append(text);
}

void ChatOutputParser::run(bool final, ChoiceOutput* out) {
  while (true) {
    if (state_ == State::kReasoning) {
      if (reasoning_.empty() && !held_.empty()) {
        // A leading <think> (templates that do not open it themselves) is dropped.
        if (held_.starts_with(kThinkOpen)) {
          held_.erase(0, kThinkOpen.size());
        } else if (!final && std::string_view(kThinkOpen).starts_with(held_)) {
          return;
        }
      }
      const size_t close = held_.find(kThinkClose);
      if (close != std::string::npos) {
        emit_reasoning(std::string_view(held_).substr(0, close), out);
        held_.erase(0, close + kThinkClose.size());
        state_ = State::kContent;
        continue;
      }
      const size_t keep = final ? 0 : partial_suffix(held_, kThinkClose);
      emit_reasoning(std::string_view(held_).substr(0, held_.size() - keep), out);
      held_.erase(0, held_.size() - keep);
      return;
    }
    if (state_ == State::kDone || format_ == ToolCallFormat::kNone) {
      emit_content(held_, out);
      held_.clear();
      return;
    }
    const bool progressed = format_ == ToolCallFormat::kDeepSeek ? step_deepseek(final, out)
                            : format_ == ToolCallFormat::kHermes ? step_hermes(final, out)
                                                                 : step_llama3(final, out);
    if (!progressed) return;
  }
}

bool ChatOutputParser::step_deepseek(bool final, ChoiceOutput* out) {
  switch (state_) {
    case State::kContent: {
      const size_t calls = held_.find(kCallsBegin);
      const size_t call = held_.find(kCallBegin);
      const size_t at = std::min(calls, call);
      if (at == std::string::npos) {
        const size_t keep =
            final ? 0
                  : std::max(partial_suffix(held_, kCallsBegin), partial_suffix(held_, kCallBegin));
        emit_content(std::string_view(held_).substr(0, held_.size() - keep), out);
        held_.erase(0, held_.size() - keep);
        return false;
      }
      emit_content(std::string_view(held_).substr(0, at), out);
      held_.erase(0, at == calls ? at + kCallsBegin.size() : at);
      state_ = State::kCalls;
      return true;
    }
    case State::kCalls: {
      size_t blank = 0;
      while (blank < held_.size() && is_blank(held_[blank])) ++blank;
      const std::string_view rest = std::string_view(held_).substr(blank);
      if (rest.starts_with(kCallBegin)) {
        held_.erase(0, blank + kCallBegin.size());
        state_ = State::kCallName;
        return true;
      }
      if (rest.starts_with(kCallsEnd)) {
        held_.erase(0, blank + kCallsEnd.size());
        state_ = State::kDone;
        return true;
      }
      if (!final && (std::string_view(kCallBegin).starts_with(rest) ||
                     std::string_view(kCallsEnd).starts_with(rest))) {
        return false;
      }
      state_ = State::kDone;  // anything else after the calls is plain content
      return true;
    }
    case State::kCallName: {
      const size_t sep = held_.find(kToolSep);
      if (sep == std::string::npos) {
        if (!final) return false;
        state_ = State::kDone;  // an unfinished call header is not a call
        return true;
      }
      const std::string head(trim_blank(std::string_view(held_).substr(0, sep)));
      const size_t body = sep + kToolSep.size();
      if (head != "function") {  // V3.1: NAME<｜tool▁sep｜>ARGUMENTS
        held_.erase(0, body);
        fenced_ = false;
        start_call(head, out);
        state_ = State::kCallArguments;
        return true;
      }
      const size_t newline = held_.find('\n', body);
      if (newline == std::string::npos) {
        if (!final) return false;
        state_ = State::kDone;
        return true;
      }
      const std::string_view after = std::string_view(held_).substr(newline + 1);
      if (!final && after.size() < kJsonFence.size() && kJsonFence.starts_with(after)) return false;
      fenced_ = after.starts_with(kJsonFence);
      std::string name(trim_blank(std::string_view(held_).substr(body, newline - body)));
      held_.erase(0, newline + 1 + (fenced_ ? kJsonFence.size() : 0));
      start_call(std::move(name), out);
      state_ = State::kCallArguments;
      return true;
    }
    case State::kCallArguments: {
      const size_t end = held_.find(kCallEnd);
      if (end == std::string::npos && !final) {
        // A possible start of the end marker, and the fence or blanks before it.
        const size_t marker = partial_suffix(held_, kCallEnd);
        const size_t keep =
            marker + trailing_fence(std::string_view(held_).substr(0, held_.size() - marker));
        add_arguments(std::string_view(held_).substr(0, held_.size() - keep), out);
        held_.erase(0, held_.size() - keep);
        return false;
      }
      const std::string_view args =
          std::string_view(held_).substr(0, end == std::string::npos ? held_.size() : end);
      add_arguments(args.substr(0, args.size() - trailing_fence(args)), out);
      held_.erase(0, end == std::string::npos ? held_.size() : end + kCallEnd.size());
      state_ = State::kCalls;
      return true;
    }
    default: return false;
  }
}

bool ChatOutputParser::step_hermes(bool final, ChoiceOutput* out) {
  if (state_ == State::kContent) {
    const size_t open = held_.find(kHermesOpen);
    if (open == std::string::npos) {
      const size_t keep = final ? 0 : partial_suffix(held_, kHermesOpen);
      emit_content(std::string_view(held_).substr(0, held_.size() - keep), out);
      held_.erase(0, held_.size() - keep);
      return false;
    }
    emit_content(std::string_view(held_).substr(0, open), out);
    held_.erase(0, open);  // the opening tag stays until the call is complete
    state_ = State::kCallArguments;
    return true;
  }
  const size_t close = held_.find(kHermesClose);
  if (close == std::string::npos) {
    if (!final) return false;
    state_ = State::kDone;  // an unterminated call is content
    return true;
  }
  const std::string_view body =
      trim_blank(std::string_view(held_).substr(kHermesOpen.size(), close - kHermesOpen.size()));
  const nlohmann::json call = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  const size_t end = close + kHermesClose.size();
  if (call.is_object() && call.contains("name") && call["name"].is_string()) {
    start_call(call["name"].get<std::string>(), out);
    const nlohmann::json args = call.value("arguments", nlohmann::json::object());
    add_arguments(args.is_string() ? args.get<std::string>() : args.dump(), out);
  } else {
    emit_content(std::string_view(held_).substr(0, end), out);
  }
  held_.erase(0, end);
  state_ = State::kContent;
  return true;
}

bool ChatOutputParser::step_llama3(bool final, ChoiceOutput* out) {
  if (state_ == State::kContent) {
    std::string_view rest = std::string_view(held_);
    while (!rest.empty() && is_blank(rest.front())) rest.remove_prefix(1);
    if (rest.starts_with(kPythonTag)) rest.remove_prefix(kPythonTag.size());
    while (!rest.empty() && is_blank(rest.front())) rest.remove_prefix(1);
    if (rest.empty() || (!final && kPythonTag.starts_with(rest))) {
      if (!final) return false;
      state_ = State::kDone;
      return true;
    }
    state_ = rest.front() == '{' ? State::kCalls : State::kDone;
    return true;
  }
  if (!final) return false;  // the calls are read whole at the end
  std::string_view rest = trim_blank(held_);
  if (rest.starts_with(kPythonTag)) rest = trim_blank(rest.substr(kPythonTag.size()));
  std::vector<std::pair<std::string, std::string>> calls;  // name, arguments
  bool all_calls = true;
  while (!rest.empty() && all_calls) {
    const size_t end = rest.front() == '{' ? object_end(rest) : std::string_view::npos;
    const nlohmann::json call =
        end == std::string_view::npos
            ? nlohmann::json()
            : nlohmann::json::parse(rest.substr(0, end), nullptr, /*allow_exceptions=*/false);
    const char* key = call.is_object() && call.contains("parameters") ? "parameters" : "arguments";
    if (!call.is_object() || !call.contains("name") || !call["name"].is_string() ||
        !call.contains(key) || !call[key].is_object()) {
      all_calls = false;
      break;
    }
    calls.emplace_back(call["name"].get<std::string>(), call[key].dump());
    rest = trim_blank(rest.substr(end));
    if (rest.starts_with(";")) rest = trim_blank(rest.substr(1));
  }
  state_ = State::kDone;
  if (!all_calls || calls.empty()) return true;  // content, as it is
  for (auto& [name, arguments] : calls) {
    start_call(std::move(name), out);
    add_arguments(arguments, out);
  }
  held_.clear();
  return true;
}

}  // namespace moeserve::server
