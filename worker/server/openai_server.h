// The OpenAI-compatible HTTP API of a worker: POST /v1/completions,
// POST /v1/chat/completions, GET /v1/models, and vLLM's POST /tokenize, POST /detokenize
// and GET /version (all behind the API key when one is set; the Bearer scheme is matched
// case-insensitively), on a common http::Server.
//
// A generation handler parses and validates the body (openai_protocol.h), builds the
// prompt (text: model::PromptEncoder, BOS as tokenizer_config.json says unless
// add_special_tokens is false, + the tokenizer's ids; token ids: as given; chat: the
// model's chat template, or the request's own chat_template, rendered with the messages,
// tools and chat_template_kwargs, then encoded with special tokens), checks it against
// max_model_len, submits it to the Scheduler and reads the request's events: as one JSON
// response, or as Server-Sent Events, one chunk per choice per scheduler step. Stop
// strings are matched on the text (text_output.h); a choice that hits one is stopped in
// the scheduler. Structured outputs (response_format, guided_json) and forced tool calls
// (tool_choice required or a named function) run under a token constraint
// (output_constraint.h), so their output always follows the schema or the call format,
// unless max_tokens cuts it (finish_reason "length"). Chat text is split into
// reasoning_content, content and tool calls by a
// ChatOutputParser (chat_output.h): the tool-call format is the template family's
// (tools with tool_choice auto on a family without one are a 400 naming tools); reasoning
// is split per ApiOptions::reasoning. A choice that called a tool finishes with
// "tool_calls". A client that goes away cancels its request, which frees its KV blocks
// at the next scheduler step. usage.prompt_tokens_details.cached_tokens is the prompt's
// prefix-cache hit.
//
// Status codes: 400 malformed or invalid request (param names the field), 401 missing
// or wrong API key, 404 unknown model, 413 body too large (the server's limit), 429
// queue full (with Retry-After), 503 draining, 500 engine failure. Every request ends
// with one structured log line and its metrics. Thread-safe: handlers run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/api_keys.h"
#include "common/clock.h"
#include "common/http_server.h"
#include "worker/engine/scheduler.h"
#include "worker/model/prompt_encoder.h"
#include "worker/server/openai_protocol.h"
#include "worker/server/output_constraint.h"
#include "worker/server/worker_metrics.h"

namespace moeserve::server {

// When chat output is split into reasoning_content and content at "</think>".
enum class ReasoningMode {
  kAuto,   // for DeepSeek-R1-style templates (their generation prompt opens <think>)
  kNone,   // never: the reasoning stays in content
  kThink,  // always (e.g. Qwen3 with thinking on)
};

// "auto", "none" or "think" (the serve flag --reasoning-parser).
StatusOr<ReasoningMode> parse_reasoning_mode(std::string_view name);

struct ApiOptions {
  std::string served_model_name;
  std::shared_ptr<auth::ApiKeys> api_keys;  // null: no authentication
  int64_t max_model_len = 4096;
  ReasoningMode reasoning = ReasoningMode::kAuto;
};

// What the API needs from the model folder.
struct PromptContext {
  model::PromptEncoder encoder;         // text prompts, the chat template
  std::vector<int32_t> stop_token_ids;  // the model's EOS ids
  int64_t vocab_size = 0;
  // The tokenizer's vocabulary as bytes, for constrained decoding (output_constraint.h).
  std::shared_ptr<const structured::TokenVocabulary> vocabulary;
};

// Loads the prompt encoder (tokenizer.json, tokenizer_config.json: chat template, BOS)
// and the EOS ids; a folder without a usable chat template loads with a warning.
StatusOr<PromptContext> load_prompt_context(const std::string& model_dir,
                                            const model::ModelConfig& config);

// The body for errors the http::Server answers itself (413 etc.), in OpenAI's shape.
http::Response server_error_response(int status, std::string_view reason);

class OpenAiApi {
 public:
  OpenAiApi(ApiOptions options, PromptContext prompt, engine::Scheduler& scheduler,
            WorkerMetrics& metrics, Clock* clock = nullptr);

  void add_routes(http::Server& server);

 private:
  void handle_generate(Endpoint endpoint, const http::Request& request, http::Responder& responder);
  http::Response handle_models(const http::Request& request);
  http::Response handle_tokenize(const http::Request& request);
  http::Response handle_detokenize(const http::Request& request);
  std::optional<ApiError> check_api_key(const http::Request& request) const;
  std::optional<ApiError> check_model(const std::string& model) const;
  // The chat template a request renders with: its own, or the model's; or a 400.
  std::optional<ApiError> chat_template_for(const ParsedRequest& parsed,
                                            std::optional<model::ChatTemplate>* own,
                                            const model::ChatTemplate** chosen) const;
  // The prompt ids of a parsed request, or a 400; `family` gets the chat template's.
  std::optional<ApiError> build_prompt(const ParsedRequest& parsed, std::vector<int32_t>* ids,
                                       model::ChatTemplateFamily* family) const;
  // `text`'s ids (after the BOS prefix when `bos`), or context_length_exceeded on
  // `param` when they cannot be fewer than max_model_len: decided from the byte length
  // first, then by an encoding that stops at the limit.
  std::optional<ApiError> encode_within_context(std::string_view text, bool bos, const char* param,
                                                std::vector<int32_t>* ids) const;
  // The error as an HTTP response (Retry-After on 429, WWW-Authenticate on 401).
  http::Response error_response(const ApiError& error) const;
  // error_response(), counted in the error metrics.
  http::Response refuse(const ApiError& error);
  void send_error(http::Responder& responder, const ApiError& error) const;

  ApiOptions options_;
  PromptContext prompt_;
  engine::Scheduler& scheduler_;
  WorkerMetrics& metrics_;
  Clock* clock_;
  int64_t created_;
  OutputConstraints constraints_;
};

}  // namespace moeserve::server
