// ChatOutputParser: reasoning, content and tool calls split out of constructed model
// outputs, the same whether the text arrives whole or one byte at a time (as the
// streamed deltas do).
#include "worker/server/chat_output.h"

#include <gtest/gtest.h>

namespace moeserve::server {
namespace {

struct Parsed {
  std::string content;
  std::string reasoning;
  std::vector<ToolCallOutput> calls;   // whole calls, from the deltas
  std::vector<ToolCallOutput> pieces;  // every delta piece, in order
};

// Feeds `text` in pieces of `step` bytes (0: whole) and rebuilds the output from the
// returned deltas only.
Parsed parse(const std::string& text, size_t step, bool reasoning, ToolCallFormat format,
             bool parallel = true) {
  int next_id = 0;
  ChatOutputParser parser(reasoning, format, parallel,
                          [&next_id] { return "call_" + std::to_string(next_id++); });
  Parsed out;
  const auto take = [&](ChoiceOutput d) {
    out.content += d.text;
    out.reasoning += d.reasoning;
    for (const ToolCallOutput& piece : d.tool_calls) {
      out.pieces.push_back(piece);
      if (!piece.id.empty()) {
        out.calls.push_back(piece);
      } else {
        EXPECT_FALSE(out.calls.empty());
        EXPECT_EQ(out.calls.back().index, piece.index);
        out.calls.back().arguments += piece.arguments;
      }
    }
  };
  if (step == 0) {
    take(parser.push(text));
  } else {
    for (size_t i = 0; i < text.size(); i += step) take(parser.push(text.substr(i, step)));
  }
  take(parser.finish());
  // The accumulated view agrees with the deltas.
  EXPECT_EQ(parser.content(), out.content);
  EXPECT_EQ(parser.reasoning(), out.reasoning);
  EXPECT_EQ(parser.tool_calls().size(), out.calls.size());
  return out;
}

const std::string kDeepSeekTwoCalls =
    "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
    "```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function"
    "<｜tool▁sep｜>search\n```json\n{\"query\": \"a ``` b\", \"limit\": 3}\n```"
    "<｜tool▁call▁end｜><｜tool▁calls▁end｜>";

TEST(ChatOutputParser, DeepSeekToolCallsWholeOrByteByByte) {
  for (size_t step : {0, 1, 3, 7}) {
    const Parsed p = parse(kDeepSeekTwoCalls, step, false, ToolCallFormat::kDeepSeek);
    EXPECT_EQ(p.content, "Let me check.") << step;
    ASSERT_EQ(p.calls.size(), 2u) << step;
    EXPECT_EQ(p.calls[0].index, 0);
    EXPECT_EQ(p.calls[0].id, "call_0");
    EXPECT_EQ(p.calls[0].name, "get_weather");
    EXPECT_EQ(p.calls[0].arguments, R"({"city": "Paris"})") << step;
    EXPECT_EQ(p.calls[1].index, 1);
    EXPECT_EQ(p.calls[1].name, "search");
    EXPECT_EQ(p.calls[1].arguments, R"({"query": "a ``` b", "limit": 3})") << step;
  }
}

TEST(ChatOutputParser, DeepSeekArgumentsStreamInPiecesAfterTheName) {
  const Parsed p = parse(kDeepSeekTwoCalls, 1, false, ToolCallFormat::kDeepSeek);
  ASSERT_GT(p.pieces.size(), 4u);
  // The first piece of a call names it with no arguments yet; more pieces follow.
  EXPECT_EQ(p.pieces[0].name, "get_weather");
  EXPECT_EQ(p.pieces[0].arguments, "");
  EXPECT_TRUE(p.pieces[1].id.empty());
  EXPECT_FALSE(p.pieces[1].arguments.empty());
}

TEST(ChatOutputParser, DeepSeekV31FormAndNoCalls) {
  const Parsed v31 = parse(
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\":\"Oslo\"}"
      "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
      2, false, ToolCallFormat::kDeepSeek);
  EXPECT_EQ(v31.content, "");
  ASSERT_EQ(v31.calls.size(), 1u);
  EXPECT_EQ(v31.calls[0].name, "get_weather");
  EXPECT_EQ(v31.calls[0].arguments, R"({"city":"Oslo"})");

  const std::string plain = "No tools here, just <｜ and text.";
  const Parsed none = parse(plain, 1, false, ToolCallFormat::kDeepSeek);
  EXPECT_EQ(none.content, plain);
  EXPECT_TRUE(none.calls.empty());
}

TEST(ChatOutputParser, ParallelToolCallsFalseKeepsTheFirstCall) {
  const Parsed p = parse(kDeepSeekTwoCalls, 1, false, ToolCallFormat::kDeepSeek, false);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
}

TEST(ChatOutputParser, HermesToolCalls) {
  const std::string text =
      "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
      "</tool_call>\n<tool_call>\n{\"name\": \"search\", \"arguments\": {}}\n</tool_call>";
  for (size_t step : {0, 1, 5}) {
    const Parsed p = parse(text, step, false, ToolCallFormat::kHermes);
    EXPECT_EQ(p.content, "Sure.\n") << step;
    ASSERT_EQ(p.calls.size(), 2u);
    EXPECT_EQ(p.calls[0].name, "get_weather");
    EXPECT_EQ(p.calls[0].arguments, R"({"city":"Paris"})");
    EXPECT_EQ(p.calls[1].name, "search");
    EXPECT_EQ(p.calls[1].arguments, "{}");
  }
  // Not JSON: the text stays content.
  const Parsed bad = parse("<tool_call>not json</tool_call>", 1, false, ToolCallFormat::kHermes);
  EXPECT_EQ(bad.content, "<tool_call>not json</tool_call>");
  EXPECT_TRUE(bad.calls.empty());
}

TEST(ChatOutputParser, ReasoningUntilThinkCloses) {
  for (size_t step : {0, 1, 4}) {
    const Parsed r1 =
        parse("Let me add.\n</think>\n\nThe answer is 4.", step, true, ToolCallFormat::kNone);
    EXPECT_EQ(r1.reasoning, "Let me add.\n") << step;
    EXPECT_EQ(r1.content, "\n\nThe answer is 4.") << step;
  }
  const Parsed opened = parse("<think>hmm</think>ok", 1, true, ToolCallFormat::kNone);
  EXPECT_EQ(opened.reasoning, "hmm");
  EXPECT_EQ(opened.content, "ok");
  const Parsed unclosed = parse("still thinking </thi", 1, true, ToolCallFormat::kNone);
  EXPECT_EQ(unclosed.reasoning, "still thinking </thi");
  EXPECT_EQ(unclosed.content, "");
  // Reasoning, then a tool call in the content.
  const Parsed both = parse("plan</think>" + kDeepSeekTwoCalls, 1, true, ToolCallFormat::kDeepSeek);
  EXPECT_EQ(both.reasoning, "plan");
  EXPECT_EQ(both.content, "Let me check.");
  EXPECT_EQ(both.calls.size(), 2u);
  // Off: everything is content.
  EXPECT_EQ(parse("a</think>b", 1, false, ToolCallFormat::kNone).content, "a</think>b");
}

// vLLM's llama3_json parser's cases: JSON calls with "parameters" (or "arguments"), with
// or without <|python_tag|>, several separated by ";"; anything else is content.
TEST(ChatOutputParser, Llama3JsonToolCalls) {
  for (size_t step : {0, 1, 5}) {
    const Parsed one = parse(R"({"name": "get_weather", "parameters": {"city": "Paris"}})", step,
                             false, ToolCallFormat::kLlama3Json);
    ASSERT_EQ(one.calls.size(), 1u) << step;
    EXPECT_EQ(one.calls[0].name, "get_weather");
    EXPECT_EQ(one.calls[0].arguments, R"({"city":"Paris"})");
    EXPECT_EQ(one.content, "");
    const Parsed tagged = parse(
        "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", "
        "\"arguments\": {\"x\": [1, \"}\"]}}",
        step, false, ToolCallFormat::kLlama3Json);
    ASSERT_EQ(tagged.calls.size(), 2u) << step;
    EXPECT_EQ(tagged.calls[0].name, "a");
    EXPECT_EQ(tagged.calls[0].arguments, "{}");
    EXPECT_EQ(tagged.calls[1].name, "b");
    EXPECT_EQ(tagged.calls[1].arguments, R"({"x":[1,"}"]})");
    EXPECT_EQ(tagged.calls[0].id, "call_0");
    EXPECT_EQ(parse("The weather is fine.", step, false, ToolCallFormat::kLlama3Json).content,
              "The weather is fine.");
    const std::string not_a_call = R"({"answer": 42})";
    const Parsed plain = parse(not_a_call, step, false, ToolCallFormat::kLlama3Json);
    EXPECT_TRUE(plain.calls.empty());
    EXPECT_EQ(plain.content, not_a_call);
    const std::string cut = R"({"name": "a", "parameters": {"x": 1)";
    EXPECT_EQ(parse(cut, step, false, ToolCallFormat::kLlama3Json).content, cut);
  }
  const Parsed first_only =
      parse(R"({"name": "a", "parameters": {}}; {"name": "b", "parameters": {}})", 0, false,
            ToolCallFormat::kLlama3Json, /*parallel=*/false);
  ASSERT_EQ(first_only.calls.size(), 1u);
  EXPECT_EQ(first_only.calls[0].name, "a");
}

TEST(ChatOutputParser, FormatsByFamily) {
  EXPECT_EQ(tool_call_format(model::ChatTemplateFamily::kDeepSeekV3), ToolCallFormat::kDeepSeek);
  EXPECT_EQ(tool_call_format(model::ChatTemplateFamily::kDeepSeekR1), ToolCallFormat::kDeepSeek);
  EXPECT_EQ(tool_call_format(model::ChatTemplateFamily::kChatMl), ToolCallFormat::kHermes);
  EXPECT_EQ(tool_call_format(model::ChatTemplateFamily::kLlama31), ToolCallFormat::kLlama3Json);
  EXPECT_EQ(tool_call_format(model::ChatTemplateFamily::kLlama3), ToolCallFormat::kLlama3Json);
  EXPECT_EQ(tool_call_format(model::ChatTemplateFamily::kGeneric), ToolCallFormat::kNone);
  EXPECT_EQ(tool_call_format_name(ToolCallFormat::kDeepSeek), "deepseek");
}

}  // namespace
}  // namespace moeserve::server
