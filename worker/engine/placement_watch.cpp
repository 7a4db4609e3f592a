#include "worker/engine/placement_watch.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <utility>

namespace moeserve::engine {
namespace {

const RealClock kRealClock;

}  // namespace

PlacementFileWatch::PlacementFileWatch(std::string path, std::chrono::milliseconds interval,
                                       const Clock* clock)
    : path_(std::move(path)),
      interval_(interval),
      clock_(clock != nullptr ? clock : &kRealClock),
      seen_(identity()) {}

std::optional<PlacementFileWatch::Identity> PlacementFileWatch::identity() const {
  struct stat st {};
  if (stat(path_.c_str(), &st) != 0) return std::nullopt;
  return Identity{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                  static_cast<int64_t>(st.st_size),
                  static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

std::optional<std::string> PlacementFileWatch::changed() {
  const Clock::TimePoint now = clock_->now();
  if (last_check_ && now - *last_check_ < interval_) return std::nullopt;
  last_check_ = now;
  const std::optional<Identity> current = identity();
  if (!current || current == seen_) return std::nullopt;
  std::ifstream in(path_);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  seen_ = current;
  return text.str();
}

}  // namespace moeserve::engine
