#include "operator/kube/reflector.h"

#include <algorithm>
#include <cmath>

#include "common/log.h"
#include "operator/kube/errors.h"

namespace moeserve::kube {

using nlohmann::json;

namespace {

std::string resource_version_of(const json& object) {
  const json& meta = object.value("metadata", json::object());
  return meta.value("resourceVersion", "");
}

}  // namespace

std::string object_key(const json& object) {
  const json& meta = object.value("metadata", json::object());
  std::string name = meta.value("name", "");
  std::string ns = meta.value("namespace", "");
  return ns.empty() ? name : ns + "/" + name;
}

Reflector::Reflector(const Client& client, ResourceRef ref, std::string ns,
                     ReflectorHandlers handlers, ReflectorOptions options)
    : client_(client),
      ref_(std::move(ref)),
      ns_(std::move(ns)),
      handlers_(std::move(handlers)),
      options_(std::move(options)),
      rng_(options_.seed != 0 ? options_.seed : std::random_device{}()) {}

void Reflector::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
}

bool Reflector::sleep_ms(int64_t delay_ms) {
  if (options_.sleep) return options_.sleep(delay_ms) && !stop_.load();
  std::unique_lock<std::mutex> lock(mutex_);
  wake_.wait_for(lock, std::chrono::milliseconds(delay_ms), [this] { return stop_.load(); });
  return !stop_.load();
}

int64_t Reflector::next_backoff_ms(const Status& error) {
  double base = static_cast<double>(options_.backoff_initial_ms) *
                std::pow(2.0, static_cast<double>(std::min<int64_t>(failures_, 30)));
  ++failures_;
  double jitter = std::uniform_real_distribution<double>(0.0, 1.0)(rng_) * options_.jitter;
  double delay = std::min(base * (1.0 + jitter), static_cast<double>(options_.backoff_max_ms));
  int64_t delay_ms = static_cast<int64_t>(delay);
  if (auto retry = retry_after_seconds(error)) delay_ms = std::max(delay_ms, *retry * 1000);
  return delay_ms;
}

std::optional<json> Reflector::get(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return std::nullopt;
  return it->second;
}

std::vector<json> Reflector::items() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<json> out;
  out.reserve(cache_.size());
  for (const auto& [key, object] : cache_) out.push_back(object);
  return out;
}

std::vector<json> Reflector::items_where(const std::function<bool(const json&)>& match) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<json> out;
  for (const auto& [key, object] : cache_) {
    if (match(object)) out.push_back(object);
  }
  return out;
}

std::string Reflector::resource_version() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return resource_version_;
}

Status Reflector::list_and_sync() {
  ListOptions list_options;
  list_options.label_selector = options_.label_selector;
  list_options.field_selector = options_.field_selector;
  list_options.limit = options_.page_size;
  lists_.fetch_add(1);
  MOESERVE_ASSIGN_OR_RETURN(ListResult list, client_.list_all(ref_, ns_, list_options));
  std::map<std::string, json> fresh;
  for (auto& item : list.items) fresh.emplace(object_key(item), std::move(item));

  std::vector<json> added, deleted;
  std::vector<std::pair<json, json>> updated;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [key, object] : cache_) {
      if (!fresh.count(key)) deleted.push_back(object);
    }
    for (const auto& [key, object] : fresh) {
      auto old = cache_.find(key);
      if (old == cache_.end()) {
        added.push_back(object);
      } else if (resource_version_of(old->second) != resource_version_of(object)) {
        updated.emplace_back(old->second, object);
      }
    }
    cache_ = std::move(fresh);
    resource_version_ = list.resource_version;
  }
  synced_.store(true);
  for (const auto& object : deleted) {
    if (handlers_.on_delete) handlers_.on_delete(object);
  }
  for (const auto& object : added) {
    if (handlers_.on_add) handlers_.on_add(object);
  }
  for (const auto& [old_object, new_object] : updated) {
    if (handlers_.on_update) handlers_.on_update(old_object, new_object);
  }
  return ok_status();
}

void Reflector::apply(WatchEventType type, const json& object) {
  std::string key = object_key(object);
  std::optional<json> old;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string version = resource_version_of(object);
    if (!version.empty()) resource_version_ = version;
    if (type == WatchEventType::kBookmark) return;
    auto it = cache_.find(key);
    if (it != cache_.end()) old = it->second;
    if (type == WatchEventType::kDeleted) {
      cache_.erase(key);
    } else {
      cache_[key] = object;
    }
  }
  if (type == WatchEventType::kDeleted) {
    if (handlers_.on_delete) handlers_.on_delete(old ? *old : object);
  } else if (old) {
    if (handlers_.on_update) handlers_.on_update(*old, object);
  } else if (handlers_.on_add) {
    handlers_.on_add(object);
  }
}

Status Reflector::watch_once() {
  WatchOptions watch_options;
  watch_options.resource_version = resource_version();
  watch_options.timeout_seconds = options_.watch_timeout_seconds;
  watch_options.read_timeout_ms = options_.watch_read_timeout_ms;
  watch_options.allow_bookmarks = options_.allow_bookmarks;
  watch_options.label_selector = options_.label_selector;
  watch_options.field_selector = options_.field_selector;
  watches_.fetch_add(1);
  return client_.watch(
      ref_, ns_, watch_options,
      [this](const WatchEvent& event) {
        failures_ = 0;
        apply(event.type, event.object);
        return true;
      },
      &stop_);
}

void Reflector::run() {
  bool need_list = true;
  while (!stop_.load()) {
    bool watching = !need_list;
    Status status = watching ? watch_once() : list_and_sync();
    if (status.ok()) {
      // A listed cache, or a watch that the server ended (timeout): watch again.
      need_list = false;
      continue;
    }
    if (stop_.load()) break;
    errors_.fetch_add(1);
    if (status.code() == StatusCode::kGone) {
      log::info("watch expired; relisting",
                {{"resource", ref_.resource}, {"error", status.message()}});
      need_list = true;
      continue;
    }
    // A read timeout only means a quiet stream: re-watch from where we are.
    if (watching && status.code() == StatusCode::kDeadlineExceeded) continue;
    // Other failures: back off, then resume what failed (a watch resumes from the last
    // resourceVersion; if that has expired meanwhile, the server answers 410).
    int64_t delay_ms = next_backoff_ms(status);
    log::warn("list/watch failed; retrying",
              {{"resource", ref_.resource}, {"error", status.to_string()}, {"delay_ms", delay_ms}});
    if (!sleep_ms(delay_ms)) break;
  }
}

}  // namespace moeserve::kube
