#include "common/api_keys.h"

#include <cctype>

#include "common/file.h"
#include "common/log.h"

namespace moeserve::auth {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text;
}

// No early exit on the first differing byte, so timing does not reveal a prefix.
bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

std::optional<std::string_view> bearer_token(std::string_view authorization) {
  constexpr std::string_view kBearer = "bearer ";
  if (authorization.size() <= kBearer.size()) return std::nullopt;
  for (size_t i = 0; i < kBearer.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kBearer[i]) {
      return std::nullopt;
    }
  }
  return authorization.substr(kBearer.size());
}

StatusOr<std::vector<std::string>> parse_api_keys(std::string_view text, const std::string& path) {
  std::vector<std::string> keys;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view line = trim(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (!line.empty() && line.front() != '#') keys.emplace_back(line);
  }
  if (keys.empty()) {
    return invalid_argument_error("--api-key-file " + path +
                                  " holds no key (one key per line; '#' starts a comment)");
  }
  return keys;
}

ApiKeys::ApiKeys(std::string path, const Clock* clock, std::chrono::milliseconds recheck)
    : path_(std::move(path)), clock_(clock), recheck_(recheck) {}

std::optional<ApiKeys::FileId> ApiKeys::identify(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino, st.st_size,
                int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}

StatusOr<std::unique_ptr<ApiKeys>> ApiKeys::load(std::string path, const Clock* clock,
                                                 std::chrono::milliseconds recheck) {
  std::unique_ptr<ApiKeys> keys(new ApiKeys(std::move(path), clock, recheck));
  const std::optional<FileId> id = identify(keys->path_);
  if (!id) return not_found_error("--api-key-file " + keys->path_ + ": cannot open");
  MOESERVE_ASSIGN_OR_RETURN(std::string text, read_file(keys->path_));
  MOESERVE_ASSIGN_OR_RETURN(keys->keys_, parse_api_keys(text, keys->path_));
  keys->loaded_ = *id;
  keys->next_check_ = clock->now() + recheck;
  return keys;
}

void ApiKeys::refresh_locked() {
  const Clock::TimePoint now = clock_->now();
  if (now < next_check_) return;
  next_check_ = now + recheck_;
  const std::optional<FileId> id = identify(path_);
  if (id == loaded_) return;
  Status failed = not_found_error(path_ + ": cannot open");
  if (id) {
    StatusOr<std::string> text = read_file(path_);
    StatusOr<std::vector<std::string>> keys =
        text.ok() ? parse_api_keys(*text, path_)
                  : StatusOr<std::vector<std::string>>(text.status());
    if (keys.ok()) {
      keys_ = std::move(*keys);
      loaded_ = *id;
      last_failed_.reset();
      log::info("API keys reloaded",
                {{"file", path_}, {"keys", static_cast<int64_t>(keys_.size())}});
      return;
    }
    failed = keys.status();
  }
  if (last_failed_ == id) return;
  last_failed_ = id;
  log::warn("API key file did not reload; keeping the previous keys",
            {{"file", path_}, {"error", failed.to_string()}});
}

bool ApiKeys::accepts(std::string_view token) {
  std::lock_guard<std::mutex> lock(mutex_);
  refresh_locked();
  bool match = false;
  for (const std::string& key : keys_) match = constant_time_equal(token, key) || match;
  return match;
}

size_t ApiKeys::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return keys_.size();
}

}  // namespace moeserve::auth
