// ScrapeSource: the default MetricSource; it GETs each group's rank-0 worker /metrics
// (common/http_client.h) and computes rates from successive scrapes. Thread-safety as
// MetricSource (metric_source.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/http_client.h"
#include "operator/autoscaler/metric_source.h"

namespace moeserve::autoscaler {

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

  // One GET and parse of a worker's /metrics, read with `engine`'s metric names.
  StatusOr<WorkerSample> scrape(const std::string& url,
                                EngineMetrics engine = EngineMetrics::kMoeserve) const;

 private:
  std::shared_ptr<const http::Client> http_;
  ScrapeOptions options_;
  std::mutex mutex_;  // guards windows_ (the map, not the windows)
  // deployment key -> "pod url" -> window
  std::map<std::string, std::map<std::string, std::unique_ptr<GroupWindow>>> windows_;
};

}  // namespace moeserve::autoscaler
