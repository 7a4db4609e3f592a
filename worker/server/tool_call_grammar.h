// The grammar of a forced tool call (tool_choice "required" or a named function): the
// output must be one tool call (several when parallel_tool_calls) in the model family's
// format, whose arguments are valid under the tool's `parameters` JSON schema (a tool
// without parameters takes {}; the tool's strict flag selects strict mode). So
// ChatOutputParser (chat_output.h) always finds the calls:
//   deepseek  <｜tool▁calls▁begin｜>CALL(\n?CALL)*<｜tool▁calls▁end｜> with CALL =
//             <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
//   hermes    <tool_call>\n{"name": "NAME", "arguments": ARGS}\n</tool_call>, calls
//             separated by \n
//   llama3    {"name": "NAME", "parameters": ARGS}, calls separated by "; "
// Pure; errors (invalid_argument) name the tool and the schema keyword.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "worker/server/chat_output.h"
#include "worker/structured/grammar.h"
#include "worker/structured/json_schema.h"

namespace moeserve::server {

// `tools`: the request's tools array; `function`: the one tool allowed ("" any of them).
StatusOr<structured::Grammar> tool_call_grammar(ToolCallFormat format,
                                                const nlohmann::ordered_json& tools,
                                                const std::string& function, bool parallel,
                                                const structured::JsonGrammarOptions& options);

}  // namespace moeserve::server
