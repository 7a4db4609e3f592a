#include "common/log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

namespace moeserve::log {
namespace {

TEST(Log, JsonLineCarriesTypedFields) {
  std::string line =
      format_line(Format::kJson, "2026-01-01T00:00:00.000Z", Level::kInfo, "model loaded",
                  {{"tensors", 12}, {"ratio", 0.5}, {"ok", true}, {"path", "/m x"}});
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["msg"], "model loaded");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["ts"], "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(j["tensors"], 12);
  EXPECT_DOUBLE_EQ(j["ratio"].get<double>(), 0.5);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["path"], "/m x");
}

TEST(Log, LogfmtQuotesOnlyWhenNeeded) {
  std::string line = format_line(Format::kLogfmt, "T", Level::kWarn, "slow step",
                                 {{"ms", 42}, {"who", "rank0"}, {"why", "a b"}});
  EXPECT_EQ(line, "ts=T level=warn msg=\"slow step\" ms=42 who=rank0 why=\"a b\"");
}

TEST(Log, LevelFilteringAndSink) {
  std::ostringstream sink;
  configure(Level::kWarn, Format::kJson, &sink);
  info("hidden");
  warn("shown", {{"k", 1}});
  configure(Level::kInfo, Format::kJson, nullptr);
  std::string out = sink.str();
  EXPECT_EQ(out.find("hidden"), std::string::npos);
  ASSERT_NE(out.find("shown"), std::string::npos);
  EXPECT_EQ(out.back(), '\n');
  EXPECT_NO_THROW(nlohmann::json::parse(out));
}

TEST(Log, ParsesLevelsAndFormats) {
  EXPECT_EQ(*parse_level("debug"), Level::kDebug);
  EXPECT_EQ(*parse_level("error"), Level::kError);
  EXPECT_FALSE(parse_level("loud").ok());
  EXPECT_EQ(*parse_format("logfmt"), Format::kLogfmt);
  EXPECT_NE(parse_format("xml").status().message().find("json or logfmt"), std::string::npos);
}

}  // namespace
}  // namespace moeserve::log
