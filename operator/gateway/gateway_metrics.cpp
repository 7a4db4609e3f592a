#include "operator/gateway/gateway_metrics.h"

namespace moeserve::gateway {
namespace {

const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  static const prometheus::Histogram::BucketBoundaries buckets = {
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
  return buckets;
}

}  // namespace

GatewayMetrics::GatewayMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  requests_ = &prometheus::BuildCounter()
                   .Name("moeserve_gateway_requests_total")
                   .Help("Requests answered by the gateway, by model and HTTP status code")
                   .Register(*registry_);
  latency_ = &prometheus::BuildHistogram()
                  .Name("moeserve_gateway_request_duration_seconds")
                  .Help("Seconds from a request's arrival to its last byte")
                  .Register(*registry_);
  ttft_ = &prometheus::BuildHistogram()
               .Name("moeserve_gateway_time_to_first_token_seconds")
               .Help("Seconds from a request's arrival to the first byte sent back")
               .Register(*registry_);
  ttft_from_zero_ = &prometheus::BuildHistogram()
                         .Name("moeserve_gateway_time_to_first_token_from_zero_seconds")
                         .Help(
                             "Time to first token of requests that waited for their "
                             "deployment to wake (no ready group when they arrived)")
                         .Register(*registry_);
  routes_ = &prometheus::BuildCounter()
                 .Name("moeserve_gateway_routing_decisions_total")
                 .Help(
                     "Routing decisions by model and reason (affinity, least_loaded, "
                     "round_robin, retry)")
                 .Register(*registry_);
  upstream_failures_ = &prometheus::BuildCounter()
                            .Name("moeserve_gateway_upstream_failures_total")
                            .Help("Requests a group failed (no answer, 5xx, broken stream)")
                            .Register(*registry_);
  waiting_ = &prometheus::BuildGauge()
                  .Name("moeserve_gateway_requests_waiting")
                  .Help("Requests held because their deployment has no ready group (waking)")
                  .Register(*registry_);
  queue_refusals_ = &prometheus::BuildCounter()
                         .Name("moeserve_gateway_queue_rejections_total")
                         .Help(
                             "Requests answered 503 for want of a ready group, by reason "
                             "(full, timeout, no_group)")
                         .Register(*registry_);
  upstream_up_ = &prometheus::BuildGauge()
                      .Name("moeserve_gateway_upstream_up")
                      .Help("1 when a group is ready and not in its failure backoff")
                      .Register(*registry_);
  outstanding_ = &prometheus::BuildGauge()
                      .Name("moeserve_gateway_upstream_outstanding_tokens")
                      .Help(
                          "Prompt plus remaining max_tokens of the requests in flight on a "
                          "group, as the router counts them")
                      .Register(*registry_);
}

void GatewayMetrics::record_request(const std::string& model, int status, double seconds) {
  requests_->Add({{"model", model}, {"code", std::to_string(status)}}).Increment();
  latency_->Add({{"model", model}}, latency_buckets()).Observe(seconds);
}

void GatewayMetrics::record_first_byte(const std::string& model, double seconds, bool from_zero) {
  ttft_->Add({{"model", model}}, latency_buckets()).Observe(seconds);
  if (from_zero) ttft_from_zero_->Add({{"model", model}}, latency_buckets()).Observe(seconds);
}

void GatewayMetrics::record_route(const std::string& model, std::string_view reason) {
  routes_->Add({{"model", model}, {"reason", std::string(reason)}}).Increment();
}

void GatewayMetrics::record_upstream_failure(const std::string& upstream) {
  upstream_failures_->Add({{"upstream", upstream}}).Increment();
}

void GatewayMetrics::set_waiting(const std::string& deployment, int64_t waiting) {
  waiting_->Add({{"deployment", deployment}}).Set(static_cast<double>(waiting));
}

void GatewayMetrics::record_queue_refusal(const std::string& model, std::string_view reason) {
  queue_refusals_->Add({{"model", model}, {"reason", std::string(reason)}}).Increment();
}

void GatewayMetrics::set_upstream(const std::string& model, const std::string& upstream, bool up,
                                  int64_t outstanding_tokens) {
  std::lock_guard<std::mutex> lock(mutex_);
  UpstreamGauges& g = upstreams_[upstream];
  if (!g.up) {
    g.up = &upstream_up_->Add({{"model", model}, {"upstream", upstream}});
    g.outstanding = &outstanding_->Add({{"model", model}, {"upstream", upstream}});
  }
  g.up->Set(up ? 1 : 0);
  g.outstanding->Set(static_cast<double>(outstanding_tokens));
}

void GatewayMetrics::forget_upstream(const std::string& upstream) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = upstreams_.find(upstream);
  if (it == upstreams_.end()) return;
  upstream_up_->Remove(it->second.up);
  outstanding_->Remove(it->second.outstanding);
  upstreams_.erase(it);
}

}  // namespace moeserve::gateway
