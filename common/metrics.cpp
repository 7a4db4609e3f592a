#include "common/metrics.h"

#include <prometheus/text_serializer.h>

namespace moeserve::metrics {

std::string serialize(const std::vector<std::shared_ptr<prometheus::Registry>>& registries) {
  std::vector<prometheus::MetricFamily> families;
  for (const auto& registry : registries) {
    auto collected = registry->Collect();
    families.insert(families.end(), std::make_move_iterator(collected.begin()),
                    std::make_move_iterator(collected.end()));
  }
  return prometheus::TextSerializer().Serialize(families);
}

void add_metrics_route(http::Server& server,
                       std::vector<std::shared_ptr<prometheus::Registry>> registries) {
  server.route("GET", "/metrics",
               http::SimpleHandler([registries = std::move(registries)](const http::Request&) {
                 http::Response r;
                 r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                 r.body = serialize(registries);
                 return r;
               }));
}

}  // namespace moeserve::metrics
