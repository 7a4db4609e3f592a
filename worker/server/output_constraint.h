// OutputConstraints: the token constraint (structured/token_constraint.h) a generation
// request runs under, built from what it asks for: response_format json_object or
// json_schema, guided_json, or a forced tool call (tool_choice "required" or a named
// function, in the template family's tool-call format: tool_call_grammar.h). Compiled
// constraints are kept (least recently used first out, `capacity` of them) by what
// defines them, so repeated schemas reuse their grammar and their cached token masks.
//
// Refusals are 400s naming the field: a schema keyword that is not supported or a schema
// that is invalid (response_format.json_schema.schema or guided_json), a forced tool call
// on a template family without a tool-call format (tool_choice), and constraints next to
// what cannot hold with them: ignore_eos, min_tokens, reasoning output.
// Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "worker/model/tokenizer.h"
#include "worker/server/chat_output.h"
#include "worker/server/openai_protocol.h"
#include "worker/structured/token_constraint.h"

namespace moeserve::server {

// The vocabulary constrained decoding masks: every token's bytes, special tokens left
// out (their text is not part of the output).
std::shared_ptr<const structured::TokenVocabulary> constraint_vocabulary(
    const model::Tokenizer& tokenizer);

class OutputConstraints {
 public:
  explicit OutputConstraints(std::shared_ptr<const structured::TokenVocabulary> vocabulary,
                             int32_t capacity = 64);

  // The request's constraint into *out (null when it has none), or the 400. `tools` is the
  // family's tool-call format; `reasoning` whether its output is split at </think>.
  std::optional<ApiError> build(const ParsedRequest& parsed, ToolCallFormat tools, bool reasoning,
                                std::shared_ptr<structured::TokenConstraint>* out);

 private:
  std::shared_ptr<const structured::TokenVocabulary> vocabulary_;
  const int32_t capacity_;
  std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<structured::TokenConstraint>>> cache_;
};

}  // namespace moeserve::server
