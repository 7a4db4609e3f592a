// Prometheus metrics: the text exposition of prometheus-cpp registries and the /metrics
// route that serves it. The registries belong to the caller (each component that exports
// metrics owns its own); this file keeps no process-wide state.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <prometheus/registry.h>

#include "common/http_server.h"

namespace moeserve::metrics {

// The text exposition (format 0.0.4) of the registries' current values.
std::string serialize(const std::vector<std::shared_ptr<prometheus::Registry>>& registries);

// GET /metrics on `server`, serving the registries.
void add_metrics_route(http::Server& server,
                       std::vector<std::shared_ptr<prometheus::Registry>> registries);

}  // namespace moeserve::metrics
