#include "bench/load/load_report.h"

#include <algorithm>
#include <cstdio>

namespace moeserve::load {

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t i =
      std::min(values.size() - 1, static_cast<size_t>(p * static_cast<double>(values.size())));
  return values[i];
}

Percentiles percentiles(const std::vector<double>& values) {
  return {percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.99)};
}

int64_t LoadReport::failed() const {
  int64_t n = connection_errors + mid_stream_errors;
  for (const auto& [status, count] : http_errors) n += count;
  return n;
}

LoadReport summarize(const std::vector<CompletionResult>& results, double wall_s) {
  LoadReport r;
  r.wall_s = wall_s;
  std::vector<double> ttft, itl;
  for (const CompletionResult& c : results) {
    r.sent += 1;
    switch (c.outcome) {
      case Outcome::kOk:
        r.ok += 1;
        r.output_tokens += c.output_tokens;
        if (c.ttft_s >= 0) ttft.push_back(c.ttft_s);
        itl.insert(itl.end(), c.itl_s.begin(), c.itl_s.end());
        break;
      case Outcome::kHttpStatus:
        if (c.http_status == 429) {
          r.rate_limited += 1;
          r.rate_limited_retry_after += c.retry_after.empty() ? 0 : 1;
        } else {
          r.http_errors[c.http_status] += 1;
        }
        break;
      case Outcome::kConnection: r.connection_errors += 1; break;
      case Outcome::kMidStream: r.mid_stream_errors += 1; break;
    }
    if (c.outcome != Outcome::kOk && c.http_status != 429 && r.first_error.empty()) {
      r.first_error = std::string(outcome_name(c.outcome)) + ": " + c.error;
    }
  }
  if (wall_s > 0) {
    r.requests_per_s = static_cast<double>(r.ok) / wall_s;
    r.output_tokens_per_s = static_cast<double>(r.output_tokens) / wall_s;
  }
  r.ttft_s = percentiles(ttft);
  r.itl_s = percentiles(itl);
  return r;
}

namespace {

nlohmann::json percentiles_json(const Percentiles& p) {
  return {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}};
}

}  // namespace

nlohmann::json report_json(const LoadReport& r) {
  nlohmann::json http = nlohmann::json::object();
  for (const auto& [status, count] : r.http_errors) http[std::to_string(status)] = count;
  return {{"wall_s", r.wall_s},
          {"sent", r.sent},
          {"ok", r.ok},
          {"requests_per_s", r.requests_per_s},
          {"output_tokens", r.output_tokens},
          {"output_tokens_per_s", r.output_tokens_per_s},
          {"ttft_s", percentiles_json(r.ttft_s)},
          {"itl_s", percentiles_json(r.itl_s)},
          {"rate_limited", r.rate_limited},
          {"rate_limited_with_retry_after", r.rate_limited_retry_after},
          {"errors",
           {{"http", http},
            {"connection", r.connection_errors},
            {"mid_stream", r.mid_stream_errors},
            {"total", r.failed()}}},
          {"first_error", r.first_error}};
}

std::string report_text(const LoadReport& r) {
  char buf[1024];
  std::string http;
  for (const auto& [status, count] : r.http_errors) {
    http += " " + std::to_string(status) + "x" + std::to_string(count);
  }
  std::snprintf(
      buf, sizeof buf,
      "requests: %lld sent, %lld ok, %lld 429 (%lld with Retry-After), %lld failed "
      "(http:%s, connection %lld, mid-stream %lld) in %.1f s\n"
      "throughput: %.2f req/s, %.1f output tok/s\n"
      "TTFT ms: p50 %.1f  p90 %.1f  p99 %.1f\n"
      "ITL ms:  p50 %.1f  p90 %.1f  p99 %.1f",
      static_cast<long long>(r.sent), static_cast<long long>(r.ok),
      static_cast<long long>(r.rate_limited), static_cast<long long>(r.rate_limited_retry_after),
      static_cast<long long>(r.failed()), http.empty() ? " none" : http.c_str(),
      static_cast<long long>(r.connection_errors), static_cast<long long>(r.mid_stream_errors),
      r.wall_s, r.requests_per_s, r.output_tokens_per_s, r.ttft_s.p50 * 1e3, r.ttft_s.p90 * 1e3,
      r.ttft_s.p99 * 1e3, r.itl_s.p50 * 1e3, r.itl_s.p90 * 1e3, r.itl_s.p99 * 1e3);
  std::string out = buf;
  if (!r.first_error.empty()) out += "\nfirst failure: " + r.first_error;
  return out;
}

}  // namespace moeserve::load
