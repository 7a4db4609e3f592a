#include "worker/structured/json_schema.h"

#include <algorithm>
#include <set>
#include <vector>

namespace moeserve::structured {
namespace {

using Schema = nlohmann::ordered_json;

constexpr int32_t kIntegerDigits = 16;
constexpr int32_t kFractionDigits = 16;
constexpr int32_t kExponentDigits = 3;

// Keywords that do not constrain the value.
const std::set<std::string>& annotations() {
  static const std::set<std::string> kAnnotations = {
      "title",    "description", "default",  "examples",  "$schema", "$id",
      "$comment", "deprecated",  "readOnly", "writeOnly", "$defs",   "definitions"};
  return kAnnotations;
}

// Keywords this compiler implements.
const std::set<std::string>& implemented() {
  static const std::set<std::string> kImplemented = {
      "type",     "properties", "required", "additionalProperties",
      "items",    "enum",       "const",    "anyOf",
      "nullable", "allOf",      "$ref"};
  return kImplemented;
}

Status refuse(const std::string& where, const std::string& message) {
  return invalid_argument_error(where + ": " + message);
}

std::string child(const std::string& where, const std::string& key) { return where + "/" + key; }

// A JSON pointer token decoded (~1 is '/', ~0 is '~').
std::string unescape_pointer(const std::string& token) {
  std::string out;
  for (size_t i = 0; i < token.size(); ++i) {
    if (token[i] == '~' && i + 1 < token.size() && (token[i + 1] == '0' || token[i + 1] == '1')) {
      out += token[i + 1] == '0' ? '~' : '/';
      ++i;
    } else {
      out += token[i];
    }
  }
  return out;
}

}  // namespace

JsonSchemaCompiler::JsonSchemaCompiler(GrammarBuilder& builder, JsonGrammarOptions options)
    : b_(builder), options_(options) {}

uint32_t JsonSchemaCompiler::whitespace() {
  if (auto it = named_.find("ws"); it != named_.end()) return it->second;
  ByteSet blank;
  for (char c : {' ', '\t', '\n', '\r'}) blank.add(static_cast<uint8_t>(c));
  uint32_t rule = b_.add_rule({{}});  // no blanks left
  for (int32_t i = 0; i < options_.max_whitespace; ++i) {
    rule = b_.add_rule({{b_.bytes(blank), GrammarBuilder::ref(rule)}, {}});
  }
  named_["ws"] = rule;
  return rule;
}

uint32_t JsonSchemaCompiler::literal_rule(const std::string& text) {
  const std::string key = "lit:" + text;
  if (auto it = named_.find(key); it != named_.end()) return it->second;
  return named_[key] = b_.add_rule({b_.literal(text)});
}

uint32_t JsonSchemaCompiler::digits_up_to(int32_t count) {
  if (auto it = digits_.find(count); it != digits_.end()) return it->second;
  const Element digit = b_.bytes(ByteSet::range('0', '9'));
  uint32_t rule = b_.add_rule({{}});
  for (int32_t i = 0; i < count; ++i) rule = b_.add_rule({{digit, GrammarBuilder::ref(rule)}, {}});
  return digits_[count] = rule;
}

uint32_t JsonSchemaCompiler::string_rule() {
  if (auto it = named_.find("string"); it != named_.end()) return it->second;
  const Element tail = b_.bytes(ByteSet::range(0x80, 0xbf));
  ByteSet plain = ByteSet::range(0x20, 0x7f);
  plain.remove('"').remove('\\');
  ByteSet escaped;
  for (char c : std::string("\"\\/bfnrt")) escaped.add(static_cast<uint8_t>(c));
  ByteSet hex = ByteSet::range('0', '9');
  hex.add_range('a', 'f').add_range('A', 'F');
  const Element h = b_.bytes(hex);
  // One character: printable ASCII but " and \, an escape, or well-formed UTF-8.
  const uint32_t character = b_.add_rule({
      {b_.bytes(plain)},
      concat({b_.literal("\\"), {b_.bytes(escaped)}}),
      concat({b_.literal("\\u"), {h, h, h, h}}),
      {b_.bytes(ByteSet::range(0xc2, 0xdf)), tail},
      {b_.bytes(ByteSet::of(0xe0)), b_.bytes(ByteSet::range(0xa0, 0xbf)), tail},
      {b_.bytes(ByteSet::range(0xe1, 0xec).add_range(0xee, 0xef)), tail, tail},
      {b_.bytes(ByteSet::of(0xed)), b_.bytes(ByteSet::range(0x80, 0x9f)), tail},
      {b_.bytes(ByteSet::of(0xf0)), b_.bytes(ByteSet::range(0x90, 0xbf)), tail, tail},
      {b_.bytes(ByteSet::range(0xf1, 0xf3)), tail, tail, tail},
      {b_.bytes(ByteSet::of(0xf4)), b_.bytes(ByteSet::range(0x80, 0x8f)), tail, tail},
  });
  const uint32_t characters = b_.declare();
  b_.define(characters, {{GrammarBuilder::ref(character), GrammarBuilder::ref(characters)}, {}});
  return named_["string"] = b_.add_rule(
             {concat({b_.literal("\""), {GrammarBuilder::ref(characters)}, b_.literal("\"")})});
}

uint32_t JsonSchemaCompiler::integer_rule() {
  if (auto it = named_.find("integer"); it != named_.end()) return it->second;
  const uint32_t natural = b_.add_rule({b_.literal("0"),
                                        {b_.bytes(ByteSet::range('1', '9')),
                                         GrammarBuilder::ref(digits_up_to(kIntegerDigits - 1))}});
  return named_["integer"] = b_.add_rule({concat({b_.literal("-"), {GrammarBuilder::ref(natural)}}),
                                          {GrammarBuilder::ref(natural)}});
}

uint32_t JsonSchemaCompiler::number_rule() {
  if (auto it = named_.find("number"); it != named_.end()) return it->second;
  const Element digit = b_.bytes(ByteSet::range('0', '9'));
  const uint32_t fraction = b_.add_rule(
      {concat({b_.literal("."), {digit, GrammarBuilder::ref(digits_up_to(kFractionDigits - 1))}}),
       {}});
  const uint32_t sign = b_.add_rule({b_.literal("+"), b_.literal("-"), {}});
  const uint32_t exponent =
      b_.add_rule({{b_.bytes(ByteSet::of('e').add('E')), GrammarBuilder::ref(sign), digit,
                    GrammarBuilder::ref(digits_up_to(kExponentDigits - 1))},
                   {}});
  return named_["number"] =
             b_.add_rule({{GrammarBuilder::ref(integer_rule()), GrammarBuilder::ref(fraction),
                           GrammarBuilder::ref(exponent)}});
}

uint32_t JsonSchemaCompiler::list_rule(const std::string& open, uint32_t item,
                                       const std::string& close) {
  // open ws [item ws ("," ws item ws)*] close
  const uint32_t ws = whitespace();
  const uint32_t rest = b_.declare();
  b_.define(rest, {concat({b_.literal(","),
                           {GrammarBuilder::ref(ws), GrammarBuilder::ref(item),
                            GrammarBuilder::ref(ws), GrammarBuilder::ref(rest)}}),
                   {}});
  const uint32_t items = b_.add_rule(
      {{GrammarBuilder::ref(item), GrammarBuilder::ref(ws), GrammarBuilder::ref(rest)}, {}});
  return b_.add_rule({concat({b_.literal(open),
                              {GrammarBuilder::ref(ws), GrammarBuilder::ref(items)},
                              b_.literal(close)})});
}

uint32_t JsonSchemaCompiler::any_value() {
  if (auto it = named_.find("any"); it != named_.end()) return it->second;
  const uint32_t value = b_.declare();
  named_["any"] = value;
  const uint32_t ws = whitespace();
  const uint32_t member =
      b_.add_rule({concat({{GrammarBuilder::ref(string_rule()), GrammarBuilder::ref(ws)},
                           b_.literal(":"),
                           {GrammarBuilder::ref(ws), GrammarBuilder::ref(value)}})});
  const uint32_t object = list_rule("{", member, "}");
  named_["any_object"] = object;
  const uint32_t array = list_rule("[", value, "]");
  b_.define(value, {{GrammarBuilder::ref(object)},
                    {GrammarBuilder::ref(array)},
                    {GrammarBuilder::ref(string_rule())},
                    {GrammarBuilder::ref(number_rule())},
                    b_.literal("true"),
                    b_.literal("false"),
                    b_.literal("null")});
  return value;
}

uint32_t JsonSchemaCompiler::any_object() {
  any_value();
  return named_["any_object"];
}

StatusOr<uint32_t> JsonSchemaCompiler::add(const Schema& schema) {
  document_ = &schema;
  refs_.clear();
  return compile(schema, "#");
}

StatusOr<uint32_t> JsonSchemaCompiler::compile_ref(const std::string& ref,
                                                   const std::string& where) {
  if (auto it = refs_.find(ref); it != refs_.end()) return it->second;
  if (ref.empty() || ref[0] != '#') {
    return refuse(where, "$ref '" + ref +
                             "' is not a local reference (only '#...' pointers are "
                             "supported)");
  }
  const Schema* target = document_;
  std::string pointer = ref.substr(1);
  std::string resolved = "#";
  while (!pointer.empty()) {
    if (pointer[0] != '/') return refuse(where, "$ref '" + ref + "' is not a JSON pointer");
    const size_t next = pointer.find('/', 1);
    const std::string token = unescape_pointer(pointer.substr(1, next - 1));
    pointer = next == std::string::npos ? "" : pointer.substr(next);
    if (target->is_object() && target->contains(token)) {
      target = &(*target)[token];
    } else if (target->is_array() && !token.empty() &&
               std::all_of(token.begin(), token.end(), ::isdigit) &&
               std::stoul(token) < target->size()) {
      target = &(*target)[std::stoul(token)];
    } else {
      return refuse(where, "$ref '" + ref + "' points at nothing");
    }
    resolved += "/" + token;
  }
  const uint32_t rule = b_.declare();
  refs_[ref] = rule;
  StatusOr<uint32_t> body = compile(*target, resolved);
  if (!body.ok()) return body.status();
  b_.define(rule, {{GrammarBuilder::ref(*body)}});
  return rule;
}

StatusOr<uint32_t> JsonSchemaCompiler::compile(const Schema& schema, const std::string& where) {
  if (schema.is_boolean()) {
    if (schema.get<bool>()) return any_value();
    return refuse(where, "the schema false allows no value");
  }
  if (!schema.is_object()) return refuse(where, "a schema must be an object or a boolean");
  std::vector<std::string> constraints;  // the keywords that constrain, in schema order
  for (const auto& [key, value] : schema.items()) {
    if (annotations().count(key) > 0) continue;
    if (implemented().count(key) == 0) {
      return refuse(where, "'" + key + "' is not supported");
    }
    constraints.push_back(key);
  }
  auto only = [&](const std::string& keyword) -> Status {
    for (const std::string& k : constraints) {
      if (k != keyword) {
        return refuse(where, "'" + keyword + "' next to '" + k + "' is not supported");
      }
    }
    return ok_status();
  };
  if (schema.contains("$ref")) {
    MOESERVE_RETURN_IF_ERROR(only("$ref"));
    if (!schema["$ref"].is_string()) return refuse(child(where, "$ref"), "must be a string");
    return compile_ref(schema["$ref"].get<std::string>(), where);
  }
  if (schema.contains("allOf")) {
    MOESERVE_RETURN_IF_ERROR(only("allOf"));
    const Schema& all = schema["allOf"];
    if (!all.is_array() || all.size() != 1) {
      return refuse(child(where, "allOf"), "only allOf with exactly one schema is supported");
    }
    return compile(all[0], child(where, "allOf") + "/0");
  }
  if (schema.contains("anyOf")) {
    MOESERVE_RETURN_IF_ERROR(only("anyOf"));
    const Schema& any = schema["anyOf"];
    if (!any.is_array() || any.empty()) {
      return refuse(child(where, "anyOf"), "must be a non-empty array of schemas");
    }
    std::vector<Sequence> alternatives;
    for (size_t i = 0; i < any.size(); ++i) {
      StatusOr<uint32_t> rule = compile(any[i], child(where, "anyOf") + "/" + std::to_string(i));
      if (!rule.ok()) return rule.status();
      alternatives.push_back({GrammarBuilder::ref(*rule)});
    }
    return b_.add_rule(std::move(alternatives));
  }
  const bool nullable = schema.contains("nullable") && schema["nullable"].is_boolean() &&
                        schema["nullable"].get<bool>();
  if (schema.contains("nullable") && !schema["nullable"].is_boolean()) {
    return refuse(child(where, "nullable"), "must be a boolean");
  }
  if (schema.contains("const") || schema.contains("enum")) {
    std::vector<Sequence> alternatives;
    if (schema.contains("const")) {
      alternatives.push_back({GrammarBuilder::ref(literal_rule(schema["const"].dump()))});
    } else {
      const Schema& values = schema["enum"];
      if (!values.is_array() || values.empty()) {
        return refuse(child(where, "enum"), "must be a non-empty array");
      }
      for (const Schema& v : values) {
        alternatives.push_back({GrammarBuilder::ref(literal_rule(v.dump()))});
      }
    }
    if (nullable) alternatives.push_back(b_.literal("null"));
    return b_.add_rule(std::move(alternatives));
  }

  std::vector<std::string> types;
  if (schema.contains("type")) {
    const Schema& type = schema["type"];
    if (type.is_string()) {
      types.push_back(type.get<std::string>());
    } else if (type.is_array() && !type.empty()) {
      for (const Schema& t : type) {
        if (!t.is_string()) return refuse(child(where, "type"), "must list type names");
        types.push_back(t.get<std::string>());
      }
    } else {
      return refuse(child(where, "type"), "must be a type name or a non-empty list of them");
    }
  } else if (schema.contains("properties") || schema.contains("additionalProperties") ||
             schema.contains("required")) {
    types.push_back("object");
  } else if (schema.contains("items")) {
    types.push_back("array");
  } else {
    return any_value();
  }
  if (nullable && std::find(types.begin(), types.end(), "null") == types.end()) {
    types.push_back("null");
  }
  std::vector<Sequence> alternatives;
  for (const std::string& type : types) {
    StatusOr<uint32_t> rule = compile_typed(schema, type, where);
    if (!rule.ok()) return rule.status();
    alternatives.push_back({GrammarBuilder::ref(*rule)});
  }
  if (alternatives.size() == 1) return alternatives[0][0].index;
  return b_.add_rule(std::move(alternatives));
}

StatusOr<uint32_t> JsonSchemaCompiler::compile_typed(const Schema& schema, const std::string& type,
                                                     const std::string& where) {
  if (type == "object") return compile_object(schema, where);
  if (type == "array") return compile_array(schema, where);
  if (type == "string") return string_rule();
  if (type == "number") return number_rule();
  if (type == "integer") return integer_rule();
  if (type == "boolean") return b_.add_rule({b_.literal("true"), b_.literal("false")});
  if (type == "null") return literal_rule("null");
  return refuse(child(where, "type"), "unknown type '" + type + "'");
}

StatusOr<uint32_t> JsonSchemaCompiler::compile_object(const Schema& schema,
                                                      const std::string& where) {
  const Schema empty = Schema::object();
  const Schema& properties = schema.contains("properties") ? schema["properties"] : empty;
  if (!properties.is_object()) return refuse(child(where, "properties"), "must be an object");
  std::set<std::string> required;
  if (schema.contains("required")) {
    const Schema& list = schema["required"];
    if (!list.is_array()) return refuse(child(where, "required"), "must be an array of names");
    for (const Schema& name : list) {
      if (!name.is_string()) return refuse(child(where, "required"), "must be an array of names");
      if (!properties.contains(name.get<std::string>())) {
        return refuse(child(where, "required"),
                      "names '" + name.get<std::string>() + "', which is not in properties");
      }
      required.insert(name.get<std::string>());
    }
  }
  const bool has_additional = schema.contains("additionalProperties");
  const Schema additional = has_additional ? schema["additionalProperties"] : Schema(true);
  const bool closed = additional.is_boolean() && !additional.get<bool>();
  if (options_.strict && !properties.empty()) {
    if (!closed) {
      return refuse(where, "strict mode needs additionalProperties: false on every object");
    }
    for (const auto& [name, _] : properties.items()) {
      if (required.count(name) == 0) {
        return refuse(child(where, "required"),
                      "strict mode needs every property required; '" + name + "' is not");
      }
    }
  }
  const uint32_t ws = whitespace();
  if (properties.empty()) {
    if (closed)
      return b_.add_rule({concat({b_.literal("{"), {GrammarBuilder::ref(ws)}, b_.literal("}")})});
    if (additional.is_boolean()) return any_object();
    StatusOr<uint32_t> value = compile(additional, child(where, "additionalProperties"));
    if (!value.ok()) return value.status();
    const uint32_t member =
        b_.add_rule({concat({{GrammarBuilder::ref(string_rule()), GrammarBuilder::ref(ws)},
                             b_.literal(":"),
                             {GrammarBuilder::ref(ws), GrammarBuilder::ref(*value)}})});
    return list_rule("{", member, "}");
  }
  if (!additional.is_boolean()) {
    StatusOr<uint32_t> unused = compile(additional, child(where, "additionalProperties"));
    if (!unused.ok()) return unused.status();  // refused keywords are refused wherever they are
  }

  // member_i: "key" ws ":" ws value ws. first_i: members from i on, none written yet;
  // after_i: members from i on, some written (each then starts with ",").
  std::vector<uint32_t> members;
  std::vector<bool> optional;
  for (const auto& [name, property] : properties.items()) {
    StatusOr<uint32_t> value = compile(property, child(child(where, "properties"), name));
    if (!value.ok()) return value.status();
    members.push_back(b_.add_rule({concat(
        {b_.literal(Schema(name).dump()),
         {GrammarBuilder::ref(ws)},
         b_.literal(":"),
         {GrammarBuilder::ref(ws), GrammarBuilder::ref(*value), GrammarBuilder::ref(ws)}})}));
    optional.push_back(required.count(name) == 0);
  }
  uint32_t first = b_.add_rule({{}});
  uint32_t after = b_.add_rule({{}});
  for (size_t i = members.size(); i-- > 0;) {
    const Element member = GrammarBuilder::ref(members[i]);
    std::vector<Sequence> first_alts = {{member, GrammarBuilder::ref(after)}};
    std::vector<Sequence> after_alts = {
        concat({b_.literal(","), {GrammarBuilder::ref(ws), member, GrammarBuilder::ref(after)}})};
    if (optional[i]) {
      first_alts.push_back({GrammarBuilder::ref(first)});
      after_alts.push_back({GrammarBuilder::ref(after)});
    }
    first = b_.add_rule(std::move(first_alts));
    after = b_.add_rule(std::move(after_alts));
  }
  return b_.add_rule({concat(
      {b_.literal("{"), {GrammarBuilder::ref(ws), GrammarBuilder::ref(first)}, b_.literal("}")})});
}

StatusOr<uint32_t> JsonSchemaCompiler::compile_array(const Schema& schema,
                                                     const std::string& where) {
  uint32_t item = 0;
  if (schema.contains("items")) {
    StatusOr<uint32_t> rule = compile(schema["items"], child(where, "items"));
    if (!rule.ok()) return rule.status();
    item = *rule;
  } else {
    item = any_value();
  }
  return list_rule("[", item, "]");
}

StatusOr<Grammar> compile_json_schema(const Schema& schema, const JsonGrammarOptions& options) {
  GrammarBuilder builder;
  JsonSchemaCompiler compiler(builder, options);
  StatusOr<uint32_t> value = compiler.add(schema);
  if (!value.ok()) return value.status();
  const uint32_t ws = compiler.whitespace();
  const uint32_t root = builder.add_rule(
      {{GrammarBuilder::ref(ws), GrammarBuilder::ref(*value), GrammarBuilder::ref(ws)}});
  return std::move(builder).build(root);
}

Grammar json_object_grammar(const JsonGrammarOptions& options) {
  GrammarBuilder builder;
  JsonSchemaCompiler compiler(builder, options);
  const uint32_t object = compiler.any_object();
  const uint32_t ws = compiler.whitespace();
  const uint32_t root = builder.add_rule(
      {{GrammarBuilder::ref(ws), GrammarBuilder::ref(object), GrammarBuilder::ref(ws)}});
  StatusOr<Grammar> grammar = std::move(builder).build(root);
  return std::move(grammar).value();
}

}  // namespace moeserve::structured
