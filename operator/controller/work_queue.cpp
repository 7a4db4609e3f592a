#include "operator/controller/work_queue.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace moeserve::controller {

WorkQueue::WorkQueue(RateLimit limit, const Clock* clock)
    : limit_(limit), clock_(clock), tokens_(limit.burst), tokens_at_(clock->now()) {}

void WorkQueue::add(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  add_locked(key);
}

void WorkQueue::add_locked(const std::string& key) {
  if (shut_down_ || dirty_.count(key)) return;
  waiting_.erase(key);
  dirty_.insert(key);
  if (processing_.count(key)) return;  // queued again by done()
  queue_.push_back(key);
  cv_.notify_one();
}

void WorkQueue::add_after(const std::string& key, Clock::Duration delay) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (shut_down_) return;
  if (delay <= Clock::Duration::zero()) {
    add_locked(key);
    return;
  }
  if (dirty_.count(key)) return;  // already queued: sooner than later
  Clock::TimePoint at = clock_->now() + delay;
  auto it = waiting_.find(key);
  if (it == waiting_.end() || at < it->second) waiting_[key] = at;
  cv_.notify_all();
}

Clock::Duration WorkQueue::rate_limit_delay_locked(const std::string& key) {
  int n = failures_[key]++;
  double backoff_ms = static_cast<double>(limit_.base_delay.count()) * std::pow(2.0, n);
  backoff_ms = std::min(backoff_ms, static_cast<double>(limit_.max_delay.count()));
  // Token bucket: refill at qps up to burst, take one token; a deficit becomes a delay.
  Clock::TimePoint now = clock_->now();
  double elapsed_s = std::chrono::duration<double>(now - tokens_at_).count();
  tokens_ = std::min<double>(limit_.burst, tokens_ + elapsed_s * limit_.qps);
  tokens_at_ = now;
  tokens_ -= 1;
  double bucket_ms = tokens_ >= 0 ? 0 : -tokens_ / limit_.qps * 1000.0;
  auto ms = std::max(backoff_ms, bucket_ms);
  return std::chrono::duration_cast<Clock::Duration>(std::chrono::duration<double, std::milli>(ms));
}

void WorkQueue::add_rate_limited(const std::string& key) {
  Clock::Duration delay;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (shut_down_) return;
    delay = rate_limit_delay_locked(key);
  }
  add_after(key, delay);
}

void WorkQueue::forget(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  failures_.erase(key);
}

int WorkQueue::failures(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

void WorkQueue::promote_due_locked() {
  Clock::TimePoint now = clock_->now();
  std::vector<std::string> due;
  for (const auto& [key, at] : waiting_) {
    if (at <= now) due.push_back(key);
  }
  for (const auto& key : due) add_locked(key);  // erases from waiting_
}

std::optional<std::string> WorkQueue::get_until(
    std::chrono::steady_clock::time_point real_deadline) {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    promote_due_locked();
    if (!queue_.empty()) {
      std::string key = queue_.front();
      queue_.pop_front();
      dirty_.erase(key);
      processing_.insert(key);
      return key;
    }
    if (shut_down_) return std::nullopt;
    auto real_now = std::chrono::steady_clock::now();
    if (real_now >= real_deadline) return std::nullopt;
    auto wake = std::min(real_deadline, real_now + std::chrono::milliseconds(50));
    if (!waiting_.empty()) {
      Clock::TimePoint next = Clock::TimePoint::max();
      for (const auto& [_, at] : waiting_) next = std::min(next, at);
      auto until_next = next - clock_->now();
      wake = std::min(wake, real_now + std::max(Clock::Duration::zero(), until_next));
    }
    cv_.wait_until(lock, wake);
  }
}

std::optional<std::string> WorkQueue::get() {
  return get_until(std::chrono::steady_clock::time_point::max());
}

std::optional<std::string> WorkQueue::get_for(std::chrono::milliseconds timeout) {
  return get_until(std::chrono::steady_clock::now() + timeout);
}

void WorkQueue::done(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  processing_.erase(key);
  if (dirty_.count(key)) {
    queue_.push_back(key);
    cv_.notify_one();
  }
}

void WorkQueue::shut_down() {
  std::lock_guard<std::mutex> lock(mutex_);
  shut_down_ = true;
  cv_.notify_all();
}

bool WorkQueue::shutting_down() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return shut_down_;
}

size_t WorkQueue::depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size() + waiting_.size();
}

}  // namespace moeserve::controller
