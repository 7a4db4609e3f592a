#include "tools/fetch/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

namespace moeserve::fetch {
namespace {

constexpr int64_t kPollMs = 100;

}  // namespace

StatusOr<DirLock> DirLock::acquire(const std::string& dir, int64_t report_every_ms,
                                   const std::function<void(int64_t waited_s)>& waiting) {
  const std::string path = dir + "/" + kLockName;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0664);
  if (fd < 0) return internal_error(path + ": cannot open: " + std::strerror(errno));
  const auto start = std::chrono::steady_clock::now();
  auto next_report = start + std::chrono::milliseconds(report_every_ms);
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      const int saved = errno;
      ::close(fd);
      return internal_error(path + ": cannot lock: " + std::strerror(saved));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
    const auto now = std::chrono::steady_clock::now();
    if (waiting && now >= next_report) {
      waiting(std::chrono::duration_cast<std::chrono::seconds>(now - start).count());
      next_report = now + std::chrono::milliseconds(report_every_ms);
    }
  }
  return DirLock(fd);
}

DirLock::DirLock(DirLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

DirLock& DirLock::operator=(DirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
}

}  // namespace moeserve::fetch
