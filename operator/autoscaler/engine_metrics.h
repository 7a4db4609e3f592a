// The Prometheus series the autoscaler reads from a group leader's /metrics, per
// engine (spec.engine.kind), so that one WorkerSample, and with it tokens/s, cost per
// million tokens, status, events and scaling, comes out of moeserve's worker, vLLM or
// SGLang alike. Names as those engines export them (docs/engines.md names the versions):
//
// clang-format off
//   series     moeserve                              vLLM                              SGLang
//   prompt     moeserve_prompt_tokens_total          vllm:prompt_tokens_total          sglang:prompt_tokens_total
//   generated  moeserve_generation_tokens_total      vllm:generation_tokens_total      sglang:generation_tokens_total
//   TTFT       moeserve_time_to_first_token_seconds  vllm:time_to_first_token_seconds  sglang:time_to_first_token_seconds
//   waiting    moeserve_num_requests_waiting         vllm:num_requests_waiting         sglang:num_queue_reqs
//   experts    moeserve_expert_tokens_total          (none: the engines balance experts themselves)
// clang-format on
//
// Series are summed over their other labels (vLLM labels each data-parallel engine
// with engine="<rank>"; SGLang labels by model_name and rank). The TTFT histogram's
// +Inf bucket also gives requests started per second. Running requests and KV cache
// usage are on the dashboard, not in the autoscaler's measurement.
#pragma once

#include <string_view>

namespace moeserve::autoscaler {

enum class EngineMetrics { kMoeserve, kVllm, kSglang };

struct MetricNames {
  const char* engine;             // "moeserve" | "vllm" | "sglang", for messages
  const char* prompt_tokens;      // counter
  const char* generation_tokens;  // counter
  const char* ttft_bucket;        // histogram buckets (the family's _bucket series)
  const char* requests_waiting;   // gauge
  const char* expert_tokens;      // counter per (layer, expert); nullptr: not exported
};

const MetricNames& metric_names(EngineMetrics engine);

}  // namespace moeserve::autoscaler
