// Time behind an interface (after LevelDB's Env), so backoff, leases, relists and
// autoscaling windows are tested deterministically with FakeClock.
#pragma once

#include <chrono>
#include <mutex>

namespace moeserve {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::steady_clock::duration;
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
  // Wall-clock seconds since the Unix epoch (for timestamps written to the API).
  virtual int64_t unix_seconds() const = 0;
};

class RealClock : public Clock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
  int64_t unix_seconds() const override {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  static RealClock* instance() {
    static RealClock clock;
    return &clock;
  }
};

// Moves only when advance() is called. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t unix_start_seconds = 1767225600) : unix_start_(unix_start_seconds) {}
  TimePoint now() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return TimePoint() + elapsed_;
  }
  int64_t unix_seconds() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return unix_start_ + std::chrono::duration_cast<std::chrono::seconds>(elapsed_).count();
  }
  void advance(Duration d) {
    std::lock_guard<std::mutex> lock(mutex_);
    elapsed_ += d;
  }

 private:
  mutable std::mutex mutex_;
  int64_t unix_start_;
  Duration elapsed_{0};
};

}  // namespace moeserve
