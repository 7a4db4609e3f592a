// OpenAI request JSON -> internal request (worker/server/openai_protocol.h). The first
// byte picks the parser (completions, chat, /tokenize, /detokenize); the rest is the
// body. A refused body is a 400 invalid_request_error with a message whose error_body
// is a JSON error object; an accepted one is inside every documented range.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/fuzz/fuzz_check.h"
#include "worker/server/openai_protocol.h"

namespace {

using namespace moeserve::server;

void check_error(const ApiError& error) {
  FUZZ_CHECK(error.status == 400 && error.type == "invalid_request_error", error.message);
  FUZZ_CHECK(!error.message.empty(), "an error without a message");
  const nlohmann::json body = nlohmann::json::parse(error_body(error), nullptr, false);
  FUZZ_CHECK(body.is_object() && body.contains("error") && body["error"]["message"].is_string(),
             "error_body is not an error object");
}

void check_request(const ParsedRequest& r) {
  if (r.endpoint == Endpoint::kCompletions) {
    FUZZ_CHECK(r.prompt_is_text ? !r.prompt_text.empty() : !r.prompt_ids.empty(),
               "an empty prompt");
    for (int32_t id : r.prompt_ids) FUZZ_CHECK(id >= 0, "a negative prompt token id");
  } else {
    FUZZ_CHECK(!r.messages.empty(), "chat without messages");
  }
  FUZZ_CHECK(r.n >= 1 && r.n <= kMaxChoices, "n");
  FUZZ_CHECK(static_cast<int32_t>(r.stop.size()) <= kMaxStopStrings, "stop");
  for (const std::string& s : r.stop) FUZZ_CHECK(!s.empty(), "an empty stop string");
  FUZZ_CHECK(r.top_logprobs >= 0 && r.top_logprobs <= kMaxLogprobs, "top_logprobs");
  FUZZ_CHECK(!r.max_tokens || *r.max_tokens >= 1, "max_tokens");
  FUZZ_CHECK(r.temperature >= 0 && r.temperature <= 2, "temperature");
  FUZZ_CHECK(r.top_p > 0 && r.top_p <= 1, "top_p");
  FUZZ_CHECK(r.min_p >= 0 && r.min_p <= 1, "min_p");
  FUZZ_CHECK(r.top_k >= 0 && r.min_tokens >= 0, "top_k / min_tokens");
  FUZZ_CHECK(r.repetition_penalty > 0, "repetition_penalty");
  for (const auto& [id, bias] : r.logit_bias) {
    FUZZ_CHECK(id >= 0 && bias >= -100 && bias <= 100, "logit_bias");
  }
  for (int32_t id : r.stop_token_ids) FUZZ_CHECK(id >= 0, "stop_token_ids");
  FUZZ_CHECK(r.tool_choice == "none" || r.tool_choice == "auto" || r.tool_choice == "required" ||
                 r.tool_choice == "function",
             r.tool_choice);
  FUZZ_CHECK(!r.include_usage || r.stream, "include_usage without stream");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  ParsedRequest request;
  switch (data[0] % 4) {
    case 0:
    case 1: {
      const Endpoint endpoint = data[0] % 4 == 0 ? Endpoint::kCompletions : Endpoint::kChat;
      if (auto error = parse_request(endpoint, body, &request)) {
        check_error(*error);
      } else {
        FUZZ_CHECK(request.endpoint == endpoint, "endpoint");
        check_request(request);
      }
      break;
    }
    case 2: {
      bool return_token_strs = false;
      if (auto error = parse_tokenize_request(body, &request, &return_token_strs)) {
        check_error(*error);
      } else if (request.endpoint == Endpoint::kChat) {
        FUZZ_CHECK(!request.messages.empty(), "/tokenize messages empty");
      }
      break;
    }
    default: {
      std::string model;
      std::vector<int32_t> tokens;
      if (auto error = parse_detokenize_request(body, &model, &tokens)) {
        check_error(*error);
      } else {
        for (int32_t id : tokens) FUZZ_CHECK(id >= 0, "a negative token id to detokenize");
      }
      break;
    }
  }
  return 0;
}
