// PrometheusSource: the MetricSource behind --prometheus-url; it sends instant PromQL
// queries to a Prometheus server's HTTP API (common/http_client.h). Thread-safety as
// MetricSource (metric_source.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/http_client.h"
#include "operator/autoscaler/metric_source.h"

namespace moeserve::autoscaler {

struct PrometheusOptions {
  std::string url;  // "http://prometheus.monitoring:9090"
  int64_t rate_window_seconds = 120;
  int64_t load_window_seconds = 600;
  int64_t timeout_ms = 5000;
};

// Instant queries against /api/v1/query; series are selected by the labels namespace
// and deployment (the worker's constant label; namespace from the scrape config).
class PrometheusSource : public MetricSource {
 public:
  PrometheusSource(std::shared_ptr<const http::Client> http, PrometheusOptions options);
  Measurement measure(const ScrapeTarget& target, Clock::TimePoint now) override;
  void forget(const std::string&) override {}

  // The PromQL this source sends for a deployment, in the order of Measurement's fields
  // (tokens/s, TTFT p95, waiting, expert load), with the metric names of target.engine
  // (no expert-load query for engines that do not export expert loads).
  std::vector<std::string> queries(const ScrapeTarget& target) const;

 private:
  struct Series {
    std::map<std::string, std::string> labels;
    double value = 0;
  };
  StatusOr<std::vector<Series>> query(const std::string& promql) const;

  std::shared_ptr<const http::Client> http_;
  PrometheusOptions options_;
};

// Parses a /api/v1/query response body of resultType vector or scalar into
// (labels, value) pairs; errors carry Prometheus' errorType and error.
StatusOr<std::vector<std::pair<std::map<std::string, std::string>, double>>> parse_query_response(
    const std::string& body);

}  // namespace moeserve::autoscaler
