// An in-process Hugging Face Hub for moeserve-fetch's tests, on common/http_server.h:
// the revision endpoint (GET /api/models/{repo}/revision/{rev}?blobs=true), resolve
// (GET /{repo}/resolve/{sha}/{file}) and a CDN (GET /cdn/{sha}/{file}, with Range).
// LFS files are redirected (302) to the CDN at another origin (http://localhost:PORT,
// while the Hub is http://127.0.0.1:PORT); other files by a relative 307 to the CDN on
// the Hub's own origin. Faults per file: `corrupt` (the CDN serves other bytes than the
// listed checksum), `missing` (resolve answers 404), `listed_size` (a wrong size in the
// listing). `token` set: every request without "Bearer <token>" gets 401 (a gated repo).
// `fail_api_times`: the next that many API requests get 503. Thread-safe; the counters
// and the recorded requests are read under the lock (requests()).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/http_server.h"

namespace moeserve::fetch::testing {

struct RepoFile {
  std::string name;
  std::string content;
  bool lfs = false;
  bool corrupt = false;
  bool missing = false;
  std::optional<int64_t> listed_size;
};

struct SeenRequest {
  std::string path;
  std::string host;
  std::string authorization;
  std::string range;
};

std::string sha256_hex(const std::string& bytes);
std::string git_blob_hex(const std::string& bytes);

class FakeHub {
 public:
  FakeHub();
  ~FakeHub();

  std::string endpoint() const;  // http://127.0.0.1:PORT
  // Sets commit `sha` of `repo` to `files` and points `revision` (a branch or tag) at it.
  void set_commit(const std::string& revision, const std::string& sha, std::vector<RepoFile> files);
  void set_token(std::string token);
  void fail_api_times(int times);
  std::vector<SeenRequest> requests() const;
  // Requests whose path starts with `prefix`.
  int count(const std::string& prefix) const;

  std::string repo = "org/model";

 private:
  http::Response api(const http::Request& request);
  http::Response resolve(const http::Request& request);
  http::Response cdn(const http::Request& request);
  bool authorised(const http::Request& request) const;
  const RepoFile* find(const std::string& sha, const std::string& name) const;

  mutable std::mutex mutex_;
  std::map<std::string, std::string> revisions_;          // revision -> sha
  std::map<std::string, std::vector<RepoFile>> commits_;  // sha -> files
  std::string token_;
  int fail_api_ = 0;
  std::vector<SeenRequest> seen_;
  std::unique_ptr<http::Server> server_;
};

}  // namespace moeserve::fetch::testing
