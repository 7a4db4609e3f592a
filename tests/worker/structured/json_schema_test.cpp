// The JSON-schema compiler: which byte strings its grammars accept, which schemas it
// refuses, and (a property test) that random sentences of each grammar validate under
// Python's jsonschema.
#include "worker/structured/json_schema.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/support/json_schema_validator.h"

namespace moeserve::structured {
namespace {

using Schema = nlohmann::ordered_json;

Grammar compile(const char* schema, JsonGrammarOptions options = {}) {
  StatusOr<Grammar> g = compile_json_schema(Schema::parse(schema), options);
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  return std::move(g).value();
}

std::string refusal(const char* schema, JsonGrammarOptions options = {}) {
  StatusOr<Grammar> g = compile_json_schema(Schema::parse(schema), options);
  EXPECT_FALSE(g.ok()) << schema;
  return g.ok() ? "" : g.status().message();
}

// A random sentence: random bytes among those the grammar accepts, ending with
// probability `end` once the text is a sentence, or as soon as nothing else is allowed.
std::string random_sentence(const Grammar& g, std::mt19937& rng, double end = 0.1,
                            size_t max_bytes = 20000) {
  GrammarState state = g.initial();
  std::string out;
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  while (out.size() < max_bytes) {
    if (state.accepting() && (!state.can_continue() || coin(rng) < end)) return out;
    std::vector<uint8_t> allowed;
    for (int b = 0; b < 256; ++b) {
      if (!g.advance(state, static_cast<uint8_t>(b)).dead())
        allowed.push_back(static_cast<uint8_t>(b));
    }
    if (allowed.empty()) return out;
    // A third of the time a byte that closes a string, object or array when one may
    // come, so that sentences end.
    std::vector<uint8_t> closing;
    for (uint8_t b : allowed) {
      if (b == '"' || b == '}' || b == ']') closing.push_back(b);
    }
    const std::vector<uint8_t>& pool = !closing.empty() && coin(rng) < 0.33 ? closing : allowed;
    const uint8_t byte = pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)];
    out += static_cast<char>(byte);
    state = g.advance(state, byte);
  }
  return out;
}

TEST(JsonSchema, ObjectWithRequiredAndOptionalProperties) {
  const Grammar g = compile(R"({"type":"object","properties":{
      "name":{"type":"string"},"age":{"type":"integer"},"tall":{"type":"boolean"}},
      "required":["name"],"additionalProperties":false})");
  EXPECT_TRUE(g.matches(R"({"name":"Ada"})"));
  EXPECT_TRUE(g.matches(R"({"name": "Ada", "age": 36, "tall": true})"));
  EXPECT_TRUE(g.matches(R"({"name":"Ada","tall":false})"));
  EXPECT_TRUE(g.matches(" {\"name\":\"\\u00e9\\n\"} "));
  EXPECT_FALSE(g.matches(R"({"age":36})"));                // name is required
  EXPECT_FALSE(g.matches(R"({"age":36,"name":"Ada"})"));   // listed order
  EXPECT_FALSE(g.matches(R"({"name":"Ada","age":3.5})"));  // integer
  EXPECT_FALSE(g.matches(R"({"name":"Ada","extra":1})"));  // closed
  EXPECT_FALSE(g.matches(R"({"name":"Ada",})"));
  EXPECT_FALSE(g.matches(R"({"name":"Ada"})"
                         "x"));
  EXPECT_TRUE(g.is_prefix(R"({"name":"Ad)"));
  EXPECT_FALSE(g.matches(R"({"name":"Ad)"));
}

TEST(JsonSchema, StringsAreValidUtf8WithJsonEscapes) {
  const Grammar g = compile(R"({"type":"string"})");
  EXPECT_TRUE(g.matches("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""));
  EXPECT_TRUE(g.matches(R"("a\"b\\c\/d\b\f\n\r\t\u12aF")"));
  EXPECT_FALSE(g.matches("\"\xc3\""));          // a cut character
  EXPECT_FALSE(g.matches("\"\xc0\xaf\""));      // overlong
  EXPECT_FALSE(g.matches("\"\xed\xa0\x80\""));  // a UTF-16 surrogate
  EXPECT_FALSE(g.matches("\"a\nb\""));          // control characters must be escaped
  EXPECT_FALSE(g.matches(R"("\x")"));
  EXPECT_FALSE(g.matches(R"("\u12G4")"));
}

TEST(JsonSchema, NumbersIntegersAndTheirBounds) {
  const Grammar number = compile(R"({"type":"number"})");
  for (const char* ok : {"0", "-0", "12", "-3.25", "1e9", "2.5E-3", "6.02e+23"}) {
    EXPECT_TRUE(number.matches(ok)) << ok;
  }
  for (const char* bad : {"01", "+1", ".5", "1.", "1e", "--1", "0x10", "NaN"}) {
    EXPECT_FALSE(number.matches(bad)) << bad;
  }
  const Grammar integer = compile(R"({"type":"integer"})");
  EXPECT_TRUE(integer.matches("-1234567890123456"));   // 16 digits
  EXPECT_FALSE(integer.matches("12345678901234567"));  // 17
  EXPECT_FALSE(integer.matches("1.0"));
}

TEST(JsonSchema, EnumConstAnyOfAndNullableTypes) {
  const Grammar e = compile(R"({"enum":["red","green",3,null,{"a":[1]}]})");
  for (const char* ok : {R"("red")", R"("green")", "3", "null", R"({"a":[1]})"}) {
    EXPECT_TRUE(e.matches(ok)) << ok;
  }
  EXPECT_FALSE(e.matches(R"("blue")"));
  EXPECT_TRUE(compile(R"({"const":"x"})").matches(R"("x")"));
  const Grammar any = compile(R"({"anyOf":[{"type":"integer"},{"type":"string","enum":["n/a"]}]})");
  EXPECT_TRUE(any.matches("7"));
  EXPECT_TRUE(any.matches(R"("n/a")"));
  EXPECT_FALSE(any.matches(R"("other")"));
  const Grammar nullable = compile(R"({"type":["string","null"]})");
  EXPECT_TRUE(nullable.matches("null"));
  EXPECT_TRUE(nullable.matches(R"("s")"));
  EXPECT_FALSE(nullable.matches("1"));
  EXPECT_TRUE(compile(R"({"type":"integer","nullable":true})").matches("null"));
}

TEST(JsonSchema, ArraysMapsAndAnyValues) {
  const Grammar list = compile(R"({"type":"array","items":{"type":"boolean"}})");
  EXPECT_TRUE(list.matches("[]"));
  EXPECT_TRUE(list.matches("[true, false ,true]"));
  EXPECT_FALSE(list.matches("[true,]"));
  EXPECT_FALSE(list.matches("[1]"));
  const Grammar map = compile(R"({"type":"object","additionalProperties":{"type":"integer"}})");
  EXPECT_TRUE(map.matches(R"({"a":1,"b":2})"));
  EXPECT_FALSE(map.matches(R"({"a":"x"})"));
  const Grammar any = compile("{}");
  for (const char* ok : {"1", "\"s\"", "[1,[{}],{\"k\":null}]", "true"}) {
    EXPECT_TRUE(any.matches(ok)) << ok;
  }
  const Grammar object = json_object_grammar();
  EXPECT_TRUE(object.matches(R"({"k":[1,{"n":null}],"s":"v"})"));
  EXPECT_FALSE(object.matches("[1]"));
  EXPECT_FALSE(object.matches("\"s\""));
}

TEST(JsonSchema, LocalRefsAndRecursion) {
  const Grammar g = compile(R"({"$defs":{"node":{"type":"object","properties":{
      "value":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},
      "required":["value","children"],"additionalProperties":false}},
      "$ref":"#/$defs/node"})");
  EXPECT_TRUE(g.matches(R"({"value":1,"children":[{"value":2,"children":[]}]})"));
  EXPECT_FALSE(g.matches(R"({"value":1,"children":[{"value":2}]})"));
  const Grammar root =
      compile(R"({"type":"array","items":{"anyOf":[{"type":"integer"},{"$ref":"#"}]}})");
  EXPECT_TRUE(root.matches("[1,[2,[]],3]"));
  const Grammar defs = compile(R"({"definitions":{"a":{"type":"string"}},"type":"object",
      "properties":{"x":{"allOf":[{"$ref":"#/definitions/a"}],"description":"d"}},"required":["x"]})");
  EXPECT_TRUE(defs.matches(R"({"x":"y"})"));
}

TEST(JsonSchema, WhitespaceIsBounded) {
  const Grammar g =
      compile(R"({"type":"array","items":{"type":"integer"}})", {.max_whitespace = 2});
  EXPECT_TRUE(g.matches("[  1 ,\n2]"));
  EXPECT_FALSE(g.matches("[   1]"));
  const Grammar none =
      compile(R"({"type":"array","items":{"type":"integer"}})", {.max_whitespace = 0});
  EXPECT_TRUE(none.matches("[1,2]"));
  EXPECT_FALSE(none.matches("[1, 2]"));
}

TEST(JsonSchema, UnsupportedKeywordsAreRefusedByNameAndPlace) {
  EXPECT_EQ(refusal(R"({"type":"object","properties":{"age":{"type":"integer","minimum":0}}})"),
            "#/properties/age: 'minimum' is not supported");
  for (const char* keyword : {"minLength", "maxLength", "pattern", "format"}) {
    const std::string schema = std::string(R"({"type":"string",")") + keyword + R"(":1})";
    EXPECT_NE(refusal(schema.c_str()).find(std::string("'") + keyword + "' is not supported"),
              std::string::npos);
  }
  EXPECT_NE(refusal(R"({"oneOf":[{"type":"string"}]})").find("'oneOf'"), std::string::npos);
  EXPECT_NE(refusal(R"({"type":"array","minItems":1})").find("'minItems'"), std::string::npos);
  EXPECT_NE(refusal(R"({"type":"strin"})").find("unknown type 'strin'"), std::string::npos);
  EXPECT_NE(refusal(R"({"$ref":"#/$defs/missing"})").find("points at nothing"), std::string::npos);
  EXPECT_NE(refusal(R"({"$ref":"http://x/y"})").find("not a local reference"), std::string::npos);
  EXPECT_NE(refusal(R"({"anyOf":[{"type":"string"}],"type":"string"})").find("next to"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"type":"object","properties":{},"required":["a"]})").find("'a'"),
            std::string::npos);
  EXPECT_NE(refusal("false").find("allows no value"), std::string::npos);
}

TEST(JsonSchema, StrictModeNeedsClosedObjectsWithEveryPropertyRequired) {
  const JsonGrammarOptions strict{.strict = true};
  EXPECT_NE(
      refusal(R"({"type":"object","properties":{"a":{"type":"string"}},"required":["a"]})", strict)
          .find("additionalProperties: false"),
      std::string::npos);
  EXPECT_NE(refusal(R"({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},
      "required":["a"],"additionalProperties":false})",
                    strict)
                .find("'b' is not"),
            std::string::npos);
  compile(R"({"type":"object","properties":{"a":{"type":"string"}},"required":["a"],
      "additionalProperties":false})",
          strict);
}

TEST(JsonSchema, LeftRecursiveGrammarsAreRefusedByTheBuilder) {
  GrammarBuilder b;
  const uint32_t r = b.declare();
  b.define(r, {{GrammarBuilder::ref(r)}, b.literal("x")});
  StatusOr<Grammar> g = std::move(b).build(r);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("left-recursive"), std::string::npos);
}

TEST(JsonSchema, RandomSentencesValidateUnderPythonJsonschema) {
  if (!moeserve::testing::have_jsonschema()) GTEST_SKIP() << "python3-jsonschema is missing";
  const char* schemas[] = {
      R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
          "scores":{"type":"array","items":{"type":"number"}},"kind":{"enum":["a","b",null]},
          "nested":{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"],
          "additionalProperties":false}},"required":["name","nested"],"additionalProperties":false})",
      R"({"anyOf":[{"type":"null"},{"type":"array","items":{"type":["integer","string"]}}]})",
      R"({"$defs":{"t":{"type":"object","properties":{"v":{"type":"integer"},"k":{"type":"array",
          "items":{"$ref":"#/$defs/t"}}},"required":["v"],"additionalProperties":false}},"$ref":"#/$defs/t"})",
      R"({"type":"object","additionalProperties":{"type":"string"}})",
      "{}",
  };
  std::mt19937 rng(7);
  for (const char* text : schemas) {
    const Schema schema = Schema::parse(text);
    const Grammar g = compile(text);
    std::vector<std::string> sentences;
    for (int i = 0; i < 15; ++i) {
      std::string s = random_sentence(g, rng);
      ASSERT_TRUE(g.matches(s)) << s;
      sentences.push_back(std::move(s));
    }
    const std::vector<std::string> verdicts =
        moeserve::testing::validate_with_jsonschema(schema, sentences);
    for (size_t i = 0; i < sentences.size(); ++i) {
      EXPECT_EQ(verdicts[i], "") << text << "\n" << sentences[i];
    }
  }
}

}  // namespace
}  // namespace moeserve::structured
