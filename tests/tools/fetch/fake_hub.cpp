#include "tests/tools/fetch/fake_hub.h"

#include <openssl/evp.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace moeserve::fetch::testing {
namespace {

using nlohmann::json;

std::string hex_digest(const EVP_MD* md, const std::string& bytes) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), out, &length, md, nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  for (unsigned int i = 0; i < length; ++i) {
    text += kHex[out[i] >> 4];
    text += kHex[out[i] & 15];
  }
  return text;
}

std::string percent_decode(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

http::Response hub_error(int status, const std::string& code, const std::string& message) {
  http::Response out = http::json_response(status, json({{"error", message}}).dump());
  out.headers.emplace_back("X-Error-Code", code);
  out.headers.emplace_back("X-Error-Message", message);
  return out;
}

}  // namespace

std::string sha256_hex(const std::string& bytes) { return hex_digest(EVP_sha256(), bytes); }

std::string git_blob_hex(const std::string& bytes) {
  const std::string header = "blob " + std::to_string(bytes.size());
  return hex_digest(EVP_sha1(), header + std::string(1, '\0') + bytes);
}

FakeHub::FakeHub() {
  http::ServerOptions options;
  options.handler_threads = 8;
  server_ = std::make_unique<http::Server>(options);
  auto route = [this](const char* prefix,
                      http::Response (FakeHub::*handler)(const http::Request&)) {
    server_->route_prefix(
        "GET", prefix, [this, handler](const http::Request& r, http::Responder& out) {
          {
            std::lock_guard<std::mutex> lock(mutex_);
            seen_.push_back(
                {r.path, r.header("host"), r.header("authorization"), r.header("range")});
          }
          out.send((this->*handler)(r));
        });
  };
  route("/api/models/", &FakeHub::api);
  route("/org/", &FakeHub::resolve);
  route("/cdn/", &FakeHub::cdn);
  if (!server_->start().ok()) throw std::runtime_error("fake hub: cannot start");
}

FakeHub::~FakeHub() { server_->shutdown(0); }

std::string FakeHub::endpoint() const {
  return "http://127.0.0.1:" + std::to_string(server_->port());
}

void FakeHub::set_commit(const std::string& revision, const std::string& sha,
                         std::vector<RepoFile> files) {
  std::lock_guard<std::mutex> lock(mutex_);
  revisions_[revision] = sha;
  revisions_[sha] = sha;
  commits_[sha] = std::move(files);
}

void FakeHub::set_token(std::string token) {
  std::lock_guard<std::mutex> lock(mutex_);
  token_ = std::move(token);
}

void FakeHub::fail_api_times(int times) {
  std::lock_guard<std::mutex> lock(mutex_);
  fail_api_ = times;
}

std::vector<SeenRequest> FakeHub::requests() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return seen_;
}

int FakeHub::count(const std::string& prefix) const {
  int n = 0;
  for (const SeenRequest& r : requests()) n += r.path.rfind(prefix, 0) == 0 ? 1 : 0;
  return n;
}

bool FakeHub::authorised(const http::Request& request) const {
  return token_.empty() || request.header("authorization") == "Bearer " + token_;
}

const RepoFile* FakeHub::find(const std::string& sha, const std::string& name) const {
  auto commit = commits_.find(sha);
  if (commit == commits_.end()) return nullptr;
  for (const RepoFile& f : commit->second) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

http::Response FakeHub::api(const http::Request& request) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fail_api_ > 0) {
    --fail_api_;
    return http::text_response(503, "try again");
  }
  if (!authorised(request)) return hub_error(401, "GatedRepo", "Access to model is restricted");
  const std::string prefix = "/api/models/" + repo + "/revision/";
  if (request.path.rfind(prefix, 0) != 0) return hub_error(404, "RepoNotFound", "no such repo");
  const std::string revision = percent_decode(request.path.substr(prefix.size()));
  auto it = revisions_.find(revision);
  if (it == revisions_.end()) {
    return hub_error(404, "RevisionNotFound", "Invalid rev id: " + revision);
  }
  json siblings = json::array();
  for (const RepoFile& f : commits_[it->second]) {
    const int64_t size = f.listed_size.value_or(static_cast<int64_t>(f.content.size()));
    json sibling = {{"rfilename", f.name}};
    if (request.query_param("blobs") == "true") {
      sibling["size"] = size;
      sibling["blobId"] = git_blob_hex(f.lfs ? "pointer of " + f.name : f.content);
      if (f.lfs)
        sibling["lfs"] = {{"sha256", sha256_hex(f.content)}, {"size", size}, {"pointerSize", 134}};
    }
    siblings.push_back(sibling);
  }
  return http::json_response(
      200, json({{"id", repo}, {"sha", it->second}, {"siblings", siblings}}).dump());
}

http::Response FakeHub::resolve(const http::Request& request) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!authorised(request)) return hub_error(401, "GatedRepo", "Access to model is restricted");
  const std::string prefix = "/" + repo + "/resolve/";
  if (request.path.rfind(prefix, 0) != 0) return hub_error(404, "RepoNotFound", "no such repo");
  const std::string rest = percent_decode(request.path.substr(prefix.size()));
  const std::string sha = rest.substr(0, rest.find('/'));
  const std::string name = rest.substr(rest.find('/') + 1);
  const RepoFile* file = find(sha, name);
  if (!file || file->missing) return hub_error(404, "EntryNotFound", name + " does not exist");
  http::Response out = http::text_response(file->lfs ? 302 : 307, "");
  const std::string cdn_path = "/cdn/" + sha + "/" + name;
  out.headers.emplace_back(
      "Location",
      file->lfs ? "http://localhost:" + std::to_string(server_->port()) + cdn_path : cdn_path);
  return out;
}

http::Response FakeHub::cdn(const http::Request& request) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string rest = percent_decode(request.path.substr(5));
  const RepoFile* file = find(rest.substr(0, rest.find('/')), rest.substr(rest.find('/') + 1));
  if (!file) return http::text_response(404, "no such object");
  std::string body = file->content;
  if (file->corrupt) body[body.size() / 2] ^= 0x5a;
  http::Response out;
  out.content_type = "application/octet-stream";
  const std::string range = request.header("range");
  if (range.rfind("bytes=", 0) == 0 && range.back() == '-') {
    const size_t from = std::stoul(range.substr(6));
    if (from >= body.size()) return http::text_response(416, "range not satisfiable");
    out.status = 206;
    out.headers.emplace_back("Content-Range", "bytes " + std::to_string(from) + "-" +
                                                  std::to_string(body.size() - 1) + "/" +
                                                  std::to_string(body.size()));
    body = body.substr(from);
  }
  out.body = std::move(body);
  return out;
}

}  // namespace moeserve::fetch::testing
