// JSON schemas compiled to byte grammars (grammar.h): the sentences of the grammar are
// JSON texts that validate against the schema. What structured outputs constrain
// generation with (response_format json_schema / json_object, tool arguments).
//
// Supported keywords: type (object, array, string, number, integer, boolean, null, or a
// list of them), properties, required, additionalProperties (false; true or absent; a
// schema), items, enum, const, anyOf, nullable (OpenAPI's), allOf with one schema, and
// $ref to a local JSON pointer ("#", "#/$defs/Name", "#/definitions/Name", ...; recursion
// allowed), with $defs / definitions as containers. Annotations are ignored: title,
// description, default, examples, $schema, $id, $comment, deprecated, readOnly,
// writeOnly. Every other keyword (minLength, maxLength, pattern, format, minimum,
// maximum, multipleOf, minItems, maxItems, uniqueItems, oneOf, not, if/then/else,
// prefixItems, patternProperties, ...) is refused with an invalid_argument error that
// names the keyword and where it is ("#/properties/age: 'minimum' is not supported"),
// never ignored; so are anyOf or $ref next to other constraints.
//
// What the grammar generates (every sentence validates; not every valid document is a
// sentence):
// - object properties in the order the schema lists them; required ones always,
//   optional ones may be left out. Properties that are not listed are never generated
//   (when additionalProperties allows them they are simply not used), except for an
//   object schema with no properties: additionalProperties given as a schema makes it a
//   map of string keys to that schema, absent or true any JSON object;
// - integers without fraction or exponent, at most 16 digits; numbers with at most 16
//   digits before and after the point and 3 in the exponent;
// - strings of valid UTF-8 with JSON's escapes, of any length;
// - at most JsonGrammarOptions::max_whitespace bytes of whitespace (space, tab, newline,
//   carriage return) wherever JSON allows it, before and after the value included, so a
//   model cannot spend its tokens on blanks.
// strict (OpenAI's strict mode): every object schema with properties must list all of
// them in required and set additionalProperties false, else invalid_argument.
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "worker/structured/grammar.h"

namespace moeserve::structured {

struct JsonGrammarOptions {
  int32_t max_whitespace = 4;  // bytes of whitespace per place JSON allows it
  bool strict = false;
};

// A grammar for one JSON value valid under `schema` (with blanks around it).
StatusOr<Grammar> compile_json_schema(const nlohmann::ordered_json& schema,
                                      const JsonGrammarOptions& options = {});
// A grammar for any JSON object (response_format json_object).
Grammar json_object_grammar(const JsonGrammarOptions& options = {});

// Adds schemas' rules to a GrammarBuilder, for grammars that embed JSON values (tool
// calls). One compiler per builder; the rules it made are shared by later add() calls.
class JsonSchemaCompiler {
 public:
  JsonSchemaCompiler(GrammarBuilder& builder, JsonGrammarOptions options);

  // The rule that matches one value valid under `schema` (no surrounding blanks); $ref
  // pointers resolve inside `schema` itself.
  StatusOr<uint32_t> add(const nlohmann::ordered_json& schema);
  // Up to max_whitespace blanks.
  uint32_t whitespace();
  // Any JSON value / object.
  uint32_t any_value();
  uint32_t any_object();

 private:
  StatusOr<uint32_t> compile(const nlohmann::ordered_json& schema, const std::string& where);
  StatusOr<uint32_t> compile_typed(const nlohmann::ordered_json& schema, const std::string& type,
                                   const std::string& where);
  StatusOr<uint32_t> compile_object(const nlohmann::ordered_json& schema, const std::string& where);
  StatusOr<uint32_t> compile_array(const nlohmann::ordered_json& schema, const std::string& where);
  StatusOr<uint32_t> compile_ref(const std::string& ref, const std::string& where);
  uint32_t literal_rule(const std::string& text);
  uint32_t string_rule();
  uint32_t number_rule();
  uint32_t integer_rule();
  uint32_t digits_up_to(int32_t count);
  // value (ws "," ws value)* between open and close; `value` already ends in nothing.
  uint32_t list_rule(const std::string& open, uint32_t item, const std::string& close);

  GrammarBuilder& b_;
  JsonGrammarOptions options_;
  const nlohmann::ordered_json* document_ = nullptr;  // the schema add() compiles
  std::map<std::string, uint32_t> refs_;              // JSON pointer -> rule
  std::map<std::string, uint32_t> named_;             // shared primitive rules
  std::map<int32_t, uint32_t> digits_;
};

}  // namespace moeserve::structured
