#include "worker/server/placement_metrics.h"

#include <string>

namespace moeserve::server {
namespace {

// Prometheus label values stay short; a reason is a log line's summary.
constexpr size_t kMaxReasonChars = 200;

}  // namespace

PlacementMetrics::PlacementMetrics(prometheus::Registry& registry, const WorkerInfo& info,
                                   const engine::ExpertParallelDispatcher& dispatcher,
                                   const engine::PlacementSwitch& placement)
    : dispatcher_(dispatcher), placement_(placement) {
  const prometheus::Labels base = {{"model", info.model}, {"deployment", info.deployment}};
  version_ = &prometheus::BuildGauge()
                  .Name("moeserve_placement_version")
                  .Help("Version of the expert placement the group dispatches with (0: default)")
                  .Labels(base)
                  .Register(registry)
                  .Add({});
  in_flight_ = &prometheus::BuildGauge()
                    .Name("moeserve_placement_switch_in_flight_version")
                    .Help("Placement version the group is preparing to switch to (0: none)")
                    .Labels(base)
                    .Register(registry)
                    .Add({});
  duration_ = &prometheus::BuildGauge()
                   .Name("moeserve_placement_switch_duration_seconds")
                   .Help("Prepare-to-commit time of the last committed placement switch")
                   .Labels(base)
                   .Register(registry)
                   .Add({});
  auto& switches = prometheus::BuildCounter()
                       .Name("moeserve_placement_switches_total")
                       .Help("Live placement switches, by result (committed, aborted)")
                       .Labels(base)
                       .Register(registry);
  committed_ = &switches.Add({{"result", "committed"}});
  aborted_ = &switches.Add({{"result", "aborted"}});
  failure_family_ = &prometheus::BuildGauge()
                         .Name("moeserve_placement_switch_failure_info")
                         .Help("1 for the last aborted placement switch: its version and reason")
                         .Labels(base)
                         .Register(registry);
  slot_family_ = &prometheus::BuildCounter()
                      .Name("moeserve_expert_slot_tokens_total")
                      .Help(
                          "Tokens dispatched to each physical expert slot, per MoE layer, "
                          "with the rank holding the slot")
                      .Labels(base)
                      .Register(registry);
}

void PlacementMetrics::refresh() {
  const engine::PlacementSwitchReport report = placement_.report();
  const engine::ExpertParallelDispatcher::SlotTokens slots = dispatcher_.slot_tokens();
  std::lock_guard<std::mutex> lock(mutex_);
  version_->Set(static_cast<double>(report.running_version));
  in_flight_->Set(static_cast<double>(report.preparing_version));
  duration_->Set(report.last_duration_seconds);
  committed_->Increment(static_cast<double>(report.committed - committed_seen_));
  committed_seen_ = report.committed;
  aborted_->Increment(static_cast<double>(report.aborted - aborted_seen_));
  aborted_seen_ = report.aborted;
  if (report.aborted > 0) {
    const std::string reason = report.failure.substr(0, kMaxReasonChars);
    const std::string key = std::to_string(report.failed_version) + "\n" + reason;
    if (key != failure_key_) {
      if (failure_ != nullptr) failure_family_->Remove(failure_);
      failure_ = &failure_family_->Add(
          {{"version", std::to_string(report.failed_version)}, {"reason", reason}});
      failure_->Set(1);
      failure_key_ = key;
    }
  }
  for (size_t i = 0; i < slots.layers.size(); ++i) {
    for (size_t s = 0; s < slots.tokens[i].size(); ++s) {
      const uint64_t now = slots.tokens[i][s];
      const int64_t rank = static_cast<int64_t>(s) / slots.slots_per_rank;
      auto key = std::make_tuple(slots.layers[i], static_cast<int64_t>(s), rank);
      auto it = slots_.find(key);
      if (it == slots_.end()) {
        prometheus::Counter* c = &slot_family_->Add({{"layer", std::to_string(slots.layers[i])},
                                                     {"slot", std::to_string(s)},
                                                     {"rank", std::to_string(rank)}});
        it = slots_.emplace(key, c).first;
      }
      // A slot that moved to another rank (slots per rank changed) starts a new series
      // with what it gains from then on.
      uint64_t& added = added_[{slots.layers[i], static_cast<int64_t>(s)}];
      if (now > added) {
        it->second->Increment(static_cast<double>(now - added));
        added = now;
      }
    }
  }
}

}  // namespace moeserve::server
