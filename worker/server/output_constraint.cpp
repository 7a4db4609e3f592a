#include "worker/server/output_constraint.h"

#include <vector>

#include "worker/server/tool_call_grammar.h"
#include "worker/structured/json_schema.h"

namespace moeserve::server {
namespace {

ApiError bad_request(std::string param, std::string message) {
  ApiError e;
  e.status = 400;
  e.param = std::move(param);
  e.message = std::move(message);
  return e;
}

}  // namespace

std::shared_ptr<const structured::TokenVocabulary> constraint_vocabulary(
    const model::Tokenizer& tokenizer) {
  std::vector<std::string> bytes;
  std::vector<bool> excluded;
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    bytes.push_back(tokenizer.token_bytes(id));
    excluded.push_back(tokenizer.is_special(id));
  }
  return std::make_shared<structured::TokenVocabulary>(std::move(bytes), excluded);
}

OutputConstraints::OutputConstraints(std::shared_ptr<const structured::TokenVocabulary> vocabulary,
                                     int32_t capacity)
    : vocabulary_(std::move(vocabulary)), capacity_(capacity) {}

std::optional<ApiError> OutputConstraints::build(
    const ParsedRequest& parsed, ToolCallFormat tools, bool reasoning,
    std::shared_ptr<structured::TokenConstraint>* out) {
  out->reset();
  const bool forced_call = parsed.tool_choice == "required" || parsed.tool_choice == "function";
  const OutputFormat& format = parsed.format;
  if (!forced_call && format.kind == OutputFormat::Kind::kText) return std::nullopt;
  const std::string param =
      forced_call ? "tool_choice"
                  : (format.param.starts_with("guided") ? "guided_json" : "response_format");
  const std::string what = forced_call ? "tool_choice '" + parsed.tool_choice + "'" : param;
  if (parsed.ignore_eos) {
    return bad_request("ignore_eos", "ignore_eos cannot be combined with " + what +
                                         ": a constrained output ends with EOS");
  }
  if (parsed.min_tokens > 0) {
    return bad_request("min_tokens", "min_tokens cannot be combined with " + what +
                                         ": the output may be complete before");
  }
  if (reasoning) {
    return bad_request(param, what +
                                  " cannot be combined with reasoning output (the grammar would "
                                  "forbid <think>): start the server with --reasoning-parser none");
  }
  if (forced_call && tools == ToolCallFormat::kNone) {
    return bad_request("tool_choice",
                       "tool_choice '" + parsed.tool_choice +
                           "' needs the model family's tool-call format, and this chat template "
                           "has none (formats exist for deepseek, chatml and llama-3 templates)");
  }

  // What defines the grammar, as the cache key.
  std::string key;
  if (forced_call) {
    key = "tools:" + tool_call_format_name(tools) + ":" + parsed.tool_choice_function + ":" +
          (parsed.parallel_tool_calls ? "1" : "0") + ":" + parsed.chat.tools.dump();
  } else if (format.kind == OutputFormat::Kind::kJsonObject) {
    key = "json_object";
  } else {
    key = std::string("schema:") + (format.strict ? "1:" : "0:") + format.schema.dump();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
      if (it->first != key) continue;
      cache_.splice(cache_.begin(), cache_, it);
      *out = cache_.front().second;
      return std::nullopt;
    }
  }
  structured::JsonGrammarOptions options;
  StatusOr<structured::Grammar> grammar = structured::json_object_grammar(options);
  if (forced_call) {
    grammar = tool_call_grammar(tools, parsed.chat.tools, parsed.tool_choice_function,
                                parsed.parallel_tool_calls, options);
    if (!grammar.ok()) return bad_request("tools", grammar.status().message());
  } else if (format.kind == OutputFormat::Kind::kJsonSchema) {
    options.strict = format.strict;
    grammar = structured::compile_json_schema(format.schema, options);
    if (!grammar.ok())
      return bad_request(format.param, format.param + ": " + grammar.status().message());
  }
  auto constraint =
      std::make_shared<structured::TokenConstraint>(std::move(grammar).value(), vocabulary_);
  std::lock_guard<std::mutex> lock(mutex_);
  cache_.emplace_front(key, constraint);
  while (static_cast<int32_t>(cache_.size()) > capacity_) cache_.pop_back();
  *out = std::move(constraint);
  return std::nullopt;
}

}  // namespace moeserve::server
