#include "common/yaml_json.h"

#include <gtest/gtest.h>

namespace moeserve {
namespace {

TEST(YamlJson, CoreSchemaScalarTyping) {
  auto j = yaml_to_json(
      "a: 1\nb: -2.5\nc: .5\nd: 1e3\ne: \"7\"\nf: 1.2.3\ng: true\nh: ~\ni: 12abc\nj: 3.\n"
      "k: +4\nl: 1e\nm: null\n");
  ASSERT_TRUE(j.ok()) << j.status().to_string();
  EXPECT_EQ((*j)["a"], 1);
  EXPECT_DOUBLE_EQ((*j)["b"].get<double>(), -2.5);
  EXPECT_DOUBLE_EQ((*j)["c"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ((*j)["d"].get<double>(), 1000.0);
  EXPECT_EQ((*j)["e"], "7") << "quoted scalars stay strings";
  EXPECT_EQ((*j)["f"], "1.2.3");
  EXPECT_EQ((*j)["g"], true);
  EXPECT_TRUE((*j)["h"].is_null());
  EXPECT_EQ((*j)["i"], "12abc");
  EXPECT_DOUBLE_EQ((*j)["j"].get<double>(), 3.0);
  EXPECT_EQ((*j)["k"], 4);
  EXPECT_EQ((*j)["l"], "1e");
  EXPECT_TRUE((*j)["m"].is_null());
}

TEST(YamlJson, DocumentsAndErrors) {
  auto docs = yaml_documents_to_json("a: [1, two]\n---\n---\nb: {c: d}\n");
  ASSERT_TRUE(docs.ok());
  ASSERT_EQ(docs->size(), 2u) << "empty documents are skipped";
  EXPECT_EQ((*docs)[0]["a"][1], "two");
  EXPECT_EQ((*docs)[1]["b"]["c"], "d");
  EXPECT_FALSE(yaml_to_json("a: 1\n---\nb: 2\n").ok()) << "one document expected";
  auto bad = yaml_to_json("a: [1, 2\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(load_yaml_documents("/nonexistent.yaml").status().message().find("/nonexistent.yaml"),
            std::string::npos);
}

}  // namespace
}  // namespace moeserve
