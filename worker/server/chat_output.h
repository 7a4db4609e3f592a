// ChatOutputParser: splits a chat choice's generated text, as it streams, into
// reasoning_content, content and tool calls, the way vLLM's reasoning and tool-call
// parsers do.
//
// Reasoning (when enabled, for templates whose generation prompt opens "<think>", as
// DeepSeek-R1's does): everything up to "</think>" is reasoning_content, a leading
// "<think>" dropped; the text after it is content. A choice that never closes its
// reasoning is all reasoning_content.
//
// Tool calls (in the content, when the request has tools and tool_choice auto), in the
// format of the model's family (tool_call_format()):
//   deepseek  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n
//             ```json\nARGUMENTS\n```<｜tool▁call▁end｜> ... <｜tool▁calls▁end｜>
//             (DeepSeek-V3 and R1; V3.1's NAME<｜tool▁sep｜>ARGUMENTS form too). Text
//             before the first call is content; the name is sent as soon as it is
//             complete and the arguments piece by piece.
//   hermes    <tool_call>\n{"name": NAME, "arguments": {...}}\n</tool_call> (ChatML
//             templates: Qwen2.5, Qwen3), each call sent whole once it closes.
//   llama3    {"name": NAME, "parameters": {...}} (Llama 3.x, as vLLM's llama3_json
//             parser): an output that starts (after blanks, and an optional
//             <|python_tag|>) with "{" is held to the end, then read as one or more such
//             objects separated by ";" ("arguments" is accepted for "parameters"); if any
//             of them is not a call, the whole output is content.
// Text that could still be the start of a marker is held back until it is decided;
// finish() releases what is left: a DeepSeek call cut off in its arguments keeps the
// arguments it has, an unfinished call header or hermes call is content. With
// parallel_tool_calls false only the first call is kept. Call ids come from the injected
// generator (the server's: "call_" + 16 hex digits).
//
// Single-threaded: one per choice of one request.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "worker/model/chat_template.h"
#include "worker/server/openai_protocol.h"

namespace moeserve::server {

enum class ToolCallFormat { kNone, kDeepSeek, kHermes, kLlama3Json };

// The format a chat template family's models call tools in; kNone when there is no
// parser for it.
ToolCallFormat tool_call_format(model::ChatTemplateFamily family);
// "deepseek", "hermes" or "llama3_json"; "" for kNone.
std::string tool_call_format_name(ToolCallFormat format);

class ChatOutputParser {
 public:
  ChatOutputParser(bool reasoning, ToolCallFormat tools, bool parallel_tool_calls,
                   std::function<std::string()> make_id);

  // Consumes released text; returns the content, reasoning and tool-call pieces that can
  // be sent now (index and finish_reason unset).
  ChoiceOutput push(std::string_view text);
  // The end of the choice: releases everything held back.
  ChoiceOutput finish();

  // Everything returned so far, with whole tool calls.
  const std::string& content() const { return content_; }
  const std::string& reasoning() const { return reasoning_; }
  const std::vector<ToolCallOutput>& tool_calls() const { return calls_; }

 private:
  enum class State { kReasoning, kContent, kCalls, kCallName, kCallArguments, kDone };

  void run(bool final, ChoiceOutput* out);
  void emit_content(std::string_view text, ChoiceOutput* out);
  void emit_reasoning(std::string_view text, ChoiceOutput* out);
  // DeepSeek: one step of the state machine on held_; false when it needs more text.
  bool step_deepseek(bool final, ChoiceOutput* out);
  bool step_hermes(bool final, ChoiceOutput* out);
  bool step_llama3(bool final, ChoiceOutput* out);
  void start_call(std::string name, ChoiceOutput* out);
  void add_arguments(std::string_view text, ChoiceOutput* out);

  ToolCallFormat format_;
  bool parallel_;
  std::function<std::string()> make_id_;
  State state_;
  std::string held_;       // text not yet decided
  std::string call_type_;  // deepseek: the text before <｜tool▁sep｜>
  bool fenced_ = false;    // deepseek: arguments inside ```json fences
  bool keep_call_ = true;  // false for calls dropped by parallel_tool_calls=false
  std::string content_;
  std::string reasoning_;
  std::vector<ToolCallOutput> calls_;
};

}  // namespace moeserve::server
