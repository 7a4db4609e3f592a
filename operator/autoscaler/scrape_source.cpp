#include "operator/autoscaler/scrape_source.h"

namespace moeserve::autoscaler {

ScrapeSource::ScrapeSource(std::shared_ptr<const http::Client> http, ScrapeOptions options)
    : http_(std::move(http)), options_(options) {}

StatusOr<WorkerSample> ScrapeSource::scrape(const std::string& url, EngineMetrics engine) const {
  http::ClientRequest request;
  request.url = url;
  request.timeout_ms = options_.timeout_ms;
  request.headers = {{"Accept", "text/plain;version=0.0.4"}};
  MOESERVE_ASSIGN_OR_RETURN(http::ClientResponse response, http_->send(request));
  if (response.status != 200) {
    return unavailable_error("GET " + url + ": HTTP " + std::to_string(response.status));
  }
  if (response.body.size() > options_.max_body_bytes) {
    return resource_exhausted_error("GET " + url + ": body of " +
                                    std::to_string(response.body.size()) + " bytes");
  }
  MOESERVE_ASSIGN_OR_RETURN(std::vector<Sample> samples, parse_exposition(response.body));
  return worker_sample_from(samples, engine);
}

Measurement ScrapeSource::measure(const ScrapeTarget& target, Clock::TimePoint now) {
  std::map<std::string, std::unique_ptr<GroupWindow>>* windows;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    windows = &windows_[target.key()];
  }
  // Groups gone (or moved to another pod or address) lose their history.
  std::map<std::string, std::unique_ptr<GroupWindow>> kept;
  Measurement m;
  for (const GroupEndpoint& group : target.groups) {
    const std::string id = group.pod + " " + group.metrics_url;
    auto it = windows->find(id);
    std::unique_ptr<GroupWindow> window =
        it != windows->end()
            ? std::move(it->second)
            : std::make_unique<GroupWindow>(options_.rate_window, options_.load_window);
    StatusOr<WorkerSample> sample = scrape(group.metrics_url, target.engine);
    if (sample.ok()) {
      window->add(now, *sample);
      ++m.groups_measured;
      m.requests_waiting = m.requests_waiting.value_or(0) + sample->requests_waiting;
      if (sample->placement) m.placements[group.group] = *sample->placement;
    } else {
      m.errors.push_back(group.pod + ": " + sample.status().to_string());
    }
    kept[id] = std::move(window);
  }
  *windows = std::move(kept);

  std::vector<const GroupWindow*> folded;
  for (const auto& [_, window] : *windows) folded.push_back(window.get());
  fold_windows(folded, &m);
  return m;
}

void ScrapeSource::forget(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  windows_.erase(key);
}

}  // namespace moeserve::autoscaler
