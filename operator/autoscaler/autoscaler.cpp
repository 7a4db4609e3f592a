#include "operator/autoscaler/autoscaler.h"

#include <cmath>

#include "common/log.h"

namespace moeserve::autoscaler {
namespace {

std::optional<double> rounded(const std::optional<double>& value) {
  if (!value || *value == 0 || !std::isfinite(*value)) return value;
  const double scale =
      std::pow(10.0, 2 - static_cast<int>(std::floor(std::log10(std::fabs(*value)))));
  return std::round(*value * scale) / scale;
}

}  // namespace

Autoscaler::Autoscaler(MetricSource* source, const Clock* clock, AutoscalerOptions options)
    : source_(source), clock_(clock), options_(options) {}

Autoscaler::~Autoscaler() { stop(); }

void Autoscaler::start() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (int i = 0; i < std::max(1, options_.threads); ++i) threads_.emplace_back([this] { loop(); });
}

void Autoscaler::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    cv_.notify_all();
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void Autoscaler::track(const std::string& key, Tracked tracked) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto [it, added] = entries_.try_emplace(key);
  Entry& e = it->second;
  const bool waiting_moved = !added && e.tracked.gateway_waiting != tracked.gateway_waiting;
  e.tracked = std::move(tracked);
  e.forgotten = false;
  if (added || waiting_moved) {
    e.next_due = std::chrono::steady_clock::now();
    cv_.notify_one();
  }
}

void Autoscaler::forget(const std::string& key) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    if (it->second.busy) {
      it->second.forgotten = true;  // the evaluating thread removes it
      return;
    }
    entries_.erase(it);
  }
  source_->forget(key);
}

std::optional<Snapshot> Autoscaler::snapshot(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second.snapshot;
}

void Autoscaler::evaluate(const std::string& key) {
  Tracked tracked;
  PolicyState state;  // carried between this deployment's decisions
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.busy) return;
    it->second.busy = true;
    tracked = it->second.tracked;
    state = it->second.state;
  }
  const Clock::TimePoint now = clock_->now();
  Measurement m = source_->measure(tracked.target, now);
  if (tracked.gateway_waiting) {
    m.requests_waiting = m.requests_waiting.value_or(0) + *tracked.gateway_waiting;
  }
  const PolicyInput input{now,
                          tracked.current_replicas,
                          tracked.ready_replicas,
                          m.tokens_per_second,
                          m.ttft_p95_seconds,
                          m.requests_waiting,
                          m.requests_per_second};
  Evaluation evaluation = autoscaler::evaluate(tracked.policy, input, std::move(state));
  bool changed = false;
  bool forgotten = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Entry& e = entries_.at(key);
    e.busy = false;
    e.next_due = std::chrono::steady_clock::now() + options_.interval;
    forgotten = e.forgotten;
    e.state = std::move(evaluation.state);
    const Decision& decision = evaluation.decision;
    Snapshot next{std::move(m), decision, e.snapshot ? e.snapshot->evaluations + 1 : 1};
    changed = !e.snapshot || e.snapshot->decision.replicas != decision.replicas ||
              rounded(e.snapshot->measurement.tokens_per_second) !=
                  rounded(next.measurement.tokens_per_second);
    if (!next.measurement.errors.empty()) {
      log::debug("autoscaler measurement errors", {{"deployment", key},
                                                   {"errors", next.measurement.errors.size()},
                                                   {"first", next.measurement.errors.front()}});
    }
    e.snapshot = std::move(next);
    if (forgotten) entries_.erase(key);
  }
  if (forgotten) {
    source_->forget(key);
    return;
  }
  if (changed && on_change_) on_change_(key);
}

void Autoscaler::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    const auto now = std::chrono::steady_clock::now();
    std::string due;
    auto earliest = now + options_.interval;
    for (const auto& [key, e] : entries_) {
      if (e.busy) continue;
      if (e.next_due <= now) {
        due = key;
        break;
      }
      earliest = std::min(earliest, e.next_due);
    }
    if (due.empty()) {
      cv_.wait_until(lock, earliest);
      continue;
    }
    entries_.at(due).next_due = now + options_.interval;  // no other thread picks it
    lock.unlock();
    evaluate(due);
    lock.lock();
  }
}

}  // namespace moeserve::autoscaler
