// The OpenAI-compatible HTTP API of a worker: POST /v1/completions,
// POST /v1/chat/completions, GET /v1/models (all behind the API key when one is set),
// on a common http::Server.
//
// A generation handler parses and validates the body (openai_protocol.h), builds the
// prompt (text: model::PromptEncoder, BOS as tokenizer_config.json says + the
// tokenizer's ids; token ids: as given; chat: the model's chat template, rendered, then encoded
// with special tokens), checks it against max_model_len, submits it to the Scheduler and reads the
// request's events: as one JSON response, or as Server-Sent Events, one chunk per choice per
// scheduler step. Stop strings are matched on the text (text_output.h); a choice that
// hits one is stopped in the scheduler. A client that goes away cancels its request,
// which frees its KV blocks at the next scheduler step.
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
#include <vector>

#include "common/clock.h"
#include "common/http_server.h"
#include "worker/engine/scheduler.h"
#include "worker/model/prompt_encoder.h"
#include "worker/server/api_keys.h"
#include "worker/server/openai_protocol.h"
#include "worker/server/worker_metrics.h"

namespace moeserve::server {

struct ApiOptions {
  std::string served_model_name;
  std::shared_ptr<ApiKeys> api_keys;  // null: no authentication
  int64_t max_model_len = 4096;
};

// What the API needs from the model folder.
struct PromptContext {
  model::PromptEncoder encoder;         // text prompts, the chat template
  std::vector<int32_t> stop_token_ids;  // the model's EOS ids
  int64_t vocab_size = 0;
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
  std::optional<ApiError> check_api_key(const http::Request& request) const;
  // The prompt ids of a parsed request, or a 400.
  std::optional<ApiError> build_prompt(const ParsedRequest& parsed,
                                       std::vector<int32_t>* ids) const;
  void send_error(http::Responder& responder, const ApiError& error) const;

  ApiOptions options_;
  PromptContext prompt_;
  engine::Scheduler& scheduler_;
  WorkerMetrics& metrics_;
  Clock* clock_;
  int64_t created_;
};

}  // namespace moeserve::server
