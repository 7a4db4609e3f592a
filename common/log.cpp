#include "common/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <mutex>

#include <nlohmann/json.hpp>

namespace moeserve::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<int> g_format{static_cast<int>(Format::kJson)};
std::mutex g_mutex;
std::ostream* g_sink = nullptr;  // guarded by g_mutex; nullptr means std::cerr

std::string_view level_name(Level level) {
  switch (level) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}

std::string now_rfc3339() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms.count()));
  return buf;
}

nlohmann::json to_json(const Field::Value& v) {
  return std::visit([](const auto& x) { return nlohmann::json(x); }, v);
}

// logfmt value: bare when it has no space, quote or '='; otherwise JSON-quoted.
std::string logfmt_value(const Field::Value& v) {
  if (const auto* s = std::get_if<std::string>(&v)) {
    bool bare = !s->empty();
    for (char c : *s) {
      if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) bare = false;
    }
    return bare ? *s : nlohmann::json(*s).dump();
  }
  return to_json(v).dump();
}

}  // namespace

StatusOr<Level> parse_level(std::string_view text) {
  if (text == "debug") return Level::kDebug;
  if (text == "info") return Level::kInfo;
  if (text == "warn" || text == "warning") return Level::kWarn;
  if (text == "error") return Level::kError;
  return invalid_argument_error("log level \"" + std::string(text) +
                                "\": expected debug, info, warn or error");
}

StatusOr<Format> parse_format(std::string_view text) {
  if (text == "json") return Format::kJson;
  if (text == "logfmt") return Format::kLogfmt;
  return invalid_argument_error("log format \"" + std::string(text) +
                                "\": expected json or logfmt");
}

void configure(Level level, Format format, std::ostream* sink) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_level = static_cast<int>(level);
  g_format = static_cast<int>(format);
  g_sink = sink;
}

Status configure_from_env() {
  if (const char* v = std::getenv("MOESERVE_LOG_LEVEL"); v && *v) {
    auto level = parse_level(v);
    if (!level.ok()) return level.status().with_context("MOESERVE_LOG_LEVEL");
    g_level = static_cast<int>(*level);
  }
  if (const char* v = std::getenv("MOESERVE_LOG_FORMAT"); v && *v) {
    auto format = parse_format(v);
    if (!format.ok()) return format.status().with_context("MOESERVE_LOG_FORMAT");
    g_format = static_cast<int>(*format);
  }
  return ok_status();
}

Level current_level() { return static_cast<Level>(g_level.load()); }
Format current_format() { return static_cast<Format>(g_format.load()); }

bool enabled(Level level) { return static_cast<int>(level) >= g_level.load(); }

std::string format_line(Format format, std::string_view timestamp, Level level,
                        std::string_view message, Fields fields) {
  if (format == Format::kJson) {
    nlohmann::ordered_json j;
    j["ts"] = timestamp;
    j["level"] = level_name(level);
    j["msg"] = message;
    for (const Field& f : fields) j[f.key] = to_json(f.value);
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string out = "ts=" + std::string(timestamp) + " level=" + std::string(level_name(level)) +
                    " msg=" + logfmt_value(std::string(message));
  for (const Field& f : fields) out += " " + f.key + "=" + logfmt_value(f.value);
  return out;
}

void write(Level level, std::string_view message, Fields fields) {
  if (!enabled(level)) return;
  std::string line =
      format_line(static_cast<Format>(g_format.load()), now_rfc3339(), level, message, fields);
  line += '\n';
  std::lock_guard<std::mutex> lock(g_mutex);
  std::ostream& out = g_sink ? *g_sink : std::cerr;
  out << line;
  out.flush();
}

}  // namespace moeserve::log
