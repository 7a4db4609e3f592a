// Where the autoscaler's measurements come from, behind one interface:
//   ScrapeSource      GET each group's rank-0 worker /metrics directly (the default);
//   PrometheusSource  PromQL over a Prometheus server's HTTP API (--prometheus-url).
// Both use common/http_client.h. A source measures one deployment at a time; measure()
// may be called for different deployments from different threads at once, but never
// for the same deployment concurrently (the Autoscaler guarantees it).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/http_client.h"
#include "operator/autoscaler/worker_sample.h"

namespace moeserve::autoscaler {

// One group's rank-0 worker.
struct GroupEndpoint {
  int32_t group = 0;
  std::string pod;          // "x-g1-0"
  std::string metrics_url;  // "http://10.0.0.7:8000/metrics"
  friend bool operator==(const GroupEndpoint&, const GroupEndpoint&) = default;
};

struct ScrapeTarget {
  std::string ns;
  std::string name;
  std::vector<GroupEndpoint> groups;
  std::string key() const { return ns + "/" + name; }
  friend bool operator==(const ScrapeTarget&, const ScrapeTarget&) = default;
};

struct Measurement {
  std::optional<double> tokens_per_second;  // prompt + generated, all groups
  std::optional<double> ttft_p95_seconds;   // over all groups' requests in the window
  std::optional<double> requests_waiting;   // all groups, now
  ExpertLoad expert_load;                   // routed tokens per expert, over a window
  int32_t groups_measured = 0;              // groups that answered this time
  std::vector<std::string> errors;          // "x-g1-0: connection refused", ...
};

class MetricSource {
 public:
  virtual ~MetricSource() = default;
  virtual Measurement measure(const ScrapeTarget& target, Clock::TimePoint now) = 0;
  // Drops what is kept about a deployment that is gone.
  virtual void forget(const std::string& key) = 0;
};

struct ScrapeOptions {
  Clock::Duration rate_window = std::chrono::seconds(60);
  Clock::Duration load_window = std::chrono::minutes(10);
  int64_t timeout_ms = 2000;
  size_t max_body_bytes = 32u << 20;
};

// Scrapes rank-0 workers and computes rates from successive scrapes (GroupWindow per
// group; a group's history is dropped when its pod or address changes).
class ScrapeSource : public MetricSource {
 public:
  ScrapeSource(std::shared_ptr<const http::Client> http, ScrapeOptions options = {});
  Measurement measure(const ScrapeTarget& target, Clock::TimePoint now) override;
  void forget(const std::string& key) override;

  // One GET and parse of a worker's /metrics.
  StatusOr<WorkerSample> scrape(const std::string& url) const;

 private:
  std::shared_ptr<const http::Client> http_;
  ScrapeOptions options_;
  std::mutex mutex_;  // guards windows_ (the map, not the windows)
  // deployment key -> "pod url" -> window
  std::map<std::string, std::map<std::string, std::unique_ptr<GroupWindow>>> windows_;
};

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
  // (tokens/s, TTFT p95, waiting, expert load).
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
