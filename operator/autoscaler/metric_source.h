// Where the autoscaler's measurements come from, behind one interface (no I/O here):
//   ScrapeSource      GET each group's rank-0 worker /metrics directly (the default;
//                     scrape_source.h);
//   PrometheusSource  PromQL over a Prometheus server's HTTP API (--prometheus-url;
//                     prometheus_source.h).
// Both use common/http_client.h. A source measures one deployment at a time; measure()
// may be called for different deployments from different threads at once, but never
// for the same deployment concurrently (the Autoscaler guarantees it).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
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
  EngineMetrics engine = EngineMetrics::kMoeserve;  // whose metric names the groups serve
  std::string key() const { return ns + "/" + name; }
  friend bool operator==(const ScrapeTarget&, const ScrapeTarget&) = default;
};

struct Measurement {
  std::optional<double> tokens_per_second;    // prompt + generated, all groups
  std::optional<double> ttft_p95_seconds;     // over all groups' requests in the window
  std::optional<double> requests_waiting;     // all groups, now
  std::optional<double> requests_per_second;  // first tokens, all groups
  ExpertLoad expert_load;                     // routed tokens per expert, over a window
  ExpertLoad rank_load;                       // tokens each rank carried ([layer][rank])
  // Each answering group's live-placement state (this round; scrape source only).
  std::map<int32_t, PlacementState> placements;
  int32_t groups_measured = 0;      // groups that answered this time
  std::vector<std::string> errors;  // "x-g1-0: connection refused", ...
};

// Folds the groups' windows into `m` as every source reports them: tokens/s summed over
// the groups with a rate, TTFT p95 from the merged bucket increases (quantile of the
// sum, not sum of quantiles), expert and rank loads summed. Waiting requests and errors are the
// caller's: they come from this round's samples, not the windows.
void fold_windows(const std::vector<const GroupWindow*>& windows, Measurement* m);

class MetricSource {
 public:
  virtual ~MetricSource() = default;
  virtual Measurement measure(const ScrapeTarget& target, Clock::TimePoint now) = 0;
  // Drops what is kept about a deployment that is gone.
  virtual void forget(const std::string& key) = 0;
};

}  // namespace moeserve::autoscaler
