#include "worker/cli/serve_options.h"

#include <gtest/gtest.h>
#include <stdlib.h>

namespace moeserve::cli {
namespace {

// Clears the environment variables serve reads, so each test sets only its own.
class ServeOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override { clear(); }
  void TearDown() override { clear(); }
  static void clear() {
    for (const char* name : {"MOESERVE_RANK", "MOESERVE_WORLD_SIZE", "MOESERVE_LEADER_ADDR",
                             "MOESERVE_POD_INDEX", "MOESERVE_RANKS_PER_POD", "MOESERVE_DEPLOYMENT",
                             "MOESERVE_MODEL", "MOESERVE_PORT", "MOESERVE_HOST"}) {
      unsetenv(name);
    }
  }
};

TEST_F(ServeOptionsTest, RankComesFromPodIndexTimesRanksPerPodWithoutMoeserveRank) {
  setenv("MOESERVE_POD_INDEX", "2", 1);
  setenv("MOESERVE_RANKS_PER_POD", "2", 1);
  setenv("MOESERVE_WORLD_SIZE", "8", 1);
  setenv("MOESERVE_LEADER_ADDR", "10.0.0.1:29500", 1);
  auto parsed = parse_serve_flags({"--model", "/m"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->flags.group.rank, 4);
  EXPECT_EQ(parsed->flags.group.world_size, 8);
  EXPECT_EQ(parsed->flags.group.leader, "10.0.0.1:29500");

  setenv("MOESERVE_RANK", "5", 1);  // an explicit rank wins
  parsed = parse_serve_flags({"--model", "/m"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->flags.group.rank, 5);
}

TEST_F(ServeOptionsTest, OneRankIsASingleProcessEvenWithALeader) {
  auto parsed = parse_serve_flags({"--model", "/m", "--world-size", "1", "--leader", "h:1"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_FALSE(in_group(parsed->flags));
  EXPECT_EQ(parsed->flags.speculative.method, "none");
}

TEST_F(ServeOptionsTest, RefusesInconsistentFlagsNamingTheFlag) {
  auto expect_refused = [](std::vector<std::string> args, const std::string& flag) {
    auto parsed = parse_serve_flags(args);
    ASSERT_FALSE(parsed.ok()) << flag;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(flag), std::string::npos) << parsed.status().message();
  };
  expect_refused({"--model", "/m", "--world-size", "2"}, "--leader");
  expect_refused({"--model", "/m", "--world-size", "2", "--leader", "h:1", "--rank", "2"},
                 "--rank");
  expect_refused({"--model", "/m", "--precision", "int4"}, "--precision");
  expect_refused({"--model", "/m", "--speculative", "eagle"}, "--speculative");
  expect_refused({"--model", "/m", "--draft-tokens", "2"}, "draft-tokens");  // renamed
  expect_refused({"--model", "/m", "--num-draft-tokens", "0"}, "--num-draft-tokens");
  expect_refused({"--model", "/m", "--num-draft-tokens", "9"}, "--num-draft-tokens");
  expect_refused({"--model", "/m", "--speculative-max-batch", "-1"}, "--speculative-max-batch");
  expect_refused({"--model", "/m", "--placement", "p.json"}, "--placement");
  expect_refused(
      {"--model", "/m", "--world-size", "2", "--leader", "h:1", "--collective-timeout-ms", "0"},
      "--collective-timeout-ms");
  expect_refused({"--model", "/m", "--weight-memory", "huge"}, "--weight-memory");
  expect_refused({"--model", "/m", "--no-such-flag"}, "no-such-flag");
  expect_refused({"--model", "/m", "--host", "0.0.0.0:8000"}, "--host");
  expect_refused({"--model", "/m", "--grpc-host", "localhost"}, "--grpc-host");
  expect_refused({"--model", "/m", "--metrics-host", "10.0.0"}, "--metrics-host");
  expect_refused({"--model", "/m", "--metrics-port", "70000"}, "--metrics-port");
  expect_refused({"--model", "/m", "--port", "8000", "--metrics-port", "8000"}, "--metrics-port");
}

TEST_F(ServeOptionsTest, WeightMemoryAutoCopiesOnOneRankAndInAGroup) {
  auto single = parse_serve_flags({"--model", "/m"});
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(weight_memory_of(single->flags.group), model::WeightMemory::kCopied);
  // In a group a rank copies only its own experts (join_and_load), so auto copies there too.
  auto group = parse_serve_flags({"--model", "/m", "--world-size", "2", "--leader", "h:1"});
  ASSERT_TRUE(group.ok());
  EXPECT_EQ(weight_memory_of(group->flags.group), model::WeightMemory::kCopied);
  auto forced = parse_serve_flags(
      {"--model", "/m", "--world-size", "2", "--leader", "h:1", "--weight-memory", "mapped"});
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ(weight_memory_of(forced->flags.group), model::WeightMemory::kMapped);
  auto mapped = parse_serve_flags({"--model", "/m", "--weight-memory", "mapped"});
  ASSERT_TRUE(mapped.ok());
  EXPECT_EQ(weight_memory_of(mapped->flags.group), model::WeightMemory::kMapped);
}

TEST_F(ServeOptionsTest, BindAddressesAreIpLiteralsAndMetricsMayHaveTheirOwnPort) {
  auto parsed = parse_serve_flags({"--model", "/m"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->flags.metrics_port, -1) << "/metrics stays on --port by default";
  EXPECT_EQ(parsed->flags.grpc_host, "127.0.0.1");
  parsed = parse_serve_flags({"--model", "/m", "--host", "::", "--grpc-host", "10.1.2.3",
                              "--metrics-host", "0.0.0.0", "--metrics-port", "9090"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->flags.host, "::");
  EXPECT_EQ(parsed->flags.grpc_host, "10.1.2.3");
  EXPECT_EQ(parsed->flags.metrics_host, "0.0.0.0");
  EXPECT_EQ(parsed->flags.metrics_port, 9090);
}

TEST_F(ServeOptionsTest, SpeculativeFlagsNameTheDrafterAndItsDraftsPerStep) {
  for (const std::string method : {"none", "ngram", "mtp"}) {
    auto parsed = parse_serve_flags({"--model", "/m", "--speculative", method, "--num-draft-tokens",
                                     "3", "--speculative-max-batch", "4"});
    ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
    EXPECT_EQ(parsed->flags.speculative.method, method);
    EXPECT_EQ(parsed->flags.speculative.num_draft_tokens, 3);
    EXPECT_EQ(parsed->flags.speculative.max_batch, 4);
  }
  auto defaults = parse_serve_flags({"--model", "/m"});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->flags.speculative.num_draft_tokens, 1);
  EXPECT_EQ(defaults->flags.speculative.max_batch, engine::SchedulerOptions{}.spec_max_batch);
}

TEST_F(ServeOptionsTest, PrecisionMustMatchTheCheckpoint) {
  model::ModelConfig bf16;
  model::ModelConfig fp8;
  fp8.quantization.fp8 = true;
  EXPECT_EQ(checkpoint_precision(bf16), "bf16");
  EXPECT_EQ(checkpoint_precision(fp8), "fp8");
  EXPECT_TRUE(check_precision("", fp8).ok());
  EXPECT_TRUE(check_precision("fp8", fp8).ok());
  EXPECT_TRUE(check_precision("bf16", bf16).ok());
  const Status mismatch = check_precision("bf16", fp8);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.message().find("does not match the checkpoint, which is fp8"),
            std::string::npos)
      << mismatch.message();
  EXPECT_FALSE(check_precision("fp8", bf16).ok());
}

}  // namespace
}  // namespace moeserve::cli
