// What the autoscaler reads from one scrape of a group's rank-0 worker, and how
// successive scrapes turn into rates. Pure; no I/O, time passed in.
//
// WorkerSample holds the raw values of one scrape (series of a family summed over
// their other labels): the prompt and generation token counters, the cumulative
// buckets of the time-to-first-token histogram, the waiting-requests gauge, under the
// names of the engine that serves it (engine_metrics.h), and from moeserve's worker
// only: moeserve_expert_tokens_total per (layer, expert) and the live-placement series
// (worker/server/placement_metrics.h): moeserve_placement_version and friends, and
// moeserve_expert_slot_tokens_total summed per (layer, rank), what each rank carried.
//
// GroupWindow keeps one group's history. Counters are reset-adjusted: a value below
// the previous one means the worker restarted, and the new value is all increase
// (Prometheus' rate() rule). Rates are over the points within `rate_window` of the
// newest; expert loads decay exponentially with time constant `load_window`, so they
// weight roughly the last window of traffic. A scrape at the same time as the previous
// one (no time has passed) is ignored.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "operator/autoscaler/engine_metrics.h"
#include "operator/autoscaler/prometheus_text.h"

namespace moeserve::autoscaler {

inline constexpr const char* kSlotTokens = "moeserve_expert_slot_tokens_total";
inline constexpr const char* kPlacementVersion = "moeserve_placement_version";
inline constexpr const char* kPlacementInFlight = "moeserve_placement_switch_in_flight_version";
inline constexpr const char* kPlacementSwitchSeconds = "moeserve_placement_switch_duration_seconds";
inline constexpr const char* kPlacementFailure = "moeserve_placement_switch_failure_info";

using ExpertKey = std::pair<int64_t, int32_t>;  // (layer label, expert label)

// A group's live-placement state as its rank 0 reports it.
struct PlacementState {
  int64_t version = 0;            // the placement the group dispatches with
  int64_t in_flight_version = 0;  // being prepared (0: none)
  double switch_seconds = 0;      // the last committed switch, prepare to commit
  int64_t failed_version = 0;     // the last aborted switch (0: none)
  std::string failure;            // its reason
  friend bool operator==(const PlacementState&, const PlacementState&) = default;
};

struct WorkerSample {
  double prompt_tokens = 0;
  double generation_tokens = 0;
  std::vector<std::pair<double, double>> ttft_buckets;  // (le, cumulative count), le ascending
  double requests_waiting = 0;
  std::map<ExpertKey, double> expert_tokens;
  std::map<ExpertKey, double> rank_tokens;  // (layer, rank): slot tokens summed per rank
  std::optional<PlacementState> placement;  // when the worker exports moeserve_placement_version
};

// invalid_argument when the token counters are missing (not that engine's /metrics) or
// a bucket/expert label is malformed. A missing TTFT histogram or waiting gauge reads as
// empty / 0 (an engine exports them once it has served a request, or not at all).
StatusOr<WorkerSample> worker_sample_from(const std::vector<Sample>& samples,
                                          EngineMetrics engine = EngineMetrics::kMoeserve);

// The q-quantile of a histogram given as (le, cumulative count) buckets, le ascending
// and ending with +Inf, interpolating linearly within a bucket as PromQL's
// histogram_quantile does (the first bucket starts at 0; a quantile in the +Inf bucket
// is the last finite bound). nullopt when the histogram is empty.
std::optional<double> histogram_quantile(double q,
                                         const std::vector<std::pair<double, double>>& buckets);

// Per-layer expert loads: layers sorted by their label, experts 0..max label.
struct ExpertLoad {
  std::vector<int64_t> layers;              // layer labels, ascending
  std::vector<std::vector<double>> tokens;  // [layer][expert]
  bool empty() const { return layers.empty(); }
};
ExpertLoad expert_load_from(const std::map<ExpertKey, double>& tokens);

class GroupWindow {
 public:
  GroupWindow(Clock::Duration rate_window, Clock::Duration load_window);

  void add(Clock::TimePoint at, const WorkerSample& sample);

  // Tokens (prompt + generated) per second over the rate window; nullopt until two
  // points with time between them exist.
  std::optional<double> tokens_per_second() const;
  // Time-to-first-token bucket increases over the rate window (le, count), cumulative;
  // empty until two points exist.
  std::vector<std::pair<double, double>> ttft_increase() const;
  // Requests that got their first token per second over the rate window (the TTFT
  // histogram's count); nullopt without a histogram or until two points exist.
  std::optional<double> requests_per_second() const;
  double requests_waiting() const { return last_ ? last_->requests_waiting : 0; }
  // Decayed expert token counts.
  const std::map<ExpertKey, double>& expert_load() const { return expert_load_; }
  // Decayed tokens per (layer, rank), like expert_load().
  const std::map<ExpertKey, double>& rank_load() const { return rank_load_; }
  // The newest sample's placement state.
  std::optional<PlacementState> placement() const {
    return last_ ? last_->placement : std::nullopt;
  }

 private:
  struct Point {
    Clock::TimePoint at;
    double tokens = 0;         // reset-adjusted total
    std::vector<double> ttft;  // reset-adjusted cumulative bucket totals, by le_
  };
  const Point* oldest_in_window() const;

  Clock::Duration rate_window_;
  Clock::Duration load_window_;
  std::optional<WorkerSample> last_;
  std::optional<Clock::TimePoint> last_at_;
  std::vector<double> le_;
  std::deque<Point> points_;
  std::map<ExpertKey, double> expert_load_;
  std::map<ExpertKey, double> rank_load_;
};

// counter increase from `previous` to `current`, a drop counting as a restart from 0.
double counter_increase(double previous, double current);

}  // namespace moeserve::autoscaler
