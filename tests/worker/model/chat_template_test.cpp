#include "worker/model/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace moeserve::model {
namespace {

using nlohmann::json;

// DeepSeek-V3's chat_template from its tokenizer_config.json (after JSON unescaping).
constexpr const char* kDeepSeekV3Template = R"({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %})";

// The tail of DeepSeek-R1's template, where it differs from V3's (r1_template() puts
// V3's head in front).
constexpr const char* kDeepSeekR1Tail =
    R"({{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if message['role'] == 'user' %}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor -%}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\n'}}{% endif %})";

constexpr const char* kChatMlTemplate =
    R"({% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %})";

// Qwen2.5's shape: the tools branch and the default system prompt branch.
constexpr const char* kQwenTemplate =
    R"({%- if tools %}{{- '<|im_start|>system\n' }}{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}{%- endif %}{%- else %}{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}{%- endif %}{%- endif %}{%- for message in messages %}{%- if message.role != 'system' or not loop.first %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %})";

constexpr const char* kLlama3Template =
    R"({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})";

constexpr const char* kLlama31Template =
    R"({{- bos_token }}{%- if not date_string is defined %}{%- set date_string = "26 Jul 2024" %}{%- endif %}{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}{%- else %}{%- set system_message = "" %}{%- endif %}{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}{{- "Cutting Knowledge Date: December 2023\n" }}{{- "Today Date: " + date_string + "\n\n" }}{{- system_message }}{{- "<|eot_id|>" }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %})";

std::string r1_template() {
  const std::string v3 = kDeepSeekV3Template;
  return v3.substr(0, v3.find("{{ bos_token }}")) + kDeepSeekR1Tail;
}

json deepseek_config() {
  return {{"add_bos_token", true},
          {"bos_token",
           {{"__type", "AddedToken"},
            {"content", "<｜begin▁of▁sentence｜>"},
            {"lstrip", false},
            {"normalized", true},
            {"rstrip", false},
            {"single_word", false}}},
          {"eos_token", "<｜end▁of▁sentence｜>"},
          {"chat_template", kDeepSeekV3Template}};
}

ChatTemplate make(const std::string& tmpl, const std::string& bos = "",
                  const std::string& eos = "") {
  auto t = ChatTemplate::from_template(tmpl, bos, eos);
  EXPECT_TRUE(t.ok()) << t.status().to_string();
  return *t;
}

std::string render(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool gen) {
  auto out = t.render(messages, gen);
  EXPECT_TRUE(out.ok()) << out.status().to_string();
  return out.value_or("");
}

const std::vector<ChatMessage> kConversation = {
    {"system", "You are helpful."},
    {"user", "Hi"},
    {"assistant", "Hello!"},
    {"user", "Bye"},
};

TEST(ChatTemplateTest, DeepSeekV3FromTokenizerConfig) {
  auto t = ChatTemplate::from_tokenizer_config(deepseek_config());
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->family_name(), "deepseek-v3");
  EXPECT_EQ(t->bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(t->eos_token(), "<｜end▁of▁sentence｜>");
  EXPECT_EQ(t->end_of_turn(), "<｜end▁of▁sentence｜>");
  EXPECT_EQ(render(*t, kConversation, true),
            "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜>Hello!"
            "<｜end▁of▁sentence｜><｜User｜>Bye<｜Assistant｜>");
  EXPECT_EQ(render(*t, {{"user", "Hi"}}, false), "<｜begin▁of▁sentence｜><｜User｜>Hi");
  // Every system message goes first, joined by a blank line.
  EXPECT_EQ(render(*t, {{"system", "A"}, {"user", "q"}, {"system", "B"}}, true),
            "<｜begin▁of▁sentence｜>A\n\nB<｜User｜>q<｜Assistant｜>");
}

TEST(ChatTemplateTest, DeepSeekR1OpensThinkingAndDropsOldReasoning) {
  const ChatTemplate t = make(r1_template(), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(t.family_name(), "deepseek-r1");
  EXPECT_EQ(
      render(t, {{"user", "2+2?"}, {"assistant", "<think>add</think>4"}, {"user", "3+3?"}}, true),
      "<｜begin▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜>4<｜end▁of▁sentence｜>"
      "<｜User｜>3+3?<｜Assistant｜><think>\n");
}

TEST(ChatTemplateTest, ChatMl) {
  const ChatTemplate t = make(kChatMlTemplate);
  EXPECT_EQ(t.family_name(), "chatml");
  EXPECT_EQ(t.end_of_turn(), "<|im_end|>");
  EXPECT_EQ(render(t, kConversation, true),
            "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(render(t, {{"user", "Hi"}}, false), "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplateTest, ChatMlDefaultSystemPromptOnlyWithoutSystemMessage) {
  const ChatTemplate t = make(kQwenTemplate);
  EXPECT_EQ(render(t, {{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render(t, {{"system", "S"}, {"user", "Hi"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplateTest, Llama3TrimsContentAndPutsBosFirst) {
  const ChatTemplate t = make(kLlama3Template, "<|begin_of_text|>");
  EXPECT_EQ(t.family_name(), "llama-3");
  EXPECT_EQ(render(t, {{"system", " S\n"}, {"user", "\tHi  "}}, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateTest, Llama31AddsDateSystemTurn) {
  const ChatTemplate t = make(kLlama31Template, "<|begin_of_text|>");
  EXPECT_EQ(t.family_name(), "llama-3.1");
  EXPECT_EQ(render(t, {{"system", "Be brief."}, {"user", "Hi"}}, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render(t, {{"user", "Hi"}}, false),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatTemplateTest, AnyJinjaTemplateRendersAndUnknownOnesAreGeneric) {
  const ChatTemplate t = make(
      "{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}"
      "{% if add_generation_prompt %}>{% endif %}",
      "", "</s>");
  EXPECT_EQ(t.family_name(), "generic");
  EXPECT_TRUE(t.is_jinja());
  EXPECT_EQ(t.end_of_turn(), "</s>");
  EXPECT_EQ(render(t, {{"user", "x"}, {"tool", "42"}}, true), "[user:x][tool:42]>");
  EXPECT_EQ(render(t, {{"user", "x"}}, false), "[user:x]");
}

TEST(ChatTemplateTest, ToolsAndToolCallsReachTheTemplate) {
  auto t = ChatTemplate::from_tokenizer_config(deepseek_config());
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  ChatMessage call{"assistant", std::nullopt};
  call.tool_calls.push_back({"call_1", "get_weather", R"({"city": "Paris"})"});
  ChatMessage result{"tool", "21C"};
  result.tool_call_id = "call_1";
  EXPECT_EQ(render(*t, {{"user", "Weather?"}, call, result}, true),
            "<｜begin▁of▁sentence｜><｜User｜>Weather?<｜Assistant｜><｜tool▁calls▁begin｜>"
            "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": "
            "\"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>21C"
            "<｜tool▁output▁end｜><｜tool▁outputs▁end｜>");

  const ChatTemplate listing = make(
      "{% for tool in tools or [] %}{{ tool.function.name }};{% endfor %}{{ tools is none }}"
      "{{ enable_thinking | default('unset') }}");
  ChatRenderOptions options;
  options.tools = nlohmann::ordered_json::parse(
      R"([{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}])");
  options.template_kwargs = {{"enable_thinking", false}};
  EXPECT_EQ(*listing.render({{"user", "x"}}, options), "a;b;FalseFalse");
  EXPECT_EQ(*listing.render({{"user", "x"}}, ChatRenderOptions{}), "Trueunset");
  options.template_kwargs = {{"messages", 1}};
  EXPECT_NE(listing.render({{"user", "x"}}, options)
                .status()
                .message()
                .find("chat_template_kwargs.messages"),
            std::string::npos);
}

TEST(ChatTemplateTest, TemplateErrorsNameTheLine) {
  const auto bad = ChatTemplate::from_template("line one\n{% if x %}\n{% endfor %}", "", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 3"), std::string::npos) << bad.status().to_string();

  const ChatTemplate raises = make(
      "ok\n\n{% if messages[0].role != 'system' %}{{ raise_exception('system first!') }}"
      "{% endif %}");
  const auto raised = raises.render({{"user", "x"}}, true);
  ASSERT_FALSE(raised.ok());
  EXPECT_EQ(raised.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(raised.status().message().find("line 3: raise_exception: system first!"),
            std::string::npos)
      << raised.status().to_string();
}

TEST(ChatTemplateTest, WithoutATemplateTheEosTokenPicksABuiltInFamily) {
  json config = deepseek_config();
  config.erase("chat_template");
  auto fallback = ChatTemplate::from_tokenizer_config(config);
  ASSERT_TRUE(fallback.ok()) << fallback.status().to_string();
  EXPECT_FALSE(fallback->is_jinja());
  EXPECT_EQ(fallback->family_name(), "deepseek-v3");
  // The same text the checkpoint's template gives for plain turns.
  const ChatTemplate real = make(kDeepSeekV3Template, "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(render(*fallback, kConversation, true), render(real, kConversation, true));
  const auto tool = fallback->render({{"user", "x"}, {"tool", "42"}}, true);
  ASSERT_FALSE(tool.ok());
  EXPECT_NE(tool.status().message().find("messages[1].role: 'tool'"), std::string::npos);

  config["eos_token"] = "<|im_end|>";
  EXPECT_EQ(ChatTemplate::from_tokenizer_config(config)->family_name(), "chatml");
  config["eos_token"] = "<|eot_id|>";
  config["bos_token"] = "<|begin_of_text|>";
  auto llama = ChatTemplate::from_tokenizer_config(config);
  EXPECT_EQ(render(*llama, {{"system", "Be brief."}, {"user", "Hi"}}, true),
            render(make(kLlama31Template, "<|begin_of_text|>"),
                   {{"system", "Be brief."}, {"user", "Hi"}}, true));

  config["eos_token"] = "</s>";
  const auto none = ChatTemplate::from_tokenizer_config(config);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("deepseek-v3, chatml, llama-3.1"), std::string::npos);

  config = deepseek_config();
  config["bos_token"] = 7;
  EXPECT_NE(ChatTemplate::from_tokenizer_config(config).status().message().find("bos_token"),
            std::string::npos);
}

TEST(ChatTemplateTest, NamedTemplateListAndSpecialTokenForms) {
  json config = deepseek_config();
  config["chat_template"] = json::array({{{"name", "tool_use"}, {"template", kChatMlTemplate}},
                                         {{"name", "default"}, {"template", kDeepSeekV3Template}}});
  auto t = ChatTemplate::from_tokenizer_config(config);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->family_name(), "deepseek-v3");

  EXPECT_EQ(read_special_token(config, "eos_token")->value_or(""), "<｜end▁of▁sentence｜>");
  EXPECT_FALSE(read_special_token(config, "pad_token")->has_value());
}

TEST(ChatTemplateTest, LoadFallsBackToChatTemplateJinja) {
  const std::filesystem::path dir =
      std::filesystem::path(testing::TempDir()) / "chat_template_test_model";
  std::filesystem::create_directories(dir);
  json config = deepseek_config();
  config.erase("chat_template");
  std::ofstream(dir / "tokenizer_config.json") << config.dump();
  std::ofstream(dir / "chat_template.jinja") << kChatMlTemplate;
  auto t = ChatTemplate::load((dir / "tokenizer_config.json").string());
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->family_name(), "chatml");
  EXPECT_EQ(t->bos_token(), "<｜begin▁of▁sentence｜>");

  const auto missing = ChatTemplate::load((dir / "nope.json").string());
  EXPECT_NE(missing.status().message().find("nope.json"), std::string::npos);
}

}  // namespace
}  // namespace moeserve::model
