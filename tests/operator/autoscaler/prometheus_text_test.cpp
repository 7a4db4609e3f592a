// The text exposition parser: what the worker writes parses, malformed input fails
// with a message naming the line, never a crash.
#include "operator/autoscaler/prometheus_text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace moeserve::autoscaler {
namespace {

TEST(PrometheusTextTest, ParsesFamiliesLabelsEscapesAndSpecialValues) {
  const std::string text =
      "# HELP moeserve_prompt_tokens_total Prompt tokens\n"
      "# TYPE moeserve_prompt_tokens_total counter\n"
      "moeserve_prompt_tokens_total{model=\"tiny\",deployment=\"x\"} 1234\n"
      "\n"
      "# a plain comment\n"
      "h_bucket{le=\"0.5\"} 3 1700000000000\n"
      "h_bucket{le=\"+Inf\",} 7\n"
      "g{path=\"a\\\\b\\\"c\\nd\"} -1.5e3\r\n"
      "nan_gauge NaN\n"
      "neg -Inf\n"
      "  spaced\t 42  \n";
  auto samples = parse_exposition(text);
  ASSERT_TRUE(samples.ok()) << samples.status().to_string();
  ASSERT_EQ(samples->size(), 7u);
  EXPECT_EQ((*samples)[0].name, "moeserve_prompt_tokens_total");
  EXPECT_EQ((*samples)[0].label("deployment"), "x");
  EXPECT_EQ((*samples)[0].value, 1234);
  EXPECT_EQ((*samples)[1].label("le"), "0.5");
  EXPECT_EQ((*samples)[2].label("le"), "+Inf");
  EXPECT_EQ((*samples)[3].label("path"), "a\\b\"c\nd");
  EXPECT_EQ((*samples)[3].value, -1500);
  EXPECT_TRUE(std::isnan((*samples)[4].value));
  EXPECT_TRUE(std::isinf((*samples)[5].value));
  EXPECT_EQ((*samples)[6].name, "spaced");
  EXPECT_EQ((*samples)[6].value, 42);
  EXPECT_FALSE((*samples)[6].label("le"));
}

TEST(PrometheusTextTest, MalformedInputFailsWithTheLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"ok 1\n9bad 1\n", "line 2"},
      {"m{le=\"1\" 2\n", "expected ',' or '}'"},
      {"m{le=1} 2\n", "to open a label value"},
      {"m{le=\"1} 2\n", "unterminated label value"},
      {"m{le=\"\\t\"} 2\n", "unknown escape"},
      {"m{a=\"1\",a=\"2\"} 2\n", "duplicate label a"},
      {"m{a\"1\"} 2\n", "expected '=' after label name a"},
      {"m one\n", "not a number"},
      {"m 0x1A\n", "not a number"},
      {"m inf\n", "not a number"},
      {"m\n", "not a number"},
      {"m 1 12.5\n", "bad timestamp"},
      {"m 1 2 3\n", "unexpected text"},
      {"# TYPE m countr\n", "unknown metric type"},
      {"# TYPE m counter extra\n", "unexpected text"},
      {"# HELP 1m help\n", "metric name"},
      {"m{1a=\"x\"} 1\n", "label name"},
      {"m{a=\"x\"}1\n", "expected a blank"},
  };
  for (const auto& [text, expected] : cases) {
    auto parsed = parse_exposition(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_NE(parsed.status().message().find(expected), std::string::npos)
        << text << " -> " << parsed.status().to_string();
  }
}

TEST(PrometheusTextTest, RandomBytesNeverCrash) {
  std::mt19937 rng(11);
  const std::string alphabet = "m_{}=\",# \n\\abc0123456789.+-eINfa";
  for (int i = 0; i < 2000; ++i) {
    std::string text(rng() % 64, ' ');
    for (char& c : text) c = alphabet[rng() % alphabet.size()];
    auto parsed = parse_exposition(text);
    if (!parsed.ok()) {
      EXPECT_NE(parsed.status().message().find("metrics line"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace moeserve::autoscaler
