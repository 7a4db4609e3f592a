// The OpenAI wire format of /v1/completions and /v1/chat/completions: request parsing
// and validation, response and stream-chunk bodies, Server-Sent Events framing, and
// error bodies. Pure functions over JSON; no I/O, no engine.
//
// Requests: unknown fields are ignored (clients send many); fields of the wrong type or
// out of range are a 400 invalid_request_error whose `param` names the field. Features
// this server does not implement (echo, suffix, best_of != n, logit_bias, non-zero
// presence/frequency penalties, tools) are refused the same way rather than ignored.
// Extension: ignore_eos (vLLM's), for benchmarks that need fixed-length outputs.
// `prompt` is one prompt: a string, a list of token ids, or a list holding exactly one
// of those. Errors: {"error":{"message","type","param","code"}} with null param/code
// when not applicable.
//
// JSON is dumped with invalid UTF-8 replaced (U+FFFD), so a token that ends inside a
// multi-byte character never makes a body unserialisable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
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

struct ParsedRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;  // "" when absent
  // Completions: the prompt as text, or as token ids.
  bool prompt_is_text = true;
  std::string prompt_text;
  std::vector<int32_t> prompt_ids;
  // Chat.
  std::vector<model::ChatMessage> messages;
  std::optional<int64_t> max_tokens;  // max_tokens, or max_completion_tokens (chat)
  double temperature = 1.0;
  double top_p = 1.0;
  int32_t top_k = 0;  // 0 (or -1 on the wire): no limit
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  int32_t n = 1;
  bool logprobs = false;     // completions: logprobs given; chat: logprobs true
  int32_t top_logprobs = 0;  // completions: the logprobs value; chat: top_logprobs
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool ignore_eos = false;     // extension (as in vLLM): generate past EOS to max_tokens
};

// Parses and validates a request body; the error is a 400 naming the field.
std::optional<ApiError> parse_request(Endpoint endpoint, std::string_view body, ParsedRequest* out);

// Log-probabilities of one generated token.
struct TokenLogprobs {
  std::string token;  // its text
  float logprob = 0.0f;
  std::vector<std::pair<std::string, float>> top;  // most likely first
  int64_t text_offset = 0;  // characters of the choice's text before this token
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

struct ChoiceOutput {
  int32_t index = 0;
  std::string text;
  std::string finish_reason;  // "stop" or "length"
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
// chunks carry the assistant role. include_usage adds "usage": null.
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
