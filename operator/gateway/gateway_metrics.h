// The gateway's Prometheus metrics (named after vLLM's router, under moeserve_gateway_;
// docs/metrics.md lists them). One registry, owned here. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace moeserve::gateway {

class GatewayMetrics {
 public:
  GatewayMetrics();

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // One finished request: its status code and seconds from arrival to the last byte.
  void record_request(const std::string& model, int status, double seconds);
  // Seconds from arrival to the first byte sent to the client (a whole response counts
  // as its first byte); from_zero when the request waited for its deployment to wake.
  void record_first_byte(const std::string& model, double seconds, bool from_zero);
  void record_route(const std::string& model, std::string_view reason);
  void record_upstream_failure(const std::string& upstream);
  // Requests held while `deployment` has no ready group.
  void set_waiting(const std::string& deployment, int64_t waiting);
  // Why held requests were refused: "full" or "timeout" (or "no_group": nothing to wake).
  void record_queue_refusal(const std::string& model, std::string_view reason);
  void set_upstream(const std::string& model, const std::string& upstream, bool up,
                    int64_t outstanding_tokens);
  // Drops the gauges of an upstream gone from discovery.
  void forget_upstream(const std::string& upstream);

 private:
  struct UpstreamGauges {
    prometheus::Gauge* up = nullptr;
    prometheus::Gauge* outstanding = nullptr;
  };

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* latency_;
  prometheus::Family<prometheus::Histogram>* ttft_;
  prometheus::Family<prometheus::Histogram>* ttft_from_zero_;
  prometheus::Family<prometheus::Counter>* routes_;
  prometheus::Family<prometheus::Counter>* upstream_failures_;
  prometheus::Family<prometheus::Gauge>* waiting_;
  prometheus::Family<prometheus::Counter>* queue_refusals_;
  prometheus::Family<prometheus::Gauge>* upstream_up_;
  prometheus::Family<prometheus::Gauge>* outstanding_;
  std::mutex mutex_;
  std::map<std::string, UpstreamGauges> upstreams_;
};

}  // namespace moeserve::gateway
