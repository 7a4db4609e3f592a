#include "tools/fetch/fetcher.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

#include "common/log.h"
#include "tools/fetch/digest.h"
#include "tools/fetch/dir_lock.h"
#include "tools/fetch/marker.h"

namespace moeserve::fetch {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr size_t kHashReadBytes = 1 << 20;
constexpr int64_t kLockReportMs = 10000;

std::string join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

std::optional<int64_t> file_size(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return std::nullopt;
  return static_cast<int64_t>(size);
}

bool present(const std::string& dest, const MarkerFile& file) {
  return file_size(join(dest, file.name)) == file.size;
}

const Status& status_of(const Status& status) { return status; }
template <typename T>
Status status_of(const StatusOr<T>& result) {
  return result.status();
}

bool retryable(const Status& status) {
  return status.code() == StatusCode::kUnavailable ||
         status.code() == StatusCode::kDeadlineExceeded;
}

Digest digest_for(const HubFile& file) {
  return file.lfs() ? Digest::sha256() : Digest::git_blob(file.size);
}

std::string expected_hex(const HubFile& file) { return file.lfs() ? file.sha256 : file.blob_id; }

// The complete marker's files when it covers `sha` (or, with sha "", the marker's own
// commit) for this repository and these globs and every file is on disk at its size.
bool satisfies(const std::optional<Marker>& marker, const FetchOptions& options,
               const std::string& sha, const std::string& dest) {
  if (!marker || !marker->complete || marker->repo != options.source.repo ||
      marker->include != options.include || (!sha.empty() && marker->sha != sha)) {
    return false;
  }
  for (const MarkerFile& f : marker->files) {
    if (!present(dest, f)) return false;
  }
  return true;
}

// Overall progress of one run, logged every options.progress_every_ms.
class Progress {
 public:
  Progress(int64_t total_bytes, int64_t every_ms)
      : total_bytes_(total_bytes), every_(std::chrono::milliseconds(every_ms)) {}

  void add(const std::string& file, int64_t bytes) {
    done_bytes_ += bytes;
    const auto now = Clock::now();
    if (now - last_ < every_) return;
    last_ = now;
    log::info("fetch progress", {{"file", file},
                                 {"bytes", done_bytes_},
                                 {"total_bytes", total_bytes_},
                                 {"percent", percent()},
                                 {"mb_per_s", mb_per_s()}});
  }
  int64_t done_bytes() const { return done_bytes_; }
  double mb_per_s() const {
    const double s = std::chrono::duration<double>(Clock::now() - start_).count();
    return s > 0 ? static_cast<double>(done_bytes_) / 1e6 / s : 0.0;
  }

 private:
  double percent() const {
    return total_bytes_ > 0 ? 100.0 * static_cast<double>(done_bytes_) / total_bytes_ : 100.0;
  }
  int64_t total_bytes_;
  int64_t done_bytes_ = 0;
  Clock::duration every_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_ = Clock::now();
};

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

Status errno_error(const std::string& what, const std::string& path) {
  return internal_error(path + ": " + what + ": " + std::strerror(errno));
}

Status write_all(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("write failed", path);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return ok_status();
}

// Feeds the first `bytes` of `path` to `digest` (a part being resumed).
Status hash_prefix(const std::string& path, int64_t bytes, Digest* digest) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return errno_error("cannot open", path);
  std::string buffer(kHashReadBytes, '\0');
  while (bytes > 0) {
    const ssize_t n = ::read(fd.get(), buffer.data(),
                             static_cast<size_t>(std::min<int64_t>(bytes, kHashReadBytes)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_error("read failed", path);
    digest->update(std::string_view(buffer.data(), static_cast<size_t>(n)));
    bytes -= n;
  }
  return ok_status();
}

class Fetcher {
 public:
  Fetcher(const FetchOptions& options, const http::Client& client)
      : o_(options), client_(client), parts_dir_(join(options.dest, kPartsDirName)) {}

  StatusOr<FetchResult> run();

 private:
  http::ClientRequest get(std::string url) const {
    http::ClientRequest request;
    request.url = std::move(url);
    request.max_redirects = o_.max_redirects;
    if (!o_.token.empty()) request.headers.emplace_back("Authorization", "Bearer " + o_.token);
    return request;
  }

  // Runs `attempt` until it succeeds, fails with a non-retryable error or runs out of
  // retries, sleeping retry_delay_ms (doubled each time) in between.
  template <typename Fn>
  auto with_retries(const std::string& what, Fn attempt) -> decltype(attempt()) {
    int64_t delay_ms = o_.retry_delay_ms;
    for (int32_t tries = 0;; ++tries) {
      auto result = attempt();
      const Status status = status_of(result);
      if (status.ok() || !retryable(status) || tries >= o_.retries) return result;
      log::warn("fetch retry", {{"what", what},
                                {"attempt", tries + 1},
                                {"delay_ms", delay_ms},
                                {"error", status.message()}});
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      delay_ms *= 2;
    }
  }

  StatusOr<HubRevision> resolve_revision();
  Status download(const HubFile& file, Progress* progress);
  Status download_attempt(const HubFile& file, const std::string& part, Progress* progress);
  Status verify_and_install(const HubFile& file, const std::string& part, const Digest& digest);
  Status save_marker() { return write_marker(o_.dest, marker_); }

  const FetchOptions& o_;
  const http::Client& client_;
  std::string parts_dir_;
  Marker marker_;
};

StatusOr<HubRevision> Fetcher::resolve_revision() {
  const std::string revision = o_.source.effective_revision();
  const std::string what = "revision " + revision + " of " + o_.source.repo;
  return with_retries(what, [&]() -> StatusOr<HubRevision> {
    MOESERVE_ASSIGN_OR_RETURN(
        http::ClientResponse response,
        client_.send(get(revision_info_url(o_.endpoint, o_.source.repo, revision))));
    if (response.status != 200) return hub_error(what, response.status, response.headers);
    return parse_revision_info(response.body);
  });
}

Status Fetcher::verify_and_install(const HubFile& file, const std::string& part,
                                   const Digest& digest) {
  const std::string got = digest.hex();
  if (got != expected_hex(file)) {
    std::error_code ec;
    fs::remove(part, ec);
    const std::string kind = file.lfs() ? "sha256" : "git blob id";
    return failed_precondition_error(file.name + ": " + kind + " mismatch: expected " +
                                     expected_hex(file) + ", got " + got +
                                     " (the download was deleted)");
  }
  const std::string target = join(o_.dest, file.name);
  std::error_code ec;
  fs::create_directories(fs::path(target).parent_path(), ec);
  if (ec) return internal_error(target + ": cannot create its directory: " + ec.message());
  // The marker must never list a file whose bytes are about to change.
  marker_.erase(file.name);
  MOESERVE_RETURN_IF_ERROR(save_marker());
  if (std::rename(part.c_str(), target.c_str()) != 0) return errno_error("rename failed", target);
  marker_.put({file.name, file.size, file.checksum()});
  return save_marker();
}

// Retryable errors leave the part for the next attempt to resume.
Status Fetcher::download_attempt(const HubFile& file, const std::string& part, Progress* progress) {
  int64_t have = file_size(part).value_or(0);
  if (have > file.size) have = 0;
  Digest digest = digest_for(file);
  if (have > 0) MOESERVE_RETURN_IF_ERROR(hash_prefix(part, have, &digest));
  if (have == file.size) return verify_and_install(file, part, digest);
  http::ClientRequest request =
      get(resolve_url(o_.endpoint, o_.source.repo, marker_.sha, file.name));
  if (have > 0) request.headers.emplace_back("Range", "bytes=" + std::to_string(have) + "-");
  MOESERVE_ASSIGN_OR_RETURN(std::unique_ptr<http::ResponseStream> stream, client_.open(request));
  const std::string what = "file " + file.name + " of " + o_.source.repo + "@" + marker_.sha;
  const bool resumed =
      have > 0 && stream->status() == 206 &&
      stream->header("content-range").rfind("bytes " + std::to_string(have) + "-", 0) == 0;
  if (!resumed && stream->status() != 200) {
    stream->close();
    if (stream->status() == 416 || stream->status() == 206) {
      std::error_code ec;
      fs::remove(part, ec);  // the server cannot resume this part: start over next attempt
      return unavailable_error(what + ": HTTP " + std::to_string(stream->status()) +
                               " to a resume; restarting the file");
    }
    return hub_error(what, stream->status(), stream->headers());
  }
  if (!resumed && have > 0) {
    have = 0;
    digest = digest_for(file);
  }
  Fd fd(
      ::open(part.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (resumed ? O_APPEND : O_TRUNC), 0644));
  if (fd.get() < 0) return errno_error("cannot create", part);
  int64_t bytes = have;
  while (true) {
    MOESERVE_ASSIGN_OR_RETURN(std::string chunk, stream->read_some());
    if (chunk.empty()) break;
    bytes += static_cast<int64_t>(chunk.size());
    if (bytes > file.size) {
      stream->close();
      std::error_code ec;
      fs::remove(part, ec);
      return failed_precondition_error(file.name + ": more bytes than the listing's size " +
                                       std::to_string(file.size) + " (the download was deleted)");
    }
    MOESERVE_RETURN_IF_ERROR(write_all(fd.get(), chunk, part));
    digest.update(chunk);
    progress->add(file.name, static_cast<int64_t>(chunk.size()));
  }
  if (bytes != file.size) {
    return unavailable_error(what + ": the body ended after " + std::to_string(bytes) + " of " +
                             std::to_string(file.size) + " bytes");
  }
  if (::fsync(fd.get()) != 0) return errno_error("fsync failed", part);
  return verify_and_install(file, part, digest);
}

Status Fetcher::download(const HubFile& file, Progress* progress) {
  // Named by content, so only a part of the same bytes is ever resumed.
  const std::string part = join(parts_dir_, expected_hex(file));
  const auto start = Clock::now();
  MOESERVE_RETURN_IF_ERROR(
      with_retries("file " + file.name, [&] { return download_attempt(file, part, progress); }));
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  log::info("file fetched", {{"file", file.name},
                             {"bytes", file.size},
                             {"checksum", file.checksum()},
                             {"mb_per_s", s > 0 ? static_cast<double>(file.size) / 1e6 / s : 0.0}});
  return ok_status();
}

StatusOr<FetchResult> Fetcher::run() {
  std::error_code ec;
  fs::create_directories(o_.dest, ec);
  if (ec) return internal_error(o_.dest + ": cannot create: " + ec.message());
  MOESERVE_ASSIGN_OR_RETURN(
      DirLock lock, DirLock::acquire(o_.dest, kLockReportMs, [&](int64_t s) {
        log::info("waiting for another fetcher", {{"dest", o_.dest}, {"waited_s", s}});
      }));
  StatusOr<std::optional<Marker>> read = read_marker(o_.dest);
  std::optional<Marker> previous;
  if (read.ok()) {
    previous = *read;
  } else {
    log::warn("ignoring an unreadable marker: every file is fetched again",
              {{"error", read.status().message()}});
  }
  FetchResult result;
  const std::string revision = o_.source.effective_revision();
  const bool by_sha = is_commit_sha(revision);
  if (satisfies(previous, o_, by_sha ? revision : "", o_.dest) &&
      (by_sha || (o_.offline && previous->revision == revision))) {
    log::info(
        "already present",
        {{"repo", o_.source.repo}, {"sha", previous->sha}, {"dest", o_.dest}, {"network", false}});
    result.sha = previous->sha;
    result.already_present = true;
    return result;
  }
  if (o_.offline) {
    return failed_precondition_error("offline: " + o_.dest + " holds no complete fetch of " +
                                     o_.source.repo + "@" + revision +
                                     (o_.include.empty() ? "" : " with these --include globs") +
                                     " (run moeserve-fetch with network access into it first)");
  }
  MOESERVE_ASSIGN_OR_RETURN(HubRevision hub, resolve_revision());
  MOESERVE_ASSIGN_OR_RETURN(std::vector<HubFile> selected, select_files(hub.files, o_.include));
  result.sha = hub.sha;
  if (satisfies(previous, o_, hub.sha, o_.dest)) {
    log::info("already present",
              {{"repo", o_.source.repo}, {"sha", hub.sha}, {"dest", o_.dest}, {"network", true}});
    result.already_present = true;
    return result;
  }

  // Entries of the previous marker stay: they describe verified bytes by checksum, which
  // lets files unchanged between commits be kept.
  marker_ = previous.value_or(Marker{});
  marker_.repo = o_.source.repo;
  marker_.revision = revision;
  marker_.sha = hub.sha;
  marker_.include = o_.include;
  marker_.complete = false;
  MOESERVE_RETURN_IF_ERROR(save_marker());

  std::vector<const HubFile*> missing;
  int64_t missing_bytes = 0;
  for (const HubFile& file : selected) {
    const MarkerFile* have = marker_.find(file.name);
    if (have && have->checksum == file.checksum() && have->size == file.size &&
        present(o_.dest, *have)) {
      ++result.files_kept;
    } else {
      missing.push_back(&file);
      missing_bytes += file.size;
    }
  }
  log::info("fetching", {{"repo", o_.source.repo},
                         {"revision", revision},
                         {"sha", hub.sha},
                         {"dest", o_.dest},
                         {"files", static_cast<int64_t>(missing.size())},
                         {"files_kept", result.files_kept},
                         {"total_bytes", missing_bytes}});
  fs::create_directories(parts_dir_, ec);
  if (ec) return internal_error(parts_dir_ + ": cannot create: " + ec.message());
  Progress progress(missing_bytes, o_.progress_every_ms);
  for (const HubFile* file : missing) {
    MOESERVE_RETURN_IF_ERROR(download(*file, &progress));
    ++result.files_downloaded;
  }
  result.bytes_downloaded = progress.done_bytes();

  std::vector<std::string> stale;
  for (const MarkerFile& f : marker_.files) {
    bool wanted = false;
    for (const HubFile& file : selected) wanted = wanted || file.name == f.name;
    if (!wanted) stale.push_back(f.name);
  }
  for (const std::string& name : stale) {
    marker_.erase(name);
    MOESERVE_RETURN_IF_ERROR(save_marker());
    fs::remove(join(o_.dest, name), ec);
    ++result.files_removed;
  }
  marker_.complete = true;
  MOESERVE_RETURN_IF_ERROR(save_marker());
  fs::remove(parts_dir_, ec);  // only when empty; a non-empty one is left as is
  log::info("fetched", {{"repo", o_.source.repo},
                        {"sha", hub.sha},
                        {"dest", o_.dest},
                        {"files_downloaded", result.files_downloaded},
                        {"files_kept", result.files_kept},
                        {"files_removed", result.files_removed},
                        {"bytes", result.bytes_downloaded},
                        {"mb_per_s", progress.mb_per_s()}});
  return result;
}

}  // namespace

StatusOr<std::vector<HubFile>> select_files(const std::vector<HubFile>& files,
                                            const std::vector<std::string>& include) {
  if (include.empty()) return files;
  std::vector<HubFile> out;
  for (const HubFile& file : files) {
    for (const std::string& glob : include) {
      if (::fnmatch(glob.c_str(), file.name.c_str(), 0) == 0) {
        out.push_back(file);
        break;
      }
    }
  }
  if (out.empty()) {
    std::string globs;
    for (const std::string& g : include) globs += (globs.empty() ? "" : ",") + g;
    return invalid_argument_error("no file of the revision matches --include " + globs);
  }
  return out;
}

StatusOr<FetchResult> fetch(const FetchOptions& options, const http::Client& client) {
  return Fetcher(options, client).run();
}

}  // namespace moeserve::fetch
