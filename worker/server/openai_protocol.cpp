#include "worker/server/openai_protocol.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

namespace moeserve::server {
namespace {

using nlohmann::json;
// Requests keep their key order: tool schemas reach the chat template as the client
// wrote them, as they do in vLLM.
using Body = nlohmann::ordered_json;

constexpr int64_t kMaxJsonDepth = 64;

ApiError bad(std::string param, std::string message) {
  ApiError e;
  e.status = 400;
  e.param = std::move(param);
  e.message = std::move(message);
  return e;
}

json null_or(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

bool present(const Body& body, const char* key) {
  return body.contains(key) && !body[key].is_null();
}

// Reads an optional integer field in [lo, hi].
std::optional<ApiError> read_int(const Body& body, const char* key, int64_t lo, int64_t hi,
                                 std::optional<int64_t>* out) {
  if (!present(body, key)) return std::nullopt;
  const Body& v = body[key];
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

std::optional<ApiError> read_number(const Body& body, const char* key, double lo, double hi,
                                    bool lo_open, double* out) {
  if (!present(body, key)) return std::nullopt;
  const Body& v = body[key];
  if (!v.is_number()) return bad(key, std::string(key) + " must be a number");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) {
    return bad(key, std::string(key) + " must be in " + (lo_open ? "(" : "[") + std::to_string(lo) +
                        ", " + std::to_string(hi) + "]");
  }
  *out = x;
  return std::nullopt;
}

std::optional<ApiError> read_bool(const Body& body, const char* key, bool* out) {
  if (!present(body, key)) return std::nullopt;
  if (!body[key].is_boolean()) return bad(key, std::string(key) + " must be a boolean");
  *out = body[key].get<bool>();
  return std::nullopt;
}

std::optional<ApiError> read_token_ids(const Body& list, std::vector<int32_t>* out) {
  for (const Body& t : list) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 ||
        t.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return bad("prompt", "prompt token ids must be non-negative integers");
    }
    out->push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return std::nullopt;
}

std::optional<ApiError> read_prompt(const Body& body, ParsedRequest* out) {
  if (!present(body, "prompt")) return bad("prompt", "prompt is required");
  Body prompt = body["prompt"];
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

// A message's content: a string, a list of text parts (joined), or null when allowed.
std::optional<ApiError> read_content(const Body& m, const std::string& where, bool null_ok,
                                     std::optional<std::string>* out) {
  const Body content = m.contains("content") ? m["content"] : Body(nullptr);
  if (content.is_string()) {
    *out = content.get<std::string>();
  } else if (content.is_array()) {
    std::string text;
    for (const Body& part : content) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string()) {
        return bad(where + ".content",
                   where + ".content parts must be {\"type\":\"text\",\"text\":...}");
      }
      text += part["text"].get<std::string>();
    }
    *out = std::move(text);
  } else if (!(content.is_null() && null_ok)) {
    return bad(where + ".content", where + ".content must be a string or a list of text parts");
  }
  return std::nullopt;
}

std::optional<ApiError> read_string_field(const Body& object, const char* key,
                                          const std::string& where, bool required,
                                          std::string* out) {
  const std::string param = where + "." + key;
  if (!object.contains(key) || object[key].is_null()) {
    return required ? std::optional<ApiError>(bad(param, param + " is required")) : std::nullopt;
  }
  if (!object[key].is_string()) return bad(param, param + " must be a string");
  *out = object[key].get<std::string>();
  return std::nullopt;
}

std::optional<ApiError> read_tool_calls(const Body& m, const std::string& where,
                                        model::ChatMessage* message) {
  if (!m.contains("tool_calls") || m["tool_calls"].is_null()) return std::nullopt;
  const std::string param = where + ".tool_calls";
  if (!m["tool_calls"].is_array()) return bad(param, param + " must be an array");
  for (size_t k = 0; k < m["tool_calls"].size(); ++k) {
    const Body& call = m["tool_calls"][k];
    const std::string at = param + "[" + std::to_string(k) + "]";
    if (!call.is_object()) return bad(at, at + " must be an object");
    if (call.contains("type") && call["type"] != "function") {
      return bad(at + ".type", at + ".type must be \"function\"");
    }
    if (!call.contains("function") || !call["function"].is_object()) {
      return bad(at + ".function", at + ".function must be an object");
    }
    model::ToolCall tool_call;
    if (auto e = read_string_field(call, "id", at, true, &tool_call.id)) return e;
    if (auto e =
            read_string_field(call["function"], "name", at + ".function", true, &tool_call.name)) {
      return e;
    }
    if (auto e = read_string_field(call["function"], "arguments", at + ".function", true,
                                   &tool_call.arguments)) {
      return e;
    }
    message->tool_calls.push_back(std::move(tool_call));
  }
  return std::nullopt;
}

std::optional<ApiError> read_messages(const Body& body, ParsedRequest* out) {
  if (!present(body, "messages")) return bad("messages", "messages is required");
  const Body& messages = body["messages"];
  if (!messages.is_array() || messages.empty()) {
    return bad("messages", "messages must be a non-empty array");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const Body& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return bad(where, where + " must be an object");
    if (!m.contains("role") || !m["role"].is_string()) {
      return bad(where + ".role", where + ".role must be a string");
    }
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "developer" &&
        role != "tool") {
      return bad(where + ".role", where + ".role '" + role +
                                      "' is not supported (system, developer, user, assistant, "
                                      "tool)");
    }
    model::ChatMessage message;
    message.role = role == "developer" ? "system" : role;
    if (auto e = read_content(m, where, role == "assistant", &message.content)) return e;
    if (!message.content.has_value() && role != "assistant") message.content = "";
    if (auto e = read_string_field(m, "name", where, false, &message.name)) return e;
    if (role == "tool") {
      if (auto e = read_string_field(m, "tool_call_id", where, true, &message.tool_call_id)) {
        return e;
      }
    }
    if (role == "assistant") {
      if (auto e = read_tool_calls(m, where, &message)) return e;
      std::string reasoning;
      if (auto e = read_string_field(m, "reasoning_content", where, false, &reasoning)) return e;
      if (m.contains("reasoning_content") && !m["reasoning_content"].is_null()) {
        message.reasoning_content = std::move(reasoning);
      }
    } else if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      return bad(where + ".tool_calls", where + ".tool_calls is only for assistant messages");
    }
    out->messages.push_back(std::move(message));
  }
  return std::nullopt;
}

bool valid_function_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

// tools, tool_choice and parallel_tool_calls (chat only).
std::optional<ApiError> read_tools(const Body& body, ParsedRequest* out) {
  std::vector<std::string> names;
  if (present(body, "tools")) {
    const Body& tools = body["tools"];
    if (!tools.is_array()) return bad("tools", "tools must be an array");
    for (size_t i = 0; i < tools.size(); ++i) {
      const Body& tool = tools[i];
      const std::string at = "tools[" + std::to_string(i) + "]";
      if (!tool.is_object() || tool.value("type", "") != "function") {
        return bad(at + ".type", at + " must be {\"type\":\"function\",\"function\":{...}}");
      }
      if (!tool.contains("function") || !tool["function"].is_object()) {
        return bad(at + ".function", at + ".function must be an object");
      }
      const Body& function = tool["function"];
      std::string name;
      if (auto e = read_string_field(function, "name", at + ".function", true, &name)) return e;
      if (!valid_function_name(name)) {
        return bad(at + ".function.name",
                   at + ".function.name '" + name + "' must be 1 to 64 of a-z, A-Z, 0-9, _ and -");
      }
      if (std::find(names.begin(), names.end(), name) != names.end()) {
        return bad(at + ".function.name", "tools names the function '" + name + "' twice");
      }
      std::string description;
      if (auto e =
              read_string_field(function, "description", at + ".function", false, &description)) {
        return e;
      }
      if (function.contains("parameters") && !function["parameters"].is_object()) {
        return bad(at + ".function.parameters", at + ".function.parameters must be an object");
      }
      names.push_back(std::move(name));
    }
    if (!tools.empty()) out->chat.tools = tools;
  }
  if (auto e = read_bool(body, "parallel_tool_calls", &out->parallel_tool_calls)) return e;
  out->tool_choice = names.empty() ? "none" : "auto";
  if (!present(body, "tool_choice")) return std::nullopt;
  const Body& choice = body["tool_choice"];
  if (names.empty()) return bad("tool_choice", "tool_choice needs tools");
  if (choice == "none" || choice == "auto") {
    out->tool_choice = choice.get<std::string>();
    return std::nullopt;
  }
  if (choice == "required") {
    out->tool_choice = "required";
    return std::nullopt;
  }
  if (choice.is_object() && choice.value("type", "") == "function" && choice.contains("function") &&
      choice["function"].is_object() && choice["function"].contains("name") &&
      choice["function"]["name"].is_string()) {
    const std::string name = choice["function"]["name"].get<std::string>();
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      return bad("tool_choice",
                 "tool_choice names the function '" + name + "', which is not in tools");
    }
    out->tool_choice = "function";
    out->tool_choice_function = name;
    return std::nullopt;
  }
  return bad("tool_choice",
             "tool_choice must be 'none', 'auto', 'required' or "
             "{\"type\":\"function\",\"function\":{\"name\":...}}");
}

// The vLLM chat extensions: add_generation_prompt, chat_template, chat_template_kwargs.
std::optional<ApiError> read_chat_extensions(const Body& body, ParsedRequest* out) {
  if (auto e = read_bool(body, "add_generation_prompt", &out->chat.add_generation_prompt)) {
    return e;
  }
  if (present(body, "chat_template")) {
    if (!body["chat_template"].is_string() || body["chat_template"].get<std::string>().empty()) {
      return bad("chat_template", "chat_template must be a non-empty string (Jinja source)");
    }
    out->chat_template = body["chat_template"].get<std::string>();
  }
  if (present(body, "chat_template_kwargs")) {
    if (!body["chat_template_kwargs"].is_object()) {
      return bad("chat_template_kwargs", "chat_template_kwargs must be an object");
    }
    out->chat.template_kwargs = body["chat_template_kwargs"];
  }
  return std::nullopt;
}

std::optional<ApiError> read_stop_token_ids(const Body& body, ParsedRequest* out) {
  if (!present(body, "stop_token_ids")) return std::nullopt;
  const Body& ids = body["stop_token_ids"];
  if (!ids.is_array()) return bad("stop_token_ids", "stop_token_ids must be a list of token ids");
  for (const Body& id : ids) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return bad("stop_token_ids", "stop_token_ids must be non-negative integers");
    }
    out->stop_token_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  return std::nullopt;
}

std::optional<ApiError> read_stop(const Body& body, ParsedRequest* out) {
  if (!present(body, "stop")) return std::nullopt;
  const Body& stop = body["stop"];
  std::vector<Body> items;
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
  for (const Body& s : items) {
    if (!s.is_string() || s.get<std::string>().empty()) {
      return bad("stop", "stop strings must be non-empty strings");
    }
    out->stop.push_back(s.get<std::string>());
  }
  return std::nullopt;
}

// logit_bias: {"token id": bias}, ids as decimal strings (OpenAI's shape), biases in
// [-100, 100]; the vocabulary bound is checked by the server, which knows it.
std::optional<ApiError> read_logit_bias(const Body& body, ParsedRequest* out) {
  if (!present(body, "logit_bias")) return std::nullopt;
  const Body& map = body["logit_bias"];
  if (!map.is_object()) {
    return bad("logit_bias", "logit_bias must be an object mapping token ids to biases");
  }
  for (const auto& [key, value] : map.items()) {
    int64_t id = -1;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || end != key.data() + key.size() || id < 0 ||
        id > std::numeric_limits<int32_t>::max()) {
      return bad("logit_bias", "logit_bias: key '" + key + "' is not a token id");
    }
    if (!value.is_number() || !(value.get<double>() >= -100.0 && value.get<double>() <= 100.0)) {
      return bad("logit_bias",
                 "logit_bias: the bias of token " + key + " must be a number in [-100, 100]");
    }
    out->logit_bias.emplace_back(static_cast<int32_t>(id), value.get<float>());
  }
  return std::nullopt;
}

// response_format (OpenAI's) and guided_json (vLLM's), at most one of them.
std::optional<ApiError> read_output_format(const Body& body, ParsedRequest* out) {
  OutputFormat& f = out->format;
  if (present(body, "response_format")) {
    const Body& rf = body["response_format"];
    f.param = "response_format";
    if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string()) {
      return bad("response_format", "response_format must be an object with a type");
    }
    const std::string type = rf["type"].get<std::string>();
    if (type == "json_object") {
      f.kind = OutputFormat::Kind::kJsonObject;
    } else if (type == "json_schema") {
      const char* param = "response_format.json_schema";
      if (!rf.contains("json_schema") || !rf["json_schema"].is_object()) {
        return bad(param, "response_format.json_schema must be an object with a schema");
      }
      const Body& js = rf["json_schema"];
      if (js.contains("name") && !js["name"].is_null() &&
          !(js["name"].is_string() && valid_function_name(js["name"].get<std::string>()))) {
        return bad("response_format.json_schema.name",
                   "response_format.json_schema.name must be 1 to 64 of a-z, A-Z, 0-9, _ and -");
      }
      if (!js.contains("schema") || !(js["schema"].is_object() || js["schema"].is_boolean())) {
        return bad("response_format.json_schema.schema",
                   "response_format.json_schema.schema must be a JSON schema (an object)");
      }
      if (js.contains("strict") && !js["strict"].is_null() && !js["strict"].is_boolean()) {
        return bad("response_format.json_schema.strict",
                   "response_format.json_schema.strict must be a boolean");
      }
      f.kind = OutputFormat::Kind::kJsonSchema;
      f.schema = js["schema"];
      f.strict = js.contains("strict") && js["strict"].is_boolean() && js["strict"].get<bool>();
      f.param = "response_format.json_schema.schema";
    } else if (type != "text") {
      return bad("response_format.type",
                 "response_format.type must be 'text', 'json_object' or 'json_schema', got '" +
                     type + "'");
    }
  }
  if (present(body, "guided_json")) {
    if (f.kind != OutputFormat::Kind::kText) {
      return bad("guided_json", "guided_json and response_format cannot both constrain the output");
    }
    Body schema = body["guided_json"];
    if (schema.is_string()) schema = Body::parse(schema.get<std::string>(), nullptr, false);
    if (!schema.is_object()) {
      return bad("guided_json", "guided_json must be a JSON schema (an object, or its JSON text)");
    }
    f.kind = OutputFormat::Kind::kJsonSchema;
    f.schema = std::move(schema);
    f.param = "guided_json";
  }
  return std::nullopt;
}

// repetition_penalty: any finite number > 0 (vLLM's range).
std::optional<ApiError> read_repetition_penalty(const Body& body, double* out) {
  if (!present(body, "repetition_penalty")) return std::nullopt;
  const Body& v = body["repetition_penalty"];
  if (!v.is_number() || !std::isfinite(v.get<double>()) || !(v.get<double>() > 0.0)) {
    return bad("repetition_penalty", "repetition_penalty must be a finite number > 0");
  }
  *out = v.get<double>();
  return std::nullopt;
}

// A parameter that would change the output if honoured, accepted only at the value that
// changes nothing. Refusing beats ignoring.
struct Unsupported {
  const char* key;
  bool (*neutral)(const Body& value);  // nullptr: no value is accepted
  const char* reason;
};

constexpr const char* kNoSampler = "the sampler does not implement it";
constexpr const char* kNoConstraints =
    "only JSON constraints are implemented (response_format, guided_json)";

bool is_false(const Body& v) { return v.is_boolean() && !v.get<bool>(); }
bool is_true(const Body& v) { return v.is_boolean() && v.get<bool>(); }
bool is_zero(const Body& v) { return v.is_number() && v.get<double>() == 0.0; }
bool is_one(const Body& v) { return v.is_number() && v.get<double>() == 1.0; }
bool is_empty(const Body& v) { return (v.is_array() || v.is_object()) && v.empty(); }
bool is_text_modality(const Body& v) { return v == Body::array({"text"}); }

constexpr Unsupported kUnsupported[] = {
    {"echo", is_false, "this server does not echo the prompt"},
    {"suffix", nullptr, "this server does not insert text"},
    {"length_penalty", is_one, "there is no beam search"},
    {"use_beam_search", is_false, "there is no beam search"},
    {"bad_words", is_empty, kNoSampler},
    {"allowed_token_ids", nullptr, kNoSampler},
    {"logits_processors", nullptr, kNoSampler},
    {"prompt_logprobs", nullptr, "prompt log-probabilities are not computed"},
    {"truncate_prompt_tokens", nullptr, "prompts are never truncated"},
    {"return_tokens_as_token_ids", is_false, "tokens are returned as text"},
    {"spaces_between_special_tokens", is_true, "special tokens are decoded as they are"},
    {"continue_final_message", is_false, "the final message is not continued"},
    {"documents", nullptr, "the chat template gets no documents"},
    {"priority", is_zero, "the scheduler has no priorities"},
    {"guided_regex", nullptr, kNoConstraints},
    {"guided_choice", nullptr, kNoConstraints},
    {"guided_grammar", nullptr, kNoConstraints},
    {"guided_decoding_backend", nullptr, kNoConstraints},
    {"guided_whitespace_pattern", nullptr, kNoConstraints},
    {"structured_outputs", nullptr, kNoConstraints},
    {"functions", is_empty, "use tools"},
    {"function_call", nullptr, "use tool_choice"},
    {"modalities", is_text_modality, "only text is generated"},
    {"audio", nullptr, "only text is generated"},
    {"prediction", nullptr, "predicted outputs are not used"},
    {"web_search_options", nullptr, "there is no web search"},
    {"reasoning_effort", nullptr, "the reasoning budget is not controllable"},
};

std::optional<ApiError> refuse_unsupported(Endpoint endpoint, const Body& body, int32_t n) {
  for (const Unsupported& u : kUnsupported) {
    if (present(body, u.key) && (u.neutral == nullptr || !u.neutral(body[u.key]))) {
      return bad(u.key, std::string(u.key) + " is not supported: " + u.reason);
    }
  }
  if (present(body, "best_of") &&
      !(body["best_of"].is_number_integer() && body["best_of"].get<int64_t>() == n)) {
    return bad("best_of", "best_of other than n is not supported");
  }
  if (endpoint == Endpoint::kCompletions) {
    for (const char* key : {"tools", "tool_choice", "parallel_tool_calls", "chat_template",
                            "chat_template_kwargs", "add_generation_prompt"}) {
      if (present(body, key)) {
        return bad(key, std::string(key) + " is only for /v1/chat/completions");
      }
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
    for (const TopLogprob& alt : e.top) {
      if (!alternatives.contains(alt.token)) alternatives[alt.token] = alt.logprob;
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
    for (const TopLogprob& alt : e.top) {
      top.push_back(
          {{"token", alt.token}, {"logprob", alt.logprob}, {"bytes", token_bytes(alt.bytes)}});
    }
    content.push_back({{"token", e.token},
                       {"logprob", e.logprob},
                       {"bytes", token_bytes(e.bytes)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

json logprobs_json(Endpoint endpoint, const ChoiceOutput& c, bool logprobs) {
  if (!logprobs) return nullptr;
  return endpoint == Endpoint::kChat ? chat_logprobs(c.logprobs) : completion_logprobs(c.logprobs);
}

// tool_calls of a message (whole calls) or of a delta (pieces; `streaming`).
json tool_calls_json(const std::vector<ToolCallOutput>& calls, bool streaming) {
  json list = json::array();
  for (const ToolCallOutput& c : calls) {
    json call = json::object();
    if (streaming) call["index"] = c.index;
    json function = {{"arguments", c.arguments}};
    if (!c.id.empty() || !streaming) {
      call["id"] = c.id;
      call["type"] = "function";
      function["name"] = c.name;
    }
    call["function"] = std::move(function);
    list.push_back(std::move(call));
  }
  return list;
}

json meta_json(const ResponseMeta& meta, const char* object) {
  return {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model}};
}

// The request body as a JSON object, or the 400 that says why not.
std::optional<ApiError> parse_body(std::string_view text, Body* body) {
  if (nesting_depth(text) > kMaxJsonDepth) {
    return bad("", "the request body nests JSON deeper than " + std::to_string(kMaxJsonDepth));
  }
  *body = Body::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body->is_discarded()) return bad("", "the request body is not valid JSON");
  if (!body->is_object()) return bad("", "the request body must be a JSON object");
  return std::nullopt;
}

std::optional<ApiError> read_model(const Body& body, std::string* model) {
  if (!present(body, "model")) return std::nullopt;
  if (!body["model"].is_string()) return bad("model", "model must be a string");
  *model = body["model"].get<std::string>();
  return std::nullopt;
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
  Body body;
  if (auto e = parse_body(text, &body)) return e;
  if (auto e = read_model(body, &out->model)) return e;
  if (endpoint == Endpoint::kCompletions) {
    if (auto e = read_prompt(body, out)) return e;
  } else {
    if (auto e = read_messages(body, out)) return e;
    if (auto e = read_tools(body, out)) return e;
    if (auto e = read_chat_extensions(body, out)) return e;
  }

  std::optional<int64_t> v;
  // max_completion_tokens (OpenAI's newer name) wins over max_tokens on both endpoints.
  const char* max_key =
      present(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
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
  if (auto e = read_number(body, "min_p", 0.0, 1.0, false, &out->min_p)) return e;
  if (auto e = read_number(body, "presence_penalty", -2.0, 2.0, false, &out->presence_penalty)) {
    return e;
  }
  if (auto e = read_number(body, "frequency_penalty", -2.0, 2.0, false, &out->frequency_penalty)) {
    return e;
  }
  if (auto e = read_repetition_penalty(body, &out->repetition_penalty)) return e;
  v.reset();
  if (auto e = read_int(body, "min_tokens", 0, INT32_MAX, &v)) return e;
  out->min_tokens = static_cast<int32_t>(v.value_or(0));
  if (auto e = read_logit_bias(body, out)) return e;
  if (auto e = read_output_format(body, out)) return e;
  if (out->format.kind != OutputFormat::Kind::kText && out->tool_choice != "none" &&
      out->tool_choice != "auto") {
    return bad(out->format.param.starts_with("guided") ? "guided_json" : "response_format",
               "tool_choice '" + out->tool_choice +
                   "' already constrains the output; it cannot be combined with a response "
                   "format");
  }
  if (auto e = read_stop(body, out)) return e;
  if (auto e = read_bool(body, "stream", &out->stream)) return e;
  if (auto e = read_bool(body, "ignore_eos", &out->ignore_eos)) return e;
  if (auto e = read_stop_token_ids(body, out)) return e;
  if (auto e = read_bool(body, "skip_special_tokens", &out->skip_special_tokens)) return e;
  if (auto e = read_bool(body, "include_stop_str_in_output", &out->include_stop_str_in_output)) {
    return e;
  }
  out->add_special_tokens = endpoint == Endpoint::kCompletions;
  if (auto e = read_bool(body, "add_special_tokens", &out->add_special_tokens)) return e;
  if (present(body, "stream_options")) {
    const Body& so = body["stream_options"];
    if (!so.is_object()) return bad("stream_options", "stream_options must be an object");
    if (so.contains("include_usage") && !so["include_usage"].is_null()) {
      if (!so["include_usage"].is_boolean()) {
        return bad("stream_options.include_usage", "include_usage must be a boolean");
      }
      out->include_usage = so["include_usage"].get<bool>();
    }
    if (!out->stream) return bad("stream_options", "stream_options needs stream: true");
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
  return refuse_unsupported(endpoint, body, out->n);
}

std::optional<ApiError> parse_tokenize_request(std::string_view text, ParsedRequest* out,
                                               bool* return_token_strs) {
  *out = ParsedRequest{};
  Body body;
  if (auto e = parse_body(text, &body)) return e;
  if (auto e = read_model(body, &out->model)) return e;
  if (present(body, "messages")) {
    out->endpoint = Endpoint::kChat;
    if (auto e = read_messages(body, out)) return e;
    if (auto e = read_tools(body, out)) return e;
    if (auto e = read_chat_extensions(body, out)) return e;
  } else {
    out->endpoint = Endpoint::kCompletions;
    if (!present(body, "prompt") || !body["prompt"].is_string()) {
      return bad("prompt", "prompt (a string) or messages is required");
    }
    out->prompt_text = body["prompt"].get<std::string>();
  }
  out->add_special_tokens = out->endpoint == Endpoint::kCompletions;
  if (auto e = read_bool(body, "add_special_tokens", &out->add_special_tokens)) return e;
  *return_token_strs = false;
  return read_bool(body, "return_token_strs", return_token_strs);
}

std::optional<ApiError> parse_detokenize_request(std::string_view text, std::string* model,
                                                 std::vector<int32_t>* tokens) {
  Body body;
  if (auto e = parse_body(text, &body)) return e;
  if (auto e = read_model(body, model)) return e;
  if (!present(body, "tokens") || !body["tokens"].is_array()) {
    return bad("tokens", "tokens (a list of token ids) is required");
  }
  for (const Body& t : body["tokens"]) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 ||
        t.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return bad("tokens", "tokens must be non-negative integers");
    }
    tokens->push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return std::nullopt;
}

json usage_json(const Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens}}}};
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
    json message = {
        {"role", "assistant"},
        {"content", c.text.empty() && !c.tool_calls.empty() ? json(nullptr) : json(c.text)}};
    if (!c.reasoning.empty()) message["reasoning_content"] = c.reasoning;
    if (!c.tool_calls.empty()) message["tool_calls"] = tool_calls_json(c.tool_calls, false);
    list.push_back({{"index", c.index},
                    {"message", std::move(message)},
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
    if (!delta.reasoning.empty()) d["reasoning_content"] = delta.reasoning;
    if (!delta.tool_calls.empty()) d["tool_calls"] = tool_calls_json(delta.tool_calls, true);
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
