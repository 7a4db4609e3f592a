#include "common/json_reader.h"

#include <gtest/gtest.h>

namespace moeserve {
namespace {

using nlohmann::json;

TEST(JsonReader, ReadsPresentFieldsAndLeavesDefaultsForAbsentOnes) {
  const json object = json::parse(R"({"name": "x", "on": true, "n": 7, "ratio": 0.5,
                                      "whole": 3.0, "labels": {"a": "b"}, "args": ["-v"]})");
  std::vector<FieldError> errors;
  JsonReader r(object, "spec", &errors);
  std::string name, absent = "default";
  bool on = false;
  int64_t n = 0;
  int32_t whole = 0;
  double ratio = 0;
  std::map<std::string, std::string> labels;
  std::vector<std::string> args;
  std::optional<int32_t> maybe, missing;
  r.read("name", &name);
  r.read("absent", &absent);
  r.read("on", &on);
  r.read("n", &n);
  r.read("whole", &whole);
  r.read("ratio", &ratio);
  r.read("labels", &labels);
  r.read("args", &args);
  r.read("n", &maybe);
  r.read("missing", &missing);
  EXPECT_TRUE(errors.empty()) << join_errors(errors);
  EXPECT_EQ(name, "x");
  EXPECT_EQ(absent, "default");
  EXPECT_TRUE(on);
  EXPECT_EQ(n, 7);
  EXPECT_EQ(whole, 3) << "a whole-valued float is an integer";
  EXPECT_EQ(ratio, 0.5);
  EXPECT_EQ(labels, (std::map<std::string, std::string>{{"a", "b"}}));
  EXPECT_EQ(args, std::vector<std::string>{"-v"});
  EXPECT_EQ(maybe, 7);
  EXPECT_FALSE(missing.has_value());
}

TEST(JsonReader, WrongTypesAreReportedWithTheirPathAndKeepTheDefault) {
  const json object = json::parse(R"({"port": "80", "big": 3000000000, "half": 1.5,
                                      "worker": [], "env": {}, "args": ["a", 2],
                                      "labels": {"k": 1}, "items": [{"x": 1}, 5]})");
  std::vector<FieldError> errors;
  JsonReader r(object, "spec", &errors);
  int32_t port = 8000, big = 1, half = 2;
  std::vector<std::string> args;
  std::map<std::string, std::string> labels;
  r.read("port", &port);
  r.read("big", &big);
  r.read("half", &half);
  r.child("worker");
  r.items("env");
  r.read("args", &args);
  r.read("labels", &labels);
  const std::vector<JsonReader> items = r.items("items");
  ASSERT_EQ(items.size(), 2u);
  int64_t x = 0;
  items[0].read("x", &x);
  EXPECT_EQ(x, 1);
  const std::vector<FieldError> expected = {
      {"spec.port", "must be an integer"},    {"spec.big", "out of range"},
      {"spec.half", "must be an integer"},    {"spec.worker", "must be an object"},
      {"spec.env", "must be a list"},         {"spec.args[1]", "must be a string"},
      {"spec.labels[k]", "must be a string"}, {"spec.items[1]", "must be an object"},
  };
  EXPECT_EQ(errors, expected) << join_errors(errors);
  EXPECT_EQ(port, 8000);
  EXPECT_EQ(big, 1);
  EXPECT_EQ(half, 2);
  EXPECT_EQ(args, std::vector<std::string>{"a"});
}

// The document itself has no path of its own: its fields are named bare, and a document
// that is not an object is reported at kRootPath, never at "" (found by fuzz_deployment).
TEST(JsonReader, TheDocumentItselfIsNamed) {
  std::vector<FieldError> errors;
  const json document = json::parse(R"({"models": 3})");  // readers keep a reference
  JsonReader root(document, "", &errors);
  std::string models;
  root.read("models", &models);
  const json text = "a string";
  JsonReader not_an_object(text, "", &errors);
  const std::vector<FieldError> expected = {{"models", "must be a string"},
                                            {"(document)", "must be an object"}};
  EXPECT_EQ(errors, expected) << join_errors(errors);
}

TEST(JsonReader, FailAppendsAndJoinErrorsListsInOrder) {
  std::vector<FieldError> errors;
  JsonReader r(json(nullptr), "spec", &errors);
  EXPECT_TRUE(r.get("anything").is_null()) << "null reads as an empty object";
  r.fail(r.path("a"), "bad");
  r.fail("spec.b", "worse");
  EXPECT_EQ(join_errors(errors), "spec.a: bad; spec.b: worse");
  EXPECT_EQ(json_quoted("a\"b"), R"("a\"b")");
}

}  // namespace
}  // namespace moeserve
