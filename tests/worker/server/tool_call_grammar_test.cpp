// Forced tool calls: the grammar of each family's format accepts the calls the model
// family writes (and nothing else), and ChatOutputParser reads every sentence of it
// back as tool calls whose arguments follow the tool's schema.
#include "worker/server/tool_call_grammar.h"

#include <gtest/gtest.h>

#include <random>

namespace moeserve::server {
namespace {

using Json = nlohmann::ordered_json;

const Json kTools = Json::parse(R"([
  {"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
    "properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"],
    "additionalProperties":false}}},
  {"type":"function","function":{"name":"now"}}])");

structured::Grammar grammar(ToolCallFormat format, const std::string& function, bool parallel) {
  StatusOr<structured::Grammar> g =
      tool_call_grammar(format, kTools, function, parallel, structured::JsonGrammarOptions{});
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  return std::move(g).value();
}

TEST(ToolCallGrammar, AcceptsEachFamilysCallFormat) {
  const structured::Grammar deepseek = grammar(ToolCallFormat::kDeepSeek, "", true);
  const std::string call =
      "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Oslo\"}\n```"
      "<｜tool▁call▁end｜>";
  const std::string now =
      "<｜tool▁call▁begin｜>function<｜tool▁sep｜>now\n```json\n{}\n```<｜tool▁call▁end｜>";
  EXPECT_TRUE(deepseek.matches("<｜tool▁calls▁begin｜>" + call + "<｜tool▁calls▁end｜>"));
  EXPECT_TRUE(
      deepseek.matches("<｜tool▁calls▁begin｜>" + call + "\n" + now + "<｜tool▁calls▁end｜>"));
  EXPECT_FALSE(deepseek.matches("Sure." + call));
  EXPECT_FALSE(deepseek.matches("<｜tool▁calls▁begin｜>" + call));
  EXPECT_FALSE(grammar(ToolCallFormat::kDeepSeek, "", false)
                   .matches("<｜tool▁calls▁begin｜>" + call + now + "<｜tool▁calls▁end｜>"));
  EXPECT_FALSE(grammar(ToolCallFormat::kDeepSeek, "now", true)
                   .matches("<｜tool▁calls▁begin｜>" + call + "<｜tool▁calls▁end｜>"));

  const structured::Grammar hermes = grammar(ToolCallFormat::kHermes, "", true);
  EXPECT_TRUE(hermes.matches(
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Rome\",\"days\":2}}\n"
      "</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(hermes.matches(
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"days\":2}}\n</tool_call>"));

  const structured::Grammar llama = grammar(ToolCallFormat::kLlama3Json, "get_weather", true);
  EXPECT_TRUE(llama.matches(R"({"name": "get_weather", "parameters": {"city": "Lima"}})"));
  EXPECT_TRUE(llama.matches(
      R"({"name": "get_weather", "parameters": {"city": "A"}}; {"name": "get_weather", "parameters": {"city": "B"}})"));
  EXPECT_FALSE(llama.matches(R"({"name": "now", "parameters": {}})"));
}

TEST(ToolCallGrammar, EverySentenceParsesBackIntoValidCalls) {
  std::mt19937 rng(5);
  for (ToolCallFormat format :
       {ToolCallFormat::kDeepSeek, ToolCallFormat::kHermes, ToolCallFormat::kLlama3Json}) {
    const structured::Grammar g = grammar(format, "", true);
    for (int trial = 0; trial < 20; ++trial) {
      // A random sentence, byte by byte, closing strings and objects often.
      structured::GrammarState state = g.initial();
      std::string text;
      while (!(state.accepting() && (!state.can_continue() || rng() % 3 == 0)) &&
             text.size() < 4000) {
        std::vector<uint8_t> allowed, closing;
        for (int b = 0; b < 256; ++b) {
          if (g.advance(state, static_cast<uint8_t>(b)).dead()) continue;
          allowed.push_back(static_cast<uint8_t>(b));
          if (b == '"' || b == '}' || b == '<' || b == '\n' || b == ';') closing.push_back(b);
        }
        ASSERT_FALSE(allowed.empty()) << text;
        const auto& pool = !closing.empty() && rng() % 2 == 0 ? closing : allowed;
        const uint8_t byte = pool[rng() % pool.size()];
        text += static_cast<char>(byte);
        state = g.advance(state, byte);
      }
      ASSERT_TRUE(state.accepting()) << text;
      ChatOutputParser parser(false, format, true, [] { return std::string("id"); });
      parser.push(text);
      parser.finish();
      ASSERT_FALSE(parser.tool_calls().empty()) << text;
      EXPECT_EQ(parser.content(), "") << text;
      for (const ToolCallOutput& call : parser.tool_calls()) {
        const nlohmann::json args = nlohmann::json::parse(call.arguments, nullptr, false);
        ASSERT_TRUE(args.is_object()) << call.arguments;
        if (call.name == "now") {
          EXPECT_TRUE(args.empty());
        } else {
          EXPECT_EQ(call.name, "get_weather");
          EXPECT_TRUE(args["city"].is_string()) << call.arguments;
        }
      }
    }
  }
}

TEST(ToolCallGrammar, SchemasItCannotCompileNameTheTool) {
  const Json tools = Json::parse(R"([{"type":"function","function":{"name":"f","parameters":
      {"type":"object","properties":{"n":{"type":"integer","minimum":1}}}}}])");
  StatusOr<structured::Grammar> g =
      tool_call_grammar(ToolCallFormat::kHermes, tools, "", true, structured::JsonGrammarOptions{});
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().message(),
            "tool 'f' parameters: #/properties/n: 'minimum' is not supported");
  EXPECT_FALSE(tool_call_grammar(ToolCallFormat::kNone, tools, "", true, {}).ok());
}

}  // namespace
}  // namespace moeserve::server
