// The WorkerControl gRPC service through a real gRPC client (the generated stub) over
// loopback: GetStats reports the scheduler's counters and per-layer expert load since a
// sequence number, Drain stops admission, Health reflects readiness.
#include "worker/server/control_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <numeric>

#include "tests/support/test_util.h"
#include "tools/fixtures/tiny_model.h"
#include "worker.grpc.pb.h"
#include "worker/model/weights.h"

namespace moeserve::server {
namespace {

using namespace std::chrono_literals;

class ControlServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fixtures::write_tiny_model(dir_.path(), {}).ok());
    auto loaded = model::load_model(dir_.path(), {.load_mtp = false, .prefault = false});
    ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
    auto model = std::make_shared<const model::LoadedModel>(std::move(loaded).value());
    auto engine = engine::Engine::create(
        model, {.threads = 2, .kv_cache_tokens = 1024, .record_routing = true});
    ASSERT_TRUE(engine.ok());
    scheduler_ =
        std::make_unique<engine::Scheduler>(std::move(engine).value(), engine::SchedulerOptions{});
    scheduler_->start();
    info_.model = "tiny";
    info_.deployment = "test";
    info_.precision = "bf16";
    metrics_ = std::make_unique<WorkerMetrics>(info_, *scheduler_);
    ControlContext ctx;
    ctx.scheduler = scheduler_.get();
    ctx.metrics = metrics_.get();
    ctx.info = info_;
    ctx.ready = [this] { return draining_ ? unavailable_error("draining") : ok_status(); };
    ctx.drain = [this] {
      draining_ = true;
      scheduler_->drain();
    };
    auto server = ControlServer::start(ctx, "127.0.0.1", 0);
    ASSERT_TRUE(server.ok()) << server.status().to_string();
    server_ = std::move(server).value();
    stub_ = moeserve::v1::WorkerControl::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  }

  void generate(int32_t prompt_tokens, int64_t max_tokens) {
    engine::GenerationRequest r;
    for (int32_t i = 0; i < prompt_tokens; ++i) r.prompt.push_back(10 + i);
    r.max_tokens = max_tokens;
    auto stream = scheduler_->submit(r);
    ASSERT_TRUE(stream.ok());
    while (!(*stream)->done()) (*stream)->next(100ms);
    metrics_->record_success("length", prompt_tokens, max_tokens);
  }

  moeserve::v1::GetStatsResponse get_stats(uint64_t since) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    moeserve::v1::GetStatsRequest request;
    request.set_since_sequence(since);
    moeserve::v1::GetStatsResponse response;
    const grpc::Status status = stub_->GetStats(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  static uint64_t sum(const moeserve::v1::ExpertLoad& load) {
    return std::accumulate(load.tokens_per_expert().begin(), load.tokens_per_expert().end(),
                           uint64_t{0});
  }

  moeserve::testing::TempDir dir_;
  std::unique_ptr<engine::Scheduler> scheduler_;
  WorkerInfo info_;
  std::unique_ptr<WorkerMetrics> metrics_;
  std::unique_ptr<ControlServer> server_;
  std::unique_ptr<moeserve::v1::WorkerControl::Stub> stub_;
  std::atomic<bool> draining_{false};
};

TEST_F(ControlServiceTest, GetStatsReportsCountersAndExpertLoadSinceASequence) {
  generate(12, 3);  // steps 1 (prefill of 12) .. 3
  const auto first = get_stats(0);
  EXPECT_EQ(first.sequence(), 3u);
  EXPECT_EQ(first.prompt_tokens_total(), 12u);
  EXPECT_EQ(first.generation_tokens_total(), 3u);
  EXPECT_EQ(first.num_requests_running(), 0u);
  EXPECT_EQ(first.num_requests_waiting(), 0u);
  EXPECT_EQ(first.kv_cache_usage_ratio(), 0.0);
  EXPECT_EQ(first.model(), "tiny");
  EXPECT_EQ(first.world_size(), 1);
  ASSERT_EQ(first.expert_load_size(), 2);  // the tiny model's MoE layers 1 and 2
  EXPECT_EQ(first.expert_load(0).layer(), 1);
  EXPECT_EQ(first.expert_load(0).tokens_per_expert_size(), 16);
  const uint64_t top_k = scheduler_->config().num_experts_per_tok;
  EXPECT_EQ(sum(first.expert_load(0)), (12 + 2) * top_k);

  generate(5, 2);  // steps 4 and 5
  const auto later = get_stats(first.sequence());
  EXPECT_EQ(later.sequence(), 5u);
  EXPECT_EQ(sum(later.expert_load(1)), (5 + 1) * top_k);
  EXPECT_EQ(later.prompt_tokens_total(), 17u);
}

TEST_F(ControlServiceTest, DrainStopsAdmissionAndHealthTurnsNotReady) {
  grpc::ClientContext health_context;
  moeserve::v1::HealthResponse health;
  ASSERT_TRUE(stub_->Health(&health_context, {}, &health).ok());
  EXPECT_TRUE(health.live());
  EXPECT_TRUE(health.ready());

  grpc::ClientContext drain_context;
  moeserve::v1::DrainResponse drained;
  ASSERT_TRUE(stub_->Drain(&drain_context, {}, &drained).ok());
  EXPECT_EQ(drained.num_requests_remaining(), 0u);
  engine::GenerationRequest r;
  r.prompt = {1, 2, 3};
  EXPECT_EQ(scheduler_->submit(r).status().code(), StatusCode::kUnavailable);

  grpc::ClientContext again;
  ASSERT_TRUE(stub_->Health(&again, {}, &health).ok());
  EXPECT_TRUE(health.live());
  EXPECT_FALSE(health.ready());
  EXPECT_EQ(health.reason(), "draining");
}

}  // namespace
}  // namespace moeserve::server
