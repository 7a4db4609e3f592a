#include "operator/gateway/static_discovery.h"

#include <set>

#include "common/http_client.h"
#include "common/json_reader.h"
#include "common/log.h"
#include "common/yaml_json.h"

namespace moeserve::gateway {
namespace {

constexpr int64_t kProbeTimeoutMs = 1000;

void refuse_unknown_fields(const JsonReader& r, const std::set<std::string>& known) {
  if (!r.self().is_object()) return;
  for (const auto& [key, value] : r.self().items()) {
    if (!known.count(key)) r.fail(r.path(key), "unknown field");
  }
}

}  // namespace

StatusOr<Snapshot> parse_static_config(const nlohmann::json& document, const std::string& source) {
  std::vector<FieldError> errors;
  JsonReader root(document, "", &errors);
  if (!document.is_object()) {
    return invalid_argument_error(source + ": expected an object with a models list");
  }
  refuse_unknown_fields(root, {"models"});
  Snapshot snapshot;
  std::set<std::string> models;
  const std::vector<JsonReader> items = root.items("models");
  if (items.empty() && errors.empty()) {
    errors.push_back({"models", "at least one model is required"});
  }
  for (const JsonReader& item : items) {
    refuse_unknown_fields(item,
                          {"model", "deployment", "upstreams", "queueSize", "queueTimeoutSeconds"});
    ServedModel m;
    std::vector<std::string> urls;
    item.read("model", &m.model);
    item.read("deployment", &m.deployment);
    item.read("upstreams", &urls);
    item.read("queueSize", &m.queue_size);
    item.read("queueTimeoutSeconds", &m.queue_timeout_seconds);
    if (m.model.empty()) item.fail(item.path("model"), "required");
    if (!m.model.empty() && !models.insert(m.model).second) {
      item.fail(item.path("model"), "model " + json_quoted(m.model) + " is listed twice");
    }
    if (m.deployment.empty()) m.deployment = "static/" + m.model;
    if (urls.empty()) item.fail(item.path("upstreams"), "at least one base URL is required");
    if (m.queue_size < 0) item.fail(item.path("queueSize"), "must be >= 0");
    if (m.queue_timeout_seconds < 1) item.fail(item.path("queueTimeoutSeconds"), "must be >= 1");
    for (size_t i = 0; i < urls.size(); ++i) {
      std::string url = urls[i];
      while (url.ends_with("/")) url.pop_back();
      StatusOr<http::Url> parsed = http::parse_url(url);
      if (!parsed.ok()) {
        item.fail(item.path("upstreams") + "[" + std::to_string(i) + "]",
                  parsed.status().message());
      } else if (parsed->target != "/") {
        item.fail(item.path("upstreams") + "[" + std::to_string(i) + "]",
                  "a base URL has no path (the gateway appends /v1/...): " + json_quoted(url));
      }
      m.groups.push_back({m.deployment + "/g" + std::to_string(i), url, false});
    }
    snapshot.models.push_back(std::move(m));
  }
  if (!errors.empty()) {
    return invalid_argument_error(source + ": " + join_errors(errors));
  }
  return snapshot;
}

StatusOr<Snapshot> load_static_config(const std::string& path) {
  MOESERVE_ASSIGN_OR_RETURN(std::vector<nlohmann::json> docs, load_yaml_documents(path));
  if (docs.size() != 1) {
    return invalid_argument_error("--static-config " + path + ": expected one document, found " +
                                  std::to_string(docs.size()));
  }
  return parse_static_config(docs[0], "--static-config " + path);
}

StaticDiscovery::StaticDiscovery(Snapshot models, std::chrono::milliseconds probe_interval)
    : probe_interval_(probe_interval), snapshot_(std::move(models)) {}

StaticDiscovery::~StaticDiscovery() { stop(); }

void StaticDiscovery::start() {
  probe_all();
  prober_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, probe_interval_, [this] { return stopping_; })) {
      lock.unlock();
      probe_all();
      lock.lock();
    }
  });
}

void StaticDiscovery::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (prober_.joinable()) prober_.join();
}

void StaticDiscovery::probe_all() {
  http::ClientOptions options;
  options.connect_timeout_ms = kProbeTimeoutMs;
  options.request_timeout_ms = kProbeTimeoutMs;
  http::Client client(options);
  std::map<std::string, bool> ready;
  const Snapshot current = snapshot();
  for (const ServedModel& m : current.models) {
    for (const Upstream& u : m.groups) {
      StatusOr<http::ClientResponse> r = client.send({"GET", u.base_url + "/readyz", {}, ""});
      ready[u.id] = r.ok() && r->status == 200;
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (ServedModel& m : snapshot_.models) {
    for (Upstream& u : m.groups) {
      if (u.ready != ready[u.id]) {
        log::info(ready[u.id] ? "gateway: upstream ready" : "gateway: upstream not ready",
                  {{"model", m.model}, {"upstream", u.id}, {"url", u.base_url}});
      }
      u.ready = ready[u.id];
    }
  }
}

Snapshot StaticDiscovery::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return snapshot_;
}

void StaticDiscovery::report_waiting(const std::string& deployment, int64_t waiting) {
  std::lock_guard<std::mutex> lock(mutex_);
  waiting_[deployment] = waiting;
}

int64_t StaticDiscovery::waiting(const std::string& deployment) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = waiting_.find(deployment);
  return it == waiting_.end() ? 0 : it->second;
}

}  // namespace moeserve::gateway
