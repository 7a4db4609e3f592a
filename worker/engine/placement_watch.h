// PlacementFileWatch: notices when the placement file a group started with
// (--placement) is replaced, and returns its new text: rank 0's PlacementSource for a
// live switch (group_step.h).
//
// A Kubernetes ConfigMap volume is updated by the kubelet in place (an atomic swap of
// the ..data symlink), so the file is re-stat'ed (following links) at most once per
// `interval` and read when its identity (device, inode, size, mtime) differs from what
// was last seen; the identity at construction counts as seen. A file that is briefly
// missing is not an event. Not thread-safe (rank 0's scheduler thread calls it).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/clock.h"

namespace moeserve::engine {

class PlacementFileWatch {
 public:
  // `clock` must outlive the watch (null: the real clock).
  PlacementFileWatch(std::string path, std::chrono::milliseconds interval,
                     const Clock* clock = nullptr);
  // The file's text when it changed since the last call that returned one.
  std::optional<std::string> changed();

 private:
  struct Identity {
    uint64_t device = 0, inode = 0;
    int64_t size = 0, mtime_ns = 0;
    friend bool operator==(const Identity&, const Identity&) = default;
  };
  std::optional<Identity> identity() const;

  std::string path_;
  std::chrono::milliseconds interval_;
  const Clock* clock_;
  std::optional<Clock::TimePoint> last_check_;
  std::optional<Identity> seen_;
};

}  // namespace moeserve::engine
