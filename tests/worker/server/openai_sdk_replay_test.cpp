// The official OpenAI Node SDK reads the tool-call deltas and messages this server
// builds (ChatOutputParser + stream_chunk / chat_response) from a constructed DeepSeek
// model output, the way the server streams them: the SDK's stream helper accumulates the
// same tool calls the non-streaming message carries. Skips when node or the SDK
// (.tools/npm, installed by scripts/install-deps.sh) is absent.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "tests/support/test_util.h"
#include "worker/server/chat_output.h"
#include "worker/server/openai_protocol.h"

namespace moeserve::server {
namespace {

using nlohmann::json;

TEST(OpenAiSdkReplay, ToolCallDeltasAccumulateInTheNodeSdk) {
  const std::string npm = moeserve::testing::source_dir() + "/.tools/npm";
  if (std::system("command -v node >/dev/null 2>&1") != 0 ||
      !std::filesystem::exists(npm + "/node_modules/openai/package.json")) {
    GTEST_SKIP() << "node or the openai npm package (.tools/npm) is missing: run "
                    "scripts/install-deps.sh";
  }
  const std::string output =
      "Checking both.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
      "get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n"
      "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Oslo\"}\n```"
      "<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  int ids = 0;
  ChatOutputParser parser(false, ToolCallFormat::kDeepSeek, true,
                          [&ids] { return "call_" + std::to_string(ids++); });
  const ResponseMeta meta{"chatcmpl-replay", 1, "tiny"};
  ChoiceOutput role;
  std::string sse = sse_event(stream_chunk(Endpoint::kChat, meta, role, true, false, false));
  // Three bytes per "token", one chunk per token, as the server streams.
  for (size_t i = 0; i <= output.size(); i += 3) {
    ChoiceOutput delta = i < output.size() ? parser.push(output.substr(i, 3)) : parser.finish();
    if (i >= output.size()) delta.finish_reason = "tool_calls";
    sse += sse_event(stream_chunk(Endpoint::kChat, meta, delta, false, false, false));
  }
  sse += kSseDone;
  ChoiceOutput whole;
  whole.text = parser.content();
  whole.tool_calls = parser.tool_calls();
  whole.finish_reason = "tool_calls";
  moeserve::testing::TempDir dir;
  moeserve::testing::write_file(dir.file("stream.sse"), sse);
  moeserve::testing::write_file(dir.file("whole.json"),
                                dump_json(chat_response(meta, {whole}, {}, false)));
  const std::string command = "node " + moeserve::testing::source_dir() +
                              "/tests/e2e/openai_sdk_client.cjs " + npm + " replay " +
                              dir.file("stream.sse") + " " + dir.file("whole.json") + " > " +
                              dir.file("sdk.json");
  ASSERT_EQ(moeserve::testing::run_command(command), 0) << command;
  const json sdk = json::parse(moeserve::testing::read_file(dir.file("sdk.json")));
  const json expected_calls = json::parse(R"([
      {"id":"call_0","type":"function","name":"get_weather","arguments":"{\"city\": \"Paris\"}"},
      {"id":"call_1","type":"function","name":"get_weather","arguments":"{\"city\": \"Oslo\"}"}])");
  for (const char* view : {"whole", "streamed"}) {
    EXPECT_EQ(sdk[view]["tool_calls"], expected_calls) << view << ": " << sdk.dump();
    EXPECT_EQ(sdk[view]["content"], "Checking both.") << view;
    EXPECT_EQ(sdk[view]["finish_reason"], "tool_calls") << view;
  }
  EXPECT_GT(sdk["tool_call_deltas"].get<int>(), 4);  // arguments arrived in pieces
}

}  // namespace
}  // namespace moeserve::server
