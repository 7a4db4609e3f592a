#include "worker/server/tool_call_grammar.h"

#include <vector>

namespace moeserve::server {
namespace {

using structured::concat;
using structured::GrammarBuilder;
using structured::Sequence;

// The literal pieces around NAME and ARGS, and between calls, per format.
struct CallShape {
  std::string before_calls, before_name, after_name, after_args, separator, after_calls;
};

CallShape shape(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::kDeepSeek:
      return {"<｜tool▁calls▁begin｜>",
              "<｜tool▁call▁begin｜>function<｜tool▁sep｜>",
              "\n```json\n",
              "\n```<｜tool▁call▁end｜>",
              "\n",
              "<｜tool▁calls▁end｜>"};
    case ToolCallFormat::kHermes:
      return {"", "<tool_call>\n{\"name\": \"", "\", \"arguments\": ", "}\n</tool_call>", "\n", ""};
    case ToolCallFormat::kLlama3Json:
      return {"", "{\"name\": \"", "\", \"parameters\": ", "}", "; ", ""};
    case ToolCallFormat::kNone: break;
  }
  return {};
}

}  // namespace

StatusOr<structured::Grammar> tool_call_grammar(ToolCallFormat format,
                                                const nlohmann::ordered_json& tools,
                                                const std::string& function, bool parallel,
                                                const structured::JsonGrammarOptions& options) {
  if (format == ToolCallFormat::kNone) {
    return invalid_argument_error("this model's chat template has no tool-call format");
  }
  const CallShape s = shape(format);
  GrammarBuilder b;
  std::vector<Sequence> calls;
  for (const auto& tool : tools) {
    const std::string name = tool["function"]["name"].get<std::string>();
    if (!function.empty() && name != function) continue;
    const nlohmann::ordered_json& f = tool["function"];
    const nlohmann::ordered_json parameters =
        f.contains("parameters") && !f["parameters"].is_null()
            ? f["parameters"]
            : nlohmann::ordered_json{{"type", "object"}, {"additionalProperties", false}};
    structured::JsonGrammarOptions tool_options = options;
    tool_options.strict =
        f.contains("strict") && f["strict"].is_boolean() && f["strict"].get<bool>();
    structured::JsonSchemaCompiler compiler(b, tool_options);
    StatusOr<uint32_t> args = compiler.add(parameters);
    if (!args.ok()) {
      return invalid_argument_error("tool '" + name + "' parameters: " + args.status().message());
    }
    // In the JSON formats the name is a JSON string's content: function names need no
    // escapes (a-z, A-Z, 0-9, _ and -).
    calls.push_back(concat({b.literal(s.before_name),
                            b.literal(name),
                            b.literal(s.after_name),
                            {GrammarBuilder::ref(*args)},
                            b.literal(s.after_args)}));
  }
  if (calls.empty()) return invalid_argument_error("no tool named '" + function + "'");
  const uint32_t call = b.add_rule(std::move(calls));
  uint32_t more = b.add_rule({{}});
  if (parallel) {
    more = b.declare();
    std::vector<Sequence> alternatives = {
        concat({b.literal(s.separator), {GrammarBuilder::ref(call), GrammarBuilder::ref(more)}})};
    // DeepSeek's calls may also follow each other without the newline.
    if (format == ToolCallFormat::kDeepSeek) {
      alternatives.push_back({GrammarBuilder::ref(call), GrammarBuilder::ref(more)});
    }
    alternatives.push_back({});
    b.define(more, std::move(alternatives));
  }
  const uint32_t root = b.add_rule({concat({b.literal(s.before_calls),
                                            {GrammarBuilder::ref(call), GrammarBuilder::ref(more)},
                                            b.literal(s.after_calls)})});
  return std::move(b).build(root);
}

}  // namespace moeserve::server
