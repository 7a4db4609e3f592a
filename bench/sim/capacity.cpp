#include "bench/sim/capacity.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "common/file.h"

namespace moeserve::sim {
namespace {

StatusOr<Curve> curve_of(const nlohmann::json& j, const std::string& key) {
  if (!j.contains(key) || !j[key].is_array() || j[key].empty()) {
    return invalid_argument_error(key + ": expected a non-empty array of [x, y] points");
  }
  Curve c;
  for (const auto& p : j[key]) {
    if (!p.is_array() || p.size() != 2 || !p[0].is_number() || !p[1].is_number()) {
      return invalid_argument_error(key + ": each point must be [x, y]");
    }
    const double x = p[0].get<double>(), y = p[1].get<double>();
    if (!(y > 0) || !(x > 0)) return invalid_argument_error(key + ": x and y must be > 0");
    if (!c.points.empty() && x <= c.points.back().first) {
      return invalid_argument_error(key + ": x must ascend");
    }
    c.points.emplace_back(x, y);
  }
  return c;
}

}  // namespace

double Curve::at(double x) const {
  if (x <= points.front().first) return points.front().second;
  for (size_t i = 1; i < points.size(); ++i) {
    if (x <= points[i].first) {
      const auto& [x0, y0] = points[i - 1];
      const auto& [x1, y1] = points[i];
      return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
    }
  }
  return points.back().second;
}

StatusOr<Capacity> parse_capacity(std::string_view json_text) {
  const nlohmann::json j = nlohmann::json::parse(json_text, nullptr, false);
  if (!j.is_object()) return invalid_argument_error("capacity: not a JSON object");
  static const std::set<std::string> kKeys = {"name",
                                              "notes",
                                              "usd_per_group_hour",
                                              "startup_s",
                                              "kv_tokens",
                                              "max_batch",
                                              "max_prefill_tokens",
                                              "prefill_tokens_per_s",
                                              "decode_tokens_per_s"};
  for (const auto& [key, _] : j.items()) {
    if (!kKeys.count(key)) return invalid_argument_error("capacity: unknown key " + key);
  }
  Capacity c;
  c.name = j.value("name", "");
  auto number = [&](const char* key, double min) -> StatusOr<double> {
    if (!j.contains(key) || !j[key].is_number()) {
      return invalid_argument_error(std::string("capacity: ") + key + ": expected a number");
    }
    const double v = j[key].get<double>();
    if (!(v >= min)) {
      return invalid_argument_error(std::string("capacity: ") + key +
                                    ": must be >= " + std::to_string(min));
    }
    return v;
  };
  MOESERVE_ASSIGN_OR_RETURN(c.usd_per_group_hour, number("usd_per_group_hour", 0));
  MOESERVE_ASSIGN_OR_RETURN(c.startup_s, number("startup_s", 0));
  MOESERVE_ASSIGN_OR_RETURN(double kv, number("kv_tokens", 1));
  MOESERVE_ASSIGN_OR_RETURN(double batch, number("max_batch", 1));
  MOESERVE_ASSIGN_OR_RETURN(double prefill, number("max_prefill_tokens", 1));
  c.kv_tokens = static_cast<int64_t>(kv);
  c.max_batch = static_cast<int32_t>(batch);
  c.max_prefill_tokens = static_cast<int64_t>(prefill);
  MOESERVE_ASSIGN_OR_RETURN(c.prefill_tokens_per_s, curve_of(j, "prefill_tokens_per_s"));
  MOESERVE_ASSIGN_OR_RETURN(c.decode_tokens_per_s, curve_of(j, "decode_tokens_per_s"));
  return c;
}

StatusOr<Capacity> read_capacity_file(const std::string& path) {
  MOESERVE_ASSIGN_OR_RETURN(std::string text, read_file(path));
  StatusOr<Capacity> c = parse_capacity(text);
  if (!c.ok()) return invalid_argument_error(path + ": " + c.status().message());
  return c;
}

double saturated_tokens_per_s(const Capacity& c, double prompt, double output) {
  const double per_request_kv = std::max(1.0, prompt + output);
  const double batch = std::max(
      1.0,
      std::min<double>(c.max_batch, std::floor(static_cast<double>(c.kv_tokens) / per_request_kv)));
  const double prefill_batch =
      std::min<double>(static_cast<double>(c.max_prefill_tokens), std::max(prompt, prompt * batch));
  const double seconds = prompt / c.prefill_tokens_per_s.at(prefill_batch) +
                         std::max(0.0, output - 1) / c.decode_tokens_per_s.at(batch);
  return (prompt + output) / seconds;
}

}  // namespace moeserve::sim
