// An exclusive lock on a destination directory (flock(2) on DIR/.moeserve-fetch.lock),
// so the init containers of many pods that share one PVC fetch into it one at a time:
// the first downloads, the others wait and then find the checkpoint there. flock works
// across processes, across pods on one node, and on NFSv4 volumes (Linux maps it onto
// NFS byte-range locks); the kernel drops it when the holder dies, so a killed pod never
// leaves a stale lock. Movable; the destructor unlocks.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/status.h"

namespace moeserve::fetch {

inline constexpr const char* kLockName = ".moeserve-fetch.lock";

class DirLock {
 public:
  // Blocks until the lock is held. `waiting(seconds)` is called about every
  // `report_every_ms` while another holder keeps it (for progress logs).
  static StatusOr<DirLock> acquire(const std::string& dir, int64_t report_every_ms,
                                   const std::function<void(int64_t waited_s)>& waiting);
  DirLock(DirLock&& other) noexcept;
  DirLock& operator=(DirLock&& other) noexcept;
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  ~DirLock();

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace moeserve::fetch
