// Structured logging: one line per event, JSON lines (default) or logfmt, on stderr.
//
//   log::info("model loaded", {{"tensors", 123}, {"bytes", 4096}, {"path", dir}});
//   -> {"ts":"2026-11-28T13:00:00.123Z","level":"info","msg":"model loaded","tensors":123,...}
//
// Level and format come from flags (--log-level, --log-format) or the environment
// (MOESERVE_LOG_LEVEL, MOESERVE_LOG_FORMAT). Thread-safe: each line is written whole.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "common/status.h"

namespace moeserve::log {

enum class Level { kDebug = 0, kInfo, kWarn, kError };
enum class Format { kJson, kLogfmt };

struct Field {
  using Value = std::variant<std::string, int64_t, double, bool>;

  Field(std::string k, std::string_view v) : key(std::move(k)), value(std::string(v)) {}
  Field(std::string k, const char* v) : key(std::move(k)), value(std::string(v)) {}
  Field(std::string k, const std::string& v) : key(std::move(k)), value(v) {}
  Field(std::string k, bool v) : key(std::move(k)), value(v) {}
  template <typename T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Field(std::string k, T v) : key(std::move(k)), value(static_cast<int64_t>(v)) {}
  template <typename T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
  Field(std::string k, T v) : key(std::move(k)), value(static_cast<double>(v)) {}

  std::string key;
  Value value;
};

using Fields = std::initializer_list<Field>;

StatusOr<Level> parse_level(std::string_view text);    // debug|info|warn|error
StatusOr<Format> parse_format(std::string_view text);  // json|logfmt

// Sets the process-wide level, format and sink (default: info, json, std::cerr).
void configure(Level level, Format format, std::ostream* sink = nullptr);
// Applies MOESERVE_LOG_LEVEL / MOESERVE_LOG_FORMAT when set; invalid values are an error.
Status configure_from_env();

Level current_level();
Format current_format();
bool enabled(Level level);
void write(Level level, std::string_view message, Fields fields = {});

// Renders one line (without trailing newline); exposed for tests.
std::string format_line(Format format, std::string_view timestamp, Level level,
                        std::string_view message, Fields fields);

inline void debug(std::string_view m, Fields f = {}) { write(Level::kDebug, m, f); }
inline void info(std::string_view m, Fields f = {}) { write(Level::kInfo, m, f); }
inline void warn(std::string_view m, Fields f = {}) { write(Level::kWarn, m, f); }
inline void error(std::string_view m, Fields f = {}) { write(Level::kError, m, f); }

}  // namespace moeserve::log
