#include "operator/autoscaler/deployment_gauges.h"

#include <limits>

namespace moeserve::autoscaler {
namespace {

prometheus::Family<prometheus::Gauge>* family(prometheus::Registry& r, const char* name,
                                              const char* help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r);
}

double or_nan(const std::optional<double>& value) {
  return value.value_or(std::numeric_limits<double>::quiet_NaN());
}

prometheus::Histogram::BucketBoundaries switch_buckets() {
  return {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
}

}  // namespace

DeploymentGauges::DeploymentGauges(prometheus::Registry& r)
    : switches_(&prometheus::BuildCounter()
                     .Name("moeserve_deployment_placement_switches_total")
                     .Help("Live expert-placement switches that ended, by result")
                     .Register(r)),
      switch_seconds_(&prometheus::BuildHistogram()
                           .Name("moeserve_deployment_placement_switch_duration_seconds")
                           .Help("Prepare-to-commit time of committed placement switches "
                                 "(the slowest group)")
                           .Register(r)),
      desired_(family(r, "moeserve_deployment_replicas_desired",
                      "Groups the operator converges to (after autoscaling)")),
      ready_(family(r, "moeserve_deployment_replicas_ready", "Groups whose every pod is ready")),
      tokens_(family(r, "moeserve_deployment_tokens_per_second",
                     "Measured tokens (prompt + generated) per second over all groups")),
      cost_(family(r, "moeserve_deployment_cost_per_million_tokens_usd",
                   "USD per million tokens at the measured throughput")),
      budget_(family(r, "moeserve_deployment_cost_budget_per_million_tokens_usd",
                     "spec.autoscaling.maxCostPerMillionTokens")),
      slo_(family(r, "moeserve_deployment_ttft_p95_slo_seconds",
                  "spec.autoscaling.ttftP95SloSeconds")),
      balancedness_(family(r, "moeserve_deployment_placement_balancedness",
                           "Mean rank load / max rank load of the expert placement")),
      restarts_(family(r, "moeserve_deployment_worker_restarts",
                       "Container restarts summed over the deployment's worker pods")) {}

void DeploymentGauges::set(const std::string& ns, const std::string& name,
                           const DeploymentValues& v) {
  const prometheus::Labels labels = {{"namespace", ns}, {"deployment", name}};
  desired_->Add(labels).Set(v.replicas_desired);
  ready_->Add(labels).Set(v.replicas_ready);
  tokens_->Add(labels).Set(or_nan(v.tokens_per_second));
  cost_->Add(labels).Set(or_nan(v.cost_per_million_tokens_usd));
  balancedness_->Add(labels).Set(or_nan(v.placement_balancedness));
  restarts_->Add(labels).Set(static_cast<double>(v.worker_restarts));
  // The switch series exist (at 0) from the first reconcile on, like the gauges.
  for (const char* result : {"Committed", "Aborted"}) {
    prometheus::Labels with_result = labels;
    with_result["result"] = result;
    switches_->Add(with_result);
  }
  switch_seconds_->Add(labels, switch_buckets());
  for (auto [gauges, value] : {std::pair{budget_, v.cost_budget_per_million_tokens_usd},
                               std::pair{slo_, v.ttft_p95_slo_seconds}}) {
    if (value) {
      gauges->Add(labels).Set(*value);
    } else if (gauges->Has(labels)) {
      gauges->Remove(&gauges->Add(labels));
    }
  }
}

void DeploymentGauges::remove(const std::string& ns, const std::string& name) {
  const prometheus::Labels labels = {{"namespace", ns}, {"deployment", name}};
  for (auto* gauges : {desired_, ready_, tokens_, cost_, budget_, slo_, balancedness_, restarts_}) {
    if (gauges->Has(labels)) gauges->Remove(&gauges->Add(labels));
  }
  for (const char* result : {"Committed", "Aborted"}) {
    prometheus::Labels with_result = labels;
    with_result["result"] = result;
    if (switches_->Has(with_result)) switches_->Remove(&switches_->Add(with_result));
  }
  if (switch_seconds_->Has(labels)) {
    switch_seconds_->Remove(&switch_seconds_->Add(labels, switch_buckets()));
  }
}

void DeploymentGauges::record_placement_switch(const std::string& ns, const std::string& name,
                                               const std::string& result,
                                               std::optional<double> seconds) {
  const prometheus::Labels labels = {{"namespace", ns}, {"deployment", name}};
  prometheus::Labels with_result = labels;
  with_result["result"] = result;
  switches_->Add(with_result).Increment();
  if (result == "Committed" && seconds)
    switch_seconds_->Add(labels, switch_buckets()).Observe(*seconds);
}

}  // namespace moeserve::autoscaler
