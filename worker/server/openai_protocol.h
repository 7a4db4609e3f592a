// The OpenAI wire format of /v1/completions and /v1/chat/completions: request parsing
// and validation, response and stream-chunk bodies, Server-Sent Events framing, and
// error bodies. Pure functions over JSON; no I/O, no engine.
//
// Requests: fields of the wrong type or out of range are a 400 invalid_request_error
// whose `param` names the field. Every parameter that would change the output and is
// not implemented (echo, suffix, best_of != n, length_penalty, bad_words,
// allowed_token_ids, guided_* other than guided_json, structured_outputs, beam search,
// prompt_logprobs, ...: kUnsupported in the .cpp) is refused the same way unless it has
// the value that changes nothing; it is never ignored. Fields this file does not know
// are ignored (clients send many), and so are user, metadata, store and service_tier,
// which do not change the output.
// Sampling parameters beyond OpenAI's (vLLM's, engine::SamplingParams has their
// semantics): repetition_penalty, min_p, min_tokens; presence_penalty, frequency_penalty
// and logit_bias ({"token id": bias in [-100, 100]}) are OpenAI's own.
// Implemented extensions (vLLM's): ignore_eos, stop_token_ids, skip_special_tokens,
// include_stop_str_in_output, add_special_tokens; on chat, add_generation_prompt,
// chat_template (Jinja source for this request), chat_template_kwargs.
// Structured outputs (both endpoints): response_format {"type": "text"},
// {"type": "json_object"} or {"type": "json_schema", "json_schema": {"name", "schema",
// "strict", "description"}}, and vLLM's guided_json (a schema, or its JSON text); the
// schema is compiled by the server (a schema it cannot compile is its 400). tool_choice:
// "none", "auto", "required" or {"type": "function", "function": {"name"}} naming one of
// the tools.
// `prompt` is one prompt: a string, a list of token ids, or a list holding exactly one
// of those. Chat messages: system, developer (as system), user, assistant (content may
// be null; tool_calls; reasoning_content) and tool (tool_call_id). Errors:
// {"error":{"message","type","param","code"}} with null param/code when not applicable.
//
// JSON is dumped with invalid UTF-8 replaced (U+FFFD), so a token that ends inside a
// multi-byte character never makes a body unserialisable; logprobs `bytes` are the
// token's own bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "worker/model/chat_template.h"

namespace moeserve::server {

enum class Endpoint { kCompletions, kChat };

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" is null
  std::string code;   // "" is null
};

// {"error":{"message":...,"type":...,"param":...,"code":...}}
std::string error_body(const ApiError& error);

inline constexpr int32_t kMaxChoices = 16;
inline constexpr int32_t kMaxStopStrings = 16;
inline constexpr int32_t kMaxLogprobs = 20;

// What the output must be: any text, any JSON object, or JSON valid under a schema.
struct OutputFormat {
  enum class Kind { kText, kJsonObject, kJsonSchema };
  Kind kind = Kind::kText;
  nlohmann::ordered_json schema;  // kJsonSchema
  bool strict = false;            // json_schema.strict: OpenAI's strict mode
  std::string param;              // the field it came from: response_format or guided_json
};

struct ParsedRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;  // "" when absent
  // Completions: the prompt as text, or as token ids.
  bool prompt_is_text = true;
  std::string prompt_text;
  std::vector<int32_t> prompt_ids;
  // Chat.
  std::vector<model::ChatMessage> messages;
  model::ChatRenderOptions chat;             // add_generation_prompt, tools, chat_template_kwargs
  std::optional<std::string> chat_template;  // this request's own template
  // "none", "auto", "required" or "function" (tool_choice_function); all but "none" need
  // tools.
  std::string tool_choice = "none";
  std::string tool_choice_function;
  OutputFormat format;
  bool parallel_tool_calls = true;
  std::optional<int64_t> max_tokens;  // max_completion_tokens, else max_tokens
  double temperature = 1.0;
  double top_p = 1.0;
  int32_t top_k = 0;  // 0 (or -1 on the wire): no limit
  double min_p = 0.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  double repetition_penalty = 1.0;
  int32_t min_tokens = 0;
  std::vector<std::pair<int32_t, float>> logit_bias;  // {token id, bias}
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  int32_t n = 1;
  bool logprobs = false;     // completions: logprobs given; chat: logprobs true
  int32_t top_logprobs = 0;  // completions: the logprobs value; chat: top_logprobs
  bool stream = false;
  bool include_usage = false;           // stream_options.include_usage
  bool ignore_eos = false;              // extension (as in vLLM): generate past EOS to max_tokens
  std::vector<int32_t> stop_token_ids;  // extension: more ids that end a choice
  bool skip_special_tokens = true;      // extension: special tokens left out of text
  bool include_stop_str_in_output = false;  // extension: keep the stop string that matched
  bool add_special_tokens = false;          // extension: BOS before the prompt (completions:
                                            // true by default; chat: false, the template has it)
};

// Parses and validates a request body; the error is a 400 naming the field.
std::optional<ApiError> parse_request(Endpoint endpoint, std::string_view body, ParsedRequest* out);

// POST /tokenize (vLLM's shape): {"prompt": text, "add_special_tokens": true} or
// {"messages": [...], "add_generation_prompt": true, "add_special_tokens": false, "tools",
// "chat_template", "chat_template_kwargs"}, plus "model" and "return_token_strs". Fills
// the prompt fields of `out` (endpoint kCompletions for a prompt, kChat for messages).
std::optional<ApiError> parse_tokenize_request(std::string_view body, ParsedRequest* out,
                                               bool* return_token_strs);
// POST /detokenize: {"tokens": [ids], "model"}.
std::optional<ApiError> parse_detokenize_request(std::string_view body, std::string* model,
                                                 std::vector<int32_t>* tokens);

struct TopLogprob {
  std::string token;  // its text
  std::string bytes;  // its own bytes (part of a UTF-8 character, perhaps)
  float logprob = 0.0f;
};

// Log-probabilities of one generated token.
struct TokenLogprobs {
  std::string token;  // its text
  std::string bytes;  // its own bytes
  float logprob = 0.0f;
  std::vector<TopLogprob> top;  // most likely first
  int64_t text_offset = 0;      // characters of the choice's text before this token
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens served from the prefix cache
};

// One tool call of a choice, or (streaming) a piece of one: the first piece of a call
// carries its id and name, later ones only more of the arguments.
struct ToolCallOutput {
  int32_t index = 0;  // position among the choice's tool calls
  std::string id;     // "" in a later piece
  std::string name;   // "" in a later piece
  std::string arguments;
};

struct ChoiceOutput {
  int32_t index = 0;
  std::string text;       // completions: the text; chat: the content
  std::string reasoning;  // chat: reasoning_content
  std::vector<ToolCallOutput> tool_calls;
  std::string finish_reason;  // "stop", "length" or "tool_calls"
  std::vector<TokenLogprobs> logprobs;
};

struct ResponseMeta {
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;
  std::string model;
};

// Whole (non-streaming) responses; `logprobs` says whether the request asked for them.
nlohmann::json completion_response(const ResponseMeta& meta,
                                   const std::vector<ChoiceOutput>& choices, const Usage& usage,
                                   bool logprobs);
nlohmann::json chat_response(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices,
                             const Usage& usage, bool logprobs);

// One streamed chunk for one choice. `finish_reason` "" is null. For chat, `first`
// chunks carry the assistant role; a delta has content, reasoning_content and
// tool_calls only when it has some. include_usage adds "usage": null.
nlohmann::json stream_chunk(Endpoint endpoint, const ResponseMeta& meta, const ChoiceOutput& delta,
                            bool first, bool logprobs, bool include_usage);
// The last chunk when include_usage: empty choices and the usage.
nlohmann::json usage_chunk(Endpoint endpoint, const ResponseMeta& meta, const Usage& usage);

nlohmann::json usage_json(const Usage& usage);
std::string dump_json(const nlohmann::json& value);
// "data: <json>\n\n"
std::string sse_event(const nlohmann::json& value);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// Characters (UTF-8 code points) in `text`.
int64_t utf8_length(std::string_view text);

}  // namespace moeserve::server
