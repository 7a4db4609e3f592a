#include "worker/server/worker_metrics.h"

#include <string>

namespace moeserve::server {
namespace {

using prometheus::Histogram;

Histogram::BucketBoundaries latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,
          0.5,   0.75,   1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
}

Histogram::BucketBoundaries inter_token_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
          0.075, 0.1,    0.15,  0.2,  0.3,   0.4,  0.5,   0.75, 1.0,  2.5};
}

// Adds to `counter` what a scheduler total gained since the last refresh.
void advance(prometheus::Counter* counter, int64_t now, int64_t& seen) {
  counter->Increment(static_cast<double>(now - seen));
  seen = now;
}

}  // namespace

void add_worker_info(prometheus::Registry& registry, const WorkerInfo& info) {
  prometheus::BuildGauge()
      .Name("moeserve_worker_info")
      .Help("Constant 1; the labels describe the worker")
      .Labels({{"deployment", info.deployment}})
      .Register(registry)
      .Add({{"model", info.model},
            {"precision", info.precision},
            {"rank", std::to_string(info.rank)},
            {"world_size", std::to_string(info.world_size)},
            {"version", MOESERVE_VERSION}})
      .Set(1);
}

WorkerMetrics::WorkerMetrics(const WorkerInfo& info, const engine::Scheduler& scheduler)
    : scheduler_(scheduler), registry_(std::make_shared<prometheus::Registry>()) {
  const prometheus::Labels base = {{"model", info.model}, {"deployment", info.deployment}};
  auto& r = *registry_;
  prompt_tokens_counter_ = &prometheus::BuildCounter()
                                .Name("moeserve_prompt_tokens_total")
                                .Help("Prompt tokens of completed requests (their usage)")
                                .Labels(base)
                                .Register(r)
                                .Add({});
  generation_tokens_counter_ =
      &prometheus::BuildCounter()
           .Name("moeserve_generation_tokens_total")
           .Help("Generated tokens of completed requests (their usage.completion_tokens)")
           .Labels(base)
           .Register(r)
           .Add({});
  prefix_hits_counter_ = &prometheus::BuildCounter()
                              .Name("moeserve_prefix_cache_hit_tokens_total")
                              .Help("Prompt tokens whose KV came from the prefix cache")
                              .Labels(base)
                              .Register(r)
                              .Add({});
  success_ = &prometheus::BuildCounter()
                  .Name("moeserve_request_success_total")
                  .Help("Requests that completed, by finish reason")
                  .Labels(base)
                  .Register(r);
  success_->Add({{"finish_reason", "stop"}});
  success_->Add({{"finish_reason", "length"}});
  errors_ = &prometheus::BuildCounter()
                 .Name("moeserve_request_errors_total")
                 .Help("Requests answered with an error, by HTTP status (499: client left)")
                 .Labels(base)
                 .Register(r);
  running_ = &prometheus::BuildGauge()
                  .Name("moeserve_num_requests_running")
                  .Help("Requests being generated")
                  .Labels(base)
                  .Register(r)
                  .Add({});
  waiting_ = &prometheus::BuildGauge()
                  .Name("moeserve_num_requests_waiting")
                  .Help("Requests queued for admission")
                  .Labels(base)
                  .Register(r)
                  .Add({});
  kv_usage_ = &prometheus::BuildGauge()
                   .Name("moeserve_kv_cache_usage_ratio")
                   .Help("Fraction of KV cache blocks held by requests (0 to 1)")
                   .Labels(base)
                   .Register(r)
                   .Add({});
  auto histogram = [&](const char* name, const char* help, Histogram::BucketBoundaries b) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Labels(base).Register(r).Add(
        {}, std::move(b));
  };
  ttft_ =
      histogram("moeserve_time_to_first_token_seconds",
                "Seconds from receiving a request to its first generated token", latency_buckets());
  itl_ = histogram("moeserve_inter_token_latency_seconds",
                   "Seconds between consecutive token groups of a request", inter_token_buckets());
  e2e_ = histogram("moeserve_e2e_request_latency_seconds",
                   "Seconds from receiving a request to its last token", latency_buckets());
  queue_ =
      histogram("moeserve_request_queue_time_seconds",
                "Seconds a request waited before its first scheduling step", latency_buckets());

  auto& experts = prometheus::BuildCounter()
                      .Name("moeserve_expert_tokens_total")
                      .Help("Tokens routed to each logical expert, per MoE layer")
                      .Labels(base)
                      .Register(r);
  for (const engine::LayerExpertTokens& layer : scheduler.expert_load().total().layers) {
    std::vector<prometheus::Counter*> counters;
    for (size_t e = 0; e < layer.tokens_per_expert.size(); ++e) {
      counters.push_back(
          &experts.Add({{"layer", std::to_string(layer.layer)}, {"expert", std::to_string(e)}}));
    }
    expert_counters_.push_back(std::move(counters));
    experts_seen_.emplace_back(layer.tokens_per_expert.size(), 0);
  }

  const engine::SchedulerStats stats = scheduler.stats();
  auto& drafts = prometheus::BuildCounter()
                     .Name("moeserve_spec_decode_draft_tokens_total")
                     .Help("Draft tokens verified by speculative decoding, by draft position")
                     .Labels(base)
                     .Register(r);
  auto& accepted = prometheus::BuildCounter()
                       .Name("moeserve_spec_decode_accepted_tokens_total")
                       .Help("Draft tokens the main model accepted, by draft position")
                       .Labels(base)
                       .Register(r);
  for (size_t i = 0; i < stats.spec_draft_tokens_by_position.size(); ++i) {
    spec_draft_counters_.push_back(&drafts.Add({{"position", std::to_string(i)}}));
    spec_accepted_counters_.push_back(&accepted.Add({{"position", std::to_string(i)}}));
  }
  spec_draft_seen_.assign(spec_draft_counters_.size(), 0);
  spec_accepted_seen_.assign(spec_accepted_counters_.size(), 0);

  add_worker_info(r, info);
}

void WorkerMetrics::record_success(const std::string& finish_reason, int64_t prompt_tokens,
                                   int64_t completion_tokens) {
  success_->Add({{"finish_reason", finish_reason}}).Increment();
  prompt_tokens_counter_->Increment(static_cast<double>(prompt_tokens));
  generation_tokens_counter_->Increment(static_cast<double>(completion_tokens));
  prompt_tokens_.fetch_add(prompt_tokens);
  generation_tokens_.fetch_add(completion_tokens);
}

void WorkerMetrics::record_error(int status) {
  errors_->Add({{"code", std::to_string(status)}}).Increment();
}

void WorkerMetrics::observe_time_to_first_token(double s) { ttft_->Observe(s); }
void WorkerMetrics::observe_inter_token_latency(double s) { itl_->Observe(s); }
void WorkerMetrics::observe_e2e_latency(double s) { e2e_->Observe(s); }
void WorkerMetrics::observe_queue_time(double s) { queue_->Observe(s); }

void WorkerMetrics::refresh() {
  const engine::SchedulerStats stats = scheduler_.stats();
  const engine::ExpertLoad load = scheduler_.expert_load().total();
  std::lock_guard<std::mutex> lock(refresh_mutex_);
  running_->Set(static_cast<double>(stats.running_requests));
  waiting_->Set(static_cast<double>(stats.waiting_requests));
  kv_usage_->Set(stats.kv_cache_usage);
  advance(prefix_hits_counter_, stats.prefix_cache_hit_tokens_total, prefix_hits_seen_);
  for (size_t i = 0; i < spec_draft_counters_.size(); ++i) {
    advance(spec_draft_counters_[i], stats.spec_draft_tokens_by_position[i], spec_draft_seen_[i]);
    advance(spec_accepted_counters_[i], stats.spec_accepted_tokens_by_position[i],
            spec_accepted_seen_[i]);
  }
  for (size_t slot = 0; slot < load.layers.size() && slot < expert_counters_.size(); ++slot) {
    const std::vector<uint64_t>& now = load.layers[slot].tokens_per_expert;
    for (size_t e = 0; e < now.size(); ++e) {
      expert_counters_[slot][e]->Increment(static_cast<double>(now[e] - experts_seen_[slot][e]));
      experts_seen_[slot][e] = now[e];
    }
  }
}

}  // namespace moeserve::server
