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
            "messages[0].tool_call_id");
  EXPECT_EQ(parse_error(Endpoint::kChat, R"({"messages":[{"role":"robot","content":"x"}]})").param,
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
      {R"("presence_penalty":2.5)", "presence_penalty"},
      {R"("frequency_penalty":-3)", "frequency_penalty"},
      {R"("repetition_penalty":0)", "repetition_penalty"},
      {R"("repetition_penalty":"x")", "repetition_penalty"},
      {R"("min_p":1.5)", "min_p"},
      {R"("min_tokens":-1)", "min_tokens"},
      {R"("min_tokens":1.5)", "min_tokens"},
      {R"("logit_bias":[1])", "logit_bias"},
      {R"("logit_bias":{"x":5})", "logit_bias"},
      {R"("logit_bias":{"-1":5})", "logit_bias"},
      {R"("logit_bias":{"1":101})", "logit_bias"},
      {R"("logit_bias":{"1":"5"})", "logit_bias"},
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

TEST(ParseRequest, ResponseFormatsAndGuidedJson) {
  for (const Endpoint endpoint : {Endpoint::kCompletions, Endpoint::kChat}) {
    const std::string head = endpoint == Endpoint::kChat
                                 ? R"({"messages":[{"role":"user","content":"x"}],)"
                                 : R"({"prompt":"x",)";
    ParsedRequest p = parse_ok(endpoint, head + R"("response_format":{"type":"json_object"}})");
    EXPECT_EQ(p.format.kind, OutputFormat::Kind::kJsonObject);
    p = parse_ok(endpoint, head +
                               R"("response_format":{"type":"json_schema","json_schema":)"
                               R"({"name":"person","strict":true,"schema":{"type":"string"}}}})");
    EXPECT_EQ(p.format.kind, OutputFormat::Kind::kJsonSchema);
    EXPECT_TRUE(p.format.strict);
    EXPECT_EQ(p.format.schema, nlohmann::ordered_json::parse(R"({"type":"string"})"));
    EXPECT_EQ(p.format.param, "response_format.json_schema.schema");
    p = parse_ok(endpoint, head + R"("guided_json":"{\"type\":\"integer\"}"})");
    EXPECT_EQ(p.format.schema, nlohmann::ordered_json::parse(R"({"type":"integer"})"));
    EXPECT_EQ(p.format.param, "guided_json");
    EXPECT_EQ(parse_ok(endpoint, head + R"("response_format":{"type":"text"}})").format.kind,
              OutputFormat::Kind::kText);
    const std::vector<std::pair<std::string, std::string>> bad = {
        {R"("response_format":{"type":"yaml"})", "response_format.type"},
        {R"("response_format":"json")", "response_format"},
        {R"("response_format":{"type":"json_schema"})", "response_format.json_schema"},
        {R"("response_format":{"type":"json_schema","json_schema":{"name":"a b","schema":{}}})",
         "response_format.json_schema.name"},
        {R"("response_format":{"type":"json_schema","json_schema":{"schema":3}})",
         "response_format.json_schema.schema"},
        {R"("response_format":{"type":"json_schema","json_schema":{"schema":{},"strict":1}})",
         "response_format.json_schema.strict"},
        {R"("guided_json":5)", "guided_json"},
        {R"("guided_json":{},"response_format":{"type":"json_object"})", "guided_json"},
    };
    for (const auto& [field, param] : bad) {
      EXPECT_EQ(parse_error(endpoint, head + field + "}").param, param) << field;
    }
  }
}

// Every parameter that would change the output and is not implemented is refused with
// a 400 naming it, on both endpoints, unless it has the value that changes nothing.
TEST(ParseRequest, UnimplementedParametersAreRefusedUnlessNeutral) {
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"guided_regex", R"("a+")"},
      {"guided_choice", R"(["a","b"])"},
      {"guided_grammar", R"("root ::= x")"},
      {"structured_outputs", R"({"json":{}})"},
      {"use_beam_search", "true"},
      {"length_penalty", "0.5"},
      {"prompt_logprobs", "1"},
      {"truncate_prompt_tokens", "5"},
      {"allowed_token_ids", "[1,2]"},
      {"bad_words", R"(["x"])"},
      {"return_tokens_as_token_ids", "true"},
      {"spaces_between_special_tokens", "false"},
      {"continue_final_message", "true"},
      {"priority", "1"},
      {"echo", "true"},
      {"suffix", R"("x")"},
      {"function_call", R"("auto")"},
      {"functions", R"([{"name":"f"}])"},
      {"modalities", R"(["text","audio"])"},
      {"audio", R"({"voice":"x"})"},
      {"prediction", R"({"type":"content","content":"x"})"},
      {"reasoning_effort", R"("high")"},
      {"web_search_options", "{}"},
  };
  for (const auto& [key, value] : refused) {
    for (const Endpoint endpoint : {Endpoint::kCompletions, Endpoint::kChat}) {
      const std::string head = endpoint == Endpoint::kChat
                                   ? R"({"messages":[{"role":"user","content":"x"}],)"
                                   : R"({"prompt":"x",)";
      const ApiError e = parse_error(endpoint, head + "\"" + key + "\":" + value + "}");
      EXPECT_EQ(e.status, 400) << key;
      EXPECT_EQ(e.param, key) << key << "=" << value;
      EXPECT_NE(e.message.find(key), std::string::npos) << e.message;
    }
  }
  const std::vector<std::pair<std::string, std::string>> neutral = {
      {"response_format", R"({"type":"text"})"},
      {"use_beam_search", "false"},
      {"spaces_between_special_tokens", "true"},
      {"modalities", R"(["text"])"},
      {"echo", "false"},
      {"priority", "0"},
      {"user", R"("u-1")"},
      {"metadata", R"({"k":"v"})"},
      {"store", "false"},
      {"service_tier", R"("auto")"},
  };
  for (const auto& [key, value] : neutral) {
    parse_ok(Endpoint::kChat,
             R"({"messages":[{"role":"user","content":"x"}],")" + key + "\":" + value + "}");
  }
}

TEST(ParseRequest, SamplingParametersAreReadOnBothEndpoints) {
  for (const Endpoint endpoint : {Endpoint::kCompletions, Endpoint::kChat}) {
    const std::string head = endpoint == Endpoint::kChat
                                 ? R"({"messages":[{"role":"user","content":"x"}],)"
                                 : R"({"prompt":"x",)";
    const ParsedRequest p = parse_ok(
        endpoint, head + R"("presence_penalty":0.5,"frequency_penalty":-1,"repetition_penalty":1.2,
                            "min_p":0.1,"min_tokens":3,"logit_bias":{"5":10,"7":-100}})");
    EXPECT_EQ(p.presence_penalty, 0.5);
    EXPECT_EQ(p.frequency_penalty, -1.0);
    EXPECT_EQ(p.repetition_penalty, 1.2);
    EXPECT_EQ(p.min_p, 0.1);
    EXPECT_EQ(p.min_tokens, 3);
    EXPECT_EQ(p.logit_bias, (std::vector<std::pair<int32_t, float>>{{5, 10.0f}, {7, -100.0f}}));
  }
  const ParsedRequest defaults = parse_ok(Endpoint::kCompletions, R"({"prompt":"x"})");
  EXPECT_EQ(defaults.presence_penalty, 0.0);
  EXPECT_EQ(defaults.frequency_penalty, 0.0);
  EXPECT_EQ(defaults.repetition_penalty, 1.0);
  EXPECT_EQ(defaults.min_p, 0.0);
  EXPECT_EQ(defaults.min_tokens, 0);
  EXPECT_TRUE(defaults.logit_bias.empty());
}

TEST(ParseRequest, ImplementedExtensions) {
  ParsedRequest p = parse_ok(Endpoint::kCompletions,
                             R"({"prompt":"x","max_completion_tokens":5,"stop_token_ids":[3,4],
                                 "skip_special_tokens":false,"include_stop_str_in_output":true,
                                 "add_special_tokens":false})");
  EXPECT_EQ(p.max_tokens, 5);  // max_completion_tokens works on /v1/completions too
  EXPECT_EQ(p.stop_token_ids, (std::vector<int32_t>{3, 4}));
  EXPECT_FALSE(p.skip_special_tokens);
  EXPECT_TRUE(p.include_stop_str_in_output);
  EXPECT_FALSE(p.add_special_tokens);
  EXPECT_TRUE(parse_ok(Endpoint::kCompletions, R"({"prompt":"x"})").add_special_tokens);
  EXPECT_FALSE(parse_ok(Endpoint::kChat, R"({"messages":[{"role":"user","content":"x"}]})")
                   .add_special_tokens);
  EXPECT_EQ(parse_error(Endpoint::kCompletions, R"({"prompt":"x","stop_token_ids":[-1]})").param,
            "stop_token_ids");

  p = parse_ok(Endpoint::kChat,
               R"({"messages":[{"role":"user","content":"x"}],"add_generation_prompt":false,
                   "chat_template":"{{ messages[0].content }}",
                   "chat_template_kwargs":{"enable_thinking":false}})");
  EXPECT_FALSE(p.chat.add_generation_prompt);
  EXPECT_EQ(p.chat_template, "{{ messages[0].content }}");
  EXPECT_EQ(p.chat.template_kwargs["enable_thinking"], false);
  EXPECT_TRUE(parse_ok(Endpoint::kChat, R"({"messages":[{"role":"user","content":"x"}]})")
                  .chat.add_generation_prompt);
  for (const char* chat_only : {R"("add_generation_prompt":false)", R"("chat_template":"x")",
                                R"("tools":[])", R"("tool_choice":"none")"}) {
    EXPECT_EQ(
        parse_error(Endpoint::kCompletions, std::string(R"({"prompt":"x",)") + chat_only + "}")
            .status,
        400)
        << chat_only;
  }
  // stream_options only with stream: true.
  EXPECT_EQ(parse_error(Endpoint::kCompletions,
                        R"({"prompt":"x","stream_options":{"include_usage":true}})")
                .param,
            "stream_options");
}

const char* kTools =
    R"("tools":[{"type":"function","function":{"name":"get_weather","description":"d",
        "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])";

std::string chat_with(const std::string& fields) {
  return std::string(R"({"messages":[{"role":"user","content":"x"}],)") + fields + "}";
}

TEST(ParseRequest, ToolsToolChoiceAndToolMessages) {
  ParsedRequest p = parse_ok(Endpoint::kChat, chat_with(kTools));
  EXPECT_EQ(p.tool_choice, "auto");
  ASSERT_TRUE(p.chat.tools.is_array());
  // Key order is the client's (the template renders the schema as sent).
  EXPECT_EQ(p.chat.tools.dump(),
            R"([{"type":"function","function":{"name":"get_weather","description":"d",)"
            R"("parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])");
  p = parse_ok(Endpoint::kChat, chat_with(std::string(kTools) +
                                          R"(,"tool_choice":"none","parallel_tool_calls":false)"));
  EXPECT_EQ(p.tool_choice, "none");
  EXPECT_FALSE(p.parallel_tool_calls);

  EXPECT_EQ(parse_error(Endpoint::kChat, chat_with(R"("tool_choice":"auto")")).param,
            "tool_choice");  // tool_choice without tools
  p = parse_ok(Endpoint::kChat, chat_with(std::string(kTools) + R"(,"tool_choice":"required")"));
  EXPECT_EQ(p.tool_choice, "required");
  const ApiError missing =
      parse_error(Endpoint::kChat,
                  chat_with(std::string(kTools) +
                            R"(,"tool_choice":{"type":"function","function":{"name":"nope"}})"));
  EXPECT_EQ(missing.param, "tool_choice");
  EXPECT_NE(missing.message.find("'nope', which is not in tools"), std::string::npos);
  p = parse_ok(
      Endpoint::kChat,
      chat_with(std::string(kTools) +
                R"(,"tool_choice":{"type":"function","function":{"name":"get_weather"}})"));
  EXPECT_EQ(p.tool_choice, "function");
  EXPECT_EQ(p.tool_choice_function, "get_weather");
  EXPECT_EQ(parse_error(
                Endpoint::kChat,
                chat_with(std::string(kTools) +
                          R"(,"tool_choice":"required","response_format":{"type":"json_object"})"))
                .param,
            "response_format");
  EXPECT_EQ(
      parse_error(Endpoint::kChat, chat_with(R"("tools":[{"type":"function","function":{}}])"))
          .param,
      "tools[0].function.name");
  EXPECT_EQ(parse_error(Endpoint::kChat,
                        chat_with(R"("tools":[{"type":"function","function":{"name":"a b"}}])"))
                .param,
            "tools[0].function.name");
  EXPECT_EQ(parse_error(Endpoint::kChat, chat_with(R"("tools":[{"type":"retrieval"}])")).param,
            "tools[0].type");

  p = parse_ok(Endpoint::kChat, R"({"messages":[{"role":"user","content":"w?"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"21C"},
      {"role":"assistant","content":"<think>r</think>ok","reasoning_content":"r"}]})");
  ASSERT_EQ(p.messages.size(), 4u);
  EXPECT_FALSE(p.messages[1].content.has_value());
  ASSERT_EQ(p.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(p.messages[1].tool_calls[0].id, "call_1");
  EXPECT_EQ(p.messages[1].tool_calls[0].name, "get_weather");
  EXPECT_EQ(p.messages[1].tool_calls[0].arguments, R"({"city":"Paris"})");
  EXPECT_EQ(p.messages[2].role, "tool");
  EXPECT_EQ(p.messages[2].tool_call_id, "call_1");
  EXPECT_EQ(p.messages[2].content, "21C");
  EXPECT_EQ(p.messages[3].reasoning_content, "r");
  EXPECT_EQ(parse_error(Endpoint::kChat, R"({"messages":[{"role":"assistant","content":null,
      "tool_calls":[{"id":"c","type":"function","function":{"name":"f"}}]}]})")
                .param,
            "messages[0].tool_calls[0].function.arguments");
  EXPECT_EQ(parse_error(Endpoint::kChat, R"({"messages":[{"role":"user","content":"x",
      "tool_calls":[]}]})")
                .param,
            "messages[0].tool_calls");
}

TEST(ParseRequest, TokenizeAndDetokenize) {
  ParsedRequest p;
  bool strs = false;
  EXPECT_FALSE(parse_tokenize_request(R"({"prompt":"hi","return_token_strs":true})", &p, &strs));
  EXPECT_EQ(p.endpoint, Endpoint::kCompletions);
  EXPECT_EQ(p.prompt_text, "hi");
  EXPECT_TRUE(p.add_special_tokens);
  EXPECT_TRUE(strs);
  EXPECT_FALSE(parse_tokenize_request(
      R"({"messages":[{"role":"user","content":"x"}],"add_generation_prompt":false})", &p, &strs));
  EXPECT_EQ(p.endpoint, Endpoint::kChat);
  EXPECT_FALSE(p.chat.add_generation_prompt);
  EXPECT_FALSE(p.add_special_tokens);
  EXPECT_EQ(parse_tokenize_request(R"({"prompt":3})", &p, &strs)->param, "prompt");

  std::string model;
  std::vector<int32_t> tokens;
  EXPECT_FALSE(parse_detokenize_request(R"({"model":"m","tokens":[1,2]})", &model, &tokens));
  EXPECT_EQ(model, "m");
  EXPECT_EQ(tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(parse_detokenize_request(R"({"tokens":["a"]})", &model, &tokens)->param, "tokens");
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
  t.bytes = "a";
  t.logprob = -0.5f;
  t.top = {{"a", "a", -0.5f}, {"b", "b", -1.5f}};
  t.text_offset = 0;
  c.logprobs.push_back(t);
  t.token = "b";
  t.bytes = "b";
  t.text_offset = 1;
  c.logprobs.push_back(t);
  return c;
}

TEST(Responses, CompletionShape) {
  const ResponseMeta meta{"cmpl-1", 123, "tiny"};
  const json r = completion_response(meta, {sample_choice()}, {5, 2, 3}, true);
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
  EXPECT_EQ(r["usage"], json({{"prompt_tokens", 5},
                              {"completion_tokens", 2},
                              {"total_tokens", 7},
                              {"prompt_tokens_details", {{"cached_tokens", 3}}}}));
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

TEST(Responses, LogprobBytesAreTheTokensOwnBytes) {
  ChoiceOutput c;
  TokenLogprobs t;
  t.token = "\xEF\xBF\xBD";  // the text of half a character is U+FFFD...
  t.bytes = "\xC3";          // ...but its bytes are its own
  t.top = {{t.token, t.bytes, -0.1f}};
  c.logprobs.push_back(t);
  const json r = chat_response({"chatcmpl-1", 1, "tiny"}, {c}, {}, true);
  EXPECT_EQ(r["choices"][0]["logprobs"]["content"][0]["bytes"], json({0xC3}));
  EXPECT_EQ(r["choices"][0]["logprobs"]["content"][0]["top_logprobs"][0]["bytes"], json({0xC3}));
}

TEST(Responses, ToolCallsInMessagesAndDeltas) {
  ChoiceOutput c;
  c.reasoning = "think";
  c.tool_calls = {{0, "call_1", "get_weather", R"({"city":"Paris"})"}};
  c.finish_reason = "tool_calls";
  const json r = chat_response({"chatcmpl-1", 1, "tiny"}, {c}, {}, false);
  const json& message = r["choices"][0]["message"];
  EXPECT_TRUE(message["content"].is_null());
  EXPECT_EQ(message["reasoning_content"], "think");
  EXPECT_EQ(message["tool_calls"],
            json::parse(R"([{"id":"call_1","type":"function","function":{"name":"get_weather",
                        "arguments":"{\"city\":\"Paris\"}"}}])"));
  EXPECT_EQ(r["choices"][0]["finish_reason"], "tool_calls");

  ChoiceOutput first_piece;
  first_piece.tool_calls = {{0, "call_1", "get_weather", ""}};
  json d = stream_chunk(Endpoint::kChat, {"c", 1, "tiny"}, first_piece, false, false, false);
  EXPECT_EQ(d["choices"][0]["delta"]["tool_calls"],
            json::parse(R"([{"index":0,"id":"call_1","type":"function",
                        "function":{"name":"get_weather","arguments":""}}])"));
  ChoiceOutput later;
  later.tool_calls = {{0, "", "", "{\"ci"}};
  later.reasoning = "r";
  d = stream_chunk(Endpoint::kChat, {"c", 1, "tiny"}, later, false, false, false);
  EXPECT_EQ(d["choices"][0]["delta"], json::parse(R"({"reasoning_content":"r",
                        "tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]})"));
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
