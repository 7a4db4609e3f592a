#include "worker/server/openai_protocol.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace moeserve::server {
namespace {

using nlohmann::json;

constexpr int64_t kMaxJsonDepth = 64;

ApiError bad(std::string param, std::string message) {
  ApiError e;
  e.status = 400;
  e.param = std::move(param);
  e.message = std::move(message);
  return e;
}

json null_or(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

bool present(const json& body, const char* key) {
  return body.contains(key) && !body[key].is_null();
}

// Reads an optional integer field in [lo, hi].
std::optional<ApiError> read_int(const json& body, const char* key, int64_t lo, int64_t hi,
                                 std::optional<int64_t>* out) {
  if (!present(body, key)) return std::nullopt;
  const json& v = body[key];
  if (!v.is_number_integer()) return bad(key, std::string(key) + " must be an integer");
  const int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
                        ? INT64_MAX
                        : v.get<int64_t>();
  if (x < lo || x > hi) {
    return bad(key, std::string(key) + " must be in [" + std::to_string(lo) + ", " +
                        std::to_string(hi) + "], got " + std::to_string(x));
  }
  *out = x;
  return std::nullopt;
}

std::optional<ApiError> read_number(const json& body, const char* key, double lo, double hi,
                                    bool lo_open, double* out) {
  if (!present(body, key)) return std::nullopt;
  const json& v = body[key];
  if (!v.is_number()) return bad(key, std::string(key) + " must be a number");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) {
    return bad(key, std::string(key) + " must be in " + (lo_open ? "(" : "[") + std::to_string(lo) +
                        ", " + std::to_string(hi) + "]");
  }
  *out = x;
  return std::nullopt;
}

std::optional<ApiError> read_bool(const json& body, const char* key, bool* out) {
  if (!present(body, key)) return std::nullopt;
  if (!body[key].is_boolean()) return bad(key, std::string(key) + " must be a boolean");
  *out = body[key].get<bool>();
  return std::nullopt;
}

std::optional<ApiError> read_token_ids(const json& list, std::vector<int32_t>* out) {
  for (const json& t : list) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 ||
        t.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return bad("prompt", "prompt token ids must be non-negative integers");
    }
    out->push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return std::nullopt;
}

std::optional<ApiError> read_prompt(const json& body, ParsedRequest* out) {
  if (!present(body, "prompt")) return bad("prompt", "prompt is required");
  json prompt = body["prompt"];
  if (prompt.is_array() && prompt.size() == 1 && (prompt[0].is_string() || prompt[0].is_array())) {
    prompt = prompt[0];  // a batch of one prompt
  }
  if (prompt.is_string()) {
    out->prompt_is_text = true;
    out->prompt_text = prompt.get<std::string>();
    if (out->prompt_text.empty()) return bad("prompt", "prompt must not be empty");
    return std::nullopt;
  }
  if (prompt.is_array() && !prompt.empty() && prompt[0].is_number()) {
    out->prompt_is_text = false;
    return read_token_ids(prompt, &out->prompt_ids);
  }
  if (prompt.is_array() && prompt.size() > 1) {
    return bad("prompt", "only one prompt per request is supported (a string or token ids)");
  }
  return bad("prompt", "prompt must be a non-empty string or a non-empty list of token ids");
}

std::optional<ApiError> read_messages(const json& body, ParsedRequest* out) {
  if (!present(body, "messages")) return bad("messages", "messages is required");
  const json& messages = body["messages"];
  if (!messages.is_array() || messages.empty()) {
    return bad("messages", "messages must be a non-empty array");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return bad(where, where + " must be an object");
    if (!m.contains("role") || !m["role"].is_string()) {
      return bad(where + ".role", where + ".role must be a string");
    }
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "developer") {
      return bad(where + ".role", where + ".role '" + role +
                                      "' is not supported (system, developer, user, assistant)");
    }
    model::ChatMessage message;
    message.role = role == "developer" ? "system" : role;
    const json content = m.contains("content") ? m["content"] : json(nullptr);
    if (content.is_string()) {
      message.content = content.get<std::string>();
    } else if (content.is_array()) {  // content parts: only text parts
      for (const json& part : content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string()) {
          return bad(where + ".content",
                     where + ".content parts must be {\"type\":\"text\",\"text\":...}");
        }
        message.content += part["text"].get<std::string>();
      }
    } else if (!(content.is_null() && role == "assistant")) {
      return bad(where + ".content", where + ".content must be a string or a list of text parts");
    }
    out->messages.push_back(std::move(message));
  }
  return std::nullopt;
}

std::optional<ApiError> read_stop(const json& body, ParsedRequest* out) {
  if (!present(body, "stop")) return std::nullopt;
  const json& stop = body["stop"];
  std::vector<json> items;
  if (stop.is_string()) {
    items.push_back(stop);
  } else if (stop.is_array()) {
    items.assign(stop.begin(), stop.end());
  } else {
    return bad("stop", "stop must be a string or a list of strings");
  }
  if (static_cast<int32_t>(items.size()) > kMaxStopStrings) {
    return bad("stop", "at most " + std::to_string(kMaxStopStrings) + " stop strings");
  }
  for (const json& s : items) {
    if (!s.is_string() || s.get<std::string>().empty()) {
      return bad("stop", "stop strings must be non-empty strings");
    }
    out->stop.push_back(s.get<std::string>());
  }
  return std::nullopt;
}

// Parameters that would change the output if honoured; refusing beats ignoring.
std::optional<ApiError> refuse_unsupported(const json& body, int32_t n) {
  if (present(body, "echo") && !(body["echo"].is_boolean() && !body["echo"].get<bool>())) {
    return bad("echo", "echo is not supported");
  }
  if (present(body, "suffix")) return bad("suffix", "suffix is not supported");
  if (present(body, "best_of") &&
      !(body["best_of"].is_number_integer() && body["best_of"].get<int64_t>() == n)) {
    return bad("best_of", "best_of other than n is not supported");
  }
  if (present(body, "logit_bias") &&
      !(body["logit_bias"].is_object() && body["logit_bias"].empty())) {
    return bad("logit_bias", "logit_bias is not supported");
  }
  for (const char* key : {"presence_penalty", "frequency_penalty"}) {
    if (present(body, key) && !(body[key].is_number() && body[key].get<double>() == 0.0)) {
      return bad(key, std::string(key) + " is not supported (only 0)");
    }
  }
  for (const char* key : {"tools", "functions"}) {
    if (present(body, key) && !(body[key].is_array() && body[key].empty())) {
      return bad(key, std::string(key) + " is not supported");
    }
  }
  return std::nullopt;
}

// Nesting depth of JSON text (brackets outside strings), to refuse bodies that would
// exhaust the stack of a recursive parser.
int64_t nesting_depth(std::string_view text) {
  int64_t depth = 0, deepest = 0;
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
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

json completion_logprobs(const std::vector<TokenLogprobs>& entries) {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  for (const TokenLogprobs& e : entries) {
    tokens.push_back(e.token);
    token_logprobs.push_back(e.logprob);
    json alternatives = json::object();
    for (const auto& [token, lp] : e.top) {
      if (!alternatives.contains(token)) alternatives[token] = lp;
    }
    top.push_back(std::move(alternatives));
    offsets.push_back(e.text_offset);
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top},
          {"text_offset", offsets}};
}

json token_bytes(const std::string& token) {
  json bytes = json::array();
  for (unsigned char c : token) bytes.push_back(static_cast<int>(c));
  return bytes;
}

json chat_logprobs(const std::vector<TokenLogprobs>& entries) {
  json content = json::array();
  for (const TokenLogprobs& e : entries) {
    json top = json::array();
    for (const auto& [token, lp] : e.top) {
      top.push_back({{"token", token}, {"logprob", lp}, {"bytes", token_bytes(token)}});
    }
    content.push_back({{"token", e.token},
                       {"logprob", e.logprob},
                       {"bytes", token_bytes(e.token)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

json logprobs_json(Endpoint endpoint, const ChoiceOutput& c, bool logprobs) {
  if (!logprobs) return nullptr;
  return endpoint == Endpoint::kChat ? chat_logprobs(c.logprobs) : completion_logprobs(c.logprobs);
}

json meta_json(const ResponseMeta& meta, const char* object) {
  return {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model}};
}

}  // namespace

std::string error_body(const ApiError& error) {
  json body = {{"error",
                {{"message", error.message},
                 {"type", error.type},
                 {"param", null_or(error.param)},
                 {"code", null_or(error.code)}}}};
  return dump_json(body);
}

std::optional<ApiError> parse_request(Endpoint endpoint, std::string_view text,
                                      ParsedRequest* out) {
  *out = ParsedRequest{};
  out->endpoint = endpoint;
  if (nesting_depth(text) > kMaxJsonDepth) {
    return bad("", "the request body nests JSON deeper than " + std::to_string(kMaxJsonDepth));
  }
  const json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return bad("", "the request body is not valid JSON");
  if (!body.is_object()) return bad("", "the request body must be a JSON object");

  if (present(body, "model")) {
    if (!body["model"].is_string()) return bad("model", "model must be a string");
    out->model = body["model"].get<std::string>();
  }
  if (endpoint == Endpoint::kCompletions) {
    if (auto e = read_prompt(body, out)) return e;
  } else {
    if (auto e = read_messages(body, out)) return e;
  }

  std::optional<int64_t> v;
  const char* max_key = endpoint == Endpoint::kChat && present(body, "max_completion_tokens")
                            ? "max_completion_tokens"
                            : "max_tokens";
  if (auto e = read_int(body, max_key, 1, INT32_MAX, &v)) return e;
  out->max_tokens = v;
  v.reset();
  if (auto e = read_int(body, "n", 1, kMaxChoices, &v)) return e;
  out->n = static_cast<int32_t>(v.value_or(1));
  v.reset();
  if (auto e = read_int(body, "top_k", -1, INT32_MAX, &v)) return e;
  out->top_k = static_cast<int32_t>(std::max<int64_t>(0, v.value_or(0)));
  v.reset();
  if (auto e = read_int(body, "seed", INT64_MIN, INT64_MAX, &v)) return e;
  if (v.has_value()) out->seed = static_cast<uint64_t>(*v);
  if (auto e = read_number(body, "temperature", 0.0, 2.0, false, &out->temperature)) return e;
  if (auto e = read_number(body, "top_p", 0.0, 1.0, true, &out->top_p)) return e;
  if (auto e = read_stop(body, out)) return e;
  if (auto e = read_bool(body, "stream", &out->stream)) return e;
  if (auto e = read_bool(body, "ignore_eos", &out->ignore_eos)) return e;
  if (present(body, "stream_options")) {
    const json& so = body["stream_options"];
    if (!so.is_object()) return bad("stream_options", "stream_options must be an object");
    if (so.contains("include_usage") && !so["include_usage"].is_null()) {
      if (!so["include_usage"].is_boolean()) {
        return bad("stream_options.include_usage", "include_usage must be a boolean");
      }
      out->include_usage = so["include_usage"].get<bool>();
    }
  }

  v.reset();
  if (endpoint == Endpoint::kCompletions) {
    if (auto e = read_int(body, "logprobs", 0, kMaxLogprobs, &v)) return e;
    out->logprobs = v.has_value();
    out->top_logprobs = static_cast<int32_t>(v.value_or(0));
  } else {
    if (auto e = read_bool(body, "logprobs", &out->logprobs)) return e;
    if (auto e = read_int(body, "top_logprobs", 0, kMaxLogprobs, &v)) return e;
    if (v.has_value() && !out->logprobs) {
      return bad("top_logprobs", "top_logprobs needs logprobs: true");
    }
    out->top_logprobs = static_cast<int32_t>(v.value_or(0));
  }
  return refuse_unsupported(body, out->n);
}

json usage_json(const Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
}

json completion_response(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices,
                         const Usage& usage, bool logprobs) {
  json body = meta_json(meta, "text_completion");
  json list = json::array();
  for (const ChoiceOutput& c : choices) {
    list.push_back({{"index", c.index},
                    {"text", c.text},
                    {"logprobs", logprobs_json(Endpoint::kCompletions, c, logprobs)},
                    {"finish_reason", null_or(c.finish_reason)}});
  }
  body["choices"] = std::move(list);
  body["usage"] = usage_json(usage);
  return body;
}

json chat_response(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices,
                   const Usage& usage, bool logprobs) {
  json body = meta_json(meta, "chat.completion");
  json list = json::array();
  for (const ChoiceOutput& c : choices) {
    list.push_back({{"index", c.index},
                    {"message", {{"role", "assistant"}, {"content", c.text}}},
                    {"logprobs", logprobs_json(Endpoint::kChat, c, logprobs)},
                    {"finish_reason", null_or(c.finish_reason)}});
  }
  body["choices"] = std::move(list);
  body["usage"] = usage_json(usage);
  return body;
}

json stream_chunk(Endpoint endpoint, const ResponseMeta& meta, const ChoiceOutput& delta,
                  bool first, bool logprobs, bool include_usage) {
  json choice = {{"index", delta.index}};
  if (endpoint == Endpoint::kChat) {
    json d = json::object();
    if (first) d["role"] = "assistant";
    if (!delta.text.empty() || first) d["content"] = delta.text;
    choice["delta"] = std::move(d);
  } else {
    choice["text"] = delta.text;
  }
  choice["logprobs"] = logprobs_json(endpoint, delta, logprobs);
  choice["finish_reason"] = null_or(delta.finish_reason);
  json body =
      meta_json(meta, endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion");
  body["choices"] = json::array({choice});
  if (include_usage) body["usage"] = nullptr;
  return body;
}

json usage_chunk(Endpoint endpoint, const ResponseMeta& meta, const Usage& usage) {
  json body =
      meta_json(meta, endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion");
  body["choices"] = json::array();
  body["usage"] = usage_json(usage);
  return body;
}

std::string dump_json(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse_event(const json& value) { return "data: " + dump_json(value) + "\n\n"; }

int64_t utf8_length(std::string_view text) {
  int64_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

}  // namespace moeserve::server
