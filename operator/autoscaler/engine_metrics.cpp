#include "operator/autoscaler/engine_metrics.h"

namespace moeserve::autoscaler {

const MetricNames& metric_names(EngineMetrics engine) {
  static const MetricNames kMoeserve = {
      "moeserve",
      "moeserve_prompt_tokens_total",
      "moeserve_generation_tokens_total",
      "moeserve_time_to_first_token_seconds_bucket",
      "moeserve_num_requests_waiting",
      "moeserve_expert_tokens_total",
  };
  static const MetricNames kVllm = {
      "vllm",
      "vllm:prompt_tokens_total",
      "vllm:generation_tokens_total",
      "vllm:time_to_first_token_seconds_bucket",
      "vllm:num_requests_waiting",
      nullptr,
  };
  static const MetricNames kSglang = {
      "sglang",
      "sglang:prompt_tokens_total",
      "sglang:generation_tokens_total",
      "sglang:time_to_first_token_seconds_bucket",
      "sglang:num_queue_reqs",
      nullptr,
  };
  switch (engine) {
    case EngineMetrics::kMoeserve: return kMoeserve;
    case EngineMetrics::kVllm: return kVllm;
    case EngineMetrics::kSglang: return kSglang;
  }
  return kMoeserve;
}

}  // namespace moeserve::autoscaler
