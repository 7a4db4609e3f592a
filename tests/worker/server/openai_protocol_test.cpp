// OpenAI wire format: request parsing and validation (every field's type and range, the
// param named in errors), error bodies, response and chunk shapes, SSE framing.
#include "worker/server/openai_protocol.h"

#include <gtest/gtest.h>

namespace moeserve::server {
namespace {

using nlohmann::json;

ParsedRequest parse_ok(Endpoint endpoint, const std::string& body) {
  ParsedRequest p;
  const auto error = parse_request(endpoint, body, &p);
  EXPECT_FALSE(error.has_value()) << body << " -> " << (error ? error->message : "");
  return p;
}

ApiError parse_error(Endpoint endpoint, const std::string& body) {
  ParsedRequest p;
  const auto error = parse_request(endpoint, body, &p);
  EXPECT_TRUE(error.has_value()) << body;
  return error.value_or(ApiError{});
}

TEST(ParseRequest, CompletionWithEveryParameter) {
  const ParsedRequest p =
      parse_ok(Endpoint::kCompletions,
               R"({"model":"m","prompt":"hi","max_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":5,
          "seed":42,"stop":["a","bc"],"n":3,"logprobs":2,"stream":true,
          "stream_options":{"include_usage":true},"user":"ignored","best_of":3,
          "ignore_eos":true})");
  EXPECT_EQ(p.model, "m");
  EXPECT_TRUE(p.prompt_is_text);
  EXPECT_EQ(p.prompt_text, "hi");
  EXPECT_EQ(p.max_tokens, 7);
  EXPECT_DOUBLE_EQ(p.temperature, 0.5);
  EXPECT_DOUBLE_EQ(p.top_p, 0.9);
  EXPECT_EQ(p.top_k, 5);
  EXPECT_EQ(p.seed, 42u);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(p.n, 3);
  EXPECT_TRUE(p.logprobs);
  EXPECT_EQ(p.top_logprobs, 2);
  EXPECT_TRUE(p.stream);
  EXPECT_TRUE(p.include_usage);
  EXPECT_TRUE(p.ignore_eos);
}

TEST(ParseRequest, BracketsInsideStringsAreNotNesting) {
  const std::string brackets(200, '[');
  EXPECT_EQ(parse_ok(Endpoint::kCompletions, "{\"prompt\":\"" + brackets + "\\\"\"}").prompt_text,
            brackets + "\"");
}

TEST(ParseRequest, DefaultsFollowOpenAi) {
  const ParsedRequest p = parse_ok(Endpoint::kCompletions, R"({"prompt":"x"})");
  EXPECT_EQ(p.model, "");
  EXPECT_FALSE(p.max_tokens.has_value());
  EXPECT_DOUBLE_EQ(p.temperature, 1.0);
  EXPECT_EQ(p.n, 1);
  EXPECT_FALSE(p.logprobs);
  EXPECT_FALSE(p.stream);
  EXPECT_FALSE(p.seed.has_value());
  EXPECT_EQ(parse_ok(Endpoint::kCompletions, R"({"prompt":"x","top_k":-1})").top_k, 0);
  EXPECT_EQ(parse_ok(Endpoint::kCompletions, R"({"prompt":"x","stop":"end"})").stop,
            std::vector<std::string>{"end"});
}

TEST(ParseRequest, PromptAsTokenIdsOrABatchOfOne) {
  ParsedRequest p = parse_ok(Endpoint::kCompletions, R"({"prompt":[1,2,3]})");
  EXPECT_FALSE(p.prompt_is_text);
  EXPECT_EQ(p.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  p = parse_ok(Endpoint::kCompletions, R"({"prompt":["one"]})");
  EXPECT_EQ(p.prompt_text, "one");
  p = parse_ok(Endpoint::kCompletions, R"({"prompt":[[4,5]]})");
  EXPECT_EQ(p.prompt_ids, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(parse_error(Endpoint::kCompletions, R"({"prompt":["a","b"]})").param, "prompt");
  EXPECT_EQ(parse_error(Endpoint::kCompletions, R"({"prompt":[1,-2]})").param, "prompt");
  EXPECT_EQ(parse_error(Endpoint::kCompletions, R"({"prompt":""})").param, "prompt");
  EXPECT_EQ(parse_error(Endpoint::kCompletions, R"({"prompt":5})").param, "prompt");
  EXPECT_EQ(parse_error(Endpoint::kCompletions, R"({"max_tokens":5})").param, "prompt");
}

TEST(ParseRequest, ChatMessagesAndItsLogprobs) {
  const ParsedRequest p = parse_ok(Endpoint::kChat,
                                   R"({"messages":[{"role":"developer","content":"be brief"},
                      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                      {"role":"assistant","content":null}],
          "max_completion_tokens":9,"logprobs":true,"top_logprobs":3})");
  ASSERT_EQ(p.messages.size(), 3u);
  EXPECT_EQ(p.messages[0].role, "system");
  EXPECT_EQ(p.messages[1].content, "ab");
  EXPECT_EQ(p.max_tokens, 9);
  EXPECT_TRUE(p.logprobs);
  EXPECT_EQ(p.top_logprobs, 3);
  EXPECT_EQ(parse_error(Endpoint::kChat, R"({"messages":[]})").param, "messages");
  EXPECT_EQ(parse_error(Endpoint::kChat, R"({"messages":[{"role":"tool","content":"x"}]})").param,
            "messages[0].role");
  EXPECT_EQ(parse_error(Endpoint::kChat, R"({"messages":[{"role":"user","content":3}]})").param,
            "messages[0].content");
  EXPECT_EQ(parse_error(Endpoint::kChat,
                        R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})")
                .param,
            "top_logprobs");
  EXPECT_EQ(
      parse_error(Endpoint::kChat, R"({"messages":[{"role":"user","content":"x"}],"logprobs":2})")
          .param,
      "logprobs");
}

TEST(ParseRequest, WrongTypesAndRangesNameTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("max_tokens":"5")", "max_tokens"},
      {R"("max_tokens":0)", "max_tokens"},
      {R"("max_tokens":1.5)", "max_tokens"},
      {R"("temperature":"hot")", "temperature"},
      {R"("temperature":2.5)", "temperature"},
      {R"("top_p":0)", "top_p"},
      {R"("top_p":1.1)", "top_p"},
      {R"("top_k":-2)", "top_k"},
      {R"("n":0)", "n"},
      {R"("n":17)", "n"},
      {R"("seed":"x")", "seed"},
      {R"("stop":5)", "stop"},
      {R"("stop":[""])", "stop"},
      {R"("stop":[1])", "stop"},
      {R"("logprobs":21)", "logprobs"},
      {R"("logprobs":true)", "logprobs"},
      {R"("stream":"yes")", "stream"},
      {R"("stream_options":1)", "stream_options"},
      {R"("stream_options":{"include_usage":1})", "stream_options.include_usage"},
      {R"("model":7)", "model"},
      {R"("echo":true)", "echo"},
      {R"("presence_penalty":0.5)", "presence_penalty"},
      {R"("logit_bias":{"1":5})", "logit_bias"},
      {R"("best_of":2)", "best_of"},
      {R"("suffix":"x")", "suffix"},
      {R"("ignore_eos":1)", "ignore_eos"},
  };
  for (const auto& [field, param] : cases) {
    const ApiError e = parse_error(Endpoint::kCompletions, R"({"prompt":"p",)" + field + "}");
    EXPECT_EQ(e.status, 400) << field;
    EXPECT_EQ(e.type, "invalid_request_error") << field;
    EXPECT_EQ(e.param, param) << field;
    EXPECT_FALSE(e.message.empty()) << field;
  }
}

TEST(ParseRequest, MalformedBodies) {
  const std::string deep =
      "{\"prompt\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  for (const std::string& body :
       {std::string(""), std::string("{"), std::string("[1,2]"), std::string("\"s\""),
        std::string("{\"prompt\":\"x\",}"), std::string("nul"), deep}) {
    const ApiError e = parse_error(Endpoint::kCompletions, body);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.param, "") << body;
  }
}

TEST(ErrorBody, HasOpenAiShapeWithNulls) {
  ApiError e;
  e.status = 404;
  e.message = "no such model";
  e.code = "model_not_found";
  const json body = json::parse(error_body(e));
  EXPECT_EQ(body["error"]["message"], "no such model");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(body["error"]["param"].is_null());
  EXPECT_EQ(body["error"]["code"], "model_not_found");
  EXPECT_EQ(body.size(), 1u);
  EXPECT_EQ(body["error"].size(), 4u);
}

ChoiceOutput sample_choice() {
  ChoiceOutput c;
  c.index = 1;
  c.text = "ab";
  c.finish_reason = "length";
  TokenLogprobs t;
  t.token = "a";
  t.logprob = -0.5f;
  t.top = {{"a", -0.5f}, {"b", -1.5f}};
  t.text_offset = 0;
  c.logprobs.push_back(t);
  t.token = "b";
  t.text_offset = 1;
  c.logprobs.push_back(t);
  return c;
}

TEST(Responses, CompletionShape) {
  const ResponseMeta meta{"cmpl-1", 123, "tiny"};
  const json r = completion_response(meta, {sample_choice()}, {5, 2}, true);
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["id"], "cmpl-1");
  EXPECT_EQ(r["created"], 123);
  EXPECT_EQ(r["model"], "tiny");
  EXPECT_EQ(r["choices"][0]["index"], 1);
  EXPECT_EQ(r["choices"][0]["text"], "ab");
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  const json& lp = r["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json({"a", "b"}));
  EXPECT_EQ(lp["token_logprobs"], json({-0.5, -0.5}));
  EXPECT_EQ(lp["text_offset"], json({0, 1}));
  EXPECT_EQ(lp["top_logprobs"][0]["b"], -1.5);
  EXPECT_EQ(r["usage"],
            json({{"prompt_tokens", 5}, {"completion_tokens", 2}, {"total_tokens", 7}}));
  EXPECT_TRUE(completion_response(meta, {sample_choice()}, {5, 2}, false)["choices"][0]["logprobs"]
                  .is_null());
}

TEST(Responses, ChatShape) {
  const json r = chat_response({"chatcmpl-1", 1, "tiny"}, {sample_choice()}, {3, 2}, true);
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][0]["message"], json({{"role", "assistant"}, {"content", "ab"}}));
  const json& content = r["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["token"], "a");
  EXPECT_EQ(content[0]["bytes"], json({97}));
  EXPECT_EQ(content[0]["top_logprobs"][1]["token"], "b");
  EXPECT_EQ(r["usage"]["total_tokens"], 5);
}

TEST(Responses, StreamChunksAndUsageChunk) {
  const ResponseMeta meta{"chatcmpl-2", 9, "tiny"};
  ChoiceOutput first;
  json c = stream_chunk(Endpoint::kChat, meta, first, true, false, true);
  EXPECT_EQ(c["object"], "chat.completion.chunk");
  EXPECT_EQ(c["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(c["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(c.contains("usage") && c["usage"].is_null());
  ChoiceOutput last;
  last.finish_reason = "stop";
  c = stream_chunk(Endpoint::kChat, meta, last, false, false, false);
  EXPECT_EQ(c["choices"][0]["delta"], json::object());
  EXPECT_EQ(c["choices"][0]["finish_reason"], "stop");
  EXPECT_FALSE(c.contains("usage"));
  c = stream_chunk(Endpoint::kCompletions, meta, sample_choice(), false, true, false);
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "ab");
  EXPECT_EQ(c["choices"][0]["logprobs"]["tokens"].size(), 2u);
  const json u = usage_chunk(Endpoint::kChat, meta, {4, 6});
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["total_tokens"], 10);
}

TEST(Sse, FramesOneEventPerChunk) {
  EXPECT_EQ(sse_event(json({{"a", 1}})), "data: {\"a\":1}\n\n");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
  // Invalid UTF-8 (a token ending inside a character) is replaced, never thrown.
  EXPECT_EQ(sse_event(json({{"t", std::string("\xE2\x82")}})),
            "data: {\"t\":\"\xEF\xBF\xBD\"}\n\n");
  EXPECT_EQ(utf8_length("a\xC3\xA9z"), 3);
}

}  // namespace
}  // namespace moeserve::server
