// The live placement switch (worker/engine/placement_switch.h) on real gloo groups of
// threads in this process: prepare/poll/commit moves every rank to the new placement
// at the same step; a rank failing to prepare, or a map that does not fit the world,
// aborts the switch for the whole group, which keeps the old placement; greedy outputs
// of requests in flight across a switch equal one process's, on 2 and 4 ranks.
#include "worker/engine/placement_switch.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include "tests/support/test_util.h"
#include "tests/worker/engine/reference_generate.h"
#include "tests/worker/engine/tiny_engine.h"
#include "worker/engine/group_step.h"
#include "worker/engine/placement_watch.h"
#include "worker/parallel/group.h"

namespace moeserve::engine {
namespace {

using namespace std::chrono_literals;

// 16 experts in 20 slots (replicas of experts 0-3), a layout unlike the contiguous one
// the groups start with, so every rank gains and loses experts.
constexpr char kNewPlacement[] =
    R"({"version":2,"layers":[{"phy2log":[15,14,13,12,11,10,9,8,7,6,5,4,3,2,1,0,3,2,1,0]}]})";
// 18 slots: not divisible by 4 ranks.
constexpr char kUnfitPlacement[] =
    R"({"version":3,"layers":[{"phy2log":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,0,1]}]})";

class PlacementSwitchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new moeserve::testing::TempDir();
    model_ = testing::make_tiny_model(dir_->path(), model::Architecture::kDeepseekV3,
                                      model::WeightPrecision::kFp8, 13);
  }
  static void TearDownTestSuite() {
    model_.reset();
    delete dir_;
  }
  static moeserve::testing::TempDir* dir_;
  static std::shared_ptr<const model::LoadedModel> model_;
};
moeserve::testing::TempDir* PlacementSwitchTest::dir_ = nullptr;
std::shared_ptr<const model::LoadedModel> PlacementSwitchTest::model_;

// One rank of an in-process group: joined, an engine with expert parallelism over the
// contiguous default placement, and its PlacementSwitch with `preparer`.
struct Rank {
  std::unique_ptr<parallel::Group> group;
  std::unique_ptr<Engine> engine;
  ExpertParallelDispatcher* dispatcher = nullptr;
  std::unique_ptr<PlacementSwitch> placement;
};

Rank join_rank(int rank, int world, uint16_t port, std::shared_ptr<const model::LoadedModel> model,
               SlotPreparer preparer) {
  Rank r;
  parallel::GroupOptions o;
  o.rank = rank;
  o.world_size = world;
  o.leader = "127.0.0.1:" + std::to_string(port);
  o.collective_timeout = 30000ms;
  auto group = parallel::Group::join(o);
  EXPECT_TRUE(group.ok()) << group.status().to_string();
  if (!group.ok()) return r;
  r.group = std::move(group).value();
  r.engine = testing::make_engine(model, EngineOptions{.threads = 1, .record_routing = true});
  auto dispatcher = attach_group_experts(*r.engine, r.group->comm(), "");
  EXPECT_TRUE(dispatcher.ok()) << dispatcher.status().to_string();
  r.dispatcher = *dispatcher;
  r.placement =
      std::make_unique<PlacementSwitch>(r.group->comm(), *r.dispatcher, std::move(preparer));
  return r;
}

// A preparer that faults pages in for real and fails on `failing_rank` (-1: none).
SlotPreparer failing_on(int rank, int failing_rank) {
  return [rank, failing_rank](const std::vector<const model::Linear*>& added,
                              const std::atomic<bool>& cancel) -> Status {
    if (rank == failing_rank) return internal_error("cannot read the new experts' pages");
    return fault_in_pages(added, cancel);
  };
}

// Runs `world` ranks: followers follow; rank 0 offers `text` at its first step boundary,
// then heartbeats (polls) until the switch ends, then forwards one prompt. Returns rank
// 0's report; every rank's running placement version lands in `versions`.
PlacementSwitchReport run_switch(std::shared_ptr<const model::LoadedModel> model, int world,
                                 const std::string& text, int failing_rank,
                                 std::vector<int64_t>* versions, std::vector<float>* logits,
                                 const std::function<void(const Rank&)>& inspect_rank0 = {}) {
  const uint16_t port = moeserve::testing::free_port();
  versions->assign(world, -1);
  PlacementSwitchReport report;
  auto rank_main = [&](int rank) {
    Rank r = join_rank(rank, world, port, model, failing_on(rank, failing_rank));
    ASSERT_NE(r.dispatcher, nullptr);
    if (rank > 0) {
      EXPECT_TRUE(follow_leader(r.group->comm(), *r.dispatcher, &*r.placement).ok());
      (*versions)[rank] = r.dispatcher->placement().version();
      return;
    }
    LeaderStepper leader(r.group->comm());
    bool offered = false;
    leader.enable_live_placement(&*r.placement, [&]() -> std::optional<std::string> {
      if (offered) return std::nullopt;
      offered = true;
      return text;
    });
    ASSERT_TRUE(leader.heartbeat().ok());  // begins
    EXPECT_TRUE(r.placement->in_flight());
    for (int i = 0; i < 10000 && r.placement->in_flight(); ++i) {
      ASSERT_TRUE(leader.heartbeat().ok());
      std::this_thread::sleep_for(1ms);
    }
    EXPECT_FALSE(r.placement->in_flight());
    if (inspect_rank0) inspect_rank0(r);
    ASSERT_TRUE(leader.begin_forward().ok());
    SequenceKv seq;
    *logits = testing::forward_all(*r.engine, seq, testing::test_prompt(11, 512));
    r.engine->kv_cache().release(seq);
    report = r.placement->report();
    (*versions)[0] = r.dispatcher->placement().version();
    ASSERT_TRUE(leader.stop().ok());
  };
  std::vector<std::thread> followers;
  for (int rank = 1; rank < world; ++rank) followers.emplace_back(rank_main, rank);
  rank_main(0);
  for (std::thread& t : followers) t.join();
  return report;
}

std::vector<float> single_process_logits(std::shared_ptr<const model::LoadedModel> model) {
  auto engine = testing::make_engine(model);
  SequenceKv seq;
  std::vector<float> logits = testing::forward_all(*engine, seq, testing::test_prompt(11, 512));
  engine->kv_cache().release(seq);
  return logits;
}

float worst_difference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

TEST_F(PlacementSwitchTest, EveryRankCommitsTheNewPlacementAtTheSameStep) {
  for (int world : {2, 4}) {
    std::vector<int64_t> versions;
    std::vector<float> logits;
    const PlacementSwitchReport report =
        run_switch(model_, world, kNewPlacement, -1, &versions, &logits);
    EXPECT_EQ(report.committed, 1u) << "world " << world;
    EXPECT_EQ(report.aborted, 0u);
    EXPECT_EQ(report.running_version, 2);
    EXPECT_EQ(report.preparing_version, 0);
    EXPECT_GT(report.last_duration_seconds, 0.0);
    EXPECT_EQ(versions, std::vector<int64_t>(world, 2)) << "world " << world;
    EXPECT_LE(worst_difference(logits, single_process_logits(model_)), 1e-4f);
  }
}

TEST_F(PlacementSwitchTest, ExpertsArrivingOnACopiedRankAreCopiedIntoTheirOwnHugePages) {
  // As an expert-parallel rank 0 of 2 loads: only its contiguous experts (0-7 of 16) in
  // the weights' copy. kNewPlacement gives it 15..6: 8-15 arrive from the mapping.
  moeserve::testing::TempDir dir;
  ASSERT_TRUE(
      fixtures::write_tiny_model(dir.path(), {.architecture = model::Architecture::kDeepseekV3,
                                              .precision = model::WeightPrecision::kFp8,
                                              .seed = 13})
          .ok());
  model::BindOptions options{.load_mtp = false, .prefault = false};
  options.copy_routed_expert = [](int64_t, int64_t expert) { return expert < 8; };
  auto loaded = model::load_model(dir.path(), options);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  auto model = std::make_shared<const model::LoadedModel>(std::move(loaded).value());
  const uint8_t* copy_begin = model->weights.copied_storage.get();
  const uint8_t* copy_end = copy_begin + model->weights.copied_bytes;
  int64_t copied_on_switch = 0, kept_in_load_copy = 0;
  auto inspect = [&](const Rank& r) {
    const parallel::ExpertPlacement& placement = r.dispatcher->placement();
    ASSERT_EQ(placement.version(), 2);
    for (int64_t layer : placement.moe_layers()) {
      const std::vector<int32_t>& phy2log = placement.phy2log(layer);
      for (int64_t s = 0; s < placement.slots_per_rank(); ++s) {
        const int32_t expert = phy2log[placement.first_slot(0) + s];
        const model::Linear& source = model->weights.layer(layer).moe.experts[expert].up_proj;
        const kernels::WeightView& view = r.dispatcher->local_slots()[layer][s].up;
        SCOPED_TRACE("layer " + std::to_string(layer) + " expert " + std::to_string(expert));
        const bool in_load_copy = source.data >= copy_begin && source.data < copy_end;
        EXPECT_EQ(in_load_copy, expert < 8);
        if (in_load_copy) {
          EXPECT_EQ(view.data, source.data);
          ++kept_in_load_copy;
          continue;
        }
        const auto* data = static_cast<const uint8_t*>(view.data);
        EXPECT_NE(data, source.data);
        EXPECT_FALSE(data >= copy_begin && data < copy_end);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % 64, 0u);
        EXPECT_EQ(std::memcmp(data, source.data, static_cast<size_t>(source.rows * source.cols)),
                  0);
        ++copied_on_switch;
      }
    }
  };
  std::vector<int64_t> versions;
  std::vector<float> logits;
  const PlacementSwitchReport report =
      run_switch(model, 2, kNewPlacement, -1, &versions, &logits, inspect);
  EXPECT_EQ(report.committed, 1u);
  EXPECT_GT(copied_on_switch, 0);
  EXPECT_GT(kept_in_load_copy, 0);
  EXPECT_LE(worst_difference(logits, single_process_logits(model)), 1e-4f);
}

TEST_F(PlacementSwitchTest, OneRankFailingToPrepareAbortsTheSwitchForAll) {
  std::vector<int64_t> versions;
  std::vector<float> logits;
  const PlacementSwitchReport report =
      run_switch(model_, 4, kNewPlacement, /*failing_rank=*/2, &versions, &logits);
  EXPECT_EQ(report.committed, 0u);
  EXPECT_EQ(report.aborted, 1u);
  EXPECT_EQ(report.running_version, 0);
  EXPECT_EQ(report.failed_version, 2);
  EXPECT_EQ(report.failure, "rank 2: cannot read the new experts' pages");
  EXPECT_EQ(versions, std::vector<int64_t>(4, 0)) << "everyone keeps the old placement";
  EXPECT_LE(worst_difference(logits, single_process_logits(model_)), 1e-4f);
}

TEST_F(PlacementSwitchTest, AMapThatDoesNotFitTheWorldAbortsNamingTheRule) {
  std::vector<int64_t> versions;
  std::vector<float> logits;
  const PlacementSwitchReport report =
      run_switch(model_, 4, kUnfitPlacement, -1, &versions, &logits);
  EXPECT_EQ(report.aborted, 1u);
  EXPECT_EQ(report.failed_version, 3);
  EXPECT_NE(report.failure.find("rank 0: "), std::string::npos) << report.failure;
  EXPECT_NE(report.failure.find("not divisible by the world size 4"), std::string::npos)
      << report.failure;
  EXPECT_EQ(versions, std::vector<int64_t>(4, 0));
}

TEST_F(PlacementSwitchTest, ShouldBeginOnlyForANewerVersionThatHasNotFailed) {
  const uint16_t port = moeserve::testing::free_port();
  Rank r = join_rank(0, 1, port, model_, {});
  ASSERT_NE(r.dispatcher, nullptr);
  EXPECT_TRUE(r.placement->should_begin(kNewPlacement));
  EXPECT_FALSE(r.placement->should_begin(
      R"({"version":0,"layers":[{"phy2log":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]}]})"));
  EXPECT_FALSE(r.placement->should_begin("not json"));
  EXPECT_EQ(r.placement->report().aborted, 2u) << "version 0 and non-JSON are no placement files";
  EXPECT_NE(r.placement->report().failure.find("not a JSON object"), std::string::npos);
}

// Greedy requests in flight across a switch: rank 0's scheduler offers the new map after
// its third forward; every rank's preparation waits for three more forwards, so the
// switch commits while the requests are still decoding. Tokens equal one process's.
class LiveSwitchInFlight : public PlacementSwitchTest, public ::testing::WithParamInterface<int> {};

TEST_P(LiveSwitchInFlight, GreedyOutputsAreIdenticalAcrossTheSwitch) {
  const int world = GetParam();
  const uint16_t port = moeserve::testing::free_port();
  std::atomic<int64_t> forwards{0};
  std::atomic<int64_t> offered_at{-1};
  SlotPreparer after_three_more = [&](const std::vector<const model::Linear*>& added,
                                      const std::atomic<bool>& cancel) -> Status {
    while (!cancel.load() && forwards.load() < offered_at.load() + 3) {
      std::this_thread::sleep_for(1ms);
    }
    return fault_in_pages(added, cancel);
  };
  const int32_t vocab = static_cast<int32_t>(model_->config.vocab_size);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 5; ++i) prompts.push_back(testing::test_prompt(4 + 7 * i, vocab, i));
  constexpr int64_t kMaxTokens = 20;
  std::vector<std::vector<int32_t>> got(prompts.size());
  int64_t committed_at = -1;
  PlacementSwitchReport report;

  auto rank_main = [&](int rank) {
    Rank r = join_rank(rank, world, port, model_, after_three_more);
    ASSERT_NE(r.dispatcher, nullptr);
    if (rank > 0) {
      EXPECT_TRUE(follow_leader(r.group->comm(), *r.dispatcher, &*r.placement).ok());
      EXPECT_EQ(r.dispatcher->placement().version(), 2) << "rank " << rank;
      return;
    }
    LeaderStepper leader(r.group->comm());
    PlacementSwitch* sw = &*r.placement;
    leader.enable_live_placement(sw, [&]() -> std::optional<std::string> {
      if (offered_at.load() >= 0 || forwards.load() < 3) return std::nullopt;
      offered_at.store(forwards.load());
      return std::string(kNewPlacement);
    });
    SchedulerOptions so;
    install_leader_hooks(leader, 30000, so);
    so.before_forward = [&, hook = so.before_forward]() -> Status {
      MOESERVE_RETURN_IF_ERROR(hook());
      if (committed_at < 0 && sw->report().committed == 1) committed_at = forwards.load();
      ++forwards;
      return ok_status();
    };
    {
      Scheduler scheduler(std::move(r.engine), so);
      scheduler.start();
      std::vector<std::shared_ptr<RequestStream>> streams;
      for (const auto& prompt : prompts) {
        GenerationRequest request;
        request.prompt = prompt;
        request.max_tokens = kMaxTokens;
        auto stream = scheduler.submit(request);
        ASSERT_TRUE(stream.ok()) << stream.status().to_string();
        streams.push_back(*stream);
      }
      for (size_t i = 0; i < streams.size(); ++i) {
        const auto deadline = std::chrono::steady_clock::now() + 120s;
        while (!streams[i]->done() && std::chrono::steady_clock::now() < deadline) {
          for (const GenerationEvent& e : streams[i]->next(100ms)) {
            if (e.has_token) got[i].push_back(e.sample.token);
          }
        }
      }
      scheduler.stop();
    }
    report = sw->report();
    ASSERT_TRUE(leader.stop().ok());
  };
  std::vector<std::thread> followers;
  for (int rank = 1; rank < world; ++rank) followers.emplace_back(rank_main, rank);
  rank_main(0);
  for (std::thread& t : followers) t.join();

  EXPECT_EQ(report.committed, 1u);
  EXPECT_EQ(report.running_version, 2);
  ASSERT_GE(committed_at, 6) << "the switch waited for three forwards after the offer";
  EXPECT_LT(committed_at, forwards.load() - 5) << "requests were still decoding after it";
  auto reference = testing::make_engine(model_);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(got[i], testing::reference_generate(*reference, {prompts[i], kMaxTokens, {}}).tokens)
        << "request " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Worlds, LiveSwitchInFlight, ::testing::Values(2, 4));

TEST(PlacementFileWatch, ReturnsTheTextOnceWhenTheFileIsReplaced) {
  moeserve::testing::TempDir dir;
  const std::string path = dir.file("placement.json");
  moeserve::testing::write_file(path, "v1");
  FakeClock clock;
  PlacementFileWatch watch(path, 1000ms, &clock);
  EXPECT_EQ(watch.changed(), std::nullopt) << "the file at start counts as seen";
  // The kubelet's way: a new file renamed over the old one.
  moeserve::testing::write_file(dir.file("next.json"), "v2 text");
  ASSERT_EQ(std::rename(dir.file("next.json").c_str(), path.c_str()), 0);
  EXPECT_EQ(watch.changed(), std::nullopt) << "re-stat'ed at most once per interval";
  clock.advance(1000ms);
  EXPECT_EQ(watch.changed(), std::optional<std::string>("v2 text"));
  clock.advance(1000ms);
  EXPECT_EQ(watch.changed(), std::nullopt);
  std::remove(path.c_str());
  clock.advance(1000ms);
  EXPECT_EQ(watch.changed(), std::nullopt) << "a missing file is not an event";
}

}  // namespace
}  // namespace moeserve::engine
