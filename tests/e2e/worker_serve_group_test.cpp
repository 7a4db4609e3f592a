// End to end: a 2-rank expert-parallel `moeserve-worker serve` group on 127.0.0.1 (the
// operator's env: MOESERVE_RANK, MOESERVE_WORLD_SIZE, MOESERVE_LEADER_ADDR) against a
// single-process `serve` of the same tiny model, and what a lost rank does to rank 0.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "tests/support/test_util.h"
#include "tools/fixtures/tiny_model.h"

namespace moeserve {
namespace {

using namespace std::chrono_literals;
using moeserve::testing::free_port;
using moeserve::testing::Process;
using moeserve::testing::TempDir;
using moeserve::testing::wait_until;
using nlohmann::json;

constexpr int64_t kCollectiveTimeoutMs = 3000;

struct Rank {
  std::unique_ptr<Process> process;
  uint16_t port = 0;
  std::string log;
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
};

Rank start_rank(const TempDir& dir, const std::string& model_dir, const std::string& name,
                std::vector<std::string> env, const std::vector<std::string>& extra_args = {}) {
  Rank r;
  r.port = free_port();
  r.log = dir.file(name + ".log");
  std::vector<std::string> argv = {moeserve::testing::bin_dir() + "/moeserve-worker",
                                   "serve",
                                   "--model",
                                   model_dir,
                                   "--port",
                                   std::to_string(r.port),
                                   "--threads",
                                   "1",
                                   "--served-model-name",
                                   "tiny",
                                   "--precision",
                                   "bf16",
                                   "--collective-timeout-ms",
                                   std::to_string(kCollectiveTimeoutMs),
                                   "--rendezvous-timeout-ms",
                                   "30000"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  r.process = std::make_unique<Process>(argv, r.log, env);
  return r;
}

int readyz(const Rank& r) {
  http::Client client;
  auto response = client.send({"GET", r.url("/readyz"), {}, ""});
  return response.ok() ? response->status : 0;
}

bool wait_ready(const Rank& r) {
  const bool ready = wait_until([&] { return readyz(r) == 200; }, 30s);
  EXPECT_TRUE(ready) << moeserve::testing::read_file(r.log);
  return ready;
}

std::vector<std::string> group_env(int rank, uint16_t leader_port) {
  return {"MOESERVE_RANK=" + std::to_string(rank), "MOESERVE_WORLD_SIZE=2",
          "MOESERVE_LEADER_ADDR=127.0.0.1:" + std::to_string(leader_port)};
}

json greedy_completion(const Rank& r, const std::string& prompt, int max_tokens = 12) {
  http::Client client;
  auto response = client.send(
      {"POST",
       r.url("/v1/completions"),
       {{"Content-Type", "application/json"}},
       json({{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}})
           .dump()});
  EXPECT_TRUE(response.ok() && response->status == 200)
      << (response.ok() ? response->body : response.status().to_string());
  return response.ok() ? json::parse(response->body, nullptr, false) : json();
}

class WorkerServeGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = dir_.file("tiny");
    ASSERT_TRUE(fixtures::write_tiny_model(model_dir_, {}).ok());
    leader_port_ = free_port();
    rank1_ = start_rank(dir_, model_dir_, "rank1", group_env(1, leader_port_));
    rank0_ = start_rank(dir_, model_dir_, "rank0", group_env(0, leader_port_));
    ASSERT_TRUE(wait_ready(rank0_));
    ASSERT_TRUE(wait_ready(rank1_));
  }

  TempDir dir_;
  std::string model_dir_;
  uint16_t leader_port_ = 0;
  Rank rank0_, rank1_;
};

TEST_F(WorkerServeGroupTest, TwoRanksAnswerLikeOneProcessAndStopTogether) {
  Rank single = start_rank(dir_, model_dir_, "single", {});
  ASSERT_TRUE(wait_ready(single));
  for (const std::string prompt : {"Once upon a time", "The quick brown fox jumps"}) {
    const json one = greedy_completion(single, prompt);
    const json group = greedy_completion(rank0_, prompt);
    ASSERT_TRUE(one.contains("choices") && group.contains("choices"));
    EXPECT_EQ(group["choices"][0]["text"], one["choices"][0]["text"]) << prompt;
    EXPECT_EQ(group["usage"], one["usage"]);
  }
  // Rank 1 serves health and metrics (its rank in worker_info), not the API.
  http::Client client;
  auto metrics = client.send({"GET", rank1_.url("/metrics"), {}, ""});
  ASSERT_TRUE(metrics.ok());
  EXPECT_NE(metrics->body.find("rank=\"1\""), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("world_size=\"2\""), std::string::npos);
  auto api = client.send({"GET", rank1_.url("/v1/models"), {}, ""});
  ASSERT_TRUE(api.ok());
  EXPECT_EQ(api->status, 404);
  // Rank 0's expert counters hold the group's routing of the requests above.
  auto rank0_metrics = client.send({"GET", rank0_.url("/metrics"), {}, ""});
  ASSERT_TRUE(rank0_metrics.ok());
  EXPECT_NE(rank0_metrics->body.find("moeserve_expert_tokens_total{"), std::string::npos);

  // SIGTERM to rank 0 stops the whole group cleanly.
  rank0_.process->signal(SIGTERM);
  single.process->signal(SIGTERM);
  EXPECT_EQ(rank0_.process->wait(30s), 0) << moeserve::testing::read_file(rank0_.log);
  EXPECT_EQ(rank1_.process->wait(30s), 0) << moeserve::testing::read_file(rank1_.log);
  EXPECT_EQ(single.process->wait(30s), 0);
}

// ngram, and mtp (the MTP layer's experts sharded over both ranks, rank 1 joining each
// MTP forward through kMtpForward).
TEST_F(WorkerServeGroupTest, TwoRanksSpeculatingAnswerLikeOneProcessWithout) {
  Rank single = start_rank(dir_, model_dir_, "single", {});
  ASSERT_TRUE(wait_ready(single));
  for (const std::string method : {"ngram", "mtp"}) {
    const std::vector<std::string> spec = {"--speculative", method, "--num-draft-tokens", "3"};
    const uint16_t leader = free_port();
    Rank spec1 = start_rank(dir_, model_dir_, method + "1", group_env(1, leader), spec);
    Rank spec0 = start_rank(dir_, model_dir_, method + "0", group_env(0, leader), spec);
    ASSERT_TRUE(wait_ready(spec0)) << method;
    ASSERT_TRUE(wait_ready(spec1)) << method;
    for (const std::string prompt : {"Once upon a time", "the the the the the", "a b a b a b"}) {
      const json plain = greedy_completion(single, prompt, 40);
      const json drafted = greedy_completion(spec0, prompt, 40);
      ASSERT_TRUE(plain.contains("choices") && drafted.contains("choices"));
      EXPECT_EQ(drafted["choices"][0]["text"], plain["choices"][0]["text"]) << method << prompt;
      EXPECT_EQ(drafted["usage"], plain["usage"]);
    }
    http::Client client;
    auto metrics = client.send({"GET", spec0.url("/metrics"), {}, ""});
    ASSERT_TRUE(metrics.ok());
    EXPECT_NE(metrics->body.find("moeserve_spec_decode_draft_tokens_total{"), std::string::npos);
    EXPECT_NE(metrics->body.find("moeserve_spec_decode_accepted_tokens_total{"), std::string::npos);
    EXPECT_NE(metrics->body.find("position=\"2\""), std::string::npos);
    spec0.process->signal(SIGTERM);
    EXPECT_EQ(spec0.process->wait(30s), 0) << moeserve::testing::read_file(spec0.log);
    EXPECT_EQ(spec1.process->wait(30s), 0) << moeserve::testing::read_file(spec1.log);
  }
  single.process->signal(SIGTERM);
  EXPECT_EQ(single.process->wait(30s), 0);
}

TEST_F(WorkerServeGroupTest, KillingRankOneMakesRankZeroNotReadyAndExitNonZero) {
  const auto killed = std::chrono::steady_clock::now();
  rank1_.process->signal(SIGKILL);
  rank1_.process->wait(10s);
  // Idle rank 0 finds out at its next heartbeat (collective timeout / 3) at the latest
  // within one collective timeout of it; the bound is generous for loaded machines.
  const int code =
      rank0_.process->wait(std::chrono::milliseconds(4 * kCollectiveTimeoutMs + 10000));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  EXPECT_NE(code, 0);
  EXPECT_NE(code, -1) << "rank 0 did not exit";
  EXPECT_LT(seconds, 4 * kCollectiveTimeoutMs / 1000.0 + 10);
  EXPECT_NE(readyz(rank0_), 200);
  const std::string log = moeserve::testing::read_file(rank0_.log);
  EXPECT_NE(log.find("lost rank 1"), std::string::npos) << log;
}

}  // namespace
}  // namespace moeserve
