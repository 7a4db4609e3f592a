// What the gateway reads from an OpenAI request body before it forwards it unchanged:
// the model (which deployment), whether it streams, its cost in tokens (for the
// router's load) and the canonical text of its prompt's start (for prefix affinity).
// Also the OpenAI error shape the gateway answers in. Pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/http_server.h"
#include "common/status.h"

namespace moeserve::gateway {

struct RequestCostOptions {
  // What a request without max_tokens / max_completion_tokens is assumed to generate.
  int64_t assumed_max_tokens = 512;
};

struct InspectedRequest {
  std::string model;
  bool stream = false;
  int64_t prompt_tokens_estimate = 0;  // ~4 bytes per token of text; ids count as given
  int64_t max_tokens = 0;              // per choice
  int64_t choices = 1;                 // n
  // Prompt text in a canonical form whose equal prefixes mean equal prompt prefixes:
  // chat: the tools (JSON) then each message as "<role>\n<text>\n\n"; completions: the
  // prompt (the first one of a list; token ids as comma-separated numbers).
  std::string prefix_text;
  // prompt_tokens_estimate + choices * max_tokens.
  int64_t cost_tokens() const { return prompt_tokens_estimate + choices * max_tokens; }
};

// Parses a /v1/chat/completions or /v1/completions body (chat: `messages` is read,
// completions: `prompt`; other paths read only `model`). invalid_argument naming the
// field when the body is not a JSON object or `model` is missing or not a string.
StatusOr<InspectedRequest> inspect_request(std::string_view path, std::string_view body,
                                           const RequestCostOptions& options);

// OpenAI's error body: {"error":{"message","type","param","code"}} ("" param/code: null).
std::string openai_error_body(std::string_view message, std::string_view type,
                              std::string_view code = "", std::string_view param = "");
// That body as a response; retry_after_s > 0 adds Retry-After.
http::Response openai_error(int status, std::string_view message, std::string_view type,
                            std::string_view code = "", int64_t retry_after_s = 0);

}  // namespace moeserve::gateway
