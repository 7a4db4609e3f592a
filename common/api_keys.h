// ApiKeys: the API keys a worker or the gateway accepts, read from --api-key-file and re-read when
// the file changes, so keys rotate without a restart.
//
// The file holds one key per line; surrounding whitespace is trimmed, and blank lines
// and lines starting with '#' are skipped. A Kubernetes Secret volume updates its files
// by swapping a symlink (..data) atomically, so a reader sees the old file or the new
// one, never a torn one: accepts() stats the path (following symlinks) at most once per
// recheck interval, and when its identity (device, inode, size, mtime) moved it reads
// the keys again. A reload that fails (file gone, unreadable, no key) keeps the keys it
// had, so a botched rotation never opens the endpoint, and logs one warning per change.
// Comparisons take the same time whichever key matches. Thread-safe.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace moeserve::auth {

// The token of an Authorization header's Bearer credentials (the scheme matched
// case-insensitively, as HTTP auth schemes are); nullopt for another scheme or no token.
std::optional<std::string_view> bearer_token(std::string_view authorization);

// The keys of a key file's text; invalid_argument naming `path` when it holds none.
StatusOr<std::vector<std::string>> parse_api_keys(std::string_view text, const std::string& path);

class ApiKeys {
 public:
  static constexpr std::chrono::milliseconds kDefaultRecheck{1000};

  // Reads `path` now: not_found when it cannot be read, invalid_argument when it holds
  // no key.
  static StatusOr<std::unique_ptr<ApiKeys>> load(
      std::string path, const Clock* clock = RealClock::instance(),
      std::chrono::milliseconds recheck = kDefaultRecheck);

  // True when `token` is one of the keys (after reloading a changed file).
  bool accepts(std::string_view token);
  // How many keys are accepted now.
  size_t size() const;

 private:
  struct FileId {
    dev_t device = 0;
    ino_t inode = 0;
    off_t bytes = 0;
    int64_t mtime_ns = 0;
    friend bool operator==(const FileId&, const FileId&) = default;
  };
  ApiKeys(std::string path, const Clock* clock, std::chrono::milliseconds recheck);
  // The identity of the file `path` names now (symlinks followed); nullopt when absent.
  static std::optional<FileId> identify(const std::string& path);
  // Re-reads the file when its identity moved; the caller holds mutex_.
  void refresh_locked();

  const std::string path_;
  const Clock* clock_;
  const std::chrono::milliseconds recheck_;
  mutable std::mutex mutex_;
  std::vector<std::string> keys_;
  FileId loaded_;                                     // the file the keys came from
  std::optional<std::optional<FileId>> last_failed_;  // a change that did not load (warned)
  Clock::TimePoint next_check_{};
};

}  // namespace moeserve::auth
