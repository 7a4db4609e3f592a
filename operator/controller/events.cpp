#include "operator/controller/events.h"

#include <cstdio>

#include "common/log.h"
#include "operator/deployment/rfc3339.h"

namespace moeserve::controller {
namespace {

constexpr auto kDedupeWindow = std::chrono::minutes(10);

}  // namespace

EventRecorder::EventRecorder(const kube::Client& client, std::string component, const Clock* clock)
    : client_(client), component_(std::move(component)), clock_(clock) {}

void EventRecorder::record(const nlohmann::json& involved, const std::string& type,
                           const std::string& reason, const std::string& message) {
  const auto& meta = involved.value("metadata", nlohmann::json::object());
  std::string ns = meta.value("namespace", "default");
  std::string name = meta.value("name", "");
  std::string uid = meta.value("uid", "");
  std::string now = deployment::format_rfc3339(
      std::chrono::sys_seconds(std::chrono::seconds(clock_->unix_seconds())));
  std::string dedupe_key = uid + "|" + type + "|" + reason + "|" + message;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = recent_.find(dedupe_key);
  if (it != recent_.end() && clock_->now() - it->second.last < kDedupeWindow) {
    it->second.count += 1;
    it->second.last = clock_->now();
    auto patched = client_.patch(kube::resources::kEvents, it->second.namespace_, it->second.name,
                                 kube::PatchType::kMerge,
                                 {{"count", it->second.count}, {"lastTimestamp", now}});
    if (patched.ok()) return;
    recent_.erase(it);  // the Event is gone (expired): create a new one
  }
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".%llx%04llx",
                static_cast<unsigned long long>(clock_->unix_seconds()),
                static_cast<unsigned long long>(++sequence_ & 0xffff));
  nlohmann::json event = {{"apiVersion", "v1"},
                          {"kind", "Event"},
                          {"metadata", {{"name", name + suffix}, {"namespace", ns}}},
                          {"involvedObject",
                           {{"apiVersion", involved.value("apiVersion", "")},
                            {"kind", involved.value("kind", "")},
                            {"name", name},
                            {"namespace", ns},
                            {"uid", uid},
                            {"resourceVersion", meta.value("resourceVersion", "")}}},
                          {"type", type},
                          {"reason", reason},
                          {"message", message},
                          {"source", {{"component", component_}}},
                          {"reportingComponent", component_},
                          {"firstTimestamp", now},
                          {"lastTimestamp", now},
                          {"count", 1}};
  auto created = client_.create(kube::resources::kEvents, ns, event);
  if (!created.ok()) {
    log::warn(
        "cannot record event",
        {{"object", ns + "/" + name}, {"reason", reason}, {"error", created.status().to_string()}});
    return;
  }
  recent_[dedupe_key] = {ns, name + suffix, 1, clock_->now()};
  log::info(
      "event",
      {{"object", ns + "/" + name}, {"type", type}, {"reason", reason}, {"message", message}});
}

}  // namespace moeserve::controller
