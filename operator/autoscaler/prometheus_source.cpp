#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "operator/autoscaler/prometheus_source.h"

namespace moeserve::autoscaler {
namespace {

std::string percent_encode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      char buffer[4];
      std::snprintf(buffer, sizeof(buffer), "%%%02X", c);
      out += buffer;
    }
  }
  return out;
}

// A PromQL string literal (double-quoted, backslash and quote escaped).
std::string promql_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '\\' || c == '"') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

}  // namespace

StatusOr<std::vector<std::pair<std::map<std::string, std::string>, double>>> parse_query_response(
    const std::string& body) {
  const nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return invalid_argument_error("prometheus: response is not a JSON object");
  }
  if (doc.value("status", "") != "success") {
    return unavailable_error("prometheus: " + doc.value("errorType", std::string("error")) + ": " +
                             doc.value("error", std::string("(no message)")));
  }
  if (!doc.contains("data") || !doc["data"].is_object()) {
    return invalid_argument_error("prometheus: response without data");
  }
  const nlohmann::json& data = doc["data"];
  const std::string type = data.value("resultType", "");
  const nlohmann::json result = data.contains("result") ? data["result"] : nlohmann::json();
  auto value_of = [](const nlohmann::json& pair) -> std::optional<double> {
    if (!pair.is_array() || pair.size() != 2 || !pair[1].is_string()) return std::nullopt;
    auto samples = parse_exposition("x " + pair[1].get<std::string>());
    if (!samples.ok() || samples->size() != 1) return std::nullopt;
    return (*samples)[0].value;
  };
  std::vector<std::pair<std::map<std::string, std::string>, double>> out;
  if (type == "scalar") {
    auto v = value_of(result);
    if (!v) return invalid_argument_error("prometheus: malformed scalar result");
    out.push_back({{}, *v});
    return out;
  }
  if (type != "vector" || !result.is_array()) {
    return invalid_argument_error("prometheus: expected a vector result, got '" + type + "'");
  }
  for (const nlohmann::json& series : result) {
    if (!series.is_object()) return invalid_argument_error("prometheus: malformed series");
    auto v = value_of(series.contains("value") ? series["value"] : nlohmann::json());
    if (!v) return invalid_argument_error("prometheus: malformed sample value");
    std::map<std::string, std::string> labels;
    if (series.contains("metric") && series["metric"].is_object()) {
      for (const auto& [k, label] : series["metric"].items()) {
        if (label.is_string()) labels[k] = label.get<std::string>();
      }
    }
    out.push_back({std::move(labels), *v});
  }
  return out;
}

PrometheusSource::PrometheusSource(std::shared_ptr<const http::Client> http,
                                   PrometheusOptions options)
    : http_(std::move(http)), options_(std::move(options)) {
  while (!options_.url.empty() && options_.url.back() == '/') options_.url.pop_back();
}

std::vector<std::string> PrometheusSource::queries(const ScrapeTarget& t) const {
  const std::string labels =
      "namespace=" + promql_string(t.ns) + ",deployment=" + promql_string(t.name);
  const std::string sel = "{" + labels + "}";
  const std::string rate = "[" + std::to_string(options_.rate_window_seconds) + "s]";
  const std::string load = "[" + std::to_string(options_.load_window_seconds) + "s]";
  const MetricNames& names = metric_names(t.engine);
  std::vector<std::string> out = {
      "sum(rate(" + std::string(names.prompt_tokens) + sel + rate + ")) + sum(rate(" +
          names.generation_tokens + sel + rate + "))",
      "histogram_quantile(0.95, sum by (le) (rate(" + std::string(names.ttft_bucket) + sel + rate +
          ")))",
      "sum(" + std::string(names.requests_waiting) + sel + ")",
      // Requests started per second: the TTFT histogram's +Inf bucket counts every first
      // token, as the scrape source reads it (GroupWindow::requests_per_second).
      "sum(rate(" + std::string(names.ttft_bucket) + "{" + labels + ",le=\"+Inf\"}" + rate + "))",
  };
  if (names.expert_tokens) {
    out.push_back("sum by (layer, expert) (increase(" + std::string(names.expert_tokens) + sel +
                  load + "))");
  }
  return out;
}

StatusOr<std::vector<PrometheusSource::Series>> PrometheusSource::query(
    const std::string& promql) const {
  http::ClientRequest request;
  request.url = options_.url + "/api/v1/query?query=" + percent_encode(promql);
  request.timeout_ms = options_.timeout_ms;
  MOESERVE_ASSIGN_OR_RETURN(http::ClientResponse response, http_->send(request));
  // Prometheus answers 400/422/503 with a JSON error body; parse_query_response reads it.
  auto parsed = parse_query_response(response.body);
  if (!parsed.ok()) {
    return parsed.status().with_context("query " + promql + " (HTTP " +
                                        std::to_string(response.status) + ")");
  }
  std::vector<Series> out;
  for (auto& [labels, value] : *parsed) out.push_back({std::move(labels), value});
  return out;
}

Measurement PrometheusSource::measure(const ScrapeTarget& target, Clock::TimePoint) {
  Measurement m;
  const std::vector<std::string> q = queries(target);
  auto first = [&](const std::string& promql) -> std::optional<double> {
    auto series = query(promql);
    if (!series.ok()) {
      m.errors.push_back(series.status().to_string());
      return std::nullopt;
    }
    if (series->empty() || std::isnan((*series)[0].value)) return std::nullopt;
    return (*series)[0].value;
  };
  m.tokens_per_second = first(q[0]);
  m.ttft_p95_seconds = first(q[1]);
  m.requests_waiting = first(q[2]);
  m.requests_per_second = first(q[3]);
  if (q.size() < 5) {
    m.groups_measured = m.tokens_per_second ? static_cast<int32_t>(target.groups.size()) : 0;
    return m;
  }
  auto experts = query(q[4]);
  if (experts.ok()) {
    std::map<ExpertKey, double> loads;
    for (const Series& s : *experts) {
      auto layer = s.labels.find("layer");
      auto expert = s.labels.find("expert");
      if (layer == s.labels.end() || expert == s.labels.end() || std::isnan(s.value)) continue;
      char* end = nullptr;
      const long long l = std::strtoll(layer->second.c_str(), &end, 10);
      if (*end != '\0' || l < 0) continue;
      const long e = std::strtol(expert->second.c_str(), &end, 10);
      if (*end != '\0' || e < 0 || e > (1 << 20)) continue;
      loads[{l, static_cast<int32_t>(e)}] += s.value;
    }
    m.expert_load = expert_load_from(loads);
  } else {
    m.errors.push_back(experts.status().to_string());
  }
  m.groups_measured = m.tokens_per_second ? static_cast<int32_t>(target.groups.size()) : 0;
  return m;
}

}  // namespace moeserve::autoscaler
