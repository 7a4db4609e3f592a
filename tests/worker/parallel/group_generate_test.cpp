// `moeserve-worker generate` as real multi-process rank groups on 127.0.0.1 with
// generated tiny DeepSeek-V3 models (BF16 and FP8): every prompt runs on rank 0's
// scheduler with the other ranks following (worker/engine/group_step.h); outputs equal
// the single-process run's, rendezvous in any start order, refusals, and lost ranks failing the
// others within the collective timeout.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"
#include "tools/fixtures/tiny_model.h"

namespace moeserve::engine {
namespace {

using moeserve::testing::Process;
using moeserve::testing::TempDir;
using std::chrono::milliseconds;

// Logits tolerance. Every prompt runs in rank 0's batch, the one a single process
// forms; with expert parallelism each expert sees the rows routed to its rank, so its
// GEMMs may run at other row counts than in one process, and the CPU kernels pick
// their blocking by row count, which can reorder f32 sums. Measured differences are
// ~1e-6 on logits of magnitude ~1-10; 1e-4 leaves room across ISAs.
constexpr double kLogitTolerance = 1e-4;

// Prompts of different lengths, one per line; token 1 is EOS in the tiny models.
constexpr char kBatch[] =
    "1,2,3,4,5\n10,20,30\n7,8,9,10,11,12,13,14,15,16,17\n42\n5,6\n300,301,302,303,304,305,306\n";
// 16 experts in 20 slots: replicas of four experts, split over 2 or 4 ranks.
constexpr char kRedundant[] =
    R"({"version":2,"layers":[{"phy2log":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,0,5,10,15]}]})";

std::string worker() { return moeserve::testing::bin_dir() + "/moeserve-worker"; }

struct Rank {
  std::unique_ptr<Process> process;
  std::string out;  // stdout
  std::string err;  // stderr (logs)
};

class GroupGenerate : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    for (auto [name, precision] : {std::pair{"bf16", model::WeightPrecision::kBf16},
                                   std::pair{"fp8", model::WeightPrecision::kFp8}}) {
      fixtures::TinyModelOptions options;
      options.precision = precision;
      options.seed = 11;
      ASSERT_TRUE(fixtures::write_tiny_model(dir_->file(name), options).ok());
    }
    moeserve::testing::write_file(dir_->file("batch.txt"), kBatch);
    moeserve::testing::write_file(dir_->file("redundant.json"), kRedundant);
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::vector<std::string> generate_args(const std::string& model, int max_tokens) {
    return {worker(),       "generate",
            "--model",      dir_->file(model),
            "--batch-file", dir_->file("batch.txt"),
            "--max-tokens", std::to_string(max_tokens),
            "--json",       "--logits",
            "--threads",    "1"};
  }

  // Starts one process with stdout and stderr in their own files.
  Rank start(std::vector<std::string> args, const std::string& name) {
    Rank r;
    r.out = dir_->file(name + ".out");
    r.err = dir_->file(name + ".err");
    std::string command = "exec";
    for (const std::string& a : args) command += " '" + a + "'";
    command += " > '" + r.out + "' 2> '" + r.err + "'";
    r.process = std::make_unique<Process>(std::vector<std::string>{"/bin/sh", "-c", command});
    return r;
  }

  static std::vector<std::string> rank_args(std::vector<std::string> args, int rank, int world,
                                            uint16_t port) {
    for (const std::string& a :
         {std::string("--rank"), std::to_string(rank), std::string("--world-size"),
          std::to_string(world), std::string("--leader"), "127.0.0.1:" + std::to_string(port)}) {
      args.push_back(a);
    }
    return args;
  }

  static std::vector<nlohmann::json> results(const Rank& r) {
    std::vector<nlohmann::json> out;
    std::istringstream lines(moeserve::testing::read_file(r.out));
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty()) out.push_back(nlohmann::json::parse(line));
    }
    return out;
  }

  // Runs `world` ranks, started in reverse order `delay` apart; all must succeed.
  std::vector<nlohmann::json> run_group(const std::string& model, int world,
                                        std::vector<std::string> extra = {},
                                        milliseconds delay = milliseconds(0)) {
    const uint16_t port = moeserve::testing::free_port();
    std::vector<Rank> ranks(world);
    for (int r = world - 1; r >= 0; --r) {
      std::vector<std::string> args = rank_args(generate_args(model, 8), r, world, port);
      args.insert(args.end(), extra.begin(), extra.end());
      ranks[r] = start(args, model + "-w" + std::to_string(world) + "-r" + std::to_string(r));
      if (r > 0) std::this_thread::sleep_for(delay);
    }
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(ranks[r].process->wait(milliseconds(60000)), 0)
          << "rank " << r << ":\n"
          << moeserve::testing::read_file(ranks[r].err);
      if (r > 0) {
        EXPECT_TRUE(results(ranks[r]).empty()) << "only rank 0 prints";
      }
    }
    return results(ranks[0]);
  }

  std::vector<nlohmann::json> run_single(const std::string& model) {
    Rank r = start(generate_args(model, 8), model + "-single");
    EXPECT_EQ(r.process->wait(milliseconds(60000)), 0) << moeserve::testing::read_file(r.err);
    return results(r);
  }

  static void expect_same(const std::vector<nlohmann::json>& got,
                          const std::vector<nlohmann::json>& want) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i]["prompt_ids"], want[i]["prompt_ids"]) << "prompt " << i;
      EXPECT_EQ(got[i]["tokens"], want[i]["tokens"]) << "prompt " << i;
      const std::vector<float> a = got[i]["logits"], b = want[i]["logits"];
      ASSERT_EQ(a.size(), b.size());
      double worst = 0;
      for (size_t j = 0; j < a.size(); ++j) worst = std::max(worst, double(std::fabs(a[j] - b[j])));
      EXPECT_LE(worst, kLogitTolerance) << "prompt " << i;
    }
  }

  static TempDir* dir_;
};
TempDir* GroupGenerate::dir_ = nullptr;

TEST_F(GroupGenerate, BatchEqualsOnePromptAtATime) {
  const std::vector<nlohmann::json> batch = run_single("bf16");
  ASSERT_EQ(batch.size(), 6u);
  Rank one = start({worker(), "generate", "--model", dir_->file("bf16"), "--prompt-ids",
                    "7,8,9,10,11,12,13,14,15,16,17", "--max-tokens", "8", "--json", "--logits",
                    "--threads", "1"},
                   "one");
  ASSERT_EQ(one.process->wait(milliseconds(60000)), 0);
  expect_same(results(one), {batch[2]});
}

TEST_F(GroupGenerate, OneTwoAndFourRanksEqualSingleProcessBf16AndFp8) {
  for (const std::string model : {"bf16", "fp8"}) {
    const std::vector<nlohmann::json> want = run_single(model);
    ASSERT_EQ(want.size(), 6u);
    for (int world : {1, 2, 4}) {
      SCOPED_TRACE(model + " on " + std::to_string(world) + " ranks");
      expect_same(run_group(model, world), want);
    }
  }
}

TEST_F(GroupGenerate, RedundantReplicasGiveTheSameOutputs) {
  const std::vector<nlohmann::json> want = run_single("fp8");
  for (int world : {2, 4}) {
    SCOPED_TRACE(std::to_string(world) + " ranks");
    expect_same(run_group("fp8", world, {"--placement", dir_->file("redundant.json")}), want);
  }
}

TEST_F(GroupGenerate, RanksStartedInReverseOrderWithADelayStillMeet) {
  expect_same(run_group("bf16", 2, {}, milliseconds(800)), run_single("bf16"));
}

TEST_F(GroupGenerate, AWrongWorldSizeIsRefusedOnBothSides) {
  const uint16_t port = moeserve::testing::free_port();
  std::vector<std::string> extra = {"--rendezvous-timeout-ms", "2000"};
  auto args0 = rank_args(generate_args("bf16", 4), 0, 2, port);
  auto args1 = rank_args(generate_args("bf16", 4), 1, 3, port);
  args0.insert(args0.end(), extra.begin(), extra.end());
  args1.insert(args1.end(), extra.begin(), extra.end());
  Rank r0 = start(args0, "ws-r0");
  Rank r1 = start(args1, "ws-r1");
  EXPECT_EQ(r1.process->wait(milliseconds(20000)), 1);
  EXPECT_EQ(r0.process->wait(milliseconds(20000)), 1);
  const std::string err0 = moeserve::testing::read_file(r0.err);
  const std::string err1 = moeserve::testing::read_file(r1.err);
  EXPECT_NE(err1.find("world size mismatch: rank 1"), std::string::npos) << err1;
  EXPECT_NE(err1.find("--world-size 3 but the leader (rank 0) has 2"), std::string::npos) << err1;
  EXPECT_NE(err0.find("world size mismatch"), std::string::npos) << err0;  // the refusal
  EXPECT_NE(err0.find("not every rank joined"), std::string::npos) << err0;
  EXPECT_NE(err0.find("joined/1"), std::string::npos) << err0;
}

TEST_F(GroupGenerate, ADuplicateRankIsRefused) {
  // Both rank-1 processes retry until rank 0 listens; the first to join wins. The
  // group generates long enough (~2 s) for the loser's retry backoff to reach rank 0.
  const uint16_t port = moeserve::testing::free_port();
  auto args = [&](int rank) {
    auto a = rank_args(generate_args("bf16", 400), rank, 2, port);
    for (const char* x : {"--ignore-eos", "--rendezvous-timeout-ms", "8000"}) a.push_back(x);
    return a;
  };
  Rank first = start(args(1), "dup-a");
  std::this_thread::sleep_for(milliseconds(300));
  Rank second = start(args(1), "dup-b");
  std::this_thread::sleep_for(milliseconds(300));
  Rank leader = start(args(0), "dup-r0");
  const int a = first.process->wait(milliseconds(30000));
  const int b = second.process->wait(milliseconds(30000));
  EXPECT_EQ(leader.process->wait(milliseconds(30000)), 0);
  EXPECT_EQ(std::min(a, b), 0);
  EXPECT_EQ(std::max(a, b), 1);
  const std::string refused = moeserve::testing::read_file(a == 1 ? first.err : second.err);
  EXPECT_NE(refused.find("duplicate rank: rank 1 has already joined"), std::string::npos)
      << refused;
  EXPECT_NE(moeserve::testing::read_file(leader.err).find("duplicate rank"), std::string::npos);
  EXPECT_EQ(results(leader).size(), 6u);
}

class LostRank : public GroupGenerate, public ::testing::WithParamInterface<int> {};

// A rank killed mid-generation: the survivor fails its collective at once (the
// connection closes), names the lost rank and exits non-zero well within the timeout.
TEST_P(LostRank, KilledRankFailsTheOtherWithinTheTimeout) {
  const int victim = GetParam();
  const uint16_t port = moeserve::testing::free_port();
  std::vector<Rank> ranks(2);
  for (int r = 1; r >= 0; --r) {
    auto args = rank_args(generate_args("bf16", 3000), r, 2, port);
    for (const char* a : {"--ignore-eos", "--collective-timeout-ms", "3000"}) args.push_back(a);
    ranks[r] = start(args, "kill" + std::to_string(victim) + "-r" + std::to_string(r));
  }
  ASSERT_TRUE(moeserve::testing::wait_until(
      [&] {
        return moeserve::testing::read_file(ranks[victim].err).find("weights bound") !=
               std::string::npos;
      },
      milliseconds(20000)));
  std::this_thread::sleep_for(milliseconds(700));  // well into generation
  ranks[victim].process->signal(SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  const int survivor = 1 - victim;
  EXPECT_EQ(ranks[survivor].process->wait(milliseconds(3000 + 10000)), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, milliseconds(3000 + 10000));
  const std::string err = moeserve::testing::read_file(ranks[survivor].err);
  EXPECT_NE(err.find("lost rank " + std::to_string(victim)), std::string::npos) << err;
  EXPECT_TRUE(results(ranks[survivor]).empty());
}

INSTANTIATE_TEST_SUITE_P(Victims, LostRank, ::testing::Values(0, 1));

// A hung rank (stopped, its connections open) is only noticed by the deadline: the
// other rank fails with deadline_exceeded naming it after about the collective timeout.
TEST_F(GroupGenerate, AHungRankFailsTheOtherAtTheCollectiveTimeout) {
  const uint16_t port = moeserve::testing::free_port();
  std::vector<Rank> ranks(2);
  for (int r = 1; r >= 0; --r) {
    auto args = rank_args(generate_args("bf16", 3000), r, 2, port);
    for (const char* a : {"--ignore-eos", "--collective-timeout-ms", "1500"}) args.push_back(a);
    ranks[r] = start(args, "hang-r" + std::to_string(r));
  }
  ASSERT_TRUE(moeserve::testing::wait_until(
      [&] {
        return moeserve::testing::read_file(ranks[1].err).find("weights bound") !=
               std::string::npos;
      },
      milliseconds(20000)));
  std::this_thread::sleep_for(milliseconds(500));
  ranks[1].process->signal(SIGSTOP);
  const auto stopped_at = std::chrono::steady_clock::now();
  EXPECT_EQ(ranks[0].process->wait(milliseconds(1500 + 10000)), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - stopped_at, milliseconds(1500 + 10000));
  const std::string err = moeserve::testing::read_file(ranks[0].err);
  EXPECT_NE(err.find("deadline_exceeded: lost rank 1"), std::string::npos) << err;
  ranks[1].process->signal(SIGKILL);
}

}  // namespace
}  // namespace moeserve::engine
