#include "bench/sim/trace.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "common/file.h"

namespace moeserve::sim {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '"'))
    s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '"')) {
    s.remove_suffix(1);
  }
  return s;
}

std::vector<std::string_view> split_csv(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t comma = line.find(',', start);
    out.push_back(trim(line.substr(start, comma - start)));
    if (comma == std::string_view::npos) return out;
    start = comma + 1;
  }
}

Status line_error(size_t line, const std::string& message) {
  return invalid_argument_error("line " + std::to_string(line) + ": " + message);
}

StatusOr<double> parse_double(std::string_view field, std::string_view column, size_t line) {
  double value = 0;
  const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (ec != std::errc() || end != field.data() + field.size() || field.empty() ||
      !std::isfinite(value)) {
    return line_error(line, std::string(column) + ": not a number: '" + std::string(field) + "'");
  }
  return value;
}

StatusOr<int64_t> parse_tokens(std::string_view field, std::string_view column, size_t line) {
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (ec != std::errc() || end != field.data() + field.size() || field.empty()) {
    return line_error(line,
                      std::string(column) + ": not a token count: '" + std::string(field) + "'");
  }
  if (value < 0) return line_error(line, std::string(column) + ": negative: " + std::string(field));
  return value;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// "2023-11-16 18:17:03.9799600" -> seconds since the epoch.
StatusOr<double> parse_azure_time(std::string_view field, size_t line) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0;
  char rest[40] = {0};
  const std::string text(field.substr(0, 60));
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2d %2d:%2d:%n", &y, &mo, &d, &h, &mi, &consumed) != 5 ||
      consumed == 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59) {
    return line_error(line, "TIMESTAMP: not a date-time: '" + std::string(field) + "'");
  }
  std::snprintf(rest, sizeof(rest), "%s", text.c_str() + consumed);
  MOESERVE_ASSIGN_OR_RETURN(double seconds, parse_double(rest, "TIMESTAMP seconds", line));
  if (seconds < 0 || seconds >= 61) {
    return line_error(line, "TIMESTAMP: not a date-time: '" + std::string(field) + "'");
  }
  return static_cast<double>(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60) + seconds;
}

struct Columns {
  const char* time;
  const char* prompt;
  const char* output;
};

Columns columns_of(TraceFormat format) {
  switch (format) {
    case TraceFormat::kAzure: return {"TIMESTAMP", "ContextTokens", "GeneratedTokens"};
    case TraceFormat::kBurstGpt: return {"Timestamp", "Request tokens", "Response tokens"};
    default: return {"timestamp_s", "prompt_tokens", "output_tokens"};
  }
}

// Appends one request read at `line`, checking the order of arrivals.
Status add_request(double time_s, int64_t prompt, int64_t output, size_t line,
                   std::vector<Request>* out) {
  if (time_s < 0) return line_error(line, "negative time " + std::to_string(time_s));
  if (!out->empty() && time_s < out->back().arrival_s) {
    return line_error(line, "time goes backwards (the trace must be sorted by arrival)");
  }
  out->push_back({time_s, prompt, std::max<int64_t>(output, 1)});
  return ok_status();
}

StatusOr<std::vector<Request>> parse_csv(std::string_view text, TraceFormat format) {
  const Columns want = columns_of(format);
  std::vector<Request> out;
  size_t line_no = 0, start = 0;
  std::map<std::string, size_t, std::less<>> index;
  size_t t = 0, p = 0, o = 0, needed = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (trim(line).empty()) continue;
    const std::vector<std::string_view> fields = split_csv(line);
    if (index.empty()) {
      for (size_t i = 0; i < fields.size(); ++i) index.emplace(fields[i], i);
      for (const char* c : {want.time, want.prompt, want.output}) {
        if (!index.count(c)) {
          return line_error(line_no, "missing column " + std::string(c) + " (a " +
                                         std::string(trace_format_name(format)) + " trace)");
        }
      }
      t = index.find(want.time)->second;
      p = index.find(want.prompt)->second;
      o = index.find(want.output)->second;
      needed = std::max({t, p, o}) + 1;
      continue;
    }
    if (fields.size() < needed) {
      return line_error(line_no, "expected at least " + std::to_string(needed) + " fields, got " +
                                     std::to_string(fields.size()));
    }
    double time_s = 0;
    if (format == TraceFormat::kAzure) {
      MOESERVE_ASSIGN_OR_RETURN(time_s, parse_azure_time(fields[t], line_no));
    } else {
      MOESERVE_ASSIGN_OR_RETURN(time_s, parse_double(fields[t], want.time, line_no));
    }
    MOESERVE_ASSIGN_OR_RETURN(int64_t prompt, parse_tokens(fields[p], want.prompt, line_no));
    MOESERVE_ASSIGN_OR_RETURN(int64_t output, parse_tokens(fields[o], want.output, line_no));
    MOESERVE_RETURN_IF_ERROR(add_request(time_s, prompt, output, line_no, &out));
  }
  if (index.empty()) return invalid_argument_error("the trace is empty");
  return out;
}

StatusOr<std::vector<Request>> parse_mooncake(std::string_view text) {
  std::vector<Request> out;
  size_t line_no = 0, start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = trim(text.substr(start, end - start));
    start = end + 1;
    ++line_no;
    if (line.empty()) continue;
    const nlohmann::json object = nlohmann::json::parse(line, nullptr, false);
    if (!object.is_object()) return line_error(line_no, "not a JSON object");
    for (const char* key : {"timestamp", "input_length", "output_length"}) {
      if (!object.contains(key)) return line_error(line_no, std::string("missing ") + key);
      if (!object[key].is_number()) return line_error(line_no, std::string(key) + ": not a number");
    }
    for (const char* key : {"input_length", "output_length"}) {
      if (!object[key].is_number_integer()) {
        return line_error(line_no, std::string(key) + ": not a token count");
      }
      if (object[key].get<int64_t>() < 0)
        return line_error(line_no, std::string(key) + ": negative");
    }
    if (object.contains("hash_ids") && !object["hash_ids"].is_array()) {
      return line_error(line_no, "hash_ids: not an array");
    }
    MOESERVE_RETURN_IF_ERROR(add_request(object["timestamp"].get<double>() / 1000.0,
                                         object["input_length"].get<int64_t>(),
                                         object["output_length"].get<int64_t>(), line_no, &out));
  }
  if (out.empty()) return invalid_argument_error("the trace is empty");
  return out;
}

// Exponentially distributed intervals [start, end) over [0, duration).
std::vector<std::pair<double, double>> intervals(double per_hour, double mean_s, double duration_s,
                                                 std::mt19937_64* rng) {
  std::vector<std::pair<double, double>> out;
  if (per_hour <= 0) return out;
  std::exponential_distribution<double> gap(per_hour / 3600.0), length(1.0 / mean_s);
  for (double t = gap(*rng); t < duration_s; t += gap(*rng)) {
    const double l = length(*rng);
    out.emplace_back(t, t + l);
    t += l;
  }
  return out;
}

bool inside(const std::vector<std::pair<double, double>>& spans, double t) {
  for (const auto& [a, b] : spans) {
    if (t >= a && t < b) return true;
  }
  return false;
}

}  // namespace

StatusOr<TraceFormat> parse_trace_format(std::string_view name) {
  for (TraceFormat f : {TraceFormat::kAuto, TraceFormat::kAzure, TraceFormat::kBurstGpt,
                        TraceFormat::kMooncake, TraceFormat::kCsv}) {
    if (trace_format_name(f) == name) return f;
  }
  return invalid_argument_error("--format: expected auto, azure, burstgpt, mooncake or csv, got '" +
                                std::string(name) + "'");
}

std::string_view trace_format_name(TraceFormat format) {
  switch (format) {
    case TraceFormat::kAuto: return "auto";
    case TraceFormat::kAzure: return "azure";
    case TraceFormat::kBurstGpt: return "burstgpt";
    case TraceFormat::kMooncake: return "mooncake";
    case TraceFormat::kCsv: return "csv";
  }
  return "csv";
}

StatusOr<TraceFormat> detect_trace_format(std::string_view text) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = trim(text.substr(start, end - start));
    start = end + 1;
    if (line.empty()) continue;
    if (line.front() == '{') return TraceFormat::kMooncake;
    const std::vector<std::string_view> fields = split_csv(line);
    auto has = [&](std::string_view name) {
      return std::find(fields.begin(), fields.end(), name) != fields.end();
    };
    if (has("TIMESTAMP") && has("ContextTokens")) return TraceFormat::kAzure;
    if (has("Timestamp") && has("Request tokens")) return TraceFormat::kBurstGpt;
    if (has("timestamp_s")) return TraceFormat::kCsv;
    return invalid_argument_error(
        "line 1: unknown trace header '" + std::string(line.substr(0, 80)) +
        "' (expected Azure TIMESTAMP,ContextTokens,GeneratedTokens, BurstGPT "
        "Timestamp,Model,Request tokens,Response tokens, Mooncake JSONL or "
        "timestamp_s,prompt_tokens,output_tokens)");
  }
  return invalid_argument_error("the trace is empty");
}

StatusOr<std::vector<Request>> parse_trace(std::string_view text, TraceFormat format) {
  if (format == TraceFormat::kAuto) {
    MOESERVE_ASSIGN_OR_RETURN(format, detect_trace_format(text));
  }
  StatusOr<std::vector<Request>> parsed =
      format == TraceFormat::kMooncake ? parse_mooncake(text) : parse_csv(text, format);
  if (!parsed.ok()) return parsed.status();
  std::vector<Request> out = std::move(parsed).value();
  if (out.empty()) return invalid_argument_error("the trace has a header but no requests");
  const double first = out.front().arrival_s;
  for (Request& r : out) r.arrival_s -= first;
  return out;
}

StatusOr<std::vector<Request>> read_trace_file(const std::string& path, TraceFormat format) {
  MOESERVE_ASSIGN_OR_RETURN(std::string text, read_file(path));
  StatusOr<std::vector<Request>> trace = parse_trace(text, format);
  if (!trace.ok()) return invalid_argument_error(path + ": " + trace.status().message());
  return trace;
}

std::string to_csv(const std::vector<Request>& trace) {
  std::string out = "timestamp_s,prompt_tokens,output_tokens\n";
  char line[96];
  for (const Request& r : trace) {
    std::snprintf(line, sizeof(line), "%.3f,%lld,%lld\n", r.arrival_s,
                  static_cast<long long>(r.prompt_tokens), static_cast<long long>(r.output_tokens));
    out += line;
  }
  return out;
}

std::vector<Request> scale_demand(const std::vector<Request>& trace, double factor, double jitter_s,
                                  uint64_t seed) {
  if (factor == 1) return trace;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0, 1), jitter(-jitter_s, jitter_s);
  const int64_t whole = static_cast<int64_t>(std::floor(factor));
  const double part = factor - static_cast<double>(whole);
  std::vector<Request> out;
  out.reserve(static_cast<size_t>(std::ceil(factor * static_cast<double>(trace.size()))));
  for (const Request& r : trace) {
    const int64_t copies = whole + (unit(rng) < part ? 1 : 0);
    for (int64_t c = 0; c < copies; ++c) {
      Request copy = r;
      if (c > 0) copy.arrival_s = std::max(0.0, r.arrival_s + jitter(rng));
      out.push_back(copy);
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Request& a, const Request& b) { return a.arrival_s < b.arrival_s; });
  return out;
}

StatusOr<SyntheticOptions> synthetic_preset(std::string_view name) {
  SyntheticOptions o;
  if (name == "diurnal") return o;
  if (name == "bursty") {
    o.bursts_per_hour = 1.5;
    return o;
  }
  if (name == "onoff") {
    o.bursts_per_hour = 1.5;
    o.idle_gaps_per_hour = 0.5;
    o.trough = 0.05;
    return o;
  }
  return invalid_argument_error("--synthetic: expected diurnal, bursty or onoff, got '" +
                                std::string(name) + "'");
}

std::vector<Request> synthetic_trace(const SyntheticOptions& o) {
  std::mt19937_64 rng(o.seed);
  const auto bursts = intervals(o.bursts_per_hour, o.burst_s, o.duration_s, &rng);
  const auto gaps = intervals(o.idle_gaps_per_hour, o.idle_gap_s, o.duration_s, &rng);
  const double max_rate = o.peak_rps * std::max(1.0, o.burst_factor);
  std::exponential_distribution<double> next(max_rate);
  std::uniform_real_distribution<double> unit(0, 1);
  std::normal_distribution<double> normal(0, 1);
  auto lognormal = [&](double median, double sigma, int64_t cap) {
    const double v = median * std::exp(sigma * normal(rng));
    return std::clamp<int64_t>(static_cast<int64_t>(std::llround(v)), 1, cap);
  };
  std::vector<Request> out;
  for (double t = next(rng); t < o.duration_s; t += next(rng)) {
    const double diurnal = 0.5 * (1 - std::cos(2 * M_PI * t / o.period_s));
    double rate = o.peak_rps * (o.trough + (1 - o.trough) * diurnal);
    if (inside(bursts, t)) rate *= o.burst_factor;
    if (inside(gaps, t)) rate = 0;
    if (unit(rng) * max_rate >= rate) continue;
    const int64_t prompt = lognormal(o.prompt_median, o.prompt_sigma, o.max_prompt);
    out.push_back({t, prompt, lognormal(o.output_median, o.output_sigma, o.max_output)});
  }
  return out;
}

}  // namespace moeserve::sim
