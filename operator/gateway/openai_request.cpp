#include "operator/gateway/openai_request.h"

#include <nlohmann/json.hpp>

namespace moeserve::gateway {
namespace {

using nlohmann::json;

constexpr int64_t kBytesPerToken = 4;
constexpr int64_t kTokensPerMessage = 4;  // role markers a chat template adds

int64_t text_tokens(size_t bytes) {
  return (static_cast<int64_t>(bytes) + kBytesPerToken - 1) / kBytesPerToken;
}

// A message's content as text: a string, or the text parts of a list (other parts as
// their JSON, so two different images are two different prefixes).
std::string content_text(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return "";
  if (!content.is_array()) return content.dump();
  std::string text;
  for (const json& part : content) {
    if (part.is_object() && part.value("type", "") == "text" && part.contains("text") &&
        part["text"].is_string()) {
      text += part["text"].get<std::string>();
    } else {
      text += part.dump();
    }
  }
  return text;
}

void inspect_chat(const json& body, InspectedRequest* out) {
  if (body.contains("tools") && !body["tools"].is_null()) {
    out->prefix_text = body["tools"].dump() + "\n\n";
  }
  int64_t tokens = text_tokens(out->prefix_text.size());
  if (body.contains("messages") && body["messages"].is_array()) {
    for (const json& m : body["messages"]) {
      if (!m.is_object()) continue;
      std::string text = m.value("role", "") + "\n";
      if (m.contains("content")) text += content_text(m["content"]);
      if (m.contains("tool_calls")) text += m["tool_calls"].dump();
      text += "\n\n";
      tokens += text_tokens(text.size()) + kTokensPerMessage;
      out->prefix_text += text;
    }
  }
  out->prompt_tokens_estimate = tokens;
}

void inspect_completion(const json& body, InspectedRequest* out) {
  if (!body.contains("prompt")) return;
  const json& prompt = body["prompt"];
  auto token_ids = [](const json& ids) {
    std::string text;
    for (const json& id : ids) text += id.dump() + ",";
    return text;
  };
  if (prompt.is_string()) {
    out->prefix_text = prompt.get<std::string>();
    out->prompt_tokens_estimate = text_tokens(out->prefix_text.size());
  } else if (prompt.is_array() && !prompt.empty() && prompt[0].is_number_integer()) {
    out->prefix_text = token_ids(prompt);
    out->prompt_tokens_estimate = static_cast<int64_t>(prompt.size());
  } else if (prompt.is_array()) {
    // A batch: every prompt costs; the first one's prefix routes.
    for (const json& p : prompt) {
      if (p.is_string()) {
        out->prompt_tokens_estimate += text_tokens(p.get_ref<const std::string&>().size());
        if (out->prefix_text.empty()) out->prefix_text = p.get<std::string>();
      } else if (p.is_array()) {
        out->prompt_tokens_estimate += static_cast<int64_t>(p.size());
        if (out->prefix_text.empty()) out->prefix_text = token_ids(p);
      }
    }
    if (prompt.size() > 1) out->choices *= static_cast<int64_t>(prompt.size());
  }
}

int64_t positive_int(const json& body, const char* name, int64_t fallback) {
  if (!body.contains(name) || !body[name].is_number_integer()) return fallback;
  const int64_t v = body[name].get<int64_t>();
  return v > 0 ? v : fallback;
}

}  // namespace

StatusOr<InspectedRequest> inspect_request(std::string_view path, std::string_view body_text,
                                           const RequestCostOptions& options) {
  json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return invalid_argument_error("the request body is not a JSON object");
  }
  if (!body.contains("model") || !body["model"].is_string() ||
      body["model"].get_ref<const std::string&>().empty()) {
    return invalid_argument_error("model: required, a string naming one of GET /v1/models");
  }
  InspectedRequest out;
  out.model = body["model"].get<std::string>();
  out.stream = body.contains("stream") && body["stream"].is_boolean() && body["stream"].get<bool>();
  out.choices = positive_int(body, "n", 1);
  const char* max_name =
      body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (path == "/v1/chat/completions") {
    out.max_tokens = positive_int(body, max_name, options.assumed_max_tokens);
    inspect_chat(body, &out);
  } else if (path == "/v1/completions") {
    out.max_tokens = positive_int(body, max_name, options.assumed_max_tokens);
    inspect_completion(body, &out);
  }
  return out;
}

std::string openai_error_body(std::string_view message, std::string_view type,
                              std::string_view code, std::string_view param) {
  auto or_null = [](std::string_view v) { return v.empty() ? json(nullptr) : json(v); };
  json body = {
      {"error",
       {{"message", message}, {"type", type}, {"param", or_null(param)}, {"code", or_null(code)}}}};
  return body.dump();
}

http::Response openai_error(int status, std::string_view message, std::string_view type,
                            std::string_view code, int64_t retry_after_s) {
  http::Response r = http::json_response(status, openai_error_body(message, type, code));
  if (retry_after_s > 0) r.headers.emplace_back("Retry-After", std::to_string(retry_after_s));
  return r;
}

}  // namespace moeserve::gateway
