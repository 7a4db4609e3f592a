// MTP drafting in an expert-parallel group (threads of this process on real gloo
// groups): rank 0 decodes and drafts, rank 1 follows the group protocol and lends its
// experts, the MTP block's among them (kMtpForward). The drafts equal one process's, with
// contiguous blocks, with a placement file that replicates experts (one entry for every
// MoE layer, the MTP layer's included), and with a file for the main MoE layers only.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_util.h"
#include "tests/worker/engine/drafter_trace.h"
#include "tests/worker/engine/tiny_engine.h"
#include "worker/engine/group_step.h"
#include "worker/engine/mtp_drafter.h"
#include "worker/parallel/group.h"

namespace moeserve::engine {
namespace {

constexpr int kSteps = 12;
constexpr int32_t kMaxDraft = 2;

std::vector<std::vector<int32_t>> group_prompts() {
  return {testing::test_prompt(9, 512, 1), testing::test_prompt(14, 512, 2)};
}

class MtpGroup : public ::testing::TestWithParam<std::string> {};

TEST_P(MtpGroup, DraftsOnTwoRanksEqualOneRank) {
  moeserve::testing::TempDir dir;
  // A random module: its MoE block's output matters to the drafts.
  auto model = testing::make_tiny_model(
      dir.path(), {.precision = model::WeightPrecision::kFp8, .seed = 5}, /*load_mtp=*/true);
  ASSERT_NE(model, nullptr);
  ASSERT_TRUE(model->config.is_moe_layer(model->config.num_hidden_layers));
  std::vector<testing::Trace> want;
  {
    auto engine = testing::make_engine(model);
    auto drafter = MtpDrafter::create(engine.get());
    ASSERT_TRUE(drafter.ok()) << drafter.status().to_string();
    want = testing::decode_with_drafter(*engine, **drafter, group_prompts(), kSteps, kMaxDraft);
  }
  std::string placement_path;
  if (!GetParam().empty()) {
    placement_path = dir.path() + "/placement.json";
    std::ofstream(placement_path) << GetParam();
  }

  const uint16_t port = moeserve::testing::free_port();
  std::vector<testing::Trace> got;
  auto rank_main = [&](int rank) {
    parallel::GroupOptions o;
    o.rank = rank;
    o.world_size = 2;
    o.leader = "127.0.0.1:" + std::to_string(port);
    auto group = parallel::Group::join(o);
    ASSERT_TRUE(group.ok()) << group.status().to_string();
    auto engine = testing::make_engine(model);
    auto dispatcher = attach_group_experts(*engine, (*group)->comm(), placement_path);
    ASSERT_TRUE(dispatcher.ok()) << dispatcher.status().to_string();
    const parallel::ExpertPlacement& placement = (*dispatcher)->placement();
    ASSERT_TRUE(placement.has_layer(model->config.num_hidden_layers));
    EXPECT_EQ(placement.phy2log(model->config.num_hidden_layers),
              placement.phy2log(model->config.num_hidden_layers - 1));
    if (rank == 1) {
      const Status followed = follow_leader((*group)->comm(), **dispatcher);
      EXPECT_TRUE(followed.ok()) << followed.to_string();
      return;
    }
    LeaderStepper leader((*group)->comm());
    auto drafter =
        MtpDrafter::create(engine.get(), [&leader] { return leader.begin_mtp_forward(); });
    ASSERT_TRUE(drafter.ok()) << drafter.status().to_string();
    got = testing::decode_with_drafter(*engine, **drafter, group_prompts(), kSteps, kMaxDraft,
                                       [&leader] { return leader.begin_forward(); });
    ASSERT_TRUE(leader.stop().ok());
  };
  std::thread follower(rank_main, 1);
  rank_main(0);
  follower.join();

  ASSERT_EQ(got.size(), want.size());
  for (size_t p = 0; p < want.size(); ++p) {
    EXPECT_EQ(got[p].tokens, want[p].tokens) << "prompt " << p;
    ASSERT_EQ(got[p].drafts.size(), want[p].drafts.size());
    for (size_t s = 0; s < want[p].drafts.size(); ++s) {
      ASSERT_EQ(want[p].drafts[s].size(), static_cast<size_t>(kMaxDraft));
      EXPECT_EQ(got[p].drafts[s], want[p].drafts[s]) << "prompt " << p << " step " << s;
    }
  }
}

// 16 experts; the file's single entry applies to every MoE layer and replicates 0-3.
INSTANTIATE_TEST_SUITE_P(
    Placements, MtpGroup,
    ::testing::Values(
        "",
        R"({"version":1,"layers":[{"phy2log":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,0,1,2,3]}]})",
        // One entry per main MoE layer (1 and 2) only: the MTP layer takes layer 2's.
        R"({"version":1,"layers":[{"phy2log":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,0,1,2,3]},)"
        R"({"phy2log":[15,14,13,12,11,10,9,8,7,6,5,4,3,2,1,0,4,5,6,7]}]})"),
    [](const auto& info) {
      if (info.param.empty()) return "Contiguous";
      return info.param.find("15,14") == std::string::npos ? "ReplicatedFromFile"
                                                           : "MainLayersOnlyFile";
    });

}  // namespace
}  // namespace moeserve::engine
