// Per-deployment gauges on the operator's /metrics, labels namespace and deployment
// (names referenced by deploy/monitoring's dashboard and alert rules; keep them):
//   moeserve_deployment_replicas_desired, moeserve_deployment_replicas_ready,
//   moeserve_deployment_tokens_per_second, moeserve_deployment_cost_per_million_tokens_usd,
//   moeserve_deployment_cost_budget_per_million_tokens_usd (only with a budget),
//   moeserve_deployment_ttft_p95_slo_seconds (only with an SLO),
//   moeserve_deployment_placement_balancedness, moeserve_deployment_worker_restarts;
// and for live placement switches (record_placement_switch):
//   moeserve_deployment_placement_switches_total{result} (Committed | Aborted),
//   moeserve_deployment_placement_switch_duration_seconds (histogram, committed ones).
// Every deployment that was reconciled has the always-present series; a value not
// known (tokens/s before the first measurement, cost without tokens or price,
// balancedness without a placement map) is NaN, which PromQL comparisons treat as
// false, so no alert fires on an unknown. remove() drops every series of a deployment.
// Thread-safe (prometheus-cpp families are).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace moeserve::autoscaler {

struct DeploymentValues {
  int32_t replicas_desired = 0;
  int32_t replicas_ready = 0;
  std::optional<double> tokens_per_second;
  std::optional<double> cost_per_million_tokens_usd;
  std::optional<double> cost_budget_per_million_tokens_usd;
  std::optional<double> ttft_p95_slo_seconds;
  std::optional<double> placement_balancedness;
  int64_t worker_restarts = 0;
};

class DeploymentGauges {
 public:
  explicit DeploymentGauges(prometheus::Registry& registry);

  void set(const std::string& ns, const std::string& name, const DeploymentValues& values);
  void remove(const std::string& ns, const std::string& name);
  // One ended placement switch (`result` Committed or Aborted; the duration of a
  // committed one when known).
  void record_placement_switch(const std::string& ns, const std::string& name,
                               const std::string& result, std::optional<double> seconds);

 private:
  prometheus::Family<prometheus::Counter>* switches_;
  prometheus::Family<prometheus::Histogram>* switch_seconds_;
  prometheus::Family<prometheus::Gauge>* desired_;
  prometheus::Family<prometheus::Gauge>* ready_;
  prometheus::Family<prometheus::Gauge>* tokens_;
  prometheus::Family<prometheus::Gauge>* cost_;
  prometheus::Family<prometheus::Gauge>* budget_;
  prometheus::Family<prometheus::Gauge>* slo_;
  prometheus::Family<prometheus::Gauge>* balancedness_;
  prometheus::Family<prometheus::Gauge>* restarts_;
};

}  // namespace moeserve::autoscaler
