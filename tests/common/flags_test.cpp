#include "common/flags.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <optional>
#include <string>

namespace moeserve {
namespace {

struct Parsed {
  std::string model = "default";
  int64_t port = 8000;
  double temperature = 1.0;
  bool json = false;
};

FlagSet make_flags(Parsed& p) {
  FlagSet flags("test --model DIR", "A test command.");
  flags.add_string("model", &p.model, "model folder");
  flags.add_int("port", &p.port, "port", "MOESERVE_TEST_PORT");
  flags.add_double("temperature", &p.temperature, "sampling temperature");
  flags.add_bool("json", &p.json, "print JSON");
  return flags;
}

TEST(FlagsTest, ParseMainSaysWhetherAndHowTheProgramEnds) {
  int64_t n = 0;
  FlagSet flags("prog [--n N]", "test");
  flags.add_int("n", &n, "a number");
  std::string prog = "prog", ok = "--n=3", bad = "--n=x", help = "--help";
  char* good_argv[] = {prog.data(), ok.data()};
  EXPECT_EQ(flags.parse_main(2, good_argv), std::nullopt);
  EXPECT_EQ(n, 3);
  char* bad_argv[] = {prog.data(), bad.data()};
  EXPECT_EQ(FlagSet("prog", "test").parse_main(2, bad_argv), 2);
  char* help_argv[] = {prog.data(), help.data()};
  EXPECT_EQ(FlagSet("prog", "test").parse_main(2, help_argv), 0);
}

TEST(Flags, ParsesBothFormsAndBooleans) {
  Parsed p;
  FlagSet flags = make_flags(p);
  ASSERT_TRUE(
      flags.parse({"--model", "/m", "--port=9000", "--temperature", "0.5", "--json", "pos"}).ok());
  EXPECT_EQ(p.model, "/m");
  EXPECT_EQ(p.port, 9000);
  EXPECT_DOUBLE_EQ(p.temperature, 0.5);
  EXPECT_TRUE(p.json);
  EXPECT_TRUE(flags.is_set("port"));
  EXPECT_FALSE(flags.help_requested());
  ASSERT_EQ(flags.positional().size(), 1u);
  EXPECT_EQ(flags.positional()[0], "pos");
}

TEST(Flags, DefaultsStayWhenNotGiven) {
  Parsed p;
  FlagSet flags = make_flags(p);
  ASSERT_TRUE(flags.parse({}).ok());
  EXPECT_EQ(p.model, "default");
  EXPECT_EQ(p.port, 8000);
  EXPECT_FALSE(flags.is_set("model"));
}

TEST(Flags, ErrorsNameTheFlag) {
  Parsed p;
  FlagSet flags = make_flags(p);
  Status s = flags.parse({"--port", "80x"});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--port"), std::string::npos) << s.message();
  Parsed q;
  FlagSet other = make_flags(q);
  Status unknown = other.parse({"--nope", "1"});
  EXPECT_NE(unknown.message().find("unknown flag --nope"), std::string::npos);
  Parsed r;
  FlagSet third = make_flags(r);
  EXPECT_NE(third.parse({"--model"}).message().find("needs a value"), std::string::npos);
}

TEST(Flags, EnvironmentFillsUnsetFlagsOnly) {
  setenv("MOESERVE_TEST_PORT", "7777", 1);
  Parsed p;
  FlagSet flags = make_flags(p);
  ASSERT_TRUE(flags.parse({}).ok());
  EXPECT_EQ(p.port, 7777);
  Parsed q;
  FlagSet given = make_flags(q);
  ASSERT_TRUE(given.parse({"--port", "1234"}).ok());
  EXPECT_EQ(q.port, 1234);
  setenv("MOESERVE_TEST_PORT", "bad", 1);
  Parsed r;
  FlagSet bad = make_flags(r);
  EXPECT_NE(bad.parse({}).message().find("MOESERVE_TEST_PORT"), std::string::npos);
  unsetenv("MOESERVE_TEST_PORT");
}

TEST(Flags, HelpListsFlagsWithDefaultsAndEnv) {
  Parsed p;
  FlagSet flags = make_flags(p);
  ASSERT_TRUE(flags.parse({"--help"}).ok());
  EXPECT_TRUE(flags.help_requested());
  std::string help = flags.help();
  EXPECT_NE(help.find("--model VALUE"), std::string::npos);
  EXPECT_NE(help.find("(default: 8000)"), std::string::npos);
  EXPECT_NE(help.find("[env MOESERVE_TEST_PORT]"), std::string::npos);
}

TEST(Flags, IntList) {
  auto ok = parse_int_list("1,22,-3");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, (std::vector<int64_t>{1, 22, -3}));
  EXPECT_FALSE(parse_int_list("1,,2").ok());
  EXPECT_FALSE(parse_int_list("").ok());
  EXPECT_FALSE(parse_int_list("1,a").ok());
}

}  // namespace
}  // namespace moeserve
