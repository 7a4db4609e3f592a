#include "worker/server/openai_server.h"

#include <atomic>
#include <chrono>
#include <random>
#include <set>

#include "common/log.h"
#include "worker/server/chat_output.h"
#include "worker/server/text_output.h"

namespace moeserve::server {
namespace {

using namespace std::chrono_literals;
using engine::FinishReason;
using nlohmann::json;

constexpr auto kPollInterval = 50ms;

ApiError api_error(int status, std::string message, std::string type, std::string code,
                   std::string param = "") {
  ApiError e;
  e.status = status;
  e.message = std::move(message);
  e.type = std::move(type);
  e.code = std::move(code);
  e.param = std::move(param);
  return e;
}

// Scheduler refusals as HTTP errors.
ApiError submit_error(const Status& status) {
  switch (status.code()) {
    case StatusCode::kResourceExhausted:
      return api_error(429, "the server is busy: " + status.message(), "rate_limit_error",
                       "rate_limit_exceeded");
    case StatusCode::kUnavailable:
      return api_error(503, "the server is draining and accepts no new requests",
                       "service_unavailable", "draining");
    case StatusCode::kInvalidArgument:
      return api_error(400, status.message(), "invalid_request_error", "");
    default: return api_error(500, status.to_string(), "server_error", "internal_error");
  }
}

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{std::random_device{}()};
  uint64_t x = counter.fetch_add(0x9e3779b97f4a7c15ull);
  x = (x ^ (x >> 31)) * 0xbf58476d1ce4e5b9ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x ^ (x >> 29)));
  return std::string(prefix) + buf;
}

double seconds(Clock::Duration d) { return std::chrono::duration<double>(d).count(); }

// Appends a piece of a choice's output to what is pending for it: text and reasoning
// concatenate, a tool-call piece extends the call it continues.
void append_output(ChoiceOutput* into, ChoiceOutput piece) {
  into->text += piece.text;
  into->reasoning += piece.reasoning;
  for (ToolCallOutput& call : piece.tool_calls) {
    if (!into->tool_calls.empty() && into->tool_calls.back().index == call.index) {
      into->tool_calls.back().arguments += call.arguments;
    } else {
      into->tool_calls.push_back(std::move(call));
    }
  }
  for (TokenLogprobs& lp : piece.logprobs) into->logprobs.push_back(std::move(lp));
}

// How a request's chat output is split (chat_output.h); pass-through for completions.
struct OutputSplit {
  bool reasoning = false;
  ToolCallFormat tools = ToolCallFormat::kNone;
};

// The internal finish of a choice that a failure ended (never shown to clients).
constexpr const char* kFailedChoice = "error";

// One generation request from submit to its last event: feeds the choices' text,
// writes stream chunks, tracks timing, and ends with the outputs or an error.
class Generation {
 public:
  Generation(Endpoint endpoint, const ParsedRequest& parsed, ResponseMeta meta,
             std::shared_ptr<engine::RequestStream> stream, const model::Tokenizer& tokenizer,
             OutputSplit split, Clock* clock, Clock::TimePoint received)
      : endpoint_(endpoint),
        parsed_(parsed),
        meta_(std::move(meta)),
        stream_(std::move(stream)),
        clock_(clock),
        received_(received),
        finish_(parsed.n),
        pending_(parsed.n) {
    const DecodeOptions decode{parsed.skip_special_tokens, parsed.include_stop_str_in_output,
                               parsed.min_tokens};
    for (int32_t i = 0; i < parsed.n; ++i) {
      texts_.emplace_back(tokenizer, parsed.stop, parsed.logprobs, decode);
      parsers_.emplace_back(split.reasoning, split.tools, parsed.parallel_tool_calls,
                            [] { return random_id("call_"); });
    }
  }

  // Runs to the end. Returns false when the client went away (the request is cancelled).
  bool run(http::Responder& responder, WorkerMetrics& metrics) {
    if (parsed_.stream && !begin_stream(responder)) return cancel();
    while (!stream_->done()) {
      std::vector<engine::GenerationEvent> events = stream_->next(kPollInterval);
      if (responder.client_gone()) return cancel();
      std::vector<bool> touched(parsed_.n, false);
      bool tokens = false;
      for (const engine::GenerationEvent& e : events) {
        touched[e.choice] = true;
        tokens = consume(e) || tokens;
      }
      for (int32_t i = 0; i < parsed_.n; ++i) {
        if (touched[i]) collect(i);
      }
      if (tokens) observe_tokens(metrics);
      if (parsed_.stream && !write_chunks(responder, touched)) return cancel();
    }
    return true;
  }

  bool failed() const { return !error_.ok(); }
  const Status& error() const { return error_; }
  Usage usage() const {
    Usage u;
    u.prompt_tokens = stream_->prompt_tokens();
    u.cached_tokens = stream_->cached_prompt_tokens();
    for (const ChoiceText& t : texts_) u.completion_tokens += t.tokens();
    return u;
  }
  // "length" when any choice ran out of tokens, else "stop".
  std::string overall_finish_reason() const {
    for (const std::string& f : finish_) {
      if (f == "length") return f;
    }
    return "stop";
  }
  std::vector<ChoiceOutput> outputs() const {
    std::vector<ChoiceOutput> out;
    for (int32_t i = 0; i < parsed_.n; ++i) {
      ChoiceOutput c;
      c.index = i;
      c.text = parsers_[i].content();
      c.reasoning = parsers_[i].reasoning();
      c.tool_calls = parsers_[i].tool_calls();
      c.finish_reason = reported_finish_reason(i);
      c.logprobs = texts_[i].logprobs();
      out.push_back(std::move(c));
    }
    return out;
  }
  std::optional<double> ttft_seconds() const { return ttft_; }

  // The end of a stream: usage chunk and [DONE] (or an error event).
  void end_stream(http::Responder& responder) {
    if (failed()) {
      ApiError e = api_error(500, error_.to_string(), "server_error", "internal_error");
      responder.write("data: " + error_body(e) + "\n\n");
    } else if (parsed_.include_usage) {
      responder.write(sse_event(usage_chunk(endpoint_, meta_, usage())));
    }
    responder.write(kSseDone);
    responder.end_stream();
  }

 private:
  bool cancel() {
    stream_->cancel();
    return false;
  }

  // The finish_reason a client sees: "tool_calls" for a choice that stopped after
  // calling a tool.
  std::string reported_finish_reason(int32_t i) const {
    if (finish_[i] == "stop" && !parsers_[i].tool_calls().empty()) return "tool_calls";
    return finish_[i];
  }

  bool begin_stream(http::Responder& responder) {
    if (!responder.begin_stream(200, "text/event-stream",
                                {{"Cache-Control", "no-cache"}, {"X-Request-Id", meta_.id}})) {
      return false;
    }
    if (endpoint_ != Endpoint::kChat) return true;
    for (int32_t i = 0; i < parsed_.n; ++i) {  // the role comes first, as OpenAI sends it
      ChoiceOutput role;
      role.index = i;
      if (!responder.write(sse_event(stream_chunk(endpoint_, meta_, role, /*first=*/true,
                                                  /*logprobs=*/false, parsed_.include_usage)))) {
        return false;
      }
    }
    return true;
  }

  // Returns true when the event carried a token that counts.
  bool consume(const engine::GenerationEvent& e) {
    ChoiceText& text = texts_[e.choice];
    std::string& finish = finish_[e.choice];
    if (!finish.empty()) return false;  // ended here already (stop string)
    bool counted = false;
    if (e.has_token) {
      const int64_t before = text.tokens();
      text.push(e.sample);
      counted = text.tokens() > before;
      if (text.stopped_by_string()) {
        finish = "stop";
        stream_->stop_choice(e.choice);
      }
    }
    if (e.finish == FinishReason::kNone || !finish.empty()) return counted;
    if (e.finish == FinishReason::kError) {
      error_ = e.error;
      finish = kFailedChoice;
    } else {
      finish = e.finish == FinishReason::kLength ? "length" : "stop";
      text.finish();
    }
    return counted;
  }

  // Moves choice i's new text through its output parser into pending_[i].
  void collect(int32_t i) {
    if (finished_parsers_.count(i) > 0) return;
    ChoiceOutput delta = texts_[i].take_delta();
    ChoiceOutput parsed = parsers_[i].push(delta.text);
    if (!finish_[i].empty()) {
      append_output(&parsed, parsers_[i].finish());
      finished_parsers_.insert(i);
    }
    parsed.logprobs = std::move(delta.logprobs);
    append_output(&pending_[i], std::move(parsed));
  }

  void observe_tokens(WorkerMetrics& metrics) {
    const Clock::TimePoint now = clock_->now();
    if (!ttft_.has_value()) {
      ttft_ = seconds(now - received_);
      metrics.observe_time_to_first_token(*ttft_);
      if (stream_->queue_seconds() >= 0) metrics.observe_queue_time(stream_->queue_seconds());
    } else {
      metrics.observe_inter_token_latency(seconds(now - last_token_));
    }
    last_token_ = now;
  }

  bool write_chunks(http::Responder& responder, const std::vector<bool>& touched) {
    for (int32_t i = 0; i < parsed_.n; ++i) {
      if (!touched[i] || reported_finish_.count(i) > 0) continue;
      ChoiceOutput delta = std::move(pending_[i]);
      pending_[i] = ChoiceOutput{};
      delta.index = i;
      // A choice that a failure ended reports no finish_reason: the stream's error event
      // says what happened, and a client must not take the partial text as complete.
      const bool ended_normally = !finish_[i].empty() && finish_[i] != kFailedChoice;
      delta.finish_reason = ended_normally ? reported_finish_reason(i) : "";
      if (!delta.finish_reason.empty()) reported_finish_.insert(i);
      // One chunk per token group, even when its text is still held back (a partial
      // UTF-8 character, a possible stop string or tool-call marker), so clients see
      // progress.
      const bool new_tokens = texts_[i].tokens() > streamed_tokens_[i];
      streamed_tokens_[i] = texts_[i].tokens();
      if (!new_tokens && delta.finish_reason.empty()) continue;
      if (!responder.write(sse_event(stream_chunk(endpoint_, meta_, delta, /*first=*/false,
                                                  parsed_.logprobs, parsed_.include_usage)))) {
        return false;
      }
    }
    return true;
  }

  Endpoint endpoint_;
  const ParsedRequest& parsed_;
  ResponseMeta meta_;
  std::shared_ptr<engine::RequestStream> stream_;
  Clock* clock_;
  Clock::TimePoint received_;
  std::vector<ChoiceText> texts_;
  std::vector<ChatOutputParser> parsers_;
  std::vector<std::string> finish_;    // "" until the choice ended
  std::vector<ChoiceOutput> pending_;  // parsed output not streamed yet
  std::set<int32_t> finished_parsers_;
  std::set<int32_t> reported_finish_;
  std::vector<int64_t> streamed_tokens_ = std::vector<int64_t>(parsed_.n, 0);
  Status error_;
  std::optional<double> ttft_;
  Clock::TimePoint last_token_;
};

}  // namespace

StatusOr<PromptContext> load_prompt_context(const std::string& model_dir,
                                            const model::ModelConfig& config) {
  StatusOr<model::PromptEncoder> encoder = model::PromptEncoder::load(model_dir, config);
  if (!encoder.ok()) return encoder.status().with_context("serving needs a tokenizer");
  PromptContext ctx{std::move(encoder).value()};
  if (const auto& chat = ctx.encoder.chat_template(); !chat.ok()) {
    log::warn("no usable chat template: /v1/chat/completions will answer 400",
              {{"error", chat.status().to_string()}});
  } else {
    log::info("chat template",
              {{"family", chat->family_name()},
               {"source", chat->is_jinja() ? "checkpoint" : "built-in"},
               {"tool_call_parser", tool_call_format_name(tool_call_format(chat->family()))}});
  }
  for (int64_t id : config.eos_token_ids) ctx.stop_token_ids.push_back(static_cast<int32_t>(id));
  ctx.vocab_size = config.vocab_size;
  ctx.vocabulary = constraint_vocabulary(ctx.encoder.tokenizer());
  return ctx;
}

StatusOr<ReasoningMode> parse_reasoning_mode(std::string_view name) {
  if (name == "auto") return ReasoningMode::kAuto;
  if (name == "none") return ReasoningMode::kNone;
  if (name == "think") return ReasoningMode::kThink;
  return invalid_argument_error("reasoning parser must be auto, none or think, not '" +
                                std::string(name) + "'");
}

http::Response server_error_response(int status, std::string_view reason) {
  std::string message(reason);
  while (!message.empty() && message.back() == '\n') message.pop_back();
  const char* code = status == 413   ? "request_too_large"
                     : status == 404 ? "not_found"
                     : status == 405 ? "method_not_allowed"
                                     : "";
  ApiError e = api_error(status, message, "invalid_request_error", code);
  return http::json_response(status, error_body(e));
}

OpenAiApi::OpenAiApi(ApiOptions options, PromptContext prompt, engine::Scheduler& scheduler,
                     WorkerMetrics& metrics, Clock* clock)
    : options_(std::move(options)),
      prompt_(std::move(prompt)),
      scheduler_(scheduler),
      metrics_(metrics),
      clock_(clock != nullptr ? clock : RealClock::instance()),
      created_(clock_->unix_seconds()),
      constraints_(prompt_.vocabulary) {}

void OpenAiApi::add_routes(http::Server& server) {
  server.route("POST", "/v1/completions", [this](const http::Request& r, http::Responder& out) {
    handle_generate(Endpoint::kCompletions, r, out);
  });
  server.route("POST", "/v1/chat/completions",
               [this](const http::Request& r, http::Responder& out) {
                 handle_generate(Endpoint::kChat, r, out);
               });
  server.route("GET", "/v1/models",
               http::SimpleHandler([this](const http::Request& r) { return handle_models(r); }));
  server.route("POST", "/tokenize",
               http::SimpleHandler([this](const http::Request& r) { return handle_tokenize(r); }));
  server.route("POST", "/detokenize", http::SimpleHandler([this](const http::Request& r) {
                 return handle_detokenize(r);
               }));
  server.route("GET", "/version", http::SimpleHandler([](const http::Request&) {
                 return http::json_response(200, dump_json({{"version", MOESERVE_VERSION}}));
               }));
}

std::optional<ApiError> OpenAiApi::check_api_key(const http::Request& request) const {
  if (!options_.api_keys) return std::nullopt;
  const std::string header = request.header("authorization");
  const std::optional<std::string_view> token = auth::bearer_token(header);
  if (token && options_.api_keys->accepts(*token)) return std::nullopt;
  return api_error(401,
                   header.empty() ? "missing API key: send Authorization: Bearer <key>"
                                  : "incorrect API key provided",
                   "invalid_request_error", "invalid_api_key");
}

http::Response OpenAiApi::error_response(const ApiError& error) const {
  http::Response r = http::json_response(error.status, error_body(error));
  if (error.status == 429) r.headers.emplace_back("Retry-After", "1");
  if (error.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

http::Response OpenAiApi::refuse(const ApiError& error) {
  metrics_.record_error(error.status);
  return error_response(error);
}

void OpenAiApi::send_error(http::Responder& responder, const ApiError& error) const {
  responder.send(error_response(error));
}

http::Response OpenAiApi::handle_models(const http::Request& request) {
  if (auto e = check_api_key(request)) return refuse(*e);
  json model = {{"id", options_.served_model_name},
                {"object", "model"},
                {"created", created_},
                {"owned_by", "moeserve"},
                {"max_model_len", options_.max_model_len}};
  return http::json_response(200, dump_json({{"object", "list"}, {"data", json::array({model})}}));
}

std::optional<ApiError> OpenAiApi::check_model(const std::string& model) const {
  if (model.empty() || model == options_.served_model_name) return std::nullopt;
  return api_error(404,
                   "the model '" + model + "' does not exist; this worker serves '" +
                       options_.served_model_name + "'",
                   "invalid_request_error", "model_not_found", "model");
}

std::optional<ApiError> OpenAiApi::chat_template_for(const ParsedRequest& parsed,
                                                     std::optional<model::ChatTemplate>* own,
                                                     const model::ChatTemplate** chosen) const {
  const StatusOr<model::ChatTemplate>& chat = prompt_.encoder.chat_template();
  if (parsed.chat_template.has_value()) {
    StatusOr<model::ChatTemplate> t = model::ChatTemplate::from_template(
        *parsed.chat_template, chat.ok() ? chat->bos_token() : "",
        chat.ok() ? chat->eos_token() : "");
    if (!t.ok()) {
      return api_error(400, t.status().message(), "invalid_request_error", "", "chat_template");
    }
    own->emplace(std::move(t).value());
    *chosen = &**own;
    return std::nullopt;
  }
  if (!chat.ok()) {
    return api_error(400, "this model has no supported chat template: " + chat.status().message(),
                     "invalid_request_error", "", "messages");
  }
  *chosen = &*chat;
  return std::nullopt;
}

std::optional<ApiError> OpenAiApi::build_prompt(const ParsedRequest& parsed,
                                                std::vector<int32_t>* ids,
                                                model::ChatTemplateFamily* family) const {
  if (parsed.endpoint == Endpoint::kChat) {
    std::optional<model::ChatTemplate> own;
    const model::ChatTemplate* chat = nullptr;
    if (auto e = chat_template_for(parsed, &own, &chat)) return e;
    *family = chat->family();
    if (parsed.tool_choice != "none" && tool_call_format(chat->family()) == ToolCallFormat::kNone) {
      return api_error(400,
                       "tool calling needs a tool-call parser, and this model's chat template (" +
                           chat->family_name() +
                           " family) has none: parsers exist for the deepseek-v3, deepseek-r1, "
                           "chatml and llama-3 families; send tool_choice 'none' to only render "
                           "the tools",
                       "invalid_request_error", "", "tools");
    }
    StatusOr<std::string> text = chat->render(parsed.messages, parsed.chat);
    if (!text.ok()) {
      return api_error(400, text.status().message(), "invalid_request_error", "", "messages");
    }
    return encode_within_context(*text, parsed.add_special_tokens, "messages", ids);
  }
  if (!parsed.prompt_is_text) {
    for (int32_t id : parsed.prompt_ids) {
      if (id >= prompt_.vocab_size) {
        return api_error(400,
                         "prompt token id " + std::to_string(id) +
                             " is outside the vocabulary (size " +
                             std::to_string(prompt_.vocab_size) + ")",
                         "invalid_request_error", "", "prompt");
      }
    }
    *ids = parsed.prompt_ids;
    return std::nullopt;
  }
  return encode_within_context(parsed.prompt_text, parsed.add_special_tokens, "prompt", ids);
}

std::optional<ApiError> OpenAiApi::encode_within_context(std::string_view text, bool bos,
                                                         const char* param,
                                                         std::vector<int32_t>* ids) const {
  const model::Tokenizer& tokenizer = prompt_.encoder.tokenizer();
  *ids = bos ? prompt_.encoder.bos_prefix() : std::vector<int32_t>();
  const size_t limit = static_cast<size_t>(std::max<int64_t>(options_.max_model_len, 0));
  auto too_long = [&](size_t at_least) {
    return api_error(400,
                     "the prompt has at least " + std::to_string(at_least) +
                         " tokens; this model's maximum context length is " +
                         std::to_string(options_.max_model_len) + " tokens",
                     "invalid_request_error", "context_length_exceeded", param);
  };
  // Refused by its size alone when it cannot fit, and never tokenized past the limit:
  // a huge prompt costs neither the memory nor the time of its whole encoding.
  const size_t at_least = ids->size() + tokenizer.min_tokens_of(text.size());
  if (at_least >= limit) return too_long(at_least);
  const std::vector<int32_t> body =
      tokenizer.encode(text, /*add_special_tokens_parsing=*/true, limit - ids->size());
  ids->insert(ids->end(), body.begin(), body.end());
  if (ids->size() > limit) return too_long(ids->size());
  return std::nullopt;
}

http::Response OpenAiApi::handle_tokenize(const http::Request& request) {
  const auto fail = [this](const ApiError& e) { return refuse(e); };
  if (auto e = check_api_key(request)) return fail(*e);
  ParsedRequest parsed;
  bool token_strs = false;
  if (auto e = parse_tokenize_request(request.body, &parsed, &token_strs)) return fail(*e);
  if (auto e = check_model(parsed.model)) return fail(*e);
  std::vector<int32_t> ids;
  model::ChatTemplateFamily family = model::ChatTemplateFamily::kGeneric;
  parsed.tool_choice = "none";  // nothing is generated: no parser needed
  if (auto e = build_prompt(parsed, &ids, &family)) return fail(*e);
  json body = {{"count", ids.size()},
               {"max_model_len", options_.max_model_len},
               {"tokens", ids},
               {"token_strs", nullptr}};
  if (token_strs) {
    json strs = json::array();
    for (int32_t id : ids) strs.push_back(prompt_.encoder.tokenizer().id_to_token(id));
    body["token_strs"] = std::move(strs);
  }
  return http::json_response(200, dump_json(body));
}

http::Response OpenAiApi::handle_detokenize(const http::Request& request) {
  const auto fail = [this](const ApiError& e) { return refuse(e); };
  if (auto e = check_api_key(request)) return fail(*e);
  std::string model;
  std::vector<int32_t> tokens;
  if (auto e = parse_detokenize_request(request.body, &model, &tokens)) return fail(*e);
  if (auto e = check_model(model)) return fail(*e);
  for (int32_t id : tokens) {
    if (id >= prompt_.vocab_size) {
      return fail(api_error(400,
                            "token id " + std::to_string(id) + " is outside the vocabulary (size " +
                                std::to_string(prompt_.vocab_size) + ")",
                            "invalid_request_error", "", "tokens"));
    }
  }
  return http::json_response(200,
                             dump_json({{"prompt", prompt_.encoder.tokenizer().decode(tokens)}}));
}

void OpenAiApi::handle_generate(Endpoint endpoint, const http::Request& request,
                                http::Responder& responder) {
  const Clock::TimePoint received = clock_->now();
  const char* path = endpoint == Endpoint::kChat ? "/v1/chat/completions" : "/v1/completions";
  auto fail = [&](const ApiError& e) {
    metrics_.record_error(e.status);
    send_error(responder, e);
    log::info("request", {{"path", path},
                          {"status", e.status},
                          {"error", e.message},
                          {"remote", request.remote_address}});
  };
  if (auto e = check_api_key(request)) return fail(*e);
  ParsedRequest parsed;
  if (auto e = parse_request(endpoint, request.body, &parsed)) return fail(*e);
  if (auto e = check_model(parsed.model)) return fail(*e);
  auto outside_vocab = [&](int32_t id, const char* param) {
    return api_error(400,
                     std::string(param) + ": " + std::to_string(id) +
                         " is outside the vocabulary (size " + std::to_string(prompt_.vocab_size) +
                         ")",
                     "invalid_request_error", "", param);
  };
  for (int32_t id : parsed.stop_token_ids) {
    if (id >= prompt_.vocab_size) return fail(outside_vocab(id, "stop_token_ids"));
  }
  for (const auto& bias : parsed.logit_bias) {
    if (bias.first >= prompt_.vocab_size) return fail(outside_vocab(bias.first, "logit_bias"));
  }
  std::vector<int32_t> prompt;
  model::ChatTemplateFamily family = model::ChatTemplateFamily::kGeneric;
  if (auto e = build_prompt(parsed, &prompt, &family)) return fail(*e);
  const int64_t prompt_tokens = static_cast<int64_t>(prompt.size());
  const char* prompt_param = endpoint == Endpoint::kChat ? "messages" : "prompt";
  if (prompt_tokens >= options_.max_model_len) {
    return fail(api_error(400,
                          "the prompt has " + std::to_string(prompt_tokens) +
                              " tokens; this model's maximum context length is " +
                              std::to_string(options_.max_model_len) + " tokens",
                          "invalid_request_error", "context_length_exceeded", prompt_param));
  }
  const int64_t max_tokens = parsed.max_tokens.value_or(
      endpoint == Endpoint::kChat ? options_.max_model_len - prompt_tokens : 16);
  if (parsed.min_tokens > max_tokens) {
    return fail(api_error(400,
                          "min_tokens (" + std::to_string(parsed.min_tokens) +
                              ") must not exceed max_tokens (" + std::to_string(max_tokens) + ")",
                          "invalid_request_error", "", "min_tokens"));
  }
  if (prompt_tokens + max_tokens > options_.max_model_len) {
    return fail(api_error(
        400,
        "this model's maximum context length is " + std::to_string(options_.max_model_len) +
            " tokens; the request asks for " + std::to_string(prompt_tokens + max_tokens) + " (" +
            std::to_string(prompt_tokens) + " in the prompt, " + std::to_string(max_tokens) +
            " to generate)",
        "invalid_request_error", "context_length_exceeded", "max_tokens"));
  }

  OutputSplit split;
  if (endpoint == Endpoint::kChat) {
    split.reasoning = options_.reasoning == ReasoningMode::kThink ||
                      (options_.reasoning == ReasoningMode::kAuto &&
                       family == model::ChatTemplateFamily::kDeepSeekR1);
    if (parsed.tool_choice != "none") split.tools = tool_call_format(family);
  }
  std::shared_ptr<structured::TokenConstraint> constraint;
  if (auto e = constraints_.build(parsed, tool_call_format(family), split.reasoning, &constraint)) {
    return fail(*e);
  }

  engine::GenerationRequest g;
  g.prompt = std::move(prompt);
  g.constraint = std::move(constraint);
  g.max_tokens = max_tokens;
  g.n = parsed.n;
  g.sampling.temperature = parsed.temperature;
  g.sampling.top_p = parsed.top_p;
  g.sampling.top_k = parsed.top_k;
  g.sampling.seed = parsed.seed.value_or(std::random_device{}());
  g.sampling.top_logprobs = parsed.top_logprobs;
  g.sampling.min_p = parsed.min_p;
  g.sampling.presence_penalty = parsed.presence_penalty;
  g.sampling.frequency_penalty = parsed.frequency_penalty;
  g.sampling.repetition_penalty = parsed.repetition_penalty;
  g.sampling.min_tokens = parsed.min_tokens;
  g.sampling.logit_bias = parsed.logit_bias;
  if (!parsed.ignore_eos) g.sampling.stop_token_ids = prompt_.stop_token_ids;
  // stop_token_ids end a choice even with ignore_eos, as in vLLM.
  g.sampling.stop_token_ids.insert(g.sampling.stop_token_ids.end(), parsed.stop_token_ids.begin(),
                                   parsed.stop_token_ids.end());
  StatusOr<std::shared_ptr<engine::RequestStream>> stream = scheduler_.submit(std::move(g));
  if (!stream.ok()) return fail(submit_error(stream.status()));

  ResponseMeta meta{random_id(endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-"),
                    clock_->unix_seconds(), options_.served_model_name};
  Generation generation(endpoint, parsed, meta, *stream, prompt_.encoder.tokenizer(), split, clock_,
                        received);
  const bool client_stayed = generation.run(responder, metrics_);
  const double e2e = seconds(clock_->now() - received);
  const Usage usage = generation.usage();
  int status = 200;
  if (!client_stayed) {
    status = 499;
    metrics_.record_error(status);
    responder.send(http::json_response(
        499, error_body(api_error(499, "client closed the request", "invalid_request_error", ""))));
  } else if (parsed.stream) {
    generation.end_stream(responder);
  } else if (generation.failed()) {
    status = 500;
    metrics_.record_error(status);
    send_error(responder,
               api_error(500, generation.error().to_string(), "server_error", "internal_error"));
  } else {
    const json body = endpoint == Endpoint::kChat
                          ? chat_response(meta, generation.outputs(), usage, parsed.logprobs)
                          : completion_response(meta, generation.outputs(), usage, parsed.logprobs);
    responder.send(http::json_response(200, dump_json(body)));
  }
  if (client_stayed && parsed.stream && generation.failed()) {
    status = 500;
    metrics_.record_error(status);
  }
  if (status == 200) {
    metrics_.record_success(generation.overall_finish_reason(), usage.prompt_tokens,
                            usage.completion_tokens);
    metrics_.observe_e2e_latency(e2e);
  }
  log::info("request", {{"id", meta.id},
                        {"path", path},
                        {"status", status},
                        {"stream", parsed.stream},
                        {"n", parsed.n},
                        {"prompt_tokens", usage.prompt_tokens},
                        {"completion_tokens", usage.completion_tokens},
                        {"cached_tokens", (*stream)->cached_prompt_tokens()},
                        {"finish_reason", generation.overall_finish_reason()},
                        {"ttft_s", generation.ttft_seconds().value_or(-1.0)},
                        {"e2e_s", e2e},
                        {"remote", request.remote_address}});
}

}  // namespace moeserve::server
