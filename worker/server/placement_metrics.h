// PlacementMetrics: rank 0's Prometheus series of the expert placement it runs and of
// live switches (names in docs/metrics.md), in the WorkerMetrics registry:
//   moeserve_placement_version                       gauge: the placement dispatching now
//   moeserve_placement_switch_in_flight_version      gauge: version being prepared, 0: none
//   moeserve_placement_switches_total{result}        counter: committed | aborted
//   moeserve_placement_switch_duration_seconds       gauge: the last committed switch,
//                                                    from prepare to commit
//   moeserve_placement_switch_failure_info{version, reason}  1 for the last aborted one
//   moeserve_expert_slot_tokens_total{layer, slot, rank}     counter: tokens dispatched to
//                                                    each physical slot (what ranks carried)
// refresh() copies the switch's report and the dispatcher's slot counts (call it when
// /metrics is scraped). Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "worker/engine/expert_parallel.h"
#include "worker/engine/placement_switch.h"
#include "worker/server/worker_metrics.h"

namespace moeserve::server {

class PlacementMetrics {
 public:
  // `dispatcher` and `placement` must outlive this.
  PlacementMetrics(prometheus::Registry& registry, const WorkerInfo& info,
                   const engine::ExpertParallelDispatcher& dispatcher,
                   const engine::PlacementSwitch& placement);
  void refresh();

 private:
  const engine::ExpertParallelDispatcher& dispatcher_;
  const engine::PlacementSwitch& placement_;
  prometheus::Gauge* version_;
  prometheus::Gauge* in_flight_;
  prometheus::Gauge* duration_;
  prometheus::Counter* committed_;
  prometheus::Counter* aborted_;
  prometheus::Family<prometheus::Gauge>* failure_family_;
  prometheus::Family<prometheus::Counter>* slot_family_;

  std::mutex mutex_;
  uint64_t committed_seen_ = 0, aborted_seen_ = 0;
  prometheus::Gauge* failure_ = nullptr;
  std::string failure_key_;
  std::map<std::tuple<int64_t, int64_t, int64_t>, prometheus::Counter*>
      slots_;                                              // (layer, slot, rank)
  std::map<std::pair<int64_t, int64_t>, uint64_t> added_;  // (layer, slot) -> counted so far
};

}  // namespace moeserve::server
