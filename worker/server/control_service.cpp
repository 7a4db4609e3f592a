#include "worker/server/control_service.h"

#include <grpcpp/grpcpp.h>

#include "worker.grpc.pb.h"

namespace moeserve::server {
namespace {

class WorkerControlService final : public moeserve::v1::WorkerControl::Service {
 public:
  explicit WorkerControlService(ControlContext context) : ctx_(std::move(context)) {}

  grpc::Status GetStats(grpc::ServerContext*, const moeserve::v1::GetStatsRequest* request,
                        moeserve::v1::GetStatsResponse* response) override {
    const engine::SchedulerStats stats = ctx_.scheduler->stats();
    const engine::ExpertLoad load = ctx_.scheduler->expert_load().since(request->since_sequence());
    response->set_sequence(load.sequence);
    response->set_prompt_tokens_total(static_cast<uint64_t>(ctx_.metrics->prompt_tokens_total()));
    response->set_generation_tokens_total(
        static_cast<uint64_t>(ctx_.metrics->generation_tokens_total()));
    response->set_prefix_cache_hit_tokens_total(
        static_cast<uint64_t>(stats.prefix_cache_hit_tokens_total));
    response->set_num_requests_running(static_cast<uint32_t>(stats.running_requests));
    response->set_num_requests_waiting(static_cast<uint32_t>(stats.waiting_requests));
    response->set_kv_cache_usage_ratio(stats.kv_cache_usage);
    for (const engine::LayerExpertTokens& layer : load.layers) {
      moeserve::v1::ExpertLoad* out = response->add_expert_load();
      out->set_layer(static_cast<int32_t>(layer.layer));
      for (uint64_t n : layer.tokens_per_expert) out->add_tokens_per_expert(n);
    }
    response->set_rank(ctx_.info.rank);
    response->set_world_size(ctx_.info.world_size);
    response->set_model(ctx_.info.model);
    return grpc::Status::OK;
  }

  grpc::Status Drain(grpc::ServerContext*, const moeserve::v1::DrainRequest*,
                     moeserve::v1::DrainResponse* response) override {
    ctx_.drain();
    const engine::SchedulerStats stats = ctx_.scheduler->stats();
    response->set_num_requests_remaining(
        static_cast<uint32_t>(stats.running_requests + stats.waiting_requests));
    return grpc::Status::OK;
  }

  grpc::Status Health(grpc::ServerContext*, const moeserve::v1::HealthRequest*,
                      moeserve::v1::HealthResponse* response) override {
    const Status ready = ctx_.ready();
    response->set_live(true);
    response->set_ready(ready.ok());
    response->set_reason(ready.ok() ? "" : ready.message());
    return grpc::Status::OK;
  }

 private:
  ControlContext ctx_;
};

}  // namespace

struct ControlServer::Impl {
  std::unique_ptr<WorkerControlService> service;
  std::unique_ptr<grpc::Server> server;
};

ControlServer::~ControlServer() { shutdown(); }

StatusOr<std::unique_ptr<ControlServer>> ControlServer::start(ControlContext context,
                                                              const std::string& host, int port) {
  std::unique_ptr<ControlServer> control(new ControlServer());
  control->impl_ = std::make_unique<Impl>();
  control->impl_->service = std::make_unique<WorkerControlService>(std::move(context));
  grpc::ServerBuilder builder;
  int bound = 0;
  // gRPC addresses are HOST:PORT, so an IPv6 literal needs brackets.
  const std::string address = host.find(':') == std::string::npos ? host : "[" + host + "]";
  builder.AddListeningPort(address + ":" + std::to_string(port), grpc::InsecureServerCredentials(),
                           &bound);
  builder.RegisterService(control->impl_->service.get());
  control->impl_->server = builder.BuildAndStart();
  if (control->impl_->server == nullptr || bound == 0) {
    return unavailable_error("gRPC control service: cannot listen on " + host + ":" +
                             std::to_string(port));
  }
  control->port_ = bound;
  return control;
}

void ControlServer::shutdown() {
  if (impl_ != nullptr && impl_->server != nullptr) {
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    impl_->server->Wait();
    impl_->server.reset();
  }
}

}  // namespace moeserve::server
